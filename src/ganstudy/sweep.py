"""Improve the GAN settings: `python -m ganstudy.sweep [sweep=NAME] [key=value ...] [--cfg]`.

An Optuna study over Hydra-composed training runs. Each trial composes its config from the sweep's base
overrides, its trial_overrides and the sampled values, and calls train() in a child process of its own
(runner.py); with `jobs` > 1, several trials train side by side. The pruner stops bad trials at their
evaluations. The study lives in Optuna storage (SQLite under mlruns/ by default, any Optuna URL otherwise),
so rerunning the same command continues it, and several workers on one storage share it.
"""
from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import optuna
import yaml
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ganstudy import sweep_spec
from ganstudy.config import ConfigError, compose, exit_on_config_error
from ganstudy.runner import RunFailed, interrupted, run_isolated, share_of_cores, side_by_side
from ganstudy.redact import mask
from ganstudy.storage import (DEFAULT_STORAGE, FAIL_ATTR, JOURNAL_NOTE, RUN_ATTR, check_identity, make_storage,
                              new_instance, predates_instances, storage_url, study_dir, study_instance)
from ganstudy.tags import Tag
from ganstudy.tracking import check_server, sqlite_init_lock
from ganstudy.train import Diverged


def _on_sigint(signum, frame):
    # The flag outlives a KeyboardInterrupt that lands where Python ignores it (a gc callback).
    interrupted.set()
    raise KeyboardInterrupt


def _stop_if_interrupted() -> None:
    if interrupted.is_set():
        raise KeyboardInterrupt


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the study's budget: finished, running or queued, and those that failed with a reason
    of their own (NaN losses, an error). A trial that Ctrl-C ended, or the heartbeat failed, is not counted:
    it runs again (the heartbeat's retry counts instead)."""
    return sum(t.state != TrialState.FAIL or FAIL_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False))


def enqueue_warm_start(study: optuna.Study, params: dict) -> None:
    """Queue these settings unless a trial of them is queued, running, done, or failed for a reason of its own.
    (Optuna's skip_if_exists also skips a trial that Ctrl-C or a dead worker ended: that warm start never ran.)"""
    for t in study.get_trials(deepcopy=False):
        tried = t.params or t.system_attrs.get("fixed_params", {})
        if all(tried.get(k) == v for k, v in params.items()) and (t.state != TrialState.FAIL or FAIL_ATTR in t.user_attrs):
            return
    study.enqueue_trial(params)


