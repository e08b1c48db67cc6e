"""What only `PostgresStore` does: group commit, LISTEN/NOTIFY wake-ups, its schema checks.

Everything the stores share (the run_id rules, leases and fencing, crashes,
workers, waits) is tested on PostgreSQL by the suites that take `store_kit`.
"""

from __future__ import annotations

import asyncio
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
from flowdsl.stores import _postgres

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
    with pytest.raises(StoreError, match=r"journal schema 99, this release reads 4"):
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
