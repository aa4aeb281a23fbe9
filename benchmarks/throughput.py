"""Training throughput of ganstudy's DCGAN on CPU: one JSON line on stdout, progress on stderr.

    python benchmarks/throughput.py [--quick]

Measures, in one process, on the 5k MNIST subset (4000 training images, 15 steps of 256 per epoch),
with the article's full-width model (experiment=seed: Adam 1e-4, batch 256):

1. `project_vs_reference`: images/s of DCGAN.fit over ganstudy.data.training_dataset (no callbacks)
   against the TensorFlow tutorial's plain loop (@tf.function train_step with two GradientTapes,
   BCE-from-logits losses, Adam 1e-4 for both, from_tensor_slices.shuffle.batch(256)) on the same
   architecture; ratio = project / reference.
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
   If the config has an `eval` group, periodic evaluation is pushed past the last epoch and the
   post-hoc detector is turned off (--with-eval keeps them).
   Pure stepping is timed just before and just after the two train() calls and averaged.
   overhead = (t_train_diff - t_pure) / t_train_diff, median over rounds.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

BATCH = 256
SEED = 42


def log(msg: str) -> None:
    print(f"[throughput {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps: about 2 minutes")
    p.add_argument("--with-eval", action="store_true",
                   help="keep the config's in-training evaluation (if any) in the logged epochs")
    p.add_argument("--keep", action="store_true", help="keep the temporary MLflow store and run folders")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    # Only the JSON line may reach stdout: point fd 1 (Python prints, MLflow, C++ logs) at stderr
    # for the whole run and write the result to a saved copy of the real stdout at the end.
    real_stdout = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)

    if args.quick:
        plan = dict(warmup_steps=3, rounds=2, steps=8, train_rounds=1, diff_epochs=1)
    else:
        plan = dict(warmup_steps=10, rounds=5, steps=15, train_rounds=2, diff_epochs=3)

    import keras
    import numpy as np
    import tensorflow as tf

    from ganstudy.config import compose
    from ganstudy.data import load_mnist, steps_per_epoch, to_model_range, training_dataset
    from ganstudy.model import DCGAN, make_discriminator, make_generator, make_optimizer

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="ganstudy-bench-")
    cfg = compose(["experiment=seed", f"run_dir={tmp}/x"])
    splits = load_mnist(cfg.data)
    x = splits.train_x
    spe = steps_per_epoch(len(x), BATCH)
    if plan["steps"] > spe and plan["steps"] % spe:
        raise SystemExit(f"steps per measurement ({plan['steps']}) must be at most or a multiple of {spe}")
    m, opt_cfg = cfg.model, cfg.optimizer
    log(f"{len(x)} training images, {spe} steps of {BATCH} per epoch; plan {plan}")

    # ---- project step: DCGAN.fit over training_dataset, built as ganstudy.train._fit builds it ----
    def make_project(precision: str) -> DCGAN:
        gan = DCGAN(make_generator(m.noise_dim, m.width, precision), make_discriminator(m.dropout, m.width, precision),
                    m.noise_dim, cfg.train.label_smoothing, seed=SEED)
        gan.compile(d_optimizer=make_optimizer(opt_cfg, opt_cfg.lr_d, precision),
                    g_optimizer=make_optimizer(opt_cfg, opt_cfg.lr_g, precision))
        gan.build_optimizers()
        return gan

    epoch_counter = [0]

    def run_project(gan: DCGAN, n_steps: int) -> tuple[float, float]:
        """Wall and process CPU seconds for n_steps project steps, as train() runs them (epochs of `spe` steps)."""
        epochs = max(1, n_steps // spe)
        per_epoch = min(n_steps, spe)
        first = epoch_counter[0]
        epoch_counter[0] += epochs
        data = training_dataset(x, BATCH, SEED, first, first + epochs)
        t0, c0 = time.perf_counter(), time.process_time()
        gan.fit(data, epochs=epochs, steps_per_epoch=per_epoch, verbose=0, shuffle=False)
        gan.generator.trainable_variables[0].numpy()  # make sure the last step has finished
        return time.perf_counter() - t0, time.process_time() - c0

    # ---- reference: the tutorial's loop, on fresh instances of the same architecture ----
    ref_g = make_generator(m.noise_dim, m.width, "float32")
    ref_d = make_discriminator(m.dropout, m.width, "float32")
    ref_g_opt, ref_d_opt = keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4)
    cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)
    noise_dim = m.noise_dim

    def discriminator_loss(real_output, fake_output):
        return cross_entropy(tf.ones_like(real_output), real_output) + cross_entropy(tf.zeros_like(fake_output),
                                                                                     fake_output)

    def generator_loss(fake_output):
        return cross_entropy(tf.ones_like(fake_output), fake_output)

    @tf.function
    def ref_train_step(images):
        noise = tf.random.normal([BATCH, noise_dim])
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = ref_g(noise, training=True)
            real_output = ref_d(images, training=True)
            fake_output = ref_d(generated_images, training=True)
            gen_loss = generator_loss(fake_output)
            disc_loss = discriminator_loss(real_output, fake_output)
        gradients_of_generator = gen_tape.gradient(gen_loss, ref_g.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(disc_loss, ref_d.trainable_variables)
        ref_g_opt.apply_gradients(zip(gradients_of_generator, ref_g.trainable_variables))
        ref_d_opt.apply_gradients(zip(gradients_of_discriminator, ref_d.trainable_variables))

    # The tutorial keeps the last partial batch (160 images here); it is dropped so that both paths
    # run identical 256-image steps (and the reference is not retraced for a second shape).
    ref_ds = tf.data.Dataset.from_tensor_slices(to_model_range(x)).shuffle(len(x)).batch(BATCH, drop_remainder=True)

    def run_reference(n_steps: int) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        while done < n_steps:
            for image_batch in ref_ds.take(n_steps - done):
                ref_train_step(image_batch)
                done += 1
        ref_g.trainable_variables[0].numpy()
        return time.perf_counter() - t0, time.process_time() - c0

    # ---- parts 1 and 2: alternating rounds ----
    fp32, bf16 = make_project("float32"), make_project("mixed_bfloat16")
    log("warm-up (traces the three steps)")
    warm = {"project_fp32": run_project(fp32, plan["warmup_steps"]), "reference": run_reference(plan["warmup_steps"]),
            "project_bf16": run_project(bf16, plan["warmup_steps"])}
    log("warm-up seconds " + ", ".join(f"{k} {v[0]:.1f}" for k, v in warm.items()))
    n = plan["steps"]
    runs = {"project_fp32": lambda: run_project(fp32, n), "reference": lambda: run_reference(n),
            "project_bf16": lambda: run_project(bf16, n)}
    wall = {k: [] for k in runs}   # img/s of wall time
    cpu = {k: [] for k in runs}    # img per CPU-second of this process (all its threads)
    for r in range(plan["rounds"]):
        for name, run in runs.items():
            w, c = run()
            wall[name].append(n * BATCH / w)
            cpu[name].append(n * BATCH / c)
            log(f"round {r + 1}/{plan['rounds']}: {name:13s} {n} steps {w:6.1f}s  {n * BATCH / w:6.1f} img/s  "
                f"{n * BATCH / c:6.1f} img/cpu-s  load {os.getloadavg()[0]:.2f}")

    def compare(a: str, b: str, label_a: str, label_b: str) -> dict:
        per_round = [x / y for x, y in zip(wall[a], wall[b])]
        return {
            f"{label_a}_img_per_s": round(max(wall[a]), 1),
            f"{label_b}_img_per_s": round(max(wall[b]), 1),
            "ratio": round(max(wall[a]) / max(wall[b]), 3),
            "ratio_of_medians": round(statistics.median(wall[a]) / statistics.median(wall[b]), 3),
            "median_per_round_ratio": round(statistics.median(per_round), 3),
            "per_round_ratio": [round(x, 3) for x in per_round],
            f"{label_a}_img_per_s_rounds": [round(x, 1) for x in wall[a]],
            f"{label_b}_img_per_s_rounds": [round(x, 1) for x in wall[b]],
            "ratio_per_cpu_second": round(statistics.median(cpu[a]) / statistics.median(cpu[b]), 3),
        }

    # ---- part 3: the real path with logging, sampling and checkpoints ----
    from ganstudy.train import train

    base = compose(["experiment=seed", f"run_dir={tmp}/x"])
    # If the config has an evaluation group (FID etc. during training), keep it to after the last
    # epoch, where train(1) and train(1 + D) both pay it and the difference cancels it: this part
    # measures the per-epoch logging/sampling/checkpoint overhead, not the evaluation's cost.
    extra = []
    if "eval" in base and not args.with_eval:
        if "every" in base.eval:
            extra.append("eval.every=1000")
        if "detector" in base.eval:
            extra.append("eval.detector=false")

    def train_cfg(epochs: int, tag: str):
        return compose(["experiment=seed", f"train.epochs={epochs}", "train.progress=none",
                        f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.artifact_root={tmp}/artifacts",
                        f"run_dir={tmp}/run_{tag}", "train.checkpoint_every=5", *extra])

    # Untimed: creates the MLflow DB and experiment, and pays every first-use cost (imports, font
    # caches, a feature network the evaluation may train and cache on first use).
    log("train(epochs=1) warm-up, untimed")
    train(train_cfg(1, "warmup"))
    d_ep = plan["diff_epochs"]
    pure, diffs, pure_cpu, diffs_cpu = [], [], [], []
    for r in range(plan["train_rounds"]):
        before = run_project(fp32, d_ep * spe)
        log(f"train round {r + 1}: pure stepping {d_ep} epochs {before[0]:.1f}s")
        secs = {}
        for epochs in (1, 1 + d_ep):
            t0, c0 = time.perf_counter(), time.process_time()
            train(train_cfg(epochs, f"{r}_{epochs}"))
            secs[epochs] = (time.perf_counter() - t0, time.process_time() - c0)
            log(f"train round {r + 1}: train(epochs={epochs}) {secs[epochs][0]:.1f}s  load {os.getloadavg()[0]:.2f}")
        after = run_project(fp32, d_ep * spe)
        log(f"train round {r + 1}: pure stepping {d_ep} epochs {after[0]:.1f}s")
        pure.append((before[0] + after[0]) / 2)
        pure_cpu.append((before[1] + after[1]) / 2)
        diffs.append(secs[1 + d_ep][0] - secs[1][0])
        diffs_cpu.append(secs[1 + d_ep][1] - secs[1][1])
    overheads = [(d - p) / d for d, p in zip(diffs, pure)]
    overheads_cpu = [(d - p) / d for d, p in zip(diffs_cpu, pure_cpu)]

    result = {
        "benchmark": "ganstudy DCGAN training throughput (CPU)",
        "command": "python benchmarks/throughput.py" + (" --quick" if args.quick else ""),
        "data": f"mnist5k: {len(x)} training images, batch {BATCH}, {spe} steps per epoch",
        "model": f"experiment=seed, width {m.width}, noise {m.noise_dim}, Adam lr_g {opt_cfg.lr_g} lr_d {opt_cfg.lr_d}",
        "project_vs_reference": {
            **compare("project_fp32", "reference", "project", "reference"),
            "steps_per_measurement": n, "rounds": plan["rounds"],
            "method": "alternating rounds (project fp32, reference, project bf16) after a tracing warm-up; "
                      "img/s and ratio from each path's best round (least disturbed by other load on the "
                      "machine), medians and per-CPU-second ratios also given; project = "
                      "DCGAN.fit(training_dataset, verbose=0) without callbacks; reference = the tutorial's "
                      "@tf.function two-tape step in a Python loop over "
                      "from_tensor_slices.shuffle.batch(256, drop_remainder=True), same architecture",
        },
        "bf16_vs_fp32": compare("project_bf16", "project_fp32", "bf16", "fp32"),
        "logging_overhead": {
            "fraction": round(statistics.median(overheads), 4),
            "per_round_fraction": [round(o, 4) for o in overheads],
            "fraction_of_cpu_seconds": round(statistics.median(overheads_cpu), 4),
            "train_overrides_added": extra,
            "epoch_s_with_logging": [round(d / d_ep, 2) for d in diffs],
            "epoch_s_pure_stepping": [round(p / d_ep, 2) for p in pure],
            "method": f"train(epochs={1 + d_ep}) - train(epochs=1) = {d_ep} epochs of the real path "
                      "(MLflow metrics, sample grids, checkpoint cadence) with one-off start-up and "
                      "end-of-run work cancelled, vs fit() of the same model for "
                      f"{d_ep} epochs without callbacks (mean of runs just before and after); MLflow DB "
                      "pre-created by an untimed warm-up train(); fraction = (logged - pure) / logged, median over rounds",
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "cpu_model": _cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "loadavg_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        },
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"kept {tmp}")
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or None


if __name__ == "__main__":
    main()
