"""The study's answer: the best settings against the base settings and the article's, each trained with
several seeds at the same budget: mean ± std of the objective, ratios with their 95% interval, Welch p-values
and a plot in the study's MLflow run. A seed whose run fails is a result too: recorded, shown, and trained
afresh (in a new folder) by the next confirm."""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ganstudy.arm_runs import ArmSetting, fingerprint, train_arms
from ganstudy.claims import RunClaims, claims_name
from ganstudy.comparison_view import plot, print_table
from ganstudy.stats import summarize
from ganstudy.storage import storage_url, study_dir, study_instance
from ganstudy.study_results import comparisons
from ganstudy.tags import Tag


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


NO_EPOCH_LIMIT = 10_000  # the equal-time runs' epoch cap: their time budget ends them


def confirm(study: optuna.Study, spec: DictConfig, parent_run_id: str) -> dict[str, dict]:
    """Train every arm with seeds 1..spec.seeds at each budget of spec.budgets: the same epochs (the base's),
    then the same wall-clock seconds (spec.time_budget, or the best arm's own mean time at the same epochs).
    Runs whose overrides and study run match are reused. Logs and prints each comparison; returns
    {"equal_epochs": {arm: ...}, "equal_time": {arm: ...}, "time_budget": seconds} (see summarize)."""
    setting = arm_setting(study, spec, "confirm")
    client = setting.client
    results: dict = {}
    if "epochs" in spec.budgets:
        results["equal_epochs"] = compare(spec, setting, parent_run_id, "epochs", arms(study, spec), [])
    if "time" in spec.budgets:
        seconds = spec.time_budget or results["equal_epochs"]["best"]["budget"].get("train_seconds")
        if seconds is None:
            print("confirm: no equal-time comparison: the best arm's runs have no train_seconds (set time_budget=)",
                  file=sys.stderr, flush=True)
        else:
            results["time_budget"] = seconds = round(seconds)
            results["equal_time"] = compare(spec, setting, parent_run_id, "time", arms(study, spec),
                                            [f"train.time_budget={seconds}", f"train.epochs={NO_EPOCH_LIMIT}"])
    _log(client, parent_run_id, results, spec.objective)
    if "equal_epochs" in results:
        _register_champion(client, parent_run_id, spec, fingerprint(arms(study, spec)["best"]))
    for name, summary in comparisons(results).items():
        print_table(summary, spec, name, results.get("time_budget"))
    from ganstudy.report import parent_hint, redraw

    redraw(spec, parent_run_id)
    print(f"confirm.png and confirm.json are in the study's MLflow run:\n{parent_hint(parent_run_id)}", flush=True)
    return results


def arm_setting(study: optuna.Study, spec: DictConfig, role: str) -> ArmSetting:
    """Where this study's confirm or ablation runs train, with their claims and tags."""
    from ganstudy.config import compose
    from ganstudy.tracking import use_experiment

    use_experiment(compose(list(spec.base) + ["run_dir=unused"]).tracking)
    instance = study_instance(study)
    return ArmSetting(MlflowClient(), study_dir(spec.out_dir, spec.study_name, instance) / "confirm",
                      RunClaims(storage_url(spec), spec.heartbeat, claims_name(spec.study_name, instance)),
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


def compare(spec: DictConfig, setting: ArmSetting, parent_run_id: str, budget_name: str,
            arm_overrides: dict[str, list[str]], budget: list[str]) -> dict[str, dict]:
    """One comparison: every arm at this budget ("epochs" or "time": its overrides), seeds 1..spec.seeds,
    summarized (the first arm is the reference)."""
    setting = replace(setting, tags={**setting.tags, Tag.BUDGET: budget_name})
    return summarize(train_arms(spec, setting, parent_run_id, arm_overrides, budget))


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
        client.log_artifact(parent_run_id, str(plot(results, objective, Path(tmp) / f"{name}.png")))
        (Path(tmp) / f"{name}.json").write_text(json.dumps(results, indent=2))
        client.log_artifact(parent_run_id, str(Path(tmp) / f"{name}.json"))


