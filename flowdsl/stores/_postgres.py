"""`PostgresStore`: the store for many machines (psycopg 3, async, pooled).

One store object owns a private event loop on a thread of its own, a
`psycopg_pool.AsyncConnectionPool` on that loop, and one listening connection
(``LISTEN``). Run calls on any loop or thread hand it coroutines and await
their result, so a store is shared by every run of a process, as
`SQLiteStore` is.

**Group commit.** Journal entries are the hot path: every entry waiting when
the previous write returns goes into one ``INSERT ... SELECT FROM unnest(...)``
statement, one round trip and one commit for all of them, however many runs
wrote them. The statement is fenced: it inserts an entry only while the run's
row names this process and the entry's claim epoch, and it takes a share lock
on those rows, so a claim by another process waits for it and then sees it.

**Leases** use the database's clock (``now()``): a claim sets ``lease_expires``
to the server's time plus ``lease``; a heartbeat renews every lease of this
process every ``lease / 3`` seconds and learns which it lost. Claims by
workers are ``FOR UPDATE SKIP LOCKED``; a queue's limits are counted under a
lock on its row of ``flowdsl_queues``, so they hold across every worker.
Workers wake on ``NOTIFY`` (a run queued, an event sent, a run released or
parked with its event already there) and on the earliest deadline of a
delayed or parked run, not by polling.

Payloads are text columns holding the codec's JSON (see `docs/decisions.md`):
the codec owns the format, and ``jsonb`` would parse and re-encode every
write for nothing flowdsl reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from .._checks import require, seconds_problem
from .._engine._clock import clock
from .._engine._run import Run, RunStatus, Waiting
from ..errors import RunNotFound, StoreError, UsageError
from ._codec import dumps
from ._owner import claimable, executing, owner_alive, owner_token, stopped_executing
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
    waiting_text,
    warn_damaged,
)

try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool
except ImportError:  # pragma: no cover - the extra is not installed
    psycopg = None  # type: ignore[assignment]

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

_log = logging.getLogger("flowdsl")
_T = TypeVar("_T")

SCHEMA_VERSION: Final = 7
"""The schema this release writes (``flowdsl_schema``); the same numbers as SQLite's.

PostgreSQL stores begin at 4 (queues, waits, events and schedules): there is
no older PostgreSQL schema to migrate from. 5: child runs (``parent_id``,
indexed). 6: the graphs of the definitions runs started with
(``flowdsl_graphs``). 7: run management (``cancel_requested``, and indexes on
``started`` and ``workflow`` for paging through runs). Each later release
adds its step to `_MIGRATIONS`.
"""

_NOW: Final = "extract(epoch from now())"
_CLOCK: Final = "extract(epoch from clock_timestamp())"
"""The server's time as a statement reads it (``now()`` is the transaction's start): a
queue's starts are stamped and counted with it, so a slow claim cannot stretch the window."""
_WORK: Final = "flowdsl_work"
"""The channel a worker listens on: a run may have become claimable."""
_EVENT: Final = "flowdsl_event"
"""The channel a waiting run listens on: its payload is the run id an event was sent to."""
_CANCEL: Final = "flowdsl_cancel"
"""The channel `cancel_run` tells owners on: its payload is the id of a run to stop."""

_BY_PARENT: Final = (
    "CREATE INDEX flowdsl_runs_by_parent ON flowdsl_runs (parent_id, started) "
    "WHERE parent_id IS NOT NULL"
)
_GRAPHS: Final = """CREATE TABLE IF NOT EXISTS flowdsl_graphs (
        fingerprint text PRIMARY KEY,
        workflow    text NOT NULL,
        graph       text NOT NULL
    )"""
_PAGING: Final = (
    "CREATE INDEX flowdsl_runs_by_start ON flowdsl_runs (started, run_id)",
    "CREATE INDEX flowdsl_runs_by_workflow ON flowdsl_runs (workflow, started, run_id)",
    "CREATE INDEX flowdsl_events_by_run ON flowdsl_events (run_id)",
)
"""Schema 7's indexes: `list_runs` pages on the first two, `prune` deletes mailboxes on the last."""
_TABLES: Final = (
    """CREATE TABLE flowdsl_runs (
        run_id        text PRIMARY KEY,
        workflow      text NOT NULL,
        status        text NOT NULL,
        fingerprint   text NOT NULL,
        shape         text NOT NULL,
        input         text NOT NULL,
        output        text,
        error         text,
        failed_step   text,
        compensations text,
        started       double precision NOT NULL,
        updated       double precision NOT NULL,
        duration      double precision,
        owner         text,
        lease_expires double precision,
        lease_epoch   bigint NOT NULL DEFAULT 0,
        resumes       integer NOT NULL DEFAULT 0,
        queue         text NOT NULL DEFAULT 'default',
        priority      integer NOT NULL DEFAULT 0,
        available_at  double precision,
        queued_at     double precision,
        claimed_at    double precision,
        waiting       text,
        parent_id     text,
        cancel_requested boolean NOT NULL DEFAULT false
    )""",
    """CREATE TABLE flowdsl_attempts (
        seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id   text NOT NULL,
        kind     text NOT NULL DEFAULT 'step',
        step     text NOT NULL,
        visit    integer NOT NULL,
        attempt  integer NOT NULL,
        status   text NOT NULL,
        final    boolean NOT NULL,
        outcome  text NOT NULL,
        started  double precision NOT NULL,
        duration double precision NOT NULL,
        worker   text NOT NULL,
        UNIQUE (run_id, kind, step, visit, attempt)
    )""",
    """CREATE TABLE flowdsl_queues (
        name        text PRIMARY KEY,
        concurrency integer,
        rate_count  integer,
        rate_period double precision,
        updated     double precision NOT NULL
    )""",
    """CREATE TABLE flowdsl_events (
        seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id   text NOT NULL,
        event    text NOT NULL,
        payload  text NOT NULL,
        sent     double precision NOT NULL,
        taken    double precision,
        taken_by text
    )""",
    """CREATE TABLE flowdsl_schedules (
        workflow text PRIMARY KEY,
        since    double precision NOT NULL,
        checked  double precision NOT NULL
    )""",
    "CREATE INDEX flowdsl_runs_by_status ON flowdsl_runs (status, started)",
    "CREATE INDEX flowdsl_runs_queued ON flowdsl_runs (status, queue, priority, queued_at)",
    "CREATE INDEX flowdsl_runs_starts ON flowdsl_runs (queue, claimed_at)",
    "CREATE INDEX flowdsl_runs_owner ON flowdsl_runs (owner) WHERE owner IS NOT NULL",
    "CREATE INDEX flowdsl_runs_waking ON flowdsl_runs (status, available_at)",
    "CREATE INDEX flowdsl_attempts_by_run ON flowdsl_attempts (run_id, seq)",
    "CREATE INDEX flowdsl_events_mailbox ON flowdsl_events (run_id, event, seq) "
    "WHERE taken IS NULL",
    _BY_PARENT,
    _GRAPHS,
    *_PAGING,
)


def _migrate_4_to_5(conn: Any) -> None:
    """Child runs: the run that started each one (NULL for every run recorded before)."""
    conn.execute("ALTER TABLE flowdsl_runs ADD COLUMN parent_id text")
    conn.execute(_BY_PARENT)


def _migrate_graphs(conn: Any) -> None:
    """Graphs: the table of each definition's graph (runs recorded before have none)."""
    conn.execute(_GRAPHS)


def _migrate_6_to_7(conn: Any) -> None:
    """Run management: cancel requests, and the indexes that page through runs (no run
    recorded before was asked to stop)."""
    conn.execute(
        "ALTER TABLE flowdsl_runs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false"
    )
    for statement in _PAGING:
        conn.execute(statement)


_MIGRATIONS: Final[dict[int, Callable[[Any], None]]] = {
    4: _migrate_4_to_5,
    5: _migrate_graphs,
    6: _migrate_6_to_7,
}
"""Schema version n -> n + 1 (a function of a sync connection), run in one transaction."""
_SCHEMA_LOCK: Final = 7_346_512_019
"""The advisory lock two processes opening a new database take, so one creates it."""

