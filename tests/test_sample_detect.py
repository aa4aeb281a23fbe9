"""`sample` exports a run's images; `detect` scores files with its discriminator and detector."""
import json

import imageio.v3 as iio
import numpy as np
import pytest

from conftest import run_cli
from ganstudy.cli import load_run_model
from ganstudy.config import compose
from ganstudy.data import load_mnist, to_model_range
from ganstudy.evaluate import d_logits
from ganstudy.train import train

pytestmark = pytest.mark.slow  # trains models or starts interpreters


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished tiny run: (its folder, its store, the working folder)."""
    root = tmp_path_factory.mktemp("detect")
    store = f"sqlite:///{root}/mlflow.db"
    train(compose(["experiment=tiny", f"tracking.uri={store}", f"tracking.artifact_root={root}/artifacts",
                   f"run_dir={root}/run", "train.progress=none"]))
    return root / "run", store, root


def test_sample_writes_uint8_images(run):
    run_dir, store, root = run
    done = run_cli("sample", "--run", str(run_dir), "--tracking-uri", store, "-n", "12", "-o", "s.npz",
                   "--png", "pngs", cwd=root)
    assert done.returncode == 0, done.stderr
    with np.load(root / "s.npz") as f:
        images = f["images"]
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8 and images.std() > 0
    pngs = sorted((root / "pngs").glob("*.png"))
    assert len(pngs) == 12 and np.array_equal(iio.imread(pngs[3]), images[3])


def test_detect_scores_files_and_reports_bad_ones(run):
    run_dir, store, root = run
    real = load_mnist(compose(["run_dir=x"]).data).test_x[:2]
    for i, image in enumerate(real):
        iio.imwrite(root / f"real_{i}.png", image)
    np.savez(root / "fake.npz", images=np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8))
    (root / "corrupt.png").write_bytes(b"\x89PNG not really")
    files = ["real_0.png", "real_1.png", "fake.npz", "corrupt.png", "missing.png"]
    done = run_cli("detect", "--run", str(run_dir), "--tracking-uri", store, "--json", *files, cwd=root)
    assert done.returncode == 1, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    scored = [r for r in rows if "error" not in r]
    assert [r["file"] for r in scored] == ["real_0.png", "real_1.png"] + [f"fake.npz[images][{i}]" for i in range(3)]
    assert {r["file"] for r in rows if "error" in r} == {"corrupt.png", "missing.png"}
    # The scores are the run's discriminator on those pixels, computed here independently.
    disc = load_run_model(str(run_dir), store, "discriminator")
    with np.load(root / "fake.npz") as f:
        pixels = np.concatenate([real, f["images"]])
    expected = 1 / (1 + np.exp(-d_logits(disc, to_model_range(pixels))))
    assert np.allclose([r["p_real_discriminator"] for r in scored], expected, atol=1e-3)
    assert all(r["p_real_detector"] is not None and r["verdict"] in ("real", "generated") for r in scored)

    text = run_cli("detect", "--run", str(run_dir), "--tracking-uri", store, "real_0.png", "missing.png", cwd=root)
    assert text.returncode == 1
    assert text.stdout.startswith("real_0.png  p_real: discriminator ")
    assert text.stderr.strip().splitlines()[-1].startswith("missing.png: error: cannot read as an image")


def test_detect_unknown_run_is_one_line(run):
    _, store, root = run
    done = run_cli("detect", "--run", "no-such-run", "--tracking-uri", store, "x.png", cwd=root)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: --run no-such-run: no such run directory, nor a run id in {store}"
