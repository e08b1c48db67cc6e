"""`fake_clock`: virtual time for tests of sleeps, wait timeouts, backoff and schedules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._engine._clock import FakeClock, use_clock

__all__ = ["FakeClock", "fake_clock"]


@contextmanager
def fake_clock(start: float | None = None) -> Iterator[FakeClock]:
    """Make flowdsl's clock virtual inside the block; yields it: ``clock.advance(seconds)``.

    Sleeps (`sleep_for`, `sleep_until`), wait timeouts, retry backoff and
    schedule ticks follow the fake clock, which starts at the real now (or
    `start`, seconds since the epoch) and moves only when advanced, from any
    thread. The user's own ``asyncio.sleep`` is not affected. A test of a
    three-day approval takes milliseconds::

        with fake_clock() as clock:
            ...                        # start the run; it reaches its wait
            clock.advance(3 * 86400)   # the wait times out now
    """
    fake = FakeClock(start)
    with use_clock(fake):
        yield fake
