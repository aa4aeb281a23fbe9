"""The study's MLflow parent run: created once per study, then kept up to date with the best trial,
a CSV of all trials and Optuna's plots."""
from __future__ import annotations

import json
import sys
import os
import tempfile
import time
import warnings
from pathlib import Path

import mlflow
import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ganstudy.redact import mask

PARENT_ATTR = "mlflow_parent_run_id"
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "slice", "intermediate_values")
# Also drawn as PNG, by ganstudy.study_plots (its PICTURES): optimization_history, param_importances,
# intermediate_values and slice; the study page shows the first three, docs/study.md all four.


def parent_run(study: optuna.Study, spec: DictConfig, tracking_cfg, instance: str) -> str:
    """The study's MLflow run id: found again through the study on resume, created on first use.

    Workers that start in the same instant (on one machine or several) each create one, then all elect the
    same one and the others delete theirs: the shared stores decide, no lock is needed. The election is among
    runs of this study instance only: another study of the same name is another instance.
    """
    from ganstudy.tags import Tag
    from ganstudy.tracking import use_experiment

    experiment_id = use_experiment(tracking_cfg)
    client = MlflowClient()
    if PARENT_ATTR in study.user_attrs and _exists(client, study.user_attrs[PARENT_ATTR]):
        client.update_run(study.user_attrs[PARENT_ATTR], "RUNNING")  # a continued study's run (KILLED, FINISHED)
        return study.user_attrs[PARENT_ATTR]
    # New, or a study carried to another tracking store (its parent run is not there): a parent run here.
    mine = client.create_run(experiment_id, run_name=f"study {spec.study_name}",
                             tags={Tag.STUDY: spec.study_name, Tag.INSTANCE: instance, Tag.ROLE: "study"}).info
    winner = _elect(client, experiment_id, instance)
    if winner == mine.run_id:
        client.log_text(winner, mask(OmegaConf.to_yaml(spec)), "sweep.yaml")
    else:
        client.delete_run(mine.run_id)
    study.set_user_attr(PARENT_ATTR, winner)
    return winner


ELECTION_WAIT = 1.0  # seconds: far longer than a created run takes to show in the tracking store


def _elect(client: MlflowClient, experiment_id: str, instance: str) -> str:
    """The earliest (start time, then id) of the parent runs that workers racing to create one made. Each
    worker creates its run, then waits before it looks: the earliest run exists by then, and every racer
    elects it (given clocks in step within the wait, as NTP keeps them)."""
    from ganstudy.tags import Tag

    time.sleep(ELECTION_WAIT)
    runs = client.search_runs([experiment_id], f"tags.`{Tag.INSTANCE}` = '{instance}' and tags.`{Tag.ROLE}` = 'study'")
    return min((r.info.start_time, r.info.run_id) for r in runs)[1]


