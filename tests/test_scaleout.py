"""Scale out as the README says: workers on a real PostgreSQL server and a real MLflow tracking server, one of
them killed mid-trial; and workers that start in the same instant get one parent run."""
import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import free_port, serve
from ganstudy import sweep_spec
from ganstudy.config import compose

pytestmark = pytest.mark.slow
INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A PostgreSQL server (databases optuna and mlflow) and an MLflow server on it, both on loopback only."""
    if not INITDB:
        pytest.skip("PostgreSQL's binaries are not installed (no /usr/lib/postgresql/*/bin/initdb; "
                    ".ci/run installs Debian's postgresql package)")
    import psycopg

    bin_dir = Path(INITDB[-1]).parent
    # PostgreSQL refuses to run as root: as root (CI), the server runs as the postgres user, in a folder of its own.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_dir = Path(tempfile.mkdtemp(prefix="ganstudy-pg-"))
    if as_user:
        shutil.chown(pg_dir, "postgres")
    password = secrets.token_hex(16)
    (pg_dir / "password").write_text(password)

    def pg(*args):
        subprocess.run([*as_user, *args], cwd=pg_dir, check=True)

    tmp = tmp_path_factory.mktemp("servers")
    server = None
    try:
        pg(bin_dir / "initdb", "-D", pg_dir / "data", "-U", "postgres", "--auth=scram-sha-256",
           f"--pwfile={pg_dir / 'password'}", "--no-sync")
        port = free_port()
        pg(bin_dir / "pg_ctl", "-D", pg_dir / "data", "-l", pg_dir / "server.log", "-w", "-o",
           f"-k {pg_dir} -p {port} -c listen_addresses=127.0.0.1", "start")
        db = f"postgres:{password}@127.0.0.1:{port}"
        with psycopg.connect(f"postgresql://{db}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
            conn.execute("CREATE DATABASE mlflow")
        web_port = free_port()
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # its GenAI job runner: 8 processes
        url = f"http://127.0.0.1:{web_port}"
        server = serve([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                        f"postgresql+psycopg://{db}/mlflow", "--artifacts-destination", str(tmp / "artifacts"),
                        "--host", "127.0.0.1", "--port", str(web_port), "--workers", "1"],
                       f"{url}/health", limit=120, log=tmp / "mlflow_server.log", cwd=tmp, env=env)
        tracking_password = secrets.token_hex(16)  # sent as basic auth, which a server without auth ignores
        yield SimpleNamespace(optuna=f"postgresql+psycopg://{db}/optuna", mlflow=url,
                              mlflow_login=f"http://ganstudy:{tracking_password}@127.0.0.1:{web_port}",
                              secrets=(password, tracking_password),
                              stop=lambda: pg(bin_dir / "pg_ctl", "-D", pg_dir / "data", "-m", "fast", "-w", "stop"),
                              start=lambda: pg(bin_dir / "pg_ctl", "-D", pg_dir / "data", "-l", pg_dir / "server.log",
                                               "-w", "-o", f"-k {pg_dir} -p {port} -c listen_addresses=127.0.0.1",
                                               "start"))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        if (pg_dir / "data" / "postmaster.pid").exists():
            pg(bin_dir / "pg_ctl", "-D", pg_dir / "data", "-m", "fast", "-w", "stop")
        shutil.rmtree(pg_dir)


def worker(folder: Path, servers, n_trials: int, study: str = "tiny", heartbeat: int = 5,
           tracking: str | None = None) -> subprocess.Popen:
    """`python -m ganstudy.sweep` of the tiny study in a folder of its own (its trial folders, its log), as
    on a machine of its own; in a session of its own, so that its whole process group can be killed. It logs
    to the MLflow server with a login in its URL, unless `tracking` names another store."""
    folder.mkdir()
    tracking = tracking or servers.mlflow_login
    args = ["sweep=tiny", f"study_name={study}", f"n_trials={n_trials}", f"heartbeat={heartbeat}",
            f"storage={servers.optuna}", f"out_dir={folder}",
            "base=[experiment=tiny,train.epochs=2,eval.detector=false,train.progress=none,train.checkpoints=latest,"
            f"tracking.uri={tracking}]"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MLFLOW_TRACKING_URI": tracking}
    with open(folder / "worker.log", "w") as log:
        return subprocess.Popen([sys.executable, "-m", "ganstudy.sweep", *args], cwd=folder, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def workers():
    """The sweep workers a test starts; any still running when it ends (it failed) are killed, processes and all."""
    started = []
    yield started
    for w in started:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait()


def started_trial(client: MlflowClient, url: str, study: str = "tiny"):
    """A RUNNING trial whose MLflow run has started, or None. Until a worker has made the study's parent run,
    the test keeps off the Optuna database: the workers race to set it up, as on an empty database."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not client.search_runs(experiments, f"tags.`ganstudy.study` = '{study}'", max_results=1):
        return None
    trials = optuna.load_study(study_name=study, storage=url).get_trials(states=(TrialState.RUNNING,))
    return next((t for t in trials if "mlflow_run_id" in t.user_attrs), None)