def make_sampler(spec: DictConfig) -> optuna.samplers.BaseSampler:
    """The sweep's sampler, seeded afresh for each trial by the sweep's seed plus the trial's number: reproducible
    for one worker, and trials asked for at the same moment (jobs > 1, workers started together) differ."""
    def sampler(seed):
        if spec.sampler.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # constant_liar: trials still running (other jobs, other workers) count as bad, so none is proposed twice.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.sampler.n_startup_trials, constant_liar=True)

    return sampler(None) if spec.sampler.seed is None else TrialSeeded(lambda n: sampler(spec.sampler.seed + n))


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler made anew for each trial from the trial's number (unique in the storage)."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler]):
        self._make = make
        self._inner = make(0)

    def before_trial(self, study, trial):
        self._inner = self._make(trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._inner.after_trial(study, trial, state, values)


def make_pruner(spec: DictConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.name == "asha":  # successive halving: the best 1/reduction_factor go on at each rung
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor,
                                                      bootstrap_count=p.bootstrap_count)
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource=max_epochs,
                                              reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


class StudyStop:
    """Why the study must stop (a trial could not start for a reason that every trial would meet: its folder,
    the tracking store, the data); the workers finish their trials in progress, then the study ends."""

    def __init__(self):
        self.reason: str | None = None


def objective_fn(spec: DictConfig, parent_run_id: str, folder: Path, instance: str, stop: StudyStop):
    """The Optuna objective: one training run, in a child process, nested under the study's MLflow run.
    Whatever goes wrong in one trial fails that trial, with its reason; only a ConfigError stops the study."""
    base = sweep_spec.trial_base(spec)

    def objective(trial: optuna.Trial) -> float:
        _taking.done()
        # The study's last trials get the cores that its finished jobs leave idle (as does a trial enqueued
        # after the study reached n_trials).
        side_by_side_from_now = max(1, min(spec.jobs, 1 + spec.n_trials - counted_trials(trial.study)))
        try:
            sampled = sweep_spec.suggest(trial, spec.space)
        except ValueError as err:  # the storage refused a parameter (another worker's space): so would every trial
            stop.reason = f"trial {trial.number}: {err}"
            return _failed(trial, str(err))
        overrides = base + sampled + share_of_cores(side_by_side_from_now) + [
            f"run_dir={folder / f'trial_{trial.number:04d}'}", f"tracking.run_name=trial_{trial.number}"]
        trial.set_user_attr("overrides", [mask(o) for o in overrides])
        print(f"\ntrial {trial.number}: {mask(' '.join(overrides[len(base):-2]))}", flush=True)
        pruned = False

        def on_eval(epoch: int, metrics: dict) -> bool:
            nonlocal pruned
            if spec.objective in metrics and math.isfinite(metrics[spec.objective]):
                trial.report(metrics[spec.objective], epoch)
                pruned = trial.should_prune()
            return pruned

        def on_start(run_id: str) -> None:
            trial.set_user_attr(RUN_ATTR, run_id)

        tags = {Tag.STUDY: spec.study_name, Tag.INSTANCE: instance, Tag.ROLE: "trial", Tag.TRIAL: trial.number}
        try:
            result = run_isolated(overrides, on_eval, on_start, parent_run_id, tags,
                                  label=f"trial {trial.number}" if spec.jobs > 1 else "")
            _stop_if_interrupted()
            value = result.metrics.get(spec.objective, float("nan"))
            if not math.isfinite(value):
                _diverged(trial, f"{spec.objective} is {value}")
            trial.set_user_attr("peak_rss_mb", result.metrics.get("peak_rss_mb"))
            _tag_run(trial, "pruned" if pruned else "complete")
        except ConfigError as err:
            stop.reason = str(err)
            return _failed(trial, str(err))
        except Diverged as err:
            _diverged(trial, str(err))
        except Exception as err:  # noqa: BLE001 - one broken trial (a crash, a store error) fails alone
            _stop_if_interrupted()  # a run that Ctrl-C ended is not a failed trial: it runs again
            return _failed(trial, str(err) if isinstance(err, RunFailed) else f"{type(err).__name__}: {err}")
        if pruned:
            raise optuna.TrialPruned(f"pruned at {spec.objective}={value:.4g}")
        return value

    return objective


def _failed(trial: optuna.Trial, reason: str) -> float:
    """Record why a trial failed, end its MLflow run if its process could not, and let the study go on."""
    reason = mask(reason)
    trial.set_user_attr(FAIL_ATTR, reason)
    print(f"trial {trial.number} failed: {reason}", file=sys.stderr, flush=True)
    try:
        _tag_run(trial, "failed", reason)
    except Exception as err:  # noqa: BLE001 - the store that failed the trial may fail this too
        print(f"trial {trial.number}: its MLflow run was not tagged ({type(err).__name__}: {mask(str(err))})",
              file=sys.stderr, flush=True)
    return float("nan")  # Optuna records the trial as FAIL


DIVERGED_ATTR = "diverged"


def _diverged(trial: optuna.Trial, reason: str) -> None:
    """A trial whose losses or objective stopped being finite ends PRUNED, not FAIL: TPE learns only from complete
    and pruned trials, and would otherwise keep proposing the settings that diverge. It counts toward n_trials."""
    reason = mask(reason)
    trial.set_user_attr(DIVERGED_ATTR, reason)
    print(f"trial {trial.number} diverged: {reason}", file=sys.stderr, flush=True)
    try:
        _tag_run(trial, "diverged", reason)
    except Exception as err:  # noqa: BLE001 - the store may fail this too
        print(f"trial {trial.number}: its MLflow run was not tagged ({type(err).__name__}: {mask(str(err))})",
              file=sys.stderr, flush=True)
    raise optuna.TrialPruned(f"diverged: {reason}")


class _QuietFailures(logging.Filter):
    """Optuna's own lines for a failed trial: "The value nan is not acceptable" (ours said why already), and
    those for a trial that Ctrl-C ended, traceback included (ours says the study was interrupted; that trial
    runs again)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not interrupted.is_set() and "The value nan is not acceptable" not in record.getMessage()


def _tag_run(trial: optuna.Trial, state: str, fail_reason: str | None = None) -> None:
    from mlflow.tracking import MlflowClient

    from ganstudy.tracking import end_if_running, mark_failed

    run_id = trial.user_attrs.get(RUN_ATTR)
    if run_id is None:  # the run never started (a setting the data refused)
        return
    MlflowClient().set_tag(run_id, Tag.TRIAL_STATE, state)
    if fail_reason is not None:
        mark_failed(run_id, fail_reason)
    else:
        end_if_running(run_id, "FAILED")  # a process that died left it RUNNING


class _TakingTurns:
    """One thread of this worker at a time takes its next trial from the storage, until its objective starts:
    Optuna's pop of a queued trial is not atomic on SQLite, and two threads could take the same one."""

    def __init__(self):
        self.lock, self.mine = threading.Lock(), threading.local()

    def __enter__(self):
        self.lock.acquire()
        self.mine.held = True

    def done(self) -> None:
        if getattr(self.mine, "held", False):
            self.mine.held = False
            self.lock.release()

    def __exit__(self, *exc):
        self.done()


_taking = _TakingTurns()
_report_lock = threading.Lock()


def run_study(spec: DictConfig) -> optuna.Study:
    """Run trials until the study holds spec.n_trials counted trials, none of them still running; return it.
    With spec.jobs > 1, that many threads of this worker do so side by side, each with its trial's process.
    Raises ConfigError when a trial met a reason to stop that every trial would meet."""
    from ganstudy import report

    url = storage_url(spec)
    with sqlite_init_lock(url):  # workers started together: one creates the tables, the study, the parent run
        storage, study = _open_study(spec, url)
        check_identity(study, spec)
        sweep_spec.check_space(study, spec)
        legacy = predates_instances(study)
        instance = study_instance(study)
        base = compose(sweep_spec.trial_base(spec) + ["run_dir=unused"])
        refuse_other_network(base.tracking, spec.study_name, instance, legacy)
        for params in spec.enqueue:  # a warm start: known settings first, so the study ends no worse
            enqueue_warm_start(study, dict(params))
        parent = report.parent_run(study, spec, base.tracking, instance)
    if not isinstance(storage, optuna.storages.RDBStorage):
        print(f"note: {JOURNAL_NOTE}", file=sys.stderr, flush=True)
    stop = StudyStop()
    objective = objective_fn(spec, parent, study_dir(spec.out_dir, spec.study_name, instance), instance, stop)

    def work() -> None:
        # Each thread asks through a Study of its own: the sampler is set per trial.
        mine = optuna.load_study(study_name=spec.study_name, storage=storage, sampler=make_sampler(spec),
                                 pruner=make_pruner(spec, base.train.epochs))
        _work(mine, storage, spec, objective, lambda: report.update_parent(mine, spec, parent, url), stop)

    try:
        side_by_side([work] * spec.jobs, spec.jobs)
        bookkeeping(lambda: report.update_parent(study, spec, parent, url, final=True))
    except KeyboardInterrupt:
        bookkeeping(lambda: report.end_interrupted(study, parent))
        raise
    if stop.reason:
        raise ConfigError(f"the study stopped: {stop.reason}")
    return study


def _work(study: optuna.Study, storage, spec: DictConfig, objective, after_trial, stop: StudyStop) -> None:
    """One thread's loop: a trial while the study needs more, then wait for the running ones to end."""
    waiting_said = False
    while not stop.reason:
        _stop_if_interrupted()
        if isinstance(storage, optuna.storages.RDBStorage):
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, and queued again
        trials = study.get_trials(deepcopy=False)
        queued = any(t.state == TrialState.WAITING for t in trials)
        if (done := counted_trials(study)) < spec.n_trials or queued:
            print(f"\n=== study {spec.study_name}: {done}/{spec.n_trials} trials counted ===", flush=True)
            with _taking:  # released when the objective starts
                # catch: should the bookkeeping of a failed trial fail too, that trial fails, not the study
                study.optimize(objective, n_trials=1, catch=(Exception,))
            with _report_lock:  # one thread at a time redraws the study's report
                bookkeeping(after_trial)
        elif any(t.state == TrialState.RUNNING for t in trials):
            if not waiting_said:  # other workers' trials, or a dead worker's until its heartbeat runs out
                print("waiting for running trials to end ...", flush=True)
                waiting_said = True
            time.sleep(min(spec.heartbeat, 5))
        else:
            return


def bookkeeping(update) -> None:
    """The study's MLflow run, trials table and page: an error there (the tracking server, the artifact store) is
    a warning and a stale page, never a stopped trial."""
    try:
        update()
    except Exception as err:  # noqa: BLE001 - bookkeeping must not share a failure path with training
        print(f"warning: the study's MLflow run and page were not updated ({type(err).__name__}: {mask(str(err))}); "
              "the trials go on, and the next update tries again", file=sys.stderr, flush=True)


def _open_study(spec: DictConfig, url: str, attempts: int = 5):
    """Storage and study; workers on several machines that start together race to create the same
    database tables (PostgreSQL refuses the loser's CREATE), so a failed first attempt is retried.
    The worker that creates the study marks it as a new instance."""
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            storage = make_storage(url, spec.heartbeat)
            try:
                study = optuna.create_study(study_name=spec.study_name, storage=storage, direction=spec.direction)
                new_instance(study)
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(study_name=spec.study_name, storage=storage)
            return storage, study
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)


