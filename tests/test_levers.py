"""The levers of the GAN literature, each against an independent reference: losses on fixed logits by hand,
penalties on a discriminator whose input gradient is known in closed form, spectral norm against numpy's SVD,
DiffAugment's transforms by their definitions, D steps and schedules by counting."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from ganstudy import config
from ganstudy.augment import DiffAugment
from ganstudy.config import compose
from ganstudy.losses import LOSSES, gradient_penalty, r1_penalty
from ganstudy.model import DCGAN, build_gan, make_discriminator, make_generator

REAL = np.array([[2.0], [-0.5], [0.3]], np.float32)
FAKE = np.array([[-1.0], [0.7], [0.0]], np.float32)


def test_every_configured_loss_has_a_function():
    assert set(LOSSES) == set(config.LOSSES) == set(config.group_options("loss"))


@pytest.mark.parametrize("name, d_expected, g_expected", [
    # hinge: mean(relu(1 - r)) + mean(relu(1 + f)); g = -mean(f)
    ("hinge", (0 + 1.5 + 0.7) / 3 + (0 + 1.7 + 1.0) / 3, -(-1.0 + 0.7 + 0.0) / 3),
    # least squares: 0.5 mean((r - 1)^2) + 0.5 mean(f^2); g = 0.5 mean((f - 1)^2)
    ("ls", 0.5 * (1.0 + 2.25 + 0.49) / 3 + 0.5 * (1.0 + 0.49 + 0.0) / 3, 0.5 * (4.0 + 0.09 + 1.0) / 3),
    # Wasserstein: mean(f) - mean(r); g = -mean(f)
    ("wgan_gp", (-0.3 / 3) - (1.8 / 3), 0.3 / 3),
])
def test_losses_against_hand_computed_values(name, d_expected, g_expected):
    d_loss, g_loss = LOSSES[name](REAL, FAKE)
    assert float(d_loss) == pytest.approx(d_expected, rel=1e-6)
    assert float(g_loss) == pytest.approx(g_expected, rel=1e-6)


def test_least_squares_target_follows_label_smoothing():
    d_loss, _ = LOSSES["ls"](REAL, FAKE, 0.9)
    assert float(d_loss) == pytest.approx(0.5 * np.mean((REAL - 0.9) ** 2) + 0.5 * np.mean(FAKE ** 2), rel=1e-6)


class Quadratic(keras.layers.Layer):
    """D(x) = a · Σ x²: its input gradient is 2a·x."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def call(self, x, training=False):
        return self.a * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])[:, None]


def linear_d(w: np.ndarray) -> keras.Model:
    """D(x) = Σ w·x + 1: its input gradient is w for every image."""
    d = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    d.layers[-1].set_weights([w.reshape(-1, 1), np.ones(1, np.float32)])
    return d


def test_r1_against_the_closed_form_gradient():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    w = rng.normal(0, 0.05, (28, 28, 1)).astype(np.float32)
    logits, r1 = r1_penalty(linear_d(w), tf.constant(x), gamma=10.0)
    assert float(r1) == pytest.approx(10.0 / 2 * np.sum(w.astype(np.float64) ** 2), rel=1e-5)
    np.testing.assert_allclose(logits.numpy()[:, 0], (x * w).sum(axis=(1, 2, 3)) + 1, rtol=1e-5)
    _, r1 = r1_penalty(Quadratic(0.3), tf.constant(x), gamma=2.0)  # per image |2a x|^2, averaged
    assert float(r1) == pytest.approx(np.mean(np.sum((0.6 * x.astype(np.float64)) ** 2, axis=(1, 2, 3))), rel=1e-5)


