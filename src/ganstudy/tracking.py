"""MLflow plumbing: the experiment, starting or resuming a run, and finding a run again."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ganstudy.config import ConfigError
from ganstudy.redact import mask
from ganstudy.tags import Tag

RUN_ID_FILE = "mlflow_run_id.txt"


# Marks the experiment as model training (MLflow 3's UI still opens it in its GenAI view: see ui_hint).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def ui_hint(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """How to see a run (or its experiment) in the MLflow UI: the command that starts the UI over a local
    store, and a link that opens the model-training view. MLflow 3.17 opens every experiment in its GenAI
    view unless the URL asks for `workflowType=machine_learning`."""
    uri = mask(uri)
    server = uri.rstrip("/") if uri.startswith(("http://", "https://")) else None
    link = (f"{server or LOCAL_UI}/#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
            + "?workflowType=machine_learning")
    if server:
        return f"  see it: {link}"
    return f"  see it: mlflow ui --backend-store-uri {uri}\n          then open {link}"


def check_server(uri: str, timeout: float = 10) -> None:
    """A tracking server must answer before any work starts (MLflow itself retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as err:
        reason = type(err).__name__
        raise ConfigError(f"tracking.uri={mask(uri)}: no MLflow server answers there ({reason}); start one, or unset "
                          "MLFLOW_TRACKING_URI for the local store") from None


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


@contextlib.contextmanager
def _file_lock(path: Path):
    """Hold an exclusive lock on this file (created if need be) across processes on this machine."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def sqlite_init_lock(uri: str):
    """Serialise first use of an SQLite database across processes: workers started together would
    otherwise run its schema migrations at the same time and break it."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    with _file_lock(db.with_name(db.name + ".lock")):
        yield


def _point_at(uri: str) -> None:
    """Point MLflow at a store once a server there answers; a new SQLite store's schema set-up stays quiet
    (MLflow would print its migrations line by line), and so do the system metrics' start and stop lines."""
    check_server(uri)
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration", "mlflow.system_metrics"):
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)


def use_store(uri: str) -> None:
    """Point MLflow at a store and set a new SQLite store up now, under the file lock."""
    _point_at(uri)
    with sqlite_init_lock(uri):
        MlflowClient().search_experiments(max_results=1)


def use_experiment(tracking_cfg) -> str:
    """Point MLflow at the configured store and experiment (created on first use, under the file lock)."""
    _point_at(tracking_cfg.uri)
    with sqlite_init_lock(tracking_cfg.uri):
        return _experiment_id(tracking_cfg)


def _experiment_id(tracking_cfg) -> str:
    client = MlflowClient()
    exp = client.get_experiment_by_name(tracking_cfg.experiment)
    if exp is None:
        location = None
        if _is_local(tracking_cfg.uri):
            location = Path(tracking_cfg.artifact_root).resolve().as_uri()
        try:
            exp_id = client.create_experiment(tracking_cfg.experiment, location, tags=EXPERIMENT_TAGS)
        except MlflowException:  # another worker created it first
            exp_id = client.get_experiment_by_name(tracking_cfg.experiment).experiment_id
    else:
        exp_id = exp.experiment_id
        if exp.tags.get("mlflow.experimentKind") is None:
            client.set_experiment_tag(exp_id, "mlflow.experimentKind", EXPERIMENT_TAGS["mlflow.experimentKind"])
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def find_run(ref: str, key: str = "resume=", uri_option: str = "tracking.uri") -> tuple[str, Path | None]:
    """Resolve a run directory or an MLflow run id to (run id, its local directory or None); `key` names the
    option, `uri_option` the command's way of naming the tracking store."""
    path = Path(ref).expanduser()
    where = mask(mlflow.get_tracking_uri())
    if path.is_dir():
        id_file = path / RUN_ID_FILE
        if not id_file.exists():
            raise ConfigError(f"{key}{ref}: this directory holds no ganstudy run ({RUN_ID_FILE} is missing)")
        run_id = id_file.read_text().strip()
        try:
            MlflowClient().get_run(run_id)
        except MlflowException:
            raise ConfigError(f"{key}{ref}: its run {run_id} is not in the tracking store {where} (set "
                              f"{uri_option} or MLFLOW_TRACKING_URI to the store it was logged to)") from None
        return run_id, path
    try:
        run = MlflowClient().get_run(ref)
    except MlflowException:
        raise ConfigError(f"{key}{ref}: no such run directory, nor a run id in {where}") from None
    return run.info.run_id, _own_folder(run.data.tags.get(Tag.RUN_DIR), run.info.run_id)


def folder_run_id(folder: Path) -> str | None:
    """The run id a run folder's mlflow_run_id.txt names; None when the folder holds no run."""
    id_file = Path(folder) / RUN_ID_FILE
    return id_file.read_text().strip() if id_file.is_file() else None


def _own_folder(folder: str | None, run_id: str) -> Path | None:
    """The folder a run's tag names, if it still holds that run (its id file says so): a folder that now
    holds another run, or none, is not written to."""
    return Path(folder) if folder and folder_run_id(Path(folder)) == run_id else None


def mark_failed(run_id: str, reason: str) -> None:
    """Record why a run failed (its FAIL_REASON tag) and end it FAILED if its process could not."""
    MlflowClient().set_tag(run_id, Tag.FAIL_REASON, reason[:5000])  # MLflow's limit for a tag's value
    end_if_running(run_id, "FAILED")


def end_if_running(run_id: str, status: str) -> None:
    """End a run whose process died before it could: only a RUNNING run, so an ended one keeps its status."""
    client = MlflowClient()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status)
