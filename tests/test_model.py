"""The article's networks: shapes, the width knob, precision policies and one train step."""
import numpy as np
import pytest
from omegaconf import OmegaConf

from ganstudy.losses import non_saturating
from ganstudy.model import DCGAN, make_discriminator, make_generator, make_optimizer, steps_per_call


def test_article_shapes_and_sizes():
    g, d = make_generator(100), make_discriminator(0.3)
    images = g(np.zeros((3, 100), np.float32))
    assert images.shape == (3, 28, 28, 1)
    assert d(images).shape == (3, 1)
    # Parameter counts of the tutorial's models (as its model.summary() shows).
    assert g.count_params() == 2_330_944 and d.count_params() == 212_865


def test_width_scales_every_layer():
    g = make_generator(16, width=0.25)
    assert [l.filters for l in g.layers if hasattr(l, "filters")] == [32, 16, 1]
    assert make_discriminator(width=0.5).layers[0].filters == 32


@pytest.mark.parametrize("name, cls", [("adam", "Adam"), ("rmsprop", "RMSprop"), ("sgd", "SGD")])
def test_optimizer_factory(name, cls):
    cfg = OmegaConf.create({"name": name, "beta1": 0.5, "beta2": 0.99, "rho": 0.8, "momentum": 0.5, "nesterov": True})
    opt = make_optimizer(cfg, 3e-4)
    assert type(opt).__name__ == cls and np.isclose(float(opt.learning_rate), 3e-4)
    if name == "adam":
        assert opt.beta_1 == 0.5 and opt.beta_2 == 0.99
    if name == "sgd":
        assert opt.momentum == 0.5 and opt.nesterov


def tiny_gan(precision="float32", label_smoothing=0.0):
    gan = DCGAN(make_generator(8, 0.25, precision), make_discriminator(0.3, 0.25, precision), 8, label_smoothing)
    opt = OmegaConf.create({"name": "adam", "beta1": 0.5, "beta2": 0.999})
    gan.compile(d_optimizer=make_optimizer(opt, 1e-3, precision), g_optimizer=make_optimizer(opt, 1e-3, precision))
    return gan


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_train_step_updates_both_networks(precision):
    gan = tiny_gan(precision)
    real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    g0 = [w.copy() for w in gan.generator.get_weights()]
    d0 = [w.copy() for w in gan.discriminator.get_weights()]
    out = {k: float(v) for k, v in gan.train_step(real).items()}
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(v) for v in out.values()) and 0 < out["d_real"] < 1 and 0 < out["d_fake"] < 1
    assert any(not np.array_equal(a, b) for a, b in zip(g0, gan.generator.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(d0, gan.discriminator.get_weights()))
    assert gan.generator(np.zeros((1, 8), np.float32)).dtype == "float32"


@pytest.mark.parametrize("precision, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_covers_every_layer_but_the_float32_outputs(precision, compute):
    g, d = make_generator(8, 0.25, precision), make_discriminator(0.3, 0.25, precision)
    dtypes = {layer.name: layer.dtype_policy.compute_dtype for layer in g.layers + d.layers}
    outputs = {g.layers[-1].name, d.layers[-1].name}  # the image and the logit leave in float32
    assert {name: dt for name, dt in dtypes.items() if name not in outputs} == dict.fromkeys(set(dtypes) - outputs, compute)
    assert {dtypes[name] for name in outputs} == {"float32"}
    assert {type(layer).__name__ for layer in g.layers + d.layers} >= {"Reshape", "Dropout", "Flatten"}


def test_losses_are_the_articles_cross_entropy():
    real_logits = np.array([[2.0], [-0.5], [0.3]], np.float32)
    fake_logits = np.array([[-1.0], [0.7], [0.0]], np.float32)

    def bce(target, logit):  # numpy reference, from the definition
        p = 1 / (1 + np.exp(-logit.astype(np.float64)))
        return -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))

    for target in (1.0, 0.9):  # 0.9: one-sided label smoothing of 0.1
        d_loss, g_loss = non_saturating(real_logits, fake_logits, target)
        assert np.isclose(float(d_loss), bce(target, real_logits) + bce(0.0, fake_logits), rtol=1e-5)
        assert np.isclose(float(g_loss), bce(1.0, fake_logits), rtol=1e-5)


def test_weight_average_follows_the_ema_recurrence():
    """The EMA generator after each step equals a numpy EMA of G's weights with the warm-up decay."""
    gan = DCGAN(make_generator(8, 0.25), make_discriminator(0.3, 0.25), 8, ema_decay=0.9)
    opt = OmegaConf.create({"name": "adam", "beta1": 0.5, "beta2": 0.999})
    gan.compile(d_optimizer=make_optimizer(opt, 1e-2), g_optimizer=make_optimizer(opt, 1e-2))
    assert gan.sampler is gan.ema_generator
    average = [w.copy() for w in gan.generator.get_weights()]
    real = np.random.default_rng(1).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    for t in range(1, 4):
        gan.train_step(real)
        decay = min(0.9, (1 + t) / (10 + t))
        average = [decay * a + (1 - decay) * w for a, w in zip(average, gan.generator.get_weights())]
        for ours, reference in zip(gan.ema_generator.get_weights(), average):
            np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    assert not np.allclose(gan.ema_generator.get_weights()[0], gan.generator.get_weights()[0])
    plain = tiny_gan()
    assert plain.ema_generator is None and plain.sampler is plain.generator


def test_steps_per_call_divides_the_epoch():
    assert [steps_per_call(steps, 8) for steps in (250, 125, 62, 7, 1)] == [5, 5, 2, 7, 1]
    assert steps_per_call(250, 1) == 1


def test_steps_per_execution_changes_speed_not_results():
    """Several steps per TensorFlow call train exactly the steps that one step per call trains."""
    import keras
    import tensorflow as tf

    real = np.random.default_rng(0).uniform(-1, 1, (40, 28, 28, 1)).astype(np.float32)
    weights = []
    for steps_per_execution in (1, 5):
        keras.utils.set_random_seed(0)
        gan = tiny_gan()
        gan.compile(d_optimizer=gan.d_optimizer, g_optimizer=gan.g_optimizer, steps_per_execution=steps_per_execution)
        batches = tf.data.Dataset.from_tensor_slices(real).batch(8).repeat()
        gan.fit(batches, epochs=2, steps_per_epoch=5, verbose=0)
        assert int(gan.g_optimizer.iterations) == int(gan.d_optimizer.iterations) == 10
        weights.append(gan.generator.get_weights() + gan.discriminator.get_weights())
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(*weights))
