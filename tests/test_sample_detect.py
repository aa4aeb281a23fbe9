"""`sample` exports a run's images; `detect` scores files with its discriminator and detector; the registered
champion is found by `models:/NAME@champion` and served by `mlflow models serve`."""
import json
import os
import shutil
import sys
import urllib.request

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.special import expit

from conftest import call_main, free_port, run_cli, serve
from ganstudy.config import compose
from ganstudy.data import load_mnist, to_model_range
from ganstudy.train import train

pytestmark = pytest.mark.slow  # trains models or starts interpreters


@pytest.fixture(scope="module")
def run(tmp_path_factory, store_template):
    """One finished tiny run: (its folder, its store, the working folder)."""
    root = tmp_path_factory.mktemp("detect")
    shutil.copy(store_template, root / "mlflow.db")
    store = f"sqlite:///{root}/mlflow.db"
    train(compose(["experiment=tiny", f"tracking.uri={store}", f"tracking.artifact_root={root}/artifacts",
                   f"run_dir={root}/run", "train.progress=none"]))
    return root / "run", store, root


def call(module: str, *args: str, capsys) -> tuple[int, str, str]:
    """`python -m ganstudy.<module> args` in this process (TensorFlow already imported; one test per command
    runs it as its own process): exit status, stdout, stderr."""
    import importlib

    return call_main(importlib.import_module(f"ganstudy.{module}").main, args, capsys)


def discriminator_logits(run_dir, store):
    """The run's discriminator itself (logits of [-1, 1] images), from inside its logged model."""
    import mlflow

    from ganstudy.mlflow_models import model_id

    mlflow.set_tracking_uri(store)
    run_id = (run_dir / "mlflow_run_id.txt").read_text()
    return mlflow.keras.load_model(f"models:/{model_id(run_id, 'discriminator')}").get_layer("discriminator")


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


def test_sample_refuses_best_with_a_model_uri(capsys):
    """--best names a run's best generator; a model URI has only the one it names: a usage error, not ignored."""
    code, _, err = call("sample", "--model", "models:/ganstudy-default-generator@champion", "--best", capsys=capsys)
    assert code == 2 and err.splitlines()[-1].endswith("error: --best picks a run's best generator: use it with "
                                                       "--run, not --model")


def test_detect_scores_files_and_reports_bad_ones(run, capsys, monkeypatch):
    run_dir, store, root = run
    real = load_mnist(compose(["run_dir=x"]).data).test_x[:2]
    for i, image in enumerate(real):
        iio.imwrite(root / f"real_{i}.png", image)
    np.savez(root / "fake.npz", images=np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8))
    (root / "corrupt.png").write_bytes(b"\x89PNG not really")
    with np.load(root / "fake.npz") as f:  # the same images as floats in [0, 1]: scaled, not cast to black
        np.savez(root / "fake_float.npz", images=f["images"] / 255.0)
    np.savez(root / "model_range.npz", images=np.linspace(-1, 1, 784).reshape(1, 28, 28))  # not pixels: refused
    files = ["real_0.png", "real_1.png", "fake.npz", "fake_float.npz", "corrupt.png", "missing.png", "model_range.npz"]
    done = run_cli("detect", "--run", str(run_dir), "--tracking-uri", store, "--json", *files, cwd=root)
    assert done.returncode == 1, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    scored = [r for r in rows if "error" not in r]
    assert [r["file"] for r in scored] == ["real_0.png", "real_1.png"] + [
        f"{name}[images][{i}]" for name in ("fake.npz", "fake_float.npz") for i in range(3)]
    errors = {r["file"]: r["error"] for r in rows if "error" in r}
    assert set(errors) == {"corrupt.png", "missing.png", "model_range.npz"}
    assert errors["model_range.npz"].endswith("array 'images' holds float64 values in [-1, 1], not pixels (integers "
                                              "0..255, or floats in [0, 1] or [0, 255]))")
    # The scores are the run's discriminator on those pixels, computed here independently.
    with np.load(root / "fake.npz") as f:
        pixels = np.concatenate([real, f["images"], f["images"]])
    expected = expit(discriminator_logits(run_dir, store)(to_model_range(pixels)).numpy().ravel())
    assert np.allclose([r["p_real_discriminator"] for r in scored], expected, atol=1e-3)
    assert all(r["p_real_detector"] is not None and r["verdict"] in ("real", "generated") for r in scored)

    monkeypatch.chdir(root)
    code, out, err = call("detect", "--run", str(run_dir), "--tracking-uri", store, "real_0.png", "missing.png",
                          capsys=capsys)
    assert code == 1
    assert out.startswith("real_0.png  p_real: discriminator ")
    assert err.strip().splitlines()[-1].startswith("missing.png: error: cannot read as an image")


