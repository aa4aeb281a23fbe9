"""The study: the tiny sweep's regression run, resume after Ctrl-C, a killed worker, two workers, bad files."""
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from ganstudy import sweep_spec
from ganstudy.config import ConfigError, compose
from conftest import load, start, sweep_args, sweep_main


def trials_so_far(tmp_path):
    """The study's trials; none while the worker has not created it yet, is setting its tables up (this reader
    and the worker may both try), or holds the SQLite lock."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return load(tmp_path).get_trials()
    except (KeyError, SQLAlchemyError):
        return []


def wait_for(predicate, proc, limit=600):
    deadline = time.time() + limit
    while not predicate() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)


def ended(trials):
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@pytest.mark.slow
def test_tiny_sweep_regression(tiny_study, capsys):
    tmp_path = tiny_study
    study = load(tmp_path)
    trials = study.get_trials()
    assert len(trials) == 4 and [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) and math.isfinite(t.value) for t in trials)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    exp = client.get_run(parent_id).info.experiment_id
    nested = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}' and tags.`ganstudy.role` = 'trial'")
    assert len(nested) == 4
    assert sorted(r.data.tags["ganstudy.trial_state"] for r in nested) == sorted(
        t.state.name.lower() for t in trials)
    parent = client.get_run(parent_id)
    assert parent.data.metrics["best_fid_best"] == study.best_value
    assert parent.data.metrics["best_trial"] == study.best_trial.number
    assert {a.path for a in client.list_artifacts(parent_id)} >= {"trials.csv", "best.json", "report", "sweep.yaml"}
    assert "report/optimization_history.html" in {a.path for a in client.list_artifacts(parent_id, "report")}
    # Trial 0 is the enqueued warm start; trial 1 is what a fresh TPE sampler with seed 0 + 1 proposes.
    assert trials[0].params == dict(sweep_spec.load("tiny").enqueue[0])
    reference = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1, n_startup_trials=2)).ask()
    expected = {"optimizer": reference.suggest_categorical("optimizer", ["adam", "rmsprop"]),
                "optimizer.lr_g": reference.suggest_float("optimizer.lr_g", 1e-4, 1e-3, log=True),
                "optimizer.lr_d": reference.suggest_float("optimizer.lr_d", 1e-4, 1e-3, log=True)}
    if expected["optimizer"] == "adam":
        expected["optimizer.beta1"] = reference.suggest_float("optimizer.beta1", 0.3, 0.9)
    expected["model.dropout"] = reference.suggest_float("model.dropout", 0.0, 0.5)
    assert trials[1].params == expected
    # Each trial ran in a child process of its own, kept no checkpoint, and says what memory it took.
    assert len({t.user_attrs["peak_rss_mb"] for t in trials}) == 4 and all(t.user_attrs["peak_rss_mb"] > 100 for t in trials)
    assert all(client.get_run(t.user_attrs["mlflow_run_id"]).info.status == "FINISHED" for t in trials)
    assert not list((tmp_path / "trials").glob("*/*/checkpoints"))
    # Trials train at trial_overrides' budget (3 epochs; confirm runs at base's 2).
    assert {client.get_run(t.user_attrs["mlflow_run_id"]).data.params["train.epochs"] for t in trials} == {"3"}
    # The study page and every HTML plot work offline: pictures inside the page, plotly.js beside the plots.
    report = Path(client.download_artifacts(parent_id, "report", str(tmp_path / "download")))
    page = (report / "index.html").read_text()
    assert "Best trial" in page and "complete trials" in page and page.count("src='data:image/") >= 4
    # What the study cost, on its page and as the parent run's metrics: each trial's epochs and minutes.
    epochs = sum(max(t.intermediate_values) for t in trials)
    minutes = sum((t.datetime_complete - t.datetime_start).total_seconds() / 60 for t in trials)
    assert parent.data.metrics["trial_epochs"] == epochs and parent.data.metrics["trial_minutes"] == pytest.approx(minutes)
    assert f"{epochs} trial-epochs, {minutes:.0f} trial-minutes" in page
    scripts = [src for f in report.glob("*.html") for src in re.findall(r"<script[^>]*src=[\"']([^\"']+)", f.read_text())]
    assert scripts and set(scripts) == {"plotly.min.js"} and (report / "plotly.min.js").exists()
    assert not re.search(r"<(img|script|link)[^>]*(src|href)=[\"']https?:", page)
    # Rerunning a finished study adds nothing.
    code, out = sweep_main(sweep_args(tmp_path), capsys)
    assert code == 0 and len(load(tmp_path).get_trials()) == 4, out


def running_with_run(tmp_path, seen=()):
    return [t for t in trials_so_far(tmp_path) if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
            and t.number not in seen]


@pytest.mark.slow
def test_a_study_reaches_its_total_through_ctrl_c_and_killed_workers(tmp_path):
    """Ctrl-C as a terminal sends it, to every process of the command, while trial 0 trains and the next
    trial's process still imports (exit 130, the hint to run the command again, no traceback, nothing called
    failed); then SIGKILL to the worker alone (its trial's process notices and ends its MLflow run); then SIGKILL
    to the worker and its trial's process at once (the next worker's heartbeat check fails that trial and ends
    its run). Each rerun goes on where the last stopped: the study ends at its total, the killed trials FAIL,
    their runs KILLED, and nothing stays RUNNING."""
    args = sweep_args(tmp_path, "n_trials=2", "heartbeat=1")
    storage = tmp_path / "optuna.db"
    proc = start(tmp_path, args, new_session=True)
    wait_for(lambda: storage.exists() and running_with_run(tmp_path), proc)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again" in out, out
    assert "Traceback" not in out and "failed" not in out, out
    killed = []
    for kill in ("worker", "worker and trial process"):
        proc = start(tmp_path, args, new_session=True)
        wait_for(lambda: storage.exists() and running_with_run(tmp_path, killed), proc)
        time.sleep(2)
        if kill == "worker":
            proc.send_signal(signal.SIGKILL)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        (trial,) = running_with_run(tmp_path, killed)
        killed.append(trial.number)
    done = start(tmp_path, args)
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    trials = load(tmp_path).get_trials()
    assert len(ended(trials)) == 2 and TrialState.RUNNING not in [t.state for t in trials]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for number in killed:
        assert trials[number].state == TrialState.FAIL
        assert client.get_run(trials[number].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_ctrl_c_during_the_first_checks_is_one_line_and_exit_130(tmp_path):
    """Ctrl-C while the sweep waits for its tracking server to answer (one that takes the connection and says
    nothing): the line saying so, exit 130, no traceback, and no study made."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(120)
        args = ["sweep=tiny", f"storage=sqlite:///{tmp_path}/optuna.db",
                f"base=[experiment=tiny,tracking.uri=http://127.0.0.1:{server.getsockname()[1]}]"]
        proc = start(tmp_path, args, new_session=True)
        connection, _ = server.accept()  # the sweep checks the server
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        out, _ = proc.communicate(timeout=120)
        connection.close()
    assert proc.returncode == 130 and out.strip() == "interrupted: run the same command again to continue the study", out
    assert not (tmp_path / "optuna.db").exists()


