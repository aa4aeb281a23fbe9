"""A study's generators, its zoo: every finished run under the study's MLflow run that logged a generator and
a discriminator (its trials, its confirm and ablation runs), each named and grouped by what made it, and the
fakes each makes from fixed noise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mlflow.tracking import MlflowClient

from ganstudy.config import ConfigError
from ganstudy.evaluate import generate
from ganstudy.mlflow_models import DISCRIMINATOR, GENERATOR, load, model_id
from ganstudy.storage import BOOKKEEPING
from ganstudy.tags import Tag

TRIALS = "trials"  # the group of the study's trials; a confirm or ablation run's group is its arm
# The params (prefixes) in which a trial and a confirm run of the same settings differ by design: the bookkeeping a
# study's identity leaves out too, the budget, the seed and the post-hoc detector. A trial equal to an arm's run in
# all others has that arm's settings (the best trial's are the best arm's, the warm start's the base arm's).
BY_DESIGN = (*BOOKKEEPING, "train.epochs", "train.seed", "train.time_budget", "eval.detector")


@dataclass(frozen=True)
class Member:
    run_id: str
    role: str      # trial, confirm or ablation
    name: str      # "trial 3", "best seed 1", "best seed 1 (time)"
    group: str     # its settings and budget: "trials", "best", "best (time)", "loss_hinge"
    number: int    # the trial's number, or the arm's seed
    arm: str = TRIALS       # the arm's name: "best"; "trials" for a trial
    settings: str = TRIALS  # the group at either budget: "best"; "best [3f2a1c]" when the arm's settings changed;
                            # for a trial, the arm whose settings it has, if any


def members(client: MlflowClient, parent_run_id: str) -> list[Member]:
    """The zoo, trials first (by number), then the arms (by group and seed). An arm whose settings changed
    between confirms (a new best) has runs of each: their names and groups carry the settings' fingerprint."""
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = [r for r in client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                                 "and attributes.status = 'FINISHED'", max_results=5000)
            if model_id(r.info.run_id, GENERATOR) is not None and model_id(r.info.run_id, DISCRIMINATOR) is not None]
    arms = [r for r in runs if Tag.ARM in r.data.tags]
    settings_of: dict[tuple, set] = {}  # (arm, budget): the fingerprints of the settings it ran with
    for r in arms:
        settings_of.setdefault((r.data.tags[Tag.ARM], r.data.tags.get(Tag.BUDGET)), set()).add(
            r.data.tags.get(Tag.OVERRIDES))

    def settings_name(arm_run) -> str:
        tags = arm_run.data.tags
        arm = tags[Tag.ARM]
        return arm if len(settings_of[(arm, tags.get(Tag.BUDGET))]) == 1 else f"{arm} [{str(tags.get(Tag.OVERRIDES))[:6]}]"

    out = []
    for r in runs:
        if r.data.tags.get(Tag.ROLE) == "trial":
            number = int(r.data.tags[Tag.TRIAL])
            twin = next((a for a in arms if _same_settings(r.data.params, a.data.params)), None)
            out.append(Member(r.info.run_id, "trial", f"trial {number}", TRIALS, number, TRIALS,
                              TRIALS if twin is None else settings_name(twin)))
    for r in arms:
        tags = r.data.tags
        arm, budget, seed = tags[Tag.ARM], tags.get(Tag.BUDGET), int(tags[Tag.SEED])
        settings = settings_name(r)
        time = " (time)" if budget == "time" else ""
        out.append(Member(r.info.run_id, tags[Tag.ROLE], f"{settings} seed {seed}{time}", settings + time, seed,
                          arm, settings))
    return sorted(out, key=lambda m: (m.group != TRIALS, m.group, m.number))


def _same_settings(trial_params: dict, arm_params: dict) -> bool:
    keys = [k for k in set(trial_params) | set(arm_params) if not k.startswith(BY_DESIGN)]
    return all(trial_params.get(k) == arm_params.get(k) for k in keys)


def fakes(member: Member, sets: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Fakes of the member's generator, per set {name: (count, noise seed)}: whole pixel values 0..255, float32
    (count, 28, 28)."""
    generator = _load(member, GENERATOR)
    # whole pixel values, as real images and image files have: the rounding is no clue to a detector
    return {name: np.clip(np.rint(generate(generator, n, seed)), 0, 255) for name, (n, seed) in sets.items()}


def discriminator(member: Member):
    """The member's discriminator as logged: pixels (n, 28, 28) -> p_real (n, 1)."""
    return _load(member, DISCRIMINATOR)


def _load(member: Member, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return load(f"models:/{model_id(member.run_id, name)}")
    except (MlflowException, OSError) as err:
        raise ConfigError(f"{member.name} (run {member.run_id}): its {name} model cannot be loaded "
                          f"({str(err).splitlines()[0]}): were its artifacts removed?") from None
