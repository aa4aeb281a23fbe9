"""Keras callbacks that turn one fit() into a tracked, resumable run."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf

from ganstudy.data import to_uint8
from ganstudy.images import grid, save_png

METRICS = ("d_loss", "g_loss", "d_real", "d_fake")


def finite_losses(logs: dict) -> bool:
    return bool(np.isfinite([float(logs[k]) for k in ("d_loss", "g_loss")]).all())


def due(done: int, every: int, last_epoch: int, logs: dict, stopping: bool = False) -> bool:
    """Whether epoch `done` gets a periodic action: every `every` epochs and after the last (the planned last,
    or one after which training stops: a time budget spent, a pruned trial), unless it diverged."""
    return (done % every == 0 or done == last_epoch or stopping) and finite_losses(logs)


def epoch_metrics(logs: dict) -> dict[str, float]:
    """The four training metrics and how far D's mean outputs are from 0.5."""
    m = {k: float(logs[k]) for k in METRICS}
    m["d_real_drift"] = abs(m["d_real"] - 0.5)
    m["d_fake_drift"] = abs(m["d_fake"] - 0.5)
    return m


class LogOnce:
    """Log each metric at a step only once: a resumed run replays the epochs since its checkpoint, and its
    killed process may have logged some of their metrics (`logged`: the last step of each metric)."""

    def __init__(self, logged: dict[str, int]):
        self.logged = logged

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        new = {k: v for k, v in metrics.items() if step > self.logged.get(k, 0)}
        if new:
            mlflow.log_metrics(new, step=step)


class MlflowMetrics(keras.callbacks.Callback):
    """Log the epoch metrics (step = epoch, from 1) and running losses every `every_steps` steps."""

    def __init__(self, steps_per_epoch: int, every_steps: int, log: LogOnce):
        super().__init__()
        self.steps_per_epoch, self.every_steps, self.log = steps_per_epoch, every_steps, log
        self.epoch = self.last_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.last_step = epoch * self.steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step of the call: with steps_per_execution > 1 one call runs several steps.
        step = self.epoch * self.steps_per_epoch + batch + 1
        crossed = self.every_steps and step // self.every_steps > self.last_step // self.every_steps
        self.last_step = step
        if crossed:
            self.log({f"step/{k}": float(logs[k]) for k in METRICS}, step)

    def on_epoch_end(self, epoch, logs=None):
        self.log(epoch_metrics(logs), epoch + 1)


class StopOnDivergence(keras.callbacks.Callback):
    """Stop training at the first batch whose losses are NaN/inf (Keras's TerminateOnNaN reads only `loss`)."""

    def __init__(self):
        super().__init__()
        self.epoch, self.diverged_at = 0, None  # diverged_at: (epoch, batch), both from 1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not finite_losses(logs):
            self.diverged_at = (self.epoch + 1, batch + 1)
            self.model.stop_training = True


class Spending(keras.callbacks.Callback):
    """After every epoch, what the run has spent so far as metrics (step = epoch): `epochs`, `train_seconds`
    (wall time of fit, callbacks included, summed over the run's processes), `updates` (training steps) and
    `images`; once `time_budget` seconds are spent, that epoch is the last (its evaluation and checkpoint follow)."""

    def __init__(self, steps_per_epoch: int, images_per_epoch: int, time_budget: float | None,
                 seconds_before: float, log: LogOnce):
        super().__init__()
        self.steps, self.images, self.time_budget = steps_per_epoch, images_per_epoch, time_budget
        self.seconds_before, self.log, self.start = seconds_before, log, 0.0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        seconds = self.seconds_before + time.perf_counter() - self.start
        self.log({"epochs": done, "train_seconds": seconds, "updates": done * self.steps,
                  "images": done * self.images}, done)
        if self.time_budget and seconds >= self.time_budget:
            self.model.stop_training = True


