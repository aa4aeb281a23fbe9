"""The article's DCGAN as one keras.Model: generator, discriminator, their optimizers and the train step, with
the levers of the GAN literature (loss family, spectral norm, R1, DiffAugment, D steps, a schedule) as settings."""
from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from ganstudy.augment import DiffAugment
from ganstudy.losses import LOSSES, gradient_penalty, r1_penalty


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


def make_discriminator(dropout: float = 0.3, width: float = 1.0, dtype: str = "float32",
                       norm: str = "none") -> keras.Model:
    """2 x (Conv2D stride 2 -> LeakyReLU -> Dropout) -> Flatten -> Dense logit (positive: real).
    norm="spectral" wraps the convolutions and the Dense in Keras's SpectralNormalization (Miyato et al. 2018):
    each training call divides the kernel by its largest singular value (one power iteration, `u` a weight)."""
    def weighted(layer):
        return layers.SpectralNormalization(layer, dtype=layer.dtype_policy) if norm == "spectral" else layer

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        weighted(layers.Conv2D(_units(64, width), 5, strides=2, padding="same", dtype=dtype)),
        layers.LeakyReLU(dtype=dtype),
        layers.Dropout(dropout, dtype=dtype),
        weighted(layers.Conv2D(_units(128, width), 5, strides=2, padding="same", dtype=dtype)),
        layers.LeakyReLU(dtype=dtype),
        layers.Dropout(dropout, dtype=dtype),
        layers.Flatten(dtype=dtype),
        weighted(layers.Dense(1, dtype="float32")),
    ], name="discriminator")


def learning_rate(lr: float, schedule: str, steps: int | None):
    """A constant rate, or a Keras schedule from `lr` to 0 over `steps` updates of its optimizer."""
    if schedule == "linear":
        return keras.optimizers.schedules.PolynomialDecay(lr, steps, end_learning_rate=0.0, power=1.0)
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.0)
    return lr


def make_optimizer(opt_cfg, lr: float, precision: str = "float32", steps: int | None = None) -> keras.optimizers.Optimizer:
    """The configured Keras optimizer, its rate on `opt_cfg.schedule` over `steps` updates; loss-scaled under
    mixed_float16."""
    lr = learning_rate(lr, opt_cfg.get("schedule", "constant"), steps)
    if opt_cfg.name == "adam":
        opt = keras.optimizers.Adam(lr, beta_1=opt_cfg.beta1, beta_2=opt_cfg.beta2)
    elif opt_cfg.name == "rmsprop":
        opt = keras.optimizers.RMSprop(lr, rho=opt_cfg.rho, momentum=opt_cfg.momentum)
    else:
        opt = keras.optimizers.SGD(lr, momentum=opt_cfg.momentum, nesterov=opt_cfg.nesterov)
    return keras.optimizers.LossScaleOptimizer(opt) if precision == "mixed_float16" else opt


