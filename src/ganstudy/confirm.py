"""The study's answer: the best settings against the base settings and the article's, each trained with
several seeds at the same budget: mean ± std of the objective, ratios with their 95% interval, Welch p-values
and a plot in the study's MLflow run. A seed whose run fails is a result too: recorded, shown, and trained
afresh (in a new folder) by the next confirm."""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ganstudy.config import ConfigError
from ganstudy.runner import run_isolated, share_of_cores, side_by_side
from ganstudy.stats import ratio_interval, welch_p
from ganstudy.study_results import BUDGETS, comparisons, fmt
from ganstudy.storage import study_dir, study_instance
from ganstudy.resume import cannot_resume
from ganstudy.tracking import Tag, file_lock, folder_run_id, mark_failed


def arms(study: optuna.Study, spec: DictConfig) -> dict[str, list[str]]:
    """Each arm's overrides: the best trial's settings first, then its opponents (the base, the article's
    settings, and the sweep file's `opponents`)."""
    return {"best": best_arm(study.best_trial.params, spec), spec.base_name: list(spec.base),
            "article": list(spec.base) + list(spec.baseline),
            **{name: list(overrides) for name, overrides in spec.opponents.items()}}


def best_arm(params: dict, spec: DictConfig) -> list[str]:
    """The overrides of a trial's settings at the base's budget (what `experiment=best` is written from). The
    best arm also trains its post-hoc detector: the champion registered from it comes with one."""
    return list(spec.base) + [f"{k}={v}" for k, v in params.items()] + ["eval.detector=true"]


def fingerprint(overrides: list[str]) -> str:
    return hashlib.sha1(json.dumps(list(overrides)).encode()).hexdigest()[:12]


NO_EPOCH_LIMIT = 10_000  # the equal-time runs' epoch cap: their time budget ends them


ROLES = ("confirm", "ablation")  # the study run's children that train arms; one arm's runs serve both


def _finished_runs(client: MlflowClient, parent_run_id: str) -> dict[tuple[str, str, int], dict]:
    """(arm, overrides fingerprint, seed) -> metrics of this study run's finished confirmation and ablation runs."""
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = [r for role in ROLES for r in client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{Tag.ROLE}` = '{role}' "
               "and attributes.status = 'FINISHED'")]  # by role: the study's trials are not fetched
    return {(r.data.tags[Tag.ARM], r.data.tags.get(Tag.OVERRIDES), int(r.data.tags[Tag.SEED])): _outcome(r.data.metrics)
            for r in runs if "objective" in r.data.metrics}


def _outcome(metrics: dict) -> dict:
    return {"objective": metrics["objective"], **{k: metrics.get(k) for k in BUDGETS}}


def confirm(study: optuna.Study, spec: DictConfig, parent_run_id: str) -> dict[str, dict]:
    """Train every arm with seeds 1..spec.seeds at each budget of spec.budgets: the same epochs (the base's),
    then the same wall-clock seconds (spec.time_budget, or the best arm's own mean time at the same epochs).
    Runs whose overrides and study run match are reused. Logs and prints each comparison; returns
    {"equal_epochs": {arm: ...}, "equal_time": {arm: ...}, "time_budget": seconds} (see summarize)."""
    client, folder, tags = arm_setting(study, spec, "confirm")
    results: dict = {}
    if "epochs" in spec.budgets:
        results["equal_epochs"] = compare(spec, client, parent_run_id, folder, {**tags, Tag.BUDGET: "epochs"},
                                           arms(study, spec), [])
    if "time" in spec.budgets:
        seconds = spec.time_budget or results["equal_epochs"]["best"]["budget"].get("train_seconds")
        if seconds is None:
            print("confirm: no equal-time comparison: the best arm's runs have no train_seconds (set time_budget=)",
                  file=sys.stderr, flush=True)
        else:
            results["time_budget"] = seconds = round(seconds)
            results["equal_time"] = compare(spec, client, parent_run_id, folder, {**tags, Tag.BUDGET: "time"},
                                             arms(study, spec), [f"train.time_budget={seconds}",
                                                                 f"train.epochs={NO_EPOCH_LIMIT}"])
    _log(client, parent_run_id, results, spec.objective)
    if "equal_epochs" in results:
        _register_champion(client, parent_run_id, spec, fingerprint(arms(study, spec)["best"]))
    for name, summary in comparisons(results).items():
        print_table(summary, spec, name, results.get("time_budget"))
    from ganstudy.report import parent_hint, redraw

    redraw(spec, parent_run_id)
    print(f"confirm.png and confirm.json are in the study's MLflow run:\n{parent_hint(parent_run_id)}", flush=True)
    return results


def arm_setting(study: optuna.Study, spec: DictConfig, role: str) -> tuple[MlflowClient, Path, dict]:
    """(client, the folder arms' runs train in, their tags) for this study's confirm or ablation runs."""
    from ganstudy.config import compose
    from ganstudy.tracking import use_experiment

    use_experiment(compose(list(spec.base) + ["run_dir=unused"]).tracking)
    instance = study_instance(study)
    return (MlflowClient(), study_dir(spec.out_dir, spec.study_name, instance) / "confirm",
            {Tag.STUDY: spec.study_name, Tag.INSTANCE: instance, Tag.ROLE: role})


def _register_champion(client: MlflowClient, parent_run_id: str, spec: DictConfig, best_key: str) -> None:
    """The best arm's best seed at equal epochs, among the runs of today's best settings (`best_key`, their
    overrides' fingerprint: an earlier confirm's best, since beaten, does not count): its generator and detector
    registered under the study's names, alias `champion`."""
    from ganstudy.mlflow_models import CHAMPION, register_champion

    exp = client.get_run(parent_run_id).info.experiment_id
    order = "ASC" if spec.direction == "minimize" else "DESC"
    winners = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{Tag.ROLE}` = 'confirm' "
                                        f"and tags.`{Tag.ARM}` = 'best' and tags.`{Tag.BUDGET}` = 'epochs' "
                                        f"and tags.`{Tag.OVERRIDES}` = '{best_key}' "
                                        "and attributes.status = 'FINISHED'", order_by=[f"metrics.objective {order}"],
                                 max_results=1)
    if winners:
        versions = register_champion(winners[0].info.run_id, spec.study_name)
        print(f"registered from run {winners[0].info.run_id}: " +
              ", ".join(f"{name} version {v} (@{CHAMPION})" for name, v in versions.items()), flush=True)


