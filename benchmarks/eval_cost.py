"""Cost of ganstudy's evaluation relative to a training epoch (CPU): one JSON line on stdout, progress on stderr.

    python benchmarks/eval_cost.py [--quick]

Measures, in one process, with the full-width model of experiment=quick (make_generator(100, 1.0),
make_discriminator(0.3, 1.0), Adam 2e-4 beta1 0.5, batch 32):

1. `full_eval_10k`: one FULL evaluation at 10,000 generated vs 10,000 real images, as
   ganstudy.evaluate.Evaluator.evaluate computes it but at 10k: generate 10k images with G, embed
   them with the MNIST feature net, compute fid, kid, mnist_score, precision/recall, modes_covered and
   class_kl against the features of a 10,000-image real reference, and D's AUC/AP on 10k real images vs
   the 10k fakes. Each part is timed on its own (same functions, same order as Evaluator); their sum
   is the evaluation time. The reference's own embedding is a one-off cost of Evaluator.__init__ and is
   reported separately, not counted. In the default mode, the end-to-end Evaluator.evaluate at 10k is
   also timed as a cross-check of the breakdown.
2. `epoch`: one training epoch of experiment=quick (4000 images / batch 32 = 125 steps) by pure
   stepping: DCGAN.fit over ganstudy.data.training_dataset, no callbacks (no MLflow, sample grids,
   checkpoints), the model built as ganstudy.train._fit builds it.
3. `default_eval`: the project's default evaluation (eval.n_samples=1000 generated and held-out images,
   quality against the 4000-image training reference), timed end to end via Evaluator.evaluate and
   per part; it runs every eval.every=2 epochs, so its per-epoch share is t / (2 * epoch).

The machine is shared and noisy: after an untimed warm-up, an epoch is timed, then each round times
the evaluations followed by another epoch, so every evaluation sits between two epochs; each
round's share uses the mean of its two neighbouring epochs. Headline numbers are medians over rounds.
The generator and discriminator being evaluated are the ones being trained (costs do not depend on
image content). Default run: about 5-7 minutes on 2 cores (plus ~1 min once if the feature net
is not cached); --quick (about 3 minutes): 2 rounds and no end-to-end 10k cross-check.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

N_FULL = 10_000
SHARE_AIM = 0.10


def log(msg: str) -> None:
    print(f"[eval_cost {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 rounds, no end-to-end 10k cross-check")
    return p.parse_args()


class Clock:
    """Wall and process-CPU seconds of a block, kept under a name."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - t0
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0
        return out


