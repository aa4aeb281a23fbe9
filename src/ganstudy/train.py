"""Train one DCGAN run: `python -m ganstudy.train [overrides]`, or `train(cfg)` from Python."""
from __future__ import annotations

import contextlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from ganstudy.config import ConfigError, check_against_data, check_group_choices, exit_on_config_error, flatten, validate

# Called after every evaluation with (epoch, metrics); returning True stops training after this epoch.
OnEval = Callable[[int, dict], bool]
# Called with the MLflow run id as soon as the run exists.
OnStart = Callable[[str], None]


BEST_GENERATOR_FILE = "generator_best.keras"  # in checkpoints/: the best FID's sampler so far, for a resume


class Diverged(RuntimeError):
    """The losses stopped being finite: training stopped at that batch and the MLflow run ended FAILED."""


@dataclass
class RunResult:
    """What train() made: the MLflow run, its folder, and its final metrics (fid_best, detector_auc, ...)."""
    run_id: str
    run_dir: Path
    metrics: dict


@dataclass
class _Data:
    splits: object
    train_images: object
    steps: int


def train(cfg: DictConfig, on_eval: Optional[OnEval] = None, parent_run_id: Optional[str] = None,
          tags: Optional[dict] = None, on_start: Optional[OnStart] = None) -> RunResult:
    """Train the configured GAN into one MLflow run (new, or the one `cfg.resume` names).

    `on_eval(epoch, metrics)` is called after every evaluation (a sweep reports and prunes there),
    `on_start(run_id)` once the MLflow run exists.
    A new run is nested under `parent_run_id` (or the active run) and carries `tags`.
    Raises ConfigError for settings that cannot work (before any run exists) and Diverged.
    """
    validate(cfg)
    data = _load_data(cfg)
    from ganstudy import resume, tracking

    tracking.use_experiment(cfg.tracking)
    params = _params(cfg)
    run_id, run_dir = resume.resume_target(cfg, params)
    with resume.claim_folder(run_dir, run_id):
        resume.bring_run(run_id, run_dir)
        return _fit(cfg, data, run_id, run_dir.resolve(), params, (on_start, on_eval), parent_run_id, tags)


def _use_threads(n: int) -> None:
    """TensorFlow's thread pools (0: its default, all cores); settable only before its first op."""
    import tensorflow as tf

    threading = tf.config.threading
    if n == threading.get_intra_op_parallelism_threads():
        return
    try:
        threading.set_intra_op_parallelism_threads(n)
        threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        raise ConfigError(f"train.threads={n}: TensorFlow already runs in this process with "
                          f"{threading.get_intra_op_parallelism_threads()} (0: all cores); set it in a new process") from None


def _grow_gpu_memory() -> None:
    """Each run takes GPU memory as it needs it, not all of it at once: a sweep's runs side by side (jobs > 1)
    share a GPU. Settable only before TensorFlow's first op, like the threads."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already set up in this process: its setting stays
            tf.config.experimental.set_memory_growth(gpu, True)


def device_used(asked: str | None) -> str:
    """The device the run trains on, as its tag records it ("GPU:0", "CPU:0"). A GPU asked for that TensorFlow
    cannot see (a broken CUDA install, which the quiet console would hide) is said on the run's first line."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if asked and "GPU" in asked.upper() and not gpus:
        print(f"warning: train.device={asked} asks for a GPU, but TensorFlow sees none (is CUDA installed for it?): "
              "this run trains on the CPU", file=sys.stderr, flush=True)
        return "CPU:0"
    if asked:
        return asked.upper().lstrip("/").replace("DEVICE:", "")
    return "GPU:0" if gpus else "CPU:0"


def _load_data(cfg: DictConfig) -> _Data:
    from ganstudy.data import load_mnist, steps_per_epoch, training_images

    splits = load_mnist(cfg.data)
    train_images = training_images(splits, cfg.data)
    check_against_data(cfg, len(train_images), len(splits.test_x))
    return _Data(splits, train_images, steps_per_epoch(len(train_images), cfg.train.batch_size))


def _params(cfg: DictConfig) -> dict:
    """The values that ran: the top-level `lr` only when it is what both optimizers got."""
    params = flatten(cfg)
    if not cfg.optimizer.lr_g == cfg.optimizer.lr_d == cfg.lr:
        params.pop("lr")
    return params


