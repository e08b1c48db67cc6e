"""flowdsl's own clock: what sleeps, wait deadlines, retry backoff and schedule ticks follow.

The clock is the real one (``time.time`` and `asyncio.sleep`) unless a test
swaps in a `FakeClock` (`flowdsl.testing.fake_clock`): virtual time that
moves only when the test calls ``advance(seconds)``, from any thread, so a
test of a three-day wait takes milliseconds. The user's own `asyncio.sleep`
calls are not affected. The clock is process-wide, not per task: a worker's
runs in other threads follow the same fake time as the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "clock", "use_clock"]


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch, and sleeping on it."""

    def now(self) -> float: ...

    async def sleep_until(self, when: float) -> None: ...


class _RealClock:
    __slots__ = ()

    @staticmethod
    def now() -> float:
        return time.time()

    @staticmethod
    async def sleep_until(when: float) -> None:
        # A long sleep is cut in slices, so a wall clock that jumps (NTP, a resumed
        # laptop) is noticed within a minute rather than after the whole delay.
        while True:
            left = when - time.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 60.0))


class FakeClock:
    """Virtual time for tests: ``now()`` stands still until ``advance(seconds)``.

    It starts at the real now. Sleepers whose time has come are woken on their
    own event loops, in the order of their deadlines.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()
        self._sleepers: list[
            tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The virtual time, in seconds since the epoch."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the time forward by `seconds` (>= 0) and wake every sleeper now due."""
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not seconds >= 0:
            from ..errors import UsageError

            msg = f"advance() takes a number of seconds >= 0, got {seconds!r}"
            raise UsageError(msg)
        with self._lock:
            self._now += seconds
            due = []
            while self._sleepers and self._sleepers[0][0] <= self._now:
                due.append(heapq.heappop(self._sleepers))
        for _, _, loop, future in due:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_wake, future)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for the time to move (for tests to wait on)."""
        with self._lock:
            return sum(1 for _, _, _, future in self._sleepers if not future.done())

    async def sleep_until(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if when <= self._now:
                future = None  # type: ignore[assignment]
            else:
                heapq.heappush(self._sleepers, (when, next(self._order), loop, future))
        if future is None:
            await asyncio.sleep(0)
            return
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            with self._lock:
                self._sleepers = [s for s in self._sleepers if s[3] is not future]
                heapq.heapify(self._sleepers)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_REAL = _RealClock()
_CURRENT: list[Clock] = [_REAL]


def clock() -> Clock:
    """The clock runs follow now (the real one, or a test's fake one)."""
    return _CURRENT[-1]


class use_clock:
    """Make `fake` the clock of every run until the block ends (what `fake_clock` uses)."""

    __slots__ = ("_clock",)

    def __init__(self, fake: Clock) -> None:
        self._clock = fake

    def __enter__(self) -> Clock:
        _CURRENT.append(self._clock)
        return self._clock

    def __exit__(self, *exc: object) -> None:
        _CURRENT.remove(self._clock)
