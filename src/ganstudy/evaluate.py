"""Score a generator: quality metrics in the feature network's space, and D as a deepfake detector."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ganstudy import metrics
from ganstudy.classifier import FeatureNet
from ganstudy.data import Splits, to_model_range

REFERENCE_IMAGES = 10_000


def generate(generator, n: int, seed: int, batch_size: int = 500) -> np.ndarray:
    """n images from seeded normal noise: in [-1, 1], (n, 28, 28, 1) from a training generator; pixel values
    0..255, (n, 28, 28) from a logged one (mlflow_models.pixel_generator)."""
    noise = np.random.default_rng(seed).standard_normal((n, generator.input_shape[-1])).astype(np.float32)
    return np.concatenate([np.asarray(generator(noise[s:s + batch_size], training=False), np.float32)
                           for s in range(0, n, batch_size)])


def detection_scores(real_logits: np.ndarray, fake_logits: np.ndarray) -> dict[str, float]:
    """ROC-AUC and average precision of a real-vs-generated score (real is the positive class)."""
    y = np.r_[np.ones(len(real_logits)), np.zeros(len(fake_logits))]
    s = np.r_[np.ravel(real_logits), np.ravel(fake_logits)]
    return {"auc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s))}


def d_logits(discriminator, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    return np.concatenate([np.asarray(discriminator(images[s:s + batch_size], training=False), np.float32).ravel()
                           for s in range(0, len(images), batch_size)])


class Evaluator:
    """Scores against fixed references: the training images (quality) and n held-out images (D detection)."""

    def __init__(self, net: FeatureNet, splits: Splits, n_samples: int, seed: int = 0):
        self.net, self.n, self.seed = net, n_samples, seed
        self.heldout = to_model_range(splits.test_x[:n_samples])
        self.ref_features, _ = net.embed(to_model_range(splits.train_x[:REFERENCE_IMAGES]))
        # Precision/recall compare equal counts (as the method assumes): n training images, their k-NN radii once.
        self.pr_features = self.ref_features[:n_samples]
        self.pr_radii = metrics.knn_radii(self.pr_features)

    def quality(self, images: np.ndarray) -> dict[str, float]:
        features, logits = self.net.embed(images)
        precision, recall = metrics.precision_recall(self.pr_features, features, real_radii=self.pr_radii)
        return {"fid": metrics.fid(self.ref_features, features),
                "kid": metrics.kid(self.ref_features, features, seed=self.seed),
                "mnist_score": metrics.mnist_score(logits), "precision": precision, "recall": recall,
                "modes_covered": metrics.modes_covered(logits), "class_kl": metrics.class_kl(logits)}

    def floor(self) -> dict[str, float]:
        """The same metrics for held-out real images: the best a generator can expect at this sample count."""
        return {f"real_{k}": v for k, v in self.quality(self.heldout).items()}

    def evaluate(self, generator, discriminator, epoch: int) -> dict[str, float]:
        """Quality of n fresh images, and how well D tells the held-out real images from them."""
        fake = generate(generator, self.n, seed=self.seed * 1_000_003 + epoch)
        d = detection_scores(d_logits(discriminator, self.heldout), d_logits(discriminator, fake))
        return {**self.quality(fake), "d_auc": d["auc"], "d_ap": d["ap"]}
