"""The store under faults: cancels at its commit points, interrupts, damaged files, old schemas.

Every path records what really happened and gives the claim back at once; a
damaged run is a `StoreError` naming it, and never hides the healthy ones.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowdsl import (
    Event,
    Run,
    RunFinished,
    SQLiteStore,
    aresume_runs,
    arun_workflow,
    error,
    ok,
    parallel,
    resume_runs,
    run_workflow,
    step,
    workflow,
)
from flowdsl.errors import StoreError
from flowdsl.stores._sqlite import SCHEMA_VERSION

pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(db) as opened:
        yield opened


class WriteLock:
    """Holds the database's write lock from another connection: the store's writer waits."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def take(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def give_back(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def status_of(db: Path, run_id: str) -> tuple[str, str | None] | None:
    """The run's status and owner as the file says now (None: no such run yet)."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT status, owner FROM flowdsl_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else (row[0], row[1])


def wait_for(predicate: Any, what: str) -> None:
    """Poll `predicate` (the store's writer thread works in the background), up to 30 s."""
    done = threading.Event()
    for _ in range(3000):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# -- cancels at the store's commit points ------------------------------------------------------


def test_a_run_cancelled_while_it_opens_is_recorded_cancelled_and_given_back(db: Path) -> None:
    """The claim commits after the caller gave up: it is released, the run cancelled, at once."""
    ran: list[str] = []

    @workflow
    def opening() -> None:
        step(lambda ctx: ran.append("a"), name="a")

    store = SQLiteStore(db)
    run_workflow(opening, run_id="warm", store=store)  # the writer thread is up
    lock = WriteLock(db)
    lock.take()

    async def cancel_during_open() -> None:
        task = asyncio.ensure_future(arun_workflow(opening, run_id="r1", store=store))
        for _ in range(5):
            await asyncio.sleep(0)  # the open job is queued; the writer waits for the lock
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_during_open())  # this loop is closed before the claim commits
    lock.give_back()
    wait_for(lambda: status_of(db, "r1") == ("cancelled", None), "the claim to be given back")
    assert ["a"] == ran  # only the warm-up run's step
    assert [] == store.resumable()  # a run its caller cancelled is not resumed by resume_runs
    again = run_workflow(opening, run_id="r1", store=store)  # not "executed by <itself>"
    assert ("completed", ["a", "a"]) == (again.status, ran)
    store.close()


def test_a_cancel_while_the_final_record_is_written_waits_for_it(db: Path) -> None:
    """The store, the listeners and the caller agree: completed, RunFinished, then the cancel."""
    events: list[Event] = []
    lock = WriteLock(db)

    @workflow
    def finishing() -> None:
        step(lambda ctx: ok({"done": True}), name="last")

    def hold_the_file(event: Event) -> None:
        if type(event).__name__ == "StepFinished":
            lock.take()  # the final record will wait for the lock
            reached.set()
        events.append(event)

    reached = threading.Event()
    store = SQLiteStore(db)

    async def main() -> None:
        task = asyncio.ensure_future(
            arun_workflow(finishing, run_id="r1", store=store, listeners=[hold_the_file])
        )
        await asyncio.to_thread(reached.wait, 30)
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        asyncio.get_running_loop().call_later(0.05, lock.give_back)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert isinstance(events[-1], RunFinished)
    assert "completed" == events[-1].run.status
    assert ("completed", None) == status_of(db, "r1")
    store.close()


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_a_step_records_the_run_cancelled(
    store: SQLiteStore, db: Path, kind: type[BaseException]
) -> None:
    """Not left "running": the store says cancelled and gives the run up, then it propagates."""
    events: list[Event] = []

    @workflow
    def interrupted() -> None:
        step(lambda ctx: ok({"a": 1}), name="a")

        @step
        def stop(ctx: Any) -> None:
            raise kind()

    with pytest.raises(kind):
        run_workflow(interrupted, run_id="r1", store=store, listeners=[events.append])
    assert ("cancelled", None) == status_of(db, "r1")
    assert isinstance(events[-1], RunFinished)
    recorded = store.get_run("r1")
    assert recorded is not None
    assert ("cancelled", {"a": 1}) == (recorded.status, dict(recorded.output))


