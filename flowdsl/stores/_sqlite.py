"""`SQLiteStore`: the embedded durable store (standard library `sqlite3`, WAL mode).

Each store has one writing connection and a writer thread. Run calls hand the
thread jobs and await a future; the thread takes every job waiting in its
queue, runs them in one ``BEGIN IMMEDIATE`` transaction, commits, and only
then settles their futures (one wake-up per event loop per batch). So a
step's outcome is committed before the executor goes on, and many concurrent
runs share each commit. A lone run's step record or final record, when
nothing else is ready on its event loop and no job is in the thread's hands,
is committed by the run itself on that connection (`_Writer.commit_here`):
never waiting for the file's lock, and only with ``synchronous="normal"``.

Several processes may use one file: WAL lets readers run alongside the writer,
writers queue on SQLite's lock (``busy_timeout``) and a busy ``BEGIN`` is
retried until the store's ``busy_timeout`` has passed. Reads (`get_run`,
`list_runs`) use a short-lived connection of their own.

Runs are owned through leases (see `_store`): the writer thread renews the
lease of every run this store holds every ``lease / 3`` seconds (a
transaction of its own renews them when due, never one made on a run's thread), learns from
the renewal which claims were lost, and every journal write is a conditional
write on the run's owner and claim epoch. The file is created readable by its
owner only (0600): it holds inputs and outputs in clear.

A file written by an older release is migrated forward when opened; one from
a newer release, or one that is not a flowdsl store, is refused with a
`StoreError` that says what was found.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Literal

import attrs

from .._checks import require, seconds_problem
from .._engine._run import Run, RunStatus, Waiting
from ..errors import RunNotFound, StoreError, UsageError
from ._codec import Undecodable, dumps
from ._owner import claimable, executing, owner_token, stopped_executing
from ._packing import packed
from ._protocol import (
    Attempt,
    Claim,
    ClaimRequest,
    Definition,
    Ending,
    Opened,
    Pending,
    Pick,
    QueueLimits,
    RunHeader,
    Ticket,
)
from ._rows import (
    ATTEMPT_COLUMNS,
    ATTEMPT_ROW,
    DEFINITION_QUERY,
    ENDED,
    RUN_COLUMNS,
    TABLE_COLUMNS,
    WOKEN,
    attempt_from_row,
    attempt_row,
    cancel_action,
    child_notice,
    damaged,
    definition_from_row,
    delivery,
    final,
    found_run,
    keep_graph,
    list_query,
    lost_claim,
    newer_schema,
    no_such_run,
    not_cancellable,
    not_retryable,
    parent_delivery,
    partial_schema,
    readable,
    retry_ids,
    run_from_row,
    shape_of,
    text_of,
    waiting_text,
    warn_damaged,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

_log = logging.getLogger("flowdsl")

SCHEMA_VERSION: Final = 8
"""The journal schema this release writes (kept in the ``flowdsl_schema`` table).

1: the first release. 2: leases (``lease_expires``, ``lease_epoch``) and
journal entries of several kinds (``kind``: step attempts, reducer outcomes,
compensations). 3: queues (``queue``, ``priority``, ``available_at``,
``queued_at``, ``claimed_at`` and the ``flowdsl_queues`` table). 4: waits
(``waiting``, the ``flowdsl_events`` mailbox and ``flowdsl_schedules``).
5: child runs (``parent_id``, indexed). 6: the graphs of the definitions runs
started with (``flowdsl_graphs``, one row per fingerprint). 7: run management
(``cancel_requested``, and indexes on ``started`` and ``workflow`` for
paging through runs). 8: a step's outcome, a run's input or output of 4 KB
or more may be a BLOB, compressed (`_packing`); rows written before stay text.
"""

_RUNS: Final = """
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
        lease_expires REAL,
        lease_epoch   INTEGER NOT NULL DEFAULT 0,
        resumes       INTEGER NOT NULL DEFAULT 0,
        queue         TEXT NOT NULL DEFAULT 'default',
        priority      INTEGER NOT NULL DEFAULT 0,
        available_at  REAL,
        queued_at     REAL,
        claimed_at    REAL,
        waiting       TEXT,
        parent_id     TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    )
"""
_EVENTS: Final = """
    CREATE TABLE IF NOT EXISTS flowdsl_events (
        seq      INTEGER PRIMARY KEY,
        run_id   TEXT NOT NULL,
        event    TEXT NOT NULL,
        payload  TEXT NOT NULL,
        sent     REAL NOT NULL,
        taken    REAL,
        taken_by TEXT
    )
"""
_SCHEDULES: Final = """
    CREATE TABLE IF NOT EXISTS flowdsl_schedules (
        workflow TEXT PRIMARY KEY,
        since    REAL NOT NULL,
        checked  REAL NOT NULL
    )
"""
_QUEUES: Final = """
    CREATE TABLE IF NOT EXISTS flowdsl_queues (
        name        TEXT PRIMARY KEY,
        concurrency INTEGER,
        rate_count  INTEGER,
        rate_period REAL,
        updated     REAL NOT NULL
    )
"""
_ATTEMPTS: Final = """
    CREATE TABLE IF NOT EXISTS {name} (
        seq      INTEGER PRIMARY KEY,
        run_id   TEXT NOT NULL,
        kind     TEXT NOT NULL DEFAULT 'step',
        step     TEXT NOT NULL,
        visit    INTEGER NOT NULL,
        attempt  INTEGER NOT NULL,
        status   TEXT NOT NULL,
        final    INTEGER NOT NULL,
        outcome  TEXT NOT NULL,
        started  REAL NOT NULL,
        duration REAL NOT NULL,
        worker   TEXT NOT NULL,
        UNIQUE (run_id, kind, step, visit, attempt)
    )
"""
_GRAPHS: Final = """
    CREATE TABLE IF NOT EXISTS flowdsl_graphs (
        fingerprint TEXT PRIMARY KEY,
        workflow    TEXT NOT NULL,
        graph       TEXT NOT NULL
    )
"""
_INDEXES: Final = (
    "CREATE INDEX IF NOT EXISTS flowdsl_runs_by_status ON flowdsl_runs (status, started)",
    "CREATE INDEX IF NOT EXISTS flowdsl_runs_queued ON flowdsl_runs "
    "(status, queue, priority, queued_at)",
    "CREATE INDEX IF NOT EXISTS flowdsl_runs_starts ON flowdsl_runs (queue, claimed_at)",
    "CREATE INDEX IF NOT EXISTS flowdsl_events_mailbox ON flowdsl_events (run_id, event, taken, seq)",
    "CREATE INDEX IF NOT EXISTS flowdsl_runs_waking ON flowdsl_runs (status, available_at)",
    "CREATE INDEX IF NOT EXISTS flowdsl_runs_by_parent ON flowdsl_runs (parent_id, started) "
    "WHERE parent_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS flowdsl_runs_by_start ON flowdsl_runs (started, run_id)",
    "CREATE INDEX IF NOT EXISTS flowdsl_runs_by_workflow ON flowdsl_runs "
    "(workflow, started, run_id)",
)


# Waits for events in this process, by (database file, run_id, event): an event
# sent from this process wakes them at once; one sent from another is polled for.
_MAIL: dict[tuple[str, str, str], set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
_MAIL_LOCK = threading.Lock()


def _wake_mail(key: tuple[str, str, str]) -> None:
    with _MAIL_LOCK:
        waiters = list(_MAIL.get(key, ()))
    for loop, future in waiters:
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _create_private(path: str) -> None:
    """Create the database file readable and writable by its owner only (if it is new).

    SQLite gives the -wal and -shm files it makes the database file's permissions.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    except BaseException:
        conn.close()
        raise
    return conn


def _load_attempts(conn: sqlite3.Connection, run_id: str) -> tuple[Attempt, ...]:
    rows = conn.execute(
        f"SELECT {ATTEMPT_COLUMNS} FROM flowdsl_attempts WHERE run_id = ? ORDER BY seq",
        (run_id,),
    ).fetchall()
    return tuple(attempt_from_row(run_id, row) for row in rows)


class _Job:
    """One unit of work for the writer's connection, settled after its transaction commits
    (run by the writer thread, or by `_Writer.commit_here` on the caller's thread)."""

    __slots__ = ("args", "fn", "future", "loop", "result")

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
        self.result: object = None
        """What `fn` returned (read by later jobs; reset when its transaction failed)."""


