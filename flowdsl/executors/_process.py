"""`ProcessExecutor`: a process pool for CPU-bound steps; ``executor="process"`` shares one.

Workers are started with ``forkserver`` (Linux) or ``spawn``, never ``fork``:
the parent runs an event loop and threads, which a forked child would inherit
in whatever state they were. A worker that dies (killed, out of memory,
``os._exit``) breaks a `concurrent.futures` pool for every attempt in flight:
each of those attempts fails with `WorkerLost`, and the pool is replaced for
the attempts that follow. At interpreter exit, queued attempts are cancelled,
and workers still running an abandoned (timed-out or cancelled) attempt are
terminated, so exit never waits for a step nobody awaits. Workers end with
the process that owns the pool, even one killed by SIGKILL (`_lifeline`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import sys
import threading
import weakref
from concurrent.futures.process import BrokenProcessPool
from typing import Final

from .._checks import count_problem, require
from .._engine._context import Context
from .._plan import StepNode
from ..errors import ExecutorConfigError, ExecutorError, WorkerLost
from ._base import Executor, Packed, closed_error, closed_under, pack, unpack
from ._lifeline import Lifeline, watch
from ._trampoline import run_step

__all__ = ["ProcessExecutor", "shared_process_executor"]

_START_METHODS: Final = ("spawn", "forkserver")


def _default_start_method() -> str:
    if sys.platform == "linux" and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


class ProcessExecutor(Executor):
    """Runs steps in a pool of at most `max_workers` processes (default: one per CPU).

    The pool starts on first use. The step's body and its context are pickled
    with cloudpickle (``pip install 'flowdsl[process]'``); see `Executor`.
    """

    def __init__(self, max_workers: int | None = None, *, start_method: str | None = None) -> None:
        require(
            count_problem(max_workers, "ProcessExecutor(max_workers=...)", optional=True),
            ExecutorConfigError,
        )
        if start_method is not None and start_method not in _START_METHODS:
            msg = (
                f"ProcessExecutor(start_method=...) takes 'spawn' or 'forkserver', got "
                f"{start_method!r}; 'fork' is unsafe in a process running an event loop and threads"
            )
            raise ExecutorConfigError(msg)
        self.max_workers = max_workers
        self.start_method = start_method or _default_start_method()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lifeline: Lifeline | None = None  # the pool's: its workers end with us
        self._abandoned: set[concurrent.futures.Future[bytes]] = set()
        self._closed = False
        self._lock = threading.Lock()
        _LIVE.add(self)

    def start(self) -> None:
        self._get_pool()

    def _get_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                msg = "this ProcessExecutor is closed; create a new one"
                raise ExecutorError(msg)
            if self._pool is None:
                _register_exit_hook()
                context = multiprocessing.get_context(self.start_method)
                lifeline = Lifeline(context)
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    self.max_workers,
                    mp_context=context,
                    initializer=watch,
                    initargs=(lifeline.reader,),
                )
                self._lifeline = lifeline
            return self._pool

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        """Forget a broken pool (once, however many attempts saw it break)."""
        with self._lock:
            if self._pool is not broken:
                return
            self._pool = None
            self._abandoned.clear()
            lifeline, self._lifeline = self._lifeline, None
        broken.shutdown(wait=False, cancel_futures=True)
        if lifeline is not None:  # its workers were terminated; any one left ends now
            lifeline.cut()

    def _submit(
        self, packed: Packed
    ) -> tuple[concurrent.futures.ProcessPoolExecutor, concurrent.futures.Future[bytes]]:
        pool = self._get_pool()
        try:
            return pool, pool.submit(run_step, *packed)
        except BrokenProcessPool:  # broken by an earlier attempt: that one was lost, not this one
            self._replace(pool)
            pool = self._get_pool()
            return pool, pool.submit(run_step, *packed)

    async def __call__(self, node: StepNode, ctx: Context) -> object:
        pool, future = self._submit(pack(node, ctx))
        try:
            blob = await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._replace(pool)
            msg = (
                f"step {node.name!r} ({node.where}), attempt {ctx.attempt}: the worker process "
                f"running it on executor {node.executor!r} died before reporting an outcome "
                f"(killed, out of memory, or os._exit); attempts running in the same process "
                f"pool at that moment are lost too"
            )
            raise WorkerLost(msg) from None
        except asyncio.CancelledError:
            if closed_under(future):
                raise closed_error(node, ctx, self) from None
            if not future.cancel():  # already running: abandoned, its result is ignored
                with self._lock:
                    self._abandoned.add(future)
                future.add_done_callback(self._forget)
            raise
        return unpack(node, blob)

    def _forget(self, future: concurrent.futures.Future[bytes]) -> None:
        # Called from the pool's thread: the set is shared with close(), so under the lock.
        with self._lock:
            self._abandoned.discard(future)

    def close(self) -> None:
        """Cancel queued attempts, stop workers running abandoned ones, wait for the rest."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            abandoned = [f for f in self._abandoned if not f.done()]
            self._abandoned.clear()
            lifeline, self._lifeline = self._lifeline, None
        if pool is None or lifeline is None:
            return
        if abandoned:
            # No public API stops one worker; a pool that is closing can be torn down whole.
            for process in list((pool._processes or {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        lifeline.cut()

    def __repr__(self) -> str:
        return (
            f"ProcessExecutor(max_workers={self.max_workers!r}, start_method={self.start_method!r})"
        )


# -- the shared pool and interpreter exit -----------------------------------------------

_LIVE: Final[weakref.WeakSet[ProcessExecutor]] = weakref.WeakSet()
_SHARED: list[ProcessExecutor] = []
_SHARED_LOCK: Final = threading.Lock()
_HOOKED: list[bool] = []


def shared_process_executor() -> ProcessExecutor:
    """The library-owned executor behind ``executor="process"``: created once, closed at exit."""
    if _SHARED:
        return _SHARED[0]
    with _SHARED_LOCK:
        if not _SHARED:
            _SHARED.append(ProcessExecutor())
        return _SHARED[0]


def _close_all() -> None:
    for executor in list(_LIVE):
        executor.close()


def _register_exit_hook() -> None:
    """Close every pool at exit, before `concurrent.futures` joins its workers.

    `concurrent.futures` waits for running work in a ``threading`` exit hook,
    which runs before ``atexit`` handlers; hooks run in reverse order, so ours,
    registered after that module's, runs first. Falls back to ``atexit``.
    """
    with _SHARED_LOCK:
        if _HOOKED:
            return
        _HOOKED.append(True)
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every CPython this supports has it
        import atexit

        atexit.register(_close_all)
        return
    register(_close_all)
