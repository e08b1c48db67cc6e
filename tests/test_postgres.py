"""What only `PostgresStore` does: group commit, LISTEN/NOTIFY wake-ups, its schema checks.

Everything the stores share (the run_id rules, leases and fencing, crashes,
workers, waits) is tested on PostgreSQL by the suites that take `store_kit`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psycopg
import pytest
from stores import StoreKit

from flowdsl import (
    PostgresStore,
    Worker,
    arun_workflow,
    asend_event,
    astart_workflow,
    ok,
    step,
    wait_for_event,
    workflow,
)
from flowdsl.errors import StoreError, UsageError
from flowdsl.stores import _owner, _postgres
from flowdsl.stores._owner import owner_token
from flowdsl.stores._protocol import ClaimRequest, Ending, RunHeader

pytestmark = pytest.mark.usefixtures("flowdsl_registry")


def sql(kit: StoreKit, statement: str) -> None:
    with psycopg.connect(kit.url, autocommit=True) as conn:
        conn.execute(statement)


def test_concurrent_runs_share_their_journal_statements(
    pg_kit: StoreKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 runs of 5 steps at once: 500 journal entries in far fewer statements (and commits)."""
    statements: list[int] = []
    insert = _postgres._Engine.insert

    async def counted(conn: Any, batch: Any) -> Any:
        statements.append(len(batch))
        return await insert(conn, batch)

    monkeypatch.setattr(_postgres._Engine, "insert", staticmethod(counted))

    @workflow
    def five() -> None:
        for n in range(5):
            step(lambda ctx, n=n: ok({f"k{n}": n}), name=f"s{n}")

    store = pg_kit.open()

    async def main() -> list[str]:
        runs = await asyncio.gather(
            *(arun_workflow(five, run_id=f"r{n}", store=store) for n in range(100))
        )
        return [run.status for run in runs]

    assert ["completed"] * 100 == asyncio.run(main())
    assert 500 == sum(statements) == len(pg_kit.attempt_rows())
    assert len(statements) < 500 / 4, statements  # each statement carried several runs' entries
    assert max(statements) > 1


def test_an_idle_worker_is_woken_by_notify_not_by_its_poll(pg_kit: StoreKit) -> None:
    """A worker polling every 30 s runs a run queued after it went idle, well within 30 s."""

    @workflow
    def hello() -> None:
        step(lambda ctx: ok({"hi": True}), name="greet")

    store = pg_kit.open()

    async def main() -> float:
        worker = Worker(store, concurrency=2, poll=30.0)
        serving = asyncio.create_task(worker.arun())
        try:
            await asyncio.sleep(0.3)  # idle: waiting for work
            began = time.monotonic()
            handle = await astart_workflow("hello", store=store, run_id="h-1")
            run = await handle.aresult(timeout=20)
            assert "completed" == run.status
            return time.monotonic() - began
        finally:
            worker.stop()
            await serving

    assert asyncio.run(main()) < 20  # a poll would have taken 30 s


def test_an_event_sent_through_another_store_wakes_a_run_waiting_in_place(
    pg_kit: StoreKit,
) -> None:
    """The mailbox is polled once a minute; NOTIFY brings an event from another process at once."""

    @workflow
    def waiting() -> None:
        wait_for_event("go", returns="go")

    here, there = pg_kit.open(), pg_kit.open()  # two store objects: two processes' connections

    async def main() -> Any:
        task = asyncio.create_task(arun_workflow(waiting, run_id="w-1", store=here))
        deadline = time.monotonic() + 10
        while here.get_run("w-1") is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # waiting for its event now
        await asend_event("w-1", "go", {"n": 1}, store=there)
        return await asyncio.wait_for(task, timeout=20)  # the mailbox poll would take 60 s

    run = asyncio.run(main())
    assert ("completed", {"n": 1}) == (run.status, run.output["go"])


def test_a_store_with_synchronous_commit_off_runs_durably(pg_kit: StoreKit) -> None:
    @workflow
    def one() -> None:
        step(lambda ctx: ok({"a": 1}), name="a")

    store = pg_kit.open(synchronous_commit="off")
    assert "completed" == asyncio.run(arun_workflow(one, run_id="s-1", store=store)).status
    assert ["a"] == [row.step for row in pg_kit.attempt_rows()]


def test_bad_arguments_say_what_to_pass() -> None:
    with pytest.raises(UsageError, match="needs a connection string such as"):
        PostgresStore("")
    with pytest.raises(UsageError, match="cannot read the connection string"):
        PostgresStore("host=127.0.0.1 port")
    with pytest.raises(UsageError, match="pool_size= takes a whole number"):
        PostgresStore("postgresql://u@127.0.0.1:1/d", pool_size=0)
    with pytest.raises(UsageError, match="synchronous_commit= must be 'on' or 'off'"):
        PostgresStore("postgresql://u@127.0.0.1:1/d", synchronous_commit="local")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="lease="):
        PostgresStore("postgresql://u@127.0.0.1:1/d", lease=0)