_Results = list[tuple[_Job, object, BaseException | None]]

_CALL_SOON: Final = asyncio.BaseEventLoop.call_soon
_HERE_LIMIT: Final = 256 * 1024
"""The longest journal row a lone run commits on its own thread (about 0.4 ms of writing)."""
_HERE_SLOW: Final = 0.001
"""A commit on the run's thread slower than this (seconds) sends the writes of the next
`_HERE_PAUSE` seconds to the writer thread: the event loop is not held up while the disk
is slow."""
_HERE_PAUSE: Final = 1.0
_CHECKPOINT_PAGES: Final = 1000
"""The write-ahead log's pages (4 KB) after which the writer thread checkpoints it
(SQLite's own default, which it runs inside whichever commit crosses it)."""
_BACKSTOP_PAGES: Final = 4 * _CHECKPOINT_PAGES
"""SQLite's automatic checkpoint, kept for a log the writer's estimate undercounts."""


def _pages(batch: list[_Job], saved: int) -> int:
    """About how many pages of the write-ahead log `batch`'s transaction wrote: the few its
    rows share (the table, its indexes, the run), then the rows' text, 4 KB a page, less the
    `saved` characters compression left out. A job that may write any number of rows (a
    prune, a cancel) counts as a checkpoint's worth."""
    written = -saved
    for job in batch:
        if job.fn in _BULK_JOBS:
            return _CHECKPOINT_PAGES
        written += 256
        for arg in job.args:
            if isinstance(arg, str):
                written += len(arg)
            elif isinstance(arg, Attempt):
                written += len(arg.outcome)
            elif isinstance(arg, Ending):
                written += len(arg.output) + len(arg.error or "") + len(arg.compensations)
            elif isinstance(arg, RunHeader):
                written += len(arg.input) + len(arg.graph or "")
                written += sum(len(attempt.outcome) for attempt in arg.journal)
    return 3 + (written >> 12)


def _nothing_job(writer: _Writer, conn: sqlite3.Connection) -> None:
    """Wakes the writer thread (to checkpoint the log) without writing anything."""


