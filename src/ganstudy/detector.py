"""A deepfake detector: a CNN trained on real images against generated ones (the small one on one generator's
fakes, after a run; the small or the deep one on many generators', optionally with the blur, noise and JPEG
augmentation of Wang et al. 2020 and a term for the image's pixel-value histogram, across a study)."""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from ganstudy.data import to_uint8
from ganstudy.evaluate import d_logits, detection_scores, generate


KINDS = ("small", "deep")


def make_detector(kind: str = "small") -> keras.Model:
    """A logit (positive: real) from 28x28x1 images in [-1, 1]. small: two strided 5x5 convolutions, like the
    article's D without dropout. deep: four 3x3 convolutions (64, 64, 128, 128 filters; strides 1, 2, 1, 2) and
    global average pooling, which sees texture wherever it lies (docs/detection.md: it generalizes across
    generators where the small one does not)."""
    if kind == "small":
        body = [layers.Conv2D(32, 5, strides=2, padding="same"), layers.LeakyReLU(),
                layers.Conv2D(64, 5, strides=2, padding="same"), layers.LeakyReLU(), layers.Flatten()]
    else:
        body = [layer for filters, stride in ((64, 1), (64, 2), (128, 1), (128, 2))
                for layer in (layers.Conv2D(filters, 3, strides=stride, padding="same"), layers.LeakyReLU())]
        body.append(layers.GlobalAveragePooling2D())
    return keras.Sequential([keras.Input((28, 28, 1)), *body, layers.Dense(1)], name="detector")


def with_histogram(cnn: keras.Model, real_images: np.ndarray) -> keras.Model:
    """The CNN's logit plus a histogram term: minus a non-negatively weighted sum of the squared z-scores of the
    image's share of pixels at each of the 256 values, z against the real images' mean share (their spread plus
    one pixel's share as its unit). An image is the less real the further any share lies from real digits', on
    either side, however it got there (McCloskey and Albright 2019: generators make too few saturated pixels).
    Standard Keras layers only: the model loads in safe mode and serves as the CNN does."""
    shares = pixel_shares(to_uint8(real_images))
    image = keras.Input((28, 28, 1))
    whole = layers.Discretization(bin_boundaries=[v + 0.5 for v in range(255)])(
        layers.Rescaling(127.5, offset=127.5)(image))  # back to the pixel values 0..255 the image was made of
    counts = layers.CategoryEncoding(256, output_mode="count")(layers.Reshape((28 * 28,))(whole))
    z = layers.Normalization(mean=shares.mean(0), variance=(shares.std(0) + 1 / 784) ** 2)(
        layers.Rescaling(1 / 784)(counts))
    distance = layers.Rescaling(-1.0)(layers.Multiply()([z, z]))
    term = layers.Dense(1, kernel_initializer="zeros", kernel_constraint=keras.constraints.NonNeg(),
                        name="histogram_term")(distance)
    return keras.Model(image, layers.Add()([cnn(image), term]), name="detector_with_histogram")


def pixel_shares(values: np.ndarray) -> np.ndarray:
    """Each image's share of pixels at each value 0..255: (n, 256)."""
    flat = values.reshape(len(values), -1)
    return np.stack([np.bincount(row, minlength=256) for row in flat]) / flat.shape[1]


def train_detector(generator, real_train: np.ndarray, real_test: np.ndarray, epochs: int = 3,
                   seed: int = 0) -> tuple[keras.Model, float]:
    """Fit real (1) vs generated (0) on the training images; return the model and its held-out ROC-AUC.

    Images are floats in [-1, 1]; the test set is unseen real images against fresh generated ones.
    """
    fake_train = generate(generator, len(real_train), seed=seed + 1)
    model = fit_detector(real_train, fake_train, epochs, seed, augment=False)
    fake_test = generate(generator, len(real_test), seed=seed + 2)
    return model, detection_scores(d_logits(model, real_test), d_logits(model, fake_test))["auc"]


