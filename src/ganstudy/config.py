"""What a valid run configuration is: the typed schema Hydra composes into, and the range checks."""
from __future__ import annotations

import contextlib
import shlex
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

OPTIMIZERS = ("adam", "rmsprop", "sgd")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DATASETS = ("mnist5k", "mnist")
PROGRESS = ("auto", "bar", "line", "none")
CHECKPOINTS = ("all", "latest")
# The levers (losses.LOSSES, augment.DiffAugment and model.py build them).
LOSSES = ("ns", "hinge", "ls", "wgan_gp")
TARGET_LOSSES = ("ns", "ls")  # the losses with a target for real images, which label smoothing moves
D_NORMS = ("none", "spectral")
AUGMENTS = ("none", "diffaugment")
AUGMENT_POLICY = ("color", "translation", "cutout")
SCHEDULES = ("constant", "linear", "cosine")
# Metrics a run returns that a study can optimise, each with the direction that means a better generator (all
# but detector_auc are reported at every evaluation; a D or detector that tells fakes less well is better).
OBJECTIVES = {"fid_best": "minimize", "fid": "minimize", "kid": "minimize", "mnist_score": "maximize",
              "precision": "maximize", "recall": "maximize", "class_kl": "minimize", "d_auc": "minimize",
              "d_ap": "minimize", "detector_auc": "minimize"}


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming the key and what is allowed."""


# The schema gives each key its type; the values, defaults included, live in conf/ only (one source).


@dataclass
class DataConfig:
    name: str = MISSING
    path: Optional[str] = MISSING
    holdout: int = MISSING
    limit: Optional[int] = MISSING


@dataclass
class ModelConfig:
    noise_dim: int = MISSING
    dropout: float = MISSING
    width: float = MISSING
    d_norm: str = MISSING


@dataclass
class LossConfig:
    name: str = MISSING
    gp_weight: Optional[float] = MISSING


@dataclass
class OptimizerConfig:
    """One schema for every optimizer; each uses its own keys and ignores the others."""
    name: str = MISSING
    lr_g: float = MISSING
    lr_d: float = MISSING
    beta1: float = MISSING
    beta2: float = MISSING
    rho: float = MISSING
    momentum: float = MISSING
    nesterov: bool = MISSING
    schedule: str = MISSING


@dataclass
class TrainConfig:
    epochs: int = MISSING
    time_budget: Optional[float] = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    checkpoint_every: int = MISSING
    checkpoints: str = MISSING
    ema_decay: float = MISSING
    label_smoothing: float = MISSING
    r1_gamma: float = MISSING
    augment: str = MISSING
    augment_policy: list[str] = MISSING
    augment_strength: float = MISSING
    d_steps: int = MISSING
    precision: str = MISSING
    device: Optional[str] = MISSING
    jit_compile: bool = MISSING
    threads: int = MISSING
    steps_per_execution: int = MISSING
    log_every_steps: int = MISSING
    deterministic: bool = MISSING
    progress: str = MISSING


@dataclass
class EvalConfig:
    every: int = MISSING
    n_samples: int = MISSING
    detector: bool = MISSING
    detector_epochs: int = MISSING


@dataclass
class TrackingConfig:
    uri: str = MISSING
    artifact_root: str = MISSING
    experiment: str = MISSING
    run_name: Optional[str] = MISSING
    system_metrics: bool = MISSING


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    lr: float = MISSING
    resume: Optional[str] = MISSING
    run_dir: Optional[str] = MISSING  # Hydra's output folder: null until a job starts (--cfg job --resolve)


ConfigStore.instance().store(name="base_config", node=Config)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value}: must be {allowed}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first setting that cannot work, before any work starts."""
    o, t, m, d, e = cfg.optimizer, cfg.train, cfg.model, cfg.data, cfg.eval
    _check(o.name in OPTIMIZERS, "optimizer.name", o.name, "one of " + ", ".join(OPTIMIZERS))
    for key in ("lr_g", "lr_d"):
        _check(o[key] > 0, f"optimizer.{key}", o[key], "> 0 (set both with lr=)")
    _check(0 <= o.beta1 < 1, "optimizer.beta1", o.beta1, "in [0, 1)")
    _check(0 <= o.beta2 < 1, "optimizer.beta2", o.beta2, "in [0, 1)")
    _check(0 <= o.momentum < 1, "optimizer.momentum", o.momentum, "in [0, 1)")
    _check(0 < o.rho < 1, "optimizer.rho", o.rho, "in (0, 1)")
    _check(0 <= m.dropout < 1, "model.dropout", m.dropout, "in [0, 1)")
    _check(m.noise_dim >= 1, "model.noise_dim", m.noise_dim, "an integer >= 1")
    _check(m.width > 0, "model.width", m.width, "> 0")
    _check(t.epochs >= 1, "train.epochs", t.epochs, "an integer >= 1")
    _check(t.time_budget is None or t.time_budget > 0, "train.time_budget", t.time_budget, "null or seconds > 0")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    # A global seed that TensorFlow truncates to 0 breaks tf.data's per-epoch shuffle seeds (random_seed.get_seed).
    _check(t.seed % (2**31 - 1) != 0, "train.seed", t.seed, "an integer other than 0 and multiples of 2147483647 "
           "(TensorFlow cannot shuffle per epoch under that global seed)")
    _check(t.checkpoint_every >= 1, "train.checkpoint_every", t.checkpoint_every, "an integer >= 1")
    _check(t.checkpoints in CHECKPOINTS, "train.checkpoints", t.checkpoints, "one of " + ", ".join(CHECKPOINTS))
    _check(0 <= t.ema_decay < 1, "train.ema_decay", t.ema_decay, "in [0, 1) (0: no weight average)")
    _check(0 <= t.label_smoothing < 1, "train.label_smoothing", t.label_smoothing, "in [0, 1)")
    _check_levers(cfg)
    _check(t.precision in PRECISIONS, "train.precision", t.precision, "one of " + ", ".join(PRECISIONS))
    _check(t.threads >= 0, "train.threads", t.threads, "an integer >= 0 (0: all cores)")
    _check(t.steps_per_execution >= 1, "train.steps_per_execution", t.steps_per_execution, "an integer >= 1")
    _check(t.log_every_steps >= 0, "train.log_every_steps", t.log_every_steps, "an integer >= 0")
    _check(t.progress in PROGRESS, "train.progress", t.progress, "one of " + ", ".join(PROGRESS))
    _check(e.every >= 1, "eval.every", e.every, "an integer >= 1")
    _check(e.n_samples >= 10, "eval.n_samples", e.n_samples, "an integer >= 10")
    _check(e.detector_epochs >= 1, "eval.detector_epochs", e.detector_epochs, "an integer >= 1")
    _check(d.name in DATASETS, "data.name", d.name, "one of " + ", ".join(DATASETS))
    _check(d.holdout >= 0, "data.holdout", d.holdout, "an integer >= 0")
    _check(d.name != "mnist" or d.holdout == 10000, "data.holdout", d.holdout,
           "10000 for data=mnist, which holds out its official test split (holdout splits data=mnist5k)")
    _check(d.limit is None or d.limit >= 1, "data.limit", d.limit, "null or an integer >= 1")
    _check(d.path is None or d.name == "mnist", "data.path", d.path,
           f"null for data={d.name}, which reads no file (data=mnist data.path=FILE reads one)")
    _check(cfg.run_dir is not None, "run_dir", "null", "a folder (leave it out for Hydra's output folder)")


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    _check(value in allowed, key, value, "one of " + ", ".join(allowed))


