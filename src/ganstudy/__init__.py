"""ganstudy: run, track and compare GAN hyperparameter studies."""
import logging
import os

# TensorFlow's C++ logging (CUDA probing, a harmless 'remapper failed' line) drowns the progress output.
# oneDNN stays on: turning it off halves CPU speed.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# absl (used by tf.train.Checkpoint) logs every save at INFO through the root logger Hydra sets up, and
# matplotlib its font cache's first build.
logging.getLogger("absl").setLevel(logging.WARNING)
logging.getLogger("matplotlib").setLevel(logging.WARNING)

# ... and TensorFlow 2.21 prints INFO lines while it is imported, whatever the level above (quiet.py).
from ganstudy.quiet import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()