def failed_any(results: dict) -> bool:
    return any(s["failed"] for summary in comparisons(results).values() for s in summary.values())


def compare(spec: DictConfig, client: MlflowClient, parent_run_id: str, folder: Path, tags: dict,
             arm_overrides: dict[str, list[str]], budget: list[str]) -> dict[str, dict]:
    """One comparison: every arm at this budget, seeds 1..spec.seeds, side by side (spec.jobs)."""
    done = _finished_runs(client, parent_run_id)
    outcomes: dict[str, dict[int, tuple]] = {}  # arm -> seed -> (metrics or None, failure reason or None)
    missing = []  # (arm, seed, the task that trains it)
    for arm, overrides in arm_overrides.items():
        overrides = overrides + budget
        key = fingerprint(overrides)
        outcomes[arm] = {seed: (done[(arm, key, seed)], None) for seed in range(1, spec.seeds + 1)
                         if (arm, key, seed) in done}
        missing += [(arm, seed, partial(_train_arm, spec, folder / key, parent_run_id, arm, overrides,
                                        {**tags, Tag.ARM: arm, Tag.SEED: seed, Tag.OVERRIDES: key}, seed))
                    for seed in range(1, spec.seeds + 1) if seed not in outcomes[arm]]
    # Seed by seed, every arm's run next to the others': a busy spell of the machine falls on all arms alike
    # (it matters at equal time).
    missing.sort(key=lambda m: m[1])
    trained = side_by_side([task for _, _, task in missing], spec.jobs)
    for (arm, seed, _), outcome in zip(missing, trained):
        outcomes[arm][seed] = outcome
    return summarize(outcomes)


