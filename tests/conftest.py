"""Shared fixtures and helpers: tiny runs and studies whose outputs all land in tmp_path."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# Modules whose tests share a module-scoped fixture that costs a training run or a server.
SHARED_FIXTURE_MODULES = {"test_cli", "test_evaluate", "test_sample_detect", "test_scaleout"}
# Of those, the groups that take minutes on their worker (a server, CLI runs on a trained generator).
COSTLY_GROUPS = {"test_sample_detect", "test_scaleout"}


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker more than cores, to fill the waits of tests that stop a server for 30 s. The suite
    is CPU-bound: on 2 cores, 5 workers took as long as 3 (16.0 against 16.4 min), each test twice as long."""
    return len(os.sched_getaffinity(0)) + 1


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """With pytest-xdist (`-n auto --dist loadgroup`, the default), tests that share a costly fixture run on one
    worker, which builds it once; the rest spread over the workers. The longest work is handed out first (the
    groups whose fixture trains or serves, then the slow tests; xdist keeps this order with
    `--no-loadscope-reorder`), so that no worker starts a long test while the others are finishing."""
    def group(item) -> str | None:
        if "tiny_study" in item.fixturenames:
            return "tiny_study"
        return item.module.__name__ if item.module.__name__ in SHARED_FIXTURE_MODULES else None

    rank = {}
    for item in items:
        if name := group(item):
            item.add_marker(pytest.mark.xdist_group(name))
        rank[item] = 0 if name in {"tiny_study", *COSTLY_GROUPS} else 1 if item.get_closest_marker("slow") else 2
    items.sort(key=rank.__getitem__)  # stable: collection order within a rank


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, set up once per test process: setting one up runs MLflow's schema
    migrations, a commit each (seconds, mostly waiting for the disk)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("store_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def empty_store(request, store_template) -> None:
    """Every test's tmp_path starts with an empty MLflow store at mlflow.db, a copy of the template. (The
    README's commands on a fresh folder, tests/test_cli.py, still set a store up from nothing.)"""
    if "tmp_path" in request.fixturenames:
        shutil.copy(store_template, request.getfixturevalue("tmp_path") / "mlflow.db")


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh SQLite MLflow store in tmp_path."""
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def tiny_overrides(tmp_path, store) -> list[str]:
    """experiment=tiny into tmp_path, without the post-hoc detector (its CNN costs a tiny run a third more;
    the tests of the detector turn it on)."""
    return ["experiment=tiny", f"tracking.uri={store}", f"tracking.artifact_root={tmp_path}/artifacts",
            f"run_dir={tmp_path}/run", "train.progress=none", "eval.detector=false"]


def run_cli(module: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m ganstudy.<module> args` in cwd, as a user would type it."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", f"ganstudy.{module}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def count_runs(store: str) -> int:
    """Runs in a store (0 when the store was never created)."""
    path = Path(store.removeprefix("sqlite:///"))
    if not path.exists():
        return 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    return sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(args: list, url: str, limit: float = 180, log: Path | None = None, **popen) -> subprocess.Popen:
    """Start a server in a session of its own (its output to `log`) and wait until `url` answers."""
    with open(log, "w") if log else open(os.devnull, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen)
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=5)
            return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    pytest.fail(f"{args[0]} did not answer at {url}" + (f":\n{log.read_text()}" if log else ""))


def sweep_args(tmp_path, *extra):
    """`python -m ganstudy.sweep` arguments for the tiny study, its storage, runs and files in tmp_path."""
    return ["sweep=tiny", f"storage=sqlite:///{tmp_path}/optuna.db", f"out_dir={tmp_path}/trials",
            f"base=[experiment=tiny,train.epochs=2,eval.detector=false,train.progress=none,train.checkpoints=latest,"
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db,"
            f"tracking.artifact_root={tmp_path}/artifacts]", *extra]


def call_main(main, args, capsys) -> tuple[int, str, str]:
    """A command's `main(args)` called in this process, as `python -m` would run it: exit status, stdout, stderr."""
    try:
        code = main(list(args)) or 0
    except SystemExit as exit_:
        code = exit_.code
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def sweep_main(args, capsys) -> tuple[int, str]:
    """`python -m ganstudy.sweep args` run in this process (the trials still each in a process of their own):
    its exit status and what it printed (stdout, Optuna's log lines, then stderr). Cheaper than `start` by an
    interpreter that imports MLflow and Optuna and a fork server that imports TensorFlow: for tests whose point
    is not signals or processes."""
    import logging

    import optuna

    from ganstudy import sweep

    logged = []
    to_list = logging.Handler()
    to_list.emit = lambda record: logged.append(record.getMessage())
    optuna.logging.get_logger("optuna").addHandler(to_list)
    handler = signal.getsignal(signal.SIGINT)
    try:
        code, out, err = call_main(sweep.main, args, capsys)
    finally:
        signal.signal(signal.SIGINT, handler)  # main() installs its own
        optuna.logging.get_logger("optuna").removeHandler(to_list)
    return code, "\n".join([out, *logged, err])


def start(tmp_path, args, new_session=False):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "ganstudy.sweep", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=new_session)


def load(tmp_path):
    import optuna

    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, store_template):
    """The tiny sweep, run once to its end: its folder, with what the command printed in sweep.log."""
    tmp_path = tmp_path_factory.mktemp("tiny_study")
    shutil.copy(store_template, tmp_path / "mlflow.db")
    proc = start(tmp_path, sweep_args(tmp_path))
    out, _ = proc.communicate(timeout=600)
    (tmp_path / "sweep.log").write_text(out)
    assert proc.returncode == 0, out
    return tmp_path
