"""Resume: the one place that decides whether and from where a run continues, and builds the checkpoint it
continues from. A run continues exactly from its latest checkpoint (in its folder, or brought from the artifact
store), or from its start if it logged no epoch yet; otherwise it is refused with the real reason, never
restarted at epoch 0 into the same run."""
from __future__ import annotations

import contextlib
from pathlib import Path

from mlflow.tracking import MlflowClient

from ganstudy.config import ConfigError
from ganstudy.run_history import download_dir, epochs_logged
from ganstudy.tags import Tag
from ganstudy.tracking import find_run, folder_run_id
from ganstudy.yardstick import refuse_other

CLAIM_FILE = "training.lock"  # held while a process trains in the folder (claim_folder)
# Keys that may differ between a run and its resumption (epochs, time: to train a finished run longer; threads and
# steps per call change speed, not results; a run may move to another device).
RESUMABLE_CHANGES = ("resume", "run_dir", "train.epochs", "train.time_budget", "train.progress", "train.threads", "train.steps_per_execution",
                     "train.device",
                     "tracking.")
CHECKPOINT_INDEX = "checkpoint"  # tf.train.CheckpointManager's index of checkpoints/, beside ckpt-N.* files


@contextlib.contextmanager
def claim_folder(folder: Path, run_id: str | None):
    """Train in `folder` alone: a run started at the same moment into the same folder (Hydra's default
    run_dir is the second the command started) is refused, and so is a folder that took another run meanwhile.
    The claim is a lock the system drops when the process ends, however it ends."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / CLAIM_FILE, "w") as claim:
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"run_dir={folder}: another process is training in it; choose another folder") from None
        if (other := folder_run_id(folder)) not in (None, run_id):
            hint = (f"continue it with resume={folder}, or choose another folder" if run_id is None
                    else f"choose another folder to resume run {run_id} into")
            raise ConfigError(f"run_dir={folder}: holds run {other}; {hint}")
        yield


def resume_target(cfg, params: dict) -> tuple[str | None, Path]:
    """(run id to continue or None, run folder) for `cfg.resume`: the run's own folder if it is here, else
    run_dir (bring_run fills it). Settings must match the run's, and the run must be able to continue exactly:
    from a checkpoint, or from its start if it logged no epoch yet."""
    run_dir = Path(cfg.run_dir)
    if not cfg.resume:
        return None, run_dir
    run_id, found_dir = find_run(cfg.resume)
    run = MlflowClient().get_run(run_id)
    refuse_other(run.data.tags.get(Tag.CLASSIFIER), f"resume={cfg.resume}: run {run_id}")
    for key, old in run.data.params.items():
        if not key.startswith(RESUMABLE_CHANGES) and key in params and str(params[key]) != old:
            raise ConfigError(f"{key}={params[key]}: run {run_id} was trained with {old}; resume it with its own settings")
    if (why := cannot_resume(run_id, found_dir)) is not None:
        raise ConfigError(f"resume={cfg.resume}: {why}")
    return run_id, found_dir or run_dir


def bring_run(run_id: str | None, folder: Path) -> None:
    """A resumed run's checkpoints (with the best generator so far) and grids, from the artifact store into
    a claimed folder that does not hold the run yet (a run from another machine)."""
    if run_id is not None and folder_run_id(folder) != run_id:
        for sub in ("checkpoints", "samples"):
            download_dir(run_id, sub, folder)


def has_checkpoint(run_id: str, folder: Path | None) -> bool:
    """Whether the run's checkpoint itself is there to restore from: the manager's index and the files of the
    checkpoint it names, in the folder, or (without a folder here) in the artifact store. Other files under
    checkpoints/ (generator_best.keras, uploaded at the first evaluation) do not count."""
    if folder is not None:
        index = folder / "checkpoints" / CHECKPOINT_INDEX
        name = _latest_name(index.read_text()) if index.is_file() else None
        return name is not None and (folder / "checkpoints" / f"{name}.index").is_file()
    stored = {Path(a.path).name for a in MlflowClient().list_artifacts(run_id, "checkpoints")}
    if CHECKPOINT_INDEX not in stored:
        return False
    import mlflow

    index = mlflow.artifacts.load_text(f"runs:/{run_id}/checkpoints/{CHECKPOINT_INDEX}")
    name = _latest_name(index)
    return name is not None and f"{name}.index" in stored


def _latest_name(index_text: str) -> str | None:
    """The checkpoint a CheckpointManager index names as latest (model_checkpoint_path: "ckpt-4")."""
    for line in index_text.splitlines():
        if line.startswith("model_checkpoint_path:"):
            return Path(line.split(":", 1)[1].strip().strip('"')).name
    return None


def cannot_resume(run_id: str, folder: Path | None) -> str | None:
    """Why the run cannot continue exactly (None: it can): it logged epochs but has no checkpoint to restore."""
    epochs = epochs_logged(run_id)
    if epochs == 0 or has_checkpoint(run_id, folder):
        return None
    params = MlflowClient().get_run(run_id).data.params
    if params.get("train.checkpoints") == "latest":
        why = ("it ran with train.checkpoints=latest, whose checkpoint goes when the run ends; "
               "train.checkpoints=all keeps them")
    else:
        where = "its folder" if folder is not None else "the artifact store (its folder is not here)"
        why = (f"it stopped before its first checkpoint (train.checkpoint_every={params.get('train.checkpoint_every', '?')}),"
               f" or none reached {where}")
    return f"run {run_id} logged {epochs} epochs but has no checkpoint to continue from ({why}); train a new run instead"


def restore(gan, cfg, run_dir: Path, resuming: bool):
    """The checkpoint manager and epoch counter, restored from the run's latest checkpoint when resuming (which
    resume_target has made sure exists, unless the run logged no epoch yet)."""
    import tensorflow as tf

    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    nets = {"generator": gan.generator, "discriminator": gan.discriminator}
    if gan.ema_generator is not None:
        nets["generator_ema"] = gan.ema_generator
    seeds = {"noise_seed": gan.noise_seed.state}
    if gan.lever_seed is not None:  # augmentation's and the gradient penalty's draws
        seeds["lever_seed"] = gan.lever_seed.state
    ckpt = tf.train.Checkpoint(**nets, generator_optimizer=gan.g_optimizer, discriminator_optimizer=gan.d_optimizer,
                               **seeds, dropout_seeds=_rng_states(*nets.values()), epoch=epoch_var)
    keep = None if cfg.train.checkpoints == "all" else 1
    manager = tf.train.CheckpointManager(ckpt, run_dir / "checkpoints", max_to_keep=keep)
    if resuming and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    return manager, epoch_var


def _rng_states(*models) -> list:
    """The models' random states that are not weights (Dropout's seed generators): a replayed epoch must draw
    the dropout masks the killed one drew."""
    weights = {id(w) for m in models for w in m.weights}
    return [v for m in models for v in m.variables if id(v) not in weights]


