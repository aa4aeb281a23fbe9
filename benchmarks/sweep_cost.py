"""What the asha pruner saves in a sweep, and whether a long sweep's memory stays flat: one JSON line on stdout.

    python benchmarks/sweep_cost.py [--quick] [--sampler random|tpe] [--min-resource N] [--reduction-factor N] [--keep]

Runs one fixed small study twice through ganstudy.sweep.run_study: `pruner.name=asha` (successive
halving with sweeps/default.yaml's min_resource 2 and reduction_factor 3 by default: rungs at epochs 2 and 6
of the small study's 10) and `pruner.name=none`, same
sampler and seed, same trial budget, eval.every=1. Like the default study it enqueues experiment=quick's
settings as trial 0 and keeps only the latest checkpoint (train.checkpoints=latest). The default
`--sampler random` gives both variants identical trial configurations, a clean A/B of pruning alone; with
`--sampler tpe` they see the same proposals only until TPE starts to learn from (differently pruned)
history.
Each variant runs in its own process (this file with --driver), which runs every trial in a spawned
child of its own (ganstudy.runner), and in its own temp dir: own Optuna SQLite storage, own MLflow
SQLite store and artifact root (tracking.uri / tracking.artifact_root in the base overrides), own
out_dir. Both score with the feature network shipped in the package.

Per variant:
- `trial_epochs`: sum over trials of the epochs each actually trained = the number of distinct
  steps of its MLflow run's `d_loss` history (MlflowMetrics logs d_loss once per epoch, step =
  epoch; a pruned trial stops right after the evaluation that pruned it, so it logs no later epoch).
  Cross-checked with the last step of each trial's Optuna intermediate values (eval.every=1, so the
  two agree unless a trial diverged before its first evaluation): `trial_epochs_from_optuna`.
- `best_fid_best`: the study's best value (fid_best of the best COMPLETE trial; pruned trials are
  not candidates, as in the study itself).
- `wall_s`: run_study() wall time (trials with their processes, pruning, the parent-run report);
  `process_wall_s`: the whole driver process, imports included.
- `n_pruned`, `n_complete`, `n_fail`.
- Memory, from the 2nd trial (Optuna number 1; the 1st pays the one-off MLflow/Optuna warm-up) to the
  last. The driver (the sweep process), when each trial's objective returns (or raises): ru_maxrss
  (peak so far) and VmRSS (current); `driver_rss_growth_peak` = (peak after the last trial - peak
  after the 2nd) / peak after the 2nd, `driver_rss_growth_current` likewise for VmRSS. The children:
  each trial's own peak RSS (the `peak_rss_mb` user attr the sweep stores; none for a failed trial);
  `child_rss_growth` = (last trial's - 2nd trial's) / 2nd trial's. (The sweep draws its report plots in
  a process of its own, so matplotlib and plotly do not grow the driver.)

Aims (reported as booleans): the pruned study spends at most 0.4 of the trial-epochs of the unpruned
one (`trial_epochs_ratio`), for a best value no worse (<=, minimising FID); memory growth under 10%
for the driver (peak and current) and for the children, in both variants.
--quick (6 trials x 4 epochs on 512 images) takes about 7 minutes on 2 shared cores; the default about
twice that.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness  # noqa: E402 - before TensorFlow: it quiets TensorFlow's C++ logs

PRUNER = "asha"
VARIANTS = (PRUNER, "none")
# Trial 0 of both variants, as in sweeps/default.yaml: experiment=quick's settings.
ENQUEUE = [{"optimizer": "adam", "optimizer.lr_g": 2.0e-4, "optimizer.lr_d": 2.0e-4, "optimizer.beta1": 0.5,
            "model.dropout": 0.3}]


def plan(quick: bool) -> dict:
    if quick:
        return dict(n_trials=6, epochs=4, limit=512)
    return dict(n_trials=10, epochs=10, limit=1024)


def base(p: dict) -> list[str]:
    """The run overrides every trial starts from (tracking aside)."""
    return ["experiment=tiny", f"train.epochs={p['epochs']}", "eval.every=1", "eval.detector=false",
            "train.progress=none", "train.checkpoints=latest", f"data.limit={p['limit']}"]


def sweep_file(tmp: Path, variant: str, p: dict, args) -> dict:
    """The study, as a sweep file's content (written to tmp/sweep.yaml and loaded with sweep_spec.load)."""
    return {
        "study_name": f"sweep-cost-{variant}",
        "direction": "minimize",
        "objective": "fid_best",
        "n_trials": p["n_trials"],
        "storage": f"sqlite:///{tmp / 'optuna.db'}",
        "out_dir": str(tmp / "out"),
        "sampler": {"name": args.sampler, "seed": 0, "n_startup_trials": 2},
        "pruner": {"name": variant, "min_resource": args.min_resource, "reduction_factor": args.reduction_factor,
                   "bootstrap_count": 0},
        "base": base(p) + [f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
                                      f"tracking.artifact_root={tmp / 'artifacts'}"],
        "space": {
            "optimizer": {"choices": ["adam", "rmsprop"]},
            "optimizer.lr_g": {"low": 1.0e-5, "high": 3.0e-3, "log": True},
            "optimizer.lr_d": {"low": 1.0e-5, "high": 3.0e-3, "log": True},
            "optimizer.beta1": {"low": 0.3, "high": 0.9, "when": {"optimizer": "adam"}},
            "model.dropout": {"low": 0.0, "high": 0.5},
        },
        "enqueue": ENQUEUE,
    }


