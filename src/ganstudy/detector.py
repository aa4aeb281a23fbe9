"""A post-hoc deepfake detector: a small CNN trained on real images vs one generator's images."""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from ganstudy.evaluate import d_logits, detection_scores, generate


def make_detector() -> keras.Model:
    """Two strided convolutions and a logit (positive: real), like the article's D without dropout."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 5, strides=2, padding="same"), layers.LeakyReLU(),
        layers.Conv2D(64, 5, strides=2, padding="same"), layers.LeakyReLU(),
        layers.Flatten(), layers.Dense(1),
    ], name="detector")


def train_detector(generator, real_train: np.ndarray, real_test: np.ndarray, epochs: int = 3,
                   seed: int = 0) -> tuple[keras.Model, float]:
    """Fit real (1) vs generated (0) on the training images; return the model and its held-out ROC-AUC.

    Images are floats in [-1, 1]; the test set is unseen real images against fresh generated ones.
    """
    keras.utils.set_random_seed(seed)
    fake_train = generate(generator, len(real_train), seed=seed + 1)
    x = np.concatenate([real_train, fake_train])
    y = np.r_[np.ones(len(real_train)), np.zeros(len(fake_train))].astype(np.float32)
    model = make_detector()
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, shuffle=True, verbose=0)
    fake_test = generate(generator, len(real_test), seed=seed + 2)
    return model, detection_scores(d_logits(model, real_test), d_logits(model, fake_test))["auc"]
