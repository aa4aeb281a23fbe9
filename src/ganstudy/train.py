"""Train one DCGAN run: `python -m ganstudy.train [overrides]`, or `train(cfg)` from Python."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable, Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from ganstudy.config import ConfigError, check_group_choices, exit_on_config_error, flatten, validate

# Keys that may differ between a run and its resumption (epochs: to train a finished run longer).
RESUMABLE_CHANGES = ("resume", "run_dir", "train.epochs", "train.progress", "tracking.")

# Called after every evaluation with (epoch, metrics); returning True stops training after this epoch.
OnEval = Callable[[int, dict], bool]


def _check_same_config(run_id: str, params: dict) -> None:
    from ganstudy.tracking import logged_params

    for key, old in logged_params(run_id).items():
        if key.startswith(RESUMABLE_CHANGES) or key not in params:
            continue
        if str(params[key]) != old:
            raise ConfigError(f"{key}={params[key]}: run {run_id} was trained with {old}; resume it with its own settings")


def train(cfg: DictConfig, on_eval: Optional[OnEval] = None, parent_run_id: Optional[str] = None,
          tags: Optional[dict] = None) -> dict[str, float]:
    """Train the configured GAN into one MLflow run (new, or the one `cfg.resume` names).

    Returns the run's final metrics, the best FID (`fid_best`, `fid_best_epoch`) and `detector_auc`.
    `on_eval(epoch, metrics)` is called after every evaluation (a sweep reports and prunes there).
    A new run is nested under `parent_run_id` (or the active run) and carries `tags`.
    """
    validate(cfg)
    from ganstudy.data import load_mnist, steps_per_epoch

    splits = load_mnist(cfg.data)
    train_images = splits.train_x[: cfg.data.limit] if cfg.data.limit else splits.train_x
    steps = steps_per_epoch(len(train_images), cfg.train.batch_size)
    if steps < 1:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size}: must be at most the "
                          f"{len(train_images)} training images")
    if cfg.eval.n_samples > len(splits.test_x):
        raise ConfigError(f"eval.n_samples={cfg.eval.n_samples}: must be at most the {len(splits.test_x)} "
                          "held-out images (data.holdout)")

    from ganstudy import tracking

    tracking.use_experiment(cfg.tracking)
    params = flatten(cfg)
    run_id, run_dir = None, Path(cfg.run_dir)
    if cfg.resume:
        run_id, found_dir = tracking.find_run(cfg.resume)
        _check_same_config(run_id, params)
        if found_dir is None:  # another machine: bring the checkpoints, grids and best G from the tracking store
            for folder in ("checkpoints", "samples", "models"):
                tracking.download_dir(run_id, folder, run_dir)
        else:
            run_dir = found_dir
    return _fit(cfg, splits, train_images, steps, run_id, run_dir.resolve(), params, on_eval, parent_run_id, tags)


def _fit(cfg, splits, train_images, steps, run_id, run_dir: Path, params, on_eval, parent_run_id, tags):
    import keras
    import mlflow
    import numpy as np
    import tensorflow as tf

    from ganstudy import callbacks as cb
    from ganstudy import tracking
    from ganstudy.classifier import feature_net
    from ganstudy.data import training_dataset
    from ganstudy.evaluate import Evaluator
    from ganstudy.model import DCGAN, make_discriminator, make_generator, make_optimizer

    t, m = cfg.train, cfg.model
    net = feature_net(splits, cfg.eval.cache_dir)
    evaluator = Evaluator(net, splits, cfg.eval.n_samples, seed=t.seed)
    keras.utils.set_random_seed(t.seed)
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    device = tf.device(t.device) if t.device else contextlib.nullcontext()
    with device:
        gan = DCGAN(make_generator(m.noise_dim, m.width, t.precision), make_discriminator(m.dropout, m.width, t.precision),
                    m.noise_dim, t.label_smoothing, seed=t.seed)
        gan.compile(d_optimizer=make_optimizer(cfg.optimizer, cfg.optimizer.lr_d, t.precision),
                    g_optimizer=make_optimizer(cfg.optimizer, cfg.optimizer.lr_g, t.precision))
        gan.build_optimizers()
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        ckpt = tf.train.Checkpoint(generator=gan.generator, discriminator=gan.discriminator,
                                   generator_optimizer=gan.g_optimizer, discriminator_optimizer=gan.d_optimizer,
                                   noise_seed=gan.noise_seed.state, epoch=epoch_var)
        manager = tf.train.CheckpointManager(ckpt, run_dir / "checkpoints", max_to_keep=None)
        if run_id and manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        first_epoch = int(epoch_var.numpy())
        logged_until = tracking.last_logged_epoch(run_id) if run_id else 0
        best = tracking.best_value(run_id, "fid", until_step=first_epoch) if run_id else (float("inf"), 0)
        fixed_noise = np.random.default_rng(t.seed).standard_normal((16, m.noise_dim)).astype(np.float32)
        run_dir.mkdir(parents=True, exist_ok=True)

        nested = mlflow.active_run() is not None
        with mlflow.start_run(run_id=run_id, run_name=cfg.tracking.run_name, nested=nested,
                              parent_run_id=None if run_id else parent_run_id) as run:
            (run_dir / tracking.RUN_ID_FILE).write_text(run.info.run_id)
            mlflow.set_tag(tracking.RUN_DIR_TAG, str(run_dir))
            if run_id is None:
                mlflow.set_tags({"ganstudy.data": cfg.data.name, "ganstudy.train_images": len(train_images),
                                 "ganstudy.classifier": net.key, **(tags or {})})
                mlflow.log_params(params)
                mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
                mlflow.log_metrics({"classifier_accuracy": net.accuracy, **evaluator.floor()}, step=0)
            else:
                mlflow.set_tag("ganstudy.resumed_from_epoch", first_epoch)
            print(f"run {run.info.run_id}: epochs {first_epoch + 1}..{t.epochs}, {steps} steps of "
                  f"{t.batch_size} per epoch, files in {run_dir}", flush=True)
            quiet = t.progress == "none"
            evaluation = cb.Evaluation(evaluator, gan, cfg.eval.every, t.epochs, logged_until, best,
                                       run_dir / "models" / "generator_best.keras", on_eval, quiet)
            metrics_cb = cb.MlflowMetrics(steps, t.log_every_steps, logged_until)
            callbacks = [keras.callbacks.TerminateOnNaN(), metrics_cb,
                         cb.SampleGrid(gan.generator, fixed_noise, run_dir / "samples"), evaluation,
                         cb.Checkpointing(manager, epoch_var, t.checkpoint_every, t.epochs)]
            if not quiet:
                callbacks.append(cb.EpochSummary(t.epochs))
            bar = t.progress == "bar" or (t.progress == "auto" and sys.stdout.isatty())
            if first_epoch < t.epochs:
                data = training_dataset(train_images, t.batch_size, t.seed, first_epoch, t.epochs)
                gan.fit(data, epochs=t.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                        callbacks=callbacks, verbose=1 if bar else 0, shuffle=False)
            if metrics_cb.diverged():
                mlflow.set_tag("ganstudy.diverged", "true")
                print("stopped: the losses are no longer finite (NaN/inf)", file=sys.stderr, flush=True)
            elif cfg.eval.detector:
                _fit_detector(gan.generator, train_images, evaluator, cfg.eval.detector_epochs, t.seed, run_dir)
            _log_outputs(run.info.run_id, gan, run_dir)
            final = {k: v for k, v in tracking.last_values(run.info.run_id).items() if "/" not in k}
        _print_where(run.info.run_id, run_dir, cfg.tracking.uri)
    return final


def _fit_detector(generator, train_images, evaluator, epochs: int, seed: int, run_dir: Path) -> None:
    """How detectable this generator's images are to a CNN trained for it: detector_auc (lower is better)."""
    import mlflow

    from ganstudy.data import to_model_range
    from ganstudy.detector import train_detector

    model, auc = train_detector(generator, to_model_range(train_images[:5000]), evaluator.heldout, epochs, seed)
    (run_dir / "models").mkdir(exist_ok=True)
    model.save(run_dir / "models" / "detector.keras")
    mlflow.log_metric("detector_auc", auc)