def main() -> None:
    args = parse_args()
    # Only the JSON line may reach stdout: point fd 1 (feature_net's print, C++ logs) at stderr
    # for the whole run and write the result to a saved copy of the real stdout at the end.
    real_stdout = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)

    rounds = 2 if args.quick else 3
    check_full_e2e = not args.quick

    import keras
    import numpy as np

    from ganstudy import metrics
    from ganstudy.classifier import data_key, feature_net
    from ganstudy.config import compose
    from ganstudy.data import Splits, load_mnist, steps_per_epoch, training_dataset
    from ganstudy.evaluate import Evaluator, d_logits, detection_scores, generate
    from ganstudy.model import DCGAN, make_discriminator, make_generator, make_optimizer

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="ganstudy-evalcost-"))
    cfg = compose(["experiment=quick", f"run_dir={tmp}/run"])
    t, m, e, opt = cfg.train, cfg.model, cfg.eval, cfg.optimizer
    assert (m.noise_dim, m.width) == (100, 1.0), "expected the full-width model (noise 100, width 1.0)"

    splits = load_mnist(cfg.data)
    train_x = splits.train_x[: cfg.data.limit] if cfg.data.limit else splits.train_x
    spe = steps_per_epoch(len(train_x), t.batch_size)
    log(f"experiment=quick: {len(train_x)} training images, batch {t.batch_size}, {spe} steps/epoch, "
        f"Adam lr_g {opt.lr_g} lr_d {opt.lr_d} beta1 {opt.beta1}; default eval n={e.n_samples} every {e.every}")

    # Feature net: the user's cache if it already holds the net for these splits, else a temp dir
    # (trains once there, about a minute, and is deleted at the end).
    key = data_key(splits)
    user_cache = Path(e.cache_dir).expanduser()
    cached = (user_cache / f"mnist_classifier-{key}.keras").exists() and \
             (user_cache / f"mnist_classifier-{key}.json").exists()
    cache_dir = user_cache if cached else tmp / "feature_net"
    log(f"feature net {key}: {'cached in ' + str(user_cache) if cached else 'training in a temp dir'}")
    t0 = time.perf_counter()
    net = feature_net(splits, cache_dir)
    feature_net_s = time.perf_counter() - t0

    # ---- the 10k real images -------------------------------------------------------------------
    # The bundled 5k subset has 4000 training + 1000 held-out images, so the two 10k real sets
    # (quality reference; D's real side) are drawn WITH REPLACEMENT from all 5000 images, independently.
    # Duplicates change the metric values, not their cost: every part's cost depends only on the
    # array shapes (10k x 28 x 28 images, 10k x 128 features), not on the image content.
    pool_x = np.concatenate([splits.train_x, splits.test_x])
    pool_y = np.concatenate([splits.train_y, splits.test_y])
    rng = np.random.default_rng(0)
    ref_idx, real_idx = rng.integers(0, len(pool_x), N_FULL), rng.integers(0, len(pool_x), N_FULL)
    splits_10k = Splits(pool_x[ref_idx], pool_y[ref_idx], pool_x[real_idx], pool_y[real_idx])

    t0 = time.perf_counter()
    evaluator_10k = Evaluator(net, splits_10k, N_FULL, seed=t.seed)   # embeds the 10k reference (one-off)
    ref_embed_10k_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluator_default = Evaluator(net, splits, e.n_samples, seed=t.seed)  # as train._fit builds it
    ref_embed_default_s = time.perf_counter() - t0
    assert len(evaluator_10k.ref_features) == N_FULL and len(evaluator_10k.heldout) == N_FULL
    n_ref_default = len(evaluator_default.ref_features)
    log(f"reference features: 10k in {ref_embed_10k_s:.1f}s, default ({n_ref_default}) in {ref_embed_default_s:.1f}s "
        "(one-off, not counted)")

    # ---- the model, built as ganstudy.train._fit builds it ----------------------------------------
    keras.utils.set_random_seed(t.seed)
    gan = DCGAN(make_generator(m.noise_dim, m.width, t.precision), make_discriminator(m.dropout, m.width, t.precision),
                m.noise_dim, t.label_smoothing, seed=t.seed)
    gan.compile(d_optimizer=make_optimizer(opt, opt.lr_d, t.precision),
                g_optimizer=make_optimizer(opt, opt.lr_g, t.precision))
    gan.build_optimizers()
    next_epoch = [0]

    def run_epoch(n_steps: int = spe) -> tuple[float, float]:
        first = next_epoch[0]
        next_epoch[0] += 1
        data = training_dataset(train_x, t.batch_size, t.seed, first, first + 1)
        t0, c0 = time.perf_counter(), time.process_time()
        gan.fit(data, epochs=1, steps_per_epoch=n_steps, verbose=0, shuffle=False)
        gan.generator.trainable_variables[0].numpy()  # the last step has finished
        return time.perf_counter() - t0, time.process_time() - c0

    def eval_parts(ev: Evaluator, epoch: int) -> Clock:
        """Evaluator.evaluate split into timed parts: same calls, same arguments, same order of work."""
        c = Clock()
        fake = c("generate", generate, gan.generator, ev.n, seed=ev.seed * 1_000_003 + epoch)
        features, logits = c("embed", ev.net.embed, fake)
        c("fid", metrics.fid, ev.ref_features, features)
        c("kid", metrics.kid, ev.ref_features, features, seed=ev.seed)
        c("precision_recall", metrics.precision_recall, ev.ref_features, features)
        c("score_modes", lambda: (metrics.mnist_score(logits), metrics.modes_covered(logits), metrics.class_kl(logits)))
        c("d_auc", lambda: detection_scores(d_logits(gan.discriminator, ev.heldout), d_logits(gan.discriminator, fake)))
        return c

    def e2e(ev: Evaluator, epoch: int) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        ev.evaluate(gan.generator, gan.discriminator, epoch)
        return time.perf_counter() - t0, time.process_time() - c0

    # ---- warm-up, untimed: traces the train step, first eager calls of G, D and the feature net ----
    log("warm-up (untimed): 10 steps, the default evaluation end to end and in parts")
    run_epoch(10)
    e2e(evaluator_default, 0)
    eval_parts(evaluator_default, 0)

    # ---- alternating rounds: epoch, [evals, epoch] x rounds -------------------------------------
    epochs_wall, epochs_cpu = [], []
    full_parts, full_cpu, full_e2e = [], [], []
    dflt_parts, dflt_e2e = [], []
    w, c = run_epoch()
    epochs_wall.append(w), epochs_cpu.append(c)
    log(f"epoch 0: {w:.1f}s wall, {c:.1f}s cpu  load {os.getloadavg()[0]:.2f}")
    for r in range(rounds):
        ev_epoch = 2 * (r + 1)
        p = eval_parts(evaluator_10k, ev_epoch)
        full_parts.append(p.wall), full_cpu.append(sum(p.cpu.values()))
        log(f"round {r + 1}/{rounds}: full 10k eval {sum(p.wall.values()):.1f}s: "
            + ", ".join(f"{k} {v:.2f}" for k, v in p.wall.items()))
        if check_full_e2e:
            full_e2e.append(e2e(evaluator_10k, ev_epoch)[0])
            log(f"round {r + 1}/{rounds}: full 10k Evaluator.evaluate end to end {full_e2e[-1]:.1f}s")
        dflt_e2e.append(e2e(evaluator_default, ev_epoch)[0])
        dflt_parts.append(eval_parts(evaluator_default, ev_epoch).wall)
        log(f"round {r + 1}/{rounds}: default eval (n={e.n_samples}) end to end {dflt_e2e[-1]:.2f}s, "
            f"parts sum {sum(dflt_parts[-1].values()):.2f}s")
        w, c = run_epoch()
        epochs_wall.append(w), epochs_cpu.append(c)
        log(f"round {r + 1}/{rounds}: epoch {w:.1f}s wall, {c:.1f}s cpu  load {os.getloadavg()[0]:.2f}")

    # Each round's evaluation against the mean of the epochs just before and just after it.
    neighbour_epoch = [(epochs_wall[i] + epochs_wall[i + 1]) / 2 for i in range(rounds)]
    neighbour_epoch_cpu = [(epochs_cpu[i] + epochs_cpu[i + 1]) / 2 for i in range(rounds)]
    full_total = [sum(p.values()) for p in full_parts]
    full_share = [f / ep for f, ep in zip(full_total, neighbour_epoch)]
    full_share_cpu = [f / ep for f, ep in zip(full_cpu, neighbour_epoch_cpu)]
    dflt_share = [d / (e.every * ep) for d, ep in zip(dflt_e2e, neighbour_epoch)]
    med = statistics.median
    epoch_s = med(epochs_wall)
    full_s = med(full_total)

    def parts_summary(parts: list[dict]) -> dict:
        names = list(parts[0])
        total = med([sum(p.values()) for p in parts])
        return {k: {"s": round(med([p[k] for p in parts]), 3),
                    "fraction_of_eval": round(med([p[k] for p in parts]) / total, 3),
                    "rounds": [round(p[k], 3) for p in parts]} for k in names}

    full_breakdown = parts_summary(full_parts)
    dominant = max(full_breakdown, key=lambda k: full_breakdown[k]["s"])
    dflt_breakdown = parts_summary(dflt_parts)

    import tensorflow as tf

    result = {
        "benchmark": "ganstudy evaluation cost vs one training epoch (CPU)",
        "command": "python benchmarks/eval_cost.py" + (" --quick" if args.quick else ""),
        "setup": {
            "config": "experiment=quick",
            "model": f"make_generator({m.noise_dim}, {m.width}), make_discriminator({m.dropout}, {m.width}), {t.precision}",
            "optimizer": f"{opt.name} lr_g {opt.lr_g} lr_d {opt.lr_d} beta1 {opt.beta1}",
            "epoch": f"{len(train_x)} images, batch {t.batch_size}, {spe} steps",
            "feature_net": {"key": net.key, "cached": cached, "load_or_train_s": round(feature_net_s, 1)},
            "real_10k": "two independent 10k draws with replacement from the 5000 bundled mnist5k images "
                        "(reference and D's real side); cost depends on shapes only",
            "rounds": rounds,
        },
        "epoch_s": round(epoch_s, 2),
        "epoch_s_all": [round(x, 2) for x in epochs_wall],
        "full_eval_10k": {
            "total_s": round(full_s, 2),
            "total_s_rounds": [round(x, 2) for x in full_total],
            "parts": full_breakdown,
            "dominant_part": dominant,
            "evaluator_evaluate_end_to_end_s_rounds": [round(x, 2) for x in full_e2e] or None,
            "one_off_reference_embed_s_not_counted": round(ref_embed_10k_s, 2),
            "share_of_epoch": round(full_s / epoch_s, 3),
            "share_of_epoch_median_per_round": round(med(full_share), 3),
            "share_of_epoch_rounds": [round(x, 3) for x in full_share],
            "share_of_epoch_cpu_seconds": round(med(full_share_cpu), 3),
            "aim_share": SHARE_AIM,
            "meets_aim": med(full_share) < SHARE_AIM,
        },
        "default_eval": {
            "n_samples": e.n_samples,
            "reference_images": n_ref_default,
            "heldout_images_for_d_auc": len(evaluator_default.heldout),
            "every_epochs": e.every,
            "evaluate_s": round(med(dflt_e2e), 3),
            "evaluate_s_rounds": [round(x, 3) for x in dflt_e2e],
            "parts": dflt_breakdown,
            "share_per_epoch": round(med(dflt_e2e) / (e.every * epoch_s), 4),
            "share_per_epoch_median_per_round": round(med(dflt_share), 4),
            "share_per_epoch_rounds": [round(x, 4) for x in dflt_share],
            "meets_aim": med(dflt_share) < SHARE_AIM,
            "not_included": "MLflow logging of the metrics and the generator_best.keras save when FID improves "
                            "(ganstudy.callbacks.Evaluation), the end-of-run post-hoc detector",
        },
        "method": "pure stepping: DCGAN.fit(training_dataset(...), epochs=1, steps_per_epoch=125, verbose=0) "
                  "without callbacks, model built as ganstudy.train._fit builds it; evaluation parts timed "
                  "separately with the functions Evaluator.evaluate calls (generate, FeatureNet.embed, "
                  "metrics.fid/kid/precision_recall/mnist_score+modes_covered+class_kl, d_logits on real and "
                  "fake + detection_scores); after an untimed warm-up, rounds of [evaluations, epoch] follow "
                  "one epoch, so each evaluation sits between two epochs; per-round shares divide by the mean "
                  "of those two epochs; headline values are medians over rounds; default share = "
                  f"evaluate_s / ({e.every} * epoch_s)",
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "loadavg_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        },
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    shutil.rmtree(tmp, ignore_errors=True)
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()


if __name__ == "__main__":
    main()
