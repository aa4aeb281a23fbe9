"""Crash safety: a training process killed mid-epoch resumes into the same MLflow run, as if never killed."""
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import count_runs, run_cli

pytestmark = pytest.mark.slow  # trains models or starts interpreters

STEPS = 32  # experiment=tiny's batch 32 on data.limit=1024
ARGS = ["experiment=tiny", "data.limit=1024", "train.epochs=4", "train.checkpoint_every=2", "eval.every=2",
        "eval.detector=false", "train.log_every_steps=2", "train.deterministic=true", "train.progress=line",
        "train.ema_decay=0.9",  # the weight average of G resumes exactly too, and so do the levers with a state:
        "loss=wgan_gp", "model.d_norm=spectral", "train.r1_gamma=0.1", "train.augment=diffaugment", "train.d_steps=2",
        "optimizer.schedule=cosine"]  # spectral norm's u, the augmentation's and penalty's RNG, D's step count


def last_step(db: Path, key: str) -> int:
    """The last step a metric reached in an MLflow SQLite store (read directly: polled every few ms)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as con:
        try:
            return con.execute("SELECT max(step) FROM metrics WHERE key = ?", (key,)).fetchone()[0] or 0
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run but MLflow's system/* (the machine's CPU and memory, not the run's)."""
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
            for k in client.get_run(run_id).data.metrics if not k.startswith("system/")}


