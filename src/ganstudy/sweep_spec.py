"""A sweep file (sweeps/NAME.yaml): what a study searches, how, and for how many trials; checked before any trial."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ganstudy.config import OBJECTIVES, ConfigError, check_against_data, check_objective, compose, group_options, validate
from ganstudy.storage import check_url

SAMPLERS = ("tpe", "random")
PRUNERS = ("asha", "median", "hyperband", "none")
# The least each integer setting may be (Optuna's own limits for the sampler's and pruners').
MINIMUMS = {"n_trials": 1, "jobs": 1, "seeds": 1, "heartbeat": 1, "sampler.n_startup_trials": 0,
            "pruner.n_startup_trials": 0, "pruner.n_warmup_steps": 0, "pruner.min_resource": 1,
            "pruner.reduction_factor": 2, "pruner.bootstrap_count": 0}
ARMS = ("best", "article")  # the confirm arms besides the base, whose name (base_name) must differ
PARAM_KEYS = {"low", "high", "log", "step", "choices", "when"}


@dataclass
class SamplerSpec:
    name: str = "tpe"
    seed: Optional[int] = 0
    n_startup_trials: int = 8


@dataclass
class PrunerSpec:
    name: str = "median"
    n_startup_trials: int = 4    # median: trials finished before any pruning
    n_warmup_steps: int = 4      # median: epochs before a trial can be pruned
    min_resource: int = 2        # asha, hyperband: epochs every trial gets
    reduction_factor: int = 3    # asha, hyperband: 1 in this many trials goes on at each rung
    bootstrap_count: int = 0     # asha: other trials that must have reached a rung before one goes on from it


@dataclass
class SweepSpec:
    study_name: str = MISSING
    direction: Optional[str] = None     # null: the objective's own (config.OBJECTIVES)
    objective: str = "fid_best"
    n_trials: int = 20
    storage: Optional[str] = None        # an Optuna storage URL; null: SQLite under mlruns/
    jobs: int = 1                        # trials (and confirm runs) this worker trains at once, on cores/jobs each
    heartbeat: int = 60                  # seconds; a trial silent for 2 heartbeats is failed and retried
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    base: list = field(default_factory=list)        # overrides every trial and every confirm run starts from
    trial_overrides: list = field(default_factory=list)  # only the study's trials: e.g. a shorter budget to rank
                                                          # settings by; confirm trains the arms at base's budget
    baseline: list = field(default_factory=list)    # overrides that make the base the article's settings
    opponents: dict = field(default_factory=dict)   # more confirm arms: name -> overrides (whole, not on base)
    space: dict = field(default_factory=dict)       # override key -> {low, high, log, step} or {choices}
    enqueue: list = field(default_factory=list)     # settings ({space key: value}) tried first: a warm start
    confirm: bool = False                # after the study: best vs base and baseline, `seeds` seeds each
    base_name: str = "base"              # what the confirm table calls the base settings
    seeds: int = 3
    budgets: list = field(default_factory=lambda: ["epochs", "time"])  # confirm at the same epochs, same seconds
    time_budget: Optional[float] = None  # confirm's seconds per run at the same time; null: the best arm's own
    levers: dict = field(default_factory=dict)  # lever key -> [the article's choice, the other]: what ablation changes
    ablation: bool = False               # after confirm: the winner with each lever changed alone, `seeds` seeds each
    out_dir: str = "outputs/sweeps"      # run folders: OUT_DIR/STUDY-INSTANCE/trial_NNNN


def sweep_path(name: str) -> Path:
    """sweeps/NAME.yaml shipped with the package, or a path to a YAML file."""
    as_path = Path(name).expanduser()
    if as_path.suffix in (".yaml", ".yml"):
        return as_path
    return Path(str(resources.files("ganstudy.sweeps") / f"{name}.yaml"))


def available() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ganstudy.sweeps").iterdir() if p.name.endswith(".yaml"))


def defaults(cls: type = SweepSpec, prefix: str = "") -> dict[str, Any]:
    """Every key a sweep file may set, dotted (sampler.seed), with the value it gets when the file leaves it out
    (MISSING: it must be given)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(value):
            out.update(defaults(type(value), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def load(name: str, overrides: list[str] = ()) -> DictConfig:
    """The sweep file merged with `key=value` overrides, checked; ConfigError names what is wrong."""
    path = sweep_path(name)
    if not path.exists():
        raise ConfigError(f"sweep={name}: no such sweep file; choose one of {', '.join(available())} or a .yaml path")
    try:
        spec = OmegaConf.merge(OmegaConf.structured(SweepSpec), OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f", line {where.line + 1}" if where else ""
        raise ConfigError(f"sweep={name}: not valid YAML ({getattr(err, 'problem', None) or err}{line})") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"sweep={name}: {str(err).splitlines()[0]} (keys: {', '.join(SweepSpec.__dataclass_fields__)})") from None
    check(spec, name)
    return spec


def trial_base(spec: DictConfig) -> list[str]:
    """The overrides every trial starts from: base, then trial_overrides."""
    return list(spec.base) + list(spec.trial_overrides)


def runnable(overrides: list[str]) -> DictConfig:
    """The composed run config, checked as train() checks it (ranges, and sizes against the data)."""
    cfg = compose(overrides + ["run_dir=unused"])
    _check_runnable(cfg)
    return cfg


def _check_runnable(cfg: DictConfig) -> None:
    validate(cfg)
    check_against_data(cfg, *_data_sizes(cfg.data.name, cfg.data.path, cfg.data.holdout, cfg.data.limit))


def _runnable_with(base: DictConfig, base_overrides: list, key: str, value: Any, is_group: bool) -> None:
    """Checks `base_overrides` + `key=value` as runnable() does. A config group's choice is composed anew; any
    other key is set on a copy of `base` (what Hydra's override does, without its 0.15 s composition)."""
    if is_group:
        runnable(list(base_overrides) + [f"{key}={value}"])
        return
    cfg = base.copy()
    try:
        OmegaConf.update(cfg, key, value, merge=False)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{key}={value}: {str(err).splitlines()[0]}") from None
    _check_runnable(cfg)


@functools.lru_cache(maxsize=8)
def _data_sizes(name, path, holdout, limit) -> tuple[int, int]:
    from ganstudy.data import load_mnist, training_images

    data_cfg = OmegaConf.create({"name": name, "path": path, "holdout": holdout, "limit": limit})
    splits = load_mnist(data_cfg)
    return len(training_images(splits, data_cfg)), len(splits.test_x)


def _fail(name: str, what: str) -> None:
    raise ConfigError(f"sweep={name}: {what}")


def check(spec: DictConfig, name: str) -> None:
    if OmegaConf.is_missing(spec, "study_name"):
        _fail(name, "study_name is missing")
    if spec.direction is None:
        spec.direction = OBJECTIVES.get(spec.objective)
    if spec.direction is not None and spec.direction not in ("minimize", "maximize"):
        _fail(name, f"direction={spec.direction}: must be minimize or maximize")
    for key, least in MINIMUMS.items():
        if (value := OmegaConf.select(spec, key)) < least:
            _fail(name, f"{key}={value}: must be an integer >= {least}")
    if spec.storage:
        try:
            check_url(spec.storage)
        except ConfigError as err:
            _fail(name, str(err))
    if spec.base_name in ARMS or not spec.base_name:
        _fail(name, f"base_name={spec.base_name}: name the base arm something other than {' or '.join(ARMS)}")
    for arm, overrides in spec.opponents.items():
        if arm in ARMS or arm == spec.base_name or not OmegaConf.is_list(overrides):
            _fail(name, f"opponents.{arm}: give a list of overrides under a name other than "
                        f"{', '.join((*ARMS, spec.base_name))}")
        try:
            runnable(list(overrides))
        except ConfigError as err:
            _fail(name, f"opponents.{arm}: {err}")
    if spec.time_budget is not None and not spec.time_budget > 0:
        _fail(name, f"time_budget={spec.time_budget}: must be > 0 seconds (or null: the best arm's own time)")
    if not spec.budgets or not set(spec.budgets) <= {"epochs", "time"}:
        _fail(name, f"budgets={list(spec.budgets)}: must name epochs, time or both")
    if "time" in spec.budgets and "epochs" not in spec.budgets and not spec.time_budget:
        _fail(name, "budgets=[time] needs time_budget=SECONDS (by default it is the best arm's time at the same epochs)")
    if spec.sampler.name not in SAMPLERS:
        _fail(name, f"sampler.name={spec.sampler.name}: must be one of {', '.join(SAMPLERS)}")
    if spec.pruner.name not in PRUNERS:
        _fail(name, f"pruner.name={spec.pruner.name}: must be one of {', '.join(PRUNERS)}")
    if not spec.space:
        _fail(name, "space is empty: name at least one setting to search")
    try:  # the base and the article's settings must be runs that can work
        base = runnable(trial_base(spec))
        confirm_base = runnable(list(spec.base))
        runnable(list(spec.base) + list(spec.baseline))
        check_objective(spec.objective, base, spec.direction)
    except ConfigError as err:
        _fail(name, str(err))
    groups = {k for k in base.keys() if OmegaConf.is_dict(base[k])}
    _check_levers(name, spec, confirm_base, groups)
    for key, param in spec.space.items():
        # A setting searched only under a group's choice (when: {loss: wgan_gp}) is checked under that choice.
        under = _group_conditions(param, groups)
        _check_param(name, key, param, runnable(trial_base(spec) + under) if under else base, groups, spec.space,
                     trial_base(spec) + under)
    try:
        _in_condition_order(spec.space)
    except ValueError as err:
        _fail(name, str(err))
    _check_group_combinations(name, spec.space, groups, trial_base(spec))
    for i, params in enumerate(spec.enqueue):
        _check_enqueued(name, f"enqueue[{i}]", params, spec.space)


def _check_levers(name: str, spec: DictConfig, base: DictConfig, groups: set) -> None:
    """Each lever names two choices that the base (composed: `base`) can run with; an ablation needs levers and
    the same epochs."""
    for key, choices in spec.levers.items():
        if not OmegaConf.is_list(choices) or len(choices) != 2:
            _fail(name, f"levers.{key}: give two choices, [the article's, the other]")
        for value in choices:
            try:
                _runnable_with(base, list(spec.base), key, value, key in groups)
            except ConfigError as err:
                _fail(name, f"levers.{key}: {err}")
    if spec.ablation and not spec.levers:
        _fail(name, "ablation=true needs levers: {key: [the article's choice, the other]} in the sweep file")
    if spec.ablation and "epochs" not in spec.budgets:
        _fail(name, "ablation=true needs budgets to include epochs: it starts from the winner at the same epochs")


def _check_enqueued(name: str, where: str, params: Any, space: DictConfig) -> None:
    """An enqueued trial names space keys only, with values the space could have proposed."""
    if not OmegaConf.is_dict(params):
        _fail(name, f"{where}: give {{space key: value, ...}}")
    for key, value in params.items():
        if key not in space:
            _fail(name, f"{where}.{key}: not a key of space")
        p = space[key]
        ok = value in p.choices if "choices" in p else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and p.low <= value <= p.high)
        if not ok:
            allowed = list(p.choices) if "choices" in p else f"[{p.low}, {p.high}]"
            _fail(name, f"{where}.{key}={value}: must be in {allowed}")


def _check_param(name: str, key: str, param: Any, base: DictConfig, groups: set, space: DictConfig,
                 base_overrides: list) -> None:
    where = f"space.{key}"
    if not OmegaConf.is_dict(param) or not set(param) <= PARAM_KEYS:
        _fail(name, f"{where}: give {{low, high[, log, step]}} or {{choices: [...]}} (allowed keys: "
                    f"{', '.join(sorted(PARAM_KEYS))})")
    if key in groups:
        options = group_options(key)
        if "choices" not in param or any(c not in options for c in param.choices):
            _fail(name, f"{where}: a config group takes choices from {', '.join(options)}")
    elif OmegaConf.select(base, key, default="<missing>") == "<missing>":
        _fail(name, f"{where}: unknown parameter (not a key of the run config)")
    if "choices" in param:
        if not param.choices:
            _fail(name, f"{where}: choices is empty")
    elif "low" not in param or "high" not in param:
        _fail(name, f"{where}: needs low and high, or choices")
    elif not param.low < param.high:
        _fail(name, f"{where}: empty range, low={param.low} is not below high={param.high}")
    elif param.get("log") and param.low <= 0:
        _fail(name, f"{where}: a log range needs low > 0")
    elif param.get("step") is not None and param.get("log"):
        _fail(name, f"{where}: step and log cannot go together (Optuna samples a log range continuously)")
    elif param.get("step") is not None and not param.step > 0:
        _fail(name, f"{where}: step={param.step}: must be > 0")
    if "low" in param and isinstance(OmegaConf.select(base, key), float):  # model.width: {low: 1, high: 2}
        param.low, param.high = float(param.low), float(param.high)     # is a float search, not {1, 2}
    for value in _values(param):
        try:  # every choice and both ends of a range must make a valid run
            _runnable_with(base, base_overrides, key, value, key in groups)
        except ConfigError as err:
            _fail(name, f"{where}: {value} cannot run ({err})")
    for other, value in (param.get("when") or {}).items():
        if other not in space or "choices" not in space[other] or value not in space[other].choices:
            _fail(name, f"{where}: when.{other}={value} is not a choice of space.{other}")


def _values(param: DictConfig) -> list:
    return list(param.choices) if "choices" in param else [param.low, param.high]


def _group_conditions(param: Any, groups: set) -> list[str]:
    """The group choices a setting's `when` asks for, as overrides (when: {loss: wgan_gp} -> loss=wgan_gp)."""
    when = (param.get("when") if OmegaConf.is_dict(param) else None) or {}
    return [f"{other}={value}" for other, value in when.items() if other in groups]


def _check_group_combinations(name: str, space: DictConfig, groups: set, base_overrides: list) -> None:
    """Each choice of a searched config group (loss=hinge) with each value of the other searched settings that
    its `when` allows: a pair that cannot run (label smoothing with the hinge loss) would stop the study mid-way."""
    composed: dict[tuple, DictConfig] = {}
    for key in (k for k in space if k in groups):
        for choice in space[key].choices:
            for other, param in space.items():
                when = param.get("when") or {}
                if other == key or other in groups or when.get(key, choice) != choice:
                    continue
                overrides = tuple(dict.fromkeys([f"{key}={choice}", *_group_conditions(param, groups)]))
                if overrides not in composed:
                    composed[overrides] = runnable(list(base_overrides) + list(overrides))
                for value in _values(param):
                    try:
                        _runnable_with(composed[overrides], [], other, value, False)
                    except ConfigError as err:
                        _fail(name, f"space.{other}: {value} cannot run with {key}={choice} ({err}); "
                                    f"add when: {{{key}: ...}} to space.{other}")


def _in_condition_order(space: DictConfig) -> list[str]:
    """The space's keys, each after the keys its `when` names (in file order otherwise); ValueError on a cycle."""
    ordered: list[str] = []
    pending = list(space.keys())
    while pending:
        ready = [k for k in pending if all(other in ordered for other in (space[k].get("when") or {}))]
        if not ready:
            raise ValueError(f"space: the conditions of {', '.join(pending)} name each other in a cycle")
        ordered += ready
        pending = [k for k in pending if k not in ready]
    return ordered


def distribution(param: DictConfig):
    """The Optuna distribution that suggest() asks for this parameter of a space."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if "choices" in param:
        return CategoricalDistribution(list(param.choices))
    if isinstance(param.low, int) and isinstance(param.high, int):
        return IntDistribution(param.low, param.high, log=bool(param.get("log")), step=param.get("step") or 1)
    return FloatDistribution(float(param.low), float(param.high), log=bool(param.get("log")), step=param.get("step"))


def _describe(dist) -> str:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return f"choices {list(dist.choices)}"
    kind = "an integer" if isinstance(dist, IntDistribution) else "a float"
    return f"{kind} range [{dist.low}, {dist.high}]" + (" on a log scale" if dist.log else "")


def check_space(study, spec: DictConfig) -> None:
    """A continued study searches each parameter as its trials did: the same kind (float, integer, choices), log
    scale and choices (a range may move). Optuna's storage refuses any other, so every trial would fail."""
    from optuna.distributions import check_distribution_compatibility

    recorded = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            recorded.setdefault(name, dist)
    for key, param in spec.space.items():
        if key not in recorded:
            continue  # a new parameter: earlier trials simply lack it
        try:
            check_distribution_compatibility(recorded[key], distribution(param))
        except ValueError:
            raise ConfigError(f"space.{key}: study {spec.study_name} searched it as {_describe(recorded[key])}, not "
                              f"{_describe(distribution(param))}; a continued study keeps each parameter's kind, log "
                              "scale and choices (a range may change): keep them, or start a new study with "
                              "study_name=NAME") from None


def suggest(trial, space: DictConfig) -> list[str]:
    """Ask the trial for a value of each parameter whose `when` holds (conditions first, whatever the file's
    order); return them as Hydra overrides, in the file's order."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    chosen: dict[str, Any] = {}
    for key in _in_condition_order(space):
        p = space[key]
        if any(chosen.get(other) != value for other, value in (p.get("when") or {}).items()):
            continue
        d = distribution(p)
        if isinstance(d, CategoricalDistribution):
            chosen[key] = trial.suggest_categorical(key, list(d.choices))
        elif isinstance(d, IntDistribution):
            chosen[key] = trial.suggest_int(key, d.low, d.high, step=d.step, log=d.log)
        else:
            chosen[key] = trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)
    return [f"{k}={chosen[k]}" for k in space if k in chosen]
