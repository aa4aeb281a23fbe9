"""Where a study lives: Optuna storage from a URL, with the heartbeat that recovers a dead worker's trial and
retries that ride out a database restart; the study instance that names its folders and its MLflow run."""
from __future__ import annotations

import copy
import functools
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

import optuna

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
# Optuna user attributes ganstudy sets: the study's instance; a trial's MLflow run and why it failed.
INSTANCE_ATTR, RUN_ATTR, FAIL_ATTR = "ganstudy_instance", "mlflow_run_id", "fail_reason"
RETRY_SECONDS = 120  # how long a storage call waits for its database to come back


def storage_url(spec) -> str:
    """The sweep's storage URL: its `storage`, else SQLite under mlruns/."""
    return spec.storage or DEFAULT_STORAGE


def check_url(url: str) -> None:
    """A storage a sweep can open: a database URL of a dialect SQLAlchemy knows, or a journal file path."""
    if "://" not in url:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from ganstudy.config import ConfigError
    from ganstudy.redact import mask

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError):
        raise ConfigError(f"storage={mask(url)}: not a database URL that SQLAlchemy knows (sqlite:///FILE, "
                          "postgresql://..., mysql://...) nor a journal file path") from None


def existing_study(spec) -> optuna.Study:
    """The sweep's study as it is stored, or ConfigError: a missing SQLite file is not created by asking."""
    from ganstudy.config import ConfigError

    url = storage_url(spec)
    missing = ConfigError(f"study_name={spec.study_name}: no such study in {url}")
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise missing
    try:
        return optuna.load_study(study_name=spec.study_name, storage=make_storage(url))
    except KeyError:
        raise missing from None


JOURNAL_NOTE = ("a journal-file storage has no heartbeat: a trial whose worker died stays RUNNING and a rerun "
                "waits for it; an SQLite or PostgreSQL URL has such trials failed and retried")


def make_storage(url: str, heartbeat: Optional[int] = None, retry_stale: bool = True):
    """Optuna storage with a heartbeat: a trial whose worker died is failed after 2 beats (and retried once,
    unless `retry_stale` is false)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if "://" not in url:  # a journal file: shared by workers on one machine or a shared disk, no heartbeat
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url))
    # pool_pre_ping: a pooled connection that a database restart broke is replaced, not used
    engine = {"pool_pre_ping": True, **({"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {})}
    if heartbeat is None:  # a reader (the report's plots), not a worker
        return RetryingRDBStorage(url, engine_kwargs=engine)
    return RetryingRDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                              heartbeat_stale_trial_callback=_end_and_retry if retry_stale else None)


def _connection_lost(err: BaseException) -> bool:
    """The database did not answer (down, restarting, locked), as opposed to a query it refused."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    return any(isinstance(e, (OperationalError, InterfaceError)) for e in (err, err.__cause__))


