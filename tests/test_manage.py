"""Managing durable runs: list_runs' filters and pages, cancel_run, retry_run, prune_runs, the CLI.

What must hold, on every kind of store (`store_kit`):

* ``list_runs`` filters by status (one or a tuple), workflow, start time
  (an aware datetime; a naive one is refused saying how to fix it) and
  parent; it is oldest first, and with ``limit`` newest first; paging with
  ``before=`` the last run of a page goes through every run once, in order;
* ``cancel_run``: a queued or parked run is cancelled at once and never
  starts; a running one stops within one lease interval wherever it runs
  (in place, under a worker), its owner's call returning the cancelled
  `Run`, leaving no task behind; child runs are cancelled with their
  parent; a cancelled run is final; an unknown run is `RunNotFound`, an
  ended one a `UsageError`;
* ``retry_run`` queues a new run that replays the original's outcomes (all
  that succeeded but those compensated, or those before ``from_step``):
  those steps are not called again, the others are, with a fresh retry
  budget; the original is unchanged;
* ``prune_runs`` deletes only ended runs older than the cut, with their
  journals and mailboxes, and counts them;
* a store of schema 6 is migrated to 7 keeping every run;
* ``flowdsl runs list|cancel|retry|prune`` do the same from a shell.

Nothing waits a fixed time: tests wait for events or statuses, bounded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polling import until
from stores import StoreKit

import flowdsl
from flowdsl import (
    Retry,
    Store,
    Waiting,
    Worker,
    acancel_run,
    arun_workflow,
    astart_workflow,
    call_workflow,
    cancel_run,
    error,
    foreach,
    ok,
    prune_runs,
    retry_run,
    run_workflow,
    start_workflow,
    step,
    wait_for_event,
    workflow,
)
from flowdsl.errors import RunNotFound, StoreError, UsageError
from flowdsl.testing import strategies as fst

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl._engine._seams import child_finished
from flowdsl._plan import (
    CallNode,
    ForeachNode,
    Node,
    ParallelNode,
    SequenceNode,
    StepNode,
    WaitNode,
)
from flowdsl.stores._codec import decode
from flowdsl.stores._protocol import ClaimRequest, Ending, RunHeader, Ticket
from flowdsl.stores._retry import outline

pytestmark = pytest.mark.usefixtures("flowdsl_registry")

LEASE = 1.5
"""The lease of the stores that cancel running runs: renewed every half second."""
BOUND = 60.0
"""How long a test waits for anything at most (a loaded machine is slow, never this slow)."""


def header(
    run_id: str, workflow: str = "wf", *, started: float, parent: str | None = None
) -> RunHeader:
    return RunHeader(run_id, workflow, "fp", ("step a -> a",), "{}", started, parent_id=parent)


def now_ticket() -> Ticket:
    return Ticket("default", 0, time.time())


def status(store: Store, run_id: str) -> str:
    run = store.get_run(run_id)
    assert run is not None, f"no run {run_id!r}"
    return run.status


def claimable(store: Store, known: tuple[tuple[str, str], ...]) -> list[str]:
    """The run ids a worker that knows `known` claims now (claimed, then given back)."""
    claimed = asyncio.run(store.claim(ClaimRequest(100, known)))
    for opened in claimed:
        assert opened.claim is not None
        store.release(opened.claim)
    return sorted(opened.run_id for opened in claimed)


def only_task_left() -> None:
    """No task of the test's loop outlives what it awaited (the test's own is all there is)."""
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def serve(worker: Worker) -> asyncio.Task[None]:
    return asyncio.create_task(worker.arun())


# -- list_runs ---------------------------------------------------------------------------------


def test_list_runs_filters_by_status_workflow_and_start(store: Store) -> None:
    base = 1_700_000_000.0

    async def main() -> None:
        await store.open_run(header("r0", "alpha", started=base))
        await store.enqueue(header("r1", "beta", started=base + 10), now_ticket())
        opened = await store.open_run(header("r2", "alpha", started=base + 20))
        assert opened.claim is not None
        await store.finish_run(opened.claim, Ending("failed", "{}", None, None, "[]", 0.1))
        await store.enqueue(header("r3", "alpha", started=base + 30), now_ticket())

    asyncio.run(main())

    def ids(**filters: Any) -> list[str]:
        return [run.run_id for run in store.list_runs(**filters)]

    assert ["r0", "r1", "r2", "r3"] == ids(), "oldest first"
    assert ["r1", "r3"] == ids(status="queued")
    assert ["r1", "r2", "r3"] == ids(status=("queued", "failed"))
    assert ["r0", "r2", "r3"] == ids(workflow="alpha")
    assert ["r3"] == ids(workflow="alpha", status="queued")
    since = dt.datetime.fromtimestamp(base + 20, dt.UTC)
    assert ["r2", "r3"] == ids(since=since), "started at or after it"
    assert ["r2", "r3"] == ids(since=since.astimezone(dt.timezone(dt.timedelta(hours=5))))
    assert ["r3", "r2"] == ids(limit=2), "the newest, newest first"
    assert ["r3", "r2", "r1", "r0"] == ids(limit=10)
    assert ["r3", "r0"] == ids(limit=5, workflow="alpha", status=("queued", "running"))
    assert [] == ids(workflow="gamma")
    assert ["r1"] == ids(before=(base + 20, "r2"), limit=1)
    assert ["r0", "r1"] == ids(before=(base + 20, "r2")), "older than the cursor, oldest first"

    with pytest.raises(UsageError, match=r"since= takes an aware datetime, got the naive") as naive:
        store.list_runs(since=dt.datetime(2025, 1, 1))
    assert "since.replace(tzinfo=timezone.utc)" in str(naive.value)
    with pytest.raises(UsageError, match=r"since= takes an aware datetime .*got 1700000000"):
        store.list_runs(since=1_700_000_000)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"limit= takes how many runs .*got 0"):
        store.list_runs(limit=0)
    with pytest.raises(UsageError, match=r"status= takes one of .*got \(\)"):
        store.list_runs(status=())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"status must be one of .*got 'done'"):
        store.list_runs(status=("queued", "done"))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"workflow= takes a workflow's name"):
        store.list_runs(workflow="")
    with pytest.raises(UsageError, match=r"before= takes the last Run of the previous page"):
        store.list_runs(limit=2, before="r2")  # type: ignore[arg-type]


runs_to_page = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["queued", "running"])), max_size=25
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=runs_to_page, size=st.integers(1, 8), only_queued=st.booleans())
def test_paging_goes_through_every_run_once_newest_first(
    store: Store, runs: list[tuple[int, str]], size: int, only_queued: bool
) -> None:
    """For any runs (start times tied or not) and page size: the pages, one after another,
    are every run (with the filters) exactly once, newest first, by (started, run_id)."""
    name = f"wf-{uuid.uuid4().hex[:8]}"  # each example's runs apart from the others'
    base = 1_700_000_000.0

    async def main() -> None:
        for n, (offset, kind) in enumerate(runs):
            made = header(f"{name}-{n:02d}", name, started=base + offset)
            if kind == "queued":
                await store.enqueue(made, now_ticket())
            else:
                await store.open_run(made)

    asyncio.run(main())
    filters: dict[str, Any] = {"workflow": name}
    if only_queued:
        filters["status"] = "queued"
    expected = sorted(
        (
            (base + offset, f"{name}-{n:02d}")
            for n, (offset, kind) in enumerate(runs)
            if kind == "queued" or not only_queued
        ),
        reverse=True,
    )
    seen: list[tuple[float, str]] = []
    page = store.list_runs(limit=size, **filters)
    while page:
        assert len(page) <= size
        seen.extend((run.started, run.run_id) for run in page)
        page = store.list_runs(limit=size, before=page[-1], **filters)
    assert expected == seen


def test_listing_a_page_uses_an_index(tmp_path: Path) -> None:
    """SQLite answers a page of the newest runs (of a workflow) from an index, not a scan."""
    import sqlite3

    from flowdsl import SQLiteStore
    from flowdsl.stores._rows import list_query

    db = tmp_path / "runs.db"
    SQLiteStore(db).close()
    conn = sqlite3.connect(db)
    try:
        for filters in ({}, {"workflow": "w"}):
            clause, args = list_query(
                None, filters.get("workflow"), None, 50, (1.0, "r"), None, "?"
            )
            plan = conn.execute(
                f"EXPLAIN QUERY PLAN SELECT run_id FROM flowdsl_runs {clause}", args
            ).fetchall()
            text = " ".join(str(row[-1]) for row in plan)
            assert (
                "USING INDEX flowdsl_runs_by_" in text or "COVERING INDEX flowdsl_runs_by_" in text
            ), text
            assert "TEMP B-TREE" not in text, f"sorted, not read in order: {text}"
    finally:
        conn.close()


# -- cancel_run: runs that are not running -----------------------------------------------------


def test_a_queued_run_is_cancelled_at_once_and_never_starts(store: Store) -> None:
    calls: list[str] = []

    @workflow
    def queued_work() -> None:
        @step
        async def work(ctx: Any) -> Any:
            calls.append(ctx["n"])
            return ok({"done": True})

    start_workflow("queued_work", {"n": "cancelled"}, store=store, run_id="q-1")
    assert None is cancel_run("q-1", store)
    run = store.get_run("q-1")
    assert run is not None
    assert ("cancelled", None) == (run.status, run.owner)

    async def main() -> None:
        worker = Worker(store, concurrency=2, poll=0.02)
        serving = await serve(worker)
        try:
            later = await astart_workflow("queued_work", {"n": "later"}, store=store, run_id="q-2")
            assert "completed" == (await later.aresult(timeout=BOUND)).status
        finally:
            worker.stop()
            await serving

    asyncio.run(main())
    assert ["later"] == calls, "the worker ran the later run, never the cancelled one"
    # Final: asked for by its id, the recorded run comes back and nothing runs.
    again = run_workflow(queued_work, {"n": "again"}, run_id="q-1", store=store)
    assert ("cancelled", ["later"]) == (again.status, calls)
    assert "cancelled" == status(store, "q-1")


def test_a_parked_run_is_cancelled_at_once_and_refuses_events(store: Store) -> None:
    calls: list[str] = []

    @workflow
    def approval() -> None:
        wait_for_event("approved", returns="decision")

        @step
        async def pay(ctx: Any) -> Any:
            calls.append("pay")
            return ok()

    async def main() -> None:
        worker = Worker(store, concurrency=2, park_after=0, poll=0.02)
        serving = await serve(worker)
        try:
            await astart_workflow("approval", {}, store=store, run_id="p-1")
            await until(lambda: status(store, "p-1") == "waiting", "the run parked", BOUND)
            await acancel_run("p-1", store)
            assert "cancelled" == status(store, "p-1"), "at once: the commit did it"
            with pytest.raises(UsageError, match=r"run 'p-1' was cancelled: it waits for nothing"):
                await flowdsl.asend_event("p-1", "approved", {"by": "ana"}, store=store)
            later = await astart_workflow("approval", {}, store=store, run_id="p-2")
            await until(lambda: status(store, "p-2") == "waiting", "the later run parked", BOUND)
            await flowdsl.asend_event("p-2", "approved", {"by": "bo"}, store=store)
            assert "completed" == (await later.aresult(timeout=BOUND)).status
        finally:
            worker.stop()
            await serving

    asyncio.run(main())
    assert ["pay"] == calls, "only the later run went on"
    assert "cancelled" == status(store, "p-1")


def test_an_unowned_running_run_is_cancelled_at_once(store: Store, store_kit: StoreKit) -> None:
    """A running run whose owner is gone (its lease expired) has nobody to stop it: the
    cancel does, fencing the old owner out."""

    async def main() -> Any:
        opened = await store.open_run(header("o-1", started=time.time()))
        assert opened.claim is not None
        store_kit.set_owner("o-1", "elsewhere|pid:[1]|7|1", time.time() - 10, epoch=5)
        return await store.cancel("o-1")

    assert (("o-1", "cancelled"),) == asyncio.run(main())
    assert ("cancelled", None) == store_kit.status_of("o-1")


def test_cancelling_a_run_cancelled_by_its_caller_makes_it_final(store: Store) -> None:
    calls: list[str] = []

    @workflow
    def interrupted() -> None:
        @step
        async def first(ctx: Any) -> Any:
            calls.append("first")
            return ok({"first": 1})

        @step
        async def hang(ctx: Any) -> Any:
            calls.append("hang")
            await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.create_task(arun_workflow(interrupted, run_id="i-1", store=store))
        await until(lambda: "hang" in calls, "the second step started", BOUND)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert "cancelled" == status(store, "i-1")
    cancel_run("i-1", store)  # resumable until now: final from now on
    again = run_workflow(interrupted, run_id="i-1", store=store)
    assert ("cancelled", ["first", "hang"]) == (again.status, calls), "nothing ran again"
    with pytest.raises(UsageError, match=r"run 'i-1' was cancelled already"):
        cancel_run("i-1", store)


def test_an_unknown_or_ended_run_cannot_be_cancelled(store: Store, tmp_path: Path) -> None:
    @workflow
    def quick() -> None:
        @step
        async def only(ctx: Any) -> Any:
            return ok()

    assert "completed" == run_workflow(quick, run_id="done-1", store=store).status
    with pytest.raises(RunNotFound, match=r"no run 'nope' in the store"):
        cancel_run("nope", store)
    with pytest.raises(UsageError, match=r"run 'done-1' has completed: only a run that has not"):
        cancel_run("done-1", store)
    with pytest.raises(UsageError, match=r"cancel_run\(\) takes the run's id .*got ''"):
        cancel_run("", store)
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match=r"no store at .*missing\.db"):
        cancel_run("done-1", str(missing))
    assert not missing.exists(), "cancelling never creates a store"


# -- cancel_run: running runs ------------------------------------------------------------------


def blocking_workflow(calls: list[str], started: list[asyncio.Event]) -> Any:
    """``first`` then ``hold`` (which waits forever, telling `started`) then ``after``."""

    @workflow
    def blocking() -> None:
        @step
        async def first(ctx: Any) -> Any:
            calls.append("first")
            return ok({"first": 1})

        @step
        async def hold(ctx: Any) -> Any:
            calls.append("hold")
            started[0].set()
            await asyncio.Event().wait()

        @step
        async def after(ctx: Any) -> Any:
            calls.append("after")
            return ok()

    return blocking


def test_a_run_running_in_place_stops_within_a_lease_and_its_call_returns_it(
    store_kit: StoreKit,
) -> None:
    store = store_kit.open(lease=LEASE)
    calls: list[str] = []
    started: list[asyncio.Event] = []
    blocking = blocking_workflow(calls, started)

    async def main() -> tuple[Any, float]:
        started.append(asyncio.Event())
        task = asyncio.create_task(arun_workflow(blocking, {"n": 1}, run_id="c-1", store=store))
        await asyncio.wait_for(started[0].wait(), BOUND)
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await acancel_run("c-1", store)
        assert not task.done()
        run = await asyncio.wait_for(task, BOUND)
        took = loop.time() - asked
        only_task_left()
        return run, took

    run, took = asyncio.run(main())
    assert took < LEASE, f"stopped {took:.2f}s after the cancel: more than one lease"
    assert ("cancelled", None, None) == (run.status, run.error, run.failed_step)
    assert ["first"] == [s.name for s in run.steps if s.status == "succeeded"]
    assert 1 == run.output["first"]
    assert ["first", "hold"] == calls
    assert "cancelled" == status(store, "c-1")
    again = run_workflow(blocking, {"n": 1}, run_id="c-1", store=store)
    assert ("cancelled", ["first", "hold"]) == (again.status, calls), "final: nothing runs"


def test_a_run_under_a_worker_stops_and_the_worker_goes_on(
    store_kit: StoreKit, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_kit.open(lease=LEASE)
    calls: list[str] = []
    started: list[asyncio.Event] = []
    blocking_workflow(calls, started)

    @workflow
    def simple() -> None:
        @step
        async def work(ctx: Any) -> Any:
            return ok({"worked": True})

    async def main() -> None:
        started.append(asyncio.Event())
        worker = Worker(store, concurrency=2, poll=0.02)
        serving = await serve(worker)
        try:
            await astart_workflow("blocking", {}, store=store, run_id="w-1")
            await asyncio.wait_for(started[0].wait(), BOUND)
            await acancel_run("w-1", store)
            await until(lambda: status(store, "w-1") == "cancelled", "stopped by its worker", BOUND)
            later = await astart_workflow("simple", {}, store=store)
            assert "completed" == (await later.aresult(timeout=BOUND)).status
        finally:
            worker.stop()
            await serving
        only_task_left()

    with caplog.at_level(logging.WARNING, logger="flowdsl"):
        asyncio.run(main())
    assert ["first", "hold"] == calls
    run = store.get_run("w-1")
    assert run is not None
    assert ("cancelled", None) == (run.status, run.owner)
    assert not [r for r in caplog.records if "in this worker" in r.getMessage()], (
        "the worker's run ended cancelled: nothing raised, nothing was lost"
    )


def test_postgres_tells_a_worker_at_once_not_at_its_lease_renewal(pg_kit: StoreKit) -> None:
    """A lease of 60 s is renewed every 20 s: the NOTIFY stops the run well before that."""
    store = pg_kit.open(lease=60.0)
    calls: list[str] = []
    started: list[asyncio.Event] = []
    blocking_workflow(calls, started)

    async def main() -> float:
        started.append(asyncio.Event())
        worker = Worker(store, concurrency=1, poll=0.02)
        serving = await serve(worker)
        try:
            await astart_workflow("blocking", {}, store=store, run_id="n-1")
            await asyncio.wait_for(started[0].wait(), BOUND)
            # The worker listens (it did from its first wait for work; here: for sure by now).
            assert await store._call(store._engine.listen_ready())  # type: ignore[attr-defined]
            loop = asyncio.get_running_loop()
            asked = loop.time()
            await acancel_run("n-1", store)
            await until(lambda: status(store, "n-1") == "cancelled", "stopped", 19.0)
            return loop.time() - asked
        finally:
            worker.stop()
            await serving

    took = asyncio.run(main())
    assert took < 19.0


def test_cancelling_a_parent_cancels_its_child_running_in_place(store_kit: StoreKit) -> None:
    store = store_kit.open(lease=LEASE)
    calls: list[str] = []
    started: list[asyncio.Event] = []
    blocking_workflow(calls, started)

    @workflow
    def parent() -> None:
        call_workflow("blocking", returns="child")

        @step
        async def ship(ctx: Any) -> Any:
            calls.append("ship")
            return ok()

    async def main() -> tuple[Any, Any]:
        started.append(asyncio.Event())
        task = asyncio.create_task(arun_workflow(parent, run_id="par-1", store=store))
        await asyncio.wait_for(started[0].wait(), BOUND)
        done = await store.cancel("par-1")
        run = await asyncio.wait_for(task, BOUND)
        only_task_left()
        return done, run

    done, run = asyncio.run(main())
    assert (("par-1", "stopping"), ("par-1/blocking#1", "stopping")) == done
    assert "cancelled" == run.status, "the parent's call returned it, cancelled"
    assert ["first", "hold"] == calls, "neither the child nor the parent went on"
    child = store.get_run("par-1/blocking#1")
    assert child is not None
    assert ("cancelled", "par-1") == (child.status, child.parent_id)
    # Both are final: asked for again, each returns its record and nothing runs.
    assert "cancelled" == run_workflow(parent, run_id="par-1", store=store).status
    assert "cancelled" == run_workflow("blocking", run_id="par-1/blocking#1", store=store).status
    assert ["first", "hold"] == calls


def test_cancelling_a_parked_parent_cancels_its_child_on_a_worker(store_kit: StoreKit) -> None:
    store = store_kit.open(lease=LEASE)
    calls: list[str] = []
    started: list[asyncio.Event] = []
    blocking_workflow(calls, started)

    @workflow
    def order() -> None:
        call_workflow("blocking", returns="child")

        @step
        async def ship(ctx: Any) -> Any:
            calls.append("ship")
            return ok()

    child_id = "ord-1/blocking#1"

    async def main() -> Any:
        started.append(asyncio.Event())
        worker = Worker(store, concurrency=2, park_after=0, poll=0.02)
        serving = await serve(worker)
        try:
            await astart_workflow("order", {}, store=store, run_id="ord-1")
            await asyncio.wait_for(started[0].wait(), BOUND)
            await until(lambda: status(store, "ord-1") == "waiting", "the parent parked", BOUND)
            done = await store.cancel("ord-1")
            assert "cancelled" == status(store, "ord-1"), "a parked parent: at once"
            await until(lambda: status(store, child_id) == "cancelled", "the child stopped", BOUND)
            return done
        finally:
            worker.stop()
            await serving

    done = asyncio.run(main())
    assert (("ord-1", "cancelled"), (child_id, "stopping")) == done
    assert ["first", "hold"] == calls, "the parent never went on"
    assert "cancelled" == status(store, "ord-1")


def test_a_child_cancelled_alone_fails_its_call(store_kit: StoreKit) -> None:
    """Its parent was not cancelled: the call node fails, naming the child, and the parent
    goes on as a failed step makes it (here: it fails)."""
    store = store_kit.open(lease=LEASE)
    calls: list[str] = []
    started: list[asyncio.Event] = []
    blocking_workflow(calls, started)

    @workflow
    def caller() -> None:
        call_workflow("blocking", returns="child")

    async def main() -> Any:
        started.append(asyncio.Event())
        task = asyncio.create_task(arun_workflow(caller, run_id="cal-1", store=store))
        await asyncio.wait_for(started[0].wait(), BOUND)
        await acancel_run("cal-1/blocking#1", store)
        return await asyncio.wait_for(task, BOUND)

    run = asyncio.run(main())
    assert ("failed", "blocking") == (run.status, run.failed_step)
    assert "child run 'cal-1/blocking#1' of workflow 'blocking' ended 'cancelled'" in str(run.error)
    assert "cancelled" == status(store, "cal-1/blocking#1")


def test_a_cancelled_child_tells_its_waiting_parent(store: Store, store_kit: StoreKit) -> None:
    """A queued child cancelled by itself has ended: its parked parent gets child_finished."""

    async def main() -> None:
        opened = await store.open_run(header("p", "parent-wf", started=time.time()))
        assert opened.claim is not None
        waiting = Waiting(("call",), (child_finished("p/a#1"),), None)
        await store.park(opened.claim, waiting, (("call", 1),))
        await store.enqueue(
            header("p/a#1", "child-wf", started=time.time(), parent="p"), now_ticket()
        )
        assert (("p/a#1", "cancelled"),) == await store.cancel("p/a#1")

    asyncio.run(main())
    mail = store_kit.mailbox("p")
    assert [child_finished("p/a#1")] == [row.event for row in mail]
    assert {"run_id": "p/a#1", "status": "cancelled"} == decode(mail[0].payload)
    assert ["p"] == claimable(store, (("parent-wf", "fp"), ("child-wf", "fp"))), "woken"


def test_a_run_whose_owner_dies_after_the_request_is_cancelled_by_the_next_claim(
    store: Store, store_kit: StoreKit
) -> None:
    """Asked to stop while another host ran it, then that owner's lease ran out: whoever
    claims it next records it as cancelled, and runs none of it."""
    calls: list[str] = []

    @workflow
    def remote() -> None:
        @step
        async def work(ctx: Any) -> Any:
            calls.append("work")
            return ok()

    start_workflow(remote, store=store, run_id="rm-1")
    store_kit.set_owner("rm-1", "elsewhere|pid:[1]|7|1", time.time() + 3600)
    assert (("rm-1", "stopping"),) == asyncio.run(store.cancel("rm-1")), "its owner is alive"
    store_kit.set_owner("rm-1", "elsewhere|pid:[1]|7|1", time.time() - 1, epoch=100)
    run = run_workflow(remote, run_id="rm-1", store=store)
    assert ("cancelled", []) == (run.status, calls)
    assert "cancelled" == status(store, "rm-1")
    assert "cancelled" == run_workflow(remote, run_id="rm-1", store=store).status, "final"


def test_a_run_asked_to_stop_as_it_parks_is_claimable_at_once(store: Store) -> None:
    async def main() -> Any:
        opened = await store.open_run(header("pk-1", started=time.time()))
        assert opened.claim is not None
        assert (("pk-1", "stopping"),) == await store.cancel("pk-1")
        await store.park(opened.claim, Waiting(("w",), ("never",), None), (("w", 1),))
        claimed = await store.claim(ClaimRequest(10, (("wf", "fp"),)))
        for found in claimed:
            assert found.claim is not None
            store.release(found.claim)
        return claimed

    claimed = asyncio.run(main())
    assert [("pk-1", True)] == [(o.run_id, o.cancel_requested) for o in claimed]


def test_a_parent_cancelled_for_good_cancels_the_children_it_started_meanwhile(
    store: Store,
) -> None:
    """A child queued after the cancel (its parent had not stopped yet) goes with it."""

    async def main() -> None:
        parent = await store.open_run(header("pa", started=time.time()))
        assert parent.claim is not None
        assert (("pa", "stopping"),) == await store.cancel("pa")
        await store.enqueue(header("pa/c#1", started=time.time(), parent="pa"), now_ticket())
        await store.finish_run(parent.claim, Ending("cancelled", "{}", None, None, "[]", 0.1))

    asyncio.run(main())
    assert ("cancelled", "cancelled") == (status(store, "pa"), status(store, "pa/c#1"))


# -- retry_run ---------------------------------------------------------------------------------


def summary(run: Any) -> tuple[Any, ...]:
    """What a retry must leave alone in the original: its end, its journal, its output."""
    return (
        run.status,
        run.failed_step,
        [(s.name, s.attempt, s.status) for s in run.steps],
        dict(run.output),
    )


def test_retry_runs_again_only_what_did_not_succeed(store: Store) -> None:
    counts: Counter[str] = Counter()
    broken = {"c"}

    @workflow
    def pipeline() -> None:
        @step
        async def a(ctx: Any) -> Any:
            counts["a"] += 1
            return ok({"a": ctx["n"]})

        @step
        async def b(ctx: Any) -> Any:
            counts["b"] += 1
            return ok({"b": ctx["a"] + 1})

        @step
        async def c(ctx: Any) -> Any:
            counts["c"] += 1
            if "c" in broken:
                raise RuntimeError("c is broken")
            return ok({"c": ctx["b"] * 10})

    first = run_workflow(pipeline, {"n": 1}, run_id="pl-1", store=store)
    assert ("failed", "c") == (first.status, first.failed_step)
    original = summary(store.get_run("pl-1"))
    broken.clear()

    new_id = retry_run("pl-1", store)
    assert "pl-1.retry1" == new_id
    queued = store.get_run(new_id)
    assert queued is not None
    assert ("queued", "pipeline", None) == (queued.status, queued.workflow, queued.parent_id)
    run = run_workflow(pipeline, run_id=new_id, store=store)  # the journaled input
    assert "completed" == run.status
    assert {"n": 1, "a": 1, "b": 2, "c": 20} == dict(run.output)
    assert {"a": 1, "b": 1, "c": 2} == counts, "a and b were replayed, c ran again"
    assert original == summary(store.get_run("pl-1")), "the original is unchanged"
    assert "pl-1.retry2" == retry_run("pl-1", store), "each retry is a run of its own"


def test_retry_runs_compensated_steps_again(store: Store) -> None:
    counts: Counter[str] = Counter()
    undone: list[str] = []
    broken = [True]

    def cancel_hotel(ctx: Any) -> None:
        undone.append(ctx["hotel"])

    @workflow
    def trip() -> None:
        @step
        async def quote(ctx: Any) -> Any:
            counts["quote"] += 1
            return ok({"price": 100})

        @step(compensate=cancel_hotel)
        async def hotel(ctx: Any) -> Any:
            counts["hotel"] += 1
            return ok({"hotel": f"H-{counts['hotel']}"})

        @step
        async def flight(ctx: Any) -> Any:
            counts["flight"] += 1
            return error("no seats") if broken[0] else ok({"flight": "F-1"})

    first = run_workflow(trip, run_id="t-1", store=store)
    assert ("failed", "flight", ["H-1"]) == (first.status, first.failed_step, undone)
    broken[0] = False
    run = run_workflow(trip, run_id=retry_run("t-1", store), store=store)
    assert "completed" == run.status
    assert {"quote": 1, "hotel": 2, "flight": 2} == counts, "the undone hotel was booked again"
    assert "H-2" == run.output["hotel"]


def test_retry_from_a_step_runs_it_and_what_follows_under_a_worker(store: Store) -> None:
    counts: Counter[str] = Counter()

    @workflow
    def chain() -> None:
        @step
        async def a(ctx: Any) -> Any:
            counts["a"] += 1
            return ok({"a": counts["a"]})

        @step
        async def b(ctx: Any) -> Any:
            counts["b"] += 1
            return ok({"b": counts["b"]})

        @step
        async def c(ctx: Any) -> Any:
            counts["c"] += 1
            return ok({"c": counts["c"]})

    assert "completed" == run_workflow(chain, run_id="ch-1", store=store).status
    with pytest.raises(UsageError, match=r"its top-level nodes are: 'a', 'b', 'c'") as bad:
        retry_run("ch-1", store, from_step="z")
    assert "got 'z'" in str(bad.value)
    with pytest.raises(UsageError, match=r"from_step= takes a top-level step's name"):
        retry_run("ch-1", store, from_step="")
    assert ["ch-1"] == [r.run_id for r in store.list_runs()], "a refused retry queues nothing"

    new_id = retry_run("ch-1", store, from_step="b")

    async def main() -> Any:
        worker = Worker(store, concurrency=1, poll=0.02)
        serving = await serve(worker)
        try:
            return await flowdsl.RunHandle(new_id, store).aresult(timeout=BOUND)
        finally:
            worker.stop()
            await serving

    run = asyncio.run(main())
    assert ("completed", {"a": 1, "b": 2, "c": 2}) == (run.status, dict(run.output))
    assert {"a": 1, "b": 2, "c": 2} == counts
    everything = run_workflow(chain, run_id=retry_run("ch-1", store, from_step="a"), store=store)
    assert {"a": 2, "b": 3, "c": 3} == dict(everything.output)


def test_retry_from_a_step_after_the_failure_is_refused(store: Store) -> None:
    @workflow
    def stops_early() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return error("a failed")

        @step
        async def b(ctx: Any) -> Any:
            return ok()

    assert "failed" == run_workflow(stops_early, run_id="se-1", store=store).status
    with pytest.raises(UsageError, match=r"run 'se-1' failed at 'a', before 'b'"):
        retry_run("se-1", store, from_step="b")
    assert "se-1.retry1" == retry_run("se-1", store, from_step="a")


def test_a_retried_step_has_a_fresh_retry_budget(store: Store) -> None:
    calls = [0]

    @workflow
    def budget() -> None:
        @step
        async def prep(ctx: Any) -> Any:
            return ok({"prepped": True})

        @step(retry=Retry(max_attempts=2, base=0.0))
        async def flaky(ctx: Any) -> Any:
            calls[0] += 1
            if calls[0] < 4:  # calls 1 and 2 (the original), 3 (the retry's first)
                raise ConnectionError(f"call {calls[0]}")
            return ok({"flaky": calls[0]})

    first = run_workflow(budget, run_id="bu-1", store=store)
    assert ("failed", 2) == (first.status, calls[0]), "both attempts spent"
    run = run_workflow(budget, run_id=retry_run("bu-1", store), store=store)
    assert ("completed", 4) == (run.status, run.output["flaky"])
    assert [("prep", 1, "succeeded"), ("flaky", 1, "failed"), ("flaky", 2, "succeeded")] == [
        (s.name, s.attempt, s.status) for s in run.steps
    ], "prep replayed; flaky from attempt 1 again"


def test_retry_of_a_foreach_reruns_the_failed_item_and_the_reducer(store: Store) -> None:
    counts: Counter[str] = Counter()
    broken = [True]

    def total(ctx: Any, results: Any) -> Any:
        counts["total"] += 1
        return ok({"total": sum(r.value["v"] for r in results if isinstance(r, flowdsl.Ok))})

    @workflow
    def batch() -> None:
        @step
        async def list_items(ctx: Any) -> Any:
            counts["list"] += 1
            return ok({"items": [1, 2, 3]})

        with foreach("items", into=total):

            @step
            async def load(ctx: Any) -> Any:
                counts[f"load{ctx.item}"] += 1
                if ctx.item == 2 and broken[0]:
                    raise RuntimeError("item 2 is broken")
                return ok({"v": ctx.item * 10})

        @step
        async def finish(ctx: Any) -> Any:
            counts["finish"] += 1
            if broken[0]:
                raise RuntimeError("finish is broken")
            return ok({"done": ctx["total"]})

    first = run_workflow(batch, run_id="ba-1", store=store)
    assert ("failed", "finish", 40) == (first.status, first.failed_step, first.output["total"])
    broken[0] = False
    by_default = run_workflow(batch, run_id=retry_run("ba-1", store), store=store)
    assert ("completed", 60) == (by_default.status, by_default.output["done"])
    assert {
        "list": 1, "load1": 1, "load2": 2, "load3": 1, "total": 2, "finish": 2
    } == counts, "only item 2 ran again, and the reducer with it"  # fmt: skip
    # From finish: the block is kept as it ended (item 2 failed, the total 40).
    from_finish = run_workflow(
        batch, run_id=retry_run("ba-1", store, from_step="finish"), store=store
    )
    assert ("completed", 40) == (from_finish.status, from_finish.output["done"])
    assert {
        "list": 1, "load1": 1, "load2": 2, "load3": 1, "total": 2, "finish": 3
    } == counts  # fmt: skip


def test_retry_keeps_a_child_runs_outcome_and_a_waits_event(store: Store) -> None:
    counts: Counter[str] = Counter()
    broken = [True]

    @workflow
    def charge() -> None:
        @step
        async def pay(ctx: Any) -> Any:
            counts["pay"] += 1
            return ok({"paid": 5})

    @workflow
    def order() -> None:
        call_workflow("charge", returns="receipt")
        wait_for_event("shipped", returns="tracking")

        @step
        async def notify(ctx: Any) -> Any:
            counts["notify"] += 1
            if broken[0]:
                raise RuntimeError("mail is down")
            return ok({"told": ctx["tracking"]})

    async def original() -> Any:
        task = asyncio.create_task(arun_workflow(order, run_id="or-1", store=store))
        await until(lambda: store.get_run("or-1") is not None, "the run began", BOUND)
        await flowdsl.asend_event("or-1", "shipped", "TR-9", store=store)
        return await asyncio.wait_for(task, BOUND)

    assert ("failed", "notify") == (lambda r: (r.status, r.failed_step))(asyncio.run(original()))
    broken[0] = False
    run = run_workflow(order, run_id=retry_run("or-1", store), store=store)
    assert ("completed", "TR-9") == (run.status, run.output["told"]), "no event sent again"
    assert {"pay": 1, "notify": 2} == counts, "the child run was not run again"
    assert [] == store.list_runs(parent="or-1.retry1")


def test_retry_needs_an_ended_run(store: Store) -> None:
    @workflow
    def later() -> None:
        @step
        async def only(ctx: Any) -> Any:
            return ok()

    start_workflow("later", store=store, run_id="la-1")
    with pytest.raises(UsageError, match=r"run 'la-1' is queued: only a run that has ended"):
        retry_run("la-1", store)
    with pytest.raises(RunNotFound, match=r"no run 'nope'"):
        retry_run("nope", store)


def walk(nodes: tuple[Node, ...]) -> tuple[Any, ...]:
    """(top, owner, inside) of a plan's nodes, walked (what `outline` reads off the shape)."""
    owner: dict[str, str] = {}
    inside: dict[str, set[str]] = {}

    def visit(node: Node, top: str, blocks: list[str]) -> None:
        owner[node.name] = top
        for block in blocks:
            inside[block].add(node.name)
        if isinstance(node, ParallelNode | ForeachNode | SequenceNode):
            inside[node.name] = set()
            for child in node.children:
                visit(child, top, [*blocks, node.name])
        else:
            assert isinstance(node, StepNode | WaitNode | CallNode)

    for node in nodes:
        visit(node, node.name, [])
    return tuple(n.name for n in nodes), owner, {k: frozenset(v) for k, v in inside.items()}


