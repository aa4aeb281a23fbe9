"""Cost of ganstudy's evaluation relative to a training epoch (CPU): one JSON line on stdout, progress on stderr.

    python benchmarks/eval_cost.py [--quick]

Measures, in one process, with the full-width model of experiment=quick (make_generator(100, 1.0),
make_discriminator(0.3, 1.0), Adam 2e-4 beta1 0.5, batch 32), built by ganstudy.model.build_gan:

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
   checkpoints), the model built by build_gan as train() builds it.
3. `default_eval`: the project's default evaluation (eval.n_samples=1000 generated and held-out images,
   quality against the 4000-image training reference), timed end to end via Evaluator.evaluate and
   per part; it runs every eval.every=2 epochs, so its per-epoch share is t / (2 * epoch).

The machine is shared and noisy: after an untimed warm-up, an epoch is timed, then each round times
the evaluations followed by another epoch, so every evaluation sits between two epochs; each
round's share uses the mean of its two neighbouring epochs. Headline numbers are medians over rounds.
The generator and discriminator being evaluated are the ones being trained (costs do not depend on
image content). Default run: about 5-7 minutes on 2 cores; --quick (about 3 minutes): 2 rounds and no end-to-end 10k cross-check.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import harness  # first: it quiets TensorFlow's C++ logs, which must be set before TensorFlow loads
import keras
import numpy as np

from ganstudy import metrics
from ganstudy.classifier import feature_net
from ganstudy.config import compose
from ganstudy.data import Splits, load_mnist
from ganstudy.evaluate import Evaluator, d_logits, detection_scores, generate
from ganstudy.model import build_gan

N_FULL = 10_000
SHARE_AIM = 0.10
med = statistics.median


class Clock:
    """Wall and process-CPU seconds of calls, summed under a name."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        out, wall, cpu = harness.measure(fn, *args, **kwargs)
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu
        return out


@dataclass
class Rounds:
    """What the rounds measured: seconds per epoch (one more than rounds) and per evaluation."""
    epochs_wall: list = field(default_factory=list)
    epochs_cpu: list = field(default_factory=list)
    full_parts: list = field(default_factory=list)   # per round: {part: wall s} of the 10k evaluation
    full_cpu: list = field(default_factory=list)     # per round: its CPU seconds, all parts
    full_e2e: list = field(default_factory=list)     # per round: Evaluator.evaluate at 10k (default mode only)
    dflt_parts: list = field(default_factory=list)
    dflt_e2e: list = field(default_factory=list)


def splits_10k(splits: Splits) -> Splits:
    # The bundled 5k subset has 4000 training + 1000 held-out images, so the two 10k real sets
    # (quality reference; D's real side) are drawn WITH REPLACEMENT from all 5000 images, independently.
    # Duplicates change the metric values, not their cost: every part's cost depends only on the
    # array shapes (10k x 28 x 28 images, 10k x 128 features), not on the image content.
    pool_x = np.concatenate([splits.train_x, splits.test_x])
    pool_y = np.concatenate([splits.train_y, splits.test_y])
    rng = np.random.default_rng(0)
    ref_idx, real_idx = rng.integers(0, len(pool_x), N_FULL), rng.integers(0, len(pool_x), N_FULL)
    return Splits(pool_x[ref_idx], pool_y[ref_idx], pool_x[real_idx], pool_y[real_idx])


def eval_parts(gan, ev: Evaluator, epoch: int) -> Clock:
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


def end_to_end(gan, ev: Evaluator, epoch: int) -> float:
    return harness.measure(ev.evaluate, gan.generator, gan.discriminator, epoch)[1]


def run_epoch(bench: harness.Bench, stepping: harness.Stepping, gan, out: Rounds, label: str) -> None:
    w, c = stepping(gan, stepping.steps_per_epoch)
    out.epochs_wall.append(w)
    out.epochs_cpu.append(c)
    bench.log(f"{label} {w:.1f}s wall, {c:.1f}s cpu  load {harness.load():.2f}")


