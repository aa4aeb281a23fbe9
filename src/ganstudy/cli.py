"""What the small commands (sample, detect) share: the --run / --tracking-uri options and loading a run's models."""
from __future__ import annotations

import argparse


def default_tracking_uri() -> str:
    """What `python -m ganstudy.train` logs to: conf/tracking (itself $MLFLOW_TRACKING_URI when set)."""
    from ganstudy.config import compose

    return compose(["run_dir=unused"]).tracking.uri


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="an MLflow run id or a run directory (outputs/DATE/TIME)")
    parser.add_argument("--tracking-uri", default=default_tracking_uri(),
                        help="MLflow store holding the run (default: $MLFLOW_TRACKING_URI or %(default)s)")


def load_run_model(run: str, tracking_uri: str, name: str, required: bool = True):
    """A run's saved Keras model, loaded without running untrusted code (safe_mode); None if optional and absent."""
    from ganstudy.config import ConfigError
    from ganstudy.tracking import model_file, use_store

    use_store(tracking_uri)
    try:
        path = model_file(run, name)
    except ConfigError:
        if required:
            raise
        return None
    import keras  # only now: a bad --run is reported before TensorFlow loads

    return keras.models.load_model(path, safe_mode=True, compile=False)