@settings(max_examples=60)
@given(case=fst.workflows(max_steps=8, max_depth=3))
def test_the_recorded_shape_outlines_the_workflow(case: fst.WorkflowCase) -> None:
    """What a retry reads off the store (the definition's shape) is the compiled plan's tree."""
    found = outline(case.workflow.plan.shape)
    assert walk(case.workflow.plan.nodes) == (found.top, dict(found.owner), dict(found.inside))


@settings(
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=fst.workflows(max_steps=6, max_depth=2, modes=("sync", "async")), data=st.data())
def test_a_retry_of_any_workflow_ends_as_the_workflow_must(
    store: Store, case: fst.WorkflowCase, data: st.DataObject
) -> None:
    """Replaying part of a journal changes nothing: a retry (by default, or from any
    top-level node not after the failure) ends as the run itself must."""
    run_id = uuid.uuid4().hex
    case.check(case.run(run_id=run_id, store=store))
    top = outline(case.workflow.plan.shape).top
    from_step = data.draw(st.none() | st.sampled_from(top), label="from_step")
    refused: list[str] = []
    try:
        new_id = retry_run(run_id, store, from_step=from_step)
    except UsageError as exc:
        refused.append(str(exc))
    if refused:  # only a from_step after the node where the run failed is refused
        assert from_step is not None
        assert "failed at" in refused[0], refused[0]
        return
    case.check(case.workflow.run(run_id=new_id, store=store))


