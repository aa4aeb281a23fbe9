"""The study's answer: the best settings against the base settings and the article's, each trained with
several seeds at the same budget: mean ± std of the objective, ratios, Welch p-values and a plot in the
study's MLflow run."""
from __future__ import annotations

import hashlib
import json
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ganstudy.runner import run_isolated, share_of_cores, side_by_side
from ganstudy.tracking import Tag, folder_run_id


def arms(study: optuna.Study, spec: DictConfig) -> dict[str, list[str]]:
    """Each arm's overrides: the best trial's settings first, then its opponents."""
    best = list(spec.base) + [f"{k}={v}" for k, v in study.best_trial.params.items()]
    return {"best": best, spec.base_name: list(spec.base), "article": list(spec.base) + list(spec.baseline)}


def fingerprint(overrides: list[str]) -> str:
    return hashlib.sha1(json.dumps(list(overrides)).encode()).hexdigest()[:12]


def _finished_runs(client: MlflowClient, parent_run_id: str) -> dict[tuple[str, str, int], float]:
    """(arm, overrides fingerprint, seed) -> objective of this study run's finished confirmation runs."""
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{Tag.ROLE}` = 'confirm' "
                                     "and attributes.status = 'FINISHED'")
    return {(r.data.tags[Tag.ARM], r.data.tags.get(Tag.OVERRIDES), int(r.data.tags[Tag.SEED])): r.data.metrics["objective"]
            for r in runs if "objective" in r.data.metrics}


def confirm(study: optuna.Study, spec: DictConfig, parent_run_id: str) -> dict[str, dict]:
    """Train every arm with seeds 1..spec.seeds (reusing runs whose overrides and study run match); log and
    print the comparison; return {arm: {mean, std, values}} and, per opponent, {ratio, p_value}."""
    from ganstudy.config import compose
    from ganstudy.tracking import use_experiment

    use_experiment(compose(list(spec.base) + ["run_dir=unused"]).tracking)
    client = MlflowClient()
    done = _finished_runs(client, parent_run_id)
    values: dict[str, list] = {}
    missing = []  # (arm, seed index, the task that trains it)
    for arm, overrides in arms(study, spec).items():
        key = fingerprint(overrides)
        values[arm] = [done.get((arm, key, seed)) for seed in range(1, spec.seeds + 1)]
        missing += [(arm, i, partial(_train_arm, spec, parent_run_id, arm, overrides, key, i + 1))
                    for i, v in enumerate(values[arm]) if v is None]
    trained = side_by_side([task for _, _, task in missing], spec.jobs)
    for (arm, i, _), value in zip(missing, trained):
        values[arm][i] = value
    summary = summarize(values)
    _log(client, parent_run_id, summary, values, spec.objective)
    print_table(summary, spec)
    from ganstudy.report import parent_hint, redraw

    redraw(spec, parent_run_id)
    print(f"confirm.png and confirm.json are in the study's MLflow run:\n{parent_hint(parent_run_id)}", flush=True)
    return summary


def _train_arm(spec: DictConfig, parent_run_id: str, arm: str, overrides: list[str], key: str, seed: int) -> float:
    name = f"confirm_{arm}_seed{seed}"
    print(f"\nconfirm: {arm} settings, seed {seed}", flush=True)
    run_dir = Path(spec.out_dir) / spec.study_name / "confirm" / key / name
    # A run that an earlier, interrupted confirm left there is continued from its latest checkpoint.
    resume = [f"resume={run_dir}"] if folder_run_id(run_dir) else []
    result = run_isolated(overrides + share_of_cores(spec.jobs) + resume + [
                              f"train.seed={seed}", f"run_dir={run_dir}", f"tracking.run_name={name}"],
                          parent_run_id=parent_run_id, prestart_next=True,
                          label=f"{arm} seed {seed}" if spec.jobs > 1 else "",
                          tags={Tag.STUDY: spec.study_name, Tag.ROLE: "confirm", Tag.ARM: arm, Tag.SEED: seed,
                                Tag.OVERRIDES: key})
    value = result.metrics[spec.objective]
    MlflowClient().log_metric(result.run_id, "objective", value)
    return value


def summarize(values: dict[str, list[float]]) -> dict[str, dict]:
    """Mean and sample std per arm; the best arm's ratio and Welch p-value against each other arm."""
    out = {arm: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                 "values": list(map(float, v))} for arm, v in values.items()}
    for arm in list(values)[1:]:
        out[arm]["ratio"] = out["best"]["mean"] / out[arm]["mean"]
        out[arm]["p_value"] = welch_p(values["best"], values[arm])
    return out


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of a difference in means (None with fewer than 2 seeds an arm)."""
    if min(len(a), len(b)) < 2:
        return None
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def _log(client: MlflowClient, parent_run_id: str, summary: dict, values: dict, objective: str) -> None:
    for arm, s in summary.items():
        client.log_metric(parent_run_id, f"confirm_{arm}_mean", s["mean"])
        client.log_metric(parent_run_id, f"confirm_{arm}_std", s["std"])
        if "ratio" in s:
            client.log_metric(parent_run_id, f"confirm_ratio_{arm}", s["ratio"])
        if s.get("p_value") is not None:
            client.log_metric(parent_run_id, f"confirm_p_{arm}", s["p_value"])
    with tempfile.TemporaryDirectory() as tmp:
        client.log_artifact(parent_run_id, str(_plot(values, objective, Path(tmp) / "confirm.png")))
        (Path(tmp) / "confirm.json").write_text(json.dumps(summary, indent=2))
        client.log_artifact(parent_run_id, str(Path(tmp) / "confirm.json"))


def _plot(values: dict[str, list[float]], objective: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for i, (arm, v) in enumerate(values.items()):
        ax.errorbar(i, np.mean(v), yerr=np.std(v, ddof=1) if len(v) > 1 else 0, fmt="o", capsize=8, markersize=8)
        ax.scatter(np.full(len(v), i + 0.12), v, color="grey", s=14, label="one seed" if i == 0 else None)
    ax.set_xticks(range(len(values)), [f"{arm} settings" for arm in values])
    ax.set(ylabel=objective, title=f"{objective}: mean ± std over seeds")
    ax.set_xlim(-0.6, len(values) - 0.4)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def print_table(summary: dict, spec: DictConfig) -> None:
    print(f"\n{'settings':<10} {spec.objective + ' mean':>16} {'std':>10} {'seeds':>6} {'best/this':>10} {'Welch p':>9}")
    for arm, s in summary.items():
        ratio = f"{s['ratio']:.3f}" if "ratio" in s else ""
        p = f"{s['p_value']:.3g}" if s.get("p_value") is not None else ""
        print(f"{arm:<10} {s['mean']:>16.4g} {s['std']:>10.3g} {len(s['values']):>6} {ratio:>10} {p:>9}")
    for arm, s in list(summary.items())[1:]:
        better = s["ratio"] < 1 if spec.direction == "minimize" else s["ratio"] > 1
        evidence = "" if s.get("p_value") is None else f", Welch t-test p = {s['p_value']:.3g}"
        print(f"best vs {arm}: ratio {s['ratio']:.3f} ({'better' if better else 'not better'} for a "
              f"{spec.direction}d objective{evidence})")
