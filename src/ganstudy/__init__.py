"""ganstudy: run, track and compare GAN hyperparameter studies."""
import logging
import os

# TensorFlow's C++ logging (CUDA probing, a harmless 'remapper failed' line) drowns the progress output.
# oneDNN stays on: turning it off halves CPU speed.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# MLflow prints "View run … at: URL" as a run ends, URL as given: a password in it would reach the console.
# ganstudy prints its own link, password masked (redact.py).
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

# absl (used by tf.train.Checkpoint) logs every save at INFO through the root logger Hydra sets up, and
# matplotlib its font cache's first build.
logging.getLogger("absl").setLevel(logging.WARNING)
logging.getLogger("matplotlib").setLevel(logging.WARNING)

# ... and TensorFlow 2.21 prints INFO lines while it is imported, whatever the level above (quiet.py).
from ganstudy.quiet import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()
