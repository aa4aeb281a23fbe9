"""The command line: bad settings stop before any work with one line, exit 2 and no MLflow run."""
import os
import subprocess
import sys

import pytest

from conftest import count_runs

pytestmark = pytest.mark.slow  # trains models or starts interpreters

BAD = {
    "lr=0": "error: optimizer.lr_g=0.0: must be > 0 (set both with lr=)",
    "lr=-1e-3": "error: optimizer.lr_g=-0.001: must be > 0 (set both with lr=)",
    "model.dropout=1.5": "error: model.dropout=1.5: must be in [0, 1)",
    "train.batch_size=0": "error: train.batch_size=0: must be an integer >= 1",
    "train.epochs=0": "error: train.epochs=0: must be an integer >= 1",
    "optimizer=adamw": "error: optimizer=adamw: must be one of adam, rmsprop, sgd",
    "experiment=full": "error: experiment=full: must be one of best, quick, seed, tiny",
    "data=mnist data.path=missing.npz": "error: data.path=missing.npz: no such file or directory",
    "data=mnist data.path=empty.npz": "error: data.path=empty.npz: holds no MNIST images (need a .npz with "
                                      "x_train, y_train, x_test, y_test, or a folder of IDX files)",
    "train.batch_size=5000": "error: train.batch_size=5000: must be at most the 4000 training images",
    "eval.n_samples=2000": "error: eval.n_samples=2000: must be at most the 1000 held-out images (data.holdout)",
    "eval.every=0": "error: eval.every=0: must be an integer >= 1",
    "data.path=mnist.npz": "error: data.path=mnist.npz: must be null for data=mnist5k, which reads no file "
                           "(data=mnist data.path=FILE reads one)",
    "data.holdout=5000": "error: data.holdout=5000: must be below the 5000 images of data=mnist5k",
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every bad command, started at once (each is a fresh interpreter)."""
    root = tmp_path_factory.mktemp("cli")
    (root / "empty.npz").write_bytes(b"")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
    procs = {args: subprocess.Popen([sys.executable, "-m", "ganstudy.train", *args.split()], cwd=root, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in BAD}
    results = {args: (p.wait(timeout=120), *p.communicate()) for args, p in procs.items()}
    return results, count_runs(env["MLFLOW_TRACKING_URI"])


@pytest.mark.parametrize("args", BAD)
def test_bad_setting_gives_one_line_and_exit_2(outcomes, args):
    results, _ = outcomes
    code, out, err = results[args]
    assert code == 2, err
    assert err.strip() == BAD[args] and out == ""


def test_bad_settings_create_no_run(outcomes):
    assert outcomes[1] == 0


def test_help_lists_the_groups(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ganstudy.train", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    assert "optimizer: adam, rmsprop, sgd" in done.stdout and "experiment: best, quick, seed, tiny" in done.stdout