def test_an_interrupted_study_ends_its_run_killed_and_a_rerun_runs_it_again(tmp_path, capsys, monkeypatch):
    """Ctrl-C while a trial trains: the study's MLflow run ends KILLED, not RUNNING forever. The same command
    again reopens that run (RUNNING while its trials train) and ends it FINISHED. While another worker's trial
    still runs, an interrupted worker leaves the run to that worker."""
    from ganstudy import report, sweep
    from ganstudy.runner import interrupted
    from ganstudy.train import RunResult

    seen = []

    def ctrl_c(overrides, on_eval, on_start, parent, tags, label):
        os.kill(os.getpid(), signal.SIGINT)  # the main thread takes it, as a terminal's Ctrl-C
        interrupted.wait(60)
        raise KeyboardInterrupt  # as run_isolated does once Ctrl-C ended its run

    def run(overrides, on_eval, on_start, parent, tags, label):
        seen.append((parent, MlflowClient().get_run(parent).info.status))
        return RunResult("0" * 32, tmp_path, {"fid_best": 1.0})

    monkeypatch.setattr(report, "_draw_plots", lambda *args, **kwargs: None)  # no plot process: no TensorFlow
    monkeypatch.setattr(sweep, "run_isolated", ctrl_c)
    code, out = sweep_main(sweep_args(tmp_path, "n_trials=1"), capsys)
    parent = load(tmp_path).user_attrs["mlflow_parent_run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    status = client.get_run(parent).info.status
    monkeypatch.setattr(sweep, "run_isolated", run)
    again, again_out = sweep_main(sweep_args(tmp_path, "n_trials=1"), capsys)
    assert code == 130 and "interrupted: run the same command again" in out and status == "KILLED", out
    assert again == 0 and seen == [(parent, "RUNNING")] and client.get_run(parent).info.status == "FINISHED", again_out
    study = load(tmp_path)
    client.update_run(parent, "RUNNING")
    trial = study.ask()  # another worker's
    report.end_interrupted(study, parent)
    assert client.get_run(parent).info.status == "RUNNING"
    study.tell(trial, 1.0)
    report.end_interrupted(study, parent)
    assert client.get_run(parent).info.status == "KILLED"


@pytest.mark.parametrize("overrides, message", [
    (["n_trial=3"], "sweep=tiny: Key 'n_trial' not in 'SweepSpec'"),
    (["space[model.dropout].low=0.6"], "sweep=tiny: space.model.dropout: empty range, low=0.6 is not below high=0.5"),
    (["space[model.depth]={low: 1, high: 3}"], "sweep=tiny: space.model.depth: unknown parameter"),
    (["space.optimizer.choices=[adam,adagrad]"], "sweep=tiny: space.optimizer: a config group takes choices from"),
    (["space[optimizer.lr_g].low=0"], "sweep=tiny: space.optimizer.lr_g: a log range needs low > 0"),
    (["objective=accuracy"], "sweep=tiny: objective=accuracy: must be one of fid_best"),
    (["n_trials=0"], "sweep=tiny: n_trials=0: must be an integer >= 1"),
    (["heartbeat=0"], "sweep=tiny: heartbeat=0: must be an integer >= 1"),
    (["pruner.reduction_factor=1"], "sweep=tiny: pruner.reduction_factor=1: must be an integer >= 2"),
    (["pruner.min_resource=0"], "sweep=tiny: pruner.min_resource=0: must be an integer >= 1"),
    (["pruner.bootstrap_count=-1"], "sweep=tiny: pruner.bootstrap_count=-1: must be an integer >= 0"),
    (["time_budget=-5"], "sweep=tiny: time_budget=-5.0: must be > 0 seconds"),
    (["base_name=best"], "sweep=tiny: base_name=best: name the base arm something other than best or article"),
    (["space[model.dropout].high=1.5"], "sweep=tiny: space.model.dropout: 1.5 cannot run (model.dropout=1.5: must be"),
    (["space={train.batch_size: {choices: [32, 512]}}"],
     "sweep=tiny: space.train.batch_size: 512 cannot run (train.batch_size=512: must be at most the 256 training images)"),
    (["space={train.batch_size: {choices: [32, 16.5]}}"],
     "sweep=tiny: space.train.batch_size: 16.5 cannot run (train.batch_size=16.5: Value '16.5' of type 'float' could "
     "not be converted to Integer)"),
    (["objective=detector_auc"], "sweep=tiny: objective=detector_auc: must be a metric the runs log (detector_auc "
                                 "needs eval.detector=true in base)"),
    (["enqueue=[{model.dropout: 0.9}]"], "sweep=tiny: enqueue[0].model.dropout=0.9: must be in [0.0, 0.5]"),
    (["enqueue=[{model.width: 1.0}]"], "sweep=tiny: enqueue[0].model.width: not a key of space"),
    (["base=[experiment=tiny,eval.n_samples=5000]"], "sweep=tiny: eval.n_samples=5000: must be at most the 1000 "
                                                     "held-out images (data.holdout)"),
    (["space[optimizer.lr_g].step=1e-4"], "sweep=tiny: space.optimizer.lr_g: step and log cannot go together"),
    (["space[model.dropout].step=-0.1"], "sweep=tiny: space.model.dropout: step=-0.1: must be > 0"),
    (["objective=mnist_score", "direction=minimize"], "sweep=tiny: direction=minimize: must be maximize for "
                                                      "objective=mnist_score (or leave direction out)"),
    (["space={optimizer: {choices: [adam, rmsprop], when: {train.ema_decay: 0.0}}, "
      "train.ema_decay: {choices: [0.0, 0.9], when: {optimizer: adam}}}"],
     "sweep=tiny: space: the conditions of optimizer, optimizer.beta1, train.ema_decay name each other in a cycle"),
    (["opponents={article: [experiment=tiny]}"], "sweep=tiny: opponents.article: give a list of overrides under a "
                                                 "name other than best, article, tiny"),
    (["opponents={other: [experiment=tiny, lr=0]}"], "sweep=tiny: opponents.other: optimizer.lr_g=0.0: must be > 0"),
    (["levers={train.d_steps: [1, 2, 3]}"], "sweep=tiny: levers.train.d_steps: give two choices, [the article's, "
                                              "the other]"),
    (["levers={train.d_steps: [1, 0]}"], "sweep=tiny: levers.train.d_steps: train.d_steps=0: must be an integer >= 1"),
    (["ablation=true"], "sweep=tiny: ablation=true needs levers: {key: [the article's choice, the other]}"),
    (["levers={loss: [ns, hinge]}", "ablation=true", "budgets=[time]", "time_budget=60"],
     "sweep=tiny: ablation=true needs budgets to include epochs"),
    # The levers: each value checked as train checks it, and a group's choices with the other settings.
    (["space={loss: {choices: [ns, nope]}}"], "sweep=tiny: space.loss: a config group takes choices from hinge, ls, ns, "
                                              "wgan_gp"),
    (["space={train.d_steps: {low: 0, high: 3}}"], "sweep=tiny: space.train.d_steps: 0 cannot run (train.d_steps=0: "
                                                   "must be an integer >= 1"),
    (["space={train.augment: {choices: [none, nope]}}"], "sweep=tiny: space.train.augment: nope cannot run "
                                                         "(train.augment=nope: must be one of none, diffaugment)"),
    (["space={model.d_norm: {choices: [spectral, nope]}}"], "sweep=tiny: space.model.d_norm: nope cannot run"),
    (["space={optimizer.schedule: {choices: [cosine, nope]}}"], "sweep=tiny: space.optimizer.schedule: nope cannot run"),
    (["space={train.r1_gamma: {low: -1.0, high: 1.0}}"], "sweep=tiny: space.train.r1_gamma: -1.0 cannot run"),
    (["space={loss: {choices: [ns, hinge]}, train.label_smoothing: {low: 0.0, high: 0.2}}"],
     "sweep=tiny: space.train.label_smoothing: 0.2 cannot run with loss=hinge (train.label_smoothing=0.2: must be 0 "
     "for loss=hinge, which has no target for real images (smoothing is for loss=ns or ls)); add when: {loss: ...} "
     "to space.train.label_smoothing"),
])
def test_bad_sweep_settings_are_rejected(overrides, message):
    with pytest.raises(ConfigError) as err:
        sweep_spec.load("tiny", overrides)
    assert str(err.value).startswith(message), str(err.value)


def test_a_lever_searched_under_a_condition_is_accepted():
    """Label smoothing only where the loss has a target: the pair check follows `when`."""
    spec = sweep_spec.load("tiny", ["enqueue=[]", "space={loss: {choices: [ns, hinge, wgan_gp]}, "
                                    "loss.gp_weight: {low: 1.0, high: 10.0, when: {loss: wgan_gp}}, "
                                    "train.label_smoothing: {low: 0.0, high: 0.2, when: {loss: ns}}}"])
    tiny = {"optimizer": "rmsprop", "optimizer.lr_g": 2e-4, "optimizer.lr_d": 2e-4, "model.dropout": 0.3}
    trial = optuna.trial.FixedTrial({**tiny, "loss": "wgan_gp", "loss.gp_weight": 5.0})
    assert sweep_spec.suggest(trial, spec.space)[-2:] == ["loss=wgan_gp", "loss.gp_weight=5.0"]


def test_each_objective_implies_its_direction():
    assert sweep_spec.load("tiny").direction == "minimize"
    assert sweep_spec.load("tiny", ["objective=mnist_score"]).direction == "maximize"
    assert sweep_spec.load("tiny", ["objective=recall", "direction=maximize"]).direction == "maximize"


def test_the_default_study_stops_a_trial_alone_at_its_rung():
    """The default study's successive halving (bootstrap_count 1): the first trial to reach epoch 2 stops
    there (a fast, bad trial no longer trains to the end for want of rivals); a later, better one goes on; a
    worse one stops."""
    from ganstudy.sweep import make_pruner

    study = optuna.create_study(pruner=make_pruner(sweep_spec.load("default", []), max_epochs=12))
    decisions = []
    for value in (100.0, 50.0, 150.0):
        trial = study.ask()
        trial.report(value, 2)
        decisions.append(trial.should_prune())
    assert decisions == [True, False, True]


def test_a_condition_may_name_a_key_that_comes_later_in_space(tmp_path):
    """beta1 is listed before the optimizer it depends on: the file is accepted, and beta1 is searched
    whenever adam is chosen."""
    from omegaconf import OmegaConf

    tiny = OmegaConf.load(sweep_spec.sweep_path("tiny"))
    tiny.space = {"optimizer.beta1": {"low": 0.3, "high": 0.9, "when": {"optimizer": "adam"}},
                  "optimizer": {"choices": ["adam", "rmsprop"]}}
    tiny.enqueue = []
    OmegaConf.save(tiny, tmp_path / "later.yaml")
    space = sweep_spec.load(str(tmp_path / "later.yaml")).space
    adam = optuna.trial.FixedTrial({"optimizer": "adam", "optimizer.beta1": 0.4})
    assert sweep_spec.suggest(adam, space) == ["optimizer.beta1=0.4", "optimizer=adam"]
    assert sweep_spec.suggest(optuna.trial.FixedTrial({"optimizer": "rmsprop"}), space) == ["optimizer=rmsprop"]


@pytest.mark.slow
def test_bad_sweep_file_stops_the_command_before_any_trial(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study_name: bad\nspace: {}\n")
    done = subprocess.run([sys.executable, "-m", "ganstudy.sweep", f"sweep={bad}",
                           f"storage=sqlite:///{tmp_path}/optuna.db"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: sweep={bad}: space is empty: name at least one setting to search"
    assert not (tmp_path / "optuna.db").exists()
    unknown = subprocess.run([sys.executable, "-m", "ganstudy.sweep", "sweep=nope"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "sweep=nope: no such sweep file; choose one of default, levers, tiny" in unknown.stderr
    usage = subprocess.run([sys.executable, "-m", "ganstudy.sweep", "--help"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert usage.returncode == 0 and "sweep files: default, levers, tiny" in usage.stdout and "n_trials" in usage.stdout


def test_help_gives_every_key_with_its_default(capsys):
    """`--help` lists each key a sweep file may set with the value a file that leaves it out gets."""
    from conftest import call_main
    from ganstudy import sweep
    from ganstudy.sweep_spec import SweepSpec

    code, out, _ = call_main(sweep.main, ["--help"], capsys)
    listed = dict(line.split(None, 1) for line in out.split("keys and their defaults")[1].splitlines()[1:])
    spec = SweepSpec()
    assert code == 0 and list(listed) == list(sweep_spec.defaults())
    assert listed["n_trials"] == str(spec.n_trials) and listed["pruner.name"] == spec.pruner.name
    assert listed["sampler.n_startup_trials"] == str(spec.sampler.n_startup_trials)
    assert listed["budgets"] == "[epochs, time]" and listed["confirm"] == "false" and listed["study_name"] == "???"
    assert listed["storage"] == "null (sqlite:///mlruns/optuna.db, under the folder you run in)"


def test_the_defaults_docs_sweeps_md_gives_are_the_codes():
    from pathlib import Path

    from ganstudy.sweep_spec import SweepSpec

    spec, text = SweepSpec(), " ".join((Path(__file__).parents[1] / "docs" / "sweeps.md").read_text().split())
    for said in (f"without `n_trials` a study runs {spec.n_trials} trials",
                 f"TPE with seed {spec.sampler.seed} after {spec.sampler.n_startup_trials} random trials",
                 f"the **{spec.pruner.name}** pruner", f"no pruning until {spec.pruner.n_startup_trials} trials",
                 f"none before a trial's epoch {spec.pruner.n_warmup_steps}", f"`jobs: {spec.jobs}`",
                 f"`heartbeat: {spec.heartbeat}`", f"`seeds: {spec.seeds}`", f"`base_name: {spec.base_name}`",
                 f"`out_dir: {spec.out_dir}`", f"`budgets: [{', '.join(spec.budgets)}]`"):
        assert said in text, said


@pytest.mark.parametrize("flag", [["--cfg"], ["--cfg", "job"]])
def test_cfg_prints_the_sweep_file_as_it_resolves_and_runs_nothing(tmp_path, capsys, flag):
    """`--cfg` prints the file with its defaults filled in and the overrides applied, as YAML that is itself a
    sweep file of the same study; no storage is created."""
    from conftest import call_main
    from ganstudy import sweep
    from ganstudy.sweep_spec import SweepSpec

    args = ["sweep=tiny", "n_trials=7", "pruner.name=median", "storage=postgresql+psycopg://u:secret@db-host/optuna"]
    code, out, err = call_main(sweep.main, [*flag, *args], capsys)
    printed = yaml.safe_load(out)
    assert (code, err) == (0, "")
    assert printed["n_trials"] == 7 and printed["pruner"]["name"] == "median"  # the overrides
    assert printed["pruner"]["n_warmup_steps"] == SweepSpec().pruner.n_warmup_steps  # tiny.yaml leaves it out
    assert printed["direction"] == "minimize" and printed["study_name"] == "tiny"  # implied by the objective
    assert printed["space"]["model.dropout"] == {"low": 0.0, "high": 0.5}
    assert printed["storage"] == "postgresql+psycopg://u:***@db-host/optuna"  # masked, as everything printed
    (tmp_path / "resolved.yaml").write_text(out.replace("u:***@", "u:secret@"))
    assert OmegaConf.to_container(sweep_spec.load(str(tmp_path / "resolved.yaml"))) == {
        **printed, "storage": "postgresql+psycopg://u:secret@db-host/optuna"}


def test_cfg_on_a_bad_sweep_is_one_line_and_exit_2(capsys):
    from conftest import call_main
    from ganstudy import sweep

    code, out, err = call_main(sweep.main, ["sweep=tiny", "n_trials=0", "--cfg"], capsys)
    assert (code, out) == (2, "") and err == "error: sweep=tiny: n_trials=0: must be an integer >= 1\n"


def confirm_runs(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}' and tags.`ganstudy.role` = 'confirm'")


def decided_study(tmp_path, *extra):
    """The tiny study with its trials done, made by hand (one complete trial, no training): what `confirm`
    starts from. Returns the study, its spec (n_trials=1) and its parent run."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from ganstudy import report
    from ganstudy.storage import new_instance

    spec = sweep_spec.load("tiny", sweep_args(tmp_path)[1:] + ["n_trials=1", *extra])
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    new_instance(study)
    lr = FloatDistribution(1e-4, 1e-3, log=True)
    study.add_trial(optuna.trial.create_trial(
        params={"optimizer": "rmsprop", "optimizer.lr_g": 4e-4, "optimizer.lr_d": 3e-4, "model.dropout": 0.2},
        distributions={"optimizer": CategoricalDistribution(["adam", "rmsprop"]), "optimizer.lr_g": lr,
                       "optimizer.lr_d": lr, "model.dropout": FloatDistribution(0.0, 0.5)},
        value=300.0, intermediate_values={1: 350.0, 3: 300.0}))
    tracking = compose(sweep_spec.trial_base(spec) + ["run_dir=unused"]).tracking
    return study, spec, report.parent_run(study, spec, tracking, study.user_attrs["ganstudy_instance"])


@pytest.mark.slow
def test_confirm_compares_best_with_base_and_article_over_seeds_and_the_ablation_one_lever(tmp_path, capsys):
    from ganstudy.confirm import confirm

    study, spec, parent_id = decided_study(tmp_path, "seeds=2", "jobs=2")
    summary = confirm(study, spec, parent_id)["equal_epochs"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = confirm_runs(client, parent_id)
    # Two runs at a time, each on half the cores, at base's budget (2 epochs; trials would train 3).
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert {(r.data.params["train.threads"], r.data.params["train.epochs"]) for r in runs} == {(threads, "2")}
    starts = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert any(nxt[0] < prev[1] for prev, nxt in zip(starts, starts[1:]))  # some ran side by side
    # Seed by seed: the arms of seed 1 start first, those of seed 2 last (a busy spell hits every arm alike).
    by_start = sorted(runs, key=lambda r: r.info.start_time)
    assert [r.data.tags["ganstudy.seed"] for r in by_start[:2] + by_start[-2:]] == ["1", "1", "2", "2"]
    assert sorted((r.data.tags["ganstudy.which"], r.data.tags["ganstudy.seed"]) for r in runs) == [
        ("article", "1"), ("article", "2"), ("best", "1"), ("best", "2"), ("tiny", "1"), ("tiny", "2")]
    values = {arm: [r.data.metrics["objective"] for r in runs if r.data.tags["ganstudy.which"] == arm]
              for arm in ("best", "tiny", "article")}
    for arm, v in values.items():
        assert summary[arm]["mean"] == pytest.approx(sum(v) / 2)
        assert summary[arm]["std"] == pytest.approx(abs(v[0] - v[1]) / 2 ** 0.5)
    # The best arm's best seed is the champion: its generator and detector registered under the alias.
    winner = min((r for r in runs if r.data.tags["ganstudy.which"] == "best"), key=lambda r: r.data.metrics["objective"])
    for name in ("tiny-generator", "tiny-detector"):
        assert client.get_model_version_by_alias(name, "champion").run_id == winner.info.run_id
    from scipy.stats import ttest_ind

    metrics = client.get_run(parent_id).data.metrics
    for arm in ("tiny", "article"):
        assert metrics[f"confirm_ratio_{arm}"] == pytest.approx(summary["best"]["mean"] / summary[arm]["mean"])
        assert metrics[f"confirm_ratio_{arm}_ci_low"] <= metrics[f"confirm_ratio_{arm}"] <= metrics[f"confirm_ratio_{arm}_ci_high"]
        assert summary[arm]["budget"]["epochs"] == 2 and summary[arm]["budget"]["images"] == 2 * 256
        assert metrics[f"confirm_p_{arm}"] == pytest.approx(ttest_ind(values["best"], values[arm], equal_var=False).pvalue)
    best = next(r for r in runs if r.data.tags["ganstudy.which"] == "best")
    params = {("optimizer.name" if k == "optimizer" else k): str(v) for k, v in study.best_params.items()}
    assert all(best.data.params[k] == v for k, v in params.items())
    article = next(r for r in runs if r.data.tags["ganstudy.which"] == "article")
    assert (article.data.params["optimizer.lr_g"], article.data.params["optimizer.beta1"]) == ("0.0001", "0.9")
    assert {"confirm.png", "confirm.json"} <= {a.path for a in client.list_artifacts(parent_id)}
    out = capsys.readouterr().out
    assert "best vs tiny: ratio" in out and "best vs article: ratio" in out
    assert f"#/experiments/{client.get_run(parent_id).info.experiment_id}/runs/{parent_id}?workflowType=machine_learning" in out
    page = Path(client.download_artifacts(parent_id, "report/index.html", str(tmp_path / "after_confirm")))
    assert "Confirmation: the best settings" in page.read_text()  # the study page shows the table now

    confirm(study, spec, parent_id)  # a rerun finds the finished runs and trains nothing
    assert len(confirm_runs(client, parent_id)) == 6
    check_the_ablation(study, spec, parent_id, client, capsys, tmp_path)
    # The study went on to a new best, and the baseline changed: the best arm is trained again with the new
    # settings and the article arm with the new baseline, nothing else (one seed, to keep the test short).
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    lr = FloatDistribution(1e-4, 1e-3, log=True)
    study.add_trial(optuna.trial.create_trial(
        params={"optimizer": "rmsprop", "optimizer.lr_g": 5e-4, "optimizer.lr_d": 5e-4, "model.dropout": 0.1},
        distributions={"optimizer": CategoricalDistribution(["adam", "rmsprop"]), "optimizer.lr_g": lr,
                       "optimizer.lr_d": lr, "model.dropout": FloatDistribution(0.0, 0.5)}, value=0.0))
    changed = sweep_spec.load("tiny", sweep_args(tmp_path)[1:] + ["n_trials=1", "seeds=1", "jobs=2", "baseline=[lr=3e-4]"])
    confirm(study, changed, parent_id)
    runs = confirm_runs(client, parent_id)
    assert sorted(r.data.tags["ganstudy.which"] for r in runs).count("article") == 3 and len(runs) == 8
    newest = [r for r in runs if r.data.tags["ganstudy.which"] == "best" and r.data.params["optimizer.name"] == "rmsprop"
              and r.data.params["optimizer.lr_g"] == "0.0005"]
    assert len(newest) == 1


def check_the_ablation(study, spec, parent_id, client, capsys, tmp_path):
    """ablation=true after that confirm: the winner's confirm runs are reused, one lever is trained beside them."""
    import json

    from ganstudy.ablation import ablation, winner
    from ganstudy.confirm import confirm

    spec.levers, spec.ablation = {"train.d_steps": [1, 2]}, True
    confirmed = confirm(study, spec, parent_id)
    capsys.readouterr()
    results = ablation(study, spec, parent_id, confirmed)
    reference = results["reference"]
    assert reference == winner(confirmed["equal_epochs"], "minimize")
    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}' and tags.`ganstudy.role` = 'ablation'")
    assert sorted((r.data.tags["ganstudy.which"], r.data.tags["ganstudy.seed"]) for r in runs) == [
        ("d_steps_2", "1"), ("d_steps_2", "2")]  # the winner's confirm runs serve as its ablation runs
    winner_runs = [r for r in confirm_runs(client, parent_id) if r.data.tags["ganstudy.which"] == reference]
    ignored = ("train.d_steps", "train.seed", "run_dir", "tracking.run_name")
    for lever in runs:
        twin = next(r for r in winner_runs if r.data.tags["ganstudy.seed"] == lever.data.tags["ganstudy.seed"])
        assert lever.data.params["train.d_steps"] == "2" and twin.data.params["train.d_steps"] == "1"
        assert {k: v for k, v in lever.data.params.items() if k not in ignored} == {
            k: v for k, v in twin.data.params.items() if k not in ignored}
    mean = lambda rs: sum(r.data.metrics["objective"] for r in rs) / len(rs)  # noqa: E731
    ratio = mean(winner_runs) / mean(runs)
    assert client.get_run(parent_id).data.metrics["ablation_ratio_d_steps_2"] == pytest.approx(ratio)
    saved = json.loads(Path(client.download_artifacts(parent_id, "ablation.json", str(tmp_path))).read_text())
    assert saved["reference"] == reference and saved["equal_epochs"]["d_steps_2"]["ratio"] == pytest.approx(ratio)
    assert f"{reference} vs d_steps_2: ratio {ratio:.3f}" in capsys.readouterr().out
    ablation(study, spec, parent_id, confirmed)  # a rerun trains nothing
    assert len(client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}' and "
                                         "tags.`ganstudy.role` = 'ablation'")) == 2


@pytest.mark.slow
def test_diverged_trials_are_pruned_crashed_ones_fail_and_the_study_goes_on(tmp_path, monkeypatch):
    """An SGD learning rate of 1e30 turns the losses NaN: that trial is PRUNED (TPE learns from it) and counted; a
    trial process killed by SIGSEGV dies: FAIL with its reason. Their MLflow runs end FAILED with the reason, and the
    next trial completes."""
    import multiprocessing

    from ganstudy import sweep
    from ganstudy.tracking import use_experiment

    real_run = sweep.run_isolated

    def segfault_the_second(overrides, on_eval, on_start, parent, tags, label):
        def start_then_crash(run_id):
            on_start(run_id)
            if tags["ganstudy.trial"] == 1:
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGSEGV)
        return real_run(overrides, on_eval, start_then_crash, parent, tags)

    monkeypatch.setattr(sweep, "run_isolated", segfault_the_second)
    args = sweep_args(tmp_path)[1:] + ["space={optimizer: {choices: [sgd, adam]}, "
                                                  "optimizer.lr_g: {choices: [1.0e+30, 1.0e-4]}}", "enqueue=[]"]
    spec = sweep_spec.load("tiny", args)
    use_experiment(compose(list(spec.base) + ["run_dir=x"]).tracking)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for optimizer, lr in (("sgd", 1.0e30), ("adam", 1.0e-4), ("sgd", 1.0e-4)):
        study.enqueue_trial({"optimizer": optimizer, "optimizer.lr_g": lr})
    study.optimize(sweep.objective_fn(spec, None, tmp_path / "trials", "test", sweep.StudyStop()), n_trials=3)
    diverged, crashed, fine = study.trials
    assert [t.state for t in (diverged, crashed)] == [TrialState.PRUNED, TrialState.FAIL]
    assert "diverged at epoch 1, batch" in diverged.user_attrs["diverged"] and sweep.counted_trials(study) == 3
    assert crashed.user_attrs["fail_reason"] == f"the run's process died (exit code {-signal.SIGSEGV})"
    assert fine.state in (TrialState.COMPLETE, TrialState.PRUNED) and math.isfinite(fine.value)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for trial, state, reason in ((diverged, "diverged", "diverged"), (crashed, "failed", "fail_reason")):
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and run.data.tags["ganstudy.trial_state"] == state
        assert run.data.tags["ganstudy.fail_reason"] == trial.user_attrs[reason]
    assert client.get_run(diverged.user_attrs["mlflow_run_id"]).data.tags["ganstudy.diverged"] == "true"


def test_a_trial_enqueued_after_the_study_reached_its_total_still_trains(tmp_path, monkeypatch):
    """The study has its n_trials; a rerun enqueues one more (a new warm start): that trial trains, on every
    core, since no other trial of the study is left to share them with (it crashed, sharing them among none)."""
    from ganstudy import sweep
    from ganstudy.train import RunResult

    asked = []

    def run(overrides, on_eval, on_start, parent, tags, label):
        asked.append(overrides)
        return RunResult("0" * 32, tmp_path, {"fid_best": 1.0})

    monkeypatch.setattr(sweep, "run_isolated", run)
    monkeypatch.setattr(sweep, "_tag_run", lambda trial, state: None)
    study, spec, _ = decided_study(tmp_path, "jobs=2")
    study.enqueue_trial(dict(spec.enqueue[0]))
    study.optimize(sweep.objective_fn(spec, None, tmp_path / "trials", "test", sweep.StudyStop()), n_trials=1)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2 and study.trials[1].value == 1.0
    assert not [o for o in asked[0] if o.startswith("train.threads=")]


def test_a_study_carried_to_another_tracking_store_gets_a_parent_run_there(tmp_path):
    """The study's storage file moved to a machine whose MLflow store lacks its parent run: a new one is made."""
    from ganstudy import report

    spec = sweep_spec.load("tiny")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db", study_name="tiny")
    study.set_user_attr(report.PARENT_ATTR, "0123456789abcdef0123456789abcdef")
    tracking = compose(["experiment=tiny", "run_dir=x", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                        f"tracking.artifact_root={tmp_path}/artifacts"]).tracking
    parent = report.parent_run(study, spec, tracking, "inst1")
    assert parent != "0123456789abcdef0123456789abcdef" and study.user_attrs[report.PARENT_ATTR] == parent
    run = MlflowClient(tracking.uri).get_run(parent)
    assert run.data.tags["ganstudy.role"] == "study" and run.data.tags["ganstudy.study"] == "tiny"
    assert report.parent_run(study, spec, tracking, "inst1") == parent  # found again, not made twice


@pytest.mark.slow
def test_two_studies_of_one_name_in_one_folder_each_train_under_a_parent_of_their_own(tmp_path, capsys):
    """The tiny study (3 trials) by two workers started together on a new SQLite storage, one of them with two
    trials side by side (jobs=2): one parent run, no trial twice. Then a study of the same name on another
    storage (as after removing mlruns/) from the same folder, with the same MLflow store: every trial of both
    trains, each study under a parent run of its own, in folders of its own. In the second, a trial below its
    rung is pruned there (successive halving, the default study's pruner: rung 0 at epoch 1, 1 in 2 promoted,
    and a finished trial left 1.0 at that rung), and its run stops at that epoch."""
    pair = start(tmp_path, sweep_args(tmp_path, "n_trials=3", "jobs=2")), start(tmp_path, sweep_args(tmp_path, "n_trials=3"))
    (out, _), (other_out, _) = (worker.communicate(timeout=600) for worker in pair)
    assert [worker.returncode for worker in pair] == [0, 0], out + other_out
    labelled = sorted({int(n) for n in re.findall(r"^\[trial (\d+)\] ", out, re.M)})
    assert len(labelled) == 2, out  # the jobs=2 worker's two trials, each line labelled
    trials = load(tmp_path).get_trials()
    assert 3 <= len(ended(trials)) <= 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({repr(t.params) for t in trials}) == len(trials)
    first, second = (trials[n] for n in labelled)
    assert second.datetime_start < first.datetime_complete and first.datetime_start < second.datetime_complete

    other = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/other.db")
    other.set_user_attr("ganstudy_instance", "rung")
    other.add_trial(optuna.trial.create_trial(value=1.0, intermediate_values={1: 1.0, 3: 1.0},
                                              system_attrs={"completed_rung_0": 1.0, "completed_rung_1": 1.0}))
    code, out = sweep_main(sweep_args(tmp_path, "n_trials=2", f"storage=sqlite:///{tmp_path}/other.db"), capsys)
    assert code == 0 and "fail" not in out, out
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    pruned = other.get_trials()[1]
    assert pruned.state == TrialState.PRUNED and list(pruned.intermediate_values) == [1]
    run = client.get_run(pruned.user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["ganstudy.trial_state"] == "pruned"
    assert run.data.params["train.epochs"] == "3"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "d_loss")] == [1]
    assert "samples/progress.gif" in {a.path for a in client.list_artifacts(run.info.run_id, "samples")}

    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = [r.info.run_id for r in client.search_runs(experiments, "tags.`ganstudy.role` = 'study'")]
    assert sorted(parents) == sorted([load(tmp_path).user_attrs["mlflow_parent_run_id"],
                                      other.user_attrs["mlflow_parent_run_id"]])
    for study in (load(tmp_path), other):
        for t in study.get_trials()[study is other:]:  # the other's trial 0 was added by hand
            run = client.get_run(t.user_attrs["mlflow_run_id"])
            assert run.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]
    assert sorted(p.parent.name for p in (tmp_path / "trials").glob("tiny-*/trial_000[01]")) == sorted(
        ["tiny-rung", *[f"tiny-{load(tmp_path).user_attrs['ganstudy_instance']}"] * 2])


@pytest.mark.slow
def test_a_reason_every_trial_would_meet_stops_the_study_with_one_line(tmp_path, capsys):
    """Trial 0's folder holds another run (as a study's folder would when something else wrote there): the
    study stops after that one trial, with one line and exit status 2, instead of failing every trial."""
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    study.set_user_attr("ganstudy_instance", "fixed")
    occupied = tmp_path / "trials" / "tiny-fixed" / "trial_0000"
    occupied.mkdir(parents=True)
    (occupied / "mlflow_run_id.txt").write_text("0" * 32)
    code, out = sweep_main(sweep_args(tmp_path), capsys)
    assert code == 2, out
    assert out.strip().splitlines()[-1] == (f"error: the study stopped: run_dir={occupied}: holds run {'0' * 32}; "
                                            f"continue it with resume={occupied}, or choose another folder")
    (trial,) = load(tmp_path).get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"].startswith(f"run_dir={occupied}")
    assert "Traceback" not in out and "nan is not acceptable" not in out


@pytest.mark.slow
def test_a_failed_confirm_seed_is_a_result_and_a_rerun_trains_it_afresh(tmp_path, capsys):
    """The article arm with SGD at lr 1e30 diverges: the table still comes, with that seed listed as failed,
    its run FAILED with its reason, and exit status 1; a rerun trains that seed again in a new folder."""
    decided_study(tmp_path)
    args = sweep_args(tmp_path, "n_trials=1", "enqueue=[]", "confirm=true", "seeds=1", "baseline=[optimizer=sgd,lr=1e30]")
    code, out = sweep_main(args, capsys)
    assert code == 1, out
    assert re.search(r"^article .* 0 .*seed 1$", out, re.M), out  # no seed counted, seed 1 failed
    assert re.search(r"^failed: article seed 1: run \w+ diverged at epoch 1", out, re.M)
    assert "best vs tiny: ratio" in out and "best vs article: no ratio" in out and "Traceback" not in out
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent_id = load(tmp_path).user_attrs["mlflow_parent_run_id"]

    def article_runs():
        return [r for r in confirm_runs(client, parent_id) if r.data.tags["ganstudy.which"] == "article"
                and r.data.params["optimizer.name"] == "sgd"]

    (failed,) = article_runs()
    assert failed.info.status == "FAILED" and "diverged" in failed.data.tags["ganstudy.fail_reason"]
    from ganstudy.confirm import confirm

    results = confirm(load(tmp_path), sweep_spec.load("tiny", args[1:]), parent_id)  # the rerun
    assert list(results["equal_epochs"]["article"]["failed"]) == [1]
    folders = sorted(Path(r.data.tags["ganstudy.run_dir"]).name for r in article_runs())
    assert folders == ["confirm_article_seed1", "confirm_article_seed1_attempt2"]


@pytest.mark.slow
def test_a_config_error_in_confirm_is_one_line(tmp_path, capsys, monkeypatch):
    """A reason every confirm run would meet (a ConfigError from confirm) ends the command as bad input does:
    one line, exit status 2, no traceback."""
    from ganstudy import confirm

    def refuse(*_):
        raise ConfigError("train.threads=9: TensorFlow already runs in this process with 1")

    monkeypatch.setattr(confirm, "confirm", refuse)
    decided_study(tmp_path)
    code, out = sweep_main(sweep_args(tmp_path, "n_trials=1", "enqueue=[]", "confirm=true"), capsys)
    assert code == 2 and out.strip().splitlines()[-1] == "error: train.threads=9: TensorFlow already runs in this " \
                                                         "process with 1", out
    assert "Traceback" not in out


@pytest.mark.slow
def test_confirm_at_the_same_wall_clock_time(tmp_path, capsys):
    """budgets=[time]: every arm trains until 2 s are spent (the epoch cap out of reach), and the table says
    what each spent: epochs, updates, images, seconds."""
    from ganstudy.confirm import NO_EPOCH_LIMIT, confirm

    study, spec, parent_id = decided_study(tmp_path, "seeds=1", "budgets=[time]", "time_budget=2")
    results = confirm(study, spec, parent_id)
    assert set(results) == {"equal_time", "time_budget"} and results["time_budget"] == 2
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for arm, s in results["equal_time"].items():
        assert s["budget"]["train_seconds"] >= 2 and s["budget"]["updates"] == s["budget"]["epochs"] * {
            "article": 4, "best": 8, "tiny": 8}[arm]  # 256 images at batch 64 (the article's here) or 32
    runs = [r for r in confirm_runs(client, parent_id) if r.data.tags.get("ganstudy.budget") == "time"]
    assert len(runs) == 3 and {r.data.params["train.epochs"] for r in runs} == {str(NO_EPOCH_LIMIT)}
    assert all(r.info.status == "FINISHED" and r.data.metrics["train_seconds"] >= 2 for r in runs)
    out = capsys.readouterr().out
    assert "same wall-clock time (2 s):" in out and re.search(r"epochs\s+updates\s+images\s+seconds", out)


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_trials_asked_at_the_same_moment_get_settings_of_their_own(tmp_path, sampler):
    """Two jobs (or workers) ask together: each trial's sampler is seeded by its own number, so they differ, and
    trial n proposes what a fresh sampler seeded with seed + n proposes (a rerun replays the study)."""
    from ganstudy.sweep import make_sampler

    spec = sweep_spec.load("tiny", [f"sampler.name={sampler}", "enqueue=[]"])
    storage = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="tiny", storage=storage)
    jobs = [optuna.load_study(study_name="tiny", storage=storage, sampler=make_sampler(spec)) for _ in range(2)]
    asked = [job.ask() for job in jobs]  # neither sees the other's trial running yet when it samples
    params = [sweep_spec.suggest(t, spec.space) for t in asked]
    assert [t.number for t in asked] == [0, 1] and params[0] != params[1]
    for trial, got in zip(asked, params):
        reference = optuna.create_study(sampler=(optuna.samplers.RandomSampler if sampler == "random" else
                                                 optuna.samplers.TPESampler)(seed=spec.sampler.seed + trial.number))
        assert sweep_spec.suggest(reference.ask(), spec.space) == got


@pytest.mark.slow
def test_the_best_trial_written_as_an_experiment_trains_with_its_values(tiny_study):
    """`python -m ganstudy.best_experiment` writes the study's best trial as a Hydra experiment, which
    `python -m ganstudy.train --config-dir conf experiment=NAME` composes to the confirm's best arm: the trial's
    values on the study's base (experiment=tiny's data and model size, base's budget), all but where the run is
    kept."""
    from conftest import run_cli

    study = load(tiny_study)
    out = tiny_study / "conf" / "experiment" / "tiny_best.yaml"
    done = run_cli("best_experiment", *sweep_args(tiny_study), f"out={out}", cwd=tiny_study)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote trial {study.best_trial.number} (fid_best {study.best_value:.4g}) to {out}"
    job = run_cli("train", "--config-dir", str(tiny_study / "conf"), "experiment=tiny_best", "--cfg", "job",
                  cwd=tiny_study)
    assert job.returncode == 0, job.stderr
    cfg = OmegaConf.create(job.stdout)
    for key, value in study.best_params.items():
        assert OmegaConf.select(cfg, "optimizer.name" if key == "optimizer" else key) == value, key
    assert cfg.train.epochs == 2  # the study's base budget (its trials trained 3)
    from ganstudy.confirm import best_arm

    arm = compose(best_arm(study.best_params, sweep_spec.load("tiny", sweep_args(tiny_study)[1:])) + ["run_dir=unused"])
    for kept in (cfg, arm):
        OmegaConf.set_struct(kept, False)
        del kept.run_dir, kept.resume, kept.tracking, kept.train.progress, kept.train.checkpoints
    assert OmegaConf.to_container(cfg, resolve=True) == OmegaConf.to_container(arm, resolve=True)
    missing = run_cli("best_experiment", *sweep_args(tiny_study), "study_name=nope", cwd=tiny_study)
    assert missing.returncode == 2 and missing.stderr.strip().endswith(
        f"error: study_name=nope: no such study in sqlite:///{tiny_study}/optuna.db")


def test_best_experiment_replaces_no_shipped_experiment_and_writes_one_hydra_can_find(tmp_path, capsys, monkeypatch):
    """The default file is conf/experiment/STUDY_NAME.yaml under the folder the command runs in. In the folder of
    the package's own conf/ (a clone), a shipped experiment is replaced only when out= names it; elsewhere, a file
    named like a shipped experiment is refused, since Hydra would take the shipped one instead of it."""
    from conftest import call_main
    from ganstudy import best_experiment

    clone, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    shipped = clone / "conf" / "experiment" / "tiny.yaml"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("shipped")
    elsewhere.mkdir()
    monkeypatch.setattr(best_experiment, "package_conf", lambda: clone / "conf")
    decided_study(tmp_path)
    args = ["sweep=tiny", f"storage=sqlite:///{tmp_path}/optuna.db"]

    def run(folder, *extra):
        monkeypatch.chdir(folder)
        code, out, err = call_main(best_experiment.main, [*args, *extra], capsys)
        return code, out or err

    assert run(clone) == (2, f"error: out=conf/experiment/tiny.yaml: would replace the shipped experiment=tiny of "
                             f"{clone}/conf; give out=FILE to replace it\n")
    assert run(elsewhere) == (2, "error: out=conf/experiment/tiny.yaml: experiment=tiny is one of ganstudy's own, "
                                 "which Hydra takes before one in --config-dir; give out=conf/experiment/NAME.yaml "
                                 "with another name\n")
    assert shipped.read_text() == "shipped" and not (elsewhere / "conf").exists()
    wrote = "wrote trial 0 (fid_best 300) to conf/experiment/{}.yaml\n"
    assert run(elsewhere, "out=conf/experiment/mine.yaml") == (0, wrote.format("mine"))
    optuna.copy_study(from_study_name="tiny", from_storage=args[1][8:], to_storage=args[1][8:], to_study_name="other")
    assert run(elsewhere, "study_name=other") == (0, wrote.format("other"))  # the default: the study's name
    assert run(clone, "out=conf/experiment/tiny.yaml") == (0, wrote.format("tiny"))  # named: replaced
    assert shipped.read_text().startswith("# @package _global_")


def test_opponents_are_confirm_arms_of_their_own():
    """`opponents` adds arms with their whole overrides, after best, the base and the article's settings."""
    from optuna.distributions import FloatDistribution

    from ganstudy.confirm import arms

    spec = sweep_spec.load("tiny", ["opponents={quick: [experiment=quick, eval.detector=false]}"])
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params={"model.dropout": 0.2}, value=1.0,
                                              distributions={"model.dropout": FloatDistribution(0, 0.5)}))
    got = arms(study, spec)
    assert list(got) == ["best", "tiny", "article", "quick"]
    assert got["quick"] == ["experiment=quick", "eval.detector=false"]
    assert got["best"][-2:] == ["model.dropout=0.2", "eval.detector=true"]


