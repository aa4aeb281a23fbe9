"""Is the search worth it? The default study's way against the peers' ways, same space and trial budget.

    python benchmarks/search_efficiency.py [--quick] [--arms default random tpe] [--out DIR] [--default-storage URL]
                                           [--report-only]

Arms, each an Optuna study of sweeps/default.yaml's space (12-epoch trials, two side by side) in one SQLite
storage under --out:
- `default`: the study as shipped (12 trials): TPE, successive halving (rungs at epochs 2 and 6, a trial alone
  at a rung stops), the quick settings first;
- `random`: 30 trials of random search without pruning and without a warm start (Lucic et al. 2018, compare_gan);
- `tpe`: 30 trials of TPE (8 random first) without pruning and without a warm start (what Hydra's Optuna
  sweeper does).
An arm is `python -m ganstudy.sweep` with the arm's overrides, so a rerun of this command continues an
unfinished arm where it stopped (the Optuna storage) and skips a finished one. `--default-storage URL` reads
the default arm from a study that ran elsewhere (e.g. docs/study/ganstudy-default.optuna.db) instead; run it
on the machine where that study ran, which is then calibrated once for the default arm.
Before an arm trains, the machine is calibrated: seconds per epoch of experiment=quick's training steps on
all cores, alone, so that arms run in different sessions can be put on one time axis (quick-epoch units).

Prints one JSON line: per arm, best-so-far against wall-clock minutes and against trial-epochs, the expected
best after k trials with its spread (ganstudy.stats.expected_best: mean, std, and low-high, the 10th-90th
percentile of the best of k), and the time the default arm took to reach
random search's final best (aim: at most half of random search's wall time). Writes search_efficiency.png and
.json into --out. --quick: sweep=tiny, 4 trials an arm, a few minutes.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import harness  # noqa: E402 - before TensorFlow: it quiets TensorFlow's C++ logs
import optuna
from optuna.trial import TrialState

ARMS = {"default": [], "random": ["sampler.name=random", "pruner.name=none", "enqueue=[]"],
        "tpe": ["pruner.name=none", "enqueue=[]"]}
# The peers' full arms as they ran (30 trials, 8 of TPE's random, as the default study had then); --quick: tiny's.
PEERS_FULL = {"random": ["n_trials=30"], "tpe": ["n_trials=30", "sampler.n_startup_trials=8"]}
STUDY_PREFIX = "se-"


def calibrations(out: Path) -> dict:
    """Per arm, the machine calibrations recorded so far."""
    path = out / "calibration.json"
    return json.loads(path.read_text()) if path.exists() else {}


def calibrate(arm: str, out: Path, bench) -> None:
    """Record this machine's seconds per quick epoch for the arm about to run (or that just ran here)."""
    seen = calibrations(out)
    seen.setdefault(arm, []).append({"time": time.time(), "quick_epoch_s": quick_epoch_seconds(bench),
                                     "cpu_model": harness.cpu_model(), "loadavg": harness.load()})
    (out / "calibration.json").write_text(json.dumps(seen, indent=1))


def run_arm(arm: str, sweep: str, out: Path, bench) -> None:
    calibrate(arm, out, bench)
    cmd = [sys.executable, "-m", "ganstudy.sweep", f"sweep={sweep}", f"study_name={STUDY_PREFIX}{arm}",
           f"storage=sqlite:///{out / 'optuna.db'}", f"out_dir={out / 'runs'}", *ARMS[arm],
           *(PEERS_FULL.get(arm, []) if sweep == "default" else [])]
    bench.log(f"arm {arm}: {' '.join(cmd[1:])}")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}"}
    subprocess.run(cmd, cwd=out, env=env, check=True, stdout=sys.stderr)


def quick_epoch_seconds(bench, seconds: float = 20.0) -> float:
    """Seconds per epoch (125 steps of 32) of experiment=quick's training steps, in a fresh process."""
    code = ("import sys, harness, time; from ganstudy.config import compose; from ganstudy.model import build_gan;"
            "from ganstudy.data import load_mnist, training_images;"
            "cfg = compose(['run_dir=unused']); s = load_mnist(cfg.data); imgs = training_images(s, cfg.data);"
            "st = harness.Stepping(imgs, 32, 0); gan = build_gan(cfg, 8); st(gan, 16); n = 0; t = 0.0\n"
            f"while t < {seconds}: w, _ = st(gan, st.steps_per_epoch); t += w; n += 1\n"
            "print(t / n)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True,
                         check=True)
    value = float(out.stdout.strip().splitlines()[-1])
    bench.log(f"calibration: {value:.1f} s per quick epoch")
    return value


