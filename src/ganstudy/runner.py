"""One training run in a child process of its own.

A sweep runs every trial this way, so memory stays flat over a study and a trial that crashes the
interpreter (segfault, out of memory) fails only that trial. The child composes its config and calls
train(); the parent keeps the Optuna side: the child asks it at every evaluation whether to stop.

Children are forked from multiprocessing's fork server, which imports TensorFlow and MLflow once and never
runs TensorFlow (forking a process that has is unsafe): a run starts in a fraction of a second, where each
spawned child paid about 11 CPU-seconds of imports. A child gets the caller's working directory (from
multiprocessing) and environment (from run_isolated) as they are when its run starts, not the server's.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Optional

from ganstudy.config import ConfigError
from ganstudy.train import Diverged, OnEval, OnStart, RunResult

GRACE_SECONDS = 60  # after Ctrl-C, how long the child may take to end its MLflow run
INTERRUPTED = 130  # a child's exit status after Ctrl-C, as a shell's


class RunFailed(RuntimeError):
    """The run raised, or its process died; the message says which and why."""


# What the fork server imports once for every child (ganstudy first: it quiets TensorFlow's import): a run's
# modules, what MLflow imports on first use (its SQL store: 2-3 s a child; its Keras flavour), matplotlib, and
# the study's report.
PRELOAD = ["ganstudy.train", "tensorflow", "keras", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
           "mlflow.keras.save", "ganstudy.evaluate", "matplotlib.figure", "ganstudy.report"]
_running: set = set()  # the processes of the runs in progress, for stop_all()
_running_lock = threading.Lock()


def run_isolated(overrides: list[str], on_eval: Optional[OnEval] = None, on_start: Optional[OnStart] = None,
                 parent_run_id: Optional[str] = None, tags: Optional[dict] = None, label: str = "") -> RunResult:
    """train(compose(overrides)) in a child process; raises ConfigError, Diverged or RunFailed as train() would.
    `label` prefixes every line the child prints (runs side by side)."""
    proc, conn = _spawn()
    conn.send((list(overrides), parent_run_id, tags or {}, label, child_environment()))
    with _running_lock:
        _running.add(proc)
    try:
        return _serve(conn, proc, on_eval, on_start)
    except BaseException:
        _stop(proc)
        raise
    finally:
        conn.close()
        with _running_lock:
            _running.discard(proc)


interrupted = threading.Event()  # Ctrl-C, or a failed task of side_by_side: no new run starts


def share_of_cores(jobs: int) -> list[str]:
    """The overrides that give each of `jobs` runs side by side its share of this machine's cores
    (TensorFlow would take them all in each)."""
    if jobs == 1:
        return []
    return [f"train.threads={max(1, len(os.sched_getaffinity(0)) // jobs)}"]


_slot = threading.local()  # which of side_by_side's job slots this thread is


def visible_gpus() -> list[str]:
    """The GPUs this machine shows CUDA, without importing TensorFlow: CUDA_VISIBLE_DEVICES when set, else the
    ones `nvidia-smi -L` lists; [] on a machine without."""
    if (ids := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        return [i.strip() for i in ids.split(",") if i.strip() and i.strip() != "-1"]
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


def child_environment() -> dict:
    """The environment a run's process gets: this one's, and, for a job slot of side_by_side when there are
    several GPUs, CUDA_VISIBLE_DEVICES naming that slot's GPU (each run would otherwise open every GPU and train
    on the first)."""
    environ = dict(os.environ)
    slot = getattr(_slot, "index", None)
    if slot is not None and len(gpus := visible_gpus()) > 1:
        environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return environ


def _take_slot(counter: itertools.count) -> None:
    _slot.index = next(counter)


def side_by_side(tasks: list[Callable[[], Any]], jobs: int) -> list:
    """Call the tasks in `jobs` threads (each task typically waits on run_isolated); their results, in order.

    Ctrl-C, which only the main thread sees, or an error in a task ends every run in progress as Ctrl-C
    ends one, starts no other task, and is raised here once the threads are done.
    """
    interrupted.clear()  # an earlier call's Ctrl-C or error does not stop this one
    with ThreadPoolExecutor(max_workers=min(jobs, len(tasks)) or 1, thread_name_prefix="ganstudy-job",
                            initializer=_take_slot, initargs=(itertools.count(),)) as pool:
        futures = [pool.submit(_unless_interrupted, task) for task in tasks]
        try:
            while True:  # in slices: Ctrl-C reaches the main thread between them
                done, not_done = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
                error = next((f.exception() for f in done if f.exception()), None)
                if error is not None or not not_done:
                    break
        except KeyboardInterrupt as err:
            error = err
        if error is not None:
            interrupted.set()
            for f in futures:
                f.cancel()
            _stop_all()
            wait(futures)
            raise error
    return [f.result() for f in futures]


def _unless_interrupted(task: Callable[[], Any]) -> Any:
    if interrupted.is_set():  # a task queued behind one that Ctrl-C or an error ended
        raise KeyboardInterrupt
    return task()


def _stop_all() -> None:
    """End every run in progress as _stop does, together."""
    with _running_lock:
        procs = list(_running)
    threads = [threading.Thread(target=_stop, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def fork_context():
    """multiprocessing's fork server context, its imports preloaded: a process from it starts in a fraction of
    a second. (The preload list is the process's one fork server's: every caller takes it from here.)"""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def adopt_environment(environ: dict) -> None:
    """In a child of the fork server: take the caller's environment, sent at the child's start (the server's
    own is the one it was started with)."""
    os.environ.clear()
    os.environ.update(environ)


def _spawn():
    ctx = fork_context()
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child_conn,), daemon=True, name="ganstudy-run")
    # Born with SIGINT blocked (the fork server too, if this starts it; a terminal's Ctrl-C reaches it as well):
    # a Ctrl-C before _child is ready waits until it can end the child quietly.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    child_conn.close()
    return proc, conn


def _serve(conn, proc, on_eval, on_start) -> RunResult:
    """Answer the child's questions until it reports how the run ended."""
    while True:
        try:
            kind, *payload = conn.recv()
        except (EOFError, ConnectionResetError):
            proc.join()
            if proc.exitcode == INTERRUPTED or interrupted.is_set():  # Ctrl-C ended it: not a failed run
                raise KeyboardInterrupt from None
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
    """The child's whole life: wait for its run, compose, train, report back; Ctrl-C ends it (130)."""
    _interrupt_once()
    run = {}
    _exit_with_parent(run)  # its thread keeps SIGINT blocked: the main thread takes a Ctrl-C

    def on_start(run_id: str) -> None:
        run["id"] = run_id
        conn.send(("started", run_id))

    def on_eval(epoch: int, metrics: dict) -> bool:
        conn.send(("eval", epoch, metrics))
        return conn.recv()

    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C that came before lands here
        from ganstudy.config import compose
        from ganstudy.train import train

        overrides, parent_run_id, tags, label, environ = conn.recv()
        adopt_environment(environ)
        if label:
            sys.stdout, sys.stderr = _Prefixed(sys.stdout, label), _Prefixed(sys.stderr, label)
        result = train(compose(overrides), on_eval=on_eval, on_start=on_start, parent_run_id=parent_run_id, tags=tags)
        conn.send(("done", result.run_id, str(result.run_dir), {**result.metrics, "peak_rss_mb": _peak_rss_mb()}))
    except (KeyboardInterrupt, EOFError):  # Ctrl-C, or a parent that ended before sending the run
        _end_run(run, "KILLED")
        sys.exit(INTERRUPTED)
    except ConfigError as err:
        conn.send(("config_error", str(err)))
    except Diverged as err:
        conn.send(("diverged", str(err)))
    except Exception as err:  # noqa: BLE001 - reported to the parent, which decides
        if isinstance(err.__context__, KeyboardInterrupt):  # Ctrl-C inside a TF op arrives wrapped
            _end_run(run, "KILLED")
            sys.exit(INTERRUPTED)
        conn.send(("failed", f"{type(err).__name__}: {err}"))


class _Prefixed:
    """A text stream that starts every line with `[label] ` (not a terminal: no progress bars)."""

    def __init__(self, stream, label: str):
        self.stream, self.prefix, self.at_line_start = stream, f"[{label}] ", True

    def write(self, text: str) -> int:
        for line in text.splitlines(keepends=True):
            self.stream.write(self.prefix + line if self.at_line_start else line)
            self.at_line_start = line.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):  # encoding, fileno, ...: the stream's own
        return getattr(self.stream, name)


def _interrupt_once() -> None:
    """The first SIGINT interrupts; later ones (the terminal's and the parent's) must not break the cleanup."""
    said = threading.Event()

    def handler(signum, frame):
        if not said.is_set():
            said.set()
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


def _exit_with_parent(run: dict) -> None:
    """A caller killed outright (SIGKILL) cannot stop its child: the child notices, ends its run as KILLED
    and exits, so that no orphan keeps training. The caller is multiprocessing's parent process, the one that
    started this child (its OS parent is the fork server, which lives on while any child does)."""
    caller = multiprocessing.parent_process()

    def watch():
        caller.join()  # returns when the caller is gone
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
