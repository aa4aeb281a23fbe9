"""Where a study lives: Optuna storage from a URL, with the heartbeat that recovers a dead worker's trial."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import optuna

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"


def check_url(url: str) -> None:
    """A storage a sweep can open: a database URL of a dialect SQLAlchemy knows, or a journal file path."""
    if "://" not in url:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from ganstudy.config import ConfigError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError):
        raise ConfigError(f"storage={url}: not a database URL that SQLAlchemy knows (sqlite:///FILE, "
                          "postgresql://..., mysql://...) nor a journal file path") from None


JOURNAL_NOTE = ("a journal-file storage has no heartbeat: a trial whose worker died stays RUNNING and a rerun "
                "waits for it; an SQLite or PostgreSQL URL has such trials failed and retried")


def make_storage(url: str, heartbeat: Optional[int] = None):
    """Optuna storage with a heartbeat: a trial whose worker died is failed after 2 beats and retried once."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if "://" not in url:  # a journal file: shared by workers on one machine or a shared disk, no heartbeat
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url))
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if heartbeat is None:  # a reader (the report's plots), not a worker
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                                      grace_period=2 * heartbeat, heartbeat_stale_trial_callback=_end_and_retry)


def _end_and_retry(study: optuna.Study, trial) -> None:
    """A dead worker's trial: its MLflow run ends as KILLED (no ghost RUNNING run), and the trial is queued again."""
    from ganstudy.tracking import end_if_running

    if "mlflow_run_id" in trial.user_attrs:
        end_if_running(trial.user_attrs["mlflow_run_id"], "KILLED")
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)