_APPEND: Final = """
    WITH held AS (
        SELECT run_id, lease_epoch FROM flowdsl_runs
        WHERE run_id = ANY(%(runs)s) AND owner = %(me)s
        ORDER BY run_id FOR SHARE
    )
    INSERT INTO flowdsl_attempts
        (run_id, kind, step, visit, attempt, status, final, outcome, started, duration, worker)
    SELECT v.run_id, v.kind, v.step, v.visit, v.attempt, v.status, v.final, v.outcome,
           v.started, v.duration, %(me)s
    FROM unnest(%(run_id)s::text[], %(epoch)s::bigint[], %(kind)s::text[], %(step)s::text[],
                %(visit)s::integer[], %(attempt)s::integer[], %(status)s::text[],
                %(final)s::boolean[], %(outcome)s::text[], %(started)s::float8[],
                %(duration)s::float8[])
         WITH ORDINALITY AS v(run_id, epoch, kind, step, visit, attempt, status, final,
                              outcome, started, duration, n)
    JOIN held ON held.run_id = v.run_id AND held.lease_epoch = v.epoch
    ORDER BY v.n
    RETURNING run_id, kind, step, visit, attempt
"""
_APPEND_ONE: Final = """
    WITH held AS (
        SELECT 1 FROM flowdsl_runs
        WHERE run_id = %(run_id)s AND owner = %(me)s AND lease_epoch = %(epoch)s FOR SHARE
    )
    INSERT INTO flowdsl_attempts
        (run_id, kind, step, visit, attempt, status, final, outcome, started, duration, worker)
    SELECT %(run_id)s, %(kind)s, %(step)s, %(visit)s, %(attempt)s, %(status)s, %(final)s,
           %(outcome)s, %(started)s, %(duration)s, %(me)s
    FROM held
    RETURNING run_id, kind, step, visit, attempt
"""
"""`_APPEND` for a lone entry: the same fence, a cheaper statement."""
_ANOTHER: Final = "use another database or schema"
"""What a damaged or foreign schema's message tells a user to do besides restoring a backup."""
_HOLDS: Final = (
    "SELECT 1 FROM flowdsl_runs WHERE run_id = %s AND owner = %s AND lease_epoch = %s FOR SHARE"
)


def _missing_extra() -> UsageError:
    return UsageError(
        "PostgresStore needs psycopg 3 and psycopg-pool: pip install 'flowdsl[postgres]'"
    )