def test_gradient_penalty_against_the_closed_form_gradient():
    rng = np.random.default_rng(1)
    real, fake = (rng.uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32) for _ in range(2))
    eps = rng.uniform(0, 1, (4, 1, 1, 1)).astype(np.float32)
    w = rng.normal(0, 0.05, (28, 28, 1)).astype(np.float32)
    gp = gradient_penalty(linear_d(w), tf.constant(real), tf.constant(fake), tf.constant(eps), weight=10.0)
    assert float(gp) == pytest.approx(10.0 * (np.linalg.norm(w.astype(np.float64)) - 1) ** 2, rel=1e-5)
    gp = gradient_penalty(Quadratic(0.5), tf.constant(real), tf.constant(fake), tf.constant(eps), weight=1.0)
    mixed = eps * real + (1 - eps) * fake  # gradient x̂ at a = 0.5
    norms = np.sqrt(np.sum(mixed.astype(np.float64) ** 2, axis=(1, 2, 3)))
    assert float(gp) == pytest.approx(np.mean((norms - 1) ** 2), rel=1e-5)


def top_singular_values(d: keras.Model) -> list[float]:
    kernels = [layer.layer.kernel.numpy() for layer in d.layers if isinstance(layer, keras.layers.SpectralNormalization)]
    return [float(np.linalg.svd(k.reshape(-1, k.shape[-1]), compute_uv=False)[0]) for k in kernels]


def test_spectral_norm_brings_every_kernel_to_unit_largest_singular_value():
    keras.utils.set_random_seed(0)  # the kernels and u: power iteration's pace depends on them (30 calls left 1.027 once)
    d = make_discriminator(0.0, 0.25, norm="spectral")
    x = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    before = top_singular_values(d)
    assert len(before) == 3 and max(abs(s - 1) for s in before) > 0.1  # the initial kernels are not normalized
    for _ in range(100):  # each training call runs one power iteration and divides the kernel by its estimate
        d(x, training=True)
    assert top_singular_values(d) == pytest.approx([1.0, 1.0, 1.0], abs=0.02)
    assert "vector_u" in {w.path.split("/")[-1] for w in d.non_trainable_weights}  # u is a weight: checkpointed


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The image moved by (dy, dx) pixels with zeros coming in (numpy reference)."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(0, -dy):min(h, h - dy), max(0, -dx):min(w, w - dx)] = image[max(0, dy):min(h, h + dy), max(0, dx):min(w, w + dx)]
    return out


IMAGES = np.random.default_rng(2).uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32)


def test_translation_moves_each_image_by_at_most_an_eighth():
    out = DiffAugment(["translation"])(IMAGES, keras.random.SeedGenerator(0)).numpy()
    moves = []
    for image, moved in zip(IMAGES, out):
        matches = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if np.array_equal(moved, shifted(image, dy, dx))]
        assert len(matches) == 1
        moves.append(matches[0])
    assert len(set(moves)) > 1  # each image its own shift


