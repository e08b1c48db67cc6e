"""Events sent to runs executing in this process, for runs without a store.

Each run has a mailbox per event name: first in, first out; an event sent
before the run reaches its wait is kept; each is taken by exactly one wait.
`find` says where an event for a run executing in this process goes
(`RunNotFound` for any other). A durable run's events live in its store
instead (its journal's `receive`), so that a run resumed elsewhere still
finds them: `find` returns the store of such a run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from ..errors import RunNotFound

__all__ = ["Inbox", "executing", "find"]

_LOCK = threading.Lock()
_RUNS: dict[str, object] = {}
"""run_id -> where an event for it goes: its in-memory `Inbox`, or its store."""


class Inbox:
    """The in-memory mailboxes of one run (no store): ``await inbox.receive(event, due)``."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.queued: dict[str, collections.deque[object]] = {}
        self.waiting: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def post(self, event: str, payload: object) -> None:
        """Keep `payload` for the next wait for `event`, and wake that wait (any thread)."""
        with _LOCK:
            self.queued.setdefault(event, collections.deque()).append(payload)
            waiters = self.waiting.pop(event, [])
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # the run's loop has closed
                loop.call_soon_threadsafe(_wake, future)

    def take(self, event: str) -> tuple[bool, object]:
        with _LOCK:
            queued = self.queued.get(event)
            if queued:
                return True, queued.popleft()
        return False, None

    async def receive(
        self, event: str, sleep: Callable[[float], Any], due: float | None
    ) -> tuple[bool, object]:
        """The next payload sent for `event`: ``(True, payload)``, or ``(False, None)`` at `due`.

        `sleep(when)` sleeps on flowdsl's clock until `when` (epoch seconds).
        """
        loop = asyncio.get_running_loop()
        while True:
            got, payload = self.take(event)
            if got:
                return got, payload
            future: asyncio.Future[None] = loop.create_future()
            with _LOCK:
                if self.queued.get(event):
                    continue
                self.waiting.setdefault(event, []).append((loop, future))
            try:
                if due is None:
                    await future
                else:
                    timer = asyncio.ensure_future(sleep(due))
                    try:
                        done, _ = await asyncio.wait(
                            {future, timer}, return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        timer.cancel()
                    if future not in done:
                        got, payload = self.take(event)  # one may have come at the deadline
                        return got, payload
            finally:
                with _LOCK:
                    waiters = self.waiting.get(event, [])
                    if (loop, future) in waiters:
                        waiters.remove((loop, future))


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class executing:
    """Register a run as executing here while the block runs, so `send` can reach it.

    `target` is the run's `Inbox` (a run without a store), or its store (a
    durable run: its events are committed there).
    """

    __slots__ = ("_run_id", "_target")

    def __init__(self, run_id: str, target: object) -> None:
        self._run_id = run_id
        self._target = target

    def __enter__(self) -> None:
        with _LOCK:
            _RUNS[self._run_id] = self._target

    def __exit__(self, *exc: object) -> None:
        with _LOCK:
            if _RUNS.get(self._run_id) is self._target:
                del _RUNS[self._run_id]


def find(run_id: str, event: str) -> object:
    """Where an event for a run executing in this process goes; `RunNotFound` otherwise."""
    with _LOCK:
        target = _RUNS.get(run_id)
    if target is None:
        msg = (
            f"no run {run_id!r} is executing in this process; to reach a durable run "
            f"anywhere, pass its store: send_event({run_id!r}, {event!r}, ..., store=URL)"
        )
        raise RunNotFound(msg)
    return target
