"""The SQLite store as a file: its URLs and path, schema and migrations, damaged files, permissions.

These tests are about what only `SQLiteStore` has (a file, WAL mode, SQLite's
own DDL), so they build it directly; what every store must do is tested once
per kind of store in test_durable.py, test_crash.py and test_store_faults.py.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

from flowdsl import (
    SQLiteStore,
    Store,
    arun_workflow,
    ok,
    parallel,
    resume_runs,
    run_workflow,
    step,
    workflow,
)
from flowdsl.errors import StoreError, UsageError

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl.stores import _sqlite as sqlite_store
from flowdsl.stores._sqlite import SCHEMA_VERSION

pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def edit(db: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(sql, args)
    finally:
        conn.close()


# -- the path and URLs -------------------------------------------------------------------------


def test_store_urls_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """store= takes a store, 'sqlite:///relative', 'sqlite:////absolute' or a path."""

    @workflow
    def tiny() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return 1

    monkeypatch.chdir(tmp_path)
    assert "completed" == run_workflow(tiny, run_id="a", store="sqlite:///rel.db").status
    assert (
        "completed" == run_workflow(tiny, run_id="b", store=f"sqlite:///{tmp_path}/abs.db").status
    )
    assert "completed" == run_workflow(tiny, run_id="c", store=tmp_path / "path.db").status
    for name in ("rel.db", "abs.db", "path.db"):
        assert (tmp_path / name).exists()
    # A PostgreSQL URL opens a PostgresStore: nothing answers on port 1, and the error says where.
    with pytest.raises(
        StoreError, match=r"could not open the store at 'postgres://u@127\.0\.0\.1:1/d'"
    ):
        run_workflow(tiny, store="postgres://u@127.0.0.1:1/d")
    with pytest.raises(StoreError, match=r"'postgresql://u:\*\*\*@127\.0\.0\.1:1/d'"):
        run_workflow(tiny, store="postgresql://u:secret@127.0.0.1:1/d")  # never shows a password
    with pytest.raises(UsageError, match="store= takes a store object"):
        run_workflow(tiny, store=42)
    with pytest.raises(UsageError, match="needs the path of a database file"):
        SQLiteStore(":memory:")
    with SQLiteStore(tmp_path / "x.db") as store:
        assert isinstance(store, Store)


def test_a_bad_path_is_a_store_error(tmp_path: Path) -> None:
    """A file that cannot be opened fails when the store is made, naming it."""
    with pytest.raises(StoreError, match=r"could not open the store at .*missing"):
        SQLiteStore(tmp_path / "missing" / "runs.db")


# -- the schema ------------------------------------------------------------------------------


def test_the_schema_is_versioned(tmp_path: Path) -> None:
    """A new file records the schema version; one from a newer release is refused."""
    db = tmp_path / "runs.db"
    SQLiteStore(db).close()
    conn = sqlite3.connect(db)
    try:
        assert [(SCHEMA_VERSION,)] == conn.execute("SELECT version FROM flowdsl_schema").fetchall()
        assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]
        with conn:
            conn.execute("UPDATE flowdsl_schema SET version = 99")
    finally:
        conn.close()
    with pytest.raises(StoreError, match="written by a newer flowdsl \\(journal schema 99"):
        SQLiteStore(db)


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


# -- damaged files and files that are not stores ----------------------------------------------


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


# -- where a step's journal write commits ------------------------------------------------------

WRITER = "flowdsl-sqlite-writer"


@pytest.fixture
def appends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each step's journal write ran its insert on, in order."""
    threads: list[str] = []
    real = sqlite_store._append_job

    def recorded(writer: Any, conn: sqlite3.Connection, claim: Any, attempt: Any) -> None:
        threads.append(threading.current_thread().name)
        real(writer, conn, claim, attempt)

    monkeypatch.setattr(sqlite_store, "_append_job", recorded)
    return threads