# -- prune_runs --------------------------------------------------------------------------------


def test_prune_deletes_only_ended_runs_older_than_the_cut(
    store: Store, store_kit: StoreKit
) -> None:
    @workflow
    def tiny() -> None:
        @step
        async def only(ctx: Any) -> Any:
            return ok() if ctx["ok"] else error("no")

    for run_id, good in (("old-done", True), ("old-failed", False), ("new-done", True)):
        run_workflow(tiny, {"ok": good}, run_id=run_id, store=store)
    start_workflow("tiny", {"ok": True}, store=store, run_id="old-queued")
    start_workflow("tiny", {"ok": True}, store=store, run_id="old-cancelled")
    cancel_run("old-cancelled", store)

    async def unfinished() -> None:
        opened = await store.open_run(header("old-running", started=time.time()))
        assert opened.claim is not None
        parked = await store.open_run(header("old-parent", started=time.time()))
        assert parked.claim is not None
        waiting = Waiting(("call",), (child_finished("old-parent/a#1"),), None)
        await store.park(parked.claim, waiting, (("call", 1),))
        child = await store.open_run(
            header("old-parent/a#1", started=time.time(), parent="old-parent")
        )
        assert child.claim is not None
        await store.finish_run(child.claim, Ending("completed", "{}", None, None, "[]", 0.1))

    asyncio.run(unfinished())
    assert 1 == len(store_kit.mailbox("old-parent")), "its child's end"
    old = [r.run_id for r in store.list_runs() if r.run_id.startswith("old-")]
    for run_id in old:
        store_kit.backdate(run_id, 7200)

    assert 1 == prune_runs(store, older_than=3600, status="failed")
    assert 0 == prune_runs(store, older_than=3600, status=("failed",)), "gone already"
    assert 0 == prune_runs(store, older_than=3 * 3600)
    assert 3 == prune_runs(store, older_than=3600), "old-done, old-cancelled, old-parent/a#1"
    assert ["new-done", "old-parent", "old-queued", "old-running"] == sorted(
        r.run_id for r in store.list_runs()
    ), "never queued, running or waiting ones, nor the recent"
    assert {"new-done"} == {row.run_id for row in store_kit.attempt_rows()}, "journals gone"

    cancel_run("old-parent", store)  # parked: cancelled now, its mailbox still holds the notice
    store_kit.backdate("old-parent", 7200)
    assert 1 == prune_runs(store, older_than=3600, status=("cancelled", "completed"))
    assert [] == store_kit.mailbox("old-parent"), "the events sent to it went with it"
    assert not store_kit.has_run("old-parent")
    assert 1 == prune_runs(store, older_than=0), "older than 0 s: every ended run"
    assert ["old-queued", "old-running"] == sorted(r.run_id for r in store.list_runs())

    with pytest.raises(UsageError, match=r"deletes ended runs only, never 'running'"):
        prune_runs(store, older_than=60, status=("failed", "running"))
    with pytest.raises(UsageError, match=r"older_than= must be a number of seconds >= 0"):
        prune_runs(store, older_than=-1)


