"""One tiny tracked run: what lands in MLflow, what train() returns, and that a seed repeats."""
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ganstudy.config import compose
from ganstudy.train import train
from ganstudy.yardstick import shipped_info

pytestmark = pytest.mark.slow  # trains models or starts interpreters

EPOCH_METRICS = ("d_loss", "g_loss", "d_real", "d_fake", "d_real_drift", "d_fake_drift")


def artifact_paths(client, run_id, path=None):
    out = []
    for item in client.list_artifacts(run_id, path):
        out += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def test_tiny_run_logs_params_metrics_and_artifacts(tiny_overrides, store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # MLflow's default 10 s outlasts the run
    made = train(compose(tiny_overrides + ["train.epochs=2", "eval.detector=true"]))
    result = made.metrics
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("ganstudy").experiment_id])
    assert made.run_id == run.info.run_id and made.run_dir == tmp_path / "run"
    assert client.get_experiment_by_name("ganstudy").tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["optimizer.lr_g"] == "0.0002" and p["train.batch_size"] == "32" and p["model.dropout"] == "0.3"
    assert p["train.epochs"] == "2" and p["data.name"] == "mnist5k" and p["lr"] == "0.0002"
    for name in EPOCH_METRICS:
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == [1, 2], name
    for m in client.get_metric_history(run.info.run_id, "d_real"):
        drift = {d.step: d.value for d in client.get_metric_history(run.info.run_id, "d_real_drift")}
        assert np.isclose(drift[m.step], abs(m.value - 0.5))
    assert len(client.get_metric_history(run.info.run_id, "step/d_loss")) == 4  # 8 steps an epoch, every 4
    files = set(artifact_paths(client, run.info.run_id))
    assert {"samples/epoch_0001.png", "samples/epoch_0002.png", "samples/progress.gif", "d_outputs.png",
            "config.yaml", "checkpoints/checkpoint", "checkpoints/ckpt-2.index"} <= files
    assert not [f for f in files if f.startswith("models/")]  # the networks are MLflow models, not files beside
    assert result["d_loss"] == run.data.metrics["d_loss"] and set(EPOCH_METRICS) <= set(result)
    assert 0 < run.data.metrics["system/cpu_utilization_percentage"] and 0 < run.data.metrics["system/system_memory_usage_megabytes"]
    check_logged_models(client, run, store)


def logged_models(client, run) -> dict:
    found = client.search_logged_models([run.info.experiment_id], f"source_run_id = '{run.info.run_id}'")
    return {m.name: m for m in found}


def check_logged_models(client, run, store):
    """generator, generator_best, discriminator and detector: Keras-flavour MLflow models with signatures,
    linked to the run's metrics at their epoch; the generator makes 0..255 pixels, the scorers give p_real."""
    import mlflow
    from scipy.special import expit

    from ganstudy.data import to_model_range

    models = logged_models(client, run)
    assert set(models) == {"generator", "generator_best", "discriminator", "detector"}
    fids = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "fid")}
    linked = {m.key: (m.step, m.value) for m in models["generator"].metrics}
    assert linked["fid"] == (2, fids[2]) and linked["d_loss"][0] == 2
    best_epoch = min(fids, key=fids.get)
    assert {m.key: (m.step, m.value) for m in models["generator_best"].metrics}["fid"] == (best_epoch, fids[best_epoch])
    assert "detector_auc" in {m.key for m in models["detector"].metrics}
    mlflow.set_tracking_uri(store)
    info = mlflow.models.get_model_info(f"models:/{models['generator'].model_id}")
    assert info.flavors.keys() >= {"keras", "python_function"}
    assert info.signature.inputs.to_dict() == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": (-1, 100)}}]
    assert info.signature.outputs.to_dict() == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": (-1, 28, 28)}}]
    generator = mlflow.keras.load_model(f"models:/{models['generator'].model_id}")
    noise = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
    pixels = generator.predict(noise, verbose=0)
    raw = generator.layers[1](noise).numpy()  # the run's sampler inside the wrapper: [-1, 1] (n, 28, 28, 1)
    assert np.allclose(pixels, (raw[..., 0] + 1) * 127.5, atol=1e-3) and 0 <= pixels.min() and pixels.max() <= 255
    scorer = mlflow.pyfunc.load_model(f"models:/{models['discriminator'].model_id}")
    discriminator = mlflow.keras.load_model(f"models:/{models['discriminator'].model_id}").get_layer("discriminator")
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28)).astype(np.float32)
    expected = expit(discriminator(to_model_range(images.astype(np.uint8))).numpy().ravel())
    assert np.allclose(np.ravel(scorer.predict(images)), expected, atol=1e-5)


