"""Schedules: ``@workflow(schedule=...)`` ticked by workers, caught up by policy, in any zone.

Every story is driven by flowdsl's fake clock: the workers look at their
schedules when the virtual time says a tick came, and the test moves it on
one tick (or one outage) at a time, waiting for each tick's run before the
next. The worker stories run on every kind of store (`store`); the
definition checks and the calendar (`due_ticks`) need none.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import zoneinfo
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from polling import until
from stores import StoreKit

from flowdsl import Run, Store, Worker, ok, step, workflow
from flowdsl._define._schedules import ON_TIME, due_ticks
from flowdsl._plan import Schedule
from flowdsl.errors import DefinitionError, StoreError
from flowdsl.testing import FakeClock, fake_clock

pytestmark = pytest.mark.usefixtures("flowdsl_registry")

UTC = zoneinfo.ZoneInfo("UTC")
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
MINUTE = 60.0
START = dt.datetime(2026, 1, 5, 10, 2, 30, tzinfo=dt.UTC)
"""When the fake clock starts in most tests: a Monday, 30 s after the 10:02 tick."""


@asynccontextmanager
async def workers(*stores: Store) -> AsyncIterator[list[Worker]]:
    """A worker per store, serving it on this loop for the block; stopped (and awaited) after."""
    serving = [Worker(store, poll=0.01, grace=1.0) for store in stores]
    tasks = [asyncio.create_task(worker.arun()) for worker in serving]
    try:
        yield serving
    finally:
        for worker in serving:
            worker.stop()
        await asyncio.gather(*tasks)


def runs_of(store: Store, name: str) -> dict[str, Run]:
    return {run.run_id: run for run in store.list_runs() if run.workflow == name}


def completed(store: Store, *run_ids: str) -> Callable[[], bool]:
    def check() -> bool:
        runs = {run.run_id: run.status for run in store.list_runs()}
        return all(runs.get(run_id) == "completed" for run_id in run_ids)

    return check


def scheduled(
    name: str, cron: str, seen: list[dt.datetime], **options: Any
) -> Callable[[], object]:
    """Define workflow `name` on `cron`; each run appends its ``scheduled_at`` to `seen`."""

    @workflow(name, schedule=cron, **options)
    def body() -> None:
        @step
        async def note(ctx: Any) -> Any:
            seen.append(ctx["scheduled_at"])
            return ok({"noted": True})

    return body


def tick_id(name: str, *when: int, tz: dt.tzinfo = UTC, fold: int = 0) -> str:
    return f"{name}@{dt.datetime(*when, tzinfo=tz, fold=fold).isoformat()}"  # type: ignore[misc]


def watch_looks(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[float | None]:
    """What every `observe_schedule` call on `store` returned, in order (a spy)."""
    looks: list[float | None] = []
    observe = store.observe_schedule

    async def spy(workflow: str, now: float) -> float | None:
        previous = await observe(workflow, now)
        looks.append(previous)
        return previous

    monkeypatch.setattr(store, "observe_schedule", spy)
    return looks


# -- under workers -------------------------------------------------------------------------


def test_two_workers_start_each_tick_once(store: Store, store_kit: StoreKit) -> None:
    """Two workers on one database, five minutes: one run per tick, named and fed by the tick.

    Each worker has a store object (a connection) of its own, as two processes would.
    """
    seen: list[dt.datetime] = []
    scheduled("every_minute", "* * * * *", seen)

    async def main(clock: FakeClock) -> None:
        async with workers(store, store_kit.open()):
            for minute in range(2, 7):  # first sight at 10:02:30 starts 10:02 ("latest")
                if minute > 2:
                    clock.advance(MINUTE)
                await until(
                    completed(store, tick_id("every_minute", 2026, 1, 5, 10, minute)),
                    f"the run of the 10:{minute:02} tick",
                )

    with fake_clock(START.timestamp()) as clock:
        asyncio.run(main(clock))
    ticks = [dt.datetime(2026, 1, 5, 10, minute, tzinfo=UTC) for minute in range(2, 7)]
    runs = runs_of(store, "every_minute")
    assert [f"every_minute@{tick.isoformat()}" for tick in ticks] == sorted(runs)
    assert ticks == sorted(seen), "each tick's step ran once, whichever worker ran it"
    for tick in ticks:
        scheduled_at = runs[f"every_minute@{tick.isoformat()}"].output["scheduled_at"]
        assert tick == scheduled_at
        assert UTC == scheduled_at.tzinfo, "an aware datetime in the schedule's time zone"
        assert "completed" == runs[f"every_minute@{tick.isoformat()}"].status


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("latest", [(10, 0), (10, 20), (10, 25)]),
        ("all", [(10, 5), (10, 10), (10, 15), (10, 20), (10, 25)]),
        ("none", [(10, 25)]),
    ],
)
def test_ticks_missed_while_no_worker_ran_are_caught_up_by_policy(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    catch_up: str,
    expected: list[tuple[int, int]],
) -> None:
    """History starts at first sight (10:02:30); 10:05-10:20 pass with no worker; 10:25 is on time.

    latest: the most recent tick on first sight (10:00) and after the outage
    (10:20); all: every tick since the history began; none: only on-time ones.
    """
    seen: list[dt.datetime] = []
    scheduled("every_five", "*/5 * * * *", seen, catch_up=catch_up)
    looks = watch_looks(monkeypatch, store)

    async def main(clock: FakeClock) -> None:
        async with workers(store):
            await until(lambda: len(looks) == 1, "the first look at the schedule")
        assert [None] == looks, "the first look starts the history"
        clock.advance(20 * MINUTE)  # to 10:22:30: 10:05, 10:10, 10:15 and 10:20 are missed
        async with workers(store):
            await until(lambda: len(looks) == 2, "the look after the outage")
            clock.advance(3 * MINUTE)  # 10:25:30
            await until(
                completed(store, tick_id("every_five", 2026, 1, 5, 10, 25)), "the 10:25 tick"
            )
            await until(completed(store, *runs_of(store, "every_five")), "every run started")

    with fake_clock(START.timestamp()) as clock:
        asyncio.run(main(clock))
    ids = [tick_id("every_five", 2026, 1, 5, hour, minute) for hour, minute in expected]
    assert ids == sorted(runs_of(store, "every_five"))
    assert [dt.datetime(2026, 1, 5, h, m, tzinfo=UTC) for h, m in expected] == sorted(seen)


def test_a_worker_restarted_just_after_a_tick_still_starts_it_under_none(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """catch_up="none" skips what no worker saw for over ON_TIME s, not a tick a restart straddled."""
    seen: list[dt.datetime] = []
    scheduled("restarted", "*/5 * * * *", seen, catch_up="none")
    looks = watch_looks(monkeypatch, store)

    async def main(clock: FakeClock) -> None:
        async with workers(store):
            await until(lambda: len(looks) == 1, "the first look: the history begins")
        clock.advance(2 * MINUTE + ON_TIME - 1)  # 10:05:29, the worker down over the 10:05 tick
        async with workers(store):
            await until(completed(store, tick_id("restarted", 2026, 1, 5, 10, 5)), "the 10:05 tick")

    with fake_clock(START.timestamp()) as clock:
        asyncio.run(main(clock))
    assert [tick_id("restarted", 2026, 1, 5, 10, 5)] == sorted(runs_of(store, "restarted"))


def test_first_sight_exactly_at_a_tick_starts_that_tick_under_latest(store: Store) -> None:
    """A worker that first looks at 10:05:00 sharp starts the 10:05 tick, not 10:04's."""
    seen: list[dt.datetime] = []
    scheduled("sharp", "* * * * *", seen)

    async def main(clock: FakeClock) -> None:
        async with workers(store):
            await until(completed(store, tick_id("sharp", 2026, 1, 5, 10, 5)), "the 10:05 tick")
            clock.advance(MINUTE)
            await until(completed(store, tick_id("sharp", 2026, 1, 5, 10, 6)), "the 10:06 tick")

    with fake_clock(dt.datetime(2026, 1, 5, 10, 5, tzinfo=dt.UTC).timestamp()) as clock:
        asyncio.run(main(clock))
    expected = [tick_id("sharp", 2026, 1, 5, 10, minute) for minute in (5, 6)]
    assert expected == sorted(runs_of(store, "sharp"))


