"""Config composition: every group option composes, validates, and means what the article says."""
import pytest

from ganstudy.config import ConfigError, compose, flatten, group_options, validate


@pytest.mark.parametrize("group", ["data", "model", "loss", "optimizer", "train", "tracking", "experiment"])
def test_every_group_option_composes_and_validates(group):
    options = group_options(group)
    assert options, group
    for option in options:
        cfg = compose([f"{group}={option}", "run_dir=/tmp/x"])
        validate(cfg)
        assert flatten(cfg)["optimizer.lr_g"] > 0


def test_seed_experiment_is_the_article():
    p = flatten(compose(["experiment=seed", "run_dir=/tmp/x"]))
    assert p["train.epochs"] == 50 and p["train.batch_size"] == 256 and p["train.checkpoint_every"] == 5
    assert p["optimizer.name"] == "adam" and p["optimizer.lr_g"] == p["optimizer.lr_d"] == 1e-4
    assert p["optimizer.beta1"] == 0.9 and p["model.dropout"] == 0.3 and p["model.noise_dim"] == 100
    assert p["model.width"] == 1.0 and p["train.precision"] == "float32" and p["train.label_smoothing"] == 0


def test_lr_sets_both_and_ttur_sets_them_apart():
    both = compose(["lr=3e-4", "run_dir=/tmp/x"]).optimizer
    assert both.lr_g == both.lr_d == 3e-4
    apart = compose(["optimizer.lr_g=1e-3", "optimizer.lr_d=5e-5", "run_dir=/tmp/x"]).optimizer
    assert (apart.lr_g, apart.lr_d) == (1e-3, 5e-5)


def test_the_levers_default_to_the_articles_choices():
    for experiment in ("seed", "quick", "best", "tiny"):
        p = flatten(compose([f"experiment={experiment}", "run_dir=/tmp/x"]))
        assert (p["loss.name"], p["loss.gp_weight"], p["model.d_norm"], p["train.r1_gamma"], p["train.augment"],
                p["train.d_steps"], p["optimizer.schedule"]) == ("ns", None, "none", 0.0, "none", 1, "constant")
    assert compose(["loss=wgan_gp", "run_dir=/tmp/x"]).loss.gp_weight == 10.0


def test_default_is_the_quick_experiment():
    p = flatten(compose(["run_dir=/tmp/x"]))
    assert (p["train.epochs"], p["train.batch_size"], p["optimizer.lr_g"], p["optimizer.beta1"]) == (20, 32, 2e-4, 0.5)
    assert p["data.name"] == "mnist5k"


@pytest.mark.parametrize("override, message", [
    ("lr=0", "optimizer.lr_g=0.0: must be > 0 (set both with lr=)"),
    ("optimizer.lr_d=-1e-4", "optimizer.lr_d=-0.0001: must be > 0 (set both with lr=)"),
    ("model.dropout=1.0", "model.dropout=1.0: must be in [0, 1)"),
    ("model.dropout=-0.1", "model.dropout=-0.1: must be in [0, 1)"),
    ("train.batch_size=0", "train.batch_size=0: must be an integer >= 1"),
    ("train.epochs=0", "train.epochs=0: must be an integer >= 1"),
    ("train.precision=fp8", "train.precision=fp8: must be one of float32, mixed_bfloat16, mixed_float16"),
    ("train.label_smoothing=1", "train.label_smoothing=1.0: must be in [0, 1)"),
    ("data=mnist data.holdout=1000", "data.holdout=1000: must be 10000 for data=mnist, which holds out its official "
                                     "test split (holdout splits data=mnist5k)"),
    ("train.seed=0", "train.seed=0: must be an integer other than 0 and multiples of 2147483647 (TensorFlow cannot "
                     "shuffle per epoch under that global seed)"),
    # The levers, and the combinations that cannot work.
    ("loss.name=nope", "loss.name=nope: must be one of ns, hinge, ls, wgan_gp"),
    ("train.d_steps=0", "train.d_steps=0: must be an integer >= 1 (D updates per G update)"),
    ("train.r1_gamma=-1", "train.r1_gamma=-1.0: must be >= 0 (0: no R1 penalty)"),
    ("train.augment=nope", "train.augment=nope: must be one of none, diffaugment"),
    ("train.augment_policy=[color,blur]", "train.augment_policy=[color,blur]: must be a list of distinct color, "
                                          "translation, cutout"),
    ("train.augment_policy=[cutout,cutout]", "train.augment_policy=[cutout,cutout]: must be a list of distinct "
                                             "color, translation, cutout"),
    ("train.augment_policy=[]", "train.augment_policy=[]: must be a list of distinct color, translation, cutout"),
    ("train.augment_strength=1.5", "train.augment_strength=1.5: must be in [0, 1] (0: the identity)"),
    ("model.d_norm=nope", "model.d_norm=nope: must be one of none, spectral"),
    ("optimizer.schedule=nope", "optimizer.schedule=nope: must be one of constant, linear, cosine"),
    ("loss=wgan_gp loss.gp_weight=0", "loss.gp_weight=0.0: must be > 0 for loss=wgan_gp"),
    ("loss.gp_weight=5", "loss.gp_weight=5.0: must be null for loss=ns (only loss=wgan_gp has a gradient penalty)"),
    ("loss=hinge train.label_smoothing=0.1", "train.label_smoothing=0.1: must be 0 for loss=hinge, which has no "
                                             "target for real images (smoothing is for loss=ns or ls)"),
])
def test_invalid_values_name_key_and_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        validate(compose([*override.split(), "run_dir=/tmp/x"]))
    assert str(err.value) == message


