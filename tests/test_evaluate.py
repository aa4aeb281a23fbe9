"""Evaluation: the shipped feature network, metric sanity on real data, D's detection scores."""
import hashlib
import json
from importlib import resources

import numpy as np
import pytest
from omegaconf import OmegaConf

from ganstudy.classifier import feature_net
from ganstudy.config import ConfigError
from ganstudy.data import load_mnist
from ganstudy.evaluate import Evaluator, detection_scores


@pytest.fixture(scope="module")
def splits():
    return load_mnist(OmegaConf.create({"name": "mnist5k", "path": None, "holdout": 1000, "limit": None}))


@pytest.fixture(scope="module")
def net():
    return feature_net()


@pytest.mark.slow  # loads TensorFlow
def test_the_shipped_feature_network_is_named_by_its_weights_and_classifies(net, splits):
    info = json.loads((resources.files("ganstudy") / "weights" / "mnist_classifier.json").read_text())
    digest = hashlib.sha256(b"".join(np.asarray(w, np.float32).tobytes() for w in net.model.get_weights()))
    assert net.key == info["hash"] == digest.hexdigest()[:12]
    assert feature_net() is net  # one load per process
    # It predicts the held-out labels of the bundled subset (seed 0) with the accuracy it shipped with.
    _, logits = net.embed(((splits.test_x - 127.5) / 127.5)[..., None].astype(np.float32))
    assert np.mean(logits.argmax(1) == splits.test_y) == pytest.approx(net.accuracy, abs=1e-6) and net.accuracy >= 0.97


def test_a_run_or_study_scored_with_another_network_is_refused():
    from ganstudy.yardstick import refuse_other, shipped_info

    refuse_other(shipped_info()["hash"], "run x")  # the same network: no error
    refuse_other(None, "run x")  # a run without the tag (none logged yet)
    with pytest.raises(ConfigError, match=r"^run x was scored with feature network 0123456789ab, this ganstudy "
                                          rf"measures with {shipped_info()['hash']}: their FIDs are not comparable"):
        refuse_other("0123456789ab", "run x")


@pytest.mark.slow  # loads TensorFlow
def test_real_images_score_near_the_floor_and_noise_far(net, splits):
    ev = Evaluator(net, splits, n_samples=500)
    floor = ev.floor()
    noise = np.random.default_rng(0).uniform(-1, 1, (500, 28, 28, 1)).astype(np.float32)
    bad = ev.quality(noise)
    assert floor["real_fid"] < 0.1 * bad["fid"] and floor["real_kid"] < bad["kid"]
    assert floor["real_mnist_score"] > 8 and floor["real_modes_covered"] == 10 and floor["real_class_kl"] < 0.05
    assert floor["real_precision"] > 0.6 and floor["real_recall"] > 0.6
    # The floor's FID, recomputed from the network's features with scipy's matrix square root.
    from scipy import linalg

    ref, _ = net.embed(((splits.train_x[:10_000] - 127.5) / 127.5)[..., None].astype(np.float32))
    held, _ = net.embed(((splits.test_x[:500] - 127.5) / 127.5)[..., None].astype(np.float32))
    s1, s2 = np.cov(ref.astype(np.float64), rowvar=False), np.cov(held.astype(np.float64), rowvar=False)
    expected = np.sum((ref.mean(0) - held.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert floor["real_fid"] == pytest.approx(expected, rel=1e-3)
    # Precision/recall compare as many real as generated features: 500 training images, not the 10,000.
    from ganstudy.metrics import precision_recall

    assert (floor["real_precision"], floor["real_recall"]) == pytest.approx(precision_recall(ref[:500], held), abs=1e-6)


def test_detection_scores_against_pair_counting():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(1, 1, 40), rng.normal(0, 1, 30)
    # AUC = P(score_real > score_fake) over all pairs (no ties with continuous scores).
    expected_auc = np.mean(real[:, None] > fake[None, :])
    got = detection_scores(real, fake)
    assert got["auc"] == pytest.approx(expected_auc)
    # Average precision by hand: mean precision at each real (positive) in descending score order.
    order = np.argsort(-np.r_[real, fake])
    labels = np.r_[np.ones(40), np.zeros(30)][order]
    precision_at = np.cumsum(labels) / np.arange(1, 71)
    assert got["ap"] == pytest.approx(np.sum(precision_at * labels) / 40)
    assert detection_scores([2.0, 3.0], [0.0, 1.0]) == {"auc": 1.0, "ap": 1.0}