def _resolve(items: list[tuple[asyncio.Future[Any], object, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():  # the caller was cancelled; the write happened anyway
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _Writer:
    """The writer thread of one store, its connection, and the state its transactions keep.

    `claims` (run id -> epoch) are the runs this store holds; `lost` the
    claims a renewal found taken; `confirmed` when the leases were last known
    to hold until. They are read from other threads under `lock`.

    A transaction on `conn` runs while holding `using`: the writer thread's,
    for every batch of jobs, and a lone run's one write that `commit_here`
    runs on the run's own thread when the writer has nothing to do.
    """

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
        self.claims: dict[str, int] = {}
        self.lost: set[Claim] = set()
        self.confirmed = 0.0
        self.beat = 0.0
        self.pid = os.getpid()
        self.graphs: set[str] = set()
        """The fingerprints whose graph is committed (touched only in a transaction, under
        `using`)."""
        self.graphs_written: list[str] = []
        """Those the open transaction writes: kept in `graphs` once it commits."""
        self.watchers: dict[str, tuple[int, Callable[[], None]]] = {}
        """Claims whose run stops when `cancel_run` asks (run id -> (epoch, stop))."""
        self.conn: sqlite3.Connection | None = None
        """The writing connection, once the thread has opened it (None again once closed)."""
        self.using = threading.Lock()
        self.busy_ms = int(min(busy_timeout, 5.0) * 1000)
        self.pages = 0
        """About how many pages of the log were written since the last checkpoint."""
        self.saved = 0
        """How many characters `pack` saved in the open transaction (`_pages`)."""
        self.here_from = 0.0
        """`time.monotonic()` before which every write goes through the thread (`_HERE_SLOW`)."""
        self.in_hand = 0
        """Jobs submitted to the thread and not yet committed (or failed), under `lock`: while
        there are any, nothing is committed elsewhere, so this process's writes keep their
        order (a queue can be empty while the thread holds a job it took from it)."""

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
            self.in_hand += 1
            self.jobs.put(job)

    def stop(self) -> None:
        with self.lock:
            self.closed = True
            thread = self.thread
        if thread is not None:
            self.jobs.put(None)
            if thread is not threading.current_thread():
                thread.join()

    def may_have_lost(self, claim: Claim) -> bool:
        with self.lock:
            return claim in self.lost or time.time() > self.confirmed

    def watch(self, claim: Claim, stop: Callable[[], None]) -> Callable[[], None]:
        entry = (claim.epoch, stop)
        with self.lock:
            self.watchers[claim.run_id] = entry

        def unwatch() -> None:
            with self.lock:
                if self.watchers.get(claim.run_id) is entry:
                    del self.watchers[claim.run_id]

        return unwatch

    def ask_to_stop(self, asked: list[tuple[str, int]]) -> None:
        """Tell the watchers of these claims that `cancel_run` asked their runs to stop."""
        with self.lock:
            stops = [
                found[1]
                for run_id, epoch in asked
                if (found := self.watchers.get(run_id)) is not None and found[0] == epoch
            ]
        for stop in stops:
            stop()

    # -- the thread ------------------------------------------------------------------------

    def main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = _connect(self.path, min(self.busy_timeout, 5.0))
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # The thread checkpoints the log between batches; SQLite's own stays as a backstop.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_BACKSTOP_PAGES}")
            self.conn = conn
            self.loop(conn)
        except BaseException as exc:  # the connection itself failed: fail every job
            with self.lock:
                self.closed = True
                self.why_closed = f"the store at {self.path!r} failed: {exc}"
            self.drain_failing(exc)
        finally:
            if conn is not None:
                with self.using:  # not while a run's thread is in a transaction on it
                    self.conn = None
                    conn.close()

    def drain_failing(self, exc: BaseException) -> None:
        error = exc if isinstance(exc, StoreError) else StoreError(f"{self.path}: {exc}")
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self.handled(1)
                self.wake([(job, None, error)])

    def handled(self, count: int) -> None:
        """`count` jobs the thread took are committed, or failed: no longer in its hands."""
        with self.lock:
            self.in_hand -= count

    def loop(self, conn: sqlite3.Connection) -> None:
        jobs = self.jobs
        interval = self.lease / 3
        while True:
            try:
                first = jobs.get(timeout=interval)
            except queue.Empty:
                if self.claims:
                    self.wake(self.commit(conn, []))  # renews the leases
                continue
            batch: list[_Job] = []
            stop = False
            job: _Job | None = first
            while True:
                if job is None:
                    stop = True
                elif job.fn is _nothing_job:
                    self.handled(1)  # it only woke the thread for a checkpoint
                else:
                    batch.append(job)
                if len(batch) >= 512:
                    break
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
            if batch:
                results = self.commit(conn, batch)
                self.handled(len(batch))
                self.wake(results)
            if self.pages >= _CHECKPOINT_PAGES:
                self.checkpoint(conn)
            if stop:
                self.drain_failing(StoreError(f"the store at {self.path!r} was closed"))
                return

    def begin(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # left open by an interrupt: what it did never committed
            conn.execute("ROLLBACK")
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

    def begin_now(self, conn: sqlite3.Connection) -> bool:
        """`BEGIN IMMEDIATE` if the file's write lock is free this instant; False if not."""
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:  # held by another process, or worse: the thread will say what
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout = {self.busy_ms}")
        return True

    def commit_here(self, job: _Job) -> bool:
        """Run `job` in its own transaction on the calling thread, if the writer is idle.

        False, having done nothing, unless: the store commits without an fsync
        (``synchronous="normal"``), the thread holds no job (`in_hand`: so this
        process's writes keep their order), no transaction is open, the file's
        write lock is free this instant (never waited for), and no recent commit
        here was slow. Raises what the job raised, or
        `StoreError` if the transaction failed (then nothing of it happened).
        """
        if self.synchronous != "NORMAL" or self.pid != os.getpid() or self.in_hand:
            return False
        if time.monotonic() < self.here_from or not self.using.acquire(blocking=False):
            return False
        try:
            conn = self.conn
            if conn is None or self.closed or self.in_hand:  # (a job may have come meanwhile)
                return False
            started = time.perf_counter()
            try:
                if not self.begin_now(conn):
                    return False
                results = self.transaction(conn, [job], begun=True)
            except BaseException:  # an interrupt: nothing of it may stay open
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            if time.perf_counter() - started > _HERE_SLOW:
                self.here_from = time.monotonic() + _HERE_PAUSE
        finally:
            self.using.release()
        if self.pages >= _CHECKPOINT_PAGES:
            with contextlib.suppress(StoreError):  # closed meanwhile: nothing left to checkpoint
                self.submit(_Job(_nothing_job, (), None, None))
        error = results[0][2]
        if error is not None:
            raise error
        return True

    def checkpoint(self, conn: sqlite3.Connection) -> tuple[int, int, int] | None:
        """Copy the log into the database file, between batches (never inside a commit).

        SQLite's answer: (1 if it could not start, pages in the log, pages copied).
        """
        with self.using:
            self.pages = 0
            try:
                row: tuple[int, int, int] = conn.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)"
                ).fetchone()
            except sqlite3.Error:  # SQLite's own checkpoint is the backstop
                _log.debug("checkpoint of %s failed", self.path, exc_info=True)
                return None
            return row

    def pack(self, text: str) -> str | bytes:
        """`text` as it is written (`packed`), counting what compression saved."""
        value = packed(text)
        if value is not text:
            self.saved += len(text) - len(value)
        return value

    def commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> _Results:
        """Run `batch` in one transaction: each job's result or error, to `wake` them with."""
        with self.using:
            return self.transaction(conn, batch, begun=False)

    def transaction(self, conn: sqlite3.Connection, batch: list[_Job], begun: bool) -> _Results:
        """`commit`'s transaction, `using` held (and begun already when `begun`)."""
        results: _Results = []
        renewed: list[tuple[str, int, int]] | None = None
        claims_before = dict(self.claims)
        now = time.time()
        self.saved = 0
        try:
            if not begun:
                self.begin(conn)
            try:
                for job in batch:
                    try:
                        job.result = job.fn(self, conn, *job.args)  # later jobs may read it
                        results.append((job, job.result, None))
                    except sqlite3.OperationalError:
                        raise  # the disk or the file, not this job: the batch fails
                    except (sqlite3.DatabaseError, Undecodable) as exc:  # a damaged run
                        results.append((job, None, self.damage(job, exc)))
                    except Exception as exc:  # this job only (its one write did not happen)
                        results.append((job, None, exc))
                if not begun and self.claims and now - self.beat > self.lease / 3:
                    renewed = conn.execute(
                        "UPDATE flowdsl_runs SET lease_expires = ? WHERE owner = ? "
                        "AND status = 'running' RETURNING run_id, lease_epoch, cancel_requested",
                        (now + self.lease, owner_token()),
                    ).fetchall()
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            finally:
                written, self.graphs_written = self.graphs_written, []
        except BaseException as exc:  # an interrupt too, on a run's own thread
            with self.lock:
                self.claims = claims_before  # what the batch claimed or gave up did not happen
            for job, _, _ in results:
                job.result = None
            for _, result, _ in results:
                if type(result) is Opened and result.claim is not None:
                    _deactivate(self, result.run_id)
            if not isinstance(exc, sqlite3.Error):
                raise
            error = StoreError(f"could not write to the store at {self.path!r}: {exc}")
            return [(job, None, error) for job in batch]
        self.graphs.update(written)
        self.pages += _pages(batch, self.saved)
        if renewed is not None:
            self.renewed(now, renewed)
        return results

    def renewed(self, now: float, rows: list[tuple[str, int, int]]) -> None:
        """After a renewal: the claims it did not find are lost (another owner took them);
        the runs it found asked to stop are told to."""
        held = {(run_id, epoch) for run_id, epoch, _ in rows}
        with self.lock:
            self.beat = now
            self.confirmed = now + self.lease
            for run_id, epoch in list(self.claims.items()):
                if (run_id, epoch) not in held:
                    del self.claims[run_id]
                    self.lost.add(Claim(run_id, epoch))
        self.ask_to_stop([(run_id, epoch) for run_id, epoch, asked in rows if asked])

    def damage(self, job: _Job, exc: BaseException) -> StoreError:
        run_id = next((a for a in job.args if isinstance(a, str)), None)
        if run_id is None:
            run_id = next((a.run_id for a in job.args if isinstance(a, RunHeader | Claim)), "?")
        if isinstance(exc, StoreError):
            return exc
        return damaged(run_id, "journal", exc)

    @staticmethod
    def wake(results: list[tuple[_Job, object, BaseException | None]]) -> None:
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
                loop.call_soon_threadsafe(_resolve, items)


# -- jobs: run in a transaction on the writer's connection (see `_Job`) -------------------------


def _claimable(
    writer: _Writer, run_id: str, owner: str | None, lease_expires: float | None
) -> bool:
    return claimable(writer.key, run_id, owner, lease_expires, time.time())


def _activate(writer: _Writer, run_id: str, epoch: int) -> None:
    executing(writer.key, run_id)
    with writer.lock:
        writer.claims[run_id] = epoch
        if not writer.confirmed or writer.confirmed < time.time():
            writer.confirmed = time.time() + writer.lease


def _deactivate(writer: _Writer, run_id: str) -> None:
    stopped_executing(writer.key, run_id)
    with writer.lock:
        writer.claims.pop(run_id, None)


def _open_job(writer: _Writer, conn: sqlite3.Connection, header: RunHeader) -> Opened:
    # Everything that can fail comes before the one write, so a failing job changes nothing.
    me = owner_token()
    row = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM flowdsl_runs WHERE run_id = ?", (header.run_id,)
    ).fetchone()
    now = time.time()
    if row is None:
        opened = Opened(
            run_id=header.run_id,
            claim=Claim(header.run_id, 1),
            new=True,
            workflow=header.workflow,
            fingerprint=header.fingerprint,
            shape=header.shape,
            input=header.input,
            started=header.started,
            parent_id=header.parent_id,
            attempts=header.journal,
        )
        conn.execute(
            "INSERT INTO flowdsl_runs (run_id, workflow, status, fingerprint, shape, input, "
            "started, updated, owner, lease_expires, lease_epoch, queued_at, claimed_at, "
            "parent_id) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (
                header.run_id,
                header.workflow,
                header.fingerprint,
                dumps(list(header.shape)),
                writer.pack(header.input),
                header.started,
                now,
                me,
                now + writer.lease,
                now,
                now,
                header.parent_id,
            ),
        )
        _keep_graph(writer, conn, header)
        _journal_header(writer, conn, header, me)
        _activate(writer, header.run_id, 1)
        return opened
    if final(row[2], row[18]):
        return found_run(row, None, finished=run_from_row(row, _load_attempts(conn, row[0])))
    workflow, fingerprint, owner, lease_expires = row[1], row[3], row[12], row[13]
    if (
        workflow != header.workflow
        or fingerprint != header.fingerprint
        or not _claimable(writer, header.run_id, owner, lease_expires)
    ):
        return found_run(row, None, owner=owner)
    opened = _take(writer, conn, row, now)
    _keep_graph(writer, conn, header)  # a run an older release started: its graph from now
    return opened


def _keep_graph(writer: _Writer, conn: sqlite3.Connection, header: RunHeader) -> None:
    """Keep the header's graph, in the run's own commit, once per fingerprint (see `keep_graph`)."""
    statement = keep_graph(header, writer.graphs, "?")
    if statement is not None:
        conn.execute(*statement)
        writer.graphs_written.append(header.fingerprint)


def _journal_header(writer: _Writer, conn: sqlite3.Connection, header: RunHeader, me: str) -> None:
    """Commit the journal entries a new run is created with (`RunHeader.journal`)."""
    if header.journal:
        conn.executemany(
            f"INSERT INTO flowdsl_attempts ({ATTEMPT_ROW}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [attempt_row(header.run_id, a, me, writer.pack) for a in header.journal],
        )


def _take(writer: _Writer, conn: sqlite3.Connection, row: Sequence[Any], now: float) -> Opened:
    """Claim the run of `row` for this process (inside the writer's transaction)."""
    run_id, epoch = row[0], row[14] + 1
    opened = found_run(row, Claim(run_id, epoch), attempts=_load_attempts(conn, run_id))
    conn.execute(
        "UPDATE flowdsl_runs SET status = 'running', owner = ?, lease_expires = ?, "
        "lease_epoch = ?, updated = ?, resumes = resumes + 1, waiting = NULL, "
        "claimed_at = coalesce(claimed_at, ?) WHERE run_id = ?",
        (owner_token(), now + writer.lease, epoch, now, now, run_id),
    )
    _activate(writer, run_id, epoch)
    return opened


