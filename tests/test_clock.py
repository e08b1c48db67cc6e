"""flowdsl's clock: real by default; a fake one in tests moves only when advanced."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from flowdsl import Retry, error, ok, step, workflow
from flowdsl._engine._clock import clock
from flowdsl.errors import UsageError
from flowdsl.testing import FakeClock, fake_clock

pytestmark = pytest.mark.usefixtures("flowdsl_registry")


async def until(predicate: Any) -> None:
    """Yield to the loop until `predicate()` holds (a bounded number of times)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def test_the_fake_clock_starts_now_and_moves_only_when_advanced() -> None:
    """now() is the real time at first, then stands still until advance()."""
    before = time.time()
    with fake_clock() as fake:
        assert before <= fake.now() <= time.time()
        frozen = fake.now()
        assert frozen == fake.now()
        fake.advance(86_400)
        assert frozen + 86_400 == fake.now()
        assert fake is clock()
    assert clock() is not fake  # the real clock again after the block


def test_sleepers_wake_in_deadline_order_when_their_time_comes() -> None:
    """advance() wakes exactly the sleepers now due, earliest first."""
    woke: list[str] = []

    async def main(fake: FakeClock) -> None:
        async def sleeper(name: str, seconds: float) -> None:
            await fake.sleep_until(fake.now() + seconds)
            woke.append(name)

        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 20), ("a", 10), ("c", 30))]
        await until(lambda: fake.sleepers == 3)
        fake.advance(15)
        await until(lambda: woke == ["a"])
        fake.advance(100)
        await asyncio.gather(*tasks)

    with fake_clock() as fake:
        asyncio.run(main(fake))
    assert ["a", "b", "c"] == woke


def test_advance_from_another_thread_wakes_a_sleeper_on_its_loop() -> None:
    """The clock is callable from any thread (a test drives a worker's loop)."""
    with fake_clock() as fake:
        done = threading.Event()

        async def sleep() -> None:
            await fake.sleep_until(fake.now() + 3600)
            done.set()

        thread = threading.Thread(target=asyncio.run, args=(sleep(),))
        thread.start()
        for _ in range(1000):
            if fake.sleepers:
                break
            time.sleep(0.001)
        fake.advance(3600)
        thread.join(timeout=30)
    assert done.is_set()


def test_a_cancelled_sleeper_is_forgotten() -> None:
    """Cancelling a sleep removes it; the clock holds no dead sleepers."""

    async def main(fake: FakeClock) -> None:
        task = asyncio.create_task(fake.sleep_until(fake.now() + 60))
        await until(lambda: fake.sleepers == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert 0 == fake.sleepers

    with fake_clock() as fake:
        asyncio.run(main(fake))


def test_advance_takes_a_number_of_seconds() -> None:
    """Time only moves forward, by a number of seconds."""
    with fake_clock() as fake, pytest.raises(UsageError, match="advance"):
        fake.advance(-1)


def test_retry_backoff_follows_the_fake_clock() -> None:
    """An hour of backoff passes at once when the test advances the clock by an hour."""
    attempts: list[int] = []

    @workflow
    def patient() -> None:
        @step(retry=Retry(max_attempts=2, backoff="constant", base=3600))
        def flaky(ctx: Any) -> Any:
            attempts.append(ctx.attempt)
            return error("not yet") if ctx.attempt == 1 else ok({"done": True})

    async def main(fake: FakeClock) -> Any:
        task = asyncio.create_task(patient.arun())
        await until(lambda: fake.sleepers == 1)  # in its backoff
        assert [1] == attempts
        fake.advance(3599)
        await asyncio.sleep(0)
        assert [1] == attempts  # not yet
        fake.advance(1)
        return await task

    with fake_clock() as fake:
        run = asyncio.run(main(fake))
    assert ("completed", [1, 2]) == (run.status, attempts)
