"""What the small commands (sample, detect) share: the --run / --model / --tracking-uri options and loading the
MLflow model they name."""
from __future__ import annotations

import argparse


def default_tracking_uri() -> str:
    """What `python -m ganstudy.train` logs to: conf/tracking (itself $MLFLOW_TRACKING_URI when set)."""
    from ganstudy.config import compose

    return compose(["run_dir=unused"]).tracking.uri


def add_run_options(parser: argparse.ArgumentParser, model_example: str) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="an MLflow run id or a run directory (outputs/DATE/TIME)")
    which.add_argument("--model", help=f"an MLflow model URI instead of a run, e.g. {model_example}")
    parser.add_argument("--tracking-uri", default=default_tracking_uri(),
                        help="MLflow store holding the run or model (default: $MLFLOW_TRACKING_URI or %(default)s)")


def load_model(args: argparse.Namespace, name: str, kind: str, required: bool = True):
    """The run's MLflow model `name` (args.run), or the model args.model names, as Keras; None if it is optional
    and the run logged none. `kind` ("generator" or "scorer") is checked against the model's input."""
    from mlflow.exceptions import MlflowException

    from ganstudy import mlflow_models
    from ganstudy.config import ConfigError
    from ganstudy.tracking import find_run, use_store

    use_store(args.tracking_uri)
    if args.model:
        uri, where = args.model, f"--model {args.model}"
    else:
        run_id, _ = find_run(args.run, key="--run ", uri_option="--tracking-uri")
        if (found := mlflow_models.model_id(run_id, name)) is None:
            if required:
                raise ConfigError(f"--run {args.run}: the run logged no MLflow model '{name}' (did it finish training?)")
            return None
        uri, where = f"models:/{found}", f"--run {args.run}"
    try:
        model = mlflow_models.load(uri)
    except (MlflowException, OSError) as err:
        raise ConfigError(f"{where}: cannot load it ({str(err).splitlines()[0]})") from None
    is_generator = len(model.input_shape) == 2
    if is_generator != (kind == "generator"):
        raise ConfigError(f"{where}: is {'a generator' if is_generator else 'an image scorer'}, not "
                          f"{'a generator' if kind == 'generator' else 'an image scorer (detector, discriminator)'}")
    return model