# -- the migration from schema 6 ---------------------------------------------------------------


def test_a_schema_6_store_is_migrated_and_its_runs_managed(store_kit: StoreKit) -> None:
    counts: Counter[str] = Counter()

    @workflow
    def recorded() -> None:
        @step
        async def first(ctx: Any) -> Any:
            counts["first"] += 1
            return ok({"kept": ctx["n"]})

        @step
        async def second(ctx: Any) -> Any:
            counts["second"] += 1
            return ok() if ctx["n"] else error("n is 0")

    store = store_kit.open()
    for n in range(3):
        run_workflow(recorded, {"n": n}, run_id=f"done-{n}", store=store)
    start_workflow("recorded", {"n": 5}, store=store, run_id="queued-1")
    before = [summary(run) for run in store.list_runs()]
    store.close()
    store_kit.as_schema_6()
    assert 6 == store_kit.schema_version()

    migrated = store_kit.open()
    assert store_kit.release_schema == store_kit.schema_version()
    assert before == [summary(run) for run in migrated.list_runs()], "every run, as it was"
    assert ["done-2", "done-1"] == [
        r.run_id for r in migrated.list_runs(limit=2, status="completed")
    ]
    cancel_run("queued-1", migrated)
    assert "cancelled" == status(migrated, "queued-1")
    run = run_workflow(recorded, run_id=retry_run("done-0", migrated), store=migrated)
    assert ("failed", 3, 4) == (run.status, counts["first"], counts["second"]), "first replayed"