# -- nothing runs twice across a resume: compensations and reducers ------------------------------


def test_a_finished_compensation_never_runs_again_on_resume(store: SQLiteStore) -> None:
    """A refund paid before the crash is not paid again; the one not reached runs once."""
    paid: list[str] = []
    gate = asyncio.Event

    async def refund(ctx: Any) -> None:
        paid.append(f"refund {ctx.step}")

    async def release_hold(ctx: Any) -> None:
        if not state["resumed"]:
            state["undoing"].set()
            await asyncio.Event().wait()  # cancelled here, after the refund was journaled
        paid.append("release hold")

    state: dict[str, Any] = {"resumed": False}

    @workflow
    def payment() -> None:
        step(lambda ctx: ok({"hold": 1}), name="hold", compensate=release_hold)
        step(lambda ctx: ok({"charge": 1}), name="charge", compensate=refund)
        step(lambda ctx: error("shipping failed"), name="ship")

    async def main() -> Run:
        state["undoing"] = gate()
        task = asyncio.ensure_future(arun_workflow(payment, run_id="p1", store=store))
        await state["undoing"].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state["resumed"] = True
        return await arun_workflow(payment, run_id="p1", store=store)

    run = asyncio.run(main())
    assert ["refund charge", "release hold"] == paid
    assert ("failed", "ship") == (run.status, run.failed_step)
    assert [("charge", "succeeded"), ("hold", "succeeded")] == [
        (c.step, c.status) for c in run.compensations
    ]


def test_a_journaled_reducer_outcome_is_replayed_not_recomputed(store: SQLiteStore) -> None:
    """into= ran before the crash: the resumed run uses its journaled outcome."""
    reduced: list[int] = []
    state: dict[str, Any] = {}

    def total(ctx: Any, results: Any) -> Any:
        reduced.append(len(results))
        return ok({"total": sum(r.value for r in results.values())})

    @workflow
    def summed() -> None:
        with parallel(name="fan", into=total):
            step(lambda ctx: 1, name="a")
            step(lambda ctx: 2, name="b")

        @step
        async def after(ctx: Any) -> Any:
            if "resumed" not in state:
                state["after"].set()
                await asyncio.Event().wait()
            return ok({"seen": ctx["total"]})

    async def main() -> Run:
        state["after"] = asyncio.Event()
        task = asyncio.ensure_future(arun_workflow(summed, run_id="s1", store=store))
        await state["after"].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state["resumed"] = True
        return await arun_workflow(summed, run_id="s1", store=store)

    run = asyncio.run(main())
    assert ("completed", 3, [2]) == (run.status, run.output["seen"], reduced)


# -- damaged stores ------------------------------------------------------------------------


def two_runs(store: SQLiteStore) -> None:
    """A completed run 'good' and a run 'bad' left unfinished (so both can be resumed)."""

    @workflow
    def pair() -> None:
        step(lambda ctx: ok({"a": 1}), name="a")

        @step
        async def b(ctx: Any) -> Any:
            if ctx.run_id.endswith("-wait") and not state.get("go"):
                state["reached"].set()
                await asyncio.Event().wait()
            return ok({"b": 2})

    state: dict[str, Any] = {}

    async def main() -> None:
        state["reached"] = asyncio.Event()
        for run_id in ("good-wait", "bad-wait"):
            state["reached"].clear()
            task = asyncio.ensure_future(arun_workflow(pair, run_id=run_id, store=store))
            await state["reached"].wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        state["go"] = True
        await arun_workflow(pair, run_id="done", store=store)

    asyncio.run(main())


