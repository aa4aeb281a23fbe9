"""ganstudy: run, track and compare GAN hyperparameter studies."""
import logging
import os

# TensorFlow's C++ logging (CUDA probing, a harmless 'remapper failed' line) drowns the progress output.
# oneDNN stays on: turning it off halves CPU speed.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# absl (used by tf.train.Checkpoint) logs every save at INFO through the root logger Hydra sets up.
logging.getLogger("absl").setLevel(logging.WARNING)
