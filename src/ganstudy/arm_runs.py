"""Training the arms of a comparison: each seed of each arm once, across the workers and machines that share
the study (a claim in its storage), reused once it has finished, continued from its checkpoint after an
interruption, and trained afresh in the next folder after a failure."""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ganstudy.claims import Claim, RunClaims
from ganstudy.config import ConfigError
from ganstudy.resume import cannot_resume
from ganstudy.runner import interrupted, run_isolated, share_of_cores, side_by_side
from ganstudy.study_results import BUDGETS
from ganstudy.tags import Tag
from ganstudy.tracking import folder_run_id, mark_failed

ROLES = ("confirm", "ablation")  # the study run's children that train arms; one arm's runs serve both


@dataclass
class ArmSetting:
    """Where a study's arms train: the MLflow client, the folder, the claims, and the tags of their runs."""
    client: MlflowClient
    folder: Path
    claims: RunClaims
    tags: dict


def fingerprint(overrides: list[str]) -> str:
    return hashlib.sha1(json.dumps(list(overrides)).encode()).hexdigest()[:12]


def outcome(metrics: dict) -> dict:
    """What a comparison keeps of a run: its objective and what it spent."""
    return {"objective": metrics["objective"], **{k: metrics.get(k) for k in BUDGETS}}


def finished_runs(client: MlflowClient, parent_run_id: str) -> dict[tuple[str, str, int], dict]:
    """(arm, overrides fingerprint, seed) -> metrics of this study run's finished confirmation and ablation runs."""
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = [r for role in ROLES for r in client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{Tag.ROLE}` = '{role}' "
               "and attributes.status = 'FINISHED'")]  # by role: the study's trials are not fetched
    return {(r.data.tags[Tag.ARM], r.data.tags.get(Tag.OVERRIDES), int(r.data.tags[Tag.SEED])): outcome(r.data.metrics)
            for r in runs if "objective" in r.data.metrics}


def train_arms(spec: DictConfig, setting: ArmSetting, parent_run_id: str, arm_overrides: dict[str, list[str]],
               budget: list[str]) -> dict[str, dict[int, tuple]]:
    """Every arm at this budget, seeds 1..spec.seeds, side by side (spec.jobs): arm -> seed -> (metrics or None,
    why it failed or None)."""
    done = finished_runs(setting.client, parent_run_id)
    outcomes: dict[str, dict[int, tuple]] = {}
    missing = []  # (arm, seed, the task that trains it)
    for arm, overrides in arm_overrides.items():
        overrides = overrides + budget
        key = fingerprint(overrides)
        outcomes[arm] = {seed: (done[(arm, key, seed)], None) for seed in range(1, spec.seeds + 1)
                         if (arm, key, seed) in done}
        missing += [(arm, seed, partial(_train_arm, spec, setting, parent_run_id, arm, overrides, seed))
                    for seed in range(1, spec.seeds + 1) if seed not in outcomes[arm]]
    # Seed by seed, every arm's run next to the others': a busy spell of the machine falls on all arms alike
    # (it matters at equal time).
    missing.sort(key=lambda m: m[1])
    trained = side_by_side([task for _, _, task in missing], spec.jobs)
    for (arm, seed, _), result in zip(missing, trained):
        outcomes[arm][seed] = result
    return outcomes


def _train_arm(spec: DictConfig, setting: ArmSetting, parent_run_id: str, arm: str, overrides: list[str],
               seed: int) -> tuple[dict | None, str | None]:
    """(metrics, None) of one seed of one arm, or (None, why it failed). It is claimed while it trains, so that
    no two workers train it; a run an interrupted confirm left in its folder continues from its checkpoint, and a
    failed one (or one that cannot continue) is trained afresh in the next folder."""
    key = fingerprint(overrides)
    tags = {**setting.tags, Tag.ARM: arm, Tag.SEED: seed, Tag.OVERRIDES: key}
    name = f"{tags[Tag.ROLE]}_{arm}_seed{seed}"
    with setting.claims.hold(f"{key}/{arm}/seed{seed}", stop=interrupted) as claim:
        if claim.done_by is not None:  # another worker trained it meanwhile
            return outcome(setting.client.get_run(claim.done_by).data.metrics), None
        if claim.failed is not None:  # ... or failed to: a result for this confirm, trained afresh by the next
            return None, claim.failed
        for attempt in itertools.count(1):
            run_dir = setting.folder / key / (name if attempt == 1 else f"{name}_attempt{attempt}")
            run_id = folder_run_id(run_dir)
            if run_id is not None:
                run = setting.client.get_run(run_id)
                if run.info.status == "FINISHED" and "objective" in run.data.metrics:
                    claim.run_id = run_id
                    return outcome(run.data.metrics), None
                if run.info.status == "FAILED" or cannot_resume(run_id, run_dir):
                    continue
            print(f"\n{tags[Tag.ROLE]}: {arm} settings, seed {seed}, same {tags[Tag.BUDGET]}", flush=True)
            return _train(spec, parent_run_id, overrides + ([f"resume={run_dir}"] if run_id else []) + [
                f"train.seed={seed}", f"run_dir={run_dir}", f"tracking.run_name={name}"], tags,
                f"{arm} seed {seed}" if spec.jobs > 1 else "", claim)


def _train(spec: DictConfig, parent_run_id: str, overrides: list[str], tags: dict, label: str, claim: Claim):
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
        claim.failed = reason
        return None, reason
    MlflowClient().log_metric(result.run_id, "objective", value)
    claim.run_id = result.run_id
    return outcome({**result.metrics, "objective": value}), None