def edit(db: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(sql, args)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("sql", "read", "resume"),
    [
        # A step outcome is read when the run resumes (get_run shows attempts, not outcomes).
        ("UPDATE flowdsl_attempts SET outcome = '{not json' WHERE run_id = ?", True, False),
        ("UPDATE flowdsl_runs SET input = '[1, 2' WHERE run_id = ?", True, False),
        ('UPDATE flowdsl_runs SET shape = \'{"$": "nope"}\' WHERE run_id = ?', True, False),
        ("UPDATE flowdsl_runs SET output = '{\"$\": 1' WHERE run_id = ?", False, True),
        ("UPDATE flowdsl_runs SET status = 'exploded' WHERE run_id = ?", False, True),
    ],
    ids=["journal", "input", "definition", "output", "status"],
)
def test_a_damaged_run_is_a_store_error_and_the_others_stay_usable(
    store: SQLiteStore, db: Path, sql: str, read: bool, resume: bool
) -> None:
    """What cannot be read is a StoreError naming the run; listing and resuming the rest work."""
    two_runs(store)
    edit(db, sql, "bad-wait")
    damaged: list[str] = []
    listed = store.list_runs(on_damaged=lambda run_id, exc: damaged.append(run_id))
    if read:
        assert store.get_run("bad-wait") is not None
        assert ([], {"done", "good-wait", "bad-wait"}) == (damaged, {r.run_id for r in listed})
    else:
        with pytest.raises(StoreError, match=r"run 'bad-wait' is damaged in the store: its \w+"):
            store.get_run("bad-wait")
        assert (["bad-wait"], {"done", "good-wait"}) == (damaged, {r.run_id for r in listed})

    async def resume_all() -> list[Run]:
        return await aresume_runs(store, include_cancelled=True)

    if resume:  # bad-wait is still resumable (its output is rewritten), or not unfinished
        assert "good-wait" in [r.run_id for r in asyncio.run(resume_all())]
    else:
        with pytest.raises(StoreError, match=r"run 'bad-wait' (is damaged|cannot resume)"):
            asyncio.run(resume_all())
    good = store.get_run("good-wait")
    assert good is not None
    assert ("completed", 2) == (good.status, good.output["b"])