def _shown(dsn: str) -> str:
    """The DSN as messages show it: any password replaced by ``***``."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", dsn)


class _Leases:
    """The runs this store holds (run id -> epoch, and since when), what a renewal found
    lost, and until when the leases were last confirmed (this host's clock). Read from
    any thread under `lock`."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.lock = threading.Lock()
        self.claims: dict[str, tuple[int, float]] = {}
        self.lost: set[Claim] = set()
        self.confirmed = 0.0
        self.watchers: dict[str, tuple[int, Callable[[], None]]] = {}
        """Claims whose run stops when `cancel_run` asks (run id -> (epoch, stop))."""

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

    def ask_to_stop(self, asked: Sequence[tuple[str, int | None]]) -> None:
        """Tell the watchers of these claims (epoch None: any) that their runs must stop."""
        with self.lock:
            stops = [
                found[1]
                for run_id, epoch in asked
                if (found := self.watchers.get(run_id)) is not None
                and (epoch is None or found[0] == epoch)
            ]
        for stop in stops:
            stop()

    def hold(self, key: str, claim: Claim) -> None:
        """This process executes `claim` from now on (called before the claim commits)."""
        executing(key, claim.run_id)
        now = time.time()
        with self.lock:
            self.claims[claim.run_id] = (claim.epoch, now)
            self.lost.discard(claim)
            if self.confirmed < now:
                self.confirmed = now + self.lease

    def committed(self, claims: Sequence[Claim]) -> None:
        """`claims` committed just now: a renewal sent before this may not have seen them."""
        now = time.time()
        with self.lock:
            for claim in claims:
                held = self.claims.get(claim.run_id)
                if held is not None and held[0] == claim.epoch:
                    self.claims[claim.run_id] = (claim.epoch, now)

    def drop(self, key: str, claim: Claim) -> None:
        """This process no longer executes `claim` (a later claim of the run is left alone)."""
        with self.lock:
            held = self.claims.get(claim.run_id)
            if held is None or held[0] != claim.epoch:
                return
            del self.claims[claim.run_id]
        stopped_executing(key, claim.run_id)

    def renewed(self, sent: float, rows: Sequence[tuple[str, int, bool]]) -> None:
        """After a renewal sent at `sent`: a claim held before then that it did not find is
        lost. One made since may have committed after the renewal's snapshot: not judged.
        A run it found asked to stop is told to."""
        held = {(run_id, epoch) for run_id, epoch, _ in rows}
        self.ask_to_stop([(run_id, epoch) for run_id, epoch, asked in rows if asked])
        with self.lock:
            self.confirmed = sent + self.lease
            for run_id, (epoch, since) in list(self.claims.items()):
                if since < sent and (run_id, epoch) not in held:
                    del self.claims[run_id]
                    self.lost.add(Claim(run_id, epoch))

    def lose(self, claim: Claim) -> None:
        with self.lock:
            if self.claims.get(claim.run_id, (None,))[0] == claim.epoch:
                del self.claims[claim.run_id]
            self.lost.add(claim)

    def kept(self, claim: Claim, sent: float) -> None:
        """A renewal of `claim` alone (`holds`) found it held."""
        with self.lock:
            self.lost.discard(claim)
            if claim.run_id not in self.claims:
                self.claims[claim.run_id] = (claim.epoch, sent)
            if len(self.claims) == 1:  # the only lease: it is confirmed as a whole
                self.confirmed = max(self.confirmed, sent + self.lease)


class _Waiters:
    """Futures on any event loop, woken by notifications the listener receives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_key: dict[tuple[str, str], set[tuple[asyncio.AbstractEventLoop, Any]]] = {}

    def add(self, key: tuple[str, str]) -> tuple[asyncio.AbstractEventLoop, Any]:
        loop = asyncio.get_running_loop()
        me = (loop, loop.create_future())
        with self.lock:
            self.by_key.setdefault(key, set()).add(me)
        return me

    def remove(self, key: tuple[str, str], me: tuple[asyncio.AbstractEventLoop, Any]) -> None:
        with self.lock:
            found = self.by_key.get(key)
            if found is not None:
                found.discard(me)
                if not found:
                    del self.by_key[key]

    def wake(self, key: tuple[str, str] | None) -> None:
        """Wake the waiters for `key` (None: every waiter, after the listener reconnected)."""
        with self.lock:
            if key is None:
                waiters = [w for group in self.by_key.values() for w in group]
            else:
                waiters = list(self.by_key.get(key, ()))
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(_settle, future)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _consume(future: asyncio.Future[Any] | concurrent.futures.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a caller that gave up does not log it


class _Engine:
    """What lives on the store's own event loop: the pool, the listener, the append lane."""

    def __init__(
        self, dsn: str, where: str, key: str, lease: float, pool_size: int, synchronous: bool
    ) -> None:
        self.dsn = dsn
        self.synchronous = synchronous
        self.where = where
        self.key = key
        self.lease = lease
        self.pool_size = pool_size
        self.leases = _Leases(lease)
        self.waiters = _Waiters()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.closed = False
        self.pid = os.getpid()
        # Only touched on the store's loop:
        self.pool: Any = None
        self.pending: list[tuple[Claim, Attempt, asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.lane: asyncio.Lock | None = None
        self.tasks: dict[asyncio.Task[Any], str] = {}
        """Background writes (releases) in flight, and the run of each."""
        self.calls: set[asyncio.Task[Any]] = set()
        self.listening: asyncio.Event | None = None
        self.listener: asyncio.Task[None] | None = None
        self.beating: asyncio.Task[None] | None = None
        self.kept: Any = None
        self.inflight: list[tuple[Claim, Attempt, asyncio.Future[None]]] = []
        self.opening: asyncio.Task[None] | None = None
        self.work_generation = 0
        """Work notifications received (read from any thread)."""
        self.claimed_generation = 0
        """`work_generation` when the last claim began: a notice after it means look again."""

    # -- the thread and its loop (called from any thread) -----------------------------------

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        if self.pid != os.getpid():
            coro.close()
            msg = (
                f"the store at {self.where!r} was opened in the parent of this forked process; "
                f"open a new PostgresStore in the child (a connection must not cross a fork)"
            )
            raise StoreError(msg)
        with self.lock:
            if self.closed:
                coro.close()
                msg = f"the store at {self.where!r} is closed; open a new PostgresStore"
                raise StoreError(msg)
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                self.thread = threading.Thread(
                    target=self.loop.run_forever, name="flowdsl-postgres", daemon=True
                )
                self.thread.start()
            loop = self.loop
        return asyncio.run_coroutine_threadsafe(self.tracked_call(coro), loop)

    async def tracked_call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """`coro`, known to `shutdown` while it runs (a write in flight is finished first)."""
        task = asyncio.current_task()
        assert task is not None
        self.calls.add(task)
        try:
            return await coro
        finally:
            self.calls.discard(task)

    def stop(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            loop, thread = self.loop, self.thread
        if loop is None or thread is None:
            return
        if thread is threading.current_thread():  # pragma: no cover - closed from a store job
            loop.call_soon(loop.stop)
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.shutdown(), loop).result(timeout=90)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    async def shutdown(self) -> None:
        """Finish every call in flight (for up to 30 s), then close the connections."""
        if self.calls:
            await asyncio.wait(set(self.calls), timeout=30.0)
        while self.tasks or (self.flusher is not None and not self.flusher.done()):
            await asyncio.gather(
                *self.tasks, *([self.flusher] if self.flusher else []), return_exceptions=True
            )
            if self.flusher is not None and self.flusher.done():
                self.flusher = None
        for task in (self.listener, self.beating):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.pool is not None:
            if self.kept is not None:
                await self.pool.putconn(self.kept)
                self.kept = None
            await self.pool.close()
        # Whatever a caller left behind (a wait it gave up on) ends with the loop.
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    async def settle(self, run_id: str | None) -> None:
        """Wait for the writes of `run_id` handed to the store before this one (its journal
        entries pending or in flight, its release), so that a run's writes commit in the
        order they were made, as SQLite's writer gives; None: every release."""
        me = asyncio.current_task()
        earlier: list[asyncio.Future[Any]] = [
            task
            for task, of in self.tasks.items()
            if task is not me and (run_id is None or of == run_id)
        ]
        if run_id is not None:
            earlier += [f for claim, _, f in self.pending if claim.run_id == run_id]
            earlier += [f for claim, _, f in self.inflight if claim.run_id == run_id]
        if earlier:
            await asyncio.gather(*(asyncio.shield(t) for t in earlier), return_exceptions=True)

    def background(self, run_id: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro`, a write of `run_id`, on the store's loop; nobody waits for it
        (`close` and the run's next writes do)."""
        self.submit(self._tracked(run_id, coro))

    async def _tracked(self, run_id: str, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks[task] = run_id
        try:
            await coro
        except Exception as exc:
            _log.warning("the store at %r: a background write failed: %s", self.where, exc)
        finally:
            self.tasks.pop(task, None)

    # -- on the store's loop -----------------------------------------------------------------

    async def connection(self) -> Any:
        """The pool (opened on first use), whose ``connection()`` lends a connection.

        It is opened by a task of its own, which no caller's cancellation stops;
        when opening fails, the next call tries again.
        """
        if self.pool is not None:
            return self.pool
        if self.opening is None:
            self.lane = self.lane or asyncio.Lock()
            self.opening = asyncio.create_task(self.open_pool())
        opening = self.opening
        try:
            await asyncio.shield(opening)
        finally:
            if opening.done() and (opening.cancelled() or opening.exception() is not None):
                self.opening = None
        return self.pool

    async def open_pool(self) -> None:
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size + 1,  # and one the append lane keeps
            kwargs={"autocommit": True},
            configure=None if self.synchronous else _asynchronous_commits,
            open=False,
            name="flowdsl",
        )
        try:
            await pool.open(wait=True, timeout=30.0)
        except BaseException:
            await pool.close()
            raise
        self.pool = pool
        self.beating = asyncio.create_task(self.heartbeat())

    async def heartbeat(self) -> None:
        """Renew this process's leases every ``lease / 3`` seconds while it holds any."""
        while True:
            await asyncio.sleep(self.lease / 3)
            with self.leases.lock:
                holding = bool(self.leases.claims)
            if holding:
                try:
                    await self.renew()
                except psycopg.Error as exc:
                    _log.warning("could not renew leases at %r: %s", self.where, exc)

    @contextlib.asynccontextmanager
    async def lane_connection(self) -> Any:
        """The append lane: one connection kept for journal writes and lease renewals.

        Only one holder at a time, so an append and a renewal never lock rows in
        opposite orders; a connection that failed goes back to the pool (which
        drops it when broken) and the next holder gets another.
        """
        pool = await self.connection()
        assert self.lane is not None
        async with self.lane:
            if self.kept is None:
                self.kept = await pool.getconn()
            try:
                yield self.kept
            except psycopg.Error:
                kept, self.kept = self.kept, None
                await pool.putconn(kept)
                raise

    async def renew(self) -> None:
        async with self.lane_connection() as conn:
            sent = time.time()
            cursor = await conn.execute(
                f"UPDATE flowdsl_runs SET lease_expires = {_NOW} + %s "
                f"WHERE owner = %s AND status = 'running' "
                f"RETURNING run_id, lease_epoch, cancel_requested",
                (self.lease, owner_token()),
            )
            rows = await cursor.fetchall()
        self.leases.renewed(sent, rows)

    async def append(self, claim: Claim, attempt: Attempt) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((claim, attempt, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self.flush())
        await future

    async def flush(self) -> None:
        """Write every pending journal entry in one statement, until none is pending."""
        while self.pending:
            batch, self.pending = self.pending, []
            self.inflight = batch
            try:
                async with self.lane_connection() as conn:
                    try:
                        written = await self.insert(conn, batch)
                    except psycopg.errors.IntegrityError:  # one entry is bad: find which
                        written = set()
                        for item in batch:
                            try:
                                written |= await self.insert(conn, [item])
                            except psycopg.errors.IntegrityError as exc:
                                item[2].set_exception(damaged(item[0].run_id, "journal", exc))
            except psycopg.Error as exc:
                error = StoreError(f"could not write to the store at {self.where!r}: {exc}")
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for claim, attempt, future in batch:
                if future.done():
                    continue
                if (claim.run_id, attempt.kind, attempt.step, attempt.visit, attempt.attempt) in (
                    written
                ):
                    future.set_result(None)
                else:
                    future.set_exception(lost_claim(claim))

    @staticmethod
    async def insert(
        conn: Any, batch: Sequence[tuple[Claim, Attempt, Any]]
    ) -> set[tuple[str, str, str, int, int]]:
        columns: dict[str, list[Any]] = {
            name: []
            for name in (
                "run_id", "epoch", "kind", "step", "visit", "attempt", "status", "final",
                "outcome", "started", "duration",
            )
        }  # fmt: skip
        if len(batch) == 1:
            claim, a, _ = batch[0]
            cursor = await conn.execute(
                _APPEND_ONE,
                {
                    "run_id": claim.run_id,
                    "epoch": claim.epoch,
                    "kind": a.kind,
                    "step": a.step,
                    "visit": a.visit,
                    "attempt": a.attempt,
                    "status": "succeeded" if a.succeeded else "failed",
                    "final": a.final,
                    "outcome": a.outcome,
                    "started": a.started,
                    "duration": a.duration,
                    "me": owner_token(),
                },
            )
            return {tuple(row) for row in await cursor.fetchall()}
        for claim, a, _ in batch:
            columns["run_id"].append(claim.run_id)
            columns["epoch"].append(claim.epoch)
            columns["kind"].append(a.kind)
            columns["step"].append(a.step)
            columns["visit"].append(a.visit)
            columns["attempt"].append(a.attempt)
            columns["status"].append("succeeded" if a.succeeded else "failed")
            columns["final"].append(a.final)
            columns["outcome"].append(a.outcome)
            columns["started"].append(a.started)
            columns["duration"].append(a.duration)
        args = {
            **columns,
            "runs": sorted(set(columns["run_id"])),
            "me": owner_token(),
        }
        cursor = await conn.execute(_APPEND, args)
        return {tuple(row) for row in await cursor.fetchall()}

    async def transaction(self, work: Callable[[Any], Awaitable[_T]]) -> _T:
        """`work(conn)` inside one transaction on a pooled connection."""
        pool = await self.connection()
        async with pool.connection() as conn, conn.transaction():
            return await work(conn)

    async def autocommit(self, work: Callable[[Any], Awaitable[_T]]) -> _T:
        """`work(conn)` on a pooled connection, each statement committing on its own."""
        pool = await self.connection()
        async with pool.connection() as conn:
            return await work(conn)

    # -- listening ---------------------------------------------------------------------------

    async def listen_ready(self) -> bool:
        """Start the listener once; whether it listens now (False: it is reconnecting)."""
        if self.listening is None:
            self.listening = asyncio.Event()
            self.listener = asyncio.create_task(self.listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), timeout=5.0)
        return self.listening.is_set()

    async def listen(self) -> None:
        assert self.listening is not None
        pause = 0.05
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {_WORK}")
                    await conn.execute(f"LISTEN {_EVENT}")
                    await conn.execute(f"LISTEN {_CANCEL}")
                    self.listening.set()
                    self.waiters.wake(None)  # a notification may have been missed meanwhile
                    pause = 0.05
                    async for note in conn.notifies():
                        if note.channel == _WORK:
                            self.work_generation += 1
                            self.waiters.wake((_WORK, ""))
                        elif note.channel == _CANCEL:
                            self.leases.ask_to_stop([(note.payload, None)])
                        elif note.payload:
                            self.waiters.wake((_EVENT, note.payload))
                        else:  # a run id too long for a notice: every waiting run looks
                            self.waiters.wake(None)
            except psycopg.Error as exc:
                _log.warning("listening at %r failed, reconnecting: %s", self.where, exc)
            self.listening.clear()
            self.waiters.wake(None)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


async def _asynchronous_commits(conn: Any) -> None:
    """``synchronous_commit="off"``: a commit returns before the server flushes its WAL."""
    await conn.execute("SET synchronous_commit = off")


_MAILBOX_ROW: Final = (
    "SELECT status, waiting, cancel_requested FROM flowdsl_runs WHERE run_id = %s FOR UPDATE"
)
"""What `delivery` needs of a run an event is sent to, its row locked."""
_TREE: Final = "run_id, status, owner, lease_expires, cancel_requested, parent_id"
"""What `PostgresStore._cancel_tree` reads of each run of a tree."""

_FINISH: Final = (
    "UPDATE flowdsl_runs SET status = %s, output = %s, error = %s, failed_step = %s, "
    "compensations = %s, duration = %s, updated = %s, owner = NULL, lease_expires = NULL "
    "WHERE run_id = %s AND owner = %s AND lease_epoch = %s"
)


async def _mail(conn: Any, run_id: str, event: str, payload: str, wakes: bool) -> None:
    """Put the event in the run's mailbox, last in line, and tell its listeners (on commit);
    `wakes`: the parked run is woken, and so are idle workers."""
    now = time.time()
    await conn.execute(
        "INSERT INTO flowdsl_events (run_id, event, payload, sent) VALUES (%s, %s, %s, %s)",
        (run_id, event, payload, now),
    )
    # A notice's payload is under 8,000 bytes: a longer run id wakes every waiting run.
    notice = run_id if len(run_id.encode()) < 4000 else ""
    await conn.execute("SELECT pg_notify(%s, %s)", (_EVENT, notice))
    if wakes:
        await conn.execute(
            "UPDATE flowdsl_runs SET available_at = %s, updated = %s "
            "WHERE run_id = %s AND status = 'waiting'",
            (WOKEN, now, run_id),
        )
        await conn.execute("SELECT pg_notify(%s, '')", (_WORK,))


async def _children(conn: Any, run_id: str) -> list[Any]:
    """The `_TREE` rows (with the server's time) of `run_id`'s children, locked."""
    cursor = await conn.execute(
        f"SELECT {_TREE}, {_NOW} FROM flowdsl_runs WHERE parent_id = %s ORDER BY run_id FOR UPDATE",
        (run_id,),
    )
    return list(await cursor.fetchall())


async def _attempts(conn: Any, run_id: str) -> tuple[Attempt, ...]:
    cursor = await conn.execute(
        f"SELECT {ATTEMPT_COLUMNS} FROM flowdsl_attempts WHERE run_id = %s ORDER BY seq",
        (run_id,),
    )
    return tuple(attempt_from_row(run_id, row) for row in await cursor.fetchall())


async def _journal_header(conn: Any, header: RunHeader) -> None:
    """Write the journal entries a new run is created with (`RunHeader.journal`)."""
    if not header.journal:
        return
    me = owner_token()
    async with conn.cursor() as cursor:
        await cursor.executemany(
            f"INSERT INTO flowdsl_attempts ({ATTEMPT_ROW}) VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s)",
            [attempt_row(header.run_id, a, me) for a in header.journal],
        )


async def _row(conn: Any, run_id: str, lock: str = "") -> Any:
    cursor = await conn.execute(
        f"SELECT {RUN_COLUMNS}, {_NOW} FROM flowdsl_runs WHERE run_id = %s {lock}", (run_id,)
    )
    return await cursor.fetchone()


def _hold(engine: _Engine, claim: Claim, taken: list[Claim]) -> Claim:
    """Note `claim` as executing in this process before its transaction commits, so that a
    call of this process waiting on the run's row lock sees it taken; `taken` lists what
    to give up if the transaction fails."""
    engine.leases.hold(engine.key, claim)
    taken.append(claim)
    return claim


async def _take(engine: _Engine, conn: Any, row: Sequence[Any], taken: list[Claim]) -> Opened:
    """Claim the run of `row` (locked by this transaction) for this process."""
    return (await _take_many(engine, conn, [row], taken))[0]


async def _take_many(
    engine: _Engine, conn: Any, rows: Sequence[Sequence[Any]], taken: list[Claim]
) -> list[Opened]:
    """Claim the runs of `rows` (locked by this transaction): two statements for them all."""
    if not rows:
        return []
    ids = [row[0] for row in rows]
    cursor = await conn.execute(
        f"UPDATE flowdsl_runs SET status = 'running', owner = %s, lease_expires = {_NOW} + %s, "
        f"lease_epoch = lease_epoch + 1, updated = %s, resumes = resumes + 1, waiting = NULL, "
        f"claimed_at = coalesce(claimed_at, {_CLOCK}) WHERE run_id = ANY(%s) "
        f"RETURNING run_id, lease_epoch",
        (owner_token(), engine.lease, time.time(), ids),
    )
    epochs = {run_id: int(epoch) for run_id, epoch in await cursor.fetchall()}
    journals: dict[str, list[Attempt]] = {run_id: [] for run_id in ids}
    # Every run's journal: one never claimed may have been queued with entries (its trace
    # parent, `RunHeader.journal`).
    cursor = await conn.execute(
        f"SELECT run_id, {ATTEMPT_COLUMNS} FROM flowdsl_attempts WHERE run_id = ANY(%s) "
        f"ORDER BY seq",
        (ids,),
    )
    for found in await cursor.fetchall():
        journals[found[0]].append(attempt_from_row(found[0], found[1:]))
    return [
        found_run(
            row,
            _hold(engine, Claim(row[0], epochs[row[0]]), taken),
            attempts=tuple(journals[row[0]]),
        )
        for row in rows
    ]


class PostgresStore:
    """The store for many machines: one PostgreSQL database, shared by every worker.

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host:5432/db``;
    ``?options=-csearch_path%3Dmyschema`` puts the tables in a schema of their
    own). The tables are created on first use; an older schema is migrated
    forward, a newer one refused. ``lease`` is how long a run this store
    executes stays claimed without being renewed (renewed every ``lease / 3``
    seconds, on the database's clock); ``pool_size`` caps the connections
    this store lends to its writes and reads (plus one kept for the journal and one that
    listens for notifications).

    ``synchronous_commit="on"`` (the default) returns from every write once the
    server has flushed it to disk: a committed step survives a crash of any
    process and of the server's machine. ``"off"`` returns before that flush
    (PostgreSQL's own setting of that name, for this store's connections
    only): a crash of a flowdsl process still loses nothing committed, but a
    crash of the PostgreSQL server may lose the last fraction of a second of
    commits, so a step may run again after it. It makes a lone run's steps
    several times cheaper where each flush is slow; concurrent runs share
    their flushes either way.

    Needs ``pip install 'flowdsl[postgres]'``. Use it as a context manager, or
    call ``close()`` when done.
    """

    def __init__(
        self,
        dsn: str,
        *,
        lease: float = 30.0,
        pool_size: int = 10,
        synchronous_commit: Literal["on", "off"] = "on",
    ) -> None:
        if psycopg is None:  # pragma: no cover - the extra is not installed
            raise _missing_extra()
        if not isinstance(dsn, str) or not dsn.strip():
            msg = (
                f"PostgresStore needs a connection string such as "
                f"'postgresql://user@localhost:5432/db', got {dsn!r}"
            )
            raise UsageError(msg)
        require(seconds_problem(lease, "lease=", optional=False))
        if synchronous_commit not in ("on", "off"):
            msg = f"synchronous_commit= must be 'on' or 'off', got {synchronous_commit!r}"
            raise UsageError(msg)
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
            msg = f"pool_size= takes a whole number of connections >= 1, got {pool_size!r}"
            raise UsageError(msg)
        try:
            psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            msg = f"PostgresStore cannot read the connection string {_shown(dsn)!r}: {exc}"
            raise UsageError(msg) from None
        self.dsn = dsn
        self.lease = float(lease)
        self.where = _shown(dsn)
        key = _init_schema(dsn, self.where)
        self._engine = _Engine(
            dsn, self.where, key, self.lease, pool_size, synchronous_commit == "on"
        )
        self._leases = self._engine.leases
        self._graphs: set[str] = set()
        """The fingerprints whose graph is committed (touched on the store's loop only)."""
        self._close = weakref.finalize(self, _Engine.stop, self._engine)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish the writes in flight, close the connections and stop the store's thread."""
        self._close()

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(self, coro: Coroutine[Any, Any, _T], *, shield: bool = True) -> _T:
        """Run `coro` on the store's loop; a shielded write goes on if the caller is cancelled."""
        submitted = self._engine.submit(coro)
        if not shield:
            return await asyncio.wrap_future(submitted)
        try:
            return await asyncio.shield(asyncio.wrap_future(submitted))
        except asyncio.CancelledError:
            submitted.add_done_callback(_consume)
            raise

    async def _write(self, what: str, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            return await coro
        except psycopg.Error as exc:
            msg = f"could not {what} in the store at {self.where!r}: {exc}"
            raise StoreError(msg) from exc

    def _read(self, what: str, read: Callable[[Any], Awaitable[_T]]) -> _T:
        """`read(conn)` in one transaction, from sync code on any thread."""

        async def work() -> _T:
            try:
                return await self._engine.transaction(read)
            except psycopg.Error as exc:
                msg = f"could not read {what} from the store at {self.where!r}: {exc}"
                raise StoreError(msg) from exc

        return self._engine.submit(work()).result()

    # -- reading -----------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run | None:
        """The run named `run_id`, finished or not, or None when the store has no such run."""

        async def read(conn: Any) -> tuple[Any, tuple[Attempt, ...]]:
            row = await _row(conn, run_id)
            return row, (await _attempts(conn, run_id) if row is not None else ())

        row, attempts = self._read(f"run {run_id!r}", read)
        return None if row is None else run_from_row(row, attempts)

    def get_definition(self, run_id: str) -> Definition | None:
        """The definition run `run_id` was started with, and its graph if the store kept it."""

        async def read(conn: Any) -> Any:
            cursor = await conn.execute(DEFINITION_QUERY.format(mark="%s"), (run_id,))
            return await cursor.fetchone()

        row = self._read(f"the definition of run {run_id!r}", read)
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

        The filters and ``before=`` are those of `SQLiteStore.list_runs`. A run
        whose rows cannot be read is handed to ``on_damaged(run_id, error)``,
        or logged as a warning, so one damaged run never hides the others.
        """
        clause, args = list_query(status, workflow, since, limit, before, parent, "%s")

        async def read(conn: Any) -> tuple[list[Any], dict[str, list[Attempt]]]:
            cursor = await conn.execute(f"SELECT {RUN_COLUMNS} FROM flowdsl_runs {clause}", args)
            rows = await cursor.fetchall()
            attempts: dict[str, list[Attempt]] = {row[0]: [] for row in rows}
            cursor = await conn.execute(
                f"SELECT run_id, {ATTEMPT_COLUMNS} FROM flowdsl_attempts "
                f"WHERE run_id = ANY(%s) ORDER BY seq",
                (list(attempts),),
            )
            for row in await cursor.fetchall():
                attempts[row[0]].append(attempt_from_row(row[0], row[1:]))
            return rows, attempts

        rows, attempts = self._read("the runs", read)
        return readable(
            rows,
            lambda row: run_from_row(row, attempts[row[0]]),
            on_damaged if on_damaged is not None else warn_damaged,
        )

    def resumable(
        self,
        *,
        include_cancelled: bool = False,
        on_damaged: Callable[[str, StoreError], None] | None = None,
    ) -> list[Pending]:
        """Unfinished runs that no live owner holds, oldest first (what `resume_runs` resumes)."""
        statuses = ["running", "cancelled"] if include_cancelled else ["running"]

        async def read(conn: Any) -> list[Any]:
            cursor = await conn.execute(
                f"SELECT run_id, workflow, fingerprint, shape, status, owner, lease_expires, "
                f"{_NOW}, parent_id FROM flowdsl_runs WHERE status = ANY(%s) "
                f"AND NOT (status = 'cancelled' AND cancel_requested) ORDER BY started, run_id",
                (statuses,),
            )
            return list(await cursor.fetchall())

        pending: list[Pending] = []
        for run_id, workflow, fingerprint, shape, status, owner, expires, now, parent in self._read(
            "the unfinished runs", read
        ):
            if not claimable(self._engine.key, run_id, owner, expires, now):
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

    # -- runs --------------------------------------------------------------------------------

    async def open_run(self, header: RunHeader) -> Opened:
        """Create the run, or claim it to resume it; see `Store.open_run`.

        If the caller is cancelled while the claim is being written, the claim
        is given back once it commits, and the run recorded as cancelled.
        """
        # The callback goes on the store loop's future: the caller's loop may be closed
        # by the time the claim commits.
        submitted = self._engine.submit(self._open(header))
        try:
            opened: Opened = await asyncio.shield(asyncio.wrap_future(submitted))
        except asyncio.CancelledError:

            def abandon(future: concurrent.futures.Future[Opened]) -> None:
                if not future.cancelled() and future.exception() is None:
                    claim = future.result().claim
                    if claim is not None:
                        self.release(claim, "cancelled")

            submitted.add_done_callback(abandon)
            raise
        return opened

    async def _open(self, header: RunHeader) -> Opened:
        engine = self._engine
        await engine.settle(header.run_id)  # a release handed over before this open first
        taken: list[Claim] = []
        graph = keep_graph(header, self._graphs, "%s")

        async def work(conn: Any) -> Opened:
            if graph is not None:  # a definition's first run here: one more statement, once
                await conn.execute(*graph)
            row = await _row(conn, header.run_id, "FOR UPDATE")
            if row is None:
                now = time.time()
                cursor = await conn.execute(
                    f"INSERT INTO flowdsl_runs (run_id, workflow, status, fingerprint, shape, "
                    f"input, started, updated, owner, lease_expires, lease_epoch, queued_at, "
                    f"claimed_at, parent_id) VALUES (%s, %s, 'running', %s, %s, %s, %s, %s, "
                    f"%s, {_NOW} + %s, 1, %s, {_NOW}, %s) "
                    f"ON CONFLICT (run_id) DO NOTHING RETURNING 1",
                    (
                        header.run_id,
                        header.workflow,
                        header.fingerprint,
                        dumps(list(header.shape)),
                        header.input,
                        header.started,
                        now,
                        owner_token(),
                        engine.lease,
                        now,
                        header.parent_id,
                    ),
                )
                if await cursor.fetchone() is not None:
                    await _journal_header(conn, header)
                    return Opened(
                        run_id=header.run_id,
                        claim=_hold(engine, Claim(header.run_id, 1), taken),
                        new=True,
                        workflow=header.workflow,
                        fingerprint=header.fingerprint,
                        shape=header.shape,
                        input=header.input,
                        started=header.started,
                        parent_id=header.parent_id,
                        attempts=header.journal,
                    )
                row = await _row(conn, header.run_id, "FOR UPDATE")  # created meanwhile
                assert row is not None
            if final(row[2], row[18]):
                attempts = await _attempts(conn, row[0])
                return found_run(row, None, finished=run_from_row(row, attempts))
            owner, expires = row[12], row[13]
            if (
                row[1] != header.workflow
                or row[3] != header.fingerprint
                or not claimable(engine.key, header.run_id, owner, expires, row[-1])
            ):
                return found_run(row, None, owner=owner)
            return await _take(engine, conn, row, taken)

        try:
            opened = await self._write(f"open run {header.run_id!r}", engine.transaction(work))
        except BaseException:
            for claim in taken:  # the claim did not commit
                engine.leases.drop(engine.key, claim)
            raise
        engine.leases.committed(taken)
        if graph is not None:
            self._graphs.add(header.fingerprint)
        return opened

    async def append(self, claim: Claim, attempt: Attempt) -> None:
        """Commit one journal entry (group-committed with every other entry waiting)."""
        await self._call(self._engine.append(claim, attempt))

    async def finish_run(self, claim: Claim, ending: Ending) -> None:
        """Commit the run's final record; the run is no longer owned."""
        await self._call(self._finish(claim, ending))

    async def _finish(self, claim: Claim, end: Ending) -> None:
        engine = self._engine
        me = owner_token()
        values = (
            end.status,
            end.output,
            end.error,
            end.failed_step,
            end.compensations,
            end.duration,
            time.time(),
            claim.run_id,
            me,
            claim.epoch,
        )

        async def lone(conn: Any) -> int:
            # A run without a parent: one statement, its own commit.
            cursor = await conn.execute(_FINISH + " AND parent_id IS NULL", values)
            return int(cursor.rowcount)

        async def child(conn: Any) -> None:
            # A child run (or a cancelled one, or a lost claim): its end, its parent's event
            # and its children's cancellation in one transaction. Rows are locked parent
            # first, then child, as `cancel` locks a tree: never in a cycle.
            cursor = await conn.execute(
                "SELECT parent_id FROM flowdsl_runs WHERE run_id = %s AND owner = %s "
                "AND lease_epoch = %s",
                (claim.run_id, me, claim.epoch),
            )
            row = await cursor.fetchone()
            if row is None:
                raise lost_claim(claim)
            parent = None
            if row[0] is not None:
                cursor = await conn.execute(_MAILBOX_ROW, (row[0],))
                parent = await cursor.fetchone()
            cursor = await conn.execute(_FINISH + " RETURNING parent_id, cancel_requested", values)
            row = await cursor.fetchone()
            if row is None:
                raise lost_claim(claim)
            parent_id, asked = row
            if end.status == "cancelled" and asked:  # for good: so are its unfinished children
                await self._cancel_tree(conn, await _children(conn, claim.run_id))
            notice = None if parent_id is None else child_notice(claim.run_id, end.status, asked)
            if notice is None:
                return
            event, payload = notice
            wakes = parent_delivery(parent_id, event, parent, self.where)
            if wakes is not None:
                await _mail(conn, parent_id, event, payload, wakes)

        what = f"finish run {claim.run_id!r}"
        try:
            await engine.settle(claim.run_id)  # an entry handed over (a cancelled branch's)
            if end.status == "cancelled" or await self._write(what, engine.autocommit(lone)) != 1:
                await self._write(what, engine.transaction(child))
        finally:
            engine.leases.drop(engine.key, claim)

    async def holds(self, claim: Claim) -> bool:
        """Whether `claim` still holds its run; renews its lease when it does."""
        held: bool = await self._call(self._holds(claim))
        return held

    async def _holds(self, claim: Claim) -> bool:
        engine = self._engine
        sent = time.time()

        async def work(conn: Any) -> tuple[bool, bool]:
            cursor = await conn.execute(
                f"UPDATE flowdsl_runs SET lease_expires = {_NOW} + %s WHERE run_id = %s "
                f"AND owner = %s AND lease_epoch = %s RETURNING cancel_requested",
                (engine.lease, claim.run_id, owner_token(), claim.epoch),
            )
            row = await cursor.fetchone()
            return row is not None, bool(row is not None and row[0])

        holds, asked = await self._write(
            f"renew the lease of run {claim.run_id!r}", engine.autocommit(work)
        )
        if holds:
            engine.leases.kept(claim, sent)
            if asked:
                engine.leases.ask_to_stop([(claim.run_id, claim.epoch)])
        else:
            engine.leases.lose(claim)
        return holds

    def lost(self, claim: Claim) -> bool:
        """True when a renewal found the claim taken, or the leases were not renewed in time."""
        return self._leases.may_have_lost(claim)

    def release(self, claim: Claim, status: RunStatus | None = None) -> None:
        """Give up owning an unfinished run so it can be resumed (written in the background)."""
        engine = self._engine
        try:
            engine.background(claim.run_id, self._release(claim, status))
        except StoreError:  # closed: its lease runs out, or this process is seen gone
            engine.leases.drop(engine.key, claim)

    async def _release(self, claim: Claim, status: str | None) -> None:
        engine = self._engine
        try:
            await engine.settle(claim.run_id)  # a journal entry handed over before, first
            pool = await engine.connection()
            async with pool.connection() as conn:
                await conn.execute(
                    "WITH gone AS (UPDATE flowdsl_runs SET owner = NULL, lease_expires = NULL, "
                    "status = coalesce(%s, status), updated = %s "
                    "WHERE run_id = %s AND owner = %s AND lease_epoch = %s "
                    "RETURNING status) "
                    "SELECT pg_notify(%s, '') FROM gone WHERE status = 'running'",
                    (status, time.time(), claim.run_id, owner_token(), claim.epoch, _WORK),
                )
        finally:
            engine.leases.drop(engine.key, claim)

    # -- managing runs -----------------------------------------------------------------------

    async def cancel(self, run_id: str) -> tuple[tuple[str, str], ...]:
        """Cancel the run and its unfinished children in one transaction; see `Store.cancel`.

        Owners asked to stop are told by a ``NOTIFY`` as well (their lease
        renewal finds the request anyway).
        """

        async def work(conn: Any) -> list[tuple[str, str]]:
            cursor = await conn.execute(
                "SELECT parent_id FROM flowdsl_runs WHERE run_id = %s", (run_id,)
            )
            found = await cursor.fetchone()
            if found is None:
                raise RunNotFound(no_such_run(run_id, self.where))
            if found[0] is not None:  # locked first: rows are locked parent, then child
                await conn.execute(_MAILBOX_ROW, (found[0],))
            cursor = await conn.execute(
                f"SELECT {_TREE}, {_NOW} FROM flowdsl_runs WHERE run_id = %s FOR UPDATE",
                (run_id,),
            )
            row = await cursor.fetchone()
            if final(row[1], row[4]):
                raise UsageError(not_cancellable(run_id, row[1]))
            return await self._cancel_tree(conn, [row])

        done = await self._call(
            self._write(f"cancel run {run_id!r}", self._engine.transaction(work))
        )
        return tuple(done)

    async def _cancel_tree(self, conn: Any, roots: list[Any]) -> list[tuple[str, str]]:
        """Cancel the runs of `roots` (`_TREE` rows, locked) and their descendants that have
        not ended; what was done to each (see `Store.cancel`). Only a root's parent can be
        outside the tree: it gets ``child_finished`` (its row was locked first)."""
        engine = self._engine
        now = time.time()
        done: list[tuple[str, str]] = []
        ended: list[tuple[str, str | None]] = []
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            run_id, status, owner, expires, asked, parent, server_now = todo.pop(0)
            if run_id in seen:
                continue
            seen.add(run_id)
            loose = status == "running" and claimable(
                engine.key, run_id, owner, expires, server_now
            )
            action = cancel_action(status, asked, loose)
            if action == "cancelled":
                await conn.execute(
                    "UPDATE flowdsl_runs SET status = 'cancelled', cancel_requested = true, "
                    "owner = NULL, lease_expires = NULL, lease_epoch = lease_epoch + 1, "
                    "available_at = NULL, updated = %s WHERE run_id = %s",
                    (now, run_id),
                )
                ended.append((run_id, parent))
            elif action == "stopping":
                await conn.execute(
                    "UPDATE flowdsl_runs SET cancel_requested = true WHERE run_id = %s", (run_id,)
                )
                if len(run_id.encode()) < 4000:  # a notice's payload is under 8,000 bytes
                    await conn.execute("SELECT pg_notify(%s, %s)", (_CANCEL, run_id))
            if action is not None:
                done.append((run_id, action))
            todo.extend(await _children(conn, run_id))
        for run_id, parent in ended:
            notice = child_notice(run_id, "cancelled", True)
            if parent is None or parent in seen or notice is None:
                continue
            cursor = await conn.execute(_MAILBOX_ROW, (parent,))
            wakes = parent_delivery(parent, notice[0], await cursor.fetchone(), self.where)
            if wakes is not None:
                await _mail(conn, parent, notice[0], notice[1], wakes)
        return done

    def watch(self, claim: Claim, stop: Callable[[], None]) -> Callable[[], None]:
        """`stop()` from the store's thread when a lease renewal (or a ``NOTIFY``) finds the
        run asked to stop."""
        return self._leases.watch(claim, stop)

    async def cancel_requested(self, run_id: str) -> bool:
        """Whether `cancel_run` asked for `run_id` to stop."""

        async def read(conn: Any) -> bool:
            cursor = await conn.execute(
                "SELECT 1 FROM flowdsl_runs WHERE run_id = %s AND cancel_requested", (run_id,)
            )
            return await cursor.fetchone() is not None

        return await self._call(
            self._write(f"read run {run_id!r}", self._engine.autocommit(read)), shield=False
        )

    async def retry(
        self,
        run_id: str,
        pick: Pick,
        available_at: float,
    ) -> str:
        """Queue a retry of the ended run `run_id` (and wake a worker); see `Store.retry`."""

        async def work(conn: Any) -> str:
            cursor = await conn.execute(
                "SELECT workflow, status, fingerprint, shape, input, queue, priority, "
                "failed_step FROM flowdsl_runs WHERE run_id = %s",
                (run_id,),
            )
            row = await cursor.fetchone()
            if row is None:
                raise RunNotFound(no_such_run(run_id, self.where))
            workflow, status, fingerprint, shape, data, queue_name, priority, failed = row
            if status not in ENDED:
                raise UsageError(not_retryable(run_id, status))
            kept = pick(status, failed, shape_of(run_id, shape), await _attempts(conn, run_id))
            now = time.time()
            for new_id in retry_ids(run_id):
                cursor = await conn.execute(
                    "INSERT INTO flowdsl_runs (run_id, workflow, status, fingerprint, shape, "
                    "input, started, updated, queue, priority, available_at, queued_at) "
                    "VALUES (%s, %s, 'queued', %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (run_id) DO NOTHING RETURNING 1",
                    (
                        new_id, workflow, fingerprint, shape, data, now, now, queue_name,
                        priority, available_at, now,
                    ),
                )  # fmt: skip
                if await cursor.fetchone() is not None:
                    break
            header = RunHeader(new_id, workflow, fingerprint, (), data, now, journal=kept)
            await _journal_header(conn, header)
            await conn.execute("SELECT pg_notify(%s, '')", (_WORK,))
            return new_id

        return await self._call(
            self._write(f"retry run {run_id!r}", self._engine.transaction(work))
        )

    async def prune(self, finished_before: float, statuses: tuple[str, ...]) -> int:
        """Delete ended runs, their journals and mailboxes; see `Store.prune`."""

        async def work(conn: Any) -> int:
            cursor = await conn.execute(
                "DELETE FROM flowdsl_runs WHERE status = ANY(%s) AND updated < %s RETURNING run_id",
                (list(statuses), finished_before),
            )
            gone = [run_id for (run_id,) in await cursor.fetchall()]
            if gone:
                await conn.execute("DELETE FROM flowdsl_attempts WHERE run_id = ANY(%s)", (gone,))
                await conn.execute("DELETE FROM flowdsl_events WHERE run_id = ANY(%s)", (gone,))
            return len(gone)

        return await self._call(self._write("prune runs", self._engine.transaction(work)))

    # -- queues and workers ------------------------------------------------------------------

    async def enqueue(self, header: RunHeader, ticket: Ticket) -> Opened:
        """Commit the run as queued (and wake a worker); see `Store.enqueue`."""
        return await self._call(self._enqueue(header, ticket))

    async def _enqueue(self, header: RunHeader, ticket: Ticket) -> Opened:
        # One statement, one round trip and its own commit, when the run_id is new (and the
        # run has no journal entries to go with it: see the end); a definition's first run
        # keeps its graph in the same statement.
        graph = keep_graph(header, self._graphs, "%s")
        keeping, kept = ("", ()) if graph is None else (f"graph AS ({graph[0]}), ", graph[1])

        async def work(conn: Any) -> Opened:
            now = time.time()
            cursor = await conn.execute(
                f"WITH {keeping}queued AS (INSERT INTO flowdsl_runs (run_id, workflow, status, "
                "fingerprint, shape, input, started, updated, queue, priority, available_at, "
                "queued_at, parent_id) "
                "VALUES (%s, %s, 'queued', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (run_id) DO NOTHING RETURNING run_id) "
                "SELECT pg_notify(%s, '') FROM queued",
                (
                    *kept,
                    header.run_id,
                    header.workflow,
                    header.fingerprint,
                    dumps(list(header.shape)),
                    header.input,
                    header.started,
                    now,
                    ticket.queue,
                    ticket.priority,
                    ticket.available_at,
                    now,
                    header.parent_id,
                    _WORK,
                ),
            )
            if await cursor.fetchone() is not None:
                await _journal_header(conn, header)
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
            row = await _row(conn, header.run_id)  # the run_id is taken: say what it is
            assert row is not None
            finished = None
            if final(row[2], row[18]):
                finished = run_from_row(row, await _attempts(conn, row[0]))
            return found_run(row, None, owner=row[12], finished=finished)

        # A run created with journal entries is one transaction: the run and its entries.
        engine = self._engine
        committed = engine.transaction(work) if header.journal else engine.autocommit(work)
        opened = await self._write(f"queue run {header.run_id!r}", committed)
        if graph is not None:
            self._graphs.add(header.fingerprint)
        return opened

    async def claim(self, request: ClaimRequest) -> list[Opened]:
        """Claim runs for a worker (``FOR UPDATE SKIP LOCKED``); see `Store.claim`.

        A caller cancelled while the claims are written gives them back as soon
        as they commit.
        """
        if not request.known or request.limit < 1:
            return []
        submitted = self._engine.submit(self._claim(request))
        try:
            claimed: list[Opened] = await asyncio.shield(asyncio.wrap_future(submitted))
        except asyncio.CancelledError:

            def abandon(future: concurrent.futures.Future[list[Opened]]) -> None:
                if not future.cancelled() and future.exception() is None:
                    for opened in future.result():
                        if opened.claim is not None:
                            self.release(opened.claim)

            submitted.add_done_callback(abandon)
            raise
        return claimed

    async def _claim(self, request: ClaimRequest) -> list[Opened]:
        engine = self._engine
        await engine.settle(None)  # releases handed over before: their runs may be taken
        me = owner_token()
        names = [name for name, _ in request.known]
        prints = [fingerprint for _, fingerprint in request.known]
        where = "(workflow, fingerprint) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        args: list[Any] = [names, prints]
        if request.queues is not None:
            where += " AND queue = ANY(%s)"
            args.append(list(request.queues))
        due = request.now if request.now is not None else time.time()

        taken: list[Claim] = []
        engine.claimed_generation = engine.work_generation  # notices after this: claim again

        async def work(conn: Any) -> list[Opened]:
            # Runs whose owner is gone first: they hold a slot of their queue already. An
            # owner on this host is gone when its process is: asked here, per owner, so that
            # no live sibling's row is locked (or crowds out a dead one's under the LIMIT).
            cursor = await conn.execute(
                "SELECT DISTINCT owner FROM flowdsl_runs WHERE status = 'running' "
                "AND owner LIKE %s AND owner <> %s",
                (me.rsplit("|", 2)[0] + "|%", me),
            )
            dead = [o for (o,) in await cursor.fetchall() if owner_alive(o) is False]
            cursor = await conn.execute(
                f"SELECT {RUN_COLUMNS}, {_NOW} FROM flowdsl_runs WHERE status = 'running' "
                f"AND {where} AND (owner IS NULL OR lease_expires < {_NOW} "
                f"OR owner = ANY(%s)) ORDER BY started, run_id LIMIT %s FOR UPDATE SKIP LOCKED",
                (*args, dead, request.limit),
            )
            chosen = list(await cursor.fetchall())
            rooms: dict[str, int | None] = {}
            if len(chosen) < request.limit:
                rooms = await _capacities(conn, where, args, due)
            closed = [name for name, room in rooms.items() if room is not None and room <= 0]
            while len(chosen) < request.limit:
                # Queued runs, and parked runs an event or a deadline woke.
                cursor = await conn.execute(
                    f"SELECT {RUN_COLUMNS}, queue FROM flowdsl_runs "
                    f"WHERE status IN ('queued', 'waiting') AND {where} AND available_at <= %s "
                    f"AND NOT (queue = ANY(%s)) AND NOT (run_id = ANY(%s)) "
                    f"ORDER BY priority DESC, queued_at, run_id LIMIT %s FOR UPDATE SKIP LOCKED",
                    (*args, due, closed, [r[0] for r in chosen], request.limit - len(chosen)),
                )
                rows = await cursor.fetchall()
                if not rows:
                    break
                for row in rows:
                    if len(chosen) >= request.limit:
                        break
                    name = row[-1]
                    if name in closed:
                        continue
                    if name not in rooms:  # its first run came after the queues were locked
                        closed.append(name)
                        continue
                    room = rooms[name]
                    if room is not None:
                        if room <= 0:
                            closed.append(name)
                            continue
                        rooms[name] = room - 1
                    chosen.append(row)
            return await _take_many(engine, conn, chosen, taken)

        try:
            claimed = await self._write("claim runs", engine.transaction(work))
        except BaseException:
            for claim in taken:  # the claims did not commit
                engine.leases.drop(engine.key, claim)
            raise
        engine.leases.committed(taken)
        return claimed

    async def declare_queues(self, queues: tuple[QueueLimits, ...]) -> None:
        """Record the queues' limits; see `Store.declare_queues`."""

        async def work(conn: Any) -> None:
            now = time.time()
            for declared in sorted(queues, key=lambda q: q.name):  # lock order: see _capacities
                count, period = declared.rate_limit or (None, None)
                await conn.execute(
                    "INSERT INTO flowdsl_queues (name, concurrency, rate_count, rate_period, "
                    "updated) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                    "concurrency = excluded.concurrency, rate_count = excluded.rate_count, "
                    "rate_period = excluded.rate_period, updated = excluded.updated",
                    (declared.name, declared.concurrency, count, period, now),
                )

        await self._call(self._write("declare queues", self._engine.transaction(work)))

    async def wait_for_work(self, timeout: float) -> None:
        """Until a ``NOTIFY`` says a run may be claimable, the earliest delayed or parked
        run's time comes (on flowdsl's clock), or `timeout` seconds pass."""
        engine = self._engine
        if not await self._call(engine.listen_ready(), shield=False):
            await asyncio.sleep(min(timeout, 0.05))  # reconnecting: poll meanwhile
            return
        key = (_WORK, "")
        me = engine.waiters.add(key)
        sleeper: asyncio.Future[None] | None = None
        if engine.work_generation != engine.claimed_generation:
            # Notified since the last claim began, before this wait was registered: return
            # (once per notice: the notice is used up) so the caller claims again.
            engine.claimed_generation = engine.work_generation
            engine.waiters.remove(key, me)
            return
        try:
            earliest = await self._call(self._next_wake(clock().now()), shield=False)
            waits: set[asyncio.Future[Any]] = {me[1]}
            if earliest is not None:
                sleeper = asyncio.ensure_future(clock().sleep_until(earliest))
                waits.add(sleeper)
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            engine.waiters.remove(key, me)
            if sleeper is not None:
                sleeper.cancel()
                await asyncio.gather(sleeper, return_exceptions=True)

    async def _next_wake(self, now: float) -> float | None:
        async def read(conn: Any) -> float | None:
            cursor = await conn.execute(
                "SELECT min(available_at) FROM flowdsl_runs "
                "WHERE status IN ('queued', 'waiting') AND available_at > %s",
                (now,),
            )
            row = await cursor.fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._write("read the next wake-up", self._engine.transaction(read))

    # -- waits and events --------------------------------------------------------------------

    async def send_event(self, run_id: str, event: str, payload: str) -> None:
        """Commit an event to the run's mailbox (and wake whoever waits); see `Store.send_event`."""

        async def work(conn: Any) -> None:
            cursor = await conn.execute(_MAILBOX_ROW, (run_id,))
            found = await cursor.fetchone()
            await _mail(conn, run_id, event, payload, delivery(run_id, event, found, self.where))

        await self._call(self._write(f"send event {event!r}", self._engine.transaction(work)))

    async def take_event(
        self, claim: Claim, event: str, entry: Attempt, wrap: tuple[str, str]
    ) -> str | None:
        """Take the oldest event for `event` and journal `entry` in one commit."""

        async def work(conn: Any) -> str | None:
            me = owner_token()
            cursor = await conn.execute(_HOLDS, (claim.run_id, me, claim.epoch))
            if await cursor.fetchone() is None:
                raise lost_claim(claim)
            cursor = await conn.execute(
                "SELECT seq, payload FROM flowdsl_events WHERE run_id = %s AND event = %s "
                "AND taken IS NULL ORDER BY seq LIMIT 1 FOR UPDATE",
                (claim.run_id, event),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            seq, payload = row
            await conn.execute(
                "UPDATE flowdsl_events SET taken = %s, taken_by = %s WHERE seq = %s",
                (time.time(), f"{entry.step}#{entry.visit}", seq),
            )
            await conn.execute(
                "INSERT INTO flowdsl_attempts (run_id, kind, step, visit, attempt, status, "
                "final, outcome, started, duration, worker) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    claim.run_id,
                    entry.kind,
                    entry.step,
                    entry.visit,
                    entry.attempt,
                    "succeeded" if entry.succeeded else "failed",
                    entry.final,
                    wrap[0] + payload + wrap[1],
                    entry.started,
                    entry.duration,
                    me,
                ),
            )
            return str(payload)

        async def take() -> str | None:
            await self._engine.settle(claim.run_id)
            return await self._write(
                f"take an event of run {claim.run_id!r}", self._engine.transaction(work)
            )

        return await self._call(take())

    async def wait_for_event(self, run_id: str, event: str, timeout: float) -> None:
        """Until an event for the run may be in its mailbox (a ``NOTIFY``), or `timeout`."""
        engine = self._engine
        if not await self._call(engine.listen_ready(), shield=False):
            await asyncio.sleep(min(timeout, 0.05))
            return
        key = (_EVENT, run_id)
        me = engine.waiters.add(key)
        try:

            async def read(conn: Any) -> bool:
                cursor = await conn.execute(
                    "SELECT 1 FROM flowdsl_events WHERE run_id = %s AND event = %s "
                    "AND taken IS NULL LIMIT 1",
                    (run_id, event),
                )
                return await cursor.fetchone() is not None

            there = await self._call(
                self._write("read a mailbox", engine.transaction(read)), shield=False
            )
            if not there:
                await asyncio.wait({me[1]}, timeout=timeout)
        finally:
            engine.waiters.remove(key, me)

    async def park(
        self, claim: Claim, waiting: Waiting, visits: tuple[tuple[str, int], ...]
    ) -> None:
        """Give the run up as "waiting" until it is woken; see `Store.park`."""
        await self._call(self._park(claim, waiting, visits))

    async def _park(
        self, claim: Claim, waiting: Waiting, visits: tuple[tuple[str, int], ...]
    ) -> None:
        engine = self._engine

        async def work(conn: Any) -> None:
            run_id, me = claim.run_id, owner_token()
            cursor = await conn.execute(
                "SELECT cancel_requested FROM flowdsl_runs WHERE run_id = %s AND owner = %s "
                "AND lease_epoch = %s FOR UPDATE",
                (run_id, me, claim.epoch),
            )
            held = await cursor.fetchone()
            if held is None:
                raise lost_claim(claim)
            # A run asked to stop as it parked is claimable now: claimed, it is recorded cancelled.
            woken = bool(held[0])
            if waiting.events and not woken:
                cursor = await conn.execute(
                    "SELECT 1 FROM flowdsl_events WHERE run_id = %s AND taken IS NULL "
                    "AND event = ANY(%s) LIMIT 1",
                    (run_id, list(waiting.events)),
                )
                woken = await cursor.fetchone() is not None
            for name, visit in visits:
                if woken:
                    break
                cursor = await conn.execute(
                    "SELECT 1 FROM flowdsl_attempts WHERE run_id = %s AND kind = 'step' "
                    "AND step = %s AND visit = %s AND final LIMIT 1",
                    (run_id, name, visit),
                )
                woken = await cursor.fetchone() is not None
            await conn.execute(
                "UPDATE flowdsl_runs SET status = 'waiting', owner = NULL, lease_expires = NULL, "
                "available_at = %s, waiting = %s, updated = %s WHERE run_id = %s",
                (WOKEN if woken else waiting.until, waiting_text(waiting), time.time(), run_id),
            )
            if woken or waiting.until is not None:  # idle workers look again at their wake-up
                await conn.execute("SELECT pg_notify(%s, '')", (_WORK,))

        try:
            await engine.settle(claim.run_id)
            await self._write(f"park run {claim.run_id!r}", engine.transaction(work))
        finally:
            engine.leases.drop(engine.key, claim)

    async def last_look(self, workflow: str) -> float | None:
        """When a look at `workflow`'s schedule was last recorded; see `Store.last_look`."""

        async def read(conn: Any) -> float | None:
            cursor = await conn.execute(
                "SELECT checked FROM flowdsl_schedules WHERE workflow = %s", (workflow,)
            )
            row = await cursor.fetchone()
            return None if row is None else float(row[0])

        return await self._call(
            self._write("read a schedule's looks", self._engine.autocommit(read)), shield=False
        )

    async def observe_schedule(self, workflow: str, now: float) -> float | None:
        """Note a look at `workflow`'s schedule; see `Store.observe_schedule`."""

        async def work(conn: Any) -> float | None:
            cursor = await conn.execute(
                "INSERT INTO flowdsl_schedules (workflow, since, checked) VALUES (%s, %s, %s) "
                "ON CONFLICT (workflow) DO NOTHING RETURNING 1",
                (workflow, now, now),
            )
            if await cursor.fetchone() is not None:
                return None
            cursor = await conn.execute(
                "SELECT checked FROM flowdsl_schedules WHERE workflow = %s FOR UPDATE",
                (workflow,),
            )
            row = await cursor.fetchone()
            await conn.execute(
                "UPDATE flowdsl_schedules SET checked = greatest(checked, %s) WHERE workflow = %s",
                (now, workflow),
            )
            return float(row[0])

        return await self._call(
            self._write("record a schedule's look", self._engine.transaction(work))
        )


async def _capacities(
    conn: Any, where: str, args: Sequence[Any], due: float
) -> dict[str, int | None]:
    """How many more runs of each queue with claimable runs may start now (None: no limit).

    The queues' rows are locked all at once, in name order, so two claimers
    (or a claimer and `declare_queues`) never wait for each other in a cycle;
    the counts are read under those locks, so the limits hold across workers.
    """
    cursor = await conn.execute(
        f"SELECT DISTINCT queue FROM flowdsl_runs WHERE status IN ('queued', 'waiting') "
        f"AND {where} AND available_at <= %s",
        (*args, due),
    )
    names = sorted(name for (name,) in await cursor.fetchall())
    rooms: dict[str, int | None] = dict.fromkeys(names)
    if not names:
        return rooms
    cursor = await conn.execute(
        "SELECT name, concurrency, rate_count, rate_period FROM flowdsl_queues "
        "WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
        (names,),
    )
    for name, concurrency, rate_count, rate_period in await cursor.fetchall():
        room: int | None = None
        if concurrency is not None:
            cursor = await conn.execute(
                "SELECT count(*) FROM flowdsl_runs WHERE queue = %s AND status = 'running'",
                (name,),
            )
            room = max(0, concurrency - (await cursor.fetchone())[0])
        if rate_count is not None:
            cursor = await conn.execute(
                f"SELECT count(*) FROM flowdsl_runs WHERE queue = %s "
                f"AND claimed_at > {_CLOCK} - %s",
                (name, rate_period),
            )
            left = max(0, rate_count - (await cursor.fetchone())[0])
            room = left if room is None else min(room, left)
        rooms[name] = room
    return rooms


# -- opening the database ------------------------------------------------------------------


def _init_schema(dsn: str, where: str) -> str:
    """Create or migrate the tables (one process at a time), or refuse what is there.

    Returns the identity of the database and schema: the same whatever name or
    address reached them, so two stores on one database know each other's runs.
    """
    try:
        with (
            psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn,
            conn.transaction(),
        ):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            _schema(conn, where)
            row = conn.execute(
                "SELECT pg_postmaster_start_time()::text, inet_server_port(), "
                "(SELECT oid FROM pg_database WHERE datname = current_database()), "
                "current_schema()"
            ).fetchone()
            return "postgresql|" + "|".join(str(part) for part in row or ())
    except StoreError:
        raise
    except psycopg.Error as exc:
        msg = f"could not open the store at {where!r}: {exc}".rstrip()
        raise StoreError(msg) from exc


def _schema(conn: Any, where: str) -> None:
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    if schema is None:
        msg = (
            f"the store at {where!r} has no schema to create its tables in (the search_path "
            f"names none that exists); create the schema, or fix the search_path option"
        )
        raise StoreError(msg)
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name LIKE 'flowdsl\\_%%'",
        (schema,),
    ).fetchall()
    have: dict[str, set[str]] = {}
    for table, column in rows:
        have.setdefault(table, set()).add(column)
    if not have:
        for statement in (
            "CREATE TABLE flowdsl_schema (version integer NOT NULL)",
            *_TABLES,
        ):
            conn.execute(statement)
        conn.execute("INSERT INTO flowdsl_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        return
    if "flowdsl_schema" not in have:
        raise partial_schema(where, "the flowdsl_schema table is missing", _ANOTHER)
    found = conn.execute("SELECT max(version) FROM flowdsl_schema").fetchone()[0]
    if not isinstance(found, int):
        raise partial_schema(where, f"its schema version is {found!r}", _ANOTHER)
    if found > SCHEMA_VERSION:
        raise newer_schema(where, found, SCHEMA_VERSION)
    for version in range(found, SCHEMA_VERSION):
        step = _MIGRATIONS.get(version)
        if step is None:
            raise partial_schema(where, f"schema {found} was never a PostgreSQL store's", _ANOTHER)
        _log.info("migrating the store at %r from schema %d to %d", where, version, version + 1)
        step(conn)
    if found < SCHEMA_VERSION:
        conn.execute("UPDATE flowdsl_schema SET version = %s", (SCHEMA_VERSION,))
        return
    for table, columns in TABLE_COLUMNS.items():
        lacking = [column for column in columns if column not in have.get(table, ())]
        if lacking:
            raise partial_schema(
                where, f"table {table} lacks the columns {', '.join(lacking)}", _ANOTHER
            )
