"""What each lever buys: the confirmed winner against itself with one lever changed, each alone, with the same
seeds at the same epochs as confirm. A lever the winner uses goes back to the article's choice; a lever it leaves
at the article's choice is turned on. The sweep file's `levers` name each lever's two choices."""
from __future__ import annotations

import optuna
from omegaconf import DictConfig, OmegaConf

from ganstudy.comparison_view import print_table
from ganstudy.confirm import arm_setting, arms, compare, log_artifacts, log_summary


def winner(equal_epochs: dict, direction: str) -> str:
    """The confirm arm with the best mean objective at equal epochs."""
    means = {arm: s["mean"] for arm, s in equal_epochs.items() if s["mean"] is not None}
    return (min if direction == "minimize" else max)(means, key=means.get)


def choice(cfg: DictConfig, key: str):
    """A setting's value in a composed config; a config group's (loss) is its choice's name."""
    value = OmegaConf.select(cfg, key)
    return value.name if OmegaConf.is_dict(value) else value


def same(a, b) -> bool:
    """Two choices are equal as numbers (0 and 0.0) or else as text."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def lever_arms(reference: list[str], levers: DictConfig) -> dict[str, list[str]]:
    """Arm name -> the reference's overrides with one lever switched to its other choice."""
    from ganstudy.sweep_spec import runnable

    cfg = runnable(reference)
    out = {}
    for key, (article, other) in levers.items():
        value = other if same(choice(cfg, key), article) else article
        out[f"{key.rsplit('.', 1)[-1]}_{value}"] = reference + [f"{key}={value}"]
    return out


def ablation(study: optuna.Study, spec: DictConfig, parent_run_id: str, confirmed: dict) -> dict:
    """Train each one-lever arm (seeds 1..spec.seeds, the base's epochs) beside the confirmed winner, whose
    confirm runs are reused; log ablation.json and ablation.png in the study run, print the table and return
    {"reference": arm, "equal_epochs": {arm: summary}}."""
    reference = winner(confirmed["equal_epochs"], spec.direction)
    overrides = arms(study, spec)[reference]
    setting = arm_setting(study, spec, "ablation")
    client = setting.client
    summary = compare(spec, setting, parent_run_id, "epochs", {reference: overrides,
                                                               **lever_arms(overrides, spec.levers)}, [])
    results = {"reference": reference, "equal_epochs": summary}
    log_summary(client, parent_run_id, "ablation", summary)
    log_artifacts(client, parent_run_id, "ablation", results, spec.objective)
    print(f"\nablation: each lever changed alone from the {reference} settings")
    print_table(summary, spec)
    return results
