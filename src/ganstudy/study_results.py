"""The study's results as plain values, shared downward by confirm, the report and the study page: what a run
spent, the comparisons a confirm makes, table cells, and each trial's cost and state."""
from __future__ import annotations

BUDGETS = ("epochs", "updates", "images", "train_seconds")  # what a run spent, as its metrics say
COMPARISONS = {"epochs": "equal_epochs", "time": "equal_time"}


def comparisons(results: dict) -> dict[str, dict]:
    """The comparisons a confirm result holds, by name (equal_epochs, equal_time)."""
    return {name: results[name] for name in COMPARISONS.values() if name in results}


def fmt(value, spec: str) -> str:
    """A table cell: the value in that format, or blank for none."""
    return "" if value is None else format(value, spec)


def state_counts(trials: list) -> str:
    """How many trials are in each state, e.g. "3 complete, 8 pruned, 1 fail"."""
    from optuna.trial import TrialState

    states = [t.state for t in trials]
    return ", ".join(f"{states.count(s)} {s.name.lower()}" for s in
                     (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING) if s in states)


def trial_cost(trial) -> tuple[int, float | None]:
    """(epochs trained, wall minutes) of a trial; epochs as its reports say (a failed one's may be fewer)."""
    epochs = max(trial.intermediate_values, default=0)
    if trial.datetime_start is None or trial.datetime_complete is None:
        return epochs, None
    return epochs, (trial.datetime_complete - trial.datetime_start).total_seconds() / 60
