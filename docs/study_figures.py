"""The figures of docs/study.md, read from a finished study: one JSON summary on stdout, pictures in --out.

    python docs/study_figures.py [--study ganstudy-default] [--storage sqlite:///mlruns/optuna.db]
                                 [--tracking-uri sqlite:///mlruns/mlflow.db] [--out outputs/study_figures]
                                 [--epoch 20] [--budget epochs|time] [--confirm FILE] [--storage-only]

It needs the study's MLflow runs (its parent run, with confirm=true's runs and files), which the repository does
not ship: run it where the study ran. --out docs/study replaces the committed pictures. --storage-only needs
none: it draws what the Optuna storage holds (and confirm.png from --confirm FILE), which the repository ships:

    python docs/study_figures.py --storage sqlite:///docs/study/ganstudy-default.optuna.db --storage-only \
        --confirm docs/study/confirm.json --out docs/study

Writes the confirm arms' sample grids side by side (seed 1 of each arm; at --epoch, or with --budget time those
of the equal-time comparison at each run's last epoch), confirm.json and confirm.png (drawn from the study run's
confirm.json, or from --confirm FILE), the trials' pictures (ganstudy.study_plots, from the Optuna storage:
optimization_history.png, param_importances.png, intermediate_values.png, slice.png) and best.json, and prints
the study's wall time (first trial start to last trial end), trial counts, best trial, parameter importances and
the confirm table as JSON, then the trials as a markdown table. (`python -m ganstudy.best_experiment out=FILE`
writes the best trial as a Hydra experiment.)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def arms_picture(client, parent_id: str, epoch: int | None, out: Path, budget: str = "epochs") -> list[str]:
    """Seed 1's grid of each confirm arm of one comparison (`budget`: epochs or time) at `epoch`, or at each
    run's last epoch if None, side by side with the arm's name; returns the arms."""
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow.artifacts import download_artifacts

    from ganstudy.images import small_png

    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}' and tags.`ganstudy.role` = 'confirm' "
                                     "and tags.`ganstudy.seed` = '1' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"])
    latest = {}
    for r in runs:  # the newest run of each arm: an arm trained again after a change replaces the old one
        if r.data.tags.get("ganstudy.budget", "epochs") == budget:
            latest.setdefault(r.data.tags["ganstudy.which"], r)
    arms = [a for a in ("best", *sorted(set(latest) - {"best", "article"}), "article") if a in latest]
    fig, axes = plt.subplots(1, len(arms), figsize=(2.7 * len(arms), 3.2))  # 810 px for 3 arms: a page's width
    with tempfile.TemporaryDirectory() as tmp:
        for ax, arm in zip(np.atleast_1d(axes), arms):
            run = latest[arm]
            at = epoch or int(run.data.metrics["epochs"])
            path = download_artifacts(run_id=run.info.run_id, artifact_path=f"samples/epoch_{at:04d}.png", dst_path=tmp)
            ax.imshow(iio.imread(path), cmap="gray", vmin=0, vmax=255)
            title = f"{arm}\nfid_best {run.data.metrics['objective']:.1f}"
            ax.set_title(title if epoch else f"{title}, epoch {at}", fontsize=10)
            ax.axis("off")
    fig.suptitle(f"epoch {epoch}, seed 1, same fixed noise" if epoch else "last epoch, seed 1, same fixed noise",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))  # room for the title above the arms' names
    fig.savefig(out, dpi=100)
    plt.close(fig)
    small_png(out)
    return arms


def study_summary(study) -> dict:
    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                           TrialState.FAIL)}
    epochs = sum(max(t.intermediate_values, default=0) for t in trials)
    return {"wall_minutes": round((max(ends) - min(starts)).total_seconds() / 60, 1), "trials": len(trials), **counts,
            "trial_epochs_reported": epochs, "best_trial": study.best_trial.number, "best_value": study.best_value,
            "best_params": study.best_params,
            "importances": {k: round(v, 3) for k, v in optuna.importance.get_param_importances(study).items()},
            "fail_reasons": [t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL]}


def trials_table(study) -> str:
    """The study's trials as the markdown table of docs/study.md."""
    def num(value, fmt):
        return "" if value is None else format(value, fmt)

    rows = ["| trial | state | fid_best | epochs | optimizer | batch | width | EMA | lr_g | lr_d | β1 | dropout | smoothing |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in study.get_trials(deepcopy=False):
        p = t.params
        rows.append(" | ".join([
            f"| {t.number}", t.state.name.lower(), num(t.value, ".1f"), str(max(t.intermediate_values, default=0)),
            p.get("optimizer", ""), str(p.get("train.batch_size", "")), str(p.get("model.width", "")),
            str(p.get("train.ema_decay", "")), num(p.get("optimizer.lr_g"), ".1e"), num(p.get("optimizer.lr_d"), ".1e"),
            num(p.get("optimizer.beta1"), ".2f"), num(p.get("model.dropout"), ".2f"),
            num(p.get("train.label_smoothing"), ".2f")]) + " |")
    return "\n".join(rows)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="ganstudy-default")
    ap.add_argument("--storage", default="sqlite:///mlruns/optuna.db")
    ap.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    ap.add_argument("--out", type=Path, default=Path("outputs/study_figures"),
                    help="the folder for the pictures (docs/study: the committed ones)")
    ap.add_argument("--epoch", type=int, default=20)
    ap.add_argument("--budget", choices=["epochs", "time"], default="epochs",
                    help="the arms' grids of this comparison; time: at each run's last epoch")
    ap.add_argument("--confirm", type=Path, metavar="FILE",
                    help="draw confirm.png from this confirm.json (e.g. docs/study/confirm.json) instead of the study run's")
    ap.add_argument("--storage-only", action="store_true",
                    help="no MLflow run needed: only the trials' pictures, best.json and (with --confirm) confirm.png")
    return ap.parse_args(argv)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def open_study(args: argparse.Namespace):
    """(the study, its MLflow parent run's id; None with --storage-only), or exit 2 with one line when either
    is not there."""
    import optuna
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=args.study, storage=args.storage)
    except KeyError:
        fail(f"--study {args.study}: no such study in {args.storage}")
    if args.storage_only:
        return study, None
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    try:
        MlflowClient(args.tracking_uri).get_run(parent_id or "none")
    except MlflowException:
        fail(f"--study {args.study}: its MLflow run {parent_id} is not in {args.tracking_uri}; the figures need the "
             "study's runs (the repository ships none): run it where the study ran, or give --tracking-uri")
    return study, parent_id


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)

    from ganstudy.comparison_view import plot
    from ganstudy.study_plots import draw_all, objective_name

    if args.confirm and not args.confirm.is_file():
        fail(f"--confirm {args.confirm}: no such file")
    study, parent_id = open_study(args)
    objective = objective_name(study, "fid_best")  # a study made before it recorded its objective: the shipped one
    args.out.mkdir(parents=True, exist_ok=True)
    summary = study_summary(study)
    confirm = json.loads(args.confirm.read_text()) if args.confirm else None
    if parent_id:
        import mlflow
        from mlflow.artifacts import download_artifacts
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(args.tracking_uri)
        client = MlflowClient()
        if args.budget == "epochs":
            summary["arms"] = arms_picture(client, parent_id, args.epoch, args.out / f"arms_epoch{args.epoch}.png")
        else:
            summary["arms"] = arms_picture(client, parent_id, None, args.out / "arms_time.png", "time")
        if confirm is None:
            with tempfile.TemporaryDirectory() as tmp:
                confirm = json.loads(Path(download_artifacts(run_id=parent_id, artifact_path="confirm.json",
                                                             dst_path=tmp)).read_text())
            (args.out / "confirm.json").write_text(json.dumps(confirm, indent=1))
    if confirm is not None:
        summary["confirm"] = confirm
        plot(confirm if "equal_epochs" in confirm else {"equal_epochs": confirm}, objective, args.out / "confirm.png")
    draw_all(study, args.out, objective)
    best = {"trial": study.best_trial.number, "value": study.best_value, "params": study.best_params}
    (args.out / "best.json").write_text(json.dumps(best, indent=2) + "\n")
    print(json.dumps(summary, default=str, indent=1))
    print(trials_table(study))


if __name__ == "__main__":
    main()
