"""The MNIST feature network: a small CNN classifier trained once per machine and data set, then frozen.

Generated images are scored in its feature space (FID, KID, precision/recall) and by its predictions
(MNIST score, modes), as TF-GAN's MNIST evaluation does. The cached file is keyed by a hash of the
images it was trained on, and every score names that hash and the network's held-out accuracy.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from ganstudy.data import Splits, to_model_range

FEATURES_LAYER = "features"


@dataclass
class FeatureNet:
    model: keras.Model          # image in [-1, 1] -> (features, logits)
    key: str                    # hash of the training data and recipe
    accuracy: float             # held-out accuracy

    def embed(self, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(features, logits) of float images in [-1, 1], shape (N, 28, 28, 1)."""
        feats, logits = [], []
        for s in range(0, len(images), batch_size):
            f, l = self.model(images[s:s + batch_size], training=False)
            feats.append(np.asarray(f, np.float64))
            logits.append(np.asarray(l, np.float64))
        return np.concatenate(feats), np.concatenate(logits)


RECIPE = "shift0.1/cnn32-64-pool/dense128/adam1e-3/bs64/ep15/v1"  # change it to retrain every cached net


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


def data_key(splits: Splits) -> str:
    """Hash of the classifier's training and held-out images and its recipe."""
    h = hashlib.sha256(RECIPE.encode())
    for a in (splits.train_x, splits.train_y, splits.test_x, splits.test_y):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


_loaded: dict[Path, FeatureNet] = {}  # one load per process: a sweep's trials share it


def feature_net(splits: Splits, cache_dir: str | Path) -> FeatureNet:
    """The cached feature network for these splits, training (and caching) it on first use."""
    key = data_key(splits)
    folder = Path(cache_dir).expanduser()
    model_file, info_file = folder / f"mnist_classifier-{key}.keras", folder / f"mnist_classifier-{key}.json"
    if model_file in _loaded and model_file.exists():
        return _loaded[model_file]
    if model_file.exists() and info_file.exists():
        model = keras.models.load_model(model_file, safe_mode=True)
        accuracy = json.loads(info_file.read_text())["accuracy"]
    else:
        print(f"training the MNIST feature network on {len(splits.train_x)} images (once per data set) ...",
              flush=True)
        model, accuracy = train_classifier(splits)
        folder.mkdir(parents=True, exist_ok=True)
        # Write then rename, so that parallel workers never read a half-written file.
        tmp = folder / f".{key}-{os.getpid()}.keras"
        model.save(tmp)
        os.replace(tmp, model_file)
        tmp_info = folder / f".{key}-{os.getpid()}.json"
        tmp_info.write_text(json.dumps({"accuracy": accuracy, "recipe": RECIPE, "train_images": len(splits.train_x)}))
        os.replace(tmp_info, info_file)
    _loaded[model_file] = FeatureNet(_with_features(model), key, accuracy)
    return _loaded[model_file]
