"""Where a study lives: Optuna storage from a URL, with the heartbeat that recovers a dead worker's trial."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import optuna

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"


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