def test_a_study_continues_only_under_what_it_was_made_for(tmp_path, capsys):
    """Recorded when the study is made: its objective, direction and trial settings. `objective=mnist_score` (the
    other direction), `objective=kid` (another scale) or other trial overrides on it stop with one line before any
    trial; a study made before identities were recorded takes the current one, unless its direction differs."""
    from ganstudy.storage import IDENTITY_ATTR, check_identity, identity

    url = f"sqlite:///{tmp_path}/optuna.db"
    spec = sweep_spec.load("tiny", [f"storage={url}"])
    study = optuna.create_study(study_name="tiny", storage=url, direction="minimize")
    check_identity(study, spec)
    assert optuna.load_study(study_name="tiny", storage=url).user_attrs[IDENTITY_ATTR] == identity(spec)
    check_identity(study, sweep_spec.load("tiny", [f"storage={url}", "n_trials=9", "jobs=2"]))  # more trials: fine
    fingerprint = identity(spec)["trial_settings"]
    for override, message in [
        ("objective=kid", "objective=fid_best, not objective=kid"),
        ("objective=mnist_score", "objective=fid_best, direction=minimize, not objective=mnist_score, direction=maximize"),
        ("trial_overrides=[train.epochs=5]", f"trial_settings={fingerprint}, not trial_settings="),
    ]:
        with pytest.raises(ConfigError) as err:
            check_identity(study, sweep_spec.load("tiny", [f"storage={url}", override]))
        assert str(err.value).startswith(f"study tiny was made with {message}"), str(err.value)
        assert str(err.value).endswith("start a new study with study_name=NAME (or another storage)")
    code, printed = sweep_main(sweep_args(tmp_path, "objective=mnist_score"), capsys)
    assert code == 2 and "error: study tiny was made with objective=fid_best" in printed
    assert optuna.load_study(study_name="tiny", storage=url).trials == []
    old = optuna.create_study(storage=f"sqlite:///{tmp_path}/old.db", direction="minimize", study_name="tiny")
    with pytest.raises(ConfigError, match="made with direction=minimize, not direction=maximize"):
        check_identity(old, sweep_spec.load("tiny", ["objective=mnist_score"]))
    check_identity(old, spec)  # the same direction: the current identity is recorded
    assert old.user_attrs[IDENTITY_ATTR] == identity(spec)