def test_cutout_zeroes_one_square_of_half_the_side_clipped_at_the_border():
    out = DiffAugment(["cutout"])(IMAGES, keras.random.SeedGenerator(0)).numpy()
    for image, cut in zip(IMAGES, out):
        hole = cut[..., 0] != image[..., 0]
        rows, cols = np.where(hole)
        assert np.all(cut[hole] == 0) and rows.size > 0
        assert hole[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a rectangle
        assert rows.max() - rows.min() + 1 <= 14 and cols.max() - cols.min() + 1 <= 14


def test_color_shifts_brightness_and_scales_contrast_per_image():
    out = DiffAugment(["color"])(IMAGES, keras.random.SeedGenerator(0)).numpy().astype(np.float64)
    x = IMAGES.astype(np.float64)
    for image, result in zip(x, out):
        # result = (image + b - mean(image + b)) * c + mean(image + b): an affine map of the image with slope c
        c = np.polyfit(image.ravel(), result.ravel(), 1)[0]
        b = result.mean() - image.mean()
        assert 0.5 <= c <= 1.5 and -0.5 <= b <= 0.5
        np.testing.assert_allclose(result, (image - image.mean()) * c + image.mean() + b, atol=1e-5)
    assert np.abs(out).max() <= 1.5 * (1 + 0.5) + 1e-6


def test_strength_zero_is_the_identity_and_the_default_policy_keeps_the_shape():
    seed = keras.random.SeedGenerator(0)
    np.testing.assert_array_equal(DiffAugment(["color", "translation", "cutout"], 0.0)(IMAGES, seed).numpy(), IMAGES)
    out = DiffAugment(["color", "translation", "cutout"])(IMAGES, seed).numpy()
    assert out.shape == IMAGES.shape and out.dtype == np.float32 and not np.allclose(out, IMAGES)


def test_gradients_reach_the_generator_through_the_augmentation():
    g, d = make_generator(8, 0.25), make_discriminator(0.3, 0.25)
    augment, seed = DiffAugment(["color", "translation", "cutout"]), keras.random.SeedGenerator(0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(d(augment(g(tf.ones((4, 8))), seed), training=True))
    grads = tape.gradient(loss, g.trainable_variables)
    assert all(gr is not None for gr in grads) and any(float(tf.reduce_max(tf.abs(gr))) > 0 for gr in grads)


def gan_with(overrides: list[str], steps_per_epoch: int = 4) -> DCGAN:
    cfg = compose(["experiment=tiny", "run_dir=unused", *overrides])
    config.validate(cfg)
    return build_gan(cfg, 1, steps_per_epoch)


def weights(model: keras.Model) -> list[np.ndarray]:
    return [w.numpy().copy() for w in model.weights]  # BatchNorm's statistics too


def moved(before, model) -> bool:
    return any(not np.array_equal(a, b.numpy()) for a, b in zip(before, model.weights))


def test_d_steps_2_keeps_g_still_on_ds_extra_step():
    gan = gan_with(["train.d_steps=2", "train.ema_decay=0.9"])
    real = IMAGES[:8]
    for step in (1, 2, 3, 4):
        g0, d0, e0 = weights(gan.generator), weights(gan.discriminator), weights(gan.ema_generator)
        gan.train_step(real)
        g_due = step % 2 == 0
        assert moved(d0, gan.discriminator), step
        assert moved(g0, gan.generator) == g_due and moved(e0, gan.ema_generator) == g_due, step
    assert (int(gan.d_optimizer.iterations), int(gan.g_optimizer.iterations)) == (4, 2)


@pytest.mark.parametrize("schedule, at", [
    ("linear", lambda lr, k, n: lr * (1 - k / n)),
    ("cosine", lambda lr, k, n: lr * 0.5 * (1 + math.cos(math.pi * k / n))),
    ("constant", lambda lr, k, n: lr),
])
def test_schedules_follow_their_formula_over_the_planned_updates(schedule, at):
    # experiment=tiny: 1 epoch; 6 batches per epoch -> D plans 6 updates, G (1 in 2) 3.
    gan = gan_with([f"optimizer.schedule={schedule}", "train.d_steps=2", "lr=1e-3"], steps_per_epoch=6)
    for k in range(1, 5):
        gan.train_step(IMAGES[:8])
        assert float(gan.d_optimizer.learning_rate) == pytest.approx(at(1e-3, k, 6), rel=1e-5, abs=1e-12)
        assert float(gan.g_optimizer.learning_rate) == pytest.approx(at(1e-3, k // 2, 3), rel=1e-5, abs=1e-12)


@pytest.mark.parametrize("precision, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_levers_stay_under_the_mixed_precision_policy(precision, compute):
    gan = gan_with([f"train.precision={precision}", "loss=wgan_gp", "model.d_norm=spectral", "train.r1_gamma=0.1",
                    "train.augment=diffaugment", "train.d_steps=2"])
    wrapped = [layer.layer for layer in gan.discriminator.layers if isinstance(layer, keras.layers.SpectralNormalization)]
    assert [layer.dtype_policy.compute_dtype for layer in wrapped] == [compute, compute, "float32"]
    for _ in range(2):
        out = {k: float(v) for k, v in gan.train_step(IMAGES[:8]).items()}
    assert all(np.isfinite(v) for v in out.values()), out
    assert int(gan.g_optimizer.iterations) == 1