def _check_levers(cfg: DictConfig) -> None:
    loss, t, m = cfg.loss, cfg.train, cfg.model
    _one_of("loss.name", loss.name, LOSSES)
    if loss.name == "wgan_gp":
        _check(loss.gp_weight is not None and loss.gp_weight > 0, "loss.gp_weight", loss.gp_weight, "> 0 for loss=wgan_gp")
    else:
        _check(loss.gp_weight is None, "loss.gp_weight", loss.gp_weight,
               f"null for loss={loss.name} (only loss=wgan_gp has a gradient penalty)")
    _check(t.label_smoothing == 0 or loss.name in TARGET_LOSSES, "train.label_smoothing", t.label_smoothing,
           f"0 for loss={loss.name}, which has no target for real images (smoothing is for loss=ns or ls)")
    _one_of("model.d_norm", m.d_norm, D_NORMS)
    _check(t.r1_gamma >= 0, "train.r1_gamma", t.r1_gamma, ">= 0 (0: no R1 penalty)")
    _one_of("train.augment", t.augment, AUGMENTS)
    policy = list(t.augment_policy)
    _check(policy and all(p in AUGMENT_POLICY for p in policy) and len(set(policy)) == len(policy),
           "train.augment_policy", "[" + ",".join(map(str, policy)) + "]",
           "a list of distinct " + ", ".join(AUGMENT_POLICY))
    _check(0 <= t.augment_strength <= 1, "train.augment_strength", t.augment_strength, "in [0, 1] (0: the identity)")
    _check(t.d_steps >= 1, "train.d_steps", t.d_steps, "an integer >= 1 (D updates per G update)")
    _one_of("optimizer.schedule", cfg.optimizer.schedule, SCHEDULES)