def test_a_password_is_never_shown(pg_kit: StoreKit) -> None:
    url = pg_kit.url.replace("://postgres@", "://postgres:hunter2@", 1)
    assert "hunter2" in url, "the kit's URL names user postgres"
    with PostgresStore(url) as store:  # trust auth: any password is accepted
        assert "hunter2" not in repr(store)
        assert "***" in repr(store)


def test_a_database_of_a_newer_flowdsl_is_refused_naming_both_versions(pg_kit: StoreKit) -> None:
    pg_kit.open().close()  # creates the tables
    sql(pg_kit, "UPDATE flowdsl_schema SET version = 99")
    reads = _postgres.SCHEMA_VERSION
    with pytest.raises(StoreError, match=rf"journal schema 99, this release reads {reads}"):
        PostgresStore(pg_kit.url)


def test_tables_that_are_not_a_flowdsl_store_are_refused(pg_kit: StoreKit) -> None:
    sql(pg_kit, "CREATE TABLE flowdsl_runs (x integer)")
    with pytest.raises(StoreError, match=r"incomplete flowdsl schema \(the flowdsl_schema table"):
        PostgresStore(pg_kit.url)


def test_a_search_path_naming_no_schema_says_so(pg_kit: StoreKit) -> None:
    url = pg_kit.url.replace("csearch_path%3Dt_", "csearch_path%3Dmissing_", 1)
    assert url != pg_kit.url
    with pytest.raises(StoreError, match="has no schema to create its tables in"):
        PostgresStore(url)


def test_two_opens_of_one_run_in_one_process_claim_it_once(pg_kit: StoreKit) -> None:
    """The run counts as executing here before its claim commits: the second open waits on
    the row, sees it taken by this very process, and claims nothing."""
    store = pg_kit.open()

    async def main() -> list[int]:
        counts = []
        for n in range(30):
            header = RunHeader(f"r{n}", "w", "fp", ("a",), "{}", time.time())
            opened = await asyncio.gather(store.open_run(header), store.open_run(header))
            counts.append(sum(o.claim is not None for o in opened))
        return counts

    assert [1] * 30 == asyncio.run(main())


def test_a_dead_owner_on_this_host_is_claimed_at_once_beside_live_ones(pg_kit: StoreKit) -> None:
    """Its lease holds for an hour, but its process is gone; live siblings' runs stay put."""
    store = pg_kit.open()
    host, namespace = owner_token().split("|")[:2]
    parent = os.getppid()
    stat = _owner._proc_stat(parent)
    assert isinstance(stat, tuple)
    live = f"{host}|{namespace}|{parent}|{stat[1].decode()}"
    dead = f"{host}|{namespace}|999999999|1"

    @workflow
    def w() -> None:
        step(lambda ctx: ok({"a": 1}), name="a")

    fingerprint = w.plan.fingerprint
    for n, owner in enumerate((live, live, live, dead)):
        header = RunHeader(f"r{n}", "w", fingerprint, ("a",), "{}", time.time() + n)
        asyncio.run(store.open_run(header))
        pg_kit.set_owner(f"r{n}", owner, time.time() + 3600)
    claimed = asyncio.run(store.claim(ClaimRequest(1, (("w", fingerprint),))))
    assert ["r3"] == [opened.run_id for opened in claimed]
    assert [("running", live)] * 3 == [pg_kit.status_of(f"r{n}") for n in range(3)]


def test_an_event_for_a_run_id_too_long_for_a_notice_is_sent(pg_kit: StoreKit) -> None:
    """A notice's payload is under 8,000 bytes; a longer run id still gets its events."""

    @workflow
    def waiting() -> None:
        wait_for_event("go", returns="go")

    store = pg_kit.open()
    run_id = "r" * 9000

    async def main() -> Any:
        task = asyncio.create_task(arun_workflow(waiting, run_id=run_id, store=store))
        deadline = time.monotonic() + 10
        while store.get_run(run_id) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asend_event(run_id, "go", 1, store=store)
        return await asyncio.wait_for(task, timeout=20)

    assert 1 == asyncio.run(main()).output["go"]


def test_close_finishes_a_write_in_flight(pg_kit: StoreKit) -> None:
    """A run's final record handed to the store as it closes is committed, not cancelled."""
    store = pg_kit.open()
    header = RunHeader("c-1", "w", "fp", ("a",), "{}", time.time())
    opened = asyncio.run(store.open_run(header))
    assert opened.claim is not None
    ending = Ending("completed", "{}", None, None, "[]", 0.1)

    async def main() -> None:
        finishing = asyncio.ensure_future(store.finish_run(opened.claim, ending))
        await asyncio.sleep(0)  # handed over to the store's loop
        await asyncio.to_thread(store.close)
        await finishing

    asyncio.run(main())
    assert ("completed", None) == pg_kit.status_of("c-1")