def refuse_other_network(tracking, study_name: str, instance: str, legacy: bool) -> None:
    """A study whose runs were scored with another feature network is not continued: its FIDs and ours
    would not be comparable, and TPE, the pruner and the best trial would mix them. Its runs are those tagged
    with its instance, or, for a study from before instances, those tagged with its name."""
    from mlflow.tracking import MlflowClient

    from ganstudy.tracking import use_store
    from ganstudy.yardstick import refuse_other, shipped_info

    use_store(tracking.uri)
    client = MlflowClient()
    if (experiment := client.get_experiment_by_name(tracking.experiment)) is None:
        return
    mine = f"tags.`{Tag.STUDY}` = '{study_name}'" if legacy else f"tags.`{Tag.INSTANCE}` = '{instance}'"
    other = client.search_runs([experiment.experiment_id], f"{mine} and tags.`{Tag.CLASSIFIER}` != "
                               f"'{shipped_info()['hash']}'", max_results=1)
    if other:
        refuse_other(other[0].data.tags[Tag.CLASSIFIER], f"study {study_name} (its run {other[0].info.run_id})")


def parse_argv(argv: list[str]) -> tuple[str, list[str]]:
    """`sweep=NAME` picks the file (default: default); every other `key=value` overrides a key of it."""
    name, overrides = "default", []
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"{arg}: arguments are key=value (for example sweep=tiny n_trials=6)")
        if arg.startswith("sweep="):
            name = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    return name, overrides


