"""Runs in child processes forked from a fork server: each run still sees its caller as it is at its start."""
import pytest
from mlflow.tracking import MlflowClient

from ganstudy.runner import run_isolated
from ganstudy.tracking import RUN_ID_FILE

pytestmark = pytest.mark.slow  # trains models


def test_each_run_takes_the_callers_folder_and_environment_at_its_start(tmp_path, store, monkeypatch):
    """The fork server starts with the first run, in that run's folder and environment; the second run,
    started elsewhere with another environment, must get its own, as a freshly spawned process would."""
    base = ["experiment=tiny", "train.epochs=1", "eval.detector=false", f"tracking.uri={store}",
            f"tracking.artifact_root={tmp_path}/artifacts", "train.progress=none", "run_dir=run",
            "tracking.run_name=${oc.env:GANSTUDY_TEST_NAME}"]
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        monkeypatch.setenv("GANSTUDY_TEST_NAME", name)
        result = run_isolated(base)
        assert (tmp_path / name / "run" / RUN_ID_FILE).read_text() == result.run_id
        assert MlflowClient(store).get_run(result.run_id).info.run_name == name


def test_each_job_slot_gets_its_own_gpu(monkeypatch):
    """Two GPUs, two runs side by side: each run's process is given one GPU (CUDA_VISIBLE_DEVICES), slot by slot;
    one GPU is shared; outside side_by_side the environment is the caller's."""
    import threading

    from ganstudy.runner import child_environment, side_by_side

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    start = threading.Barrier(2)

    def given():
        start.wait(timeout=30)  # both slots busy at once
        return child_environment()["CUDA_VISIBLE_DEVICES"]

    assert sorted(side_by_side([given, given], 2)) == ["0", "1"]
    assert child_environment()["CUDA_VISIBLE_DEVICES"] == "0,1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert side_by_side([lambda: child_environment()["CUDA_VISIBLE_DEVICES"]] * 2, 2) == ["3", "3"]