def test_workers_share_a_study_on_postgresql_and_an_mlflow_server_through_a_killed_worker(servers, workers, tmp_path):
    """Two workers started together, one SIGKILLed (with its trial's process) once its trial's run has
    started, and a replacement: the study ends with its n_trials, one parent run, every trial nested under
    it, and no trial or run left RUNNING. The database password in the storage URL and the tracking login in
    the tracking URL appear in no param, tag, artifact, trial attribute or printed line."""
    from ganstudy.report import PARENT_ATTR
    from ganstudy.sweep import counted_trials

    n_trials = 3
    folders = [tmp_path / f"worker{i}" for i in range(3)]
    workers += [worker(folder, servers, n_trials) for folder in folders[:2]]

    def logs() -> str:
        return "\n".join(f"--- {f.name}\n{(f / 'worker.log').read_text()}" for f in folders if f.exists())

    client = MlflowClient(servers.mlflow)
    deadline = time.time() + 300
    while (victim := started_trial(client, servers.optuna)) is None:
        assert time.time() < deadline and all(w.poll() is None for w in workers), logs()
        time.sleep(0.5)
    # The trial's run folder says whose it is.
    (owner,) = [i for i, f in enumerate(folders) if f"run_dir={f}/" in " ".join(victim.user_attrs["overrides"])]
    os.killpg(workers[owner].pid, signal.SIGKILL)
    workers.append(worker(folders[2], servers, n_trials))
    for w in workers:
        w.wait(timeout=600)
    assert [w.returncode for i, w in enumerate(workers) if i != owner] == [0, 0], logs()

    study = optuna.load_study(study_name="tiny", storage=servers.optuna)
    trials = study.get_trials()
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL and "fail_reason" not in killed.user_attrs, logs()
    assert TrialState.RUNNING not in {t.state for t in trials}
    assert n_trials <= counted_trials(study) <= n_trials + 1, [(t.number, t.state) for t in trials]

    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, "tags.`ganstudy.study` = 'tiny' and tags.`ganstudy.role` = 'study'")
    assert [p.info.run_id for p in parents] == [study.user_attrs[PARENT_ATTR]]
    for t in trials:
        assert client.get_run(t.user_attrs["mlflow_run_id"]).data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert client.get_run(killed.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    assert not [r.info.run_id for r in client.search_runs(experiments) if r.info.status == "RUNNING"]

    written = [logs().encode(), repr(study.user_attrs).encode(), repr([t.user_attrs for t in trials]).encode()]
    for run in client.search_runs(experiments, run_view_type=ViewType.ALL):
        written += [repr(run.data.params).encode(), repr(run.data.tags).encode()]
        folder = tmp_path / "artifacts" / run.info.run_id
        client.download_artifacts(run.info.run_id, "", str(folder))
        written += [f.read_bytes() for f in folder.rglob("*") if f.is_file()]
    written += [f.read_bytes() for w in folders for f in w.rglob("*") if f.is_file()]
    assert "postgresql+psycopg://postgres:***@127.0.0.1" in logs() or any(b"postgres:***@" in w for w in written)
    for secret in servers.secrets:
        assert not [w[:200] for w in written if secret.encode() in w]


def test_workers_that_start_together_elect_one_parent_run(servers, monkeypatch):
    """Two workers create their parent runs before either looks (as on two machines in the same instant):
    both take the same one, the other is deleted, and another study's parent run of the same name (another
    instance) is not taken, however recent."""
    from ganstudy import report
    from ganstudy.tags import Tag
    from ganstudy.tracking import use_experiment

    spec = sweep_spec.load("tiny", ["study_name=race"])
    tracking = compose(["experiment=tiny", "run_dir=unused", f"tracking.uri={servers.mlflow}"]).tracking
    optuna.create_study(study_name="race", storage=servers.optuna)
    client = MlflowClient(servers.mlflow)
    experiment = use_experiment(tracking)
    tags = {Tag.STUDY: "race", Tag.ROLE: "study"}
    earlier = client.create_run(experiment, tags={**tags, Tag.INSTANCE: "race0"}).info.run_id

    real_create = MlflowClient.create_run
    both = threading.Barrier(2, timeout=60)

    def create_run(self, *args, **kwargs):
        run = real_create(self, *args, **kwargs)
        both.wait()  # neither worker goes on until both have created theirs
        return run

    monkeypatch.setattr(MlflowClient, "create_run", create_run)

    def study():
        return optuna.load_study(study_name="race", storage=servers.optuna)

    with ThreadPoolExecutor(2) as pool:
        elected = list(pool.map(lambda _: report.parent_run(study(), spec, tracking, "race1"), range(2)))
    assert elected[0] == elected[1] == study().user_attrs[report.PARENT_ATTR]
    query = "tags.`ganstudy.study` = 'race'"
    assert sorted(r.info.run_id for r in client.search_runs([experiment], query)) == sorted([earlier, elected[0]])
    assert len(client.search_runs([experiment], query, run_view_type=ViewType.DELETED_ONLY)) == 1
    assert "sweep.yaml" in [a.path for a in client.list_artifacts(elected[0])]


def test_a_study_rides_out_a_postgresql_restart(servers, workers, tmp_path):
    """Two workers on PostgreSQL; the database stopped for 30 s while a trial trains, then started again
    (the tracking store, SQLite here, stays up): the study ends at its total, no trial failed, lost or left
    RUNNING. Runs last in this module: the MLflow server on the same PostgreSQL sees the outage too."""
    n_trials = 3
    store = f"sqlite:///{tmp_path}/mlflow.db"
    folders = [tmp_path / f"worker{i}" for i in range(2)]
    client = MlflowClient(store)
    client.search_experiments()  # the store set up before the workers start: this test's reads take no lock
    workers += [worker(folder, servers, n_trials, study="restart", heartbeat=60, tracking=store) for folder in folders]
    deadline = time.time() + 300
    while started_trial(client, servers.optuna, "restart") is None:
        assert time.time() < deadline and all(w.poll() is None for w in workers)
        time.sleep(0.5)
    servers.stop()
    time.sleep(30)
    servers.start()
    for w in workers:
        w.wait(timeout=600)
    logs = "\n".join((f / "worker.log").read_text() for f in folders)
    assert [w.returncode for w in workers] == [0, 0], logs
    trials = optuna.load_study(study_name="restart", storage=servers.optuna).get_trials()
    assert len(trials) == n_trials, logs
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}, [(t.number, t.state) for t in trials]