def run_rounds(bench: harness.Bench, stepping: harness.Stepping, gan, ev_full: Evaluator, ev_default: Evaluator,
               rounds: int, check_full_e2e: bool) -> Rounds:
    """An epoch, then per round: the 10k evaluation in parts (and end to end), the default one, an epoch."""
    out = Rounds()
    run_epoch(bench, stepping, gan, out, "epoch 0:")
    for r in range(rounds):
        tag, ev_epoch = f"round {r + 1}/{rounds}", 2 * (r + 1)
        p = eval_parts(gan, ev_full, ev_epoch)
        out.full_parts.append(p.wall)
        out.full_cpu.append(sum(p.cpu.values()))
        bench.log(f"{tag}: full 10k eval {sum(p.wall.values()):.1f}s: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in p.wall.items()))
        if check_full_e2e:
            out.full_e2e.append(end_to_end(gan, ev_full, ev_epoch))
            bench.log(f"{tag}: full 10k Evaluator.evaluate end to end {out.full_e2e[-1]:.1f}s")
        out.dflt_e2e.append(end_to_end(gan, ev_default, ev_epoch))
        out.dflt_parts.append(eval_parts(gan, ev_default, ev_epoch).wall)
        bench.log(f"{tag}: default eval (n={ev_default.n}) end to end {out.dflt_e2e[-1]:.2f}s, "
                  f"parts sum {sum(out.dflt_parts[-1].values()):.2f}s")
        run_epoch(bench, stepping, gan, out, f"{tag}: epoch")
    return out


def parts_summary(parts: list[dict]) -> dict:
    total = med([sum(p.values()) for p in parts])
    return {k: {"s": round(med([p[k] for p in parts]), 3),
                "fraction_of_eval": round(med([p[k] for p in parts]) / total, 3),
                "rounds": harness.rounded([p[k] for p in parts], 3)} for k in parts[0]}


def between(values: list) -> list:
    """Mean of each value and the next: the epoch just before and just after each round's evaluations."""
    return [(a + b) / 2 for a, b in zip(values, values[1:])]


def full_eval_summary(out: Rounds, ref_embed_s: float) -> dict:
    epoch_s = med(out.epochs_wall)
    total = [sum(p.values()) for p in out.full_parts]
    share = [f / ep for f, ep in zip(total, between(out.epochs_wall))]
    breakdown = parts_summary(out.full_parts)
    return {
        "total_s": round(med(total), 2),
        "total_s_rounds": harness.rounded(total, 2),
        "parts": breakdown,
        "dominant_part": max(breakdown, key=lambda k: breakdown[k]["s"]),
        "evaluator_evaluate_end_to_end_s_rounds": harness.rounded(out.full_e2e, 2) or None,
        "one_off_reference_embed_s_not_counted": round(ref_embed_s, 2),
        "share_of_epoch": round(med(total) / epoch_s, 3),
        "share_of_epoch_median_per_round": round(med(share), 3),
        "share_of_epoch_rounds": harness.rounded(share, 3),
        "share_of_epoch_cpu_seconds": round(med([f / ep for f, ep in zip(out.full_cpu, between(out.epochs_cpu))]), 3),
        "aim_share": SHARE_AIM,
        "meets_aim": med(share) < SHARE_AIM,
    }


def default_eval_summary(out: Rounds, ev: Evaluator, every: int) -> dict:
    share = [d / (every * ep) for d, ep in zip(out.dflt_e2e, between(out.epochs_wall))]
    return {
        "n_samples": ev.n,
        "reference_images": len(ev.ref_features),
        "heldout_images_for_d_auc": len(ev.heldout),
        "every_epochs": every,
        "evaluate_s": round(med(out.dflt_e2e), 3),
        "evaluate_s_rounds": harness.rounded(out.dflt_e2e, 3),
        "parts": parts_summary(out.dflt_parts),
        "share_per_epoch": round(med(out.dflt_e2e) / (every * med(out.epochs_wall)), 4),
        "share_per_epoch_median_per_round": round(med(share), 4),
        "share_per_epoch_rounds": harness.rounded(share, 4),
        "meets_aim": med(share) < SHARE_AIM,
        "not_included": "MLflow logging of the metrics and the generator_best.keras save when FID improves "
                        "(ganstudy.callbacks.Evaluation), the end-of-run post-hoc detector",
    }


def main() -> None:
    args = harness.parser(__doc__, "2 rounds, no end-to-end 10k cross-check").parse_args()
    bench = harness.Bench("eval_cost")
    rounds = 2 if args.quick else 3
    cfg = compose(["experiment=quick", "run_dir=unused"])
    t, m, e, opt = cfg.train, cfg.model, cfg.eval, cfg.optimizer
    assert (m.noise_dim, m.width) == (100, 1.0), "expected the full-width model (noise 100, width 1.0)"

    splits = load_mnist(cfg.data)
    train_x = splits.train_x[: cfg.data.limit] if cfg.data.limit else splits.train_x
    stepping = harness.Stepping(train_x, t.batch_size, t.seed)
    spe = stepping.steps_per_epoch
    bench.log(f"experiment=quick: {len(train_x)} training images, batch {t.batch_size}, {spe} steps/epoch, "
              f"Adam lr_g {opt.lr_g} lr_d {opt.lr_d} beta1 {opt.beta1}; default eval n={e.n_samples} every {e.every}")
    net, feature_net_s, _ = harness.measure(feature_net)  # the shipped network
    # Both embed their real reference now, a one-off cost (not counted); the default one as train() builds it.
    ev_full, ref_embed_10k_s, _ = harness.measure(Evaluator, net, splits_10k(splits), N_FULL, seed=t.seed)
    ev_default, ref_embed_default_s, _ = harness.measure(Evaluator, net, splits, e.n_samples, seed=t.seed)
    assert len(ev_full.ref_features) == N_FULL and len(ev_full.heldout) == N_FULL
    bench.log(f"reference features: 10k in {ref_embed_10k_s:.1f}s, default ({len(ev_default.ref_features)}) in "
              f"{ref_embed_default_s:.1f}s (one-off, not counted)")

    keras.utils.set_random_seed(t.seed)  # as train() does before build_gan
    gan = build_gan(cfg)
    # Untimed: traces the train step, first eager calls of G, D and the feature net.
    bench.log("warm-up (untimed): 10 steps, the default evaluation end to end and in parts")
    stepping(gan, 10)
    end_to_end(gan, ev_default, 0)
    eval_parts(gan, ev_default, 0)
    out = run_rounds(bench, stepping, gan, ev_full, ev_default, rounds, not args.quick)

    bench.finish({
        "benchmark": "ganstudy evaluation cost vs one training epoch (CPU)",
        "command": harness.command(),
        "setup": {
            "config": "experiment=quick",
            "model": f"make_generator({m.noise_dim}, {m.width}), make_discriminator({m.dropout}, {m.width}), {t.precision}",
            "optimizer": f"{opt.name} lr_g {opt.lr_g} lr_d {opt.lr_d} beta1 {opt.beta1}",
            "epoch": f"{len(train_x)} images, batch {t.batch_size}, {spe} steps",
            "feature_net": {"key": net.key, "load_s": round(feature_net_s, 1)},
            "real_10k": "two independent 10k draws with replacement from the 5000 bundled mnist5k images "
                        "(reference and D's real side); cost depends on shapes only",
            "rounds": rounds,
        },
        "epoch_s": round(med(out.epochs_wall), 2),
        "epoch_s_all": harness.rounded(out.epochs_wall, 2),
        "full_eval_10k": full_eval_summary(out, ref_embed_10k_s),
        "default_eval": default_eval_summary(out, ev_default, e.every),
        "method": f"pure stepping: DCGAN.fit(training_dataset(...), epochs=1, steps_per_epoch={spe}, verbose=0) "
                  "without callbacks, model from ganstudy.model.build_gan as train() builds it; evaluation parts "
                  "timed separately with the functions Evaluator.evaluate calls (generate, FeatureNet.embed, "
                  "metrics.fid/kid/precision_recall/mnist_score+modes_covered+class_kl, d_logits on real and "
                  "fake + detection_scores); after an untimed warm-up, rounds of [evaluations, epoch] follow "
                  "one epoch, so each evaluation sits between two epochs; per-round shares divide by the mean "
                  "of those two epochs; headline values are medians over rounds; default share = "
                  f"evaluate_s / ({e.every} * epoch_s)",
    })


if __name__ == "__main__":
    main()
