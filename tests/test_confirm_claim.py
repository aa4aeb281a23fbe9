"""Two confirm workers on one machine never write one run: the second waits for the first's claim on the
run's folder, then takes its result instead of training."""
import threading
import time

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ganstudy import confirm
from ganstudy.tracking import RUN_ID_FILE, file_lock


def test_a_claimed_confirm_folder_is_waited_for_and_its_result_taken(tmp_path, monkeypatch):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    experiment = client.create_experiment("claim", (tmp_path / "artifacts").as_uri())
    trained = []
    monkeypatch.setattr(confirm, "_train", lambda *args: trained.append(args) or ({"objective": -1.0}, None))
    folder = tmp_path / "confirm" / "key"
    run_dir = folder / "confirm_best_seed1"
    holding, release = threading.Event(), threading.Event()

    def first_worker():  # trains seed 1 meanwhile: the folder is its own until it is done
        with file_lock(run_dir.with_name(run_dir.name + ".lock")):
            holding.set()
            release.wait(30)
            run = client.create_run(experiment).info.run_id
            run_dir.mkdir(parents=True)
            (run_dir / RUN_ID_FILE).write_text(run)
            client.log_metric(run, "objective", 42.0)
            client.set_terminated(run, "FINISHED")

    first = threading.Thread(target=first_worker)
    first.start()
    holding.wait(30)
    result = {}
    second = threading.Thread(target=lambda: result.update(out=confirm._train_arm(
        OmegaConf.create({"jobs": 1}), folder, "parent", "best", [], {"ganstudy.budget": "epochs", "ganstudy.role": "confirm"}, 1)))
    second.start()
    time.sleep(1)
    assert second.is_alive() and not result  # waiting on the claim, not training
    release.set()
    first.join(30)
    second.join(30)
    assert result["out"][0]["objective"] == 42.0 and result["out"][1] is None
    assert not trained