def _enqueue_job(
    writer: _Writer, conn: sqlite3.Connection, header: RunHeader, ticket: Ticket
) -> Opened:
    row = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM flowdsl_runs WHERE run_id = ?", (header.run_id,)
    ).fetchone()
    if row is not None:  # the run_id is taken: queue nothing, say what it is
        finished = None
        if final(row[2], row[18]):
            finished = run_from_row(row, _load_attempts(conn, row[0]))
        return found_run(row, None, owner=row[12], finished=finished)
    now = time.time()
    conn.execute(
        "INSERT INTO flowdsl_runs (run_id, workflow, status, fingerprint, shape, input, "
        "started, updated, queue, priority, available_at, queued_at, parent_id) "
        "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            header.run_id,
            header.workflow,
            header.fingerprint,
            dumps(list(header.shape)),
            writer.pack(header.input),
            header.started,
            now,
            ticket.queue,
            ticket.priority,
            ticket.available_at,
            now,
            header.parent_id,
        ),
    )
    _keep_graph(writer, conn, header)
    _journal_header(writer, conn, header, owner_token())
    return Opened(
        run_id=header.run_id,
        claim=None,
        new=True,
        workflow=header.workflow,
        fingerprint=header.fingerprint,
        shape=header.shape,
        input=header.input,
        started=header.started,
        fresh=True,
        parent_id=header.parent_id,
    )


def _capacity(conn: sqlite3.Connection, queue: str, now: float) -> int | None:
    """How many more runs of `queue` may start now (None: no limit), by its declared limits."""
    limits = conn.execute(
        "SELECT concurrency, rate_count, rate_period FROM flowdsl_queues WHERE name = ?", (queue,)
    ).fetchone()
    if limits is None:
        return None
    concurrency, rate_count, rate_period = limits
    room: int | None = None
    if concurrency is not None:
        running = conn.execute(
            "SELECT count(*) FROM flowdsl_runs WHERE queue = ? AND status = 'running'", (queue,)
        ).fetchone()[0]
        room = max(0, concurrency - running)
    if rate_count is not None:
        started = conn.execute(
            "SELECT count(*) FROM flowdsl_runs WHERE queue = ? AND claimed_at > ?",
            (queue, now - rate_period),
        ).fetchone()[0]
        left = max(0, rate_count - started)
        room = left if room is None else min(room, left)
    return room


def _claim_job(writer: _Writer, conn: sqlite3.Connection, request: ClaimRequest) -> list[Opened]:
    """Claim runs for a worker; the writer's one transaction makes it atomic (see Store.claim)."""
    now = time.time()
    known = set(request.known)
    names = sorted({name for name, _ in known})
    if not names or request.limit < 1:
        return []
    where = f"workflow IN ({', '.join('?' for _ in names)})"
    args: list[Any] = list(names)
    if request.queues is not None:
        where += f" AND queue IN ({', '.join('?' for _ in request.queues)})"
        args.extend(request.queues)
    me = owner_token()
    claimed: list[Opened] = []
    # Runs whose owner is gone first: they hold a slot of their queue already.
    host_prefix = me.rsplit("|", 2)[0] + "|"  # this host and PID namespace
    orphans = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM flowdsl_runs WHERE status = 'running' AND {where} "
        f"AND (owner IS NULL OR lease_expires < ? OR (owner LIKE ? AND owner != ?)) "
        f"ORDER BY started, run_id",
        (*args, now, host_prefix + "%", me),
    ).fetchall()
    for row in orphans:
        if len(claimed) >= request.limit:
            return claimed
        if (row[1], row[3]) in known and _claimable(writer, row[0], row[12], row[13]):
            claimed.append(_take(writer, conn, row, now))
    rooms: dict[str, int | None] = {}
    # Then queued runs, and parked runs an event or a deadline woke (`_park_job`).
    queued = conn.execute(
        f"SELECT {RUN_COLUMNS}, queue FROM flowdsl_runs WHERE status IN ('queued', 'waiting') "
        f"AND {where} AND available_at <= ? ORDER BY priority DESC, queued_at, run_id",
        (*args, request.now if request.now is not None else now),
    )
    for row in queued:
        if len(claimed) >= request.limit:
            break
        if (row[1], row[3]) not in known:
            continue
        name = row[-1]
        if name not in rooms:
            rooms[name] = _capacity(conn, name, now)
        room = rooms[name]
        if room is not None:
            if room <= 0:
                continue
            rooms[name] = room - 1
        claimed.append(_take(writer, conn, row, now))
    return claimed


def _declare_job(
    writer: _Writer, conn: sqlite3.Connection, queues: tuple[QueueLimits, ...]
) -> None:
    now = time.time()
    for declared in queues:
        count, period = declared.rate_limit if declared.rate_limit is not None else (None, None)
        conn.execute(
            "INSERT INTO flowdsl_queues (name, concurrency, rate_count, rate_period, updated) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "concurrency = excluded.concurrency, rate_count = excluded.rate_count, "
            "rate_period = excluded.rate_period, updated = excluded.updated",
            (declared.name, declared.concurrency, count, period, now),
        )


_ANOTHER: Final = "give another path"
"""What a damaged or foreign file's message tells a user to do besides restoring a backup."""
_HOLDS: Final = "SELECT 1 FROM flowdsl_runs WHERE run_id = ? AND owner = ? AND lease_epoch = ?"


def _append_job(writer: _Writer, conn: sqlite3.Connection, claim: Claim, a: Attempt) -> None:
    me = owner_token()
    cursor = conn.execute(
        f"INSERT INTO flowdsl_attempts ({ATTEMPT_ROW}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
        f"WHERE EXISTS ({_HOLDS})",
        (*attempt_row(claim.run_id, a, me, writer.pack), claim.run_id, me, claim.epoch),
    )
    if cursor.rowcount != 1:
        raise lost_claim(claim)


def _finish_job(
    writer: _Writer, conn: sqlite3.Connection, claim: Claim, end: Ending
) -> list[tuple[str, str]]:
    """The run's final record and, for a child run, its parent's event: all or nothing.

    Returns the (run, event) mailboxes it wrote to.
    """
    # A job that raises is not rolled back by the batch: the savepoint undoes this one.
    try:
        conn.execute("SAVEPOINT flowdsl_finish")
        try:
            mailboxes = _finish(writer, conn, claim, end)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the transaction failed: the batch's is
                conn.execute("ROLLBACK TO flowdsl_finish")  # rolled back as a whole
                conn.execute("RELEASE flowdsl_finish")
            raise
        conn.execute("RELEASE flowdsl_finish")
        return mailboxes
    finally:
        _deactivate(writer, claim.run_id)


def _finish(
    writer: _Writer, conn: sqlite3.Connection, claim: Claim, end: Ending
) -> list[tuple[str, str]]:
    rows = conn.execute(
        "UPDATE flowdsl_runs SET status = ?, output = ?, error = ?, failed_step = ?, "
        "compensations = ?, duration = ?, updated = ?, owner = NULL, lease_expires = NULL "
        "WHERE run_id = ? AND owner = ? AND lease_epoch = ? RETURNING parent_id, cancel_requested",
        (
            end.status,
            writer.pack(end.output),
            end.error,
            end.failed_step,
            end.compensations,
            end.duration,
            time.time(),
            claim.run_id,
            owner_token(),
            claim.epoch,
        ),
    ).fetchall()
    if len(rows) != 1:
        raise lost_claim(claim)
    parent_id, asked = rows[0]
    mailboxes: list[tuple[str, str]] = []
    if end.status == "cancelled" and asked:  # stopped for good: so are its unfinished children
        mailboxes = _cancel_tree(writer, conn, _children(conn, claim.run_id))[1]
    notice = None if parent_id is None else child_notice(claim.run_id, end.status, asked)
    if notice is None:
        return mailboxes
    event, payload = notice
    if _deliver(writer, conn, parent_id, event, payload):
        mailboxes.append((parent_id, event))
    return mailboxes


def _deliver(
    writer: _Writer, conn: sqlite3.Connection, parent_id: str, event: str, payload: str
) -> bool:
    """A child's end to its parent's mailbox, unless the parent takes no event; whether sent."""
    found = conn.execute(
        "SELECT status, waiting, cancel_requested FROM flowdsl_runs WHERE run_id = ?",
        (parent_id,),
    ).fetchone()
    wakes = parent_delivery(parent_id, event, found, writer.path)
    if wakes is None:
        return False
    _mail(conn, parent_id, event, payload, wakes)
    return True