# ----------------------------------------------------------------------------------------------------------
# The driver: one study in this process, its RSS recorded at the end of every trial.

def _vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _rss_now() -> dict:
    return {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "vmrss_kb": _vm_kb("VmRSS")}


def driver(tmp: Path) -> None:
    import warnings

    import optuna

    from ganstudy import sweep, sweep_spec

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec = sweep_spec.load(str(tmp / "sweep.yaml"))
    per_trial: list[dict] = []
    original = sweep.objective_fn

    def measured_objective_fn(*args, **kwargs):
        objective = original(*args, **kwargs)

        def wrapped(trial):
            start = time.perf_counter()
            try:
                return objective(trial)
            finally:
                per_trial.append({"number": trial.number, "seconds": round(time.perf_counter() - start, 2),
                                  **_rss_now()})

        return wrapped

    sweep.objective_fn = measured_objective_fn  # run_study looks it up at call time
    start = time.perf_counter()
    study = sweep.run_study(spec)
    wall = time.perf_counter() - start
    result = study_result(study, spec)
    result.update(wall_s=round(wall, 1), driver_rss=per_trial)
    (tmp / "result.json").write_text(json.dumps(result, default=str))


def study_result(study, spec) -> dict:
    """Per trial: state, epochs trained (MLflow), last reported epoch (Optuna), value, peak RSS; and totals."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from ganstudy.config import compose
    from ganstudy.tags import Tag

    cfg = compose(list(spec.base) + ["run_dir=unused"])
    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`{Tag.STUDY}` = '{spec.study_name}' and "
                                                   f"tags.`{Tag.ROLE}` = 'trial'", max_results=1000)
    run_of = {int(r.data.tags[Tag.TRIAL]): r.info.run_id for r in runs}
    trials = []
    for t in study.get_trials(deepcopy=False):
        run_id = run_of.get(t.number)
        epochs = len({m.step for m in client.get_metric_history(run_id, "d_loss")}) if run_id else 0
        trials.append({"number": t.number, "state": t.state.name, "epochs": epochs,
                       "last_reported_epoch": max(t.intermediate_values, default=0), "value": t.value,
                       "peak_rss_mb": t.user_attrs.get("peak_rss_mb"),
                       "params": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in t.params.items()}})
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return {
        "best_fid_best": study.best_value if complete else None,
        "best_trial": study.best_trial.number if complete else None,
        "trial_epochs": sum(t["epochs"] for t in trials),
        "trial_epochs_from_optuna": sum(t["last_reported_epoch"] for t in trials),
        "n_trials": len(trials),
        **{f"n_{s.name.lower()}": sum(t.state == s for t in study.trials)
           for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)},
        "trials": trials,
    }


# ----------------------------------------------------------------------------------------------------------
# The parent: both variants, one JSON line.

def growth(by_number: dict[int, float]) -> float | None:
    """(last trial's value - the 2nd trial's (Optuna number 1)) / the 2nd trial's; None without both."""
    last = max(by_number, default=None)
    if 1 not in by_number or last == 1:
        return None
    return round((by_number[last] - by_number[1]) / by_number[1], 4)


