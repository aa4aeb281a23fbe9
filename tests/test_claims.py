"""Confirm workers on several machines share a study's storage: each confirm run is trained once, a worker
waits for the run another holds and takes its result, and a dead worker's run is taken over."""
import multiprocessing
import threading
import time

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ganstudy import arm_runs
from ganstudy.arm_runs import ArmSetting
from ganstudy.claims import HOST_ATTR, KEY_ATTR, PID_ATTR, RunClaims, machine
from ganstudy.tags import Tag


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/optuna.db"


def _race(claims_of, key: str, workers: int = 4) -> tuple[list, list, list]:
    """`workers` threads start together to hold KEY (each with the RunClaims `claims_of()` gives it); the one
    that holds it trains for a second. (the workers that trained, the runs the others took, errors)"""
    trained, got, errors = [], [], []
    start = threading.Barrier(workers)

    def worker(n):
        try:
            claims = claims_of()
            start.wait()
            with claims.hold(key) as claim:
                if claim.done_by is None:
                    trained.append(n)
                    time.sleep(1.0)
                    claim.run_id = f"run-of-{n}"
                else:
                    got.append(claim.done_by)
        except Exception as err:  # noqa: BLE001 - what the tests look for
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return trained, got, errors


def _ended_pid() -> int:
    """The id of a process of this machine that has ended."""
    ended = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    ended.start()
    ended.join()
    return ended.pid


def test_of_workers_that_claim_one_run_together_one_trains_and_the_others_take_its_run(url):
    RunClaims(url, 2, "s-runs")  # the claims study exists before the race, as confirm's first worker makes it
    # each its own storage connection, as on its own machine
    trained, got, errors = _race(lambda: RunClaims(url, 2, "s-runs"), "key/best/seed1")
    assert not errors and len(trained) == 1 and got == [f"run-of-{trained[0]}"] * 3


def test_a_run_whose_training_failed_is_claimed_again(url):
    claims = RunClaims(url, 2, "s-runs")
    with pytest.raises(RuntimeError):
        with claims.hold("k") as claim:
            raise RuntimeError("the run failed")
    with claims.hold("k") as claim:
        assert claim.done_by is None  # this worker trains it afresh
        claim.run_id = "second"
    with claims.hold("k") as claim:
        assert claim.done_by == "second"


def _claim_from(url: str, host: str, pid: int) -> None:
    storage = RunClaims(url, 1, "s-runs").storage
    from ganstudy.claims import _claim

    template = _claim("k")
    template.user_attrs.update({HOST_ATTR: host, PID_ATTR: pid})
    storage.record_heartbeat(storage.create_new_trial(storage.get_study_id_from_name("s-runs"), template))


def test_the_claim_of_a_process_of_this_machine_that_ended_is_taken_over_at_once(url):
    _claim_from(url, machine(), _ended_pid())
    started = time.monotonic()
    with RunClaims(url, 60, "s-runs").hold("k") as claim:
        assert claim.done_by is None
    assert time.monotonic() - started < 5  # not 2 heartbeats of 60 s


def test_the_claim_of_another_machine_that_stopped_beating_is_taken_over_after_two_heartbeats(url, capsys):
    _claim_from(url, "elsewhere", 1)
    claims = RunClaims(url, 1, "s-runs")
    started = time.monotonic()
    with claims.hold("k") as claim:
        assert claim.done_by is None
    assert time.monotonic() - started >= 1.5
    assert "another worker is training k" in capsys.readouterr().out
    states = sorted(t.state.name for t in claims.study.get_trials() if t.user_attrs[KEY_ATTR] == "k")
    assert states == ["FAIL", "FAIL"]  # the stale claim, and this one (no run_id was set)