def test_detect_unknown_run_is_one_line(run, capsys, monkeypatch):
    _, store, root = run
    monkeypatch.chdir(root)
    code, _, err = call("detect", "--run", "no-such-run", "--tracking-uri", store, "x.png", capsys=capsys)
    assert code == 2
    assert err.strip().splitlines()[-1] == f"error: --run no-such-run: no such run directory, nor a run id in {store}"
    (root / "elsewhere").mkdir(exist_ok=True)
    (root / "elsewhere" / "mlflow_run_id.txt").write_text("0" * 32)  # a run folder from another store
    code, _, err = call("sample", "--run", "elsewhere", "--tracking-uri", store, capsys=capsys)
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: --run elsewhere: its run {'0' * 32} is not in the tracking store {store} (set --tracking-uri or "
        "MLFLOW_TRACKING_URI to the store it was logged to)")


def test_the_champion_is_found_by_its_alias_and_served(run, capsys, monkeypatch):
    """The run's generator and detector registered as the champion (what confirm does with the study's
    winner): sample and detect take models:/NAME@champion, a second registration adds no version, a generator
    given to detect is refused in one line, and `mlflow models serve` answers a POST of pixels with p_real."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from ganstudy.mlflow_models import load, register_champion

    run_dir, store, root = run
    monkeypatch.chdir(root)
    mlflow.set_tracking_uri(store)
    run_id = (run_dir / "mlflow_run_id.txt").read_text()
    assert register_champion(run_id, "ganstudy-default") == register_champion(run_id, "ganstudy-default") == {"ganstudy-default-generator": "1", "ganstudy-default-detector": "1"}
    assert len(MlflowClient(store).search_model_versions("name='ganstudy-default-detector'")) == 1
    code, _, err = call("sample", "--model", "models:/ganstudy-default-generator@champion", "--tracking-uri", store, "-n", "3",
                        "-o", "champion.npz", capsys=capsys)
    assert code == 0, err
    with np.load(root / "champion.npz") as f:
        images = f["images"]
    np.savez(root / "champion_images.npz", images=images)
    code, out, err = call("detect", "--model", "models:/ganstudy-default-detector@champion", "--tracking-uri", store, "--json",
                          "champion_images.npz", capsys=capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    detector = load("models:/ganstudy-default-detector@champion")
    assert np.allclose([r["p_real_model"] for r in rows], detector.predict(images.astype(np.float32), verbose=0).ravel(),
                       atol=1e-3)
    code, _, err = call("detect", "--model", "models:/ganstudy-default-generator@champion", "--tracking-uri", store, "x.png",
                        capsys=capsys)
    assert code == 2 and err.strip().splitlines()[-1] == (
        "error: --model models:/ganstudy-default-generator@champion: is a generator, not an image scorer (detector, discriminator)")

    port = free_port()
    server = serve([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/ganstudy-default-detector@champion",
                    "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}/ping",
                   log=root / "serve.log", env={**os.environ, "MLFLOW_TRACKING_URI": store})
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", method="POST",
                                         data=json.dumps({"inputs": images.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())["predictions"]
    finally:
        server.kill()
    assert np.allclose(np.ravel(answer), [r["p_real_model"] for r in rows], atol=1e-3)


def test_a_confirm_leaves_the_detection_studys_champion_detector(run, monkeypatch):
    """The detection study's detector (its version tagged with a threshold) stays `@champion` when a confirm
    registers its winner's models; the winner's generator is registered as usual."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from ganstudy.mlflow_models import DETECTION_TAG, load, log, model_id, register_champion

    run_dir, store, root = run
    monkeypatch.chdir(root)
    mlflow.set_tracking_uri(store)
    winner = (run_dir / "mlflow_run_id.txt").read_text()
    with mlflow.start_run(run_name="detection") as across:  # the detection study's detector, another logged model
        info = log(load(f"models:/{model_id(winner, 'detector')}"), "detector", step=0)
    client, name = MlflowClient(store), "kept-detector"
    version = mlflow.register_model(info.model_uri, name, tags={DETECTION_TAG: "0.7"}).version
    client.set_registered_model_alias(name, "champion", version)
    assert register_champion(winner, "kept") == {"kept-generator": "1"}
    assert client.get_model_version_by_alias(name, "champion").version == version
    assert client.get_model_version_by_alias(name, "champion").run_id == across.info.run_id
    assert len(client.search_model_versions(f"name='{name}'")) == 1