def test_grids_are_mlflow_images_and_step_losses_follow_the_calls(tiny_overrides, store, capsys):
    """Each epoch's grid is an MLflow image at step = epoch (the UI's slider). With 8 steps an epoch in one
    call (steps_per_execution=8), running losses every 4 steps come once per call: at steps 8 and 16."""
    made = train(compose(tiny_overrides + ["train.epochs=2", "train.steps_per_execution=8"]))
    client = MlflowClient(store)
    images = [p for p in artifact_paths(client, made.run_id) if p.startswith("images/") and not p.endswith(".webp")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in images) == [1, 2]
    assert all(p.startswith("images/samples+step+") and p.endswith(".png") for p in images)
    assert sorted(m.step for m in client.get_metric_history(made.run_id, "step/d_loss")) == [8, 16]
    exp = client.get_run(made.run_id).info.experiment_id
    assert f"http://127.0.0.1:5000/#/experiments/{exp}/runs/{made.run_id}?workflowType=machine_learning" in capsys.readouterr().out


EVAL_METRICS = ("fid", "kid", "mnist_score", "precision", "recall", "modes_covered", "class_kl", "d_auc", "d_ap",
                "fid_best", "fid_best_epoch")


def test_tiny_run_logs_quality_and_detection(tiny_overrides, store):
    result = train(compose(tiny_overrides + ["train.epochs=3", "eval.every=2", "eval.detector=true"])).metrics
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("ganstudy").experiment_id])
    for name in EVAL_METRICS:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, name)) == [2, 3], name
    fids = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "fid")}
    best_epoch = min(fids, key=fids.get)
    assert result["fid_best"] == fids[best_epoch] and result["fid_best_epoch"] == best_epoch
    for name in ("real_fid", "real_kid", "real_mnist_score", "real_precision", "real_recall", "real_modes_covered",
                 "real_class_kl", "classifier_accuracy"):
        (point,) = client.get_metric_history(run.info.run_id, name)
        assert point.step == 0 and np.isfinite(point.value), name
    assert run.data.metrics["real_fid"] < result["fid"]
    assert 0 <= result["detector_auc"] <= 1 and 0 <= result["d_auc"] <= 1
    assert run.data.tags["ganstudy.classifier"] == shipped_info()["hash"]


def test_same_seed_repeats_the_first_epoch(tiny_overrides, tmp_path):
    first = train(compose(tiny_overrides + [f"run_dir={tmp_path}/a"])).metrics
    second = train(compose(tiny_overrides + [f"run_dir={tmp_path}/b"])).metrics
    assert (first["d_loss"], first["g_loss"]) == (second["d_loss"], second["g_loss"])
    other_seed = train(compose(tiny_overrides + ["train.seed=7", f"run_dir={tmp_path}/c"])).metrics
    assert other_seed["d_loss"] != first["d_loss"]


def test_params_are_the_values_that_ran(tiny_overrides, store):
    """With the two rates set apart, the top-level lr (which neither optimizer got) is not logged."""
    made = train(compose(tiny_overrides + ["optimizer.lr_g=3e-4", "optimizer.lr_d=1e-4"]))
    params = MlflowClient(store).get_run(made.run_id).data.params
    assert (params["optimizer.lr_g"], params["optimizer.lr_d"]) == ("0.0003", "0.0001") and "lr" not in params
    # Where it trained (this machine has no GPU), and XLA off unless asked: CPU and GPU runs compute alike.
    run = MlflowClient(store).get_run(made.run_id)
    assert run.data.tags["ganstudy.device"] == "CPU:0" and params["train.jit_compile"] == "False"


def test_a_gpu_asked_for_and_missing_is_said_and_recorded(capsys):
    from ganstudy.model import build_gan
    from ganstudy.train import device_used

    assert device_used("/GPU:0") == "CPU:0"  # this machine has no GPU
    assert capsys.readouterr().err.startswith("warning: train.device=/GPU:0 asks for a GPU, but TensorFlow sees none")
    assert device_used("/CPU:0") == "CPU:0" and device_used(None) == "CPU:0"
    assert capsys.readouterr().err == ""
    assert build_gan(compose(["experiment=tiny", "run_dir=x"])).jit_compile is False
    assert build_gan(compose(["experiment=tiny", "run_dir=x", "train.jit_compile=true"])).jit_compile is True


def test_latest_checkpoints_stay_local_and_go_when_the_run_ends(tiny_overrides, store, tmp_path):
    made = train(compose(tiny_overrides + ["train.epochs=2", "train.checkpoints=latest"]))
    files = set(artifact_paths(MlflowClient(store), made.run_id))
    assert not [f for f in files if f.startswith("checkpoints/")] and "samples/progress.gif" in files
    assert {"generator", "generator_best"} <= set(logged_models(MlflowClient(store), MlflowClient(store).get_run(made.run_id)))
    assert not (tmp_path / "run" / "checkpoints").exists() and (tmp_path / "run" / "samples" / "epoch_0002.png").exists()


def test_a_diverging_run_stops_in_its_first_epoch_and_fails(tmp_path):
    """SGD at lr 1e6 turns the losses NaN within a few batches: one error line, exit 1, a FAILED run."""
    from conftest import run_cli

    store = f"sqlite:///{tmp_path}/mlflow.db"
    done = run_cli("train", "experiment=tiny", "optimizer=sgd", "lr=1e6", "train.epochs=4",
                   f"tracking.uri={store}", f"tracking.artifact_root={tmp_path}/artifacts", "train.progress=none",
                   "eval.detector=false", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert "diverged at epoch 1, batch" in line and "NaN/inf" in line
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("ganstudy").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["ganstudy.diverged"] == "true"
    assert run.data.tags["ganstudy.diverged_at"].startswith("epoch 1, batch ")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "d_loss")] == [1]  # no epoch after it


