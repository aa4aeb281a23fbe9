"""The study's answer: the best settings against the article's, each trained with several seeds at the
same budget, as mean ± std of the objective, their ratio and a plot in the study's MLflow run."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ganstudy.sweep import ROLE_TAG, STUDY_TAG


def _finished_runs(client: MlflowClient, parent_run_id: str, study: str) -> dict[tuple[str, int], float]:
    """(which, seed) -> objective of confirmation runs already done (a rerun does not train them again)."""
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'confirm' "
                                     "and attributes.status = 'FINISHED'")
    return {(r.data.tags["ganstudy.which"], int(r.data.tags["ganstudy.seed"])): r.data.metrics.get("objective")
            for r in runs if "objective" in r.data.metrics}


def confirm(study: optuna.Study, spec: DictConfig, parent_run_id: str) -> dict[str, dict[str, float]]:
    """Train best and article settings with seeds 1..spec.seeds; log and print the comparison."""
    import keras
    import mlflow

    from ganstudy.config import compose
    from ganstudy.tracking import use_experiment
    from ganstudy.train import train

    use_experiment(compose(list(spec.base) + ["run_dir=unused"]).tracking)
    best = study.best_trial
    arms = {"best": list(spec.base) + [f"{k}={v}" for k, v in best.params.items()],
            "article": list(spec.base) + list(spec.baseline)}
    client = MlflowClient()
    done = _finished_runs(client, parent_run_id, spec.study_name)
    values: dict[str, list[float]] = {arm: [] for arm in arms}
    for arm, overrides in arms.items():
        for seed in range(1, spec.seeds + 1):
            if (arm, seed) not in done:
                keras.backend.clear_session()
                run_dir = Path(spec.out_dir) / spec.study_name / f"confirm_{arm}_seed{seed}"
                print(f"\nconfirm: {arm} settings, seed {seed}", flush=True)
                result = train(compose(overrides + [f"train.seed={seed}", f"run_dir={run_dir}",
                                                    f"tracking.run_name=confirm_{arm}_seed{seed}"]),
                               parent_run_id=parent_run_id,
                               tags={STUDY_TAG: spec.study_name, ROLE_TAG: "confirm", "ganstudy.which": arm,
                                     "ganstudy.seed": seed})
                run_id = mlflow.last_active_run().info.run_id
                client.log_metric(run_id, "objective", result[spec.objective])
                done[(arm, seed)] = result[spec.objective]
            values[arm].append(done[(arm, seed)])
    summary = {arm: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
               for arm, v in values.items()}
    ratio = summary["best"]["mean"] / summary["article"]["mean"]
    p_value = _welch_p(values["best"], values["article"])
    for arm, s in summary.items():
        client.log_metric(parent_run_id, f"confirm_{arm}_mean", s["mean"])
        client.log_metric(parent_run_id, f"confirm_{arm}_std", s["std"])
    client.log_metric(parent_run_id, "confirm_ratio", ratio)
    if p_value is not None:
        client.log_metric(parent_run_id, "confirm_p_value", p_value)
    with tempfile.TemporaryDirectory() as tmp:
        client.log_artifact(parent_run_id, str(_plot(values, spec.objective, Path(tmp) / "confirm.png")))
    _print_table(summary, values, ratio, p_value, spec)
    return summary


def _welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of a difference in means (None with fewer than 2 seeds an arm)."""
    if min(len(a), len(b)) < 2:
        return None
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def _plot(values: dict[str, list[float]], objective: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
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


def _print_table(summary, values, ratio, p_value, spec) -> None:
    print(f"\n{'settings':<10} {spec.objective + ' mean':>16} {'std':>10} {'seeds':>6}")
    for arm, s in summary.items():
        print(f"{arm:<10} {s['mean']:>16.4g} {s['std']:>10.3g} {len(values[arm]):>6}")
    better = ratio < 1 if spec.direction == "minimize" else ratio > 1
    evidence = "" if p_value is None else f", Welch t-test p = {p_value:.3g}"
    print(f"ratio best/article: {ratio:.3f} ({'better' if better else 'not better'} for a {spec.direction}d "
          f"objective{evidence})")