def check_against_data(cfg: DictConfig, n_train: int, n_heldout: int) -> None:
    """The settings that depend on how many images the configured data set has."""
    _check(n_train >= 1, "data.holdout", cfg.data.holdout, f"below the {n_train + n_heldout} images of data={cfg.data.name}")
    _check(cfg.train.batch_size <= n_train, "train.batch_size", cfg.train.batch_size,
           f"at most the {n_train} training images")
    _check(cfg.eval.n_samples <= n_heldout, "eval.n_samples", cfg.eval.n_samples,
           f"at most the {n_heldout} held-out images (data.holdout)")


def check_objective(objective: str, cfg: DictConfig, direction: str) -> None:
    """A study's objective must be a metric that runs of this config log, optimised the way that is better."""
    _check(objective in OBJECTIVES, "objective", objective, "one of " + ", ".join(OBJECTIVES))
    _check(direction == OBJECTIVES[objective], "direction", direction,
           f"{OBJECTIVES[objective]} for objective={objective} (or leave direction out)")
    _check(objective != "detector_auc" or cfg.eval.detector, "objective", objective,
           "a metric the runs log (detector_auc needs eval.detector=true in base)")


def group_options(group: str, config_dirs: list[str] = ()) -> list[str]:
    """The options of a config group: the packaged conf/ folder's, and those of extra config dirs
    (`--config-dir`) that hold the group."""
    folders = [resources.files("ganstudy.conf") / group, *(Path(d) / group for d in config_dirs)]
    return sorted({p.name[: -len(".yaml")] for f in folders if f.is_dir() for p in f.iterdir() if p.name.endswith(".yaml")})


def check_group_choices(overrides: list[str], config_dirs: list[str] = ()) -> None:
    """Reject `group=unknown` on the command line with one line, before Hydra's longer report. A multirun's
    `group=a,b` is checked choice by choice; a sweep function (`glob(*)`, `choice(a,b)`) is left to Hydra."""
    groups = [p.name for p in resources.files("ganstudy.conf").iterdir() if p.is_dir() and not p.name.startswith("_")]
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or key not in groups or value in ("null", "") or "(" in value:
            continue
        options = group_options(key, config_dirs)
        for choice in value.split(","):
            _check(choice in options, key, shlex.quote(choice), "one of " + ", ".join(options))


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as dotted keys: {'optimizer.lr_g': 0.0002, ...}."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


@contextlib.contextmanager
def exit_on_config_error():
    """Turn a ConfigError into its one line on stderr and exit status 2 (a usage error)."""
    try:
        yield
    except ConfigError as err:
        from ganstudy.redact import mask

        print(f"error: {mask(str(err))}", file=sys.stderr)
        sys.exit(2)


def compose(overrides: list[str] = ()) -> DictConfig:
    """The run config for these overrides, composed as `python -m ganstudy.train` would (for sweeps and tests)."""
    return _hydra_compose(overrides)


def group_choices(overrides: list[str] = ()) -> dict[str, str]:
    """The option each config group takes under these overrides, e.g. {"optimizer": "adam", ...}."""
    choices = _hydra_compose(overrides, return_hydra_config=True).hydra.runtime.choices
    return {group: option for group, option in choices.items() if not group.startswith("hydra/")}


def _hydra_compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    check_group_choices(list(overrides))
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ganstudy.conf", version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
