"""DiffAugment (Zhao et al. 2020, mit-han-lab/data-efficient-gans) for grey images in [-1, 1]: differentiable
transforms applied alike to real and fake images before D, in D's and G's steps, so that D cannot memorise the
few real images and G is not taught the augmentations. Names: config.AUGMENT_POLICY."""
from __future__ import annotations

import keras
import tensorflow as tf

# DiffAugment's magnitudes at strength 1: brightness ±0.5, contrast ×[0.5, 1.5], shifts up to 1/8 of the side
# (zero padding), a cutout square of half the side (zeroed). Its colour policy's saturation needs colour channels.
BRIGHTNESS, TRANSLATION, CUTOUT = 0.5, 0.125, 0.5


class DiffAugment:
    """`augment(images, seed)`: the policy's transforms in order, each magnitude scaled by `strength` (0: the
    identity); `seed` is a keras.random.SeedGenerator (checkpointed with the run)."""

    def __init__(self, policy, strength: float = 1.0):
        self.policy = list(policy)
        self.strength = strength

    def __call__(self, images, seed):
        x = tf.cast(images, tf.float32)
        for name in self.policy:
            x = getattr(self, f"_{name}")(x, seed)
        return x

    def _per_image(self, x, seed):
        return keras.random.uniform((tf.shape(x)[0], 1, 1, 1), seed=seed)

    def _color(self, x, seed):
        if self.strength == 0:
            return x
        x = x + self.strength * BRIGHTNESS * 2.0 * (self._per_image(x, seed) - 0.5)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        return (x - mean) * (1.0 + self.strength * (self._per_image(x, seed) - 0.5)) + mean

    def _translation(self, x, seed):
        size = x.shape[1]
        shift = int(size * TRANSLATION * self.strength + 0.5)
        if shift == 0:
            return x
        batch = tf.shape(x)[0]
        padded = tf.pad(x, [[0, 0], [shift, shift], [shift, shift], [0, 0]])
        rows = tf.range(size)[None, :] + shift + keras.random.randint((batch, 1), -shift, shift + 1, seed=seed)
        cols = tf.range(size)[None, :] + shift + keras.random.randint((batch, 1), -shift, shift + 1, seed=seed)
        x = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(x, cols, axis=2, batch_dims=1)

    def _cutout(self, x, seed):
        size = x.shape[1]
        side = int(size * CUTOUT * self.strength + 0.5)
        if side == 0:
            return x
        batch = tf.shape(x)[0]
        corner = keras.random.randint((batch, 2), 0, size + (1 - side % 2), seed=seed) - side // 2
        grid = tf.range(size)[None, :]
        inside_rows = (grid >= corner[:, :1]) & (grid < corner[:, :1] + side)
        inside_cols = (grid >= corner[:, 1:]) & (grid < corner[:, 1:] + side)
        hole = inside_rows[:, :, None] & inside_cols[:, None, :]
        return x * tf.cast(~hole, x.dtype)[..., None]
