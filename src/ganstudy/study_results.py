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


def interval(s: dict, n_reference: int, dash: str = "–") -> str:
    """An opponent's 95% interval of the ratio and the seeds it rests on, "0.445–0.517, n = 3" ("n = 3 and 2":
    the reference's, then this arm's), or "no interval" and why; blank when there is no ratio."""
    if s.get("ratio") is None:
        return ""
    n = n_reference if n_reference == s["n"] else f"{n_reference} and {s['n']}"
    if not s.get("ratio_ci"):
        return f"no interval, n = {n}" + ("" if min(n_reference, s["n"]) < 2 else " (a mean <= 0: no log ratio)")
    return f"{s['ratio_ci'][0]:.3f}{dash}{s['ratio_ci'][1]:.3f}, n = {n}"


def ended(trial) -> bool:
    """Whether a trial has a value to show: complete, or pruned after reporting one."""
    from optuna.trial import TrialState

    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.PRUNED and bool(trial.intermediate_values))


def last_value(trial) -> float:
    """An ended trial's value: a complete trial's, or a pruned one's last reported value (for a best-so-far
    objective such as fid_best: a bound that more epochs could only have improved)."""
    from optuna.trial import TrialState

    return trial.value if trial.state == TrialState.COMPLETE else trial.intermediate_values[max(trial.intermediate_values)]


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
