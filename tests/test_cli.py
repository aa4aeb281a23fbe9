"""The command line: bad input to train, sweep, sample, detect and detection stops before any work with one line, exit 2,
no MLflow run and no trial."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import count_runs
from ganstudy.yardstick import shipped_info

pytestmark = pytest.mark.slow  # trains models or starts interpreters

NO_RUN = "0123456789abcdef0123456789abcdef"
# Bad inputs across the five commands: each must give this one line on stderr and a non-zero exit before any
# work starts. ROOT is the folder the commands run in; MLflow and Optuna point into it.
BAD = {
    "train lr=0": "error: optimizer.lr_g=0.0: must be > 0 (set both with lr=)",
    "train lr=-1e-3": "error: optimizer.lr_g=-0.001: must be > 0 (set both with lr=)",
    "train model.dropout=1.5": "error: model.dropout=1.5: must be in [0, 1)",
    "train train.batch_size=0": "error: train.batch_size=0: must be an integer >= 1",
    "train train.epochs=0": "error: train.epochs=0: must be an integer >= 1",
    "train train.threads=-1": "error: train.threads=-1: must be an integer >= 0 (0: all cores)",
    "train train.steps_per_execution=0": "error: train.steps_per_execution=0: must be an integer >= 1",
    "train optimizer=adamw": "error: optimizer=adamw: must be one of adam, rmsprop, sgd",
    "train experiment=full": "error: experiment=full: must be one of best, quick, seed, tiny",
    "train loss=nope": "error: loss=nope: must be one of hinge, ls, ns, wgan_gp",
    "train train.d_steps=0": "error: train.d_steps=0: must be an integer >= 1 (D updates per G update)",
    "train loss=hinge train.label_smoothing=0.1": "error: train.label_smoothing=0.1: must be 0 for loss=hinge, which "
                                                  "has no target for real images (smoothing is for loss=ns or ls)",
    "train data=mnist data.path=missing.npz": "error: data.path=missing.npz: no such file or directory",
    "train data=mnist data.path=empty.npz": "error: data.path=empty.npz: holds no MNIST images (need a .npz with "
                                            "x_train, y_train, x_test, y_test, or a folder of IDX files)",
    "train data=mnist data.path=corrupt.npz": "error: data.path=corrupt.npz: holds no MNIST images (need a .npz "
                                              "with x_train, y_train, x_test, y_test, or a folder of IDX files)",
    "train data=mnist data.path=idx_20x20": "error: data.path=idx_20x20/train-images-idx3-ubyte: holds arrays of "
                                            "shape (10, 20, 20), not 28x28 MNIST images",
    "train data=mnist data.path=idx_cut": "error: data.path=idx_cut/train-images-idx3-ubyte: not an IDX file "
                                          "(ValueError)",
    "train train.batch_size=5000": "error: train.batch_size=5000: must be at most the 4000 training images",
    "train eval.n_samples=2000": "error: eval.n_samples=2000: must be at most the 1000 held-out images (data.holdout)",
    "train eval.every=0": "error: eval.every=0: must be an integer >= 1",
    "train data.path=mnist.npz": "error: data.path=mnist.npz: must be null for data=mnist5k, which reads no file "
                                 "(data=mnist data.path=FILE reads one)",
    "train data.holdout=5000": "error: data.holdout=5000: must be below the 5000 images of data=mnist5k",
    f"train resume={NO_RUN}": f"error: resume={NO_RUN}: no such run directory, nor a run id in sqlite:///ROOT/mlflow.db",
    "train run_dir=other_run": "error: run_dir=other_run: holds run abc123; continue it with resume=other_run, "
                               "or choose another folder",
    # A run, and a study from before study instances (in other.db and other_optuna.db), scored with an earlier
    # feature network than the shipped one.
    "train experiment=tiny resume=old_run tracking.uri=sqlite:///other.db": (
        "error: resume=old_run: run RUN was scored with feature network b51a3f860de8, this ganstudy measures with "
        "HASH: their FIDs are not comparable; start a new run or study (or install the ganstudy it used)"),
    "sweep sweep=tiny storage=sqlite:///other_optuna.db base=[experiment=tiny,tracking.uri=sqlite:///other.db]": (
        "error: study tiny (its run RUN) was scored with feature network b51a3f860de8, this ganstudy measures with "
        "HASH: their FIDs are not comparable; start a new run or study (or install the ganstudy it used)"),
    "sweep sweep=nope": "error: sweep=nope: no such sweep file; choose one of default, levers, tiny or a .yaml path",
    "sweep sweep=broken.yaml": "error: sweep=broken.yaml: not valid YAML (expected ',' or ']', but got '<stream end>', "
                               "line 2)",
    "sweep n_trials=-1": "error: sweep=default: n_trials=-1: must be an integer >= 1",
    "sweep jobs=0": "error: sweep=default: jobs=0: must be an integer >= 1",
    "sweep storage=nosuchdb://host/optuna": "error: sweep=default: storage=nosuchdb://host/optuna: not a database URL "
                                            "that SQLAlchemy knows (sqlite:///FILE, postgresql://..., mysql://...) "
                                            "nor a journal file path",
    "sweep objective=detector_auc": "error: sweep=default: objective=detector_auc: must be a metric the runs log "
                                    "(detector_auc needs eval.detector=true in base)",
    "sweep lr": "error: lr: arguments are key=value (for example sweep=tiny n_trials=6)",
    "sample --run x -n 0": "python -m ganstudy.sample: error: -n 0: must be an integer >= 1",
    f"sample --run {NO_RUN}": f"error: --run {NO_RUN}: no such run directory, nor a run id in sqlite:///ROOT/mlflow.db",
    "detection n=5": "error: n=5: n is an integer >= 20",
    "detection sweep=tiny": "error: study_name=tiny: no such study in sqlite:///mlruns/optuna.db",
    "best_experiment sweep=tiny": "error: study_name=tiny: no such study in sqlite:///mlruns/optuna.db",
    f"detect --run {NO_RUN} pictures": "python -m ganstudy.detect: error: pictures: is a folder; give image files "
                                       "(for example pictures/*.png)",
    f"detect --run {NO_RUN} x.png": f"error: --run {NO_RUN}: no such run directory, nor a run id in "
                                    "sqlite:///ROOT/mlflow.db",
}


def write_idx(path: Path, array: np.ndarray, cut: int = 0) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes((header + array.astype(np.uint8).tobytes())[: -cut or None])


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every bad command, started at once (each is a fresh interpreter), in a folder holding the bad files."""
    root = tmp_path_factory.mktemp("cli")
    (root / "empty.npz").write_bytes(b"")
    (root / "corrupt.npz").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    for name, shape, cut in (("idx_20x20", (10, 20, 20), 0), ("idx_cut", (10, 28, 28), 100)):
        (root / name).mkdir()
        for stem, array in (("train-images-idx3-ubyte", np.zeros(shape)), ("train-labels-idx1-ubyte", np.zeros(10)),
                            ("t10k-images-idx3-ubyte", np.zeros(shape)), ("t10k-labels-idx1-ubyte", np.zeros(10))):
            write_idx(root / name / stem, array, cut if "images" in stem else 0)
    (root / "other_run").mkdir()
    (root / "other_run" / "mlflow_run_id.txt").write_text("abc123")
    (root / "broken.yaml").write_text("space: [optimizer: {choices: [adam\n")
    (root / "pictures").mkdir()
    other = MlflowClient(f"sqlite:///{root}/other.db")
    experiment = other.create_experiment("ganstudy", str(root / "artifacts"))
    old = other.create_run(experiment, tags={"ganstudy.classifier": "b51a3f860de8", "ganstudy.study": "tiny"}).info
    other.set_terminated(old.run_id)
    import optuna

    optuna.create_study(study_name="tiny", storage=f"sqlite:///{root}/other_optuna.db").add_trial(
        optuna.trial.create_trial(value=400.0))
    (root / "old_run").mkdir()
    (root / "old_run" / "mlflow_run_id.txt").write_text(old.run_id)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = {cmd: subprocess.Popen([sys.executable, "-m", f"ganstudy.{cmd.split()[0]}", *cmd.split()[1:]], cwd=root,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in BAD}
    results = {cmd: (p.wait(timeout=300), *p.communicate()) for cmd, p in procs.items()}
    return root, results


def error_lines(stderr: str) -> list[str]:
    """What a command said on stderr, without argparse's usage lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(("usage:", " "))]


@pytest.mark.parametrize("cmd", BAD)
def test_bad_input_gives_one_line_and_a_nonzero_exit(outcomes, cmd):
    root, results = outcomes
    code, out, err = results[cmd]
    assert code == 2, err
    expected = BAD[cmd].replace("ROOT", str(root)).replace("RUN", (root / "old_run" / "mlflow_run_id.txt").read_text())
    assert error_lines(err) == [expected.replace("HASH", shipped_info()["hash"])] and out == ""


def test_bad_inputs_create_no_run_and_no_trial(outcomes):
    root, _ = outcomes
    assert count_runs(f"sqlite:///{root}/mlflow.db") == 0
    assert [r.info.status for r in MlflowClient(f"sqlite:///{root}/other.db").search_runs(["1"])] == ["FINISHED"]
    assert not (root / "mlruns" / "optuna.db").exists()
    import optuna

    assert len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/other_optuna.db").get_trials()) == 1
    assert sorted(p.parent.name for p in root.glob("**/mlflow_run_id.txt")) == ["old_run", "other_run"]


def test_an_unreachable_tracking_server_is_an_error_within_seconds(tmp_path):
    """No server on port 9: one line, before any training (MLflow itself would retry for minutes)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "ganstudy.train", "experiment=tiny", "tracking.uri=http://127.0.0.1:9"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert error_lines(done.stderr) == ["error: tracking.uri=http://127.0.0.1:9: no MLflow server answers there "
                                        "(ConnectionError); start one, or unset MLFLOW_TRACKING_URI for the local store"]


def test_help_lists_the_groups(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ganstudy.train", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    assert "optimizer: adam, rmsprop, sgd" in done.stdout and "experiment: best, quick, seed, tiny" in done.stdout