def fit_detector(reals: np.ndarray, fakes: np.ndarray, epochs: int, seed: int, augment: bool,
                 kind: str = "small", histogram: bool = False, match: float = 0.0) -> keras.Model:
    """The detector fit to real (1) against generated (0) images in [-1, 1], each class weighing half of the
    loss however many images it has; with `augment`, each epoch sees a fresh augmented copy of both (so that
    blur, noise or compression is no clue to either class); with `histogram`, the CNN has the histogram term
    (with_histogram), its z-scores against `reals`; a share `match` of the fakes gets real images' histograms
    (matched), so that the CNN learns more than the histogram."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    fakes = np.array(fakes, np.float32)
    chosen = rng.random(len(fakes)) < match
    fakes[chosen] = matched(fakes[chosen], reals, rng)
    x = np.concatenate([reals, fakes]).astype(np.float32)
    y = np.r_[np.ones(len(reals)), np.zeros(len(fakes))].astype(np.float32)
    weights = {1: len(x) / (2 * len(reals)), 0: len(x) / (2 * len(fakes))}
    model = with_histogram(make_detector(kind), reals) if histogram else make_detector(kind)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
    if not augment:
        model.fit(x, y, batch_size=64, epochs=epochs, shuffle=True, class_weight=weights, verbose=0)
    for _ in range(epochs if augment else 0):
        model.fit(augmented(x, rng), y, batch_size=64, epochs=1, shuffle=True, class_weight=weights, verbose=0)
    return model


def matched(images: np.ndarray, donors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image with a random donor's pixel values, rank for rank: the donor's histogram, the image's order of
    brightness (its shape). Histogram matching, the simplest way to hide the histogram from a detector."""
    size = int(np.prod(np.shape(images)[1:]))
    flat = np.asarray(images).reshape(len(images), size)
    values = np.sort(np.asarray(donors).reshape(len(donors), size)[rng.integers(0, len(donors), len(flat))], axis=1)
    out = np.empty_like(flat)
    np.put_along_axis(out, np.argsort(flat, axis=1, kind="stable"), values.astype(out.dtype), axis=1)
    return out.reshape(np.shape(images))


def augmented(images: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Each image, independently with probability p each: blurred, noised, JPEG-compressed (Wang et al. 2020's
    blur and JPEG, and noise). Shape, dtype and the [-1, 1] range kept."""
    return jpeg(noise(blur(images, rng, p), rng, p), rng, p)


def blur(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Gaussian blur, sigma uniform in [0.3, 1] pixel (less would not change a pixel), of each image with
    probability p."""
    from scipy.ndimage import gaussian_filter

    out = np.array(images, np.float32)
    for i in np.flatnonzero(rng.random(len(out)) < p):
        out[i, ..., 0] = gaussian_filter(out[i, ..., 0], sigma=rng.uniform(0.3, 1.0))
    return out


def noise(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Gaussian noise, sigma uniform up to 0.1 of the [-1, 1] range, on each image with probability p; clipped."""
    out = np.array(images, np.float32)
    chosen = rng.random(len(out)) < p
    sigma = rng.uniform(0, 0.1, (int(chosen.sum()), 1, 1, 1))
    out[chosen] += (rng.normal(0, 1, out[chosen].shape) * sigma).astype(np.float32)
    return np.clip(out, -1, 1)


def jpeg(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Each image with probability p through JPEG at a quality uniform in 30-100, back in [-1, 1]."""
    import io

    from PIL import Image

    out = np.array(images, np.float32)
    for i in np.flatnonzero(rng.random(len(out)) < p):
        buffer = io.BytesIO()
        Image.fromarray(np.rint((out[i, ..., 0] + 1) * 127.5).astype(np.uint8)).save(
            buffer, "JPEG", quality=int(rng.integers(30, 101)))
        out[i, ..., 0] = np.asarray(Image.open(buffer), np.float32) / 127.5 - 1
    return out
