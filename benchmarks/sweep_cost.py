"""What the median pruner saves in a sweep, and whether a long sweep's memory stays flat: one JSON line on stdout.

    python benchmarks/sweep_cost.py [--quick] [--sampler tpe|random] [--keep]

Runs one fixed small study twice through ganstudy.sweep.run_study: `pruner.name=median` and
`pruner.name=none`, same sampler and seed, same trial budget. Each variant runs in its own child
process (this file with --driver) and its own temp dir: own Optuna SQLite storage, own MLflow SQLite
store and artifact root (tracking.uri / tracking.artifact_root in the base overrides), own out_dir.
Both share the feature-network cache (eval.cache_dir), which the child loads (or trains, once)
before its clock starts.

Per variant:
- `trial_epochs`: sum over trials of the epochs each actually trained = the number of distinct
  steps of its MLflow run's `d_loss` history (MlflowMetrics logs d_loss once per epoch, step =
  epoch; a pruned trial stops right after the evaluation that pruned it, so it logs no later epoch).
  Cross-checked with the last step of each trial's Optuna intermediate values (eval.every=1, so the
  two agree unless a trial diverged before its first evaluation): `trial_epochs_from_optuna`.
- `best_fid_best`: the study's best value (fid_best of the best COMPLETE trial; pruned trials are
  not candidates, as in the study itself).
- `wall_s`: run_study() wall time (trials, pruning, the parent-run report); `process_wall_s`: the
  whole child, imports and the feature-net load included.
- `n_pruned`, `n_complete`, `n_failed`.
- RSS of the sweep process, recorded when each trial's objective returns (or raises):
  ru_maxrss (peak so far) and VmRSS (current). `rss_growth_peak` = (peak at the end of the last
  trial - peak at the end of the 2nd trial) / peak at the end of the 2nd trial; `rss_growth_current`
  likewise for VmRSS. The 2nd trial (Optuna number 1) is the reference because the 1st pays the
  one-off TensorFlow/MLflow warm-up. Aim: < 10%.

Aims (reported as booleans): the pruned study spends < half the trial-epochs of the unpruned one,
for a best value no worse (<=, minimising FID). With the TPE sampler the two studies see the same
proposals only until TPE starts to learn from (differently pruned) history; `--sampler random`
gives both variants identical trial configurations, a clean A/B of pruning alone.
The default run takes about 10 minutes on 2 (shared) cores; --quick about 5.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VARIANTS = ("median", "none")


def log(msg: str) -> None:
    print(f"[sweep_cost {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def plan(quick: bool) -> dict:
    if quick:
        return dict(n_trials=6, epochs=4, limit=512)
    return dict(n_trials=10, epochs=8, limit=1024)


def sweep_file(tmp: Path, variant: str, p: dict, sampler: str, cache_dir: str) -> dict:
    """The study, as a sweep file's content (written to tmp/sweep.yaml and loaded with sweep_spec.load)."""
    return {
        "study_name": f"sweep-cost-{variant}",
        "direction": "minimize",
        "objective": "fid_best",
        "n_trials": p["n_trials"],
        "storage": f"sqlite:///{tmp / 'optuna.db'}",
        "out_dir": str(tmp / "out"),
        "sampler": {"name": sampler, "seed": 0, "n_startup_trials": 2},
        "pruner": {"name": variant, "n_startup_trials": 3, "n_warmup_steps": 2},
        "base": ["experiment=tiny", f"train.epochs={p['epochs']}", "eval.every=1", "eval.detector=false",
                 "train.progress=none", f"data.limit={p['limit']}", f"eval.cache_dir={cache_dir}",
                 f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", f"tracking.artifact_root={tmp / 'artifacts'}"],
        "space": {
            "optimizer": {"choices": ["adam", "rmsprop"]},
            "optimizer.lr_g": {"low": 1.0e-5, "high": 3.0e-3, "log": True},
            "optimizer.lr_d": {"low": 1.0e-5, "high": 3.0e-3, "log": True},
            "optimizer.beta1": {"low": 0.3, "high": 0.9, "when": {"optimizer": "adam"}},
            "model.dropout": {"low": 0.0, "high": 0.5},
        },
    }


# ----------------------------------------------------------------------------------------------------------
# The child: one study in this process, RSS recorded at the end of every trial.

def _vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _rss_now() -> dict:
    return {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "vmrss_kb": _vm_kb("VmRSS"),
            "vmhwm_kb": _vm_kb("VmHWM")}


def driver(tmp: Path) -> None:
    import warnings

    import optuna

    from ganstudy import sweep, sweep_spec
    from ganstudy.config import compose

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec = sweep_spec.load(str(tmp / "sweep.yaml"))

    # The feature network, from the shared cache (trained there once if missing), before the clock starts.
    from ganstudy.classifier import feature_net
    from ganstudy.data import load_mnist

    cfg = compose(list(spec.base) + ["run_dir=unused"])
    feature_net(load_mnist(cfg.data), cfg.eval.cache_dir)

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

    import mlflow
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`{sweep.STUDY_TAG}` = '{spec.study_name}' and "
                                                   f"tags.`{sweep.ROLE_TAG}` = 'trial'", max_results=1000)
    run_of = {int(r.data.tags["ganstudy.trial"]): r.info.run_id for r in runs}
    trials = []
    for t in study.get_trials(deepcopy=False):
        run_id = run_of.get(t.number)
        epochs = len({m.step for m in client.get_metric_history(run_id, "d_loss")}) if run_id else 0
        trials.append({"number": t.number, "state": t.state.name, "epochs": epochs,
                       "last_reported_epoch": max(t.intermediate_values, default=0),
                       "value": t.value, "params": t.params})
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    result = {
        "wall_s": round(wall, 1),
        "best_fid_best": study.best_value if complete else None,
        "best_trial": study.best_trial.number if complete else None,
        "trial_epochs": sum(t["epochs"] for t in trials),
        "trial_epochs_from_optuna": sum(t["last_reported_epoch"] for t in trials),
        "n_trials": len(trials),
        **{f"n_{s.name.lower()}": sum(t.state == s for t in study.trials)
           for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)},
        "trials": trials,
        "rss_per_trial": per_trial,
        "rss_after_study": _rss_now(),
    }
    (tmp / "result.json").write_text(json.dumps(result, default=str))


