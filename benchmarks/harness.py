"""What benchmarks/throughput.py and benchmarks/eval_cost.py share.

    import harness                       # before TensorFlow: it quiets TensorFlow's C++ logs
    args = harness.parser(__doc__, "fewer rounds").parse_args()
    bench = harness.Bench("throughput")  # from here on only the JSON line reaches stdout
    bench.log("...")                     # "[throughput HH:MM:SS] ..." on stderr
    _, wall, cpu = harness.measure(fn, *fn_args)
    bench.finish(result)                 # adds "machine" and "wall_s", prints the one JSON line

plus `Stepping` (the project's pure training steps, timed) and `rounded` for per-round lists.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parser(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The benchmark's parser: the first paragraph of its docstring and --quick; add its own flags to it."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


def command() -> str:
    """How this benchmark was run, for its JSON line."""
    return " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def measure(fn, *args, **kwargs):
    """(fn's result, wall seconds, CPU seconds of this whole process: TensorFlow's threads count too)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def rounded(values, digits: int) -> list[float]:
    return [round(v, digits) for v in values]


def load() -> float:
    """1-minute load average: on a shared machine, the context of every figure."""
    return os.getloadavg()[0]


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or None


class Bench:
    """One benchmark run: its stderr log, its start (clock and load) and the JSON line it ends with."""

    def __init__(self, name: str):
        self.name = name
        # Only the JSON line may reach stdout: point fd 1 (Python prints, MLflow, C++ logs) at stderr
        # for the rest of the run and keep a copy of the real stdout for the result.
        sys.stdout.flush()
        self._stdout = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        self.t_start, self.load_start = time.perf_counter(), load()

    def log(self, msg: str) -> None:
        print(f"[{self.name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def machine(self) -> dict:
        import keras
        import numpy as np
        import tensorflow as tf

        return {
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "loadavg_1min_start_end": [round(self.load_start, 2), round(load(), 2)],
        }

    def finish(self, result: dict) -> None:
        """Print `result` with the machine and the run's wall seconds as the one line on stdout."""
        result = {**result, "machine": self.machine(), "wall_s": round(time.perf_counter() - self.t_start, 1)}
        self._stdout.write(json.dumps(result) + "\n")
        self._stdout.flush()


class Stepping:
    """The project's pure training steps, as train() runs them minus its callbacks: DCGAN.fit over
    ganstudy.data.training_dataset. Calls continue the epoch count, so each sees fresh shuffles."""

    def __init__(self, images, batch_size: int, seed: int):
        from ganstudy.data import steps_per_epoch

        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.steps_per_epoch = steps_per_epoch(len(images), batch_size)
        self.next_epoch = 0

    def __call__(self, gan, n_steps: int) -> tuple[float, float]:
        """Wall and process-CPU seconds of n_steps steps: whole epochs, or the start of one if fewer."""
        from ganstudy.data import training_dataset

        epochs = max(1, n_steps // self.steps_per_epoch)
        first, self.next_epoch = self.next_epoch, self.next_epoch + epochs
        data = training_dataset(self.images, self.batch_size, self.seed, first, first + epochs)
        _, wall, cpu = measure(_fit, gan, data, epochs, min(n_steps, self.steps_per_epoch))
        return wall, cpu


def _fit(gan, data, epochs: int, steps: int) -> None:
    gan.fit(data, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False)
    gan.generator.trainable_variables[0].numpy()  # make sure the last step has finished
