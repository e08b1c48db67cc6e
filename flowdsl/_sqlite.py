"""`SQLiteStore`: the embedded durable store (standard library `sqlite3`, WAL mode).

One writer thread per store owns the only writing connection. Run calls hand
it jobs and await a future; the thread takes every job waiting in its queue,
runs them in one ``BEGIN IMMEDIATE`` transaction, commits, and only then
settles their futures (one wake-up per event loop per batch). So a step's
outcome is committed before the executor goes on, the event loop never waits
on the disk, and many concurrent runs share each commit.

Several processes may use one file: WAL lets readers run alongside the writer,
writers queue on SQLite's lock (``busy_timeout``) and a busy ``BEGIN`` is
retried until the store's ``busy_timeout`` has passed. Reads (`get_run`,
`list_runs`) use a short-lived connection of their own.

A run is owned by the process that executes it (``owner``: host, pid and the
process's start time, so a reused pid is not mistaken for it). An unfinished
run can be claimed when its owner is gone: on this host that is checked
directly; for an owner on another host, when its heartbeat (refreshed by the
writer thread) is older than ``lease`` seconds. Every journal write checks
that this process still owns the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

from ._codec import decode, dumps
from ._run import Run, RunStatus
from ._store import (
    Attempt,
    Ending,
    Opened,
    Pending,
    RunHeader,
    build_run,
    owner_alive,
    owner_token,
)
from .errors import StoreError, UsageError

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION: Final = 1
"""The journal schema this release writes (kept in the ``flowdsl_schema`` table)."""

_SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS flowdsl_schema (
        version INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS flowdsl_runs (
        run_id        TEXT PRIMARY KEY,
        workflow      TEXT NOT NULL,
        status        TEXT NOT NULL,
        fingerprint   TEXT NOT NULL,
        shape         TEXT NOT NULL,
        input         TEXT NOT NULL,
        output        TEXT,
        error         TEXT,
        failed_step   TEXT,
        compensations TEXT,
        started       REAL NOT NULL,
        updated       REAL NOT NULL,
        duration      REAL,
        owner         TEXT,
        heartbeat     REAL,
        resumes       INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS flowdsl_runs_by_status ON flowdsl_runs (status, started)
    """,
    """
    CREATE TABLE IF NOT EXISTS flowdsl_attempts (
        seq      INTEGER PRIMARY KEY,
        run_id   TEXT NOT NULL,
        step     TEXT NOT NULL,
        visit    INTEGER NOT NULL,
        attempt  INTEGER NOT NULL,
        status   TEXT NOT NULL,
        final    INTEGER NOT NULL,
        outcome  TEXT NOT NULL,
        started  REAL NOT NULL,
        duration REAL NOT NULL,
        worker   TEXT NOT NULL,
        UNIQUE (run_id, step, visit, attempt)
    )
    """,
)

_RUN_COLUMNS: Final = (
    "run_id, workflow, status, fingerprint, shape, input, output, error, failed_step, "
    "compensations, started, duration, owner, heartbeat"
)
_ATTEMPT_COLUMNS: Final = "step, visit, attempt, status, final, outcome, started, duration"
_FINISHED: Final = ("completed", "failed")

# Runs executing in this process, by (database file, run_id): a run this
# process owns but no longer executes (its call raised) can be claimed again.
_ACTIVE: set[tuple[str, str]] = set()
_ACTIVE_LOCK = threading.Lock()


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    except BaseException:
        conn.close()
        raise
    return conn


def _attempt(row: Sequence[Any]) -> Attempt:
    step, visit, attempt, status, final, outcome, started, duration = row
    return Attempt(
        step, visit, attempt, status == "succeeded", bool(final), outcome, started, duration
    )


def _load_attempts(conn: sqlite3.Connection, run_id: str) -> tuple[Attempt, ...]:
    rows = conn.execute(
        f"SELECT {_ATTEMPT_COLUMNS} FROM flowdsl_attempts WHERE run_id = ? ORDER BY seq",
        (run_id,),
    ).fetchall()
    return tuple(_attempt(row) for row in rows)