# -- the command line --------------------------------------------------------------------------

_ROOT = str(Path(flowdsl.__file__).resolve().parent.parent)
"""Where the flowdsl these tests import lives: the command line runs that same code."""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m flowdsl ARGS` on this flowdsl, off a terminal."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "COLUMNS")
    }
    env["PYTHONPATH"] = _ROOT
    return subprocess.run(
        [sys.executable, "-m", "flowdsl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


class Done:
    """What a command did: its exit status and what it printed (as `subprocess` reports)."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Done:
    """``flowdsl ARGS`` in this process (the console script's `main`): quicker than `cli`."""
    from flowdsl.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return Done(int(exited.value.code or 0), out, err)


def clean_error(done: Any, *parts: str) -> None:
    """Exit 2, nothing on stdout, a message naming `parts`, no traceback."""
    assert 2 == done.returncode, done.stderr
    assert "" == done.stdout
    assert "Traceback" not in done.stderr
    for part in parts:
        assert part in done.stderr, done.stderr


@pytest.fixture
def cli_store(store_kit: StoreKit) -> tuple[Store, str]:
    """The kit's store with three ended runs of two workflows, and its URL."""

    @workflow
    def greet() -> None:
        @step
        async def hello(ctx: Any) -> Any:
            return ok({"greeting": "hi"})

    @workflow
    def shout() -> None:
        @step
        async def loud(ctx: Any) -> Any:
            return error("too loud") if ctx.get("fail") else ok({"loud": True})

    store = store_kit.open()
    run_workflow(greet, run_id="g-1", store=store)
    run_workflow(shout, {"fail": True}, run_id="s-1", store=store)
    run_workflow(greet, run_id="g-2", store=store)
    return store, store_kit.url


def test_cli_runs_list_filters_and_limits(
    cli_store: tuple[Store, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = cli_store

    def listed(*args: str) -> list[str]:
        done = run_cli(capsys, "runs", "list", "--store", url, *args)
        assert 0 == done.returncode, done.stderr
        return [run["run_id"] for run in json.loads(done.stdout)]

    shell = cli("runs", "list", "--store", url, "--limit", "2")  # the real command, once
    assert 0 == shell.returncode, shell.stderr
    assert ["g-2", "s-1"] == [run["run_id"] for run in json.loads(shell.stdout)], "newest first"
    assert ["g-1", "s-1", "g-2"] == listed(), "oldest first"
    assert ["g-2"] == listed("--limit", "1")
    assert ["g-1", "g-2"] == listed("--workflow", "greet")
    assert ["s-1"] == listed("--status", "failed", "--workflow", "shout")
    assert ["g-1", "s-1", "g-2"] == listed("--since", "2000-01-01T00:00:00+00:00")
    assert [] == listed("--since", "2999-01-01"), "local time, with no zone"
    clean_error(
        run_cli(capsys, "runs", "list", "--store", url, "--since", "yesterday"),
        "not an ISO 8601 time",
    )
    clean_error(run_cli(capsys, "runs", "list", "--store", url, "--limit", "0"), "--limit")


def test_cli_runs_cancel(cli_store: tuple[Store, str], capsys: pytest.CaptureFixture[str]) -> None:
    store, url = cli_store
    start_workflow("greet", store=store, run_id="q-1")
    done = cli("runs", "cancel", "q-1", "--store", url)
    assert 0 == done.returncode, done.stderr
    assert "run 'q-1' cancelled" in done.stderr
    assert "cancelled" == status(store, "q-1")
    clean_error(cli("runs", "cancel", "nope", "--store", url), "no run 'nope' in", "runs list")
    clean_error(run_cli(capsys, "runs", "cancel", "g-1", "--store", url), "'g-1' has completed")
    clean_error(run_cli(capsys, "runs", "cancel", "q-1", "--store", url), "cancelled already")


def test_cli_runs_retry_prints_the_new_run_id(
    cli_store: tuple[Store, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, url = cli_store
    done = cli("runs", "retry", "s-1", "--store", url)
    assert (0, "s-1.retry1\n") == (done.returncode, done.stdout), done.stderr
    assert "queued" == status(store, "s-1.retry1")
    again = run_cli(capsys, "runs", "retry", "g-1", "--store", url, "--from", "hello")
    assert (0, "g-1.retry1\n") == (again.returncode, again.stdout), again.stderr
    clean_error(run_cli(capsys, "runs", "retry", "g-1", "--store", url, "--from", "x"), "'hello'")
    clean_error(cli("runs", "retry", "nope", "--store", url), "no run 'nope' in")
    clean_error(run_cli(capsys, "runs", "retry", "s-1.retry1", "--store", url), "is queued")


def test_cli_runs_prune(
    cli_store: tuple[Store, str], store_kit: StoreKit, capsys: pytest.CaptureFixture[str]
) -> None:
    store, url = cli_store
    store_kit.backdate("g-1", 3 * 86400)
    store_kit.backdate("s-1", 3 * 3600)
    done = cli("runs", "prune", "--store", url, "--older-than", "2d")
    assert (0, "1\n") == (done.returncode, done.stdout), done.stderr
    assert "1 ended run deleted" in done.stderr
    only = run_cli(
        capsys, "runs", "prune", "--store", url, "--older-than", "90m", "--status", "completed"
    )
    assert (0, "0\n") == (only.returncode, only.stdout), only.stderr
    assert ["g-2", "s-1"] == sorted(r.run_id for r in store.list_runs())
    assert "2\n" == run_cli(capsys, "runs", "prune", "--store", url, "--older-than", "0s").stdout
    clean_error(cli("runs", "prune", "--store", url, "--older-than", "2w"), "not a duration")
    for bad in ("2", "-1h", "h", "1.5.2d", "1 d"):
        clean_error(
            run_cli(capsys, "runs", "prune", "--store", url, "--older-than", bad), "not a duration"
        )
    clean_error(run_cli(capsys, "runs", "prune", "--store", url), "--older-than")


def test_cli_durations_and_times() -> None:
    from flowdsl.cli._commands import parse_duration, parse_time

    for text, seconds in (("90s", 90), ("15m", 900), ("1.5h", 5400), ("7d", 604_800), ("0s", 0)):
        assert seconds == parse_duration(None, None, text)  # type: ignore[arg-type]
    aware = parse_time(None, None, "2025-05-01T12:00+02:00")  # type: ignore[arg-type]
    assert aware == dt.datetime(2025, 5, 1, 10, 0, tzinfo=dt.UTC)
    naive = parse_time(None, None, "2025-05-01T12:00")  # type: ignore[arg-type]
    assert naive is not None
    assert naive.tzinfo is not None, "taken as local time"
    assert naive.replace(tzinfo=None) == dt.datetime(2025, 5, 1, 12, 0)


def test_cli_says_to_retry_a_run_cancelled_for_good(store_kit: StoreKit) -> None:
    """`runs resume` of a run cancel_run stopped prints it (exit 1) and says how to retry it."""
    from flowdsl.cli._targets import import_source

    hello = Path(__file__).parent / "cli_fixtures" / "hello.py"
    greet = import_source(str(hello)).greet  # the command's workflow, definition and all
    store = store_kit.open()
    start_workflow(greet, store=store, run_id="gr-1")
    cancel_run("gr-1", store)
    done = cli("runs", "resume", "gr-1", "--store", store_kit.url, "--module", str(hello))
    assert 1 == done.returncode, done.stderr
    retry = shlex.join(["flowdsl", "runs", "retry", "gr-1", "--store", store_kit.url])
    assert f"retry it with: {retry}" in done.stderr
    assert "resume it with" not in done.stderr