def _exists(client: MlflowClient, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


def _finished(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


_drawing = None  # the process drawing the latest round of plots
_drawn_for = 0  # complete trials when the plots were last drawn
_drawn_at = float("-inf")  # time.monotonic() then
REDRAW_SECONDS = 60  # while a study runs, its plots are drawn again at most this often (at its end, always)


def update_parent(study: optuna.Study, spec: DictConfig, parent_run_id: str, storage_url: str,
                  final: bool = False) -> None:
    """Best value and params, trials.csv and the plots, logged to the study's run."""
    client = MlflowClient()
    complete = _finished(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    from ganstudy.study_results import trial_cost
    from ganstudy.tags import Tag

    costs = [trial_cost(t) for t in study.get_trials(deepcopy=False)]
    spent = {"trial_epochs": sum(e for e, _ in costs), "trial_minutes": sum(m for _, m in costs if m is not None)}
    client.log_batch(parent_run_id, metrics=[
        mlflow.entities.Metric(key, value, _now(), len(states)) for key, value in
        [*((f"n_{s.name.lower()}", states.count(s)) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)),
         *spent.items()]])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "trials.csv").write_text(mask(study.trials_dataframe().to_csv(index=False)))
        client.log_artifact(parent_run_id, str(out / "trials.csv"))
        if complete:
            best = study.best_trial
            client.log_metric(parent_run_id, f"best_{spec.objective}", best.value, step=len(states))
            client.log_metric(parent_run_id, "best_trial", best.number, step=len(states))
            client.set_tag(parent_run_id, Tag.BEST_PARAMS, json.dumps(best.params))
            (out / "best.json").write_text(json.dumps({"trial": best.number, "value": best.value,
                                                       "params": best.params, **best.user_attrs}, indent=2))
            client.log_artifact(parent_run_id, str(out / "best.json"))
    global _drawn_for, _drawn_at
    # A pruned trial changes little: redraw when one completes, unless the last drawing is that recent.
    if final or len(complete) >= 2 and len(complete) != _drawn_for and time.monotonic() - _drawn_at >= REDRAW_SECONDS:
        _drawn_for, _drawn_at = len(complete), time.monotonic()
        _draw_plots(storage_url, spec, parent_run_id, wait=final)
    if final:
        client.set_terminated(parent_run_id, "FINISHED")


def end_interrupted(study: optuna.Study, parent_run_id: str) -> None:
    """Ctrl-C: the study's run ends KILLED, unless trials of the study still run (another worker's: it ends it)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        MlflowClient().set_terminated(parent_run_id, "KILLED")


def redraw(spec: DictConfig, parent_run_id: str) -> None:
    """Draw the plots and the study page again, and wait (after confirm: the page shows its table)."""
    from ganstudy.storage import storage_url

    _draw_plots(storage_url(spec), spec, parent_run_id, wait=True)


def _draw_plots(storage_url: str, spec: DictConfig, parent_run_id: str, wait: bool) -> None:
    """Draw the plots and the study page in a process of its own (from the runs' fork server, its imports
    done), while the next trial trains: plotting (matplotlib, plotly, fANOVA importances) would otherwise hold
    it up and grow the sweep's memory. A round that finds the last one still drawing is skipped; the final
    round waits for it and for itself."""
    from ganstudy.runner import fork_context

    global _drawing
    if _drawing is not None and _drawing.is_alive():
        if not wait:
            return
        _drawing.join()
    _say_if_failed(_drawing)
    _drawing = fork_context().Process(
        target=_plot_job, args=(storage_url, spec.study_name, spec.objective, parent_run_id, mlflow.get_tracking_uri(),
                                dict(os.environ)), daemon=True, name="ganstudy-plots")
    _drawing.start()
    if wait:
        _drawing.join()
        _say_if_failed(_drawing)


def _say_if_failed(job) -> None:
    """A plot job that ended badly leaves the page as it was: say so (once: the job is then forgotten)."""
    global _drawing
    if job is not None and job.exitcode not in (None, 0):
        print(f"warning: the study's plots and page were not redrawn (the plot job exited with {job.exitcode}); "
              "the page is stale until the next redraw", file=sys.stderr, flush=True)
        _drawing = None


def _plot_job(storage_url: str, study_name: str, objective: str, parent_run_id: str, tracking_uri: str,
              environ: dict) -> None:
    from ganstudy import study_page
    from ganstudy.runner import adopt_environment
    from ganstudy.storage import make_storage

    adopt_environment({**environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})  # the page downloads pictures
    mlflow.set_tracking_uri(tracking_uri)
    study = optuna.load_study(study_name=study_name, storage=make_storage(storage_url))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "report"
        _plots(study, folder, objective)
        study_page.write(study, objective, parent_run_id, folder, folder / "index.html")
        MlflowClient().log_artifacts(parent_run_id, str(folder), "report")


def _now() -> int:
    return int(time.time() * 1000)


def _plots(study: optuna.Study, folder: Path, objective: str | None = None) -> None:
    """Optuna's study plots as interactive HTML (plotly), and four as PNG too (ganstudy.study_plots: pruned
    trials shown, log value axes, trials labelled); a plot the study cannot draw yet (too few trials) is skipped.
    This runs in the plotting process of its own (_draw_plots), whose pyplot state nothing else shares."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna.visualization as vis

    from ganstudy import study_plots

    folder.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    for name in PLOTS:
        if name == "param_importances" and complete < 2:
            continue  # fANOVA needs two complete trials (and importing it takes seconds)
        try:
            with warnings.catch_warnings():  # few-trial studies make plotly and Optuna complain
                warnings.simplefilter("ignore", UserWarning)
                # plotly.js is written once beside the pages, not taken from a CDN: they work offline.
                getattr(vis, f"plot_{name}")(study).write_html(folder / f"{name}.html", include_plotlyjs="directory")
        except (ValueError, RuntimeError, ZeroDivisionError):
            pass
    study_plots.draw_all(study, folder, objective)


def print_summary(study: optuna.Study, spec: DictConfig) -> None:
    from ganstudy.study_results import state_counts

    trials = study.get_trials(deepcopy=False)
    print(f"\nstudy {spec.study_name}: {len(trials)} trials ({state_counts(trials)})")
    if _finished(study):
        best = study.best_trial
        print(f"best: trial {best.number}, {spec.objective} = {best.value:.4g}")
        for key, value in best.params.items():
            print(f"  {key} = {value}")
    print(f"the study's MLflow run (trials nested under it, report/index.html in its artifacts):\n"
          f"{parent_hint(study.user_attrs[PARENT_ATTR])}", flush=True)


def parent_hint(parent_run_id: str) -> str:
    from ganstudy.tracking import ui_hint

    run = MlflowClient().get_run(parent_run_id)
    return ui_hint(mlflow.get_tracking_uri(), run.info.experiment_id, parent_run_id)