def _fit(cfg, data: _Data, run_id, run_dir: Path, params, hooks, parent_run_id, tags) -> RunResult:
    import keras
    import mlflow
    import tensorflow as tf

    from ganstudy.classifier import feature_net
    from ganstudy.evaluate import Evaluator
    from ganstudy.model import build_gan, steps_per_call
    from ganstudy.resume import restore

    t = cfg.train
    _use_threads(t.threads)  # before TensorFlow's first op
    _grow_gpu_memory()
    device = device_used(t.device)
    with tf.device(t.device) if t.device else contextlib.nullcontext():  # the evaluator's networks too
        net = feature_net()
        evaluator = Evaluator(net, data.splits, cfg.eval.n_samples, seed=t.seed)
        keras.utils.set_random_seed(t.seed)
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()
        gan = build_gan(cfg, steps_per_call(data.steps, t.steps_per_execution), data.steps)
        manager, epoch_var = restore(gan, cfg, run_dir, resuming=run_id is not None)
        run_dir.mkdir(parents=True, exist_ok=True)
        with mlflow.start_run(run_id=run_id, run_name=cfg.tracking.run_name, nested=mlflow.active_run() is not None,
                              parent_run_id=None if run_id else parent_run_id,
                              log_system_metrics=cfg.tracking.system_metrics) as run:
            on_start, on_eval = hooks
            if on_start:
                on_start(run.info.run_id)
            _start_logging(cfg, run, run_id, run_dir, data, net, evaluator, params, tags, device,
                           int(epoch_var.numpy()))
            stopper = _train_epochs(cfg, gan, data, run.info.run_id, run_dir, manager, epoch_var, evaluator, on_eval)
            _finish(cfg, gan, data, evaluator, run.info.run_id, run_dir, stopper)
            final = _final_metrics(run.info.run_id)
    _print_where(run, run_dir, cfg.tracking.uri)
    return RunResult(run.info.run_id, run_dir, final)


