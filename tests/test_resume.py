"""Crash safety: a training process killed after its first checkpoint resumes into the same MLflow run."""
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli

pytestmark = pytest.mark.slow  # trains models or starts interpreters

EPOCHS = 12


def test_killed_run_resumes_at_its_last_checkpoint(tmp_path, cache_dir):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["experiment=tiny", f"eval.cache_dir={cache_dir}", "eval.every=3", "eval.detector=false",
            f"train.epochs={EPOCHS}", "train.checkpoint_every=3", "data.limit=1024",
            f"tracking.uri={store}", f"tracking.artifact_root={tmp_path}/artifacts", "hydra.run.dir=run",
            "train.progress=line"]
    proc = subprocess.Popen([sys.executable, "-m", "ganstudy.train", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first_ckpt = tmp_path / "run" / "checkpoints" / "checkpoint"  # written last, once ckpt-3 is complete
    deadline = time.time() + 240
    while not first_ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first_ckpt.exists(), proc.stdout.read()
    run_id = (tmp_path / "run" / "mlflow_run_id.txt").read_text()
    client = MlflowClient(store)
    killed_at = max(m.step for m in client.get_metric_history(run_id, "d_loss"))
    assert 3 <= killed_at < EPOCHS, "the process must die mid-run"

    done = run_cli("train", *args, "resume=run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    latest = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.index"))
    assert f"run {run_id}: epochs " in done.stdout
    resumed_from = int(done.stdout.split(f"run {run_id}: epochs ")[1].split("..")[0]) - 1
    assert resumed_from % 3 == 0 and 3 <= resumed_from <= killed_at, done.stdout
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["ganstudy.resumed_from_epoch"] == str(resumed_from)
    assert len(client.search_runs([run.info.experiment_id])) == 1
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "d_fake_drift"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, name))
        assert steps == list(range(1, EPOCHS + 1)), (name, steps)
    for name in ("fid", "fid_best", "d_auc"):
        assert sorted(m.step for m in client.get_metric_history(run_id, name)) == [3, 6, 9, 12], name
    samples = {a.path for a in client.list_artifacts(run_id, "samples")}
    assert {f"samples/epoch_{e:04d}.png" for e in range(1, EPOCHS + 1)} | {"samples/progress.gif"} <= samples
    assert "ckpt-12.index" in latest and "ckpt-3.index" in latest


def test_resume_by_run_id_without_the_run_folder(tiny_overrides, store, tmp_path):
    """Another machine: the run folder is gone, so the checkpoints come from the MLflow artifact store."""
    import shutil

    from ganstudy.config import compose
    from ganstudy.train import train

    train(compose(tiny_overrides + ["train.epochs=2"]))
    run_id = (tmp_path / "run" / "mlflow_run_id.txt").read_text()
    shutil.rmtree(tmp_path / "run")
    train(compose(tiny_overrides + ["train.epochs=3", f"resume={run_id}", f"run_dir={tmp_path}/elsewhere"]))
    client = MlflowClient(store)
    assert sorted(m.step for m in client.get_metric_history(run_id, "d_loss")) == [1, 2, 3]
    assert client.get_run(run_id).data.tags["ganstudy.resumed_from_epoch"] == "2"
    assert (tmp_path / "elsewhere" / "checkpoints" / "ckpt-3.index").exists()
    assert (tmp_path / "elsewhere" / "mlflow_run_id.txt").read_text() == run_id
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
