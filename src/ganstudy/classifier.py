"""The MNIST feature network: a small CNN classifier, trained once by `python -m ganstudy.classifier` and shipped
frozen inside the package, so that every machine, worker and resumed run scores in the same feature space.

Generated images are scored in its feature space (FID, KID, precision/recall) and by its predictions
(MNIST score, modes), as TF-GAN's MNIST evaluation does. Every run names the network by the hash of its
weights (tag `ganstudy.classifier`) and logs its held-out accuracy.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import keras
import numpy as np
from keras import layers
from omegaconf import OmegaConf

from ganstudy import yardstick
from ganstudy.data import Splits, load_mnist, to_model_range

FEATURES_LAYER = "features"


@dataclass
class FeatureNet:
    model: keras.Model          # image in [-1, 1] -> (features, logits)
    key: str                    # hash of the weights
    accuracy: float             # held-out accuracy

    def embed(self, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(features, logits) of float images in [-1, 1], shape (N, 28, 28, 1)."""
        feats, logits = [], []
        for s in range(0, len(images), batch_size):
            f, l = self.model(images[s:s + batch_size], training=False)
            feats.append(np.asarray(f, np.float64))
            logits.append(np.asarray(l, np.float64))
        return np.concatenate(feats), np.concatenate(logits)


RECIPE = "mnist5k-seed0/shift0.1/cnn32-64-pool/dense128/adam1e-3/bs64/ep15"


def _build() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    # Small random shifts (training only) stand in for the images a 5k subset lacks.
    x = layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=-1.0)(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    features = layers.Dense(128, activation="relu", name=FEATURES_LAYER)(x)
    logits = layers.Dense(10, name="logits")(layers.Dropout(0.5)(features))
    return keras.Model(inputs, logits, name="mnist_classifier")


def _with_features(classifier: keras.Model) -> keras.Model:
    return keras.Model(classifier.input, [classifier.get_layer(FEATURES_LAYER).output, classifier.output])


def train_classifier(splits: Splits, seed: int = 0, epochs: int = 15) -> tuple[keras.Model, float]:
    """Train the CNN on the training split; return it with its accuracy on the held-out split."""
    keras.utils.set_random_seed(seed)
    model = _build()
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(to_model_range(splits.train_x), splits.train_y, batch_size=64, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(to_model_range(splits.test_x), splits.test_y, batch_size=500, verbose=0)
    return model, float(accuracy)


_loaded: FeatureNet | None = None  # one load per process: a sweep's trials share it


def feature_net() -> FeatureNet:
    """The shipped network, loaded once per process; its weights must still have the hash they shipped with."""
    global _loaded
    if _loaded is None:
        info = yardstick.shipped_info()
        with resources.as_file(yardstick.shipped_file(yardstick.WEIGHTS)) as path:
            model = keras.models.load_model(path, safe_mode=True)
        if (found := yardstick.weights_hash(model.get_weights())) != info["hash"]:
            raise RuntimeError(f"the shipped feature network's weights hash to {found}, not {info['hash']}: "
                               "the installed package is damaged; reinstall ganstudy")
        _loaded = FeatureNet(_with_features(model), info["hash"], info["accuracy"])
    return _loaded


def save_network(model: keras.Model, accuracy: float, train_images: int, folder: Path) -> str:
    """Weights without optimizer state, and the JSON that names them; returns their hash."""
    frozen = _build()
    frozen.set_weights(model.get_weights())
    folder.mkdir(parents=True, exist_ok=True)
    frozen.save(folder / yardstick.WEIGHTS)
    key = yardstick.weights_hash(frozen.get_weights())
    (folder / yardstick.INFO).write_text(json.dumps(
        {"hash": key, "accuracy": accuracy, "recipe": RECIPE, "train_images": train_images,
         "trained_by": yardstick.RETRAIN}, indent=1) + "\n")
    return key


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog=yardstick.RETRAIN, description=(
        "Train the MNIST feature network from the bundled 5k subset with the shipped recipe, save it to --out "
        "and say whether it is the shipped network, bit for bit."))
    parser.add_argument("--out", type=Path, required=True, help="folder for mnist_classifier.keras/.json "
                        "(src/ganstudy/weights replaces the shipped network: every earlier score then differs)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    # One thread, as the shipped network was trained (in a sweep trial's process): reductions then run in one
    # order, and the same recipe gives the same weights bit for bit.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    splits = load_mnist(OmegaConf.create({"name": "mnist5k", "path": None, "holdout": 1000}))
    model, accuracy = train_classifier(splits)
    key = save_network(model, accuracy, len(splits.train_x), args.out)
    shipped = yardstick.shipped_info()["hash"]
    print(f"{args.out / yardstick.WEIGHTS}: hash {key}, held-out accuracy {accuracy:.4f}; "
          + ("the shipped network, bit for bit" if key == shipped else f"differs from the shipped {shipped}"))


if __name__ == "__main__":
    main()