def _start_logging(cfg, run, run_id, run_dir: Path, data: _Data, net, evaluator, params, tags, device: str,
                   first_epoch) -> None:
    """A new run gets its params, config, tags and the real-image floor; a resumed one a resume tag."""
    import mlflow

    from ganstudy.redact import mask, mask_values
    from ganstudy.tags import Tag
    from ganstudy.tracking import RUN_ID_FILE

    (run_dir / RUN_ID_FILE).write_text(run.info.run_id)
    mlflow.set_tags({Tag.RUN_DIR: str(run_dir), Tag.DEVICE: device})  # a resume may move
    if run_id is None:
        mlflow.set_tags({Tag.DATA: cfg.data.name, Tag.TRAIN_IMAGES: len(data.train_images), Tag.CLASSIFIER: net.key,
                         **(tags or {})})
        mlflow.log_params(mask_values(params))
        mlflow.log_text(mask(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
        mlflow.log_metrics({"classifier_accuracy": net.accuracy, **evaluator.floor()}, step=0)
    else:
        mlflow.set_tag(Tag.RESUMED_FROM, first_epoch)
    mlflow.set_tag(Tag.EPOCHS, cfg.train.epochs)  # params keep the first target; a resume may train longer
    print(f"run {run.info.run_id}: epochs {first_epoch + 1}..{cfg.train.epochs}, {data.steps} steps of "
          f"{cfg.train.batch_size} per epoch, files in {run_dir}", flush=True)


def _train_epochs(cfg, gan, data: _Data, run_id, run_dir: Path, manager, epoch_var, evaluator, on_eval):
    """fit() from the restored epoch to train.epochs with the run's callbacks; returns the divergence check."""
    import numpy as np

    from ganstudy import callbacks as cb
    from ganstudy import run_history
    from ganstudy.data import training_dataset

    t = cfg.train
    first_epoch = int(epoch_var.numpy())
    log = cb.LogOnce(run_history.logged_steps(run_id))
    best = run_history.best_value(run_id, "fid", until_step=first_epoch)
    fixed_noise = np.random.default_rng(t.seed).standard_normal((16, cfg.model.noise_dim)).astype(np.float32)
    quiet = t.progress == "none"
    stopper = cb.StopOnDivergence()
    upload = t.checkpoints == "all"  # what a resume on another machine needs
    spent_before = dict(run_history.metric_series(run_id, "train_seconds")).get(first_epoch, 0.0)  # a resume's
    callbacks = [stopper, cb.Spending(data.steps, len(data.train_images), t.time_budget, spent_before, log),
                 cb.MlflowMetrics(data.steps, t.log_every_steps, log),
                 cb.SampleGrid(gan.sampler, fixed_noise, run_dir / "samples", run_history.last_image_step(run_id, "samples")),
                 cb.Evaluation(evaluator, gan, cfg.eval.every, t.epochs, log, best,
                               run_dir / "checkpoints" / BEST_GENERATOR_FILE, on_eval, quiet, upload),
                 cb.Checkpointing(manager, epoch_var, t.checkpoint_every, t.epochs, upload)]
    if not quiet:
        callbacks.append(cb.EpochSummary(t.epochs))
    bar = t.progress == "bar" or (t.progress == "auto" and sys.stdout.isatty())
    if first_epoch < t.epochs:
        batches = training_dataset(data.train_images, t.batch_size, t.seed, first_epoch, t.epochs)
        gan.fit(batches, epochs=t.epochs, initial_epoch=first_epoch, steps_per_epoch=data.steps,
                callbacks=callbacks, verbose=1 if bar else 0, shuffle=False)
    return stopper


def _finish(cfg, gan, data: _Data, evaluator, run_id: str, run_dir: Path, stopper) -> None:
    """After the last epoch: the detector, the pictures and models; a diverged run is tagged and raises."""
    import mlflow

    from ganstudy import run_history
    from ganstudy.tags import Tag

    epoch = run_history.epochs_logged(run_id)  # the last one trained
    if stopper.diverged_at is None and cfg.eval.detector:
        _fit_detector(gan.sampler, data.train_images, evaluator, cfg.eval.detector_epochs, cfg.train.seed, epoch)
    _log_outputs(run_id, gan, run_dir, epoch)
    if cfg.train.checkpoints == "latest":  # only a resume of a running run needed it
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if stopper.diverged_at is not None:
        epoch, batch = stopper.diverged_at
        mlflow.set_tags({Tag.DIVERGED: "true", Tag.DIVERGED_AT: f"epoch {epoch}, batch {batch}"})
        raise Diverged(f"run {run_id} diverged at epoch {epoch}, batch {batch}: the losses are no longer finite "
                       "(NaN/inf); try a lower learning rate")


def _final_metrics(run_id: str) -> dict:
    from ganstudy.run_history import last_values

    return {k: v for k, v in last_values(run_id).items() if "/" not in k}


def _fit_detector(generator, train_images, evaluator, epochs: int, seed: int, epoch: int) -> None:
    """How detectable this generator's images are to a CNN trained for it: detector_auc (lower is better); the
    CNN is logged as the run's MLflow model `detector`."""
    import mlflow

    from ganstudy import mlflow_models
    from ganstudy.data import to_model_range
    from ganstudy.detector import train_detector

    model, auc = train_detector(generator, to_model_range(train_images[:5000]), evaluator.heldout, epochs, seed)
    mlflow.log_metric("detector_auc", auc, step=epoch)
    mlflow_models.log(mlflow_models.pixel_scorer(model), mlflow_models.DETECTOR, epoch)


def _log_outputs(run_id, gan, run_dir: Path, epoch: int) -> None:
    """The end of a run: the progression GIF, the D-output plot, and the final G (the sampler), the best G and D
    as MLflow models."""
    import keras
    import mlflow

    from ganstudy import mlflow_models, run_history
    from ganstudy.images import make_gif, plot_d_outputs

    frames = sorted((run_dir / "samples").glob("epoch_*.png"))
    if frames:
        mlflow.log_artifact(str(make_gif(frames, run_dir / "samples" / "progress.gif")), "samples")
    plot = plot_d_outputs(run_history.metric_series(run_id, "d_real"), run_history.metric_series(run_id, "d_fake"),
                          run_dir / "d_outputs.png")
    mlflow.log_artifact(str(plot))
    mm = mlflow_models
    mm.log(mm.pixel_generator(gan.sampler), mm.GENERATOR, epoch)
    mm.log(mm.pixel_scorer(gan.discriminator), mm.DISCRIMINATOR, epoch)
    best, best_epoch = run_dir / "checkpoints" / BEST_GENERATOR_FILE, run_history.best_value(run_id, "fid", epoch)[1]
    if best.exists():
        mm.log(mm.pixel_generator(keras.models.load_model(best, compile=False)), mm.GENERATOR_BEST, best_epoch)


def _print_where(run, run_dir: Path, uri: str) -> None:
    from ganstudy.tracking import ui_hint

    print(f"done: run {run.info.run_id}\n  files: {run_dir}\n{ui_hint(uri, run.info.experiment_id, run.info.run_id)}",
          flush=True)


@hydra.main(version_base=None, config_path="pkg://ganstudy.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    with exit_on_config_error():
        try:
            train(cfg)
        except Diverged as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)


def main() -> None:
    """Command line: check group choices first (Hydra's own report is long), then compose and train."""
    args = sys.argv[1:]
    config_dirs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--config-dir", "-cd")]
    config_dirs += [a.split("=", 1)[1] for a in args if a.startswith("--config-dir=")]
    with exit_on_config_error():
        check_group_choices(args, config_dirs)
    _hydra_main()


if __name__ == "__main__":
    main()
