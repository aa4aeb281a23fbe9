"""What each lever costs per epoch: its training steps against the article's step, side by side in one process.

Every model is experiment=quick's (full width, batch 32, 8 steps per TensorFlow call, 125 steps an epoch on the 5k
subset), built by ganstudy.model.build_gan as train() builds it, and stepped by DCGAN.fit over
ganstudy.data.training_dataset without callbacks (harness.Stepping). One variant per lever, each the article's
choice with that one lever changed (plus `all`: every lever at once, as a levers-study trial may). Rounds alternate
the variants so that a busy spell of a shared machine falls on all of them. Each variant's cost per epoch is its
median over the rounds, in CPU seconds of this process (TensorFlow's threads included: the work a step takes,
which other load on the machine changes little) and in wall seconds; `ratio` is the CPU median over the article's,
`ratio_wall` the same for wall time (trust it only on an idle machine). R1 and the gradient penalty add a second
backward pass through D (a gradient of a gradient), the gradient penalty a third D forward pass; d_steps=2 updates
G on every other batch (a D-only step is cheaper).
"""
from __future__ import annotations

import statistics

import harness

VARIANTS = {
    "article": [],
    "loss=hinge": ["loss=hinge"],
    "loss=ls": ["loss=ls"],
    "loss=wgan_gp": ["loss=wgan_gp"],
    "model.d_norm=spectral": ["model.d_norm=spectral"],
    "train.r1_gamma=0.1": ["train.r1_gamma=0.1"],
    "train.augment=diffaugment": ["train.augment=diffaugment"],
    "train.d_steps=2": ["train.d_steps=2"],
    "optimizer.schedule=cosine": ["optimizer.schedule=cosine"],
    "all": ["loss=wgan_gp", "model.d_norm=spectral", "train.r1_gamma=0.1", "train.augment=diffaugment",
            "train.d_steps=2", "optimizer.schedule=cosine"],
}


def main() -> None:
    args = harness.parser(__doc__, "3 rounds of 25 steps, not 5 of one epoch").parse_args()
    bench = harness.Bench("lever_cost")
    import keras

    from ganstudy.config import compose
    from ganstudy.data import load_mnist, training_images
    from ganstudy.model import build_gan, steps_per_call

    base = compose(["experiment=quick", "run_dir=unused"])
    images = training_images(load_mnist(base.data), base.data)
    rounds, steps = (3, 25) if args.quick else (5, None)
    gans, stepping = {}, {}
    for name, overrides in VARIANTS.items():
        cfg = compose(["experiment=quick", "run_dir=unused", *overrides])
        keras.utils.set_random_seed(cfg.train.seed)  # as train() does
        stepping[name] = harness.Stepping(images, cfg.train.batch_size, cfg.train.seed)
        per_epoch = stepping[name].steps_per_epoch
        gans[name] = build_gan(cfg, steps_per_call(per_epoch, cfg.train.steps_per_execution), per_epoch)
        stepping[name](gans[name], 8)  # trace and warm up
        bench.log(f"built {name}")
    epoch_steps = stepping["article"].steps_per_epoch
    n = steps or epoch_steps
    wall_s: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu_s: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(rounds):
        for name in VARIANTS:
            wall, cpu = stepping[name](gans[name], n)
            wall_s[name].append(wall * epoch_steps / n)  # per epoch
            cpu_s[name].append(cpu * epoch_steps / n)
        bench.log(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.1f} CPU-s" for k, v in cpu_s.items()))
    med = {k: statistics.median(v) for k, v in cpu_s.items()}
    med_wall = {k: statistics.median(v) for k, v in wall_s.items()}
    bench.finish({
        "benchmark": "lever_cost", "command": harness.command(),
        "setup": f"experiment=quick model, batch 32, {epoch_steps} steps an epoch, {rounds} alternating rounds of "
                 f"{n} steps per variant; CPU and wall seconds per epoch (medians), ratios to the article's step",
        "cpu_seconds_per_epoch": {k: round(v, 2) for k, v in med.items()},
        "ratio": {k: round(v / med["article"], 2) for k, v in med.items()},
        "wall_seconds_per_epoch": {k: round(v, 2) for k, v in med_wall.items()},
        "ratio_wall": {k: round(v / med_wall["article"], 2) for k, v in med_wall.items()},
        "cpu_rounds_s": {k: harness.rounded(v, 2) for k, v in cpu_s.items()},
    })


if __name__ == "__main__":
    main()