def _train_arm(spec: DictConfig, folder: Path, parent_run_id: str, arm: str, overrides: list[str], tags: dict,
               seed: int) -> tuple[dict | None, str | None]:
    """(metrics, None) of one seed of one arm, or (None, why it failed). Its folder is claimed while it
    trains, so that confirm workers on one machine never write one run together; a run an interrupted confirm
    left there continues from its checkpoint, and a failed one (or one that cannot continue) is trained afresh
    in the next folder."""
    name = f"{tags[Tag.ROLE]}_{arm}_seed{seed}"
    client = MlflowClient()
    for attempt in itertools.count(1):
        run_dir = folder / (name if attempt == 1 else f"{name}_attempt{attempt}")
        with file_lock(run_dir.with_name(run_dir.name + ".lock")):
            run_id = folder_run_id(run_dir)
            if run_id is not None:
                run = client.get_run(run_id)
                if run.info.status == "FINISHED" and "objective" in run.data.metrics:
                    return _outcome(run.data.metrics), None  # another worker here trained it meanwhile
                if run.info.status == "FAILED" or cannot_resume(run_id, run_dir):
                    continue
            print(f"\n{tags[Tag.ROLE]}: {arm} settings, seed {seed}, same {tags[Tag.BUDGET]}", flush=True)
            return _train(spec, parent_run_id, overrides + ([f"resume={run_dir}"] if run_id else []) + [
                f"train.seed={seed}", f"run_dir={run_dir}", f"tracking.run_name={name}"], tags,
                f"{arm} seed {seed}" if spec.jobs > 1 else "")


def _train(spec: DictConfig, parent_run_id: str, overrides: list[str], tags: dict, label: str):
    started = []
    try:
        result = run_isolated(overrides + share_of_cores(spec.jobs), parent_run_id=parent_run_id, tags=tags,
                              on_start=started.append, label=label)
        value = result.metrics.get(spec.objective, float("nan"))
        if not math.isfinite(value):
            raise RuntimeError(f"{spec.objective} is {value}")
    except ConfigError:
        raise  # the folder, the store or the data: every run would meet it
    except Exception as err:  # noqa: BLE001 - a failed seed is a result: recorded, and the others go on
        reason = str(err)
        print(f"confirm: {tags[Tag.ARM]} seed {tags[Tag.SEED]} failed: {reason}", file=sys.stderr, flush=True)
        if started:
            mark_failed(started[0], reason)
        return None, reason
    MlflowClient().log_metric(result.run_id, "objective", value)
    return _outcome({**result.metrics, "objective": value}), None


def summarize(outcomes: dict[str, dict[int, tuple]]) -> dict[str, dict]:
    """Per arm: mean and sample std of the objective over the seeds that counted, what they spent on average
    (`budget`: epochs, updates, images, train_seconds), and the seeds that failed; per opponent: the best arm's
    ratio of means with its 95% bootstrap interval, and the Welch p-value. The first arm is the reference."""
    out = {}
    for arm, seeds in outcomes.items():
        counted = {s: m for s, (m, _) in sorted(seeds.items()) if m is not None}
        v = [m["objective"] for m in counted.values()]
        spent = {k: [m[k] for m in counted.values() if m.get(k) is not None] for k in BUDGETS}
        out[arm] = {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                    "values": v, "seeds": list(counted), "budget": {k: float(np.mean(x)) for k, x in spent.items() if x},
                    "failed": {s: why for s, (_, why) in sorted(seeds.items()) if why}}
    reference = next(iter(outcomes))
    best = out[reference]["values"]
    for arm in list(outcomes)[1:]:
        other = out[arm]["values"]
        both = bool(best) and bool(other)
        out[arm]["ratio"] = out[reference]["mean"] / out[arm]["mean"] if both else None
        out[arm]["ratio_ci"] = ratio_interval(best, other) if both else None
        out[arm]["p_value"] = welch_p(best, other) if both else None
    return out


def _log(client: MlflowClient, parent_run_id: str, results: dict, objective: str) -> None:
    for name, summary in comparisons(results).items():
        log_summary(client, parent_run_id, "confirm" if name == "equal_epochs" else "confirm_time", summary)
    log_artifacts(client, parent_run_id, "confirm", results, objective)


def log_summary(client: MlflowClient, parent_run_id: str, prefix: str, summary: dict) -> None:
    """One comparison's figures as the study run's metrics, PREFIX_ARM_mean etc."""
    for arm, s in summary.items():
        metrics = {f"{prefix}_{arm}_mean": s["mean"], f"{prefix}_{arm}_std": s["std"],
                   f"{prefix}_{arm}_failed": len(s["failed"]), f"{prefix}_ratio_{arm}": s.get("ratio"),
                   f"{prefix}_p_{arm}": s.get("p_value")}
        if s.get("ratio_ci"):
            metrics.update({f"{prefix}_ratio_{arm}_ci_low": s["ratio_ci"][0],
                            f"{prefix}_ratio_{arm}_ci_high": s["ratio_ci"][1]})
        for key, value in metrics.items():
            if value is not None:
                client.log_metric(parent_run_id, key, value)