def test_a_confirm_run_held_on_another_machine_is_waited_for_and_its_result_taken(tmp_path, url, monkeypatch):
    """Two machines: the same study storage and tracking store, different run folders (no shared disk)."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    experiment = client.create_experiment("claim", (tmp_path / "artifacts").as_uri())
    trained = []
    monkeypatch.setattr(arm_runs, "_train", lambda *args: trained.append(args) or ({"objective": -1.0}, None))
    spec = OmegaConf.create({"jobs": 1})
    tags = {Tag.BUDGET: "epochs", Tag.ROLE: "confirm"}
    key = arm_runs.fingerprint([])
    holding, release = threading.Event(), threading.Event()

    def first_machine():
        with RunClaims(url, 2, "s-runs").hold(f"{key}/best/seed1") as claim:
            holding.set()
            release.wait(30)
            run = client.create_run(experiment).info.run_id
            client.log_metric(run, "objective", 42.0)
            client.set_terminated(run, "FINISHED")
            claim.run_id = run

    first = threading.Thread(target=first_machine)
    first.start()
    holding.wait(30)
    second_machine = ArmSetting(client, tmp_path / "machine2" / "confirm", RunClaims(url, 2, "s-runs"), tags)
    result = {}
    second = threading.Thread(target=lambda: result.update(out=arm_runs._train_arm(
        spec, second_machine, "parent", "best", [], 1)))
    second.start()
    time.sleep(1.5)
    assert second.is_alive() and not result  # waiting on the claim, not training
    release.set()
    first.join(30)
    second.join(30)
    assert result["out"][0]["objective"] == 42.0 and result["out"][1] is None
    assert not trained
    assert optuna.load_study(study_name="s-runs", storage=url).trials[0].state.name == "COMPLETE"


def test_a_wait_for_another_workers_run_ends_at_ctrl_c(url):
    """Ctrl-C (side_by_side sets its `interrupted` event) ends a worker that waits for a claim, at once."""
    _claim_from(url, "elsewhere", 1)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with RunClaims(url, 60, "s-runs").hold("k", stop=stop):
            pass
    assert time.monotonic() - started < 5


def test_threads_that_share_the_claims_and_meet_one_dead_claim_train_the_run_once(url):
    """jobs > 1: the threads of one confirm share its RunClaims; a claim a killed process left is failed once
    (the others find it failed already) and one thread trains the run."""
    _claim_from(url, machine(), _ended_pid())
    claims = RunClaims(url, 2, "s-runs")
    trained, got, errors = _race(lambda: claims, "k")
    assert not errors and len(trained) == 1 and len(got) == 3


def test_a_claim_made_a_moment_earlier_by_another_worker_holds_and_this_one_waits(url, monkeypatch):
    """Another worker's claim is made between this worker's look and its own claim: the earlier one holds."""
    claims = RunClaims(url, 60, "s-runs")
    made = claims.storage.create_new_trial

    def after_another(study_id, template):
        _claim_from(url, "elsewhere", 1)  # alive as far as this worker can tell: its heartbeat is fresh
        monkeypatch.setattr(claims.storage, "create_new_trial", made)
        return made(study_id, template)

    monkeypatch.setattr(claims.storage, "create_new_trial", after_another)
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    with pytest.raises(KeyboardInterrupt):  # waiting for the other, until Ctrl-C
        with claims.hold("k", stop=stop):
            pytest.fail("this worker's later claim must not hold the run")
    states = [t.state.name for t in claims.study.get_trials() if t.user_attrs[KEY_ATTR] == "k"]
    assert states == ["RUNNING", "FAIL"]


def test_a_worker_that_waited_takes_the_holders_failure_as_the_result_and_the_next_confirm_trains_it(url):
    holding, release, result = threading.Event(), threading.Event(), {}

    def holder():
        with RunClaims(url, 2, "s-runs").hold("k") as claim:
            holding.set()
            release.wait(30)
            claim.failed = "fid_best is nan"

    first = threading.Thread(target=holder)
    first.start()
    holding.wait(30)
    waiter = threading.Thread(target=lambda: result.update(claim=RunClaims(url, 2, "s-runs").hold("k").__enter__()))
    waiter.start()
    time.sleep(1.0)
    release.set()
    first.join(30)
    waiter.join(30)
    assert result["claim"].failed == "fid_best is nan" and result["claim"].done_by is None
    with RunClaims(url, 2, "s-runs").hold("k") as claim:  # a later confirm: trains it afresh
        assert claim.failed is None and claim.done_by is None