def _run_from_row(row: Sequence[Any], attempts: Iterable[Attempt]) -> Run:
    (run_id, workflow, status, _, _, data, output, error, failed_step, comps, started, duration) = (
        row[:12]
    )
    return build_run(
        run_id=run_id,
        workflow=workflow,
        status=status,
        input=data,
        output=output,
        error=error,
        failed_step=failed_step,
        compensations=comps,
        started=started,
        duration=duration,
        attempts=attempts,
    )


class _Job:
    """One unit of work for the writer thread, settled after its transaction commits."""

    __slots__ = ("args", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[..., object],
        args: tuple[object, ...],
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.loop = loop
        self.future = future


def _settle(items: list[tuple[asyncio.Future[Any], object, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():  # the caller was cancelled; the write happened anyway
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _Writer:
    """The writer thread of one store and everything only it touches."""

    def __init__(
        self, path: str, key: str, synchronous: str, busy_timeout: float, lease: float
    ) -> None:
        self.path = path
        self.key = key
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.lease = lease
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.closed = False
        self.why_closed = f"the store at {path!r} is closed; open a new SQLiteStore"
        self.owned = 0  # runs this store has claimed and not yet finished or released
        self.beat = 0.0
        self.pid = os.getpid()

    # -- called from any thread --------------------------------------------------------------

    def submit(self, job: _Job) -> None:
        if self.pid != os.getpid():
            msg = (
                f"the store at {self.path!r} was opened in the parent of this forked process; "
                f"open a new SQLiteStore in the child (a connection must not cross a fork)"
            )
            raise StoreError(msg)
        with self.lock:
            if self.closed:
                raise StoreError(self.why_closed)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.main, name=f"flowdsl-sqlite-writer {self.path}", daemon=True
                )
                self.thread.start()
            self.jobs.put(job)

    def stop(self) -> None:
        with self.lock:
            self.closed = True
            thread = self.thread
        if thread is not None:
            self.jobs.put(None)
            if thread is not threading.current_thread():
                thread.join()

    # -- the thread ------------------------------------------------------------------------

    def main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = _connect(self.path, min(self.busy_timeout, 5.0))
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self.loop(conn)
        except BaseException as exc:  # the connection itself failed: fail every job
            with self.lock:
                self.closed = True
                self.why_closed = f"the store at {self.path!r} failed: {exc}"
            self.drain_failing(exc)
        finally:
            if conn is not None:
                conn.close()

    def drain_failing(self, exc: BaseException) -> None:
        error = exc if isinstance(exc, StoreError) else StoreError(f"{self.path}: {exc}")
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self.settle([(job, None, error)])

    def loop(self, conn: sqlite3.Connection) -> None:
        jobs = self.jobs
        interval = self.lease / 3
        while True:
            try:
                first = jobs.get(timeout=interval)
            except queue.Empty:
                if self.owned:
                    self.commit(conn, [])
                continue
            batch: list[_Job] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while len(batch) < 512:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                else:
                    batch.append(job)
            if batch:
                self.commit(conn, batch)
            if stop:
                self.drain_failing(StoreError(f"the store at {self.path!r} was closed"))
                return

    def begin(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[_Job, object, BaseException | None]] = []
        try:
            self.begin(conn)
            try:
                for job in batch:
                    try:
                        results.append((job, job.fn(self, conn, *job.args), None))
                    except sqlite3.OperationalError:
                        raise  # the disk or the file, not this job: the batch fails
                    except Exception as exc:  # this job only (its one write did not happen)
                        results.append((job, None, exc))
                now = time.time()
                if self.owned and now - self.beat > self.lease / 3:
                    conn.execute(
                        "UPDATE flowdsl_runs SET heartbeat = ? WHERE owner = ? AND status = 'running'",
                        (now, owner_token()),
                    )
                    self.beat = now
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            for _, result, _ in results:  # claims that did not commit are not held
                if type(result) is Opened and result.claimed:
                    _deactivate(self, result.run_id)
            error = StoreError(f"could not write to the store at {self.path!r}: {exc}")
            self.settle([(job, None, error) for job in batch])
            return
        self.settle(results)

    @staticmethod
    def settle(results: list[tuple[_Job, object, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for job, result, error in results:
            if job.loop is None or job.future is None:
                continue
            items = by_loop.get(job.loop)
            if items is None:
                items = by_loop[job.loop] = []
            items.append((job.future, result, error))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, items)


# -- jobs: run by the writer thread inside its transaction ------------------------------------


def _claimable(writer: _Writer, run_id: str, owner: str | None, heartbeat: float | None) -> bool:
    if owner is None:
        return True
    if owner == owner_token():
        with _ACTIVE_LOCK:
            return (writer.key, run_id) not in _ACTIVE
    alive = owner_alive(owner)
    if alive is None:  # another host: trust its heartbeat until the lease runs out
        return heartbeat is None or time.time() - heartbeat > writer.lease
    return not alive


def _activate(writer: _Writer, run_id: str) -> None:
    with _ACTIVE_LOCK:
        _ACTIVE.add((writer.key, run_id))
    writer.owned += 1


def _deactivate(writer: _Writer, run_id: str) -> None:
    with _ACTIVE_LOCK:
        if (writer.key, run_id) not in _ACTIVE:
            return
        _ACTIVE.discard((writer.key, run_id))
    writer.owned -= 1


def _open_job(writer: _Writer, conn: sqlite3.Connection, header: RunHeader) -> Opened:
    # Everything that can fail comes before the one write, so a failing job changes nothing.
    me = owner_token()
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM flowdsl_runs WHERE run_id = ?", (header.run_id,)
    ).fetchone()
    now = time.time()
    if row is None:
        opened = Opened(
            run_id=header.run_id,
            claimed=True,
            new=True,
            workflow=header.workflow,
            fingerprint=header.fingerprint,
            shape=header.shape,
            input=header.input,
            started=header.started,
        )
        conn.execute(
            "INSERT INTO flowdsl_runs (run_id, workflow, status, fingerprint, shape, input, "
            "started, updated, owner, heartbeat) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
            (
                header.run_id,
                header.workflow,
                header.fingerprint,
                dumps(list(header.shape)),
                header.input,
                header.started,
                now,
                me,
                now,
            ),
        )
        _activate(writer, header.run_id)
        return opened
    run_id, workflow, status, fingerprint, shape, data = row[:6]
    started, owner, heartbeat = row[10], row[12], row[13]

    def found(claimed: bool, attempts: tuple[Attempt, ...] = (), **more: Any) -> Opened:
        return Opened(
            run_id=run_id,
            claimed=claimed,
            new=False,
            workflow=workflow,
            fingerprint=fingerprint,
            shape=tuple(decode(shape)),
            input=data,
            started=started,
            attempts=attempts,
            **more,
        )

    if status in _FINISHED:
        return found(False, finished=_run_from_row(row, _load_attempts(conn, run_id)))
    if (
        workflow != header.workflow
        or fingerprint != header.fingerprint
        or not _claimable(writer, run_id, owner, heartbeat)
    ):
        return found(False, owner=owner)
    opened = found(True, _load_attempts(conn, run_id))
    conn.execute(
        "UPDATE flowdsl_runs SET status = 'running', owner = ?, heartbeat = ?, updated = ?, "
        "resumes = resumes + 1 WHERE run_id = ?",
        (me, now, now, run_id),
    )
    _activate(writer, run_id)
    return opened


def _lost(run_id: str) -> StoreError:
    return StoreError(
        f"run {run_id!r} is no longer owned by this process (another process claimed it, "
        f"or it finished); its outcome was not recorded here"
    )


def _append_job(writer: _Writer, conn: sqlite3.Connection, run_id: str, a: Attempt) -> None:
    me = owner_token()
    cursor = conn.execute(
        "INSERT INTO flowdsl_attempts (run_id, step, visit, attempt, status, final, outcome, "
        "started, duration, worker) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
        "WHERE EXISTS (SELECT 1 FROM flowdsl_runs WHERE run_id = ? AND owner = ?)",
        (
            run_id,
            a.step,
            a.visit,
            a.attempt,
            "succeeded" if a.succeeded else "failed",
            a.final,
            a.outcome,
            a.started,
            a.duration,
            me,
            run_id,
            me,
        ),
    )
    if cursor.rowcount != 1:
        raise _lost(run_id)


def _finish_job(writer: _Writer, conn: sqlite3.Connection, run_id: str, end: Ending) -> None:
    try:
        cursor = conn.execute(
            "UPDATE flowdsl_runs SET status = ?, output = ?, error = ?, failed_step = ?, "
            "compensations = ?, duration = ?, updated = ?, owner = NULL, heartbeat = NULL "
            "WHERE run_id = ? AND owner = ?",
            (
                end.status,
                end.output,
                end.error,
                end.failed_step,
                end.compensations,
                end.duration,
                time.time(),
                run_id,
                owner_token(),
            ),
        )
        if cursor.rowcount != 1:
            raise _lost(run_id)
    finally:
        _deactivate(writer, run_id)


def _release_job(writer: _Writer, conn: sqlite3.Connection, run_id: str) -> None:
    try:
        conn.execute(
            "UPDATE flowdsl_runs SET owner = NULL, heartbeat = NULL WHERE run_id = ? AND owner = ?",
            (run_id, owner_token()),
        )
    finally:
        _deactivate(writer, run_id)


# -- the store ---------------------------------------------------------------------------------


def _init_schema(path: str, busy_timeout: float) -> None:
    """Switch the file to WAL and create the tables, waiting out other processes' locks."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            conn = _connect(path, min(busy_timeout, 5.0))
        except sqlite3.Error as exc:
            msg = f"could not open the store at {path!r}: {exc}"
            raise StoreError(msg) from exc
        try:
            _create(conn, path)
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() > deadline:
                msg = f"could not open the store at {path!r}: {exc}"
                raise StoreError(msg) from exc
        finally:
            conn.close()
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _create(conn: sqlite3.Connection, path: str) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        msg = (
            f"the store at {path!r} could not switch to WAL mode (got {mode!r}); "
            f"use a file on a local disk"
        )
        raise StoreError(msg)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    _check_version(conn, path)


def _check_version(conn: sqlite3.Connection, path: str) -> None:
    """Inside the schema transaction: stamp a new file, refuse one from a newer release."""
    try:
        found = conn.execute("SELECT max(version) FROM flowdsl_schema").fetchone()[0]
        if found is None:
            conn.execute("INSERT INTO flowdsl_schema (version) VALUES (?)", (SCHEMA_VERSION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if found is not None and found > SCHEMA_VERSION:
        conn.execute("ROLLBACK")
        msg = (
            f"the store at {path!r} was written by a newer flowdsl (journal schema {found}, "
            f"this release reads {SCHEMA_VERSION}); upgrade flowdsl to use it"
        )
        raise StoreError(msg)
    conn.execute("COMMIT")


class SQLiteStore:
    """The embedded durable store: one SQLite file (WAL mode), safe for many processes.

    ``synchronous="normal"`` (the default) makes every committed step survive a
    crash of the process (``kill -9``, an exception, the OOM killer);
    ``"full"`` also survives a crash of the machine or a power cut, at the
    cost of an fsync per commit. ``busy_timeout`` is how long a write waits
    for another process holding the file's write lock before it fails.
    ``lease`` is how long a run owned by a process on another host (a shared
    volume) is left alone after its last heartbeat before it may be resumed.

    Use it as a context manager, or call ``close()`` when done.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["normal", "full"] = "normal",
        busy_timeout: float = 30.0,
        lease: float = 30.0,
    ) -> None:
        text = os.fspath(path)
        if not text or text == ":memory:" or text.startswith("file:"):
            msg = (
                f"SQLiteStore needs the path of a database file, got {text!r}; "
                f"for a throwaway store use a file in a temporary directory"
            )
            raise UsageError(msg)
        if synchronous not in ("normal", "full"):
            msg = f"synchronous= must be 'normal' or 'full', got {synchronous!r}"
            raise UsageError(msg)
        self.path = text
        self.busy_timeout = float(busy_timeout)
        _init_schema(text, self.busy_timeout)
        key = os.path.realpath(text)
        self._writer = _Writer(text, key, synchronous.upper(), self.busy_timeout, float(lease))
        self._close = weakref.finalize(self, _Writer.stop, self._writer)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Commit what is pending, stop the writer thread and close its connection."""
        self._close()

    # -- reading ---------------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        try:
            return _connect(self.path, self.busy_timeout)
        except sqlite3.Error as exc:
            msg = f"could not read the store at {self.path!r}: {exc}"
            raise StoreError(msg) from exc

    def get_run(self, run_id: str) -> Run | None:
        """The run named `run_id`, finished or not, or None when the store has no such run."""
        conn = self._read()
        try:
            conn.execute("BEGIN")  # one snapshot for both queries
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM flowdsl_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            attempts = _load_attempts(conn, run_id) if row is not None else ()
            conn.execute("COMMIT")
        finally:
            conn.close()
        return None if row is None else _run_from_row(row, attempts)

    def list_runs(self, status: RunStatus | None = None) -> list[Run]:
        """Every run in the store (or only those with `status`), oldest first."""
        if status is not None and status not in ("running", "completed", "failed", "cancelled"):
            msg = (
                f"status must be 'running', 'completed', 'failed', 'cancelled' or None, "
                f"got {status!r}"
            )
            raise UsageError(msg)
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        conn = self._read()
        try:
            conn.execute("BEGIN")  # one snapshot for both queries
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM flowdsl_runs {where} ORDER BY started, run_id", args
            ).fetchall()
            attempts: dict[str, list[Attempt]] = {row[0]: [] for row in rows}
            for row in conn.execute(
                f"SELECT run_id, {_ATTEMPT_COLUMNS} FROM flowdsl_attempts "
                f"WHERE run_id IN (SELECT run_id FROM flowdsl_runs {where}) ORDER BY seq",
                args,
            ):
                found = attempts.get(row[0])
                if found is not None:
                    found.append(_attempt(row[1:]))
            conn.execute("COMMIT")
        finally:
            conn.close()
        return [_run_from_row(row, attempts[row[0]]) for row in rows]

    def resumable(self, *, include_cancelled: bool = False) -> list[Pending]:
        """Unfinished runs that no live process owns, oldest first (what `resume_runs` resumes)."""
        statuses = ("running", "cancelled") if include_cancelled else ("running",)
        conn = self._read()
        try:
            rows = conn.execute(
                "SELECT run_id, workflow, fingerprint, shape, status, owner, heartbeat "
                f"FROM flowdsl_runs WHERE status IN ({', '.join('?' for _ in statuses)}) "
                "ORDER BY started, run_id",
                statuses,
            ).fetchall()
        finally:
            conn.close()
        return [
            Pending(run_id, workflow, fingerprint, tuple(decode(shape)), status)
            for run_id, workflow, fingerprint, shape, status, owner, heartbeat in rows
            if _claimable(self._writer, run_id, owner, heartbeat)
        ]

    # -- writing (the run functions call these) --------------------------------------------

    def _submit(self, fn: Callable[..., object], *args: object) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._writer.submit(_Job(fn, args, loop, future))
        return future

    async def open_run(self, header: RunHeader) -> Opened:
        """Create the run, or claim it to resume it; see `Store.open_run`."""
        future = self._submit(_open_job, header)
        try:
            opened: Opened = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The claim may still commit: give it back when it does.
            future.add_done_callback(self._release_if_claimed)
            raise
        return opened

    def _release_if_claimed(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None and future.result().claimed:
            self.release(future.result().run_id)

    async def append(self, run_id: str, attempt: Attempt) -> None:
        """Commit one attempt; returns once it is on disk (in the WAL)."""
        await self._submit(_append_job, run_id, attempt)

    async def finish_run(self, run_id: str, ending: Ending) -> None:
        """Commit the run's final record; the run is no longer owned."""
        await self._submit(_finish_job, run_id, ending)

    def release(self, run_id: str) -> None:
        """Give up owning an unfinished run so it can be resumed (written in the background)."""
        try:
            self._writer.submit(_Job(_release_job, (run_id,), None, None))
        except StoreError:  # closed: the owner check will see this process gone or idle
            with _ACTIVE_LOCK:
                _ACTIVE.discard((self._writer.key, run_id))
