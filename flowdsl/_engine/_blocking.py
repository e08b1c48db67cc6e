"""The threads behind ``@step(blocking=True)`` and ``executor="thread"``: daemons nobody joins.

`asyncio.to_thread` uses the loop's default executor, and `asyncio.run` joins
that executor's threads before it returns: one blocking step abandoned on its
timeout, or a sibling left running by a ``fail_fast`` failure, would keep
``run_workflow`` from returning until its thread ends. This pool's threads are
daemons that neither `asyncio.run` nor interpreter exit waits for, so a run
call returns when its run is over. An abandoned attempt runs on in its thread
(a thread cannot be stopped) and its result is dropped.

Workers are started on demand, up to `MAX_WORKERS`, and exit after
`IDLE_SECONDS` without work. The caller's context variables go along with each
call, as with `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

__all__ = ["IDLE_SECONDS", "MAX_WORKERS", "call_blocking", "run_in_thread"]

T = TypeVar("T")

MAX_WORKERS: Final = min(32, (os.cpu_count() or 1) + 4)
"""At most this many blocking attempts run at once; later ones wait for a free thread."""
IDLE_SECONDS: Final = 30.0

_Job = tuple[concurrent.futures.Future[Any], Callable[[], Any]]


class _DaemonPool:
    """A grow-on-demand pool of daemon threads (see the module docstring).

    Under the lock, `unclaimed` counts jobs submitted and not yet taken and
    `waiting` the workers blocked waiting for one; a job starts a new worker
    when there are more unclaimed jobs than waiting workers. A worker whose
    wait times out exits only while no job is unclaimed.
    """

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.workers = 0
        self.waiting = 0
        self.unclaimed = 0

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self.lock:
            self.unclaimed += 1
            grow = self.unclaimed > self.waiting and self.workers < self.max_workers
            if grow:
                self.workers += 1
        self.jobs.put((future, call))
        if grow:
            threading.Thread(target=self.work, name="flowdsl-blocking", daemon=True).start()
        return future

    def take(self) -> _Job | None:
        """The next job, or None when this worker should exit (idle long enough)."""
        while True:
            with self.lock:
                self.waiting += 1
            try:
                job = self.jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                job = None
            with self.lock:
                self.waiting -= 1
                if job is not None:
                    self.unclaimed -= 1
                    return job
                if self.unclaimed <= self.waiting:  # nobody is short of a worker
                    self.workers -= 1
                    return None

    def work(self) -> None:
        while True:
            job = self.take()
            if job is None:
                return
            future, call = job
            del job
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as exc:  # the awaiting task re-raises it
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, call  # drop the job's references before waiting for the next


_POOL: Final = _DaemonPool(MAX_WORKERS)


def run_in_thread(fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """Call ``fn(*args)`` in a daemon thread with the caller's context; await the result."""
    context = contextvars.copy_context()
    future = _POOL.submit(lambda: context.run(fn, *args))
    return asyncio.wrap_future(future)


async def _wait(awaitable: Awaitable[object]) -> object:
    return await awaitable


def call_blocking(fn: Callable[[Any], object], ctx: Mapping[str, Any]) -> object:
    """Call a step body in a thread that has no event loop running (a worker thread or process).

    An ``async def`` body, or a plain function returning an awaitable, is run to
    completion on a fresh event loop of its own.
    """
    outcome = fn(ctx)
    if inspect.isawaitable(outcome):
        return asyncio.run(_wait(outcome))
    return outcome