_TREE: Final = "run_id, status, owner, lease_expires, cancel_requested, parent_id"
"""What `_cancel_tree` reads of each run of a tree."""


def _children(conn: sqlite3.Connection, run_id: str) -> list[Any]:
    return conn.execute(
        f"SELECT {_TREE} FROM flowdsl_runs WHERE parent_id = ? ORDER BY started, run_id",
        (run_id,),
    ).fetchall()


def _cancel_tree(
    writer: _Writer, conn: sqlite3.Connection, roots: list[Any]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Cancel the runs of `roots` (`_TREE` rows) and all their descendants that have not ended.

    Returns what was done to each, ``(run_id, "cancelled" | "stopping")``, and the
    mailboxes written to: a run cancelled now whose parent is outside the tree
    sends it ``child_finished``, as its end would.
    """
    now = time.time()
    done: list[tuple[str, str]] = []
    ended: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        run_id, status, owner, expires, asked, parent = todo.pop(0)
        if run_id in seen:
            continue
        seen.add(run_id)
        loose = status == "running" and _claimable(writer, run_id, owner, expires)
        action = cancel_action(status, asked, loose)
        if action == "cancelled":
            conn.execute(
                "UPDATE flowdsl_runs SET status = 'cancelled', cancel_requested = 1, "
                "owner = NULL, lease_expires = NULL, lease_epoch = lease_epoch + 1, "
                "available_at = NULL, updated = ? WHERE run_id = ?",
                (now, run_id),
            )
            ended.append((run_id, parent))
        elif action == "stopping":
            conn.execute("UPDATE flowdsl_runs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
        if action is not None:
            done.append((run_id, action))
        todo.extend(_children(conn, run_id))
    mailboxes: list[tuple[str, str]] = []
    for run_id, parent in ended:
        notice = child_notice(run_id, "cancelled", True)
        if parent is None or parent in seen or notice is None:
            continue
        if _deliver(writer, conn, parent, *notice):
            mailboxes.append((parent, notice[0]))
    return done, mailboxes


def _cancel_job(
    writer: _Writer, conn: sqlite3.Connection, run_id: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    row = conn.execute(f"SELECT {_TREE} FROM flowdsl_runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(no_such_run(run_id, writer.path))
    if final(row[1], row[4]):
        raise UsageError(not_cancellable(run_id, row[1]))
    return _cancel_tree(writer, conn, [row])


def _retry_job(
    writer: _Writer,
    conn: sqlite3.Connection,
    run_id: str,
    pick: Pick,
    available_at: float,
) -> str:
    row = conn.execute(
        "SELECT workflow, status, fingerprint, shape, input, queue, priority, failed_step "
        "FROM flowdsl_runs WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise RunNotFound(no_such_run(run_id, writer.path))
    workflow, status, fingerprint, shape, data, queue_name, priority, failed_step = row
    if status not in ENDED:
        raise UsageError(not_retryable(run_id, status))
    kept = pick(status, failed_step, shape_of(run_id, shape), _load_attempts(conn, run_id))
    new_id = next(
        candidate
        for candidate in retry_ids(run_id)
        if not _one(conn, "SELECT 1 FROM flowdsl_runs WHERE run_id = ?", (candidate,))
    )
    now = time.time()
    conn.execute(
        "INSERT INTO flowdsl_runs (run_id, workflow, status, fingerprint, shape, input, "
        "started, updated, queue, priority, available_at, queued_at) "
        "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id, workflow, fingerprint, shape, data, now, now, queue_name, priority,
            available_at, now,
        ),
    )  # fmt: skip
    data = text_of(run_id, "input", data)
    header = RunHeader(new_id, workflow, fingerprint, (), data, now, journal=kept)
    _journal_header(writer, conn, header, owner_token())
    return new_id


def _prune_job(
    writer: _Writer, conn: sqlite3.Connection, cut: float, statuses: tuple[str, ...]
) -> int:
    marks = ", ".join("?" for _ in statuses)
    gone = [
        row[0]
        for row in conn.execute(
            f"DELETE FROM flowdsl_runs WHERE status IN ({marks}) AND updated < ? RETURNING run_id",
            (*statuses, cut),
        )
    ]
    for start in range(0, len(gone), 500):  # under SQLite's limit on a statement's arguments
        chunk = gone[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        conn.execute(f"DELETE FROM flowdsl_attempts WHERE run_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM flowdsl_events WHERE run_id IN ({marks})", chunk)
    return len(gone)


_BULK_JOBS: Final = frozenset({_prune_job, _cancel_job, _retry_job})
"""Jobs that may write any number of rows (see `_pages`)."""


def _holds_job(writer: _Writer, conn: sqlite3.Connection, claim: Claim) -> bool:
    now = time.time()
    row = conn.execute(
        "UPDATE flowdsl_runs SET lease_expires = ? WHERE run_id = ? AND owner = ? "
        "AND lease_epoch = ? RETURNING cancel_requested",
        (now + writer.lease, claim.run_id, owner_token(), claim.epoch),
    ).fetchone()
    holds = row is not None
    if holds and row[0]:
        writer.ask_to_stop([(claim.run_id, claim.epoch)])
    with writer.lock:
        if holds:
            if len(writer.claims) == 1:  # the only lease: it is confirmed as a whole
                writer.confirmed = max(writer.confirmed, now + writer.lease)
        else:
            writer.claims.pop(claim.run_id, None)
            writer.lost.add(claim)
    return holds


def _release_job(
    writer: _Writer, conn: sqlite3.Connection, claim: Claim, status: str | None
) -> None:
    try:
        conn.execute(
            "UPDATE flowdsl_runs SET owner = NULL, lease_expires = NULL, "
            "status = coalesce(?, status), updated = ? "
            "WHERE run_id = ? AND owner = ? AND lease_epoch = ?",
            (status, time.time(), claim.run_id, owner_token(), claim.epoch),
        )
    finally:
        _deactivate(writer, claim.run_id)


def _send_job(
    writer: _Writer, conn: sqlite3.Connection, run_id: str, event: str, payload: str
) -> None:
    found = conn.execute(
        "SELECT status, waiting, cancel_requested FROM flowdsl_runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    _mail(conn, run_id, event, payload, delivery(run_id, event, found, writer.path))


def _mail(conn: sqlite3.Connection, run_id: str, event: str, payload: str, wakes: bool) -> None:
    """Put the event in the run's mailbox, last in line; `wakes`: the parked run is woken."""
    now = time.time()
    conn.execute(
        "INSERT INTO flowdsl_events (run_id, event, payload, sent) VALUES (?, ?, ?, ?)",
        (run_id, event, payload, now),
    )
    if wakes:
        conn.execute(
            "UPDATE flowdsl_runs SET available_at = ?, updated = ? "
            "WHERE run_id = ? AND status = 'waiting'",
            (WOKEN, now, run_id),
        )


def _take_event_job(
    writer: _Writer,
    conn: sqlite3.Connection,
    claim: Claim,
    event: str,
    entry: Attempt,
    wrap: tuple[str, str],
) -> str | None:
    if conn.execute(_HOLDS, (claim.run_id, owner_token(), claim.epoch)).fetchone() is None:
        raise lost_claim(claim)
    row = conn.execute(
        "SELECT seq, payload FROM flowdsl_events WHERE run_id = ? AND event = ? "
        "AND taken IS NULL ORDER BY seq LIMIT 1",
        (claim.run_id, event),
    ).fetchone()
    if row is None:
        return None
    seq, payload = row
    # The journal entry first: a job that raises is not rolled back (the batch commits what
    # it wrote before), so an entry that is refused (fenced, or that visit journaled already)
    # must come before the event is marked taken, which leaves it for the next visit.
    _append_job(writer, conn, claim, attrs.evolve(entry, outcome=wrap[0] + payload + wrap[1]))
    conn.execute(
        "UPDATE flowdsl_events SET taken = ?, taken_by = ? WHERE seq = ?",
        (time.time(), f"{entry.step}#{entry.visit}", seq),
    )
    return str(payload)


def _park_job(
    writer: _Writer,
    conn: sqlite3.Connection,
    claim: Claim,
    waiting: Waiting,
    visits: tuple[tuple[str, int], ...],
) -> None:
    try:
        run_id = claim.run_id
        events = waiting.events
        # Woken already: an event it waits for is in its mailbox, or a wait took its event
        # (journaled its outcome) as the run was being parked.
        woken = bool(events) and _one(
            conn,
            f"SELECT 1 FROM flowdsl_events WHERE run_id = ? AND taken IS NULL "
            f"AND event IN ({', '.join('?' for _ in events)}) LIMIT 1",
            (run_id, *events),
        )
        woken = woken or any(
            _one(
                conn,
                "SELECT 1 FROM flowdsl_attempts WHERE run_id = ? AND kind = 'step' "
                "AND step = ? AND visit = ? AND final = 1 LIMIT 1",
                (run_id, name, visit),
            )
            for name, visit in visits
        )
        wake = WOKEN if woken else waiting.until  # an event is there already: claimable now
        # A run asked to stop as it parked is claimable now: claimed, it is recorded cancelled.
        cursor = conn.execute(
            "UPDATE flowdsl_runs SET status = 'waiting', owner = NULL, lease_expires = NULL, "
            "available_at = CASE WHEN cancel_requested THEN ? ELSE ? END, waiting = ?, "
            "updated = ? WHERE run_id = ? AND owner = ? AND lease_epoch = ?",
            (
                WOKEN,
                wake,
                waiting_text(waiting),
                time.time(),
                claim.run_id,
                owner_token(),
                claim.epoch,
            ),
        )
        if cursor.rowcount != 1:
            raise lost_claim(claim)
    finally:
        _deactivate(writer, claim.run_id)


def _one(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> bool:
    return conn.execute(sql, args).fetchone() is not None


def _observe_job(
    writer: _Writer, conn: sqlite3.Connection, workflow: str, now: float
) -> float | None:
    row = conn.execute(
        "SELECT checked FROM flowdsl_schedules WHERE workflow = ?", (workflow,)
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO flowdsl_schedules (workflow, since, checked) VALUES (?, ?, ?)",
            (workflow, now, now),
        )
        return None
    conn.execute(
        "UPDATE flowdsl_schedules SET checked = max(checked, ?) WHERE workflow = ?",
        (now, workflow),
    )
    return float(row[0])


def _abandon_claims_job(writer: _Writer, conn: sqlite3.Connection, claiming: _Job) -> None:
    """After a `_claim_job` whose caller was cancelled: give back every claim it made."""
    claimed = claiming.result
    if isinstance(claimed, list):
        for opened in claimed:
            if opened.claim is not None:
                _release_job(writer, conn, opened.claim, None)


def _abandon_job(
    writer: _Writer, conn: sqlite3.Connection, opening: _Job, status: str | None
) -> None:
    """After an `_open_job` whose caller was cancelled: give back the claim it made, if any."""
    opened = opening.result
    if type(opened) is Opened and opened.claim is not None:
        _release_job(writer, conn, opened.claim, status)


# -- opening the file ------------------------------------------------------------------------


def _init_schema(path: str, busy_timeout: float) -> None:
    """Switch the file to WAL and create or migrate the tables, waiting out others' locks."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            _create_private(path)
            conn = _connect(path, min(busy_timeout, 5.0))
        except (OSError, sqlite3.Error) as exc:
            msg = f"could not open the store at {path!r}: {exc}"
            raise StoreError(msg) from exc
        try:
            _prepare(conn, path)
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() > deadline:
                msg = f"could not open the store at {path!r}: {exc}"
                raise StoreError(msg) from exc
        except sqlite3.DatabaseError as exc:  # not a database, or damaged pages
            msg = (
                f"the store at {path!r} cannot be read ({exc}): it is not a flowdsl store, "
                f"or the file is damaged; restore it from a backup or give another path"
            )
            raise StoreError(msg) from exc
        finally:
            conn.close()
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


def _prepare(conn: sqlite3.Connection, path: str) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        msg = (
            f"the store at {path!r} could not switch to WAL mode (got {mode!r}); "
            f"use a file on a local disk"
        )
        raise StoreError(msg)
    conn.execute("BEGIN IMMEDIATE")
    try:
        _schema(conn, path)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _schema(conn: sqlite3.Connection, path: str) -> None:
    """Inside the schema transaction: create, migrate, or check what the file holds."""
    tables = _tables(conn)
    ours = {"flowdsl_schema", *TABLE_COLUMNS}
    if not tables & ours:
        if tables:
            msg = (
                f"the file at {path!r} is an SQLite database, but not a flowdsl store "
                f"(its tables: {', '.join(sorted(tables))}); give the path of a new file"
            )
            raise StoreError(msg)
        _create(conn)
        conn.execute("INSERT INTO flowdsl_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        return
    if "flowdsl_schema" not in tables:
        raise partial_schema(path, "the flowdsl_schema table is missing", _ANOTHER)
    found = conn.execute("SELECT max(version) FROM flowdsl_schema").fetchone()[0]
    if not isinstance(found, int):
        raise partial_schema(path, f"its schema version is {found!r}", _ANOTHER)
    if found > SCHEMA_VERSION:
        raise newer_schema(path, found, SCHEMA_VERSION)
    missing = sorted({"flowdsl_runs", "flowdsl_attempts"} - tables)  # in every version
    if missing:
        raise partial_schema(path, f"tables {', '.join(missing)} are missing", _ANOTHER)
    for version in range(found, SCHEMA_VERSION):
        _log.info("migrating the store at %r from schema %d to %d", path, version, version + 1)
        _MIGRATIONS[version](conn)
    if found < SCHEMA_VERSION:
        conn.execute("DELETE FROM flowdsl_schema")
        conn.execute("INSERT INTO flowdsl_schema (version) VALUES (?)", (SCHEMA_VERSION,))
    for table, columns in TABLE_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        lacking = [column for column in columns if column not in have]
        if lacking:
            raise partial_schema(
                path, f"table {table} lacks the columns {', '.join(lacking)}", _ANOTHER
            )


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS flowdsl_schema (version INTEGER NOT NULL)")
    conn.execute(_RUNS)
    conn.execute(_QUEUES)
    conn.execute(_EVENTS)
    conn.execute(_SCHEDULES)
    conn.execute(_GRAPHS)
    conn.execute(_ATTEMPTS.format(name="flowdsl_attempts"))
    for statement in _INDEXES:
        conn.execute(statement)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Leases replace heartbeats; journal entries get a kind (the unique key changes)."""
    conn.execute("ALTER TABLE flowdsl_runs ADD COLUMN lease_expires REAL")
    conn.execute("ALTER TABLE flowdsl_runs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0")
    # A version-1 owner renewed a heartbeat; the default lease then was 30 seconds.
    conn.execute("UPDATE flowdsl_runs SET lease_expires = heartbeat + 30 WHERE owner IS NOT NULL")
    conn.execute(_ATTEMPTS.format(name="flowdsl_attempts_2"))
    conn.execute(
        "INSERT INTO flowdsl_attempts_2 (seq, run_id, kind, step, visit, attempt, status, "
        "final, outcome, started, duration, worker) SELECT seq, run_id, 'step', step, visit, "
        "attempt, status, final, outcome, started, duration, worker FROM flowdsl_attempts"
    )
    conn.execute("DROP TABLE flowdsl_attempts")
    conn.execute("ALTER TABLE flowdsl_attempts_2 RENAME TO flowdsl_attempts")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Queues: where each run waits, in which order, since when; and the queues' limits."""
    for column in (
        "queue TEXT NOT NULL DEFAULT 'default'",
        "priority INTEGER NOT NULL DEFAULT 0",
        "available_at REAL",
        "queued_at REAL",
        "claimed_at REAL",
    ):
        conn.execute(f"ALTER TABLE flowdsl_runs ADD COLUMN {column}")
    conn.execute("UPDATE flowdsl_runs SET queued_at = started, claimed_at = started")
    conn.execute(_QUEUES)
    for statement in _INDEXES[:3]:
        conn.execute(statement)


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Waits: what a parked run waits for, the runs' mailboxes, and the schedules' history."""
    conn.execute("ALTER TABLE flowdsl_runs ADD COLUMN waiting TEXT")
    conn.execute(_EVENTS)
    conn.execute(_SCHEDULES)
    for statement in _INDEXES[3:5]:
        conn.execute(statement)


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """Child runs: the run that started each one (NULL for every run recorded before)."""
    conn.execute("ALTER TABLE flowdsl_runs ADD COLUMN parent_id TEXT")
    conn.execute(_INDEXES[5])


def _migrate_6_to_7(conn: sqlite3.Connection) -> None:
    """Run management: cancel requests, and the indexes that page through runs (no run
    recorded before was asked to stop)."""
    conn.execute("ALTER TABLE flowdsl_runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0")
    for statement in _INDEXES[6:]:
        conn.execute(statement)


def _migrate_7_to_8(conn: sqlite3.Connection) -> None:
    """Compressed values: nothing to change, every text row reads as before. The version
    is what stops an older release, which cannot read a BLOB, from opening the file."""


def _migrate_graphs(conn: sqlite3.Connection) -> None:
    """Graphs: the table of each definition's graph (runs recorded before have none)."""
    conn.execute(_GRAPHS)


_MIGRATIONS: Final[dict[int, Callable[[sqlite3.Connection], None]]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
    4: _migrate_4_to_5,
    5: _migrate_graphs,
    6: _migrate_6_to_7,
    7: _migrate_7_to_8,
}
"""Schema version n -> n + 1, run in order inside one transaction when a store is opened."""


class SQLiteStore:
    """The embedded durable store: one SQLite file (WAL mode), safe for many processes.

    ``synchronous="normal"`` (the default) makes every committed step survive a
    crash of the process (``kill -9``, an exception, the OOM killer);
    ``"full"`` also survives a crash of the machine or a power cut, at the
    cost of an fsync per commit. ``busy_timeout`` is how long a write waits
    for another process holding the file's write lock before it fails.
    ``lease`` is how long a run this store executes stays claimed without
    being renewed (renewed every ``lease / 3`` seconds while it runs): another
    process may take the run over once it expires (at once, when the owner is
    a process on this host that is gone).

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
        require(seconds_problem(busy_timeout, "busy_timeout=", optional=False))
        require(seconds_problem(lease, "lease=", optional=False))
        self.path = text
        self.busy_timeout = float(busy_timeout)
        self.lease = float(lease)
        _init_schema(text, self.busy_timeout)
        key = os.path.realpath(text)
        self._writer = _Writer(text, key, synchronous.upper(), self.busy_timeout, self.lease)
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

    def _reading(self, what: str, read: Callable[[sqlite3.Connection], Any]) -> Any:
        """`read` in one snapshot of a connection of its own; SQLite's errors as StoreError."""
        conn = self._read()
        try:
            conn.execute("BEGIN")
            found = read(conn)
            conn.execute("COMMIT")
            return found
        except sqlite3.DatabaseError as exc:
            msg = f"could not read {what} from the store at {self.path!r}: {exc}"
            raise StoreError(msg) from exc
        finally:
            conn.close()

    def get_run(self, run_id: str) -> Run | None:
        """The run named `run_id`, finished or not, or None when the store has no such run.

        A run whose rows cannot be read (edited by hand, damaged) is a
        `StoreError` naming it and what is wrong.
        """

        def read(conn: sqlite3.Connection) -> tuple[Any, tuple[Attempt, ...]]:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM flowdsl_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return row, (_load_attempts(conn, run_id) if row is not None else ())

        row, attempts = self._reading(f"run {run_id!r}", read)
        return None if row is None else run_from_row(row, attempts)

    def get_definition(self, run_id: str) -> Definition | None:
        """The definition run `run_id` was started with, and its graph if the store kept it."""

        def read(conn: sqlite3.Connection) -> Any:
            return conn.execute(DEFINITION_QUERY.format(mark="?"), (run_id,)).fetchone()

        row = self._reading(f"the definition of run {run_id!r}", read)
        return None if row is None else definition_from_row(run_id, row)

    def list_runs(
        self,
        status: RunStatus | tuple[RunStatus, ...] | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        before: Run | tuple[float, str] | None = None,
        parent: str | None = None,
        on_damaged: Callable[[str, StoreError], None] | None = None,
    ) -> list[Run]:
        """The runs in the store, oldest first; with `limit`, the `limit` newest, newest first.

        `status` is one status or a tuple of them; `workflow` a workflow's
        name; `since` an aware datetime (runs started at or after it);
        ``before=`` the last `Run` of the previous page (or its ``(started,
        run_id)``): the page after it. ``parent=RUN_ID`` lists only the child
        runs that run started. A run whose rows cannot be read is left out:
        it is handed to ``on_damaged(run_id, error)``, or logged as a warning
        (logger ``"flowdsl"``), so one damaged run never hides the others.
        """
        clause, args = list_query(status, workflow, since, limit, before, parent, "?")

        def read(conn: sqlite3.Connection) -> tuple[list[Any], dict[str, list[Any]]]:
            rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM flowdsl_runs {clause}", args).fetchall()
            journals: dict[str, list[Any]] = {row[0]: [] for row in rows}
            for row in conn.execute(
                f"SELECT run_id, {ATTEMPT_COLUMNS} FROM flowdsl_attempts "
                f"WHERE run_id IN (SELECT run_id FROM flowdsl_runs {clause}) ORDER BY seq",
                args,
            ):
                found = journals.get(row[0])
                if found is not None:
                    found.append(row[1:])
            return rows, journals

        def build(row: Sequence[Any]) -> Run:
            # The journal's rows are read here, so a damaged one is this run's alone.
            run_id = row[0]
            return run_from_row(row, [attempt_from_row(run_id, a) for a in journals[run_id]])

        rows, journals = self._reading("the runs", read)
        return readable(rows, build, on_damaged if on_damaged is not None else warn_damaged)

    def resumable(
        self,
        *,
        include_cancelled: bool = False,
        on_damaged: Callable[[str, StoreError], None] | None = None,
    ) -> list[Pending]:
        """Unfinished runs that no live owner holds, oldest first (what `resume_runs` resumes)."""
        statuses = ("running", "cancelled") if include_cancelled else ("running",)

        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT run_id, workflow, fingerprint, shape, status, owner, lease_expires, parent_id "
                f"FROM flowdsl_runs WHERE status IN ({', '.join('?' for _ in statuses)}) "
                "AND NOT (status = 'cancelled' AND cancel_requested) ORDER BY started, run_id",
                statuses,
            ).fetchall()

        pending: list[Pending] = []
        for run_id, workflow, fingerprint, shape, status, owner, expires, parent in self._reading(
            "the unfinished runs", read
        ):
            if not _claimable(self._writer, run_id, owner, expires):
                continue
            try:
                pending.append(
                    Pending(
                        run_id,
                        workflow,
                        fingerprint,
                        shape_of(run_id, shape),
                        status,
                        parent_id=parent,
                    )
                )
            except StoreError as exc:
                (on_damaged or warn_damaged)(run_id, exc)
        return pending

    # -- writing (the run functions call these) --------------------------------------------

    def _submit(self, fn: Callable[..., object], *args: object) -> tuple[_Job, asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        job = _Job(fn, args, loop, future)
        self._writer.submit(job)
        return job, future

    async def open_run(self, header: RunHeader) -> Opened:
        """Create the run, or claim it to resume it; see `Store.open_run`.

        If the caller is cancelled while the claim is being written, the claim
        is given back as soon as it commits, and the run recorded as cancelled.
        """
        job, future = self._submit(_open_job, header)
        try:
            opened: Opened = await asyncio.shield(future)
        except asyncio.CancelledError:
            # Queued now, so the writer runs it right after the open (jobs are in order).
            self._writer.submit(_Job(_abandon_job, (job, "cancelled"), None, None))
            raise
        return opened

    def _commit_here(self, job: _Job, size: int) -> bool:
        """Whether `job` (writing about `size` characters) was committed on this thread.

        Only when nothing else waits, neither on the event loop nor for the writer:
        then the two hand-overs between threads would cost more than the commit
        (see `_Writer.commit_here`). A record longer than `_HERE_LIMIT` goes to the
        thread, and so does every write on a loop other than asyncio's own (its list
        of ready callbacks is what tells; timers due and I/O are not in it).
        """
        if size > _HERE_LIMIT:
            return False
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        return (
            type(ready) is collections.deque
            and not ready
            and type(loop).call_soon is _CALL_SOON  # asyncio's own scheduling, not a subclass's
            and self._writer.commit_here(job)
        )

    async def append(self, claim: Claim, attempt: Attempt) -> None:
        """Commit one journal entry; returns once it is on disk (in the WAL)."""
        if self._commit_here(_Job(_append_job, (claim, attempt), None, None), len(attempt.outcome)):
            await asyncio.sleep(0)  # the run goes on at the loop's next turn, as it would
            return
        await self._submit(_append_job, claim, attempt)[1]

    async def finish_run(self, claim: Claim, ending: Ending) -> None:
        """Commit the run's final record (and its parent's event); the run is no longer owned."""
        here = _Job(_finish_job, (claim, ending), None, None)
        mailboxes: list[tuple[str, str]]
        # A cancelled run may cancel a tree of children: that is the writer thread's to do.
        if ending.status != "cancelled" and self._commit_here(
            here, len(ending.output) + len(ending.error or "")
        ):
            mailboxes = here.result  # type: ignore[assignment]
        else:
            mailboxes = await self._submit(_finish_job, claim, ending)[1]
        for mailbox in mailboxes:
            _wake_mail((self._writer.key, *mailbox))

    async def holds(self, claim: Claim) -> bool:
        """Whether `claim` still holds its run; renews its lease when it does."""
        held: bool = await self._submit(_holds_job, claim)[1]
        return held

    def lost(self, claim: Claim) -> bool:
        """True when a renewal found the claim taken, or the leases were not renewed in time."""
        return self._writer.may_have_lost(claim)

    # -- managing runs -------------------------------------------------------------------

    async def cancel(self, run_id: str) -> tuple[tuple[str, str], ...]:
        """Cancel the run and its unfinished children in one commit; see `Store.cancel`."""
        done, mailboxes = await self._submit(_cancel_job, run_id)[1]
        for mailbox in mailboxes:
            _wake_mail((self._writer.key, *mailbox))
        return tuple(done)

    def watch(self, claim: Claim, stop: Callable[[], None]) -> Callable[[], None]:
        """`stop()` from the writer thread when a lease renewal finds the run asked to stop."""
        return self._writer.watch(claim, stop)

    async def cancel_requested(self, run_id: str) -> bool:
        """Whether `cancel_run` asked for `run_id` to stop."""

        def read(conn: sqlite3.Connection) -> bool:
            return _one(
                conn,
                "SELECT 1 FROM flowdsl_runs WHERE run_id = ? AND cancel_requested",
                (run_id,),
            )

        asked: bool = await asyncio.to_thread(self._reading, f"run {run_id!r}", read)
        return asked

    async def retry(
        self,
        run_id: str,
        pick: Pick,
        available_at: float,
    ) -> str:
        """Queue a retry of the ended run `run_id`; see `Store.retry`."""
        new_id: str = await self._submit(_retry_job, run_id, pick, available_at)[1]
        return new_id

    async def prune(self, finished_before: float, statuses: tuple[str, ...]) -> int:
        """Delete ended runs, their journals and mailboxes; see `Store.prune`."""
        count: int = await self._submit(_prune_job, finished_before, statuses)[1]
        return count

    # -- queues and workers ------------------------------------------------------------------

    async def enqueue(self, header: RunHeader, ticket: Ticket) -> Opened:
        """Commit the run as queued; see `Store.enqueue`."""
        opened: Opened = await self._submit(_enqueue_job, header, ticket)[1]
        return opened

    async def claim(self, request: ClaimRequest) -> list[Opened]:
        """Claim runs for a worker; see `Store.claim`.

        A caller cancelled while the claims are written gives them back as soon
        as they commit (their runs are then claimable by anyone at once).
        """
        if not await asyncio.to_thread(self._anything_to_claim, request):
            return []  # an idle poll never takes the file's write lock
        job, future = self._submit(_claim_job, request)
        try:
            claimed: list[Opened] = await asyncio.shield(future)
        except asyncio.CancelledError:
            self._writer.submit(_Job(_abandon_claims_job, (job,), None, None))
            raise
        return claimed

    def _anything_to_claim(self, request: ClaimRequest) -> bool:
        """A read-only look: whether `claim` could find a run now (it may still find none)."""
        names = sorted({name for name, _ in request.known})
        if not names or request.limit < 1:
            return False
        where = f"workflow IN ({', '.join('?' for _ in names)})"
        args: list[Any] = list(names)
        if request.queues is not None:
            where += f" AND queue IN ({', '.join('?' for _ in request.queues)})"
            args.extend(request.queues)
        now = time.time()
        due = request.now if request.now is not None else now

        def read(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                f"SELECT 1 FROM flowdsl_runs WHERE {where} AND ("
                f"(status IN ('queued', 'waiting') AND available_at <= ?) OR "
                f"(status = 'running' AND (owner IS NULL OR lease_expires < ? OR owner LIKE ?))"
                f") LIMIT 1",
                (*args, due, now, owner_token().rsplit("|", 2)[0] + "|%"),
            ).fetchone()
            return row is not None

        found: bool = self._reading("the claimable runs", read)
        return found

    async def declare_queues(self, queues: tuple[QueueLimits, ...]) -> None:
        """Record the queues' limits; see `Store.declare_queues`."""
        await self._submit(_declare_job, queues)[1]

    async def wait_for_work(self, timeout: float) -> None:
        """SQLite cannot be notified: a poll, at most every 50 ms."""
        await asyncio.sleep(min(timeout, 0.05))

    # -- waits and events ------------------------------------------------------------------

    async def send_event(self, run_id: str, event: str, payload: str) -> None:
        """Commit an event to the run's mailbox; see `Store.send_event`."""
        await self._submit(_send_job, run_id, event, payload)[1]
        _wake_mail((self._writer.key, run_id, event))

    async def take_event(
        self, claim: Claim, event: str, entry: Attempt, wrap: tuple[str, str]
    ) -> str | None:
        """Take the oldest event for `event` and journal `entry` in one commit."""
        payload: str | None = await self._submit(_take_event_job, claim, event, entry, wrap)[1]
        return payload

    async def wait_for_event(self, run_id: str, event: str, timeout: float) -> None:
        """Until an event for the run is in its mailbox, or `timeout` seconds.

        One sent from this process wakes the wait at once; one sent from
        another is found by a read, every 50 ms at first, then less often (at
        least every second).
        """
        loop = asyncio.get_running_loop()
        key = (self._writer.key, run_id, event)
        future: asyncio.Future[None] = loop.create_future()
        me = (loop, future)
        with _MAIL_LOCK:
            _MAIL.setdefault(key, set()).add(me)
        try:
            deadline = loop.time() + timeout
            pause = 0.05
            while not await asyncio.to_thread(self._has_event, run_id, event):
                left = deadline - loop.time()
                if left <= 0:
                    return
                done, _ = await asyncio.wait({future}, timeout=min(pause, left))
                if done:
                    return
                pause = min(pause * 2, 1.0)
        finally:
            with _MAIL_LOCK:
                waiters = _MAIL.get(key)
                if waiters is not None:
                    waiters.discard(me)
                    if not waiters:
                        del _MAIL[key]

    def _has_event(self, run_id: str, event: str) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM flowdsl_events WHERE run_id = ? AND event = ? AND taken IS NULL "
                "LIMIT 1",
                (run_id, event),
            ).fetchone()
            return row is not None

        found: bool = self._reading(f"the mailbox of run {run_id!r}", read)
        return found

    async def park(
        self, claim: Claim, waiting: Waiting, visits: tuple[tuple[str, int], ...]
    ) -> None:
        """Give the run up as "waiting" until it is woken; see `Store.park`."""
        await self._submit(_park_job, claim, waiting, visits)[1]

    async def last_look(self, workflow: str) -> float | None:
        """When a look at `workflow`'s schedule was last recorded; see `Store.last_look`."""

        def read(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT checked FROM flowdsl_schedules WHERE workflow = ?", (workflow,)
            ).fetchone()
            return None if row is None else float(row[0])

        found: float | None = await asyncio.to_thread(self._reading, "a schedule's looks", read)
        return found

    async def observe_schedule(self, workflow: str, now: float) -> float | None:
        """Note a look at `workflow`'s schedule; see `Store.observe_schedule`."""
        before: float | None = await self._submit(_observe_job, workflow, now)[1]
        return before

    def release(self, claim: Claim, status: RunStatus | None = None) -> None:
        """Give up owning an unfinished run so it can be resumed (written in the background)."""
        try:
            self._writer.submit(_Job(_release_job, (claim, status), None, None))
        except StoreError:  # closed: the owner check will see this process gone or idle
            stopped_executing(self._writer.key, claim.run_id)
