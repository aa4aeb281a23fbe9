"""What the default study's two speed levers buy: steps per TensorFlow call, and two trials side by side.

    python benchmarks/side_by_side.py [--quick] [--batches 16 32]

For each batch size, with experiment=quick's model (full width, EMA 0.99 as the study's best regions use)
built by ganstudy.model.build_gan as train() builds it, on random images in [-1, 1]:

1. `one_process`: images/s of one process on all cores, 1 step per call (`steps_per_execution=1`) and 8;
2. `two_processes`: images/s of two processes at once, each on one thread (`train.threads=1`, what
   `jobs: 2` gives each trial), 8 steps per call; their sum is the machine's throughput.
Every measurement runs in a spawned process of its own for `seconds` after a warm-up call; the variants
run one after another in one run, so read the ratios (`spe8_vs_spe1`, `two_vs_one`), not the absolute
rates (the machine is shared).
"""
from __future__ import annotations

import multiprocessing
import time

import harness


def stepping_rate(batch: int, threads: int, steps_per_execution: int, seconds: float, out) -> None:
    """In a fresh process: images/s of the quick model's training steps for `seconds`."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import numpy as np

    from ganstudy.config import compose
    from ganstudy.model import build_gan

    cfg = compose(["experiment=quick", f"train.batch_size={batch}", "train.ema_decay=0.99", "run_dir=unused"])
    gan = build_gan(cfg, steps_per_execution)
    x = np.random.default_rng(0).uniform(-1, 1, (batch * 64, 28, 28, 1)).astype("float32")
    batches = tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=True).repeat().prefetch(4)
    gan.fit(batches, epochs=1, steps_per_epoch=64, verbose=0)  # trace and warm up
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        gan.fit(batches, epochs=1, steps_per_epoch=64, verbose=0)
        steps += 64
    out.put(steps * batch / (time.perf_counter() - t0))


def rates(batch: int, threads: int, steps_per_execution: int, seconds: float, processes: int) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=stepping_rate, args=(batch, threads, steps_per_execution, seconds, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    found = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return found


def main() -> None:
    p = harness.parser(__doc__, "10 s per measurement instead of 40")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 32])
    args = p.parse_args()
    bench = harness.Bench("side_by_side")
    seconds = 10 if args.quick else 40
    result = {"command": harness.command(), "seconds_per_measurement": seconds, "batches": {}}
    for batch in args.batches:
        bench.log(f"batch {batch}: one process, 1 then 8 steps per call; then two one-thread processes")
        spe1, = rates(batch, 0, 1, seconds, 1)
        spe8, = rates(batch, 0, 8, seconds, 1)
        two = rates(batch, 1, 8, seconds, 2)
        result["batches"][batch] = {
            "one_process_img_s": {"spe1": round(spe1, 1), "spe8": round(spe8, 1)},
            "two_processes_img_s": harness.rounded(two, 1),
            "spe8_vs_spe1": round(spe8 / spe1, 3), "two_vs_one": round(sum(two) / spe8, 3)}
        bench.log(str(result["batches"][batch]))
    bench.finish(result)


if __name__ == "__main__":
    main()
