"""One training run in a child process of its own (spawned: TensorFlow is not fork-safe).

A sweep runs every trial this way, so memory stays flat over a study and a trial that crashes the
interpreter (segfault, out of memory) fails only that trial. The child composes its config and calls
train(); the parent keeps the Optuna side: the child asks it at every evaluation whether to stop.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from ganstudy.config import ConfigError
from ganstudy.train import Diverged, OnEval, OnStart, RunResult

GRACE_SECONDS = 60  # after Ctrl-C, how long the child may take to end its MLflow run


class RunFailed(RuntimeError):
    """The run raised, or its process died; the message says which and why."""


_spare = None  # a child that has imported TensorFlow and waits for its run: the next trial starts at once


def run_isolated(overrides: list[str], on_eval: Optional[OnEval] = None, on_start: Optional[OnStart] = None,
                 parent_run_id: Optional[str] = None, tags: Optional[dict] = None,
                 prestart_next: bool = False) -> RunResult:
    """train(compose(overrides)) in a spawned child; raises ConfigError, Diverged or RunFailed as train() would.

    `prestart_next` starts the next run's child now, so that its imports overlap this run (a sweep's trials).
    """
    global _spare
    job = (list(overrides), parent_run_id, tags or {})
    proc, conn = _spare or _spawn()
    try:
        conn.send(job)
    except OSError:  # the spare died while it waited
        proc, conn = _spawn()
        conn.send(job)
    _spare = _spawn() if prestart_next else None
    try:
        return _serve(conn, proc, on_eval, on_start)
    except BaseException:
        _stop(proc)
        raise
    finally:
        conn.close()


def _spawn():
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child_conn,), daemon=True, name="ganstudy-run")
    proc.start()
    child_conn.close()
    return proc, conn


def _serve(conn, proc, on_eval, on_start) -> RunResult:
    """Answer the child's questions until it reports how the run ended."""
    while True:
        try:
            kind, *payload = conn.recv()
        except EOFError:
            proc.join()
            raise RunFailed(f"the run's process died (exit code {proc.exitcode})") from None
        if kind == "started" and on_start:
            on_start(payload[0])
        elif kind == "eval":
            conn.send(bool(on_eval(*payload)) if on_eval else False)
        elif kind == "done":
            proc.join()
            return RunResult(payload[0], Path(payload[1]), payload[2])
        elif kind in _ERRORS:
            proc.join()
            raise _ERRORS[kind](payload[0])


_ERRORS = {"config_error": ConfigError, "diverged": Diverged, "failed": RunFailed}


def _stop(proc) -> None:
    """Ctrl-C (or an error here): let the child end its run cleanly, then make sure it is gone."""
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGINT)
        proc.join(GRACE_SECONDS)
    if proc.is_alive():
        proc.kill()
        proc.join()


def _child(conn) -> None:
    """The child's whole life: import, wait for its run, compose, train, report back; Ctrl-C ends it (130)."""
    _interrupt_once()
    run = {}
    _exit_with_parent(run)

    def on_start(run_id: str) -> None:
        run["id"] = run_id
        conn.send(("started", run_id))

    def on_eval(epoch: int, metrics: dict) -> bool:
        conn.send(("eval", epoch, metrics))
        return conn.recv()

    try:
        from ganstudy.config import compose
        from ganstudy.train import train

        import tensorflow  # noqa: F401 - the slow import, done before the run is asked for

        overrides, parent_run_id, tags = conn.recv()
        result = train(compose(overrides), on_eval=on_eval, on_start=on_start, parent_run_id=parent_run_id, tags=tags)
        conn.send(("done", result.run_id, str(result.run_dir), {**result.metrics, "peak_rss_mb": _peak_rss_mb()}))
    except (KeyboardInterrupt, EOFError):  # Ctrl-C, or a spare whose parent ended
        _end_run(run, "KILLED")
        sys.exit(130)
    except ConfigError as err:
        conn.send(("config_error", str(err)))
    except Diverged as err:
        conn.send(("diverged", str(err)))
    except Exception as err:  # noqa: BLE001 - reported to the parent, which decides
        if isinstance(err.__context__, KeyboardInterrupt):  # Ctrl-C inside a TF op arrives wrapped
            _end_run(run, "KILLED")
            sys.exit(130)
        conn.send(("failed", f"{type(err).__name__}: {err}"))


def _interrupt_once() -> None:
    """The first SIGINT interrupts; later ones (the terminal's and the parent's) must not break the cleanup."""
    said = threading.Event()

    def handler(signum, frame):
        if not said.is_set():
            said.set()
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


def _exit_with_parent(run: dict) -> None:
    """A parent killed outright (SIGKILL) cannot stop its child: the child notices, ends its run as KILLED
    and exits, so that no orphan keeps training."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        _end_run(run, "KILLED")
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _end_run(run: dict, status: str) -> None:
    if "id" in run:
        from mlflow.tracking import MlflowClient

        MlflowClient().set_terminated(run["id"], status)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