def test_distribution_is_what_suggest_asks_for():
    space = OmegaConf.create({"a": {"choices": [16, 32]}, "b": {"low": 1, "high": 3}, "c": {"low": 1, "high": 9, "step": 2},
                              "d": {"low": 1e-4, "high": 1e-2, "log": True}, "e": {"low": 0.0, "high": 0.5, "step": 0.1}})
    trial = optuna.create_study().ask()
    sweep_spec.suggest(trial, space)
    assert trial.distributions == {key: sweep_spec.distribution(param) for key, param in space.items()}


def searched_study(tmp_path):
    """A tiny study with one complete trial that searched the optimizer among three choices."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from ganstudy.storage import new_instance

    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    new_instance(study)
    study.add_trial(optuna.trial.create_trial(
        params={"optimizer": "adam", "model.dropout": 0.2}, value=300.0,
        distributions={"optimizer": CategoricalDistribution(["adam", "rmsprop", "sgd"]),
                       "model.dropout": FloatDistribution(0.0, 0.5)}))
    return study


def test_a_continued_study_keeps_each_parameters_kind_and_choices(tmp_path):
    """A range may move and a parameter may be added; other choices, another kind or another log scale for a
    parameter the trials have is refused with one line (Optuna's storage would fail every trial)."""
    study = searched_study(tmp_path)
    three = "space.optimizer.choices=[adam,rmsprop,sgd]"
    sweep_spec.check_space(study, sweep_spec.load("tiny", [three, "space[model.dropout].high=0.4"]))
    for key, override, was, now in [
        ("optimizer", "space.optimizer.choices=[adam,rmsprop]", "choices ['adam', 'rmsprop', 'sgd']",
         "choices ['adam', 'rmsprop']"),
        ("model.dropout", "space[model.dropout]={low: 0.01, high: 0.5, log: true}", "a float range [0.0, 0.5]",
         "a float range [0.01, 0.5] on a log scale"),
    ]:
        with pytest.raises(ConfigError) as err:
            sweep_spec.check_space(study, sweep_spec.load("tiny", [three, override]))
        assert str(err.value) == (f"space.{key}: study tiny searched it as {was}, not {now}; a continued study keeps each "
                                  "parameter's kind, log scale and choices (a range may change): keep them, or start "
                                  "a new study with study_name=NAME")


def test_a_changed_space_stops_the_study_with_one_line_not_a_loop_of_failed_trials(tmp_path, capsys, monkeypatch):
    """The sweep refuses the changed space before any trial; and a trial that meets such a refusal anyway (another
    worker's space) stops the study after that trial, instead of failing one trial after another without end."""
    from ganstudy import report

    searched_study(tmp_path)
    code, out = sweep_main(sweep_args(tmp_path, "n_trials=3", "enqueue=[]"), capsys)
    assert code == 2 and "error: space.optimizer: study tiny searched it as choices ['adam', 'rmsprop', 'sgd']" in out
    assert len(load(tmp_path).get_trials()) == 1
    monkeypatch.setattr(sweep_spec, "check_space", lambda study, spec: None)
    monkeypatch.setattr(report, "_draw_plots", lambda *args, **kwargs: None)  # no plot process: no TensorFlow
    code, out = sweep_main(sweep_args(tmp_path, "n_trials=3", "enqueue=[]"), capsys)
    assert code == 2 and ("error: the study stopped: trial 1: CategoricalDistribution does not support dynamic "
                          "value space.") in out
    assert [t.state for t in load(tmp_path).get_trials()] == [TrialState.COMPLETE, TrialState.FAIL]


@pytest.mark.slow
def test_bookkeeping_errors_are_warnings_not_stopped_trials(tmp_path, capsys, monkeypatch):
    """The parent run's update fails after every trial (a tracking server that blinks): two trials side by side
    both end as trials do, the study finishes, and each failure is one warning line."""
    from ganstudy import report

    def blink(*args, **kwargs):
        raise ConnectionError("tracking server unreachable")

    monkeypatch.setattr(report, "update_parent", blink)
    code, printed = sweep_main(sweep_args(tmp_path, "n_trials=2", "jobs=2", "enqueue=[]"), capsys)
    assert code == 0, printed
    states = [t.state for t in load(tmp_path).trials]
    assert len(states) == 2 and set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    warnings = [line for line in printed.splitlines() if line.startswith("warning: the study's MLflow run")]
    assert len(warnings) == 3 and "ConnectionError: tracking server unreachable" in warnings[0]  # 2 trials + final


def test_an_interrupted_warm_start_is_queued_again(tmp_path):
    """Ctrl-C ended the warm-start trial (FAIL without a reason of its own): the next start queues it again, once;
    one that failed for a reason of its own is a result and stays done."""
    from ganstudy.storage import FAIL_ATTR
    from ganstudy.sweep import enqueue_warm_start

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db")
    warm = {"optimizer": "adam", "model.dropout": 0.3}

    def waiting():
        return sum(t.state == TrialState.WAITING for t in study.get_trials())

    enqueue_warm_start(study, warm)
    enqueue_warm_start(study, warm)
    assert waiting() == 1
    trial = study.ask()  # the warm start starts, then Ctrl-C
    assert trial.params == {} and trial.suggest_float("model.dropout", 0, 0.5) == 0.3
    trial.suggest_categorical("optimizer", ["adam", "rmsprop"])
    study.tell(trial, state=TrialState.FAIL)
    enqueue_warm_start(study, warm)
    enqueue_warm_start(study, warm)
    assert waiting() == 1
    again = study.ask()
    again.suggest_float("model.dropout", 0, 0.5), again.suggest_categorical("optimizer", ["adam", "rmsprop"])
    again.set_user_attr(FAIL_ATTR, "a crash of its own")
    study.tell(again, state=TrialState.FAIL)
    enqueue_warm_start(study, warm)
    assert waiting() == 0


def test_a_float_setting_with_an_integer_range_is_a_float_search():
    """model.width is a float: {low: 1, high: 2} searches [1.0, 2.0], not the integers {1, 2}."""
    spec = sweep_spec.load("tiny", ["enqueue=[]", "space={model.width: {low: 1, high: 2}}"])
    study = optuna.create_study()
    trial = study.ask()
    sweep_spec.suggest(trial, spec.space)
    assert isinstance(trial.distributions["model.width"], optuna.distributions.FloatDistribution)


def test_the_verdict_follows_the_sign_of_the_difference(capsys):
    """A minimized objective that is negative (-2 against -1): the ratio of means is 2, yet best is better."""
    from omegaconf import OmegaConf

    from ganstudy.comparison_view import print_table
    from ganstudy.stats import summarize

    summary = summarize({"best": {1: ({"objective": -2.1}, None), 2: ({"objective": -1.9}, None)},
                         "base": {1: ({"objective": -1.1}, None), 2: ({"objective": -0.9}, None)}})
    print_table(summary, OmegaConf.create({"objective": "score", "direction": "minimize"}))
    out = capsys.readouterr().out
    assert "best vs base: ratio 2.000 (better for a minimized objective, no interval, n = 2 (a mean <= 0" in out


def test_the_table_and_the_verdicts_give_each_interval_with_its_n(capsys):
    """Each interval beside the seeds it rests on: the reference's n, and this arm's where it differs."""
    from omegaconf import OmegaConf

    from ganstudy.comparison_view import print_table
    from ganstudy.stats import ratio_interval, summarize

    best, quick, article = [29.6, 32.1, 29.6], [66.6, 62.7, 61.0], [455.2, 426.9]
    summary = summarize({arm: {seed: ({"objective": v}, None) for seed, v in enumerate(values, 1)}
                         for arm, values in (("best", best), ("quick", quick), ("article", article), ("one", [300.0]))})
    print_table(summary, OmegaConf.create({"objective": "fid_best", "direction": "minimize"}))
    out = capsys.readouterr().out
    low, high = ratio_interval(best, quick)
    assert "95% t-interval" in out.splitlines()[2]  # the header
    assert f"{low:.3f}-{high:.3f}, n = 3 " in out
    assert f"best vs quick: ratio 0.480 (better for a minimized objective, 95% t-interval {low:.3f}-{high:.3f}, n = 3," in out
    low, high = ratio_interval(best, article)
    assert f"95% t-interval {low:.3f}-{high:.3f}, n = 3 and 2," in out
    assert "best vs one: ratio 0.101 (better for a minimized objective, no interval, n = 3 and 1)" in out