def memory(r: dict) -> dict:
    """The driver's and the children's RSS, per trial in MB, and their growth from the 2nd trial to the last."""
    drv = r.pop("driver_rss")
    peak = {t["number"]: t["maxrss_kb"] / 1024 for t in drv}
    current = {t["number"]: t["vmrss_kb"] / 1024 for t in drv}
    child = {t["number"]: t["peak_rss_mb"] for t in r["trials"] if t["peak_rss_mb"] is not None}
    return {
        "driver_rss_growth_peak": growth(peak),
        "driver_rss_growth_current": growth(current),
        "child_rss_growth": growth(child),
        "driver_peak_rss_mb_per_trial": [round(v, 1) for v in peak.values()],
        "driver_rss_mb_per_trial": [round(v, 1) for v in current.values()],
        "child_peak_rss_mb_per_trial": [t["peak_rss_mb"] and round(t["peak_rss_mb"], 1) for t in r["trials"]],
        "trial_seconds": [t["seconds"] for t in drv],
    }


def run_variant(variant: str, p: dict, args, log) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"sweep_cost_{variant}_"))
    from omegaconf import OmegaConf

    OmegaConf.save(OmegaConf.create(sweep_file(tmp, variant, p, args)), tmp / "sweep.yaml")
    log(f"{variant}: {p['n_trials']} trials x {p['epochs']} epochs in {tmp}")
    start = time.perf_counter()
    # The driver's stdout (trial lines, MLflow) goes to our stderr: only the JSON line reaches stdout.
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--driver", str(tmp)], stdout=sys.stderr, cwd=tmp)
    process_wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{variant}: the sweep process exited with {proc.returncode} (files kept in {tmp})")
    r = json.loads((tmp / "result.json").read_text())
    r.update(process_wall_s=round(process_wall, 1), **memory(r))
    if args.keep:
        r["dir"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{variant}: {r['trial_epochs']} trial-epochs, best {r['best_fid_best']}, {r['n_pruned']} pruned, "
        f"{r['wall_s']} s, RSS growth driver peak {r['driver_rss_growth_peak']} current "
        f"{r['driver_rss_growth_current']}, children {r['child_rss_growth']}")
    return r


def under_10pct(*values) -> bool:
    return all(v is not None and v < 0.10 for v in values)


def compare(results: dict, p: dict, args) -> dict:
    pruned, none = results[PRUNER], results["none"]
    ratio = pruned["trial_epochs"] / none["trial_epochs"] if none["trial_epochs"] else None
    both_best = pruned["best_fid_best"] is not None and none["best_fid_best"] is not None
    return {
        "benchmark": "sweep_cost",
        "quick": args.quick,
        "setup": {**p, "sampler": args.sampler, "sampler_seed": 0, "experiment": "tiny", "eval_every": 1,
                  "pruner": {"name": PRUNER, "min_resource": args.min_resource,
                             "reduction_factor": args.reduction_factor, "bootstrap_count": 0},
                  "enqueued": len(ENQUEUE)},
        PRUNER: pruned,
        "none": none,
        "trial_epochs_ratio": round(ratio, 3) if ratio is not None else None,
        "wall_ratio": round(pruned["wall_s"] / none["wall_s"], 3),
        "aim_epochs_ratio_at_most_0.4": ratio is not None and ratio <= 0.4,
        "aim_best_no_worse": both_best and pruned["best_fid_best"] <= none["best_fid_best"],
        "aim_driver_rss_growth_under_10pct": all(
            under_10pct(r["driver_rss_growth_peak"], r["driver_rss_growth_current"]) for r in results.values()),
        "aim_child_rss_growth_under_10pct": all(under_10pct(r["child_rss_growth"]) for r in results.values()),
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    ap = harness.parser(__doc__, "6 trials x 4 epochs on 512 images")
    ap.add_argument("--sampler", choices=("random", "tpe"), default="random")
    ap.add_argument("--min-resource", type=int, default=2, help="asha: epochs every trial gets (default 2)")
    ap.add_argument("--reduction-factor", type=int, default=3, help="asha: 1 in this many goes on at a rung (3)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (Optuna and MLflow stores, runs)")
    ap.add_argument("--driver", metavar="DIR", help=argparse.SUPPRESS)  # internal: run one study in DIR
    args = ap.parse_args()
    if args.driver:
        driver(Path(args.driver))
        return

    bench = harness.Bench("sweep_cost")
    p = plan(args.quick)
    results = {v: run_variant(v, p, args, bench.log) for v in VARIANTS}
    bench.finish(compare(results, p, args))


if __name__ == "__main__":
    main()