def log_artifacts(client: MlflowClient, parent_run_id: str, name: str, results: dict, objective: str) -> None:
    """NAME.png (the plot of every comparison) and NAME.json (the results) in the study run."""
    with tempfile.TemporaryDirectory() as tmp:
        client.log_artifact(parent_run_id, str(_plot(results, objective, Path(tmp) / f"{name}.png")))
        (Path(tmp) / f"{name}.json").write_text(json.dumps(results, indent=2))
        client.log_artifact(parent_run_id, str(Path(tmp) / f"{name}.json"))


def _plot(results: dict, objective: str, out: Path) -> Path:
    """Each arm's seeds and mean ± std, one panel per comparison, on a log axis: 30 against 60 stays visible
    beside 450."""
    from matplotlib.figure import Figure

    shown = comparisons(results)
    fig = Figure(figsize=(5.5 * len(shown), 3.5))
    for ax, (name, summary) in zip(fig.subplots(1, len(shown), squeeze=False)[0], shown.items()):
        for i, (arm, s) in enumerate(summary.items()):
            if s["values"]:
                ax.errorbar(i, s["mean"], yerr=s["std"], fmt="o", capsize=8, markersize=8)
                ax.scatter(np.full(len(s["values"]), i + 0.12), s["values"], color="grey", s=14,
                           label="one seed" if i == 0 else None)
        ax.set_xticks(range(len(summary)), [f"{arm} settings" for arm in summary])
        ax.set(ylabel=f"{objective} (log scale)", yscale="log", title=_title(name, results.get("time_budget")))
        ax.set_xlim(-0.6, len(summary) - 0.4)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def _title(name: str, seconds) -> str:
    return "same epochs" if name == "equal_epochs" else f"same wall-clock time ({seconds} s)"


def print_table(summary: dict, spec: DictConfig, name: str = "equal_epochs", seconds=None) -> None:
    """The comparison's table and a verdict per arm against the first (the reference)."""
    reference = next(iter(summary))
    width = max(10, *map(len, summary))
    print(f"\n{_title(name, seconds)}:\n{'settings':<{width}} {spec.objective + ' mean':>16} {'std':>10} {'seeds':>6} "
          f"{reference + '/this':>12} {'95% interval':>15} {'Welch p':>9} {'epochs':>7} {'updates':>8} {'images':>9} "
          f"{'seconds':>8}  failed")
    for arm, s in summary.items():
        ci = "" if not s.get("ratio_ci") else f"{s['ratio_ci'][0]:.3f}-{s['ratio_ci'][1]:.3f}"
        b = s.get("budget", {})
        failed = ", ".join(f"seed {seed}" for seed in s["failed"])
        print(f"{arm:<{width}} {fmt(s['mean'], '>16.4g'):>16} {fmt(s['std'], '>10.3g'):>10} {len(s['values']):>6} "
              f"{fmt(s.get('ratio'), '.3f'):>12} {ci:>15} {fmt(s.get('p_value'), '.3g'):>9} "
              f"{fmt(b.get('epochs'), '.0f'):>7} {fmt(b.get('updates'), '.0f'):>8} {fmt(b.get('images'), '.0f'):>9} "
              f"{fmt(b.get('train_seconds'), '.0f'):>8}  {failed}")
    for arm, s in list(summary.items())[1:]:
        if s["ratio"] is None:
            print(f"{reference} vs {arm}: no ratio (an arm has no seed that counted)")
            continue
        difference = summary[reference]["mean"] - s["mean"]  # a ratio flips its meaning for values <= 0
        better = difference < 0 if spec.direction == "minimize" else difference > 0
        evidence = "" if s.get("p_value") is None else f", Welch t-test p = {s['p_value']:.3g}"
        interval = "" if not s.get("ratio_ci") else f", 95% interval {s['ratio_ci'][0]:.3f}-{s['ratio_ci'][1]:.3f}"
        print(f"{reference} vs {arm}: ratio {s['ratio']:.3f} ({'better' if better else 'not better'} for a "
              f"{spec.direction}d objective{interval}{evidence})")
    for arm, s in summary.items():
        for seed, why in s["failed"].items():
            print(f"failed: {arm} seed {seed}: {why}")