# ----------------------------------------------------------------------------------------------------------
# The parent: both variants, one JSON line.

def growth(per_trial: list[dict], key: str) -> float | None:
    if len(per_trial) < 2:
        return None
    ref, last = per_trial[1][key], per_trial[-1][key]
    return round((last - ref) / ref, 4)


def run_variant(variant: str, p: dict, sampler: str, cache_dir: str, keep: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"sweep_cost_{variant}_"))
    from omegaconf import OmegaConf

    OmegaConf.save(OmegaConf.create(sweep_file(tmp, variant, p, sampler, cache_dir)), tmp / "sweep.yaml")
    log(f"{variant}: {p['n_trials']} trials x {p['epochs']} epochs in {tmp}")
    start = time.perf_counter()
    # The child's stdout (trial lines, MLflow) goes to our stderr: only the JSON line reaches stdout.
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--driver", str(tmp)], stdout=sys.stderr, cwd=tmp)
    process_wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{variant}: the sweep process exited with {proc.returncode} (files kept in {tmp})")
    r = json.loads((tmp / "result.json").read_text())
    per_trial = r.pop("rss_per_trial")
    r["process_wall_s"] = round(process_wall, 1)
    r["peak_rss_mb_after_trial2"] = round(per_trial[1]["maxrss_kb"] / 1024, 1) if len(per_trial) > 1 else None
    r["peak_rss_mb_after_last"] = round(per_trial[-1]["maxrss_kb"] / 1024, 1)
    r["rss_growth_peak"] = growth(per_trial, "maxrss_kb")
    r["rss_mb_after_trial2"] = round(per_trial[1]["vmrss_kb"] / 1024, 1) if len(per_trial) > 1 else None
    r["rss_mb_after_last"] = round(per_trial[-1]["vmrss_kb"] / 1024, 1)
    r["rss_growth_current"] = growth(per_trial, "vmrss_kb")
    r["rss_mb_per_trial"] = [round(t["vmrss_kb"] / 1024, 1) for t in per_trial]
    r["trial_seconds"] = [t["seconds"] for t in per_trial]
    r["trials"] = [{k: t[k] for k in ("number", "state", "epochs", "last_reported_epoch", "value")} | {
        "params": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in t["params"].items()}}
        for t in r["trials"]]
    if keep:
        r["dir"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{variant}: {r['trial_epochs']} trial-epochs, best {r['best_fid_best']}, {r['n_pruned']} pruned, "
        f"{r['wall_s']} s, RSS growth peak {r['rss_growth_peak']} current {r['rss_growth_current']}")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 trials x 4 epochs on 512 images: about 5 minutes")
    ap.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (Optuna and MLflow stores, runs)")
    ap.add_argument("--driver", metavar="DIR", help=argparse.SUPPRESS)  # internal: run one study in DIR
    args = ap.parse_args()
    if args.driver:
        driver(Path(args.driver))
        return

    p = plan(args.quick)
    cache_dir = str(Path(os.environ.get("GANSTUDY_CACHE", "~/.cache/ganstudy")).expanduser())
    results = {v: run_variant(v, p, args.sampler, cache_dir, args.keep) for v in VARIANTS}
    med, none = results["median"], results["none"]
    ratio = med["trial_epochs"] / none["trial_epochs"] if none["trial_epochs"] else None
    both_best = med["best_fid_best"] is not None and none["best_fid_best"] is not None
    out = {
        "benchmark": "sweep_cost",
        "quick": args.quick,
        "setup": {**p, "sampler": args.sampler, "sampler_seed": 0,
                  "pruner": {"n_startup_trials": 3, "n_warmup_steps": 2}, "experiment": "tiny", "eval_every": 1},
        "median": med,
        "none": none,
        "trial_epochs_ratio": round(ratio, 3) if ratio is not None else None,
        "wall_ratio": round(med["wall_s"] / none["wall_s"], 3),
        "aim_half_epochs": ratio is not None and ratio < 0.5,
        "aim_best_no_worse": both_best and med["best_fid_best"] <= none["best_fid_best"],
        "aim_rss_growth_under_10pct": all(r["rss_growth_peak"] is not None and r["rss_growth_peak"] < 0.10
                                          for r in results.values()),
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
