"""Training throughput of ganstudy's DCGAN on CPU: one JSON line on stdout, progress on stderr.

    python benchmarks/throughput.py [--quick] [--with-eval] [--keep]

Measures, in one process, on the 5k MNIST subset (4000 training images, 15 steps of 256 per epoch),
with the article's full-width model (experiment=seed: Adam 1e-4, batch 256), built by
ganstudy.model.build_gan as train() builds it:

1. `project_vs_reference`: images/s of DCGAN.fit over ganstudy.data.training_dataset (no callbacks)
   against the TensorFlow tutorial's plain loop, written here as the tutorial has it and independent of
   ganstudy's code (its make_generator_model / make_discriminator_model, the same architecture;
   @tf.function train_step with two GradientTapes, BCE-from-logits losses, Adam 1e-4 for both,
   from_tensor_slices.shuffle.batch(256)); ratio = project / reference.
2. `bf16_vs_fp32`: the same project step with the mixed_bfloat16 policy; ratio = bf16 / fp32.
   Parts 1 and 2 share their rounds: after a warm-up that traces all three steps, each round runs
   N steps of project fp32, then N of the reference, then N of project bf16, so that slow drift of the
   machine (other load, clocks) hits all three alike. The headline img/s and ratios use each path's
   best round (the machine is shared: the least disturbed round is the closest to the true speed);
   medians, per-round ratios and ratios of images per process CPU-second are reported too.
3. `logging_overhead`: the real path, ganstudy.train.train(cfg), with its MLflow metrics, sample grids
   and checkpoints. Method: per round, time pure project stepping for D epochs (fit, no callbacks),
   then train() with 1 epoch and train() with 1 + D epochs, each a fresh run in a pre-created MLflow
   store. The difference of the two train() times is D epochs of the real path with the one-off
   costs (model build, tracing, run creation, final GIF/plot/model save, end-of-run evaluation)
   cancelled out; an untimed train(epochs=1) first creates the MLflow DB and pays first-use costs.
   Periodic evaluation is pushed past the last epoch and the post-hoc detector is turned off
   (--with-eval keeps them).
   Pure stepping is timed just before and just after the two train() calls and averaged.
   overhead = (t_train_diff - t_pure) / t_train_diff, median over rounds.
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
from functools import partial

import harness  # first: it quiets TensorFlow's C++ logs, which must be set before TensorFlow loads
import keras
import tensorflow as tf
from keras import layers

from ganstudy.config import compose
from ganstudy.data import load_mnist
from ganstudy.model import DCGAN, build_gan
from ganstudy.train import train

BATCH = 256
NOISE_DIM = 100


def plan(quick: bool) -> dict:
    if quick:
        return dict(warmup_steps=3, rounds=2, steps=8, train_rounds=1, diff_epochs=1)
    return dict(warmup_steps=10, rounds=5, steps=15, train_rounds=2, diff_epochs=3)


def project_gan(precision: str) -> DCGAN:
    return build_gan(compose(["experiment=seed", f"train.precision={precision}", "run_dir=unused"]))


# ---- the reference: the TensorFlow DCGAN tutorial's code (Keras 3 spelling), none of ganstudy's ----

def make_generator_model():
    return keras.Sequential([
        keras.Input((NOISE_DIM,)),
        layers.Dense(7 * 7 * 256, use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Reshape((7, 7, 256)),
        layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh"),
    ])


def make_discriminator_model():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(1),
    ])


cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)


def discriminator_loss(real_output, fake_output):
    return cross_entropy(tf.ones_like(real_output), real_output) + cross_entropy(tf.zeros_like(fake_output),
                                                                                 fake_output)


def generator_loss(fake_output):
    return cross_entropy(tf.ones_like(fake_output), fake_output)


class Reference:
    """The tutorial's training loop on fresh models; a call times n steps: (wall, process-CPU seconds)."""

    def __init__(self, images):
        self.generator, self.discriminator = make_generator_model(), make_discriminator_model()
        self.generator_optimizer = keras.optimizers.Adam(1e-4)
        self.discriminator_optimizer = keras.optimizers.Adam(1e-4)
        train_images = (images.reshape(-1, 28, 28, 1).astype("float32") - 127.5) / 127.5
        # The tutorial keeps the last partial batch (160 images here); it is dropped so that both paths
        # run identical 256-image steps (and the reference is not retraced for a second shape).
        self.dataset = tf.data.Dataset.from_tensor_slices(train_images).shuffle(len(images)).batch(
            BATCH, drop_remainder=True)
        self.train_step = tf.function(self._train_step)

    def _train_step(self, images):
        noise = tf.random.normal([BATCH, NOISE_DIM])
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = self.generator(noise, training=True)
            real_output = self.discriminator(images, training=True)
            fake_output = self.discriminator(generated_images, training=True)
            gen_loss = generator_loss(fake_output)
            disc_loss = discriminator_loss(real_output, fake_output)
        gradients_of_generator = gen_tape.gradient(gen_loss, self.generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(disc_loss, self.discriminator.trainable_variables)
        self.generator_optimizer.apply_gradients(zip(gradients_of_generator, self.generator.trainable_variables))
        self.discriminator_optimizer.apply_gradients(
            zip(gradients_of_discriminator, self.discriminator.trainable_variables))

    def _steps(self, n_steps: int) -> None:
        done = 0
        while done < n_steps:
            for image_batch in self.dataset.take(n_steps - done):
                self.train_step(image_batch)
                done += 1
        self.generator.trainable_variables[0].numpy()  # make sure the last step has finished

    def __call__(self, n_steps: int) -> tuple[float, float]:
        _, wall, cpu = harness.measure(self._steps, n_steps)
        return wall, cpu


# ---- parts 1 and 2 ----

def alternate(bench: harness.Bench, runs: dict, n: int, rounds: int) -> tuple[dict, dict]:
    """Per path, per round: img/s of wall time and img per CPU-second of this process (all its threads)."""
    wall, cpu = {k: [] for k in runs}, {k: [] for k in runs}
    for r in range(rounds):
        for name, run in runs.items():
            w, c = run(n)
            wall[name].append(n * BATCH / w)
            cpu[name].append(n * BATCH / c)
            bench.log(f"round {r + 1}/{rounds}: {name:13s} {n} steps {w:6.1f}s  {n * BATCH / w:6.1f} img/s  "
                      f"{n * BATCH / c:6.1f} img/cpu-s  load {harness.load():.2f}")
    return wall, cpu


def compare(wall: dict, cpu: dict, a: str, b: str, label_a: str, label_b: str) -> dict:
    """Path a against path b: best rounds (the headline), medians, per-round and per-CPU-second ratios."""
    med = statistics.median
    per_round = [x / y for x, y in zip(wall[a], wall[b])]
    return {
        f"{label_a}_img_per_s": round(max(wall[a]), 1),
        f"{label_b}_img_per_s": round(max(wall[b]), 1),
        "ratio": round(max(wall[a]) / max(wall[b]), 3),
        "ratio_of_medians": round(med(wall[a]) / med(wall[b]), 3),
        "median_per_round_ratio": round(med(per_round), 3),
        "per_round_ratio": harness.rounded(per_round, 3),
        f"{label_a}_img_per_s_rounds": harness.rounded(wall[a], 1),
        f"{label_b}_img_per_s_rounds": harness.rounded(wall[b], 1),
        "ratio_per_cpu_second": round(med(cpu[a]) / med(cpu[b]), 3),
    }


# ---- part 3 ----

def timed_train(tmp: str, epochs: int, tag: str, extra: list[str]) -> tuple[float, float]:
    """Wall and process-CPU seconds of one fresh train() run in the benchmark's MLflow store."""
    cfg = compose(["experiment=seed", f"train.epochs={epochs}", "train.progress=none",
                   f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.artifact_root={tmp}/artifacts",
                   f"run_dir={tmp}/run_{tag}", "train.checkpoint_every=5", *extra])
    _, wall, cpu = harness.measure(train, cfg)
    return wall, cpu


def overhead_round(bench: harness.Bench, r: int, pure, tmp: str, d_ep: int, extra: list[str]):
    """(pure stepping, train(1 + D) - train(1)) of one round, each as (wall, CPU) seconds for D epochs."""
    before = pure()
    bench.log(f"train round {r + 1}: pure stepping {d_ep} epochs {before[0]:.1f}s")
    secs = {}
    for epochs in (1, 1 + d_ep):
        secs[epochs] = timed_train(tmp, epochs, f"{r}_{epochs}", extra)
        bench.log(f"train round {r + 1}: train(epochs={epochs}) {secs[epochs][0]:.1f}s  load {harness.load():.2f}")
    after = pure()
    bench.log(f"train round {r + 1}: pure stepping {d_ep} epochs {after[0]:.1f}s")
    return [(x + y) / 2 for x, y in zip(before, after)], [x - y for x, y in zip(secs[1 + d_ep], secs[1])]


def logging_overhead(bench: harness.Bench, pure, tmp: str, p: dict, with_eval: bool) -> dict:
    """Part 3; `pure()` times D epochs of pure stepping of the fp32 model."""
    # Evaluation after the last epoch only: train(1) and train(1 + D) both pay it and the difference
    # cancels it; this part measures per-epoch logging, sampling and checkpoints, not evaluation.
    extra = [] if with_eval else ["eval.every=1000", "eval.detector=false"]
    # Untimed: creates the MLflow DB and experiment, and pays every first-use cost (imports, font
    # caches, a feature network the evaluation may train and cache on first use).
    bench.log("train(epochs=1) warm-up, untimed")
    timed_train(tmp, 1, "warmup", extra)
    d_ep = p["diff_epochs"]
    pure_s, diff_s = zip(*(overhead_round(bench, r, pure, tmp, d_ep, extra) for r in range(p["train_rounds"])))
    overheads = [(d[0] - q[0]) / d[0] for d, q in zip(diff_s, pure_s)]
    overheads_cpu = [(d[1] - q[1]) / d[1] for d, q in zip(diff_s, pure_s)]
    return {
        "fraction": round(statistics.median(overheads), 4),
        "per_round_fraction": harness.rounded(overheads, 4),
        "fraction_of_cpu_seconds": round(statistics.median(overheads_cpu), 4),
        "train_overrides_added": extra,
        "epoch_s_with_logging": [round(d[0] / d_ep, 2) for d in diff_s],
        "epoch_s_pure_stepping": [round(q[0] / d_ep, 2) for q in pure_s],
        "method": f"train(epochs={1 + d_ep}) - train(epochs=1) = {d_ep} epochs of the real path "
                  "(MLflow metrics, sample grids, checkpoint cadence) with one-off start-up and "
                  "end-of-run work cancelled, vs fit() of the same model for "
                  f"{d_ep} epochs without callbacks (mean of runs just before and after); MLflow DB "
                  "pre-created by an untimed warm-up train(); fraction = (logged - pure) / logged, median over rounds",
    }


def main() -> None:
    parser = harness.parser(__doc__, "fewer steps: about 2 minutes")
    parser.add_argument("--with-eval", action="store_true",
                        help="keep the config's in-training evaluation in the logged epochs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary MLflow store and run folders")
    args = parser.parse_args()
    bench, p = harness.Bench("throughput"), plan(args.quick)
    tmp = tempfile.mkdtemp(prefix="ganstudy-bench-")
    cfg = compose(["experiment=seed", "run_dir=unused"])
    m, opt = cfg.model, cfg.optimizer
    assert (m.noise_dim, m.width) == (NOISE_DIM, 1.0), "the reference is the tutorial's model: noise 100, width 1.0"
    x = load_mnist(cfg.data).train_x
    stepping = harness.Stepping(x, BATCH, cfg.train.seed)
    spe = stepping.steps_per_epoch
    if p["steps"] > spe and p["steps"] % spe:
        raise SystemExit(f"steps per measurement ({p['steps']}) must be at most or a multiple of {spe}")
    bench.log(f"{len(x)} training images, {spe} steps of {BATCH} per epoch; plan {p}")

    fp32, bf16 = project_gan("float32"), project_gan("mixed_bfloat16")
    runs = {"project_fp32": partial(stepping, fp32), "reference": Reference(x), "project_bf16": partial(stepping, bf16)}
    bench.log("warm-up (traces the three steps)")
    warm = {name: run(p["warmup_steps"]) for name, run in runs.items()}
    bench.log("warm-up seconds " + ", ".join(f"{k} {v[0]:.1f}" for k, v in warm.items()))
    n = p["steps"]
    wall, cpu = alternate(bench, runs, n, p["rounds"])
    overhead = logging_overhead(bench, partial(stepping, fp32, p["diff_epochs"] * spe), tmp, p, args.with_eval)

    bench.finish({
        "benchmark": "ganstudy DCGAN training throughput (CPU)",
        "command": harness.command(),
        "data": f"mnist5k: {len(x)} training images, batch {BATCH}, {spe} steps per epoch",
        "model": f"experiment=seed, width {m.width}, noise {m.noise_dim}, Adam lr_g {opt.lr_g} lr_d {opt.lr_d}",
        "project_vs_reference": {
            **compare(wall, cpu, "project_fp32", "reference", "project", "reference"),
            "steps_per_measurement": n, "rounds": p["rounds"],
            "method": "alternating rounds (project fp32, reference, project bf16) after a tracing warm-up; "
                      "img/s and ratio from each path's best round (least disturbed by other load on the "
                      "machine), medians and per-CPU-second ratios also given; project = "
                      "DCGAN.fit(training_dataset, verbose=0) without callbacks, model from build_gan; "
                      "reference = the tutorial's own models and @tf.function two-tape step in a Python loop "
                      "over from_tensor_slices.shuffle.batch(256, drop_remainder=True), same architecture",
        },
        "bf16_vs_fp32": compare(wall, cpu, "project_bf16", "project_fp32", "bf16", "fp32"),
        "logging_overhead": overhead,
    })
    if args.keep:
        bench.log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