def _retried(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        deadline, pause = time.monotonic() + RETRY_SECONDS, 1.0
        while True:
            try:
                return method(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - re-raised unless the connection was lost
                if not _connection_lost(err) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 10.0)
    return call


CREATE_TOKEN = "ganstudy_create_token"  # a trial's system attribute: which create_new_trial call made it


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose every call waits (up to RETRY_SECONDS) for a database that stopped answering,
    so that a PostgreSQL restart in the middle of a study costs time, not trials; Optuna itself does not retry.
    A write whose connection was lost may have been committed: the two that are not idempotent look first."""

    def _create_new_trial(self, study_id: int, template_trial=None):
        """(What Optuna's cache calls for create_new_trial.) One ask, one trial: the new trial carries a token,
        and a retry returns the trial that the lost call made, if it made one, instead of making a second (which
        would stay RUNNING with no worker)."""
        token = uuid.uuid4().hex
        template = _with_token(template_trial, token)
        lost = []

        def attempt():
            if lost:
                made = [t for t in optuna.storages.RDBStorage.get_all_trials(self, study_id, deepcopy=False)
                        if t.system_attrs.get(CREATE_TOKEN) == token]
                if made:
                    return made[0]
            return _noting_loss(lost, optuna.storages.RDBStorage._create_new_trial, self, study_id, template)
        return _retried(attempt)()

    def set_trial_state_values(self, trial_id: int, state, values=None) -> bool:
        """A retry finds the state the lost call set: a finished trial stays told (no 'already finished'
        error), and a waiting trial this worker took stays this worker's (not left RUNNING with no worker)."""
        lost = []

        def attempt() -> bool:
            if lost:
                now = optuna.storages.RDBStorage.get_trial(self, trial_id)
                if now.state == state and (values is None or now.values == list(values)):
                    return True
            return _noting_loss(lost, optuna.storages.RDBStorage.set_trial_state_values, self, trial_id, state, values)
        return _retried(attempt)()


def _noting_loss(lost: list, call, *args):
    """call(*args); a lost connection is noted in `lost` (the write may have been committed) and re-raised."""
    try:
        return call(*args)
    except Exception as err:
        if _connection_lost(err):
            lost.append(err)
        raise


def _with_token(template, token: str):
    """The trial to create (Optuna's default: RUNNING, started now), carrying the token."""
    from datetime import datetime

    from optuna.trial import FrozenTrial, TrialState

    if template is None:
        template = FrozenTrial(number=0, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(),
                               datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
                               intermediate_values={}, trial_id=0)
    else:
        template = copy.deepcopy(template)
    template.system_attrs = {**template.system_attrs, CREATE_TOKEN: token}
    return template


def _retrying(name: str):
    """RDBStorage's call NAME, retried; the call is looked up when made (so that a test can make it fail)."""
    def call(self, *args, **kwargs):
        return getattr(optuna.storages.RDBStorage, name)(self, *args, **kwargs)
    return functools.wraps(getattr(optuna.storages.RDBStorage, name))(_retried(call))


# The public calls, and the private ones Optuna's cache makes instead of public ones; the two above retry on
# their own.
_CACHE_CALLS = ("_get_stale_trial_ids", "_set_trial_param", "_get_best_trial_id", "_get_trials")
for _name, _member in vars(optuna.storages.RDBStorage).items():
    if callable(_member) and (not _name.startswith("_") or _name in _CACHE_CALLS) \
            and _name not in vars(RetryingRDBStorage):
        setattr(RetryingRDBStorage, _name, _retrying(_name))


def study_instance(study: optuna.Study, wait: float = 10.0) -> str:
    """The id of this instance of the study, set by the worker that created it: a study of the same name in
    another storage, or after its storage was removed, is another instance, with folders and an MLflow run of
    its own. A study from before instances existed (it has trials but no id) gets one now."""
    deadline = time.monotonic() + wait
    while (instance := study.user_attrs.get(INSTANCE_ATTR)) is None and not predates_instances(study) \
            and time.monotonic() < deadline:
        time.sleep(0.5)  # its creator, on another machine, is about to set it
    return new_instance(study) if instance is None else instance


def predates_instances(study: optuna.Study) -> bool:
    """A study that has trials but no instance id: made by a ganstudy from before instances."""
    return INSTANCE_ATTR not in study.user_attrs and bool(study.get_trials(deepcopy=False))


def new_instance(study: optuna.Study) -> str:
    """Mark a study this worker has just created as a new instance; returns its id."""
    instance = uuid.uuid4().hex[:8]
    study.set_user_attr(INSTANCE_ATTR, instance)
    return instance


IDENTITY_ATTR = "ganstudy_identity"  # what decides a trial's value, recorded when the study is made
# Overrides that change where a trial logs or how fast it runs, not its value: workers may differ in them.
BOOKKEEPING = ("tracking.", "run_dir", "train.progress", "train.threads", "train.checkpoints", "train.device")


def identity(spec) -> dict:
    """What decides a trial's value: the objective, its direction, and a fingerprint of the trials' overrides
    (base and trial_overrides, bookkeeping left out)."""
    import hashlib
    import json

    overrides = [o for o in [*spec.base, *spec.trial_overrides] if not str(o).lstrip("+~").startswith(BOOKKEEPING)]
    digest = hashlib.sha1(json.dumps([str(o) for o in overrides]).encode()).hexdigest()[:12]
    return {"objective": spec.objective, "direction": spec.direction, "trial_settings": digest}


def check_identity(study: optuna.Study, spec) -> None:
    """A study continues only under what it was made for: another objective, direction or trial settings would
    mix values that do not compare (KID with FID, 12-epoch trials with 3-epoch ones). A study made before
    identities were recorded takes the current one."""
    from ganstudy.config import ConfigError

    wanted, recorded = identity(spec), study.user_attrs.get(IDENTITY_ATTR)
    if recorded is None:
        if study.direction.name.lower() != spec.direction:
            recorded = {**wanted, "direction": study.direction.name.lower()}
        else:
            study.set_user_attr(IDENTITY_ATTR, wanted)
            return
    changed = [k for k in wanted if recorded.get(k) != wanted[k]]
    if changed:
        was = ", ".join(f"{k}={recorded.get(k)}" for k in changed)
        now = ", ".join(f"{k}={wanted[k]}" for k in changed)
        what = " (base or trial_overrides)" if "trial_settings" in changed else ""
        raise ConfigError(f"study {spec.study_name} was made with {was}, not {now}{what}: its values would not "
                          f"compare; start a new study with study_name=NAME (or another storage)")


def study_dir(out_dir: str, study_name: str, instance: str) -> Path:
    """Where this study instance's trial and confirm runs keep their folders."""
    return Path(out_dir) / f"{study_name}-{instance}"


_stale_lock = threading.Lock()


def _end_and_retry(study: optuna.Study, trial) -> None:
    """A dead worker's trial: its MLflow run ends as KILLED (no ghost RUNNING run), and the trial is queued again,
    once: the threads of one worker (jobs > 1) can both fail the same stale trial (SQLite takes no row lock)."""
    from ganstudy.tracking import end_if_running

    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    with _stale_lock:
        if any(retried(t) == trial.number for t in study.get_trials(deepcopy=False)):
            return
        if RUN_ATTR in trial.user_attrs:
            end_if_running(trial.user_attrs[RUN_ATTR], "KILLED")
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)