def arm_curves(storage_url: str, study_name: str) -> dict:
    """Best-so-far against minutes and trial-epochs, and the expected best after k trials."""
    from ganstudy.stats import best_of_k_range, expected_best
    from ganstudy.study_page import trial_outcomes

    study = optuna.load_study(study_name=study_name, storage=storage_url)
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    points, best, epochs = [], float("inf"), 0
    for t in sorted(trials, key=lambda t: t.datetime_complete):
        epochs += max(t.intermediate_values, default=0)
        if t.state == TrialState.COMPLETE:
            best = min(best, t.value)
        points.append({"trial": t.number, "state": t.state.name, "minutes": busy_minutes(trials, t.datetime_complete),
                       "trial_epochs": epochs, "best": best if best < float("inf") else None})
    values = trial_outcomes(trials)  # a pruned trial counts with its value when stopped
    expected = [dict(zip(("k", "mean", "std", "low", "high"), (k, *expected_best(values, k), *best_of_k_range(values, k))))
                for k in range(1, len(values) + 1)]
    states = [t.state.name for t in trials]
    return {"study": study_name, "n_trials": len(trials), "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL"), "minutes": points[-1]["minutes"],
            "trial_epochs": epochs, "best": best, "curve": points, "expected_best": expected}


def busy_minutes(trials: list, until) -> float:
    """Minutes up to `until` in which at least one trial ran: the gaps between sessions do not count. A failed
    trial counts for nothing (one that a session's end killed is failed by the next session's first worker)."""
    spans = sorted((t.datetime_start, min(t.datetime_complete, until)) for t in trials
                   if t.state != TrialState.FAIL and t.datetime_start < until)
    total, end = 0.0, None
    for a, b in spans:
        if end is None or a > end:
            total, end = total + (b - a).total_seconds(), b
        elif b > end:
            total, end = total + (b - end).total_seconds(), b
    return total / 60


