"""Waiting in tests for what another thread or process does: polls with a deadline.

The store's threads, a worker in a thread and child processes change what a
test reads in the background. These helpers poll for it, bounded, and fail
naming what never came; none of them measures time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flowdsl import Worker

__all__ = ["serving", "until", "wait_for"]

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Poll `condition` until it returns something true (returned); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}, in vain")
        time.sleep(0.01)


async def until(
    predicate: Callable[[], object],
    what: str = "the condition",
    timeout: float = 20.0,
    pause: float = 0.005,
) -> None:
    """Yield to the loop (and to the store's threads) until `predicate()` holds, or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}, in vain")
        await asyncio.sleep(pause)


@contextmanager
def serving(store: object, **options: Any) -> Iterator[Worker]:
    """A worker in a thread of this process, serving `store` for the block; stopped after it.

    Whatever the worker raised is raised here, and a worker that does not stop fails.
    """
    options.setdefault("grace", 1.0)
    worker = Worker(store, **options)
    failures: list[BaseException] = []

    def main() -> None:
        try:
            worker.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=main, name="test worker")
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)
    assert not thread.is_alive(), "the worker did not stop"
    if failures:
        raise failures[0]
