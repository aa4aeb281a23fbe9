"""The article's DCGAN as one keras.Model: generator, discriminator, their optimizers and the train step."""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


def _units(n: int, width: float) -> int:
    return max(1, round(n * width))


def make_generator(noise_dim: int = 100, width: float = 1.0, dtype: str = "float32") -> keras.Model:
    """Dense -> BN -> LeakyReLU -> reshape 7x7 -> Conv2DTranspose 1x, 2x, 2x -> 28x28x1 tanh."""
    c1, c2, c3 = _units(256, width), _units(128, width), _units(64, width)
    return keras.Sequential([
        keras.Input((noise_dim,)),
        layers.Dense(7 * 7 * c1, use_bias=False, dtype=dtype),
        layers.BatchNormalization(dtype=dtype),
        layers.LeakyReLU(dtype=dtype),
        layers.Reshape((7, 7, c1), dtype=dtype),
        layers.Conv2DTranspose(c2, 5, strides=1, padding="same", use_bias=False, dtype=dtype),
        layers.BatchNormalization(dtype=dtype),
        layers.LeakyReLU(dtype=dtype),
        layers.Conv2DTranspose(c3, 5, strides=2, padding="same", use_bias=False, dtype=dtype),
        layers.BatchNormalization(dtype=dtype),
        layers.LeakyReLU(dtype=dtype),
        # The image leaves in float32 whatever the compute policy.
        layers.Conv2DTranspose(1, 5, strides=2, padding="same", use_bias=False, activation="tanh",
                               dtype="float32"),
    ], name="generator")


def make_discriminator(dropout: float = 0.3, width: float = 1.0, dtype: str = "float32") -> keras.Model:
    """2 x (Conv2D stride 2 -> LeakyReLU -> Dropout) -> Flatten -> Dense logit (positive: real)."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(_units(64, width), 5, strides=2, padding="same", dtype=dtype),
        layers.LeakyReLU(dtype=dtype),
        layers.Dropout(dropout, dtype=dtype),
        layers.Conv2D(_units(128, width), 5, strides=2, padding="same", dtype=dtype),
        layers.LeakyReLU(dtype=dtype),
        layers.Dropout(dropout, dtype=dtype),
        layers.Flatten(dtype=dtype),
        layers.Dense(1, dtype="float32"),
    ], name="discriminator")


def make_optimizer(opt_cfg, lr: float, precision: str = "float32") -> keras.optimizers.Optimizer:
    """The configured Keras optimizer; loss-scaled under mixed_float16."""
    if opt_cfg.name == "adam":
        opt = keras.optimizers.Adam(lr, beta_1=opt_cfg.beta1, beta_2=opt_cfg.beta2)
    elif opt_cfg.name == "rmsprop":
        opt = keras.optimizers.RMSprop(lr, rho=opt_cfg.rho, momentum=opt_cfg.momentum)
    else:
        opt = keras.optimizers.SGD(lr, momentum=opt_cfg.momentum, nesterov=opt_cfg.nesterov)
    return keras.optimizers.LossScaleOptimizer(opt) if precision == "mixed_float16" else opt


def _bce(targets, logits):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(targets, logits))


def gan_losses(real_logits, fake_logits, real_target: float = 1.0):
    """The article's losses: d_loss = BCE(real_target, D(x)) + BCE(0, D(G(z))), g_loss = BCE(1, D(G(z)))."""
    d_loss = _bce(tf.fill(tf.shape(real_logits), real_target), real_logits) + _bce(tf.zeros_like(fake_logits), fake_logits)
    return d_loss, _bce(tf.ones_like(fake_logits), fake_logits)


class DCGAN(keras.Model):
    """G and D trained against each other with binary cross-entropy on D's logits (the article's losses).

    Metrics per step: d_loss, g_loss, d_real = mean sigmoid D(x), d_fake = mean sigmoid D(G(z)).
    With `ema_decay` > 0 a second generator holds an exponential moving average of G's weights, updated
    after every step (Yazici et al. 2019); it is the one that samples and is evaluated (`sampler`).
    Keras optimizers' own `use_ema` cannot serve here: it swaps the averages in only when fit() ends.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, noise_dim: int,
                 label_smoothing: float = 0.0, seed: int = 0, ema_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.noise_dim = noise_dim
        self.real_target = 1.0 - label_smoothing
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.ema_decay = ema_decay
        self.ema_generator = None
        if ema_decay > 0:
            self.ema_generator = keras.models.clone_model(generator)
            self.ema_generator.set_weights(generator.get_weights())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("d_loss", "g_loss", "d_real", "d_fake")}

    @property
    def sampler(self) -> keras.Model:
        """The generator that makes the run's images: the weight average when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, noise, training=False):
        return self.generator(noise, training=training)

    def build_optimizers(self) -> None:
        """Create the optimizer slots now, so that a checkpoint can restore into them."""
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def _update_average(self) -> None:
        """One EMA step over all of G's weights (BN statistics too). The decay warms up as
        min(decay, (1 + t) / (10 + t)), as tf.train.ExponentialMovingAverage does with num_updates, so
        that early evaluations do not see the initial weights."""
        t = tf.cast(self.g_optimizer.iterations, tf.float32)
        decay = tf.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        for average, weight in zip(self.ema_generator.weights, self.generator.weights):
            average.assign(decay * average + (1.0 - decay) * tf.cast(weight, average.dtype))

    def train_step(self, real_images):
        batch = tf.shape(real_images)[0]
        noise = keras.random.normal((batch, self.noise_dim), seed=self.noise_seed)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake_images = self.generator(noise, training=True)
            real_logits = tf.cast(self.discriminator(real_images, training=True), tf.float32)
            fake_logits = tf.cast(self.discriminator(fake_images, training=True), tf.float32)
            d_loss, g_loss = gan_losses(real_logits, fake_logits, self.real_target)
            g_scaled, d_scaled = self.g_optimizer.scale_loss(g_loss), self.d_optimizer.scale_loss(d_loss)
        g_vars, d_vars = self.generator.trainable_variables, self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_scaled, g_vars), g_vars))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_scaled, d_vars), d_vars))
        if self.ema_generator is not None:
            self._update_average()
        values = {"d_loss": d_loss, "g_loss": g_loss,
                  "d_real": tf.reduce_mean(tf.sigmoid(real_logits)), "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}


def steps_per_call(steps_per_epoch: int, wanted: int) -> int:
    """The most training steps, at most `wanted`, that one TensorFlow call can run without straddling two
    epochs: the largest divisor of the epoch's steps (Keras would run whole calls past the epoch's end)."""
    return max(n for n in range(1, min(wanted, steps_per_epoch) + 1) if steps_per_epoch % n == 0)


def build_gan(cfg, steps_per_execution: int = 1) -> DCGAN:
    """The configured DCGAN, compiled, with optimizer slots built (so that a checkpoint can restore them)."""
    t, m = cfg.train, cfg.model
    gan = DCGAN(make_generator(m.noise_dim, m.width, t.precision), make_discriminator(m.dropout, m.width, t.precision),
                m.noise_dim, t.label_smoothing, seed=t.seed, ema_decay=t.ema_decay)
    gan.compile(d_optimizer=make_optimizer(cfg.optimizer, cfg.optimizer.lr_d, t.precision),
                g_optimizer=make_optimizer(cfg.optimizer, cfg.optimizer.lr_g, t.precision),
                steps_per_execution=steps_per_execution)
    gan.build_optimizers()
    return gan