def test_a_tick_whose_run_could_not_be_queued_is_queued_at_the_next_look(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses the tick's enqueue once: the worker queues it when it comes back."""
    seen: list[dt.datetime] = []
    scheduled("flaky", "* * * * *", seen, catch_up="all")
    looks = watch_looks(monkeypatch, store)
    enqueue = store.enqueue
    refusals: list[str] = []

    async def refuse_once(header: Any, ticket: Any) -> Any:
        if not refusals:
            refusals.append(header.run_id)
            raise StoreError("the database is away (injected)")
        return await enqueue(header, ticket)

    monkeypatch.setattr(store, "enqueue", refuse_once)

    async def main(clock: FakeClock) -> None:
        async with workers(store):
            await until(lambda: len(looks) == 1, "the first look")
            clock.advance(MINUTE)  # 10:03:30: the 10:03 tick is due; its enqueue fails
            await until(
                completed(store, tick_id("flaky", 2026, 1, 5, 10, 3)), "the refused tick's run"
            )

    with fake_clock(START.timestamp()) as clock:
        asyncio.run(main(clock))
    assert [tick_id("flaky", 2026, 1, 5, 10, 3)] == refusals
    assert [tick_id("flaky", 2026, 1, 5, 10, 3)] == sorted(runs_of(store, "flaky"))


def test_ticks_a_worker_found_but_could_not_queue_before_it_stopped_are_queued_by_the_next(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look is recorded only once its ticks are queued: a worker that dies in between
    (here: stopped while the database refuses every enqueue) leaves them to the next one."""
    seen: list[dt.datetime] = []
    scheduled("handed_on", "* * * * *", seen, catch_up="all")
    looks = watch_looks(monkeypatch, store)
    enqueue = store.enqueue
    refusals: list[str] = []

    async def refuse(header: Any, ticket: Any) -> Any:
        refusals.append(header.run_id)
        raise StoreError("the database is away (injected)")

    async def main(clock: FakeClock) -> None:
        async with workers(store):
            await until(lambda: len(looks) == 1, "the first look")
            monkeypatch.setattr(store, "enqueue", refuse)
            clock.advance(MINUTE)  # 10:03:30: the 10:03 tick is due; its enqueue fails
            await until(lambda: bool(refusals), "the refused enqueue")
        monkeypatch.setattr(store, "enqueue", enqueue)  # the database is back; a new worker
        async with workers(store):
            await until(completed(store, tick_id("handed_on", 2026, 1, 5, 10, 3)), "the tick")

    with fake_clock(START.timestamp()) as clock:
        asyncio.run(main(clock))
    assert tick_id("handed_on", 2026, 1, 5, 10, 3) in refusals
    assert [tick_id("handed_on", 2026, 1, 5, 10, 3)] == sorted(runs_of(store, "handed_on"))


def test_ticks_in_another_time_zone_are_named_in_it_across_a_fall_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Europe/Paris, hourly, the night clocks go back: 02:00 comes twice, two runs, two offsets."""
    seen: list[dt.datetime] = []
    scheduled("hourly_paris", "0 * * * *", seen, timezone="Europe/Paris", catch_up="all")
    looks = watch_looks(monkeypatch, store)
    start = dt.datetime(2026, 10, 25, 0, 30, tzinfo=PARIS)  # first sight: nothing under "all"
    expected = [
        dt.datetime(2026, 10, 25, 1, 0, tzinfo=PARIS),
        dt.datetime(2026, 10, 25, 2, 0, tzinfo=PARIS),  # +02:00, summer time
        dt.datetime(2026, 10, 25, 2, 0, tzinfo=PARIS, fold=1),  # +01:00, an hour later
        dt.datetime(2026, 10, 25, 3, 0, tzinfo=PARIS),
    ]

    async def main(clock: FakeClock) -> None:
        async with workers(store):
            await until(lambda: len(looks) == 1, "the first look: the history begins")
            for tick in expected:
                clock.advance(3600)
                await until(
                    completed(store, f"hourly_paris@{tick.isoformat()}"), f"the {tick} tick"
                )

    with fake_clock(start.timestamp()) as clock:
        asyncio.run(main(clock))
    ids = [
        "hourly_paris@2026-10-25T01:00:00+02:00",
        "hourly_paris@2026-10-25T02:00:00+02:00",
        "hourly_paris@2026-10-25T02:00:00+01:00",
        "hourly_paris@2026-10-25T03:00:00+01:00",
    ]
    assert ids == [f"hourly_paris@{tick.isoformat()}" for tick in expected]
    assert set(ids) == set(runs_of(store, "hourly_paris"))
    instants = [tick.timestamp() for tick in sorted(seen, key=dt.datetime.timestamp)]
    assert [3600.0] * 3 == [b - a for a, b in itertools.pairwise(instants)]
    for run in runs_of(store, "hourly_paris").values():
        scheduled_at = run.output["scheduled_at"]
        assert PARIS == scheduled_at.tzinfo
        assert run.run_id == f"hourly_paris@{scheduled_at.isoformat()}"


# -- the calendar (croniter, read in the schedule's zone) ------------------------------------


def paris_ticks(cron: str, since: dt.datetime, now: dt.datetime) -> list[str]:
    schedule = Schedule(cron, "Europe/Paris", "all")
    return [tick.isoformat() for tick in due_ticks(schedule, since.timestamp(), now.timestamp())]


def test_a_daily_tick_in_the_spring_gap_runs_once_when_the_gap_ends() -> None:
    """02:30 does not exist on 29 March 2026 in Paris: that day's run is at 03:00+02:00."""
    ticks = paris_ticks(
        "30 2 * * *",
        dt.datetime(2026, 3, 28, 12, 0, tzinfo=PARIS),
        dt.datetime(2026, 3, 30, 12, 0, tzinfo=PARIS),
    )
    assert ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"] == ticks


def test_a_daily_tick_in_the_repeated_hour_runs_at_both_instants() -> None:
    """02:30 comes twice on 25 October 2026 in Paris, and croniter ticks at each (two run ids)."""
    ticks = paris_ticks(
        "30 2 * * *",
        dt.datetime(2026, 10, 24, 12, 0, tzinfo=PARIS),
        dt.datetime(2026, 10, 26, 12, 0, tzinfo=PARIS),
    )
    expected = [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-26T02:30:00+01:00",
    ]
    assert expected == ticks


def test_first_sight_latest_is_the_most_recent_tick_at_or_before_now() -> None:
    """On first sight "latest" starts the tick now is on, or else the one before."""
    schedule = Schedule("*/5 * * * *", "UTC", "latest")
    at = dt.datetime(2026, 1, 5, 10, 5, tzinfo=dt.UTC)
    assert [at] == due_ticks(schedule, None, at.timestamp())
    assert [at] == due_ticks(schedule, None, at.timestamp() + 299)
    assert [] == due_ticks(Schedule("*/5 * * * *", "UTC", "all"), None, at.timestamp())
    assert [] == due_ticks(Schedule("*/5 * * * *", "UTC", "none"), None, at.timestamp())


CRONS = ("* * * * *", "*/5 * * * *", "0 * * * *", "30 2 * * *", "* * * * * */15")
"""Every minute, every five, hourly, daily at 02:30 (a DST hour in Paris), every 15 seconds."""


@given(
    cron=st.sampled_from(CRONS),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]),
    previous=st.floats(
        min_value=dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp(),
        max_value=dt.datetime(2026, 11, 30, tzinfo=dt.UTC).timestamp(),
    ),
    gap=st.floats(min_value=0, max_value=3 * 3600),
)
def test_none_starts_no_more_than_latest_and_latest_no_more_than_all(
    cron: str, zone: str, previous: float, gap: float
) -> None:
    """For any look, none is within latest, latest within all; latest ends where all ends."""
    now = previous + gap
    found = {
        catch_up: due_ticks(Schedule(cron, zone, catch_up), previous, now)  # type: ignore[arg-type]
        for catch_up in ("latest", "all", "none")
    }
    every = [tick.timestamp() for tick in found["all"]]
    assert every == sorted(set(every))
    assert all(previous < when <= now for when in every)
    latest = [tick.timestamp() for tick in found["latest"]]
    assert {tick.timestamp() for tick in found["none"]} <= set(latest) <= set(every)
    assert every[-1:] == latest[-1:]
    for tick in found["all"]:
        canonical = dt.datetime.fromtimestamp(tick.timestamp(), zoneinfo.ZoneInfo(zone))
        assert (canonical.isoformat(), canonical.fold) == (tick.isoformat(), tick.fold)