def test_a_run_killed_mid_epoch_resumes_into_the_same_run_exactly_as_if_never_killed(tmp_path):
    """SIGKILL in the middle of epoch 3 (checkpoints at 2 and 4); the resume replays epoch 3 from checkpoint 2.
    Against the same run never killed: every metric, step/* included, exactly once per step with the same
    values (the replayed epoch repeats the killed one: noise and Dropout RNG restored), and one image per epoch."""
    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ganstudy.train", *ARGS, f"tracking.uri=sqlite:///{name}.db",
                                 f"tracking.artifact_root={name}_artifacts", f"run_dir={name}"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    reference, killed = start("reference"), start("killed")
    deadline = time.time() + 300
    while last_step(tmp_path / "killed.db", "step/d_loss") < 2 * STEPS + 6 and killed.poll() is None:
        assert time.time() < deadline, "the run did not reach epoch 3"
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    store = MlflowClient("sqlite:///" + str(tmp_path / "killed.db"))
    run_id = (tmp_path / "killed" / "mlflow_run_id.txt").read_text()
    killed_at = last_step(tmp_path / "killed.db", "step/d_loss")
    assert 2 * STEPS < killed_at < 3 * STEPS, f"killed at step {killed_at}: not in epoch 3"
    assert 'model_checkpoint_path: "ckpt-2"' in (tmp_path / "killed" / "checkpoints" / "checkpoint").read_text()
    # The best generator so far is in the artifact store already: a resume on another machine keeps it.
    assert "checkpoints/generator_best.keras" in {a.path for a in store.list_artifacts(run_id, "checkpoints")}

    done = run_cli("train", *ARGS, "tracking.uri=sqlite:///killed.db", "tracking.artifact_root=killed_artifacts",
                   "resume=killed", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    run = store.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["ganstudy.resumed_from_epoch"] == "2"
    levers = {k: run.data.params[k] for k in ("loss.name", "loss.gp_weight", "model.d_norm", "train.r1_gamma",
                                                "train.augment", "train.d_steps", "optimizer.schedule")}
    assert levers == {"loss.name": "wgan_gp", "loss.gp_weight": "10.0", "model.d_norm": "spectral",
                      "train.r1_gamma": "0.1", "train.augment": "diffaugment", "train.d_steps": "2",
                      "optimizer.schedule": "cosine"}
    assert len(store.search_runs([run.info.experiment_id])) == 1
    ref_client = MlflowClient("sqlite:///" + str(tmp_path / "reference.db"))
    (ref_run,) = ref_client.search_runs([ref_client.get_experiment_by_name("ganstudy").experiment_id])
    expected, got = history(ref_client, ref_run.info.run_id), history(store, run_id)
    assert len(expected["step/d_loss"]) == 4 * STEPS // 2 and set(got) == set(expected)
    for key, points in expected.items():
        assert [s for s, _ in got[key]] == [s for s, _ in points], key  # each step once
        if key != "train_seconds":  # wall time: the one metric no twin repeats
            assert [v for _, v in got[key]] == pytest.approx([v for _, v in points], rel=1e-5, abs=1e-6), key
    images = [a.path for a in store.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in images) == [1, 2, 3, 4]


def test_resume_by_run_id_without_the_run_folder(tiny_overrides, store, tmp_path):
    """Another machine: the run folder is gone, so the checkpoints come from the MLflow artifact store (never
    into a folder that holds another run)."""
    import shutil

    from ganstudy.config import ConfigError, compose
    from ganstudy.train import train

    train(compose(tiny_overrides + ["train.epochs=2"]))
    run_id = (tmp_path / "run" / "mlflow_run_id.txt").read_text()
    shutil.rmtree(tmp_path / "run")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mlflow_run_id.txt").write_text("f" * 32)
    with pytest.raises(ConfigError) as refused:
        train(compose(tiny_overrides + ["train.epochs=3", f"resume={run_id}", f"run_dir={occupied}"]))
    assert str(refused.value).startswith(f"run_dir={occupied}: holds run {'f' * 32}; ")
    assert not (occupied / "checkpoints").exists()
    train(compose(tiny_overrides + ["train.epochs=3", f"resume={run_id}", f"run_dir={tmp_path}/elsewhere"]))
    client = MlflowClient(store)
    assert sorted(m.step for m in client.get_metric_history(run_id, "d_loss")) == [1, 2, 3]
    run = client.get_run(run_id)
    assert run.data.tags["ganstudy.resumed_from_epoch"] == "2"
    assert (run.data.params["train.epochs"], run.data.tags["ganstudy.epochs"]) == ("2", "3")  # trained to 3 now
    assert (tmp_path / "elsewhere" / "checkpoints" / "ckpt-3.index").exists()
    assert (tmp_path / "elsewhere" / "mlflow_run_id.txt").read_text() == run_id
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


def test_a_folder_another_process_trains_in_is_refused(tiny_overrides, store, tmp_path):
    """Two runs into one folder at once (Hydra's default run_dir is the second its command started): the later
    stops with one line before its MLflow run exists."""
    from ganstudy.config import ConfigError, compose
    from ganstudy.resume import claim_folder
    from ganstudy.train import train

    with claim_folder(tmp_path / "run", None):  # what the first run's process holds while it trains
        with pytest.raises(ConfigError) as refused:
            train(compose(tiny_overrides))
    assert str(refused.value) == f"run_dir={tmp_path / 'run'}: another process is training in it; choose another folder"
    assert count_runs(store) == 0


def test_a_finished_run_without_its_checkpoint_is_not_resumed(tiny_overrides, store, tmp_path):
    """train.checkpoints=latest deletes the checkpoint when the run ends (a sweep's trials): `resume=` on the
    finished run refuses with one line, by folder (the command) and by id (in this process), and the run stays
    as it was."""
    from ganstudy.config import ConfigError, compose
    from ganstudy.train import train

    result = train(compose(tiny_overrides + ["train.epochs=2", "train.checkpoints=latest"]))
    client = MlflowClient(store)
    before = history(client, result.run_id)
    why = (f"run {result.run_id} logged 2 epochs but has no checkpoint to continue from (it ran with "
           "train.checkpoints=latest, whose checkpoint goes when the run ends; train.checkpoints=all keeps them); "
           "train a new run instead")
    again = ["train.epochs=3", "train.checkpoints=latest", f"run_dir={tmp_path}/again"]
    done = run_cli("train", *tiny_overrides, *again, "resume=run", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == f"error: resume=run: {why}"
    with pytest.raises(ConfigError) as refused:
        train(compose(tiny_overrides + again + [f"resume={result.run_id}"]))
    assert str(refused.value) == f"resume={result.run_id}: {why}"
    assert history(client, result.run_id) == before and client.get_run(result.run_id).info.status == "FINISHED"


def test_a_run_stopped_before_its_first_checkpoint_is_refused_here_and_elsewhere(tiny_overrides, store, tmp_path):
    """Ctrl-C at epoch 3 of a run that checkpoints every 100 epochs (so far that a slow machine cannot get there
    before the signal lands) and evaluates every 2 (so its best generator is already under checkpoints/ in the
    artifact store): resume by folder, and by id with the folder gone (another machine), refuse with the real
    reason instead of training from epoch 0 into the same run."""
    import shutil

    from ganstudy.config import ConfigError, compose
    from ganstudy.train import train

    args = [*tiny_overrides, "data.limit=1024", "train.epochs=100", "train.checkpoint_every=100",
            "eval.every=2", "train.progress=line"]
    proc = subprocess.Popen([sys.executable, "-m", "ganstudy.train", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    db = Path(store.removeprefix("sqlite:///"))
    deadline = time.time() + 300
    while last_step(db, "d_loss") < 3 and proc.poll() is None:
        assert time.time() < deadline, "the run did not reach epoch 3"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    run_id = (tmp_path / "run" / "mlflow_run_id.txt").read_text()
    client = MlflowClient(store)
    epochs = max(m.step for m in client.get_metric_history(run_id, "d_loss"))
    assert 3 <= epochs < 100 and "checkpoints/generator_best.keras" in {
        a.path for a in client.list_artifacts(run_id, "checkpoints")}
    before = history(client, run_id)
    stem = f"run {run_id} logged {epochs} epochs but has no checkpoint to continue from (it stopped before its first "
    with pytest.raises(ConfigError) as here:
        train(compose(args + [f"resume={tmp_path}/run"]))
    assert str(here.value) == (f"resume={tmp_path}/run: {stem}checkpoint (train.checkpoint_every=100), or none reached its "
                               "folder); train a new run instead")
    shutil.rmtree(tmp_path / "run")
    with pytest.raises(ConfigError) as elsewhere:
        train(compose(args + [f"resume={run_id}", f"run_dir={tmp_path}/elsewhere"]))
    assert str(elsewhere.value) == (f"resume={run_id}: {stem}checkpoint (train.checkpoint_every=100), or none reached "
                                    "the artifact store (its folder is not here)); train a new run instead")
    assert history(client, run_id) == before and not (tmp_path / "elsewhere" / "checkpoints").exists()


def test_a_run_folder_from_another_store_is_refused_with_one_line(tiny_overrides, tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "mlflow_run_id.txt").write_text("f" * 32)
    done = run_cli("train", *tiny_overrides, f"resume={folder}", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: resume={folder}: its run {'f' * 32} is not in the tracking store "
                                   f"sqlite:///{tmp_path}/mlflow.db (set tracking.uri or MLFLOW_TRACKING_URI to the "
                                   "store it was logged to)")
