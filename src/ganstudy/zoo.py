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
from ganstudy.tags import Tag

TRIALS = "trials"  # the group of the study's trials; a confirm or ablation run's group is its arm


@dataclass(frozen=True)
class Member:
    run_id: str
    role: str    # trial, confirm or ablation
    name: str    # "trial 3", "best seed 1", "best seed 1 (time)"
    group: str   # "trials", or the arm: "best", "quick", "loss_hinge", "best (time)"
    number: int  # the trial's number, or the arm's seed


def members(client: MlflowClient, parent_run_id: str) -> list[Member]:
    """The zoo, trials first (by number), then the arms (by group and seed)."""
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'",
                              max_results=5000)
    out = []
    for r in runs:
        tags = r.data.tags
        if model_id(r.info.run_id, GENERATOR) is None or model_id(r.info.run_id, DISCRIMINATOR) is None:
            continue
        if tags.get(Tag.ROLE) == "trial":
            n = int(tags[Tag.TRIAL])
            out.append(Member(r.info.run_id, "trial", f"trial {n}", TRIALS, n))
        elif Tag.ARM in tags:
            time = " (time)" if tags.get(Tag.BUDGET) == "time" else ""
            seed = int(tags[Tag.SEED])
            out.append(Member(r.info.run_id, tags[Tag.ROLE], f"{tags[Tag.ARM]} seed {seed}{time}", tags[Tag.ARM] + time,
                              seed))
    return sorted(out, key=lambda m: (m.group != TRIALS, m.group, m.number))


def fakes(member: Member, sets: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Fakes of the member's generator, per set {name: (count, noise seed)}: pixel values 0..255, float32
    (count, 28, 28)."""
    generator = _load(member, GENERATOR)
    return {name: generate(generator, n, seed) for name, (n, seed) in sets.items()}


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