def test_list_runs_logs_a_damaged_run_when_nobody_asks(
    store: SQLiteStore, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without on_damaged, a damaged run is left out with a warning on the 'flowdsl' logger."""
    two_runs(store)
    edit(db, "UPDATE flowdsl_runs SET output = 'nope' WHERE run_id = ?", "bad-wait")
    with caplog.at_level("WARNING", logger="flowdsl"):
        listed = store.list_runs()
    assert {"done", "good-wait"} == {r.run_id for r in listed}
    assert any("'bad-wait' is damaged" in record.getMessage() for record in caplog.records)


def test_a_file_with_damaged_pages_is_a_store_error(db: Path) -> None:
    """Garbage over the file's pages: opening or reading says the store is damaged."""

    @workflow
    def filled() -> None:
        step(lambda ctx: ok({"blob": "x" * 20_000}), name="a")

    with SQLiteStore(db) as store:
        for n in range(5):
            run_workflow(filled, run_id=f"r{n}", store=store)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    with open(db, "r+b") as file:
        file.seek(size // 2)
        file.write(os.urandom(8192))

    def read_everything() -> None:
        with SQLiteStore(db) as store:
            store.list_runs()
            for n in range(5):
                store.get_run(f"r{n}")

    with pytest.raises(StoreError, match=r"runs\.db") as caught:
        read_everything()
    assert "damaged" in str(caught.value) or "malformed" in str(caught.value)


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    """Not SQLite, or SQLite holding other tables: refused, naming what was found."""
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 1000)
    with pytest.raises(StoreError, match="is not a flowdsl store, or the file is damaged"):
        SQLiteStore(text)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.close()
    with pytest.raises(StoreError, match=r"not a flowdsl store \(its tables: customers\)"):
        SQLiteStore(other)


def test_a_partial_schema_is_refused_naming_what_is_missing(db: Path) -> None:
    """A schema table without its runs table, or a table short of columns."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE flowdsl_schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO flowdsl_schema VALUES (?)", (SCHEMA_VERSION,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="tables flowdsl_attempts, flowdsl_runs are missing"):
        SQLiteStore(db)
    SQLiteStore(db.with_name("fresh.db")).close()
    edit(db.with_name("fresh.db"), "ALTER TABLE flowdsl_runs DROP COLUMN lease_epoch")
    with pytest.raises(StoreError, match="table flowdsl_runs lacks the columns lease_epoch"):
        SQLiteStore(db.with_name("fresh.db"))


# The tables of schema version 1, as the first release wrote them.
SCHEMA_1 = (
    "CREATE TABLE flowdsl_schema (version INTEGER NOT NULL)",
    """CREATE TABLE flowdsl_runs (
        run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
        fingerprint TEXT NOT NULL, shape TEXT NOT NULL, input TEXT NOT NULL, output TEXT,
        error TEXT, failed_step TEXT, compensations TEXT, started REAL NOT NULL,
        updated REAL NOT NULL, duration REAL, owner TEXT, heartbeat REAL,
        resumes INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX flowdsl_runs_by_status ON flowdsl_runs (status, started)",
    """CREATE TABLE flowdsl_attempts (
        seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step TEXT NOT NULL,
        visit INTEGER NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
        final INTEGER NOT NULL, outcome TEXT NOT NULL, started REAL NOT NULL,
        duration REAL NOT NULL, worker TEXT NOT NULL, UNIQUE (run_id, step, visit, attempt))""",
    "INSERT INTO flowdsl_schema VALUES (1)",
)


def test_a_schema_1_store_is_migrated_and_its_runs_resume(db: Path) -> None:
    """An unfinished run journaled by the first release resumes after the upgrade."""
    calls: list[str] = []

    @workflow
    def old() -> None:
        step(lambda ctx: calls.append("a") or ok({"a": 1}), name="a")
        step(lambda ctx: calls.append("b") or ok({"b": 2}), name="b")

    conn = sqlite3.connect(db)
    for statement in SCHEMA_1:
        conn.execute(statement)
    plan = old.plan
    conn.execute(
        "INSERT INTO flowdsl_runs (run_id, workflow, status, fingerprint, shape, input, "
        "started, updated, owner, heartbeat) VALUES ('r1', 'old', 'running', ?, ?, '{}', 1, 1, "
        "'gone-host|1|1', 1)",
        (plan.fingerprint, '["' + '","'.join(plan.shape) + '"]'),
    )
    conn.execute(
        "INSERT INTO flowdsl_attempts (run_id, step, visit, attempt, status, final, outcome, "
        "started, duration, worker) VALUES ('r1', 'a', 1, 1, 'succeeded', 1, "
        '\'{"$":"ok","v":{"a":1}}\', 1, 0.1, \'gone-host|1|1\')'
    )
    conn.commit()
    conn.close()
    with SQLiteStore(db) as store:
        resumed = resume_runs(store)
    assert [("r1", "completed", {"a": 1, "b": 2})] == [
        (r.run_id, r.status, dict(r.output)) for r in resumed
    ]
    assert ["b"] == calls  # a was journaled by the old release: not run again
    conn = sqlite3.connect(db)
    assert [(SCHEMA_VERSION,)] == conn.execute("SELECT version FROM flowdsl_schema").fetchall()
    conn.close()


# -- the file's permissions --------------------------------------------------------------------


def test_the_journal_and_its_wal_files_are_private(db: Path) -> None:
    """Inputs and outputs are in clear: the file, -wal and -shm are readable by the owner only."""
    old = os.umask(0o022)
    try:

        @workflow
        def secret() -> None:
            step(lambda ctx: ok({"token": "s3cr3t"}), name="a")

        with SQLiteStore(db) as store:
            run_workflow(secret, run_id="r1", store=store)
            for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                assert path.exists(), path
                assert 0o600 == stat.S_IMODE(path.stat().st_mode), path
    finally:
        os.umask(old)