def adder(index: int) -> Callable[[Any], Any]:
    async def add(ctx: Any) -> Any:
        return ok({f"k{index}": index})

    return add


@workflow("five-steps")
def five_steps() -> None:
    for index in range(5):
        step(adder(index), name=f"s{index}")


def test_a_lone_runs_steps_commit_on_its_own_thread(db: Path, appends: list[str]) -> None:
    """Nothing else waiting: each step commits on the run's thread, no hand-over, all journaled."""
    with SQLiteStore(db) as store:
        run = run_workflow(five_steps, run_id="r1", store=store)
        recorded = store.get_run("r1")
    assert "completed" == run.status
    assert [threading.current_thread().name] * 5 == appends
    assert recorded is not None
    assert [f"s{i}" for i in range(5)] == [record.name for record in recorded.steps]
    assert {f"k{i}": i for i in range(5)} == dict(recorded.output)


def test_a_lone_runs_final_record_commits_on_its_own_thread_too(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its final record skips the hand-over as its steps do; its claim does not (claiming a
    run to resume it reads its whole journal, which is the thread's to do)."""
    jobs: list[tuple[str, str]] = []
    for name in ("_open_job", "_finish_job"):
        real = getattr(sqlite_store, name)

        def recorded(*args: Any, _real: Any = real, _name: str = name) -> Any:
            jobs.append((_name, threading.current_thread().name))
            return _real(*args)

        monkeypatch.setattr(sqlite_store, name, recorded)
    here = threading.current_thread().name
    with SQLiteStore(db) as store:
        run_workflow(five_steps, run_id="warm", store=store)
        jobs.clear()
        run = run_workflow(five_steps, run_id="r1", store=store)
        recorded = store.get_run("r1")
    assert "completed" == run.status
    assert ["_open_job", "_finish_job"] == [name for name, _ in jobs]
    assert jobs[0][1].startswith(WRITER)
    assert here == jobs[1][1]
    assert recorded is not None
    assert ("completed", {f"k{i}": i for i in range(5)}) == (recorded.status, dict(recorded.output))


def test_steps_that_finish_together_share_the_writer_threads_commits(
    db: Path, appends: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other steps ready on the loop: the writes go to the writer thread, batched in commits."""
    batches: list[int] = []
    real = sqlite_store._Writer.transaction

    def counted(writer: Any, conn: sqlite3.Connection, batch: list[Any], begun: bool) -> Any:
        batches.append(len(batch))
        return real(writer, conn, batch, begun)

    monkeypatch.setattr(sqlite_store._Writer, "transaction", counted)

    @workflow
    def fan() -> None:
        with parallel(name="fan"):
            for index in range(20):
                step(adder(index), name=f"n{index}")

    with SQLiteStore(db) as store:
        run = run_workflow(fan, run_id="r1", store=store)
    assert "completed" == run.status
    assert 20 == len(appends)
    # Each branch but the last finds the others ready on the loop; the last may commit itself.
    assert sum(name.startswith(WRITER) for name in appends) >= 19
    assert max(batches) > 1  # writes that waited together were committed together


def test_a_write_never_waits_for_the_files_lock_on_the_event_loop(
    db: Path, appends: list[str]
) -> None:
    """Another process holds the write lock: the step's write waits on the writer thread while
    the loop goes on turning (it is what gives the lock back here)."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    async def take_the_lock(ctx: Any) -> Any:
        holder.execute("BEGIN IMMEDIATE")
        return ok({"a": 1})

    @workflow
    def locked() -> None:
        step(take_the_lock, name="a")
        step(adder(1), name="b")

    gaps: list[float] = []

    async def main(store: SQLiteStore) -> Any:
        task = asyncio.ensure_future(arun_workflow(locked, run_id="r1", store=store))
        turns = 0
        last = time.monotonic()
        while not task.done():
            await asyncio.sleep(0.001)  # on a timer: nothing is ready on the loop meanwhile
            gaps.append(time.monotonic() - last)
            last = time.monotonic()
            turns += 1
            if turns == 20:
                holder.execute("COMMIT")  # only if the loop kept turning while "a" waited
        return await task

    try:
        # The writer's own connection waits up to 5 s for the lock, then retries.
        with SQLiteStore(db, busy_timeout=60.0) as store:
            run_workflow(five_steps, run_id="warm", store=store)  # the writer thread is up
            appends.clear()
            run = asyncio.run(main(store))
            writer = store._writer
            assert writer.conn is not None
            waits = writer.conn.execute("PRAGMA busy_timeout").fetchone()[0]
    finally:
        holder.close()
    assert "completed" == run.status
    assert appends[0].startswith(WRITER)  # "a": the lock was taken, so it was handed over
    assert max(gaps) < 2.5  # never held for SQLite's wait on the lock (5 s)
    assert 5000 == waits  # the try with no wait left the connection's own as it was


@pytest.mark.parametrize("pause", [60.0, 0.0])
def test_after_a_slow_commit_here_the_writes_go_to_the_writer_thread_for_a_while(
    db: Path, appends: list[str], monkeypatch: pytest.MonkeyPatch, pause: float
) -> None:
    """The disk being slow never holds the event loop up twice in a row, for `_HERE_PAUSE`."""
    monkeypatch.setattr(sqlite_store, "_HERE_SLOW", -1.0)  # every commit counts as slow
    monkeypatch.setattr(sqlite_store, "_HERE_PAUSE", pause)
    with SQLiteStore(db) as store:
        run = run_workflow(five_steps, run_id="r1", store=store)
    assert "completed" == run.status
    assert not appends[0].startswith(WRITER)
    on_thread = [name.startswith(WRITER) for name in appends[1:]]
    assert on_thread == [pause > 0] * 4, appends


def test_nothing_is_committed_here_while_the_writer_thread_holds_a_job(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its queue may be empty while it holds a job it took: the writes keep their order."""
    taken, release = threading.Event(), threading.Event()
    real = sqlite_store._Writer.commit

    def slow_to_begin(writer: Any, conn: sqlite3.Connection, batch: list[Any]) -> Any:
        if any(job.fn is first for job in batch):
            taken.set()
            release.wait(30)  # taken from the queue, not yet in a transaction
        return real(writer, conn, batch)

    monkeypatch.setattr(sqlite_store._Writer, "commit", slow_to_begin)
    order: list[str] = []

    def first(writer: Any, conn: sqlite3.Connection) -> None:
        order.append("first")

    def second(writer: Any, conn: sqlite3.Connection) -> None:
        order.append("second")

    with SQLiteStore(db) as store:
        run_workflow(five_steps, run_id="warm", store=store)  # the writer thread is up
        writer = store._writer
        writer.submit(sqlite_store._Job(first, (), None, None))
        assert taken.wait(30)
        assert writer.jobs.empty()
        assert not writer.commit_here(sqlite_store._Job(second, (), None, None))
        release.set()
        wait_for(lambda: not writer.in_hand, "the thread's job to commit")
        assert writer.commit_here(sqlite_store._Job(second, (), None, None))
    assert ["first", "second"] == order


def test_an_interrupt_in_a_commit_here_leaves_no_transaction_open(db: Path) -> None:
    """A KeyboardInterrupt on the run's thread: rolled back, and the store goes on working."""

    def interrupted(writer: Any, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO flowdsl_graphs VALUES ('x', 'w', 'y')")
        raise KeyboardInterrupt

    with SQLiteStore(db) as store:
        run_workflow(five_steps, run_id="warm", store=store)
        writer = store._writer
        with pytest.raises(KeyboardInterrupt):
            writer.commit_here(sqlite_store._Job(interrupted, (), None, None))
        assert writer.conn is not None
        assert not writer.conn.in_transaction
        assert not writer.using.locked()
        run = run_workflow(five_steps, run_id="r1", store=store)
    assert "completed" == run.status
    assert (
        []
        == sqlite3.connect(db).execute("SELECT * FROM flowdsl_graphs WHERE graph = 'y'").fetchall()
    )


def test_the_writer_thread_checkpoints_the_log(
    db: Path, appends: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between its batches, never inside a step's commit: the log is copied into the file."""
    monkeypatch.setattr(sqlite_store, "_CHECKPOINT_PAGES", 8)
    done: list[tuple[str, Any]] = []
    real = sqlite_store._Writer.checkpoint

    def recorded(writer: Any, conn: sqlite3.Connection) -> Any:
        answer = real(writer, conn)
        done.append((threading.current_thread().name, answer))
        return answer

    monkeypatch.setattr(sqlite_store._Writer, "checkpoint", recorded)
    with SQLiteStore(db) as store:
        run = run_workflow(five_steps, run_id="r1", store=store)
        wait_for(lambda: done, "a checkpoint")
        assert store._writer.conn is not None
        backstop = store._writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    assert 4 * 1000 == backstop  # SQLite's own, inside commits, only past four times as much
    assert "completed" == run.status
    assert not appends[0].startswith(WRITER)  # committed here (later ones wait if it checkpoints)
    assert all(name.startswith(WRITER) for name, _ in done)
    busy, in_log, copied = done[0][1]
    assert in_log > 0
    assert (0, in_log) == (busy, copied)  # every page of the log copied


# -- large values, kept compressed --------------------------------------------------------------

ROWS = [{"id": i, "sku": f"SKU-{i:05d}", "tags": ["blue", "large"]} for i in range(400)]
"""About 20 KB of JSON: past `PACK_FROM`, so kept compressed."""


def value_types(db: Path, run_id: str) -> tuple[list[tuple[str, str]], tuple[str, str]]:
    """SQLite's type of each journaled outcome of the run (step, type), and of its input
    and output: 'blob' when kept compressed, 'text' when not."""
    conn = sqlite3.connect(db)
    try:
        journal = conn.execute(
            "SELECT step, typeof(outcome) FROM flowdsl_attempts WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        run = conn.execute(
            "SELECT typeof(input), typeof(output) FROM flowdsl_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    finally:
        conn.close()
    return journal, run


def test_large_values_are_kept_compressed_and_read_back_as_they_were(db: Path) -> None:
    """A step's outcome, the run's input and its output of 4 KB or more are written
    compressed; shorter ones stay text. Reading gives back what was written."""

    @workflow("big")
    def big() -> None:
        step(lambda ctx: ok({"rows": ctx["rows"][::-1]}), name="reverse")
        step(lambda ctx: ok({"count": len(ctx["rows"])}), name="count")

    with SQLiteStore(db) as store:
        run = run_workflow(big, {"rows": ROWS}, run_id="r1", store=store)
        assert "completed" == run.status
        recorded = store.get_run("r1")
        listed = store.list_runs()
    assert ([("reverse", "blob"), ("count", "text")], ("blob", "blob")) == value_types(db, "r1")
    assert recorded is not None
    assert {"rows": ROWS[::-1], "count": 400} == dict(recorded.output) == dict(run.output)
    assert [dict(recorded.output)] == [dict(r.output) for r in listed]
    conn = sqlite3.connect(db)
    (kept,) = conn.execute("SELECT length(output) FROM flowdsl_runs").fetchone()
    conn.close()
    written = len(sqlite_store.dumps({"rows": ROWS}))
    assert kept < written / 4, f"{kept} bytes kept for about {written} of JSON"


def test_a_run_resumes_from_text_rows_and_compressed_rows_alike(db: Path) -> None:
    """A run journaled partly as text (by a release before compression) and partly compressed
    resumes: both outcomes are replayed, neither step runs again."""
    calls: list[str] = []

    @workflow("mixed")
    def mixed() -> None:
        step(lambda ctx: calls.append("a") or ok({"a": 1}), name="a")
        step(lambda ctx: calls.append("b") or ok({"b": ROWS}), name="b")
        step(lambda ctx: calls.append("c") or ok({"c": len(ctx["b"])}), name="c")

    SQLiteStore(db).close()  # the schema
    plan = mixed.plan
    b = sqlite_store.packed(sqlite_store.dumps({"$": "ok", "v": {"b": ROWS}}))
    assert isinstance(b, bytes)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO flowdsl_runs (run_id, workflow, status, fingerprint, shape, input, "
            "started, updated, owner, lease_expires) VALUES ('r1', 'mixed', 'running', ?, ?, "
            "'{}', 1, 1, 'gone-host|1|1', 1)",
            (plan.fingerprint, sqlite_store.dumps(list(plan.shape))),
        )
        for name, outcome in (("a", '{"$":"ok","v":{"a":1}}'), ("b", b)):
            conn.execute(
                "INSERT INTO flowdsl_attempts (run_id, step, visit, attempt, status, final, "
                "outcome, started, duration, worker) VALUES ('r1', ?, 1, 1, 'succeeded', 1, ?, "
                "1, 0.1, 'gone-host|1|1')",
                (name, outcome),
            )
    conn.close()
    with SQLiteStore(db) as store:
        resumed = resume_runs(store)
    assert [("r1", "completed", {"a": 1, "b": ROWS, "c": 400})] == [
        (r.run_id, r.status, dict(r.output)) for r in resumed
    ]
    assert ["c"] == calls


def test_a_compressed_value_that_cannot_be_read_is_a_damaged_run(db: Path) -> None:
    """A BLOB that is not what the store wrote (edited, a bad page) damages its run alone."""

    @workflow("big")
    def big() -> None:
        step(lambda ctx: ok({"rows": ROWS}), name="rows")

    with SQLiteStore(db) as store:
        for run_id in ("r1", "r2", "r3"):
            run_workflow(big, run_id=run_id, store=store)
    edit(db, "UPDATE flowdsl_attempts SET outcome = x'28b52ffd0000' WHERE run_id = 'r2'")
    edit(db, "UPDATE flowdsl_runs SET output = x'00ff' WHERE run_id = 'r3'")
    damaged: dict[str, StoreError] = {}
    with SQLiteStore(db) as store:
        listed = store.list_runs(on_damaged=damaged.__setitem__)
        with pytest.raises(StoreError, match=r"run 'r3' is damaged.*its output cannot be read"):
            store.get_run("r3")
    assert ["r1"] == [run.run_id for run in listed]
    assert ["r2", "r3"] == sorted(damaged)
    assert "journaled outcome of 'rows' cannot be read" in str(damaged["r2"])
    assert "not a Zstandard frame of UTF-8 text" in str(damaged["r2"])


def test_the_logs_page_count_is_that_of_the_compressed_rows(db: Path) -> None:
    """The writer counts a compressed row's pages, not its text's, so it checkpoints the log
    when about `_CHECKPOINT_PAGES` pages were really written."""

    @workflow("big")
    def big() -> None:
        step(lambda ctx: ok({"rows": ROWS * 5}), name="rows")  # about 100 KB of JSON

    text_pages = len(sqlite_store.dumps(ROWS * 5)) // 4096
    with SQLiteStore(db) as store:
        run_workflow(big, run_id="r1", store=store)
        counted = store._writer.pages
    assert ([("rows", "blob")], ("text", "blob")) == value_types(db, "r1")
    # Three commits (the start, the step, the end) of a few pages each, two of them holding
    # about 100 KB of text each: 50 pages and more, counted by the text.
    assert counted < text_pages, f"{counted} pages counted for rows of {text_pages} pages' text"
