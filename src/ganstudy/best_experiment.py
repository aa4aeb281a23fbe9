"""Write a study's best trial as a Hydra experiment: the base run's settings and budget with the trial's values.

    python -m ganstudy.best_experiment [sweep=default] [storage=URL] [study_name=NAME] [out=conf/experiment/NAME.yaml]

The study is the one `python -m ganstudy.sweep` ran with the same sweep file and overrides. By default the file is
conf/experiment/STUDY_NAME.yaml under the folder you run in; train it with
`python -m ganstudy.train --config-dir conf experiment=STUDY_NAME`. Hydra takes an experiment that ganstudy ships
(quick, seed, best, tiny) before one of the same name in --config-dir, so such a name is refused outside the
package's own conf/, and a shipped file is replaced only when out= names it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ganstudy.config import ConfigError, exit_on_config_error

DEFAULT_OUT = "conf/experiment/{study_name}.yaml"


# Where and how a run is kept, not what it trains: left to the user of the experiment.
BOOKKEEPING = ("run_dir", "resume", "tracking", "train.progress", "train.checkpoints")


def experiment_yaml(params: dict, value: float, spec) -> str:
    """A `# @package _global_` experiment that composes to the confirm's best arm: the sweep's base (e.g.
    experiment=quick's budget) with the best trial's values. It names the trial's values, and the config-group
    choices and settings that differ from a run without an experiment."""
    from omegaconf import OmegaConf

    from ganstudy.config import compose, flatten, group_choices
    from ganstudy.confirm import best_arm

    overrides = best_arm(params, spec) + ["run_dir=unused"]
    choices = {g: c for g, c in group_choices(overrides).items() if g != "experiment"}
    plain = group_choices(["~experiment"])
    reference = flatten(compose([f"{g}={c}" for g, c in choices.items()] + ["~experiment", "run_dir=unused"]))
    tree: dict = {}
    for key, v in flatten(compose(overrides)).items():
        if (key in params or v != reference.get(key)) and not key.startswith(BOOKKEEPING):
            _set(tree, key, v)
    header = (f"# @package _global_\n# The best trial of study {spec.study_name}: {spec.objective} {value:.4g} at its "
              f"trial budget;\n# here at the budget of the study's base ({' '.join(spec.base)}).\n"
              "# Written by python -m ganstudy.best_experiment.\n")
    groups = [f"  - override /{g}: {c}\n" for g, c in choices.items() if g in params or c != plain.get(g)]
    return header + ("defaults:\n" + "".join(groups) if groups else "") + OmegaConf.to_yaml(OmegaConf.create(tree))


def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def package_conf() -> Path:
    """The installed ganstudy's own conf/ (a clone's tracked one, for an editable install)."""
    from importlib import resources

    return Path(str(resources.files("ganstudy.conf"))).resolve()


def check_out(out: Path, given: bool) -> None:
    """Where the experiment may go: over a file the package ships only when out= names it; elsewhere, not under the
    name of a shipped experiment, which Hydra would take instead of the file."""
    shipped = package_conf() / "experiment"
    if out.resolve().parent == shipped:
        if out.exists() and not given:
            raise ConfigError(f"out={out}: would replace the shipped experiment={out.stem} of {package_conf()}; give "
                              "out=FILE to replace it")
    elif (shipped / out.name).exists():
        raise ConfigError(f"out={out}: experiment={out.stem} is one of ganstudy's own, which Hydra takes before one "
                          "in --config-dir; give out=conf/experiment/NAME.yaml with another name")


def main(argv: list[str] | None = None) -> None:
    import optuna

    from ganstudy import sweep_spec
    from ganstudy.storage import existing_study
    from ganstudy.sweep import parse_argv

    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip())
        return
    given = next((a.split("=", 1)[1] for a in argv if a.startswith("out=")), None)
    with exit_on_config_error():
        spec = sweep_spec.load(*parse_argv([a for a in argv if not a.startswith("out=")]))
        study = existing_study(spec)
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            raise ConfigError(f"study {spec.study_name}: no complete trial yet")
        out = Path(given or DEFAULT_OUT.format(study_name=spec.study_name))
        check_out(out, given is not None)
        best = study.best_trial
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(experiment_yaml(best.params, best.value, spec))
    print(f"wrote trial {best.number} ({spec.objective} {best.value:.4g}) to {out}")


if __name__ == "__main__":
    main()