def test_latest_after_a_late_look_keeps_every_tick_still_on_time() -> None:
    """Two 15-second ticks came since a look 35 s ago: both on time, so "latest" starts both."""
    at = dt.datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    previous = at.timestamp() - 10
    ticks = due_ticks(Schedule("* * * * * */15", "UTC", "latest"), previous, previous + 35)
    assert [at, at + dt.timedelta(seconds=15)] == ticks


# -- definitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schedule": "every day at two"}, r"schedule='every day at two' is not a cron"),
        ({"schedule": "61 * * * *"}, r"is not a cron expression croniter accepts"),
        ({"schedule": ""}, r"schedule= takes a cron expression"),
        ({"schedule": "0 2 * * *", "timezone": "Mars/Olympus"}, r"'Mars/Olympus' is not a known"),
        ({"schedule": "0 2 * * *", "timezone": ""}, r"timezone= takes an IANA time zone"),
        ({"schedule": "0 2 * * *", "catch_up": "some"}, r"catch_up= must be 'latest', 'all'"),
        ({"timezone": "UTC"}, r"timezone= only apply with schedule="),
        ({"catch_up": "all"}, r"catch_up= only apply with schedule="),
    ],
)
def test_bad_schedules_are_definition_errors_naming_the_line(
    options: dict[str, Any], message: str
) -> None:
    """Every problem of a schedule is found at import, naming the workflow's file and line."""
    with pytest.raises(DefinitionError, match=message) as caught:

        @workflow("badly_timed", **options)
        def body() -> None:
            @step
            async def only(ctx: Any) -> Any:
                return ok()

    assert f"{__file__}:" in str(caught.value)


def test_the_schedule_checks_come_together() -> None:
    """Three problems at once are named at once, so one edit can fix them all."""
    with pytest.raises(DefinitionError) as caught:

        @workflow(schedule="nope", timezone="Nowhere/Land", catch_up="sometimes")  # type: ignore[arg-type]
        def everything_wrong() -> None:
            @step
            async def only(ctx: Any) -> Any:
                return ok()

    text = str(caught.value)
    for part in ("schedule='nope'", "timezone='Nowhere/Land'", "catch_up="):
        assert part in text
