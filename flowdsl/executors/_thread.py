"""`ThreadExecutor`: a thread pool of its own, for steps that block (I/O, C extensions)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from .._checks import count_problem, require
from .._engine._blocking import call_blocking
from .._engine._context import Context
from .._plan import StepNode
from ..errors import ExecutorConfigError, ExecutorError
from ._base import Executor, closed_error, closed_under

__all__ = ["ThreadExecutor"]


class ThreadExecutor(Executor):
    """Runs steps in a pool of at most `max_workers` threads (started lazily).

    The built-in ``executor="thread"`` uses the event loop's default thread
    pool; register a ``ThreadExecutor`` under a name of your own to bound how
    many steps of a kind run at once::

        run_workflow("etl", data, executors={"db": ThreadExecutor(max_workers=4)})

    The step receives the context itself (nothing is pickled). An ``async def``
    step runs on an event loop of its own in the worker thread. A timed-out or
    cancelled attempt cannot stop a thread: it is abandoned, its result ignored.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        require(
            count_problem(max_workers, "ThreadExecutor(max_workers=...)", optional=True),
            ExecutorConfigError,
        )
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self._get_pool()

    def _get_pool(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                msg = "this ThreadExecutor is closed; create a new one"
                raise ExecutorError(msg)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="flowdsl-step")
            return self._pool

    async def __call__(self, node: StepNode, ctx: Context) -> object:
        pool = self._get_pool()
        # The caller's contextvars go along, as with the built-in "thread" executor.
        future = pool.submit(contextvars.copy_context().run, call_blocking, node.fn, ctx)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if closed_under(future):
                raise closed_error(node, ctx, self) from None
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers!r})"
