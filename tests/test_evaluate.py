"""Evaluation: the feature network's accuracy floor and cache, metric sanity on real data, D's detection scores."""
import numpy as np
import pytest
from omegaconf import OmegaConf

from ganstudy import classifier
from ganstudy.classifier import feature_net
from ganstudy.data import load_mnist
from ganstudy.evaluate import Evaluator, detection_scores


@pytest.fixture(scope="module")
def splits():
    return load_mnist(OmegaConf.create({"name": "mnist5k", "path": None, "holdout": 1000, "limit": None}))


@pytest.fixture(scope="module")
def net(splits, cache_dir):
    return feature_net(splits, cache_dir)


@pytest.mark.slow  # trains the feature network once per session
def test_feature_network_accuracy_and_cache(net, splits, cache_dir):
    assert net.accuracy >= 0.97
    files = sorted(cache_dir.glob(f"mnist_classifier-{net.key}.*"))
    assert [f.suffix for f in files] == [".json", ".keras"]
    mtime = files[1].stat().st_mtime_ns
    assert feature_net(splits, cache_dir) is net  # one load per process
    classifier._loaded.clear()
    again = feature_net(splits, cache_dir)  # loads from disk, does not retrain
    assert again.key == net.key and again.accuracy == net.accuracy and files[1].stat().st_mtime_ns == mtime
    # The loaded network predicts the held-out labels as well as the trained one did.
    _, logits = again.embed(((splits.test_x[:500] - 127.5) / 127.5)[..., None].astype(np.float32))
    assert np.mean(logits.argmax(1) == splits.test_y[:500]) >= 0.96


@pytest.mark.slow  # trains the feature network once per session
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
