"""Who trains a confirm or ablation run: a claim in the study's Optuna storage, so that confirm workers on any
number of machines that share the study train each run once. A claim is a trial of the companion study
`<study>-<instance>-runs`: RUNNING with a heartbeat while its worker trains the run (a dead worker's claim goes
stale and is failed, so another worker takes the run over), COMPLETE with the run's MLflow id once trained, FAIL
if the training failed or was interrupted. Of the live claims on one run, the first made is the holder."""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from ganstudy.storage import RUN_ATTR, make_storage

KEY_ATTR, HOST_ATTR, PID_ATTR = "run", "host", "pid"
# With concurrent writers (PostgreSQL), a claim made a moment before ours may commit after ours: by then it has.
# SQLite and journal files take one writer at a time.
SETTLE_SECONDS = 2.0


def claims_name(study_name: str, instance: str) -> str:
    return f"{study_name}-{instance}-runs"


@dataclass
class Claim:
    """This worker's hold on a run, or (`done_by`) the MLflow run that another worker trained instead. The
    holder sets `run_id` once its run has trained: the claim then ends COMPLETE, else FAIL."""
    done_by: Optional[str] = None
    run_id: Optional[str] = None


class RunClaims:
    """The claims on one study instance's confirm and ablation runs, in the study's storage."""

    def __init__(self, url: str, heartbeat: int, name: str):
        self.storage = make_storage(url, heartbeat, retry_stale=False)
        self.study = optuna.create_study(storage=self.storage, study_name=name, load_if_exists=True)
        self.study_id = self.storage.get_study_id_from_name(name)
        self.heartbeat = heartbeat if "://" in url else None  # a journal file has no heartbeat
        self.settle = 0.0 if url.startswith("sqlite") or "://" not in url else SETTLE_SECONDS
        self.poll = min(heartbeat, 10)

    @contextmanager
    def hold(self, key: str, stop: Optional[threading.Event] = None) -> Iterator[Claim]:
        """Hold run KEY while the body trains it; while another worker holds it, wait: its claim ends COMPLETE
        (then the yielded claim's `done_by` is that worker's run) or fails (then this worker takes it). The
        wait ends with KeyboardInterrupt when `stop` is set (Ctrl-C)."""
        told, stop = False, stop or threading.Event()
        while (taken := self._take(key)) is None:
            if not told:
                print(f"confirm: another worker is training {key}; waiting for it", flush=True)
                told = True
            if stop.wait(self.poll):
                raise KeyboardInterrupt
        if isinstance(taken, str):
            yield Claim(done_by=taken)
            return
        claim, stop = Claim(), self._beat(taken)
        try:
            yield claim
        finally:
            stop.set()
            if claim.run_id is not None:
                self.storage.set_trial_user_attr(taken, RUN_ATTR, claim.run_id)
                self.storage.set_trial_state_values(taken, TrialState.COMPLETE, [0.0])
            else:
                self.storage.set_trial_state_values(taken, TrialState.FAIL)

    def _take(self, key: str):
        """The MLflow run of a finished claim on KEY (str), the id of this worker's new claim if it is the
        first live one (int), or None while another worker holds it."""
        self._fail_dead()
        claims = self._claims(key)
        if done := [t for t in claims if t.state == TrialState.COMPLETE]:
            return done[-1].user_attrs[RUN_ATTR]
        if claims:
            return None
        mine = self.storage.create_new_trial(self.study_id, _claim(key))
        if self.heartbeat:
            self.storage.record_heartbeat(mine)
        time.sleep(self.settle)
        if min(t._trial_id for t in self._claims(key)) == mine:
            return mine
        self.storage.set_trial_state_values(mine, TrialState.FAIL)  # another worker's claim came first
        return None

    def _claims(self, key: str) -> list[FrozenTrial]:
        """The live and finished claims on KEY, oldest first."""
        return [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                if t.user_attrs.get(KEY_ATTR) == key]

    def _fail_dead(self) -> None:
        """Claims whose worker died: silent for 2 heartbeats, or a process of this machine that has ended."""
        if self.heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(HOST_ATTR) == socket.gethostname() and not _alive(t.user_attrs.get(PID_ATTR)):
                self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def _beat(self, trial_id: int) -> threading.Event:
        """A heartbeat for the claim until the returned event is set."""
        stop = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # noqa: BLE001 - the storage retries; a missed beat is not the run's end
                    print(f"warning: claim heartbeat: {type(err).__name__}", file=sys.stderr, flush=True)
        if self.heartbeat:
            threading.Thread(target=beat, daemon=True).start()
        return stop


def _claim(key: str) -> FrozenTrial:
    return FrozenTrial(number=0, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(),
                       datetime_complete=None, params={}, distributions={}, system_attrs={}, intermediate_values={},
                       user_attrs={KEY_ATTR: key, HOST_ATTR: socket.gethostname(), PID_ATTR: os.getpid()}, trial_id=0)


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