# What a key's null default stands for.
NULL_MEANS = {"direction": "the objective's own", "storage": f"{DEFAULT_STORAGE}, under the folder you run in",
              "time_budget": "the best arm's own mean time at equal epochs"}


def usage() -> str:
    """--help: what the command does, the sweep files, and every key with the value a file that leaves it out gets."""
    keys = sweep_spec.defaults()
    width = max(map(len, keys)) + 1
    lines = [f"  {key:<{width}} {_flow(value)}" + (f" ({NULL_MEANS[key]})" if key in NULL_MEANS else "")
             for key, value in keys.items()]
    return (__doc__.strip() + f"\n\nsweep files: {', '.join(sweep_spec.available())} (or a path to a .yaml)\n"
            "--cfg: print the sweep file as it resolves (defaults filled in, key=value applied, checked), run nothing\n\n"
            "keys and their defaults (??? must be given; docs/sweeps.md says what each does):\n" + "\n".join(lines))


def _flow(value) -> str:
    """A default as YAML writes it on one line: null, fid_best, [epochs, time], {}."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def split_cfg(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether `--cfg` (or Hydra's `--cfg job`) is asked for, and the other arguments."""
    if "--cfg" not in argv:
        return False, argv
    i = argv.index("--cfg")
    rest = argv[:i] + argv[i + 1:]
    if i < len(rest) and rest[i] == "job":
        del rest[i]
    return True, rest


def main(argv: list[str] | None = None) -> None:
    try:
        _sweep(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # Ctrl-C, from the first checks on: one line, not a traceback
        print("\ninterrupted: run the same command again to continue the study", file=sys.stderr)
        sys.exit(130)


def _sweep(argv: list[str]) -> None:
    if {"-h", "--help"} & set(argv):
        print(usage())
        return
    show, argv = split_cfg(argv)
    with exit_on_config_error():
        spec = sweep_spec.load(*parse_argv(argv))
        if show:
            print(mask(OmegaConf.to_yaml(spec)), end="")
            return
        check_server(compose(sweep_spec.trial_base(spec) + ["run_dir=unused"]).tracking.uri)
    signal.signal(signal.SIGINT, _on_sigint)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, plots
    logging.getLogger("optuna.study._optimize").addFilter(_QuietFailures())
    with exit_on_config_error():
        study = run_study(spec)
        from ganstudy import report

        report.print_summary(study, spec)
        if spec.confirm or spec.ablation:
            from ganstudy.confirm import confirm, failed_any

            parent_run_id = study.user_attrs[report.PARENT_ATTR]
            confirmed = confirm(study, spec, parent_run_id)
            failed = failed_any(confirmed)
            if spec.ablation:
                from ganstudy.ablation import ablation

                failed |= failed_any(ablation(study, spec, parent_run_id, confirmed))
            if failed:
                sys.exit(1)  # the tables are printed; some of their runs failed


if __name__ == "__main__":
    main()
