"""The study's MLflow parent run: created once per study, then kept up to date with the best trial,
a CSV of all trials and Optuna's plots."""
from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import mlflow
import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

PARENT_ATTR = "mlflow_parent_run_id"
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice", "intermediate_values")


def parent_run(study: optuna.Study, spec: DictConfig, tracking_cfg) -> str:
    """The study's MLflow run id: found again through the study on resume, created on first use.

    Workers on one machine take a file lock around this; workers on several machines starting in the
    same instant could each create one (the study keeps the last, and the others stay empty).
    """
    from ganstudy.sweep import ROLE_TAG, STUDY_TAG
    from ganstudy.tracking import use_experiment

    experiment_id = use_experiment(tracking_cfg)
    if PARENT_ATTR in study.user_attrs:
        return study.user_attrs[PARENT_ATTR]
    client = MlflowClient()
    run = client.create_run(experiment_id, run_name=f"study {spec.study_name}",
                            tags={STUDY_TAG: spec.study_name, ROLE_TAG: "study"})
    client.log_text(run.info.run_id, OmegaConf.to_yaml(spec), "sweep.yaml")
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


def _finished(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def update_parent(study: optuna.Study, spec: DictConfig, parent_run_id: str, final: bool = False) -> None:
    """Best value and params, trials.csv and the plots, logged to the study's run."""
    client = MlflowClient()
    complete = _finished(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    client.log_batch(parent_run_id, metrics=[
        mlflow.entities.Metric(f"n_{s.name.lower()}", states.count(s), _now(), len(states))
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        study.trials_dataframe().to_csv(out / "trials.csv", index=False)
        client.log_artifact(parent_run_id, str(out / "trials.csv"))
        if complete:
            best = study.best_trial
            client.log_metric(parent_run_id, f"best_{spec.objective}", best.value, step=len(states))
            client.log_metric(parent_run_id, "best_trial", best.number, step=len(states))
            client.set_tag(parent_run_id, "best_params", json.dumps(best.params))
            (out / "best.json").write_text(json.dumps({"trial": best.number, "value": best.value,
                                                       "params": best.params, **best.user_attrs}, indent=2))
            client.log_artifact(parent_run_id, str(out / "best.json"))
        if final or len(complete) >= 2:
            _plots(study, out / "report")
            client.log_artifacts(parent_run_id, str(out / "report"), "report")
    if final:
        client.set_terminated(parent_run_id, "FINISHED")


def _now() -> int:
    import time

    return int(time.time() * 1000)


def _plots(study: optuna.Study, folder: Path) -> None:
    """Optuna's study plots as interactive HTML (plotly) and PNG (matplotlib); a plot the study cannot
    draw yet (too few trials) is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    folder.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in PLOTS:
        try:
            with warnings.catch_warnings():  # few-trial studies make matplotlib and Optuna complain
                warnings.simplefilter("ignore", UserWarning)
                getattr(vis, f"plot_{name}")(study).write_html(folder / f"{name}.html", include_plotlyjs="cdn")
                result = getattr(vis_mpl, f"plot_{name}")(study)
            fig = (result.flat[0] if hasattr(result, "flat") else result).figure
            fig.savefig(folder / f"{name}.png", dpi=90, bbox_inches="tight")
            plt.close("all")
        except (ValueError, RuntimeError, ZeroDivisionError):
            plt.close("all")


def print_summary(study: optuna.Study, spec: DictConfig) -> None:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL") if s in states)
    print(f"\nstudy {spec.study_name}: {len(states)} trials ({counts})")
    if _finished(study):
        best = study.best_trial
        print(f"best: trial {best.number}, {spec.objective} = {best.value:.4g}")
        for key, value in best.params.items():
            print(f"  {key} = {value}")
