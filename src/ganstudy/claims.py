"""Who trains a confirm or ablation run: a claim in the study's Optuna storage, so that confirm workers on any
number of machines that share the study train each run once. A claim is a trial of the companion study
`<study>-<instance>-runs`: RUNNING with a heartbeat while its worker trains the run (a dead worker's claim goes
stale and is failed, so another worker takes the run over), COMPLETE with the run's MLflow id once trained, FAIL
(with the reason) if the training failed. Of the live claims on one run, the first made is the holder: Optuna
makes a study's trials one at a time (it locks the study's row), so trial ids follow the order of creation."""
from __future__ import annotations

import os
import socket
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, Optional

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from ganstudy.storage import FAIL_ATTR, JOURNAL_NOTE, RUN_ATTR, make_storage

KEY_ATTR, HOST_ATTR, PID_ATTR = "run", "host", "pid"


def claims_name(study_name: str, instance: str) -> str:
    return f"{study_name}-{instance}-runs"


@dataclass
class Claim:
    """This worker's hold on a run, or what another worker made of it: `done_by` (its MLflow run) or `failed`
    (why its training failed, while this worker waited). The holder sets `run_id` once its run has trained, or
    `failed`: the claim then ends COMPLETE or FAIL with the reason; an exception (Ctrl-C) ends it FAIL without
    one, so that another worker takes the run over."""
    done_by: Optional[str] = None
    run_id: Optional[str] = None
    failed: Optional[str] = None


class RunClaims:
    """The claims on one study instance's confirm and ablation runs, in the study's storage."""

    def __init__(self, url: str, heartbeat: int, name: str):
        self.storage = make_storage(url, heartbeat, retry_stale=False)
        self.study = optuna.create_study(storage=self.storage, study_name=name, load_if_exists=True)
        self.study_id = self.storage.get_study_id_from_name(name)
        self.heartbeat = heartbeat if "://" in url else None  # a journal file has no heartbeat
        self.poll = min(heartbeat, 10)

    @contextmanager
    def hold(self, key: str, stop: Optional[threading.Event] = None) -> Iterator[Claim]:
        """Hold run KEY while the body trains it; while another worker holds it, wait: its claim ends COMPLETE
        (the yielded claim's `done_by` is that worker's run), fails with a reason (`failed`: this run's result
        for this confirm) or fails without one (a dead worker: this worker takes it). The wait ends with
        KeyboardInterrupt when `stop` is set (Ctrl-C)."""
        waited_on, stop = set(), stop or threading.Event()
        while isinstance(taken := self._take(key, waited_on), set):
            if not waited_on:
                note = "" if self.heartbeat else f" ({JOURNAL_NOTE})"
                print(f"confirm: another worker is training {key}; waiting for it{note}", flush=True)
            waited_on |= taken
            if stop.wait(self.poll):
                raise KeyboardInterrupt
        if isinstance(taken, Claim):
            yield taken
            return
        claim, beating = Claim(), self._beat(taken)
        try:
            yield claim
        finally:
            beating.set()
            self._end(taken, claim)

    def _take(self, key: str, waited_on: set[int]):
        """What to do about run KEY: a Claim of another worker's outcome, the id of this worker's new claim
        (int, it holds the run), or the ids of the live claims another worker holds (set: wait)."""
        self._fail_dead()
        claims = self._claims(key)
        if done := [t for t in claims if t.state == TrialState.COMPLETE]:
            return Claim(done_by=done[-1].user_attrs[RUN_ATTR])
        if failed := [t for t in claims if t.state == TrialState.FAIL and t._trial_id in waited_on
                      and FAIL_ATTR in t.user_attrs]:
            return Claim(failed=failed[-1].user_attrs[FAIL_ATTR])
        if live := {t._trial_id for t in claims if t.state == TrialState.RUNNING}:
            return live
        mine = self.storage.create_new_trial(self.study_id, _claim(key))
        if self.heartbeat:
            self.storage.record_heartbeat(mine)
        if min(t._trial_id for t in self._claims(key) if t.state != TrialState.FAIL) == mine:
            return mine
        self._fail(mine)  # another worker's claim came first
        return {mine}

    def _end(self, trial_id: int, claim: Claim) -> None:
        """The claim's end; one that another worker already failed (this worker's heartbeat was lost for 2
        beats) keeps that state, and this worker's result still counts."""
        try:
            if claim.run_id is not None:
                self.storage.set_trial_user_attr(trial_id, RUN_ATTR, claim.run_id)
                self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.0])
            else:
                if claim.failed is not None:
                    self.storage.set_trial_user_attr(trial_id, FAIL_ATTR, claim.failed[:1000])
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            print(f"warning: the claim on {self._key(trial_id)} was taken over while its run trained (its heartbeat "
                  "was lost): another worker may train it too", file=sys.stderr, flush=True)

    def _key(self, trial_id: int) -> str:
        return self.storage.get_trial(trial_id).user_attrs.get(KEY_ATTR, "?")

    def _claims(self, key: str) -> list[FrozenTrial]:
        """The claims on KEY, oldest first."""
        return [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get(KEY_ATTR) == key]

    def _fail(self, trial_id: int) -> None:
        try:
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass  # another thread or worker failed it first

    def _fail_dead(self) -> None:
        """Claims whose worker died: silent for 2 heartbeats, or a process of this machine that has ended."""
        if self.heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(HOST_ATTR) == machine() and not _alive(t.user_attrs.get(PID_ATTR)):
                self._fail(t._trial_id)

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


def machine() -> str:
    """This process's machine as far as process ids go: the host name and the PID namespace (containers on one
    host name have their own)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace}".strip()


def _claim(key: str) -> FrozenTrial:
    return FrozenTrial(number=0, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(),
                       datetime_complete=None, params={}, distributions={}, system_attrs={}, intermediate_values={},
                       user_attrs={KEY_ATTR: key, HOST_ATTR: machine(), PID_ATTR: os.getpid()}, trial_id=0)


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