class DCGAN(keras.Model):
    """G and D trained against each other; by default with the article's losses (binary cross-entropy on D's
    logits), G and D updated together on each batch.

    Metrics per step: d_loss (with its penalties), g_loss, d_real = mean sigmoid D(x), d_fake = mean sigmoid
    D(G(z)) (on the augmented images when augmenting).
    With `ema_decay` > 0 a second generator holds an exponential moving average of G's weights, updated
    after every G step (Yazici et al. 2019); it is the one that samples and is evaluated (`sampler`).
    Keras optimizers' own `use_ema` cannot serve here: it swaps the averages in only when fit() ends.
    The levers: `loss` (losses.LOSSES), `gp_weight` (wgan_gp's penalty), `r1_gamma` (R1 on the images D sees as
    real), `augment` (a DiffAugment or None) and `d_steps` (D updates per G update: every batch updates D, every
    d_steps-th batch G too, on fresh noise, after D's update).
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, noise_dim: int,
                 label_smoothing: float = 0.0, seed: int = 0, ema_decay: float = 0.0, loss: str = "ns",
                 gp_weight: float | None = None, r1_gamma: float = 0.0, augment: DiffAugment | None = None,
                 d_steps: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.noise_dim = noise_dim
        self.real_target = 1.0 - label_smoothing
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.loss_fn, self.gp_weight, self.r1_gamma = LOSSES[loss], (gp_weight if loss == "wgan_gp" else None), r1_gamma
        self.augment, self.d_steps = augment, d_steps
        # Augmentation and the gradient penalty draw from a generator of their own (None without them: the
        # article's runs and their checkpoints stay as they were).
        self.lever_seed = keras.random.SeedGenerator(seed + 1) if augment or self.gp_weight else None
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

    def _discriminate(self, real_images, fake_images):
        """D's logits on the (augmented) real and fake images, and its penalties (R1, the gradient penalty)."""
        real_images, fake_images = self._augmented(real_images), self._augmented(fake_images)
        penalty = None
        if self.r1_gamma > 0:
            real_logits, penalty = r1_penalty(self.discriminator, real_images, self.r1_gamma)
        else:
            real_logits = tf.cast(self.discriminator(real_images, training=True), tf.float32)
        fake_logits = tf.cast(self.discriminator(fake_images, training=True), tf.float32)
        if self.gp_weight:
            epsilon = keras.random.uniform((tf.shape(real_images)[0], 1, 1, 1), seed=self.lever_seed)
            gp = gradient_penalty(self.discriminator, real_images, fake_images, epsilon, self.gp_weight)
            penalty = gp if penalty is None else penalty + gp
        return real_logits, fake_logits, penalty

    def _d_loss(self, real_images, fake_images):
        real_logits, fake_logits, penalty = self._discriminate(real_images, fake_images)
        d_loss, g_loss = self.loss_fn(real_logits, fake_logits, self.real_target)
        return (d_loss if penalty is None else d_loss + penalty), g_loss, real_logits, fake_logits

    @staticmethod
    def _apply(optimizer, tape, scaled_loss, variables) -> None:
        """One update from a loss that the optimizer scaled inside `tape` (mixed_float16's loss scaling)."""
        optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))

    def _joint_step(self, real_images, noise):
        """The article's step: one forward pass, both networks updated from it."""
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake_images = self.generator(noise, training=True)
            d_loss, g_loss, real_logits, fake_logits = self._d_loss(real_images, fake_images)
            g_scaled, d_scaled = self.g_optimizer.scale_loss(g_loss), self.d_optimizer.scale_loss(d_loss)
        self._apply(self.g_optimizer, g_tape, g_scaled, self.generator.trainable_variables)
        self._apply(self.d_optimizer, d_tape, d_scaled, self.discriminator.trainable_variables)
        if self.ema_generator is not None:
            self._update_average()
        return d_loss, g_loss, real_logits, fake_logits

    def _generator_step(self, noise):
        with tf.GradientTape() as tape:
            fake_logits = tf.cast(self.discriminator(self._augmented(self.generator(noise, training=True)),
                                                     training=True), tf.float32)
            _, g_loss = self.loss_fn(fake_logits, fake_logits, self.real_target)  # G's loss reads the fakes only
            g_scaled = self.g_optimizer.scale_loss(g_loss)
        self._apply(self.g_optimizer, tape, g_scaled, self.generator.trainable_variables)
        if self.ema_generator is not None:
            self._update_average()

    def _augmented(self, images):
        return images if self.augment is None else self.augment(images, self.lever_seed)

    def _alternating_step(self, real_images, noise, g_noise):
        """D's update on this batch, with fakes from a stateless call of G (its BatchNorm statistics stay); on
        every d_steps-th batch, then G's update on fresh noise against the updated D."""
        g = self.generator
        fake_images, _ = g.stateless_call([v.value for v in g.trainable_variables],
                                          [v.value for v in g.non_trainable_variables], noise, training=True)
        with tf.GradientTape() as d_tape:
            d_loss, g_loss, real_logits, fake_logits = self._d_loss(real_images, fake_images)
            d_scaled = self.d_optimizer.scale_loss(d_loss)
        self._apply(self.d_optimizer, d_tape, d_scaled, self.discriminator.trainable_variables)

        def g_step():
            self._generator_step(g_noise)
            return tf.constant(True)

        tf.cond(self.d_optimizer.iterations % self.d_steps == 0, g_step, lambda: tf.constant(False))
        return d_loss, g_loss, real_logits, fake_logits

    def train_step(self, real_images):
        batch = tf.shape(real_images)[0]
        noise = keras.random.normal((batch, self.noise_dim), seed=self.noise_seed)
        if self.d_steps == 1:
            d_loss, g_loss, real_logits, fake_logits = self._joint_step(real_images, noise)
        else:
            g_noise = keras.random.normal((batch, self.noise_dim), seed=self.noise_seed)
            d_loss, g_loss, real_logits, fake_logits = self._alternating_step(real_images, noise, g_noise)
        values = {"d_loss": d_loss, "g_loss": g_loss,
                  "d_real": tf.reduce_mean(tf.sigmoid(real_logits)), "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}


def steps_per_call(steps_per_epoch: int, wanted: int) -> int:
    """The most training steps, at most `wanted`, that one TensorFlow call can run without straddling two
    epochs: the largest divisor of the epoch's steps (Keras would run whole calls past the epoch's end)."""
    return max(n for n in range(1, min(wanted, steps_per_epoch) + 1) if steps_per_epoch % n == 0)


def build_gan(cfg, steps_per_execution: int = 1, steps_per_epoch: int | None = None) -> DCGAN:
    """The configured DCGAN, compiled, with optimizer slots built (so that a checkpoint can restore them). A
    learning-rate schedule spans train.epochs of `steps_per_epoch` batches (G updates on 1 in train.d_steps)."""
    t, m = cfg.train, cfg.model
    augment = DiffAugment(t.augment_policy, t.augment_strength) if t.augment == "diffaugment" else None
    gan = DCGAN(make_generator(m.noise_dim, m.width, t.precision),
                make_discriminator(m.dropout, m.width, t.precision, m.d_norm),
                m.noise_dim, t.label_smoothing, seed=t.seed, ema_decay=t.ema_decay, loss=cfg.loss.name,
                gp_weight=cfg.loss.gp_weight, r1_gamma=t.r1_gamma, augment=augment, d_steps=t.d_steps)
    d_updates = t.epochs * steps_per_epoch if steps_per_epoch else None
    g_updates = math.ceil(d_updates / t.d_steps) if d_updates else None
    if cfg.optimizer.schedule != "constant" and not d_updates:
        raise ValueError("build_gan: a learning-rate schedule needs steps_per_epoch")
    gan.compile(d_optimizer=make_optimizer(cfg.optimizer, cfg.optimizer.lr_d, t.precision, d_updates),
                g_optimizer=make_optimizer(cfg.optimizer, cfg.optimizer.lr_g, t.precision, g_updates),
                steps_per_execution=steps_per_execution, jit_compile=t.jit_compile)
    gan.build_optimizers()
    return gan
