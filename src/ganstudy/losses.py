"""The loss families and penalties of the GAN literature, as compare_gan shapes them: each loss maps D's logits on
real and fake images to (d_loss, g_loss); each penalty is a function of D and images. Names: config.LOSSES."""
from __future__ import annotations

import tensorflow as tf


def _bce(targets, logits):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(targets, logits))


def non_saturating(real_logits, fake_logits, real_target: float = 1.0):
    """The article's: d = BCE(real_target, D(x)) + BCE(0, D(G(z))), g = BCE(1, D(G(z))) (Goodfellow et al. 2014)."""
    d_loss = _bce(tf.fill(tf.shape(real_logits), real_target), real_logits) + _bce(tf.zeros_like(fake_logits), fake_logits)
    return d_loss, _bce(tf.ones_like(fake_logits), fake_logits)


def hinge(real_logits, fake_logits, real_target: float = 1.0):
    """d = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))], g = -E[D(G(z))] (Lim & Ye 2017; SNGAN, BigGAN)."""
    d_loss = tf.reduce_mean(tf.nn.relu(1.0 - real_logits)) + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))
    return d_loss, -tf.reduce_mean(fake_logits)


def least_squares(real_logits, fake_logits, real_target: float = 1.0):
    """On D's raw outputs (Mao et al. 2017, as StudioGAN): d = ½E[(D(x) - real_target)²] + ½E[D(G(z))²],
    g = ½E[(D(G(z)) - 1)²]."""
    d_loss = 0.5 * tf.reduce_mean(tf.square(real_logits - real_target)) + 0.5 * tf.reduce_mean(tf.square(fake_logits))
    return d_loss, 0.5 * tf.reduce_mean(tf.square(fake_logits - 1.0))


def wasserstein(real_logits, fake_logits, real_target: float = 1.0):
    """d = E[D(G(z))] - E[D(x)], g = -E[D(G(z))] (Arjovsky et al. 2017); wgan_gp adds gradient_penalty."""
    return tf.reduce_mean(fake_logits) - tf.reduce_mean(real_logits), -tf.reduce_mean(fake_logits)


LOSSES = {"ns": non_saturating, "hinge": hinge, "ls": least_squares, "wgan_gp": wasserstein}


def _input_gradient(discriminator, images):
    """D's logits on `images` and their gradient with respect to the images (a nested tape: the outer tapes
    differentiate the penalty built from it)."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = tf.cast(discriminator(images, training=True), tf.float32)
        total = tf.reduce_sum(logits)  # inside the tape: each image's logit depends on that image alone
    return logits, tf.cast(tape.gradient(total, images), tf.float32)


def r1_penalty(discriminator, real_images, gamma: float):
    """D's logits on the real images and R1 = γ/2 · E‖∇ₓD(x)‖² (Mescheder et al. 2018), every step."""
    logits, grad = _input_gradient(discriminator, real_images)
    return logits, 0.5 * gamma * tf.reduce_mean(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]))


def gradient_penalty(discriminator, real_images, fake_images, epsilon, weight: float):
    """WGAN-GP's λ · E(‖∇D(x̂)‖₂ - 1)² at x̂ = ε x + (1 - ε) G(z), ε ~ U[0, 1] per image (Gulrajani et al. 2017)."""
    mixed = epsilon * real_images + (1.0 - epsilon) * fake_images
    _, grad = _input_gradient(discriminator, mixed)
    norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]) + 1e-12)
    return weight * tf.reduce_mean(tf.square(norm - 1.0))
