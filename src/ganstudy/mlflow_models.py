"""A run's networks as MLflow models (Keras flavour, with signatures): logged at the end of a run, found again
by `sample`, `detect` and `mlflow models serve`, and the study's winner registered with the alias `champion`.

The logged models speak pixels, so that a user (or a curl to a served model) needs no knowledge of the
training's value range: a generator maps noise (n, noise_dim) to images (n, 28, 28) with values in 0..255;
the discriminator and the detector map such images to p_real (n, 1), the probability that an image is real.
"""
from __future__ import annotations

import numpy as np

GENERATOR, GENERATOR_BEST, DISCRIMINATOR, DETECTOR = "generator", "generator_best", "discriminator", "detector"
REGISTERED = (GENERATOR, DETECTOR)  # registered as <study name>-generator, <study name>-detector
CHAMPION = "champion"
DETECTION_TAG = "threshold"  # on a detector version the detection study registered: its calibrated threshold
HISTOGRAM_TAG = "histogram"  # and "true" if it has the histogram term (it reads pixel values exactly)


def registered_name(study_name: str, model: str) -> str:
    """A study's registered model: one study's confirm never moves another's champion."""
    return f"{study_name}-{model}"


def pixel_generator(sampler):
    """noise -> images in 0..255, shape (n, 28, 28); `sampler` maps noise to [-1, 1] (n, 28, 28, 1)."""
    import keras
    from keras import layers

    noise = keras.Input((sampler.input_shape[-1],), name="noise")
    # float32 wrappers: under a mixed precision policy, bfloat16 would be off by a grey level or more
    pixels = layers.Rescaling(127.5, offset=127.5, dtype="float32")(sampler(noise))
    return keras.Model(noise, layers.Reshape((28, 28), dtype="float32", name="images")(pixels), name="noise_to_pixels")


def pixel_scorer(logit_model):
    """images in 0..255, shape (n, 28, 28) -> p_real (n, 1); `logit_model` scores [-1, 1] (n, 28, 28, 1) images."""
    import keras
    from keras import layers

    images = keras.Input((28, 28), name="images")
    x = layers.Reshape((28, 28, 1), dtype="float32")(layers.Rescaling(1 / 127.5, offset=-1.0, dtype="float32")(images))
    p_real = layers.Activation("sigmoid", dtype="float32", name="p_real")(logit_model(x))
    return keras.Model(images, p_real, name="pixels_to_p_real")


def logit_scorer(scorer):
    """A pixel scorer's logit, before its sigmoid: a score that does not saturate at p_real 0 or 1 (ROC-AUC
    counts saturated scores as ties)."""
    import keras

    return keras.Model(scorer.input, scorer.get_layer("p_real").input)


def _signature(model):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def spec(shape):
        return Schema([TensorSpec(np.dtype(np.float32), (-1, *shape[1:]))])

    return ModelSignature(spec(model.input_shape), spec(model.output_shape))


def _requirements() -> list[str]:
    """What loading the model needs, pinned as installed (MLflow would otherwise load it in a subprocess to guess)."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("keras", "tensorflow", "numpy")]


def log(model, name: str, step: int):
    """Log `model` (a pixel_generator or pixel_scorer) to the active run as MLflow model `name`; the run's
    metrics at `step` are linked to it (the Models tab shows them). Returns MLflow's ModelInfo."""
    import mlflow.keras

    return mlflow.keras.log_model(model, name=name, signature=_signature(model), step=step,
                                  pip_requirements=_requirements())


def model_id(run_id: str, name: str) -> str | None:
    """The newest MLflow model `name` that run `run_id` logged (a resumed run logs its models again); None if none."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = client.search_logged_models(
        [client.get_run(run_id).info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}], max_results=1)
    return found[0].model_id if found else None


def load(uri: str):
    """A logged model as Keras (`models:/ID`, `models:/NAME@ALIAS`, `models:/NAME/VERSION`), loaded without
    running code from the file (Keras safe_mode)."""
    import mlflow.keras

    return mlflow.keras.load_model(uri, load_model_kwargs={"safe_mode": True, "compile": False})


def register_champion(run_id: str, study_name: str) -> dict[str, str]:
    """Register the run's generator and detector (those it logged) under the study's names and point the alias
    `champion` at them; a model the alias already points at is not registered again, and a champion detector
    that the detection study registered (trained across generators) stays. Returns {name: version}."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client, versions = MlflowClient(), {}
    for name in REGISTERED:
        registered = registered_name(study_name, name)
        if (found := model_id(run_id, name)) is None:
            continue
        try:
            current = client.get_model_version_by_alias(registered, CHAMPION)
        except MlflowException:  # not registered yet
            current = None
        if name == DETECTOR and current is not None and DETECTION_TAG in current.tags:
            continue  # the detection study's detector, trained across generators, stays the champion
        if current is not None and current.source == f"models:/{found}":
            versions[registered] = str(current.version)
            continue
        version = mlflow.register_model(f"models:/{found}", registered).version
        client.set_registered_model_alias(registered, CHAMPION, version)
        versions[registered] = str(version)
    return versions


def version_tags(uri: str) -> dict[str, str]:
    """The tags of a registered model version (`models:/NAME@ALIAS`, `models:/NAME/VERSION`); {} for any other
    model URI."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    ref = uri.removeprefix("models:/")
    name, alias = ref.split("@", 1) if "@" in ref else (ref, None)
    name, _, number = name.partition("/")
    try:
        version = (MlflowClient().get_model_version_by_alias(name, alias) if alias
                   else MlflowClient().get_model_version(name, number) if number.isdigit() else None)
    except MlflowException:
        return {}
    return {} if version is None else dict(version.tags)
