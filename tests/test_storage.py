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
