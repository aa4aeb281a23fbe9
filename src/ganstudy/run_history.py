"""A run's logged history, read back from MLflow: the steps and values of its metrics, its images' steps,
its artifact folders. What a resumed run needs to continue its history exactly, and what the plots draw."""
from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient


def logged_steps(run_id: str) -> dict[str, int]:
    """The last step each metric of a run was logged at ({} for a new run): a resumed run replays the epochs
    since its checkpoint, and logs only what its killed process had not."""
    client = MlflowClient()
    return {key: max(m.step for m in client.get_metric_history(run_id, key))
            for key in client.get_run(run_id).data.metrics}


def last_image_step(run_id: str, key: str) -> int:
    """The last step of the run's `mlflow.log_image(key=...)` images (0: none); MLflow names their files
    images/<key>+step+<step>+timestamp+..."""
    steps = [int(a.path.split("+step+")[1].split("+")[0]) for a in MlflowClient().list_artifacts(run_id, "images")
             if Path(a.path).name.startswith(f"{key}+step+")]
    return max(steps, default=0)


def epochs_logged(run_id: str) -> int:
    """The last epoch the run logged (0: none): every epoch logs d_loss at its number."""
    return max((step for step, _ in metric_series(run_id, "d_loss")), default=0)


def metric_series(run_id: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a metric, in step order."""
    return sorted((m.step, m.value) for m in MlflowClient().get_metric_history(run_id, metric))


def download_dir(run_id: str, artifact_path: str, dest: Path) -> None:
    """Copy a run's artifact folder into dest, if the run has it."""
    if MlflowClient().list_artifacts(run_id, artifact_path):
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(dest))


def last_values(run_id: str) -> dict[str, float]:
    """The latest value of every metric of a run."""
    return dict(MlflowClient().get_run(run_id).data.metrics)


def best_value(run_id: str, metric: str, until_step: int) -> tuple[float, int]:
    """(lowest value, its step) of a metric over steps <= until_step; (inf, 0) when there is none."""
    points = [(v, s) for s, v in metric_series(run_id, metric) if s <= until_step]
    return min(points, default=(float("inf"), 0))
