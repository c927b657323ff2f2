"""Worker processes that exit with their parent: a killed command (``kill -9``) leaves no workers behind.

A worker blocked on a queue or busy with a case does not notice that its parent is gone; after a ``kill -9``
of ``nnunet-ext predict`` nnU-Net's preprocessing and export workers (about 1.4 GB) stayed alive. On Linux the
kernel is asked to kill the worker when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread in
the worker polls its parent's id.

Our own pools pass :func:`exit_with_parent` as their initializer (:mod:`nnunet_ext.utils.pool`), programs we
run (HD-BET) :func:`program_exits_with_parent` as ``preexec_fn``. nnU-Net's
pools inside prediction and planning start their workers through a multiprocessing context's ``Process``
(``get_context("spawn")``, and the default context for the ``Manager`` of the preprocessing queues);
:func:`workers_exit_with_parent` puts a subclass there for the duration of a call, so nnU-Net's loops run
unchanged.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.context import ForkProcess, SpawnProcess

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 0.5


def _ask_kernel(sig: int) -> bool:
    """Linux only: the kernel sends ``sig`` to this process when the thread that started it exits."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def watch_parent(parent_pid: int) -> None:
    """Exit this process as soon as its parent is no longer ``parent_pid`` (a daemon thread polls)."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def exit_with_parent(parent_pid: int) -> None:
    """Make this worker exit when ``parent_pid`` (the process that started it) dies; an initializer for pools."""
    if not _ask_kernel(signal.SIGKILL):
        watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the kernel was asked
        os._exit(1)


def program_exits_with_parent(parent_pid: int) -> None:
    """``subprocess``'s ``preexec_fn``: the program about to be executed is killed when ``parent_pid`` dies
    (Linux; elsewhere nothing, as a thread would not survive the exec)."""
    _ask_kernel(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


class _ExitWithParent:
    """Process mixin: :func:`exit_with_parent` before the target runs (spawned: the object travels pickled)."""

    def start(self) -> None:
        self._exit_with_pid = os.getpid()
        super().start()

    def run(self) -> None:
        exit_with_parent(self._exit_with_pid)
        super().run()


class ExitWithParentSpawnProcess(_ExitWithParent, SpawnProcess):
    pass


class ExitWithParentForkProcess(_ExitWithParent, ForkProcess):
    pass


_PROCESSES = {"spawn": ExitWithParentSpawnProcess, "fork": ExitWithParentForkProcess}


@contextmanager
def workers_exit_with_parent() -> Iterator[None]:
    """Within this block every process started through multiprocessing's spawn or fork context exits with the
    process that started it: ``get_context("spawn").Process`` and ``.Pool`` (nnU-Net's predictor and planner),
    and the default context's ``Manager`` (the server process of nnU-Net's preprocessing queues)."""
    contexts = {method: multiprocessing.get_context(method) for method in _PROCESSES}
    previous = {method: context.__dict__.get("Process") for method, context in contexts.items()}
    for method, context in contexts.items():
        context.Process = _PROCESSES[method]
    try:
        yield
    finally:
        for method, context in contexts.items():
            if previous[method] is None:
                del context.Process
            else:
                context.Process = previous[method]
