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
