"""The heartbeat's retry of a dead worker's trial."""
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from ganstudy.storage import _end_and_retry


def test_a_stale_trial_failed_by_two_threads_is_retried_once(tmp_path):
    """Both threads of a jobs=2 worker can fail the same stale trial (SQLite takes no row lock) and call the
    heartbeat's callback: the trial is queued again once, not twice (seen: trials 27 and 28 both retried 25)."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db")
    trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
    study.tell(trial, state=TrialState.FAIL)
    failed = study.trials[0]
    for _ in range(2):
        _end_and_retry(study, failed)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].params == failed.params


def lost_after_commit(monkeypatch, name):
    """RDBStorage.NAME commits, then its connection is lost once (as when a database restarts mid-call)."""
    from sqlalchemy.exc import OperationalError

    original, calls = getattr(optuna.storages.RDBStorage, name), []

    def committed_then_lost(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(result)
        if len(calls) == 1:
            raise OperationalError("COMMIT", None, ConnectionError("server closed the connection unexpectedly"))
        return result
    monkeypatch.setattr(optuna.storages.RDBStorage, name, committed_then_lost)
    return calls


def test_a_retried_write_that_had_been_committed_is_not_made_twice(tmp_path, monkeypatch):
    """A new trial whose creation was committed before the connection dropped is found, not created again; a
    waiting trial this worker took, and a trial it told, stay as the lost call left them."""
    from ganstudy.storage import make_storage

    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat=60))
    created = lost_after_commit(monkeypatch, "_create_new_trial")  # what create_new_trial calls
    trial = study.ask()
    assert len(created) == 1 and [t.number for t in study.get_trials()] == [trial.number]
    params = lost_after_commit(monkeypatch, "_set_trial_param")  # what suggest calls: retried, stored once
    assert trial.suggest_float("x", 0, 1) == study.get_trials()[0].params["x"] and len(params) == 2
    states = lost_after_commit(monkeypatch, "set_trial_state_values")
    study.tell(trial, 3.0)  # the lost call had finished it: no "already finished" error
    assert len(states) == 1 and study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == 3.0
    monkeypatch.undo()
    study.enqueue_trial({"x": 0.5})
    states = lost_after_commit(monkeypatch, "set_trial_state_values")
    taken = study.ask({"x": FloatDistribution(0, 1)})
    assert taken.params == {"x": 0.5} and len(states) == 1  # the enqueued trial, not a new one after it
    assert [(t.number, t.state) for t in study.get_trials()] == [(0, TrialState.COMPLETE), (1, TrialState.RUNNING)]