def test_best_experiment_is_the_studys_winner_and_runs(tmp_path, store):
    """experiment=best holds the default study's best trial (docs/study.md) at the quick budget, and trains."""
    import json

    winner = json.loads((Path(__file__).parents[1] / "docs" / "study" / "best.json").read_text())
    cfg = compose(["experiment=best", "run_dir=unused"])
    for key, value in winner["params"].items():
        assert OmegaConf.select(cfg, "optimizer.name" if key == "optimizer" else key) == value, key
    assert (cfg.train.epochs, cfg.data.name, cfg.eval.n_samples, cfg.eval.every) == (20, "mnist5k", 1000, 2)
    tiny_budget = ["data.limit=256", "train.epochs=1", "eval.n_samples=200", "eval.detector=false",
                   "train.progress=none", f"tracking.uri={store}",
                   f"tracking.artifact_root={tmp_path}/artifacts", f"run_dir={tmp_path}/run"]
    made = train(compose(["experiment=best"] + tiny_budget))
    assert np.isfinite(made.metrics["fid_best"])


def test_a_run_survives_its_tracking_server_stopping_for_30_seconds(tmp_path):
    """An MLflow server stopped once epoch 1 is logged and started again 30 s later (same store, same port):
    the run waits on MLflow's retries, finishes, and has every epoch logged once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import free_port, serve
    from test_resume import last_step

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def server():
        return serve([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                      "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                      "--workers", "1"], f"{url}/health", log=tmp_path / "server.log", cwd=tmp_path, env=env)

    first = server()
    run = subprocess.Popen([sys.executable, "-m", "ganstudy.train", "experiment=tiny", "data.limit=1024",
                            "train.epochs=6", "eval.every=3", "eval.detector=false", "train.progress=line",
                            f"tracking.uri={url}", "run_dir=run"], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.time() + 300
    while last_step(tmp_path / "server.db", "d_loss") < 1:
        assert time.time() < deadline and run.poll() is None, run.stdout.read() if run.poll() is not None else ""
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(timeout=60)
    time.sleep(30)
    again = server()
    try:
        out, _ = run.communicate(timeout=600)
        assert run.returncode == 0, out
        client = MlflowClient(url)
        run_id = (tmp_path / "run" / "mlflow_run_id.txt").read_text()
        assert client.get_run(run_id).info.status == "FINISHED"
        assert [m.step for m in sorted(client.get_metric_history(run_id, "d_loss"), key=lambda m: m.step)] == [1, 2, 3, 4, 5, 6]
    finally:
        os.killpg(again.pid, signal.SIGTERM)
        again.wait(timeout=60)


def test_a_time_budget_ends_the_run_cleanly_and_a_resume_spends_the_rest(tiny_overrides, store):
    """train.time_budget=3: the run ends after the epoch in which 3 s of training ran out, with that epoch's
    evaluation; resumed with a larger budget, it goes on from there and stops again once that is spent."""
    result = train(compose(tiny_overrides + ["train.epochs=200", "train.time_budget=3"]))
    client = MlflowClient(store)

    def series(key):
        return sorted((m.step, m.value) for m in client.get_metric_history(result.run_id, key))

    def ended_when_spent(spent, budget):  # the last epoch spent the budget; the one before had not
        return spent[-1][1] >= budget and (len(spent) == 1 or spent[-2][1] < budget)

    spent = series("train_seconds")
    last = spent[-1][0]
    assert last < 200 and ended_when_spent(spent, 3)
    assert series("fid")[-1][0] == last and series("epochs")[-1] == (last, last)  # evaluated at its last epoch
    assert series("updates")[-1][1] == 8 * last and series("images")[-1][1] == 256 * last
    assert client.get_run(result.run_id).info.status == "FINISHED"
    budget = spent[-1][1] + 3
    train(compose(tiny_overrides + ["train.epochs=200", f"train.time_budget={budget}", f"resume={result.run_id}"]))
    spent = series("train_seconds")
    assert spent[-1][0] > last and ended_when_spent(spent, budget)
    assert [s for s, _ in spent] == list(range(1, spent[-1][0] + 1))  # each epoch once, time summed across both
    assert all(b > a for (_, a), (_, b) in zip(spent, spent[1:]))


def test_every_gpu_grows_its_memory_as_needed(monkeypatch):
    """Runs side by side (a sweep's jobs) share a GPU: each run's process asks for memory growth on every GPU
    before TensorFlow's first op (checked with TensorFlow's device calls replaced: this machine has no GPU)."""
    import tensorflow as tf

    from ganstudy import train as train_module

    grown = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: ["GPU:0", "GPU:1"] if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: grown.append((gpu, on)))
    train_module._grow_gpu_memory()
    assert grown == [("GPU:0", True), ("GPU:1", True)]