def _log_outputs(run_id, gan, run_dir: Path) -> None:
    """The end of a run: the progression GIF, the D-output plot and the final G and D in Keras format."""
    import mlflow

    from ganstudy.images import make_gif, plot_d_outputs
    from ganstudy.tracking import metric_series

    frames = sorted((run_dir / "samples").glob("epoch_*.png"))
    mlflow.log_artifact(str(make_gif(frames, run_dir / "samples" / "progress.gif")), "samples")
    plot = plot_d_outputs(metric_series(run_id, "d_real"), metric_series(run_id, "d_fake"), run_dir / "d_outputs.png")
    mlflow.log_artifact(str(plot))
    models = run_dir / "models"
    models.mkdir(exist_ok=True)
    for net in (gan.generator, gan.discriminator):
        net.save(models / f"{net.name}.keras")
    mlflow.log_artifacts(str(models), "models")


def _print_where(run_id: str, run_dir: Path, uri: str) -> None:
    ui = f"mlflow ui --backend-store-uri {uri}" if "://" not in uri or uri.startswith(("sqlite", "file")) else uri
    print(f"done: run {run_id}\n  files: {run_dir}\n  see it: {ui}", flush=True)


@hydra.main(version_base=None, config_path="pkg://ganstudy.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    with exit_on_config_error():
        train(cfg)


def main() -> None:
    """Command line: check group choices first (Hydra's own report is long), then compose and train."""
    with exit_on_config_error():
        check_group_choices(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