class SampleGrid(keras.callbacks.Callback):
    """After every epoch, G's images for one fixed noise batch: samples/epoch_NNNN.png in the run, and the
    same grid as the MLflow image `samples` at step = epoch (the UI's step slider; grids of runs side by side)."""

    def __init__(self, generator: keras.Model, noise: np.ndarray, samples_dir: Path, last_logged: int = 0):
        super().__init__()
        self.generator, self.noise, self.samples_dir, self.last_logged = generator, noise, samples_dir, last_logged

    def on_epoch_end(self, epoch, logs=None):
        images = to_uint8(self.generator(self.noise, training=False))
        picture = grid(images)
        path = save_png(self.samples_dir / f"epoch_{epoch + 1:04d}.png", picture)
        mlflow.log_artifact(str(path), "samples")
        if epoch + 1 > self.last_logged:  # a resumed run's replayed epoch may have its image already
            mlflow.log_image(picture, key="samples", step=epoch + 1)


class Checkpointing(keras.callbacks.Callback):
    """Save G, D, both optimizers, the epoch and the noise RNG every `every` epochs and at the end,
    and upload each checkpoint to the MLflow run when `upload` (a resume on another machine needs it)."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch_var: tf.Variable, every: int, last_epoch: int,
                 upload: bool = True):
        super().__init__()
        self.manager, self.epoch_var, self.every, self.last_epoch = manager, epoch_var, every, last_epoch
        self.upload = upload

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if not due(done, self.every, self.last_epoch, logs, self.model.stop_training):
            return
        self.epoch_var.assign(done)
        prefix = self.manager.save(checkpoint_number=done)
        if not self.upload:
            return
        for f in Path(prefix).parent.glob(Path(prefix).name + ".*"):
            mlflow.log_artifact(str(f), "checkpoints")
        mlflow.log_artifact(str(Path(prefix).parent / "checkpoint"), "checkpoints")


class EpochSummary(keras.callbacks.Callback):
    """One line per epoch: losses, D's outputs and the time it took."""

    def __init__(self, epochs: int, stream=sys.stdout):
        super().__init__()
        self.epochs, self.stream = epochs, stream
        self.start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        m = epoch_metrics(logs)
        print(f"epoch {epoch + 1}/{self.epochs}  d_loss {m['d_loss']:.3f}  g_loss {m['g_loss']:.3f}  "
              f"D(x) {m['d_real']:.3f}  D(G(z)) {m['d_fake']:.3f}  {time.perf_counter() - self.start:.1f}s",
              file=self.stream, flush=True)


class Evaluation(keras.callbacks.Callback):
    """Every `every` epochs and after the last: quality and D-detection metrics, and the best FID so far.

    The sampling generator with the best FID is kept at `best_path` (quality is not monotonic; the run logs it
    as the MLflow model generator_best at its end), and uploaded to checkpoints/ at once when `upload` (a resume
    on another machine keeps it).
    """

    def __init__(self, evaluator, gan, every: int, last_epoch: int, log: LogOnce, best: tuple[float, int],
                 best_path: Path, on_eval=None, quiet: bool = False, upload: bool = True):
        super().__init__()
        self.evaluator, self.gan, self.every, self.last_epoch = evaluator, gan, every, last_epoch
        self.log, self.best_path, self.on_eval, self.quiet, self.upload = log, best_path, on_eval, quiet, upload
        self.best_fid, self.best_epoch = best

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if not due(done, self.every, self.last_epoch, logs, self.model.stop_training):
            return
        m = self.evaluator.evaluate(self.gan.sampler, self.gan.discriminator, done)
        if m["fid"] < self.best_fid:
            self.best_fid, self.best_epoch = m["fid"], done
            self.best_path.parent.mkdir(parents=True, exist_ok=True)
            self.gan.sampler.save(self.best_path)
            if self.upload:
                mlflow.log_artifact(str(self.best_path), "checkpoints")
        m.update(fid_best=self.best_fid, fid_best_epoch=self.best_epoch)
        self.log(m, done)
        if not self.quiet:
            print(f"  eval @{done}: fid {m['fid']:.2f} (best {self.best_fid:.2f} @{self.best_epoch})  "
                  f"mnist_score {m['mnist_score']:.2f}  modes {m['modes_covered']}  precision {m['precision']:.2f}  "
                  f"recall {m['recall']:.2f}  D-AUC {m['d_auc']:.3f}", flush=True)
        if self.on_eval and self.on_eval(done, m):
            self.model.stop_training = True