def replay_halving(storage_url: str, study_name: str,
                   settings=((2, 3), (2, 4), (2, 2), (4, 3), (2, 6))) -> list[dict]:
    """Successive halving replayed on an unpruned arm's learning curves, trials in their order: at each rung
    a trial goes on if its value is among the best 1/reduction_factor of those seen at that rung so far
    (Optuna's promotion rule, approximated). Per setting: the rungs, the trial-epochs it would have spent and
    the best value it would have kept, against the arm's own."""
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    curves = [t.intermediate_values for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    max_epochs = max((max(c) for c in curves), default=0)  # the trials' budget
    out = []
    for min_resource, factor in settings:
        rungs = [min_resource * factor ** i for i in range(max_epochs) if min_resource * factor ** i < max_epochs]
        seen: dict[int, list[float]] = {r: [] for r in rungs}
        spent, kept = 0, []
        for curve in curves:
            stop = None
            for rung in rungs:
                value = min(v for step, v in curve.items() if step <= rung)
                seen[rung].append(value)
                ranked = sorted(seen[rung])
                if len(ranked) > 1 and value > ranked[max(1, len(ranked) // factor) - 1]:
                    stop = rung
                    break
            spent += stop or max_epochs
            if stop is None:
                kept.append(min(curve.values()))
        out.append({"min_resource": min_resource, "reduction_factor": factor, "rungs": rungs,
                    "trial_epochs": spent, "of": max_epochs * len(curves), "best": min(kept, default=None),
                    "arm_best": min((min(c.values()) for c in curves), default=None)})
    return out


def reached(curve: list[dict], target: float, unit: str) -> float | None:
    """Time (in `unit`) until the best-so-far was at least as good as target (None: never)."""
    return next((p[unit] for p in curve if p["best"] is not None and p["best"] <= target), None)


def plot(arms: dict, out: Path) -> Path:
    """Best-so-far against busy minutes and against trial-epochs (log axes: the default study's 17 minutes are not
    squeezed beside random search's 150), and the expected best of k trials with the 10th-90th percentile of
    the best of k (values the trials reached: a mean ± std band would dip below what any run, or real images,
    scored). Sized for a page: 820 px wide."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fig = Figure(figsize=(8.2, 6.4))
    grid = fig.add_gridspec(2, 2)
    ax_min, ax_ep = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_k = fig.add_subplot(grid[1, :])
    for i, (arm, a) in enumerate(arms.items()):
        color = f"C{i}"
        pts = [p for p in a["curve"] if p["best"] is not None]
        end = a["curve"][-1]  # the arm's last trial: its line runs on to there
        for ax, unit in ((ax_min, "minutes"), (ax_ep, "trial_epochs")):
            xs, ys = [p[unit] for p in pts] + [end[unit]], [p["best"] for p in pts] + [pts[-1]["best"]]
            ax.step(xs, ys, where="post", color=color, label=arm)
            ax.plot(xs[-1], ys[-1], "|", color=color, markersize=9)
        ks = [e["k"] for e in a["expected_best"]]
        ax_k.plot(ks, [e["mean"] for e in a["expected_best"]], color=color, label=f"{arm} ({len(a['expected_best'])} trials)")
        if all("low" in e for e in a["expected_best"]):
            ax_k.fill_between(ks, [e["low"] for e in a["expected_best"]], [e["high"] for e in a["expected_best"]],
                              color=color, alpha=0.15, linewidth=0)
    from ganstudy.images import small_png
    from ganstudy.study_plots import log_value_axis

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    bests = [p["best"] for a in arms.values() for p in a["curve"] if p["best"] is not None]
    spans = [v for a in arms.values() for e in a["expected_best"] for v in (e["mean"], e.get("low"), e.get("high"))
             if v is not None]
    for ax, values in ((ax_min, bests), (ax_ep, bests), (ax_k, spans)):
        if values:
            log_value_axis(ax, values)  # plain numbers: 40, 60, 100, 200, 400
        ax.grid(alpha=0.3)
    for ax, ticks in ((ax_min, [2, 5, 10, 20, 50, 100, 200]), (ax_ep, [10, 20, 50, 100, 200, 500])):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax_min.set(xlabel="wall-clock minutes, a trial running (log)", ylabel="best fid_best so far (log)")
    ax_ep.set(xlabel="trial-epochs trained (log)")
    ax_k.set(xlabel="trials k", ylabel="best of k trials (log)",
             title="expected best of k trials; band: its 10th-90th percentile", )
    ax_k.title.set_fontsize(10)
    ax_min.legend(fontsize="small")
    ax_k.legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "search_efficiency.png", dpi=100)
    return small_png(out / "search_efficiency.png")


def main() -> None:
    p = harness.parser(__doc__, "sweep=tiny, 4 trials an arm")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/search_efficiency"))
    p.add_argument("--default-storage", help="read the default arm from this storage's study instead of running it")
    p.add_argument("--report-only", action="store_true", help="train nothing: report what the storage holds")
    args = p.parse_args()
    bench = harness.Bench("search_efficiency")
    out = (args.out.parent / (args.out.name + "-quick") if args.quick else args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sweep = "tiny" if args.quick else "default"
    known = calibrations(out)
    for arm in args.arms:
        if args.report_only:
            continue
        if arm != "default" or not args.default_storage:
            run_arm(arm, sweep, out, bench)
        elif arm not in known:
            calibrate(arm, out, bench)
    storage = f"sqlite:///{out / 'optuna.db'}"
    arms = {}
    for arm in args.arms:
        if arm == "default" and args.default_storage:
            arms[arm] = arm_curves(args.default_storage, "tiny" if args.quick else "ganstudy-default")
        elif STUDY_PREFIX + arm in {st.study_name for st in optuna.get_all_study_summaries(storage)}:
            arms[arm] = arm_curves(storage, STUDY_PREFIX + arm)
        else:
            bench.log(f"arm {arm}: no study in {storage} yet")
    calibration = calibrations(out)
    for arm, a in arms.items():  # arms run in other sessions, on other machines: time in quick epochs too
        seconds = [c["quick_epoch_s"] for c in calibration.get(arm, [])]
        a["quick_epoch_s"] = statistics.median(seconds) if seconds else None
        for point in a["curve"]:
            point["quick_epochs"] = point["minutes"] * 60 / a["quick_epoch_s"] if seconds else None
    result = {"command": harness.command(), "arms": arms, "calibration": calibration}
    if "random" in arms:  # what pruning would have saved on random search's curves
        result["halving_replay_on_random"] = replay_halving(storage, STUDY_PREFIX + "random")
    if "default" in arms and "random" in arms:
        unit = "quick_epochs" if all(arms[a]["quick_epoch_s"] for a in ("default", "random")) else "minutes"
        t = reached(arms["default"]["curve"], arms["random"]["best"], unit)
        total = arms["random"]["curve"][-1][unit]
        result["time_unit"] = unit
        result["default_reaches_random_best"] = t
        result["default_over_random_time"] = None if t is None else t / total
        result["aim_met"] = t is not None and t <= total / 2
    result["plot"] = str(plot(arms, out))
    (out / "search_efficiency.json").write_text(json.dumps(result, indent=1))
    bench.finish({k: v for k, v in result.items() if k != "arms"} |
                 {"arms": {a: {k: v for k, v in s.items() if k not in ("curve", "expected_best")} for a, s in arms.items()}})


if __name__ == "__main__":
    main()