@pytest.mark.parametrize("override, message", [
    ("optimizer=adagrad", "optimizer=adagrad: must be one of adam, rmsprop, sgd"),
    ("experiment=huge", "experiment=huge: must be one of best, quick, seed, tiny"),
    ("loss=nope", "loss=nope: must be one of hinge, ls, ns, wgan_gp"),
])
def test_unknown_group_option(override, message):
    with pytest.raises(ConfigError) as err:
        compose([override])
    assert str(err.value) == message


def test_a_multirun_runs_each_combination_in_a_folder_of_its_own(tmp_path, monkeypatch):
    """`python -m ganstudy.train -m optimizer=adam,rmsprop lr=1e-4,2e-4`: the group check takes a multirun's
    choices one by one, and Hydra runs one job per combination, one after another, each with its own run_dir
    under hydra.sweep.dir (train itself stubbed: no training)."""
    import sys
    from pathlib import Path

    from ganstudy import train as train_module

    jobs = []
    monkeypatch.setattr(train_module, "train", lambda cfg: jobs.append((cfg.optimizer.name, cfg.lr, cfg.run_dir)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train", "-m", "optimizer=adam,rmsprop", "lr=1e-4,2e-4", "hydra.sweep.dir=grid",
                                      "hydra/job_logging=none", "hydra/hydra_logging=none"])
    train_module.main()
    assert sorted(job[:2] for job in jobs) == [("adam", 1e-4), ("adam", 2e-4), ("rmsprop", 1e-4), ("rmsprop", 2e-4)]
    assert sorted(Path(job[2]) for job in jobs) == [tmp_path / "grid" / str(n) for n in range(4)]
    with pytest.raises(ConfigError, match=r"^optimizer=adamw: must be one of adam, rmsprop, sgd$"):
        compose(["optimizer=adam,adamw"])


def test_cfg_job_resolve_prints_the_resolved_config_and_a_run_needs_a_folder(tmp_path, monkeypatch, capsys):
    """`python -m ganstudy.train --cfg job --resolve` prints the config with its interpolations resolved, as Hydra
    does: run_dir (Hydra's output folder) is null, no job having started. A run refuses run_dir=null."""
    import sys

    from omegaconf import OmegaConf

    from ganstudy import train as train_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train", "--cfg", "job", "--resolve", "lr=3e-4"])
    train_module.main()
    cfg = OmegaConf.create(capsys.readouterr().out)
    assert cfg.run_dir is None and cfg.optimizer.lr_g == cfg.optimizer.lr_d == 3e-4 and not (tmp_path / "outputs").exists()
    with pytest.raises(ConfigError, match=r"^run_dir=null: must be a folder \(leave it out for Hydra's output folder\)$"):
        validate(compose(["run_dir=null"]))
