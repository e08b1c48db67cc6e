"""Store kits: a fresh database per test, and the back doors the store suites need.

A kit stands for one kind of store. It hands out store objects on its
database (`StoreKit.open`), names that database by URL for child processes
and the command line (`StoreKit.url`), and reads or edits the database behind
the store's back, as another process, a crash or a damaged disk would. The
durable, crash and fault suites make and poke stores only through a kit, so
every kind runs them unchanged: to add a kind, write its kit here (its SQL
lives in the kit, never in a test) and add it to `KITS`.

The back doors, each implemented per kind:

- `set_owner`: another process claims a run (a new owner, lease and epoch).
- `make_available`: a delayed queued run made claimable now, without waiting.
- `claimed_at`: when a queued run was first claimed (its start, for rate limits).
- `lease_expires`, `status_of`, `has_run`, `attempt_rows`: what the
  database says now, read on a connection of the kit's own.
- `damage`: one part of one run made unreadable (see `DAMAGES`).
- `write_lock`: another connection holding the write lock, so the store's
  writes wait until it is given back.
- `forget_renewals`: the store no longer knows its leases hold, as after its
  process was paused.
- `mailbox`, `schema_version`: a run's events, and the database's schema
  version, as the database holds them (`release_schema`: the version this
  release writes for the kind).
- `packed_values`: how many of a run's values (journaled outcomes, input,
  output) the database keeps compressed (`packs`: whether the kind does).
- `as_schema_6`: the database made what a release with schema 6 (before run
  management) left: no ``cancel_requested`` column, none of schema 7's
  indexes, version 6.
- `as_schema_4`: the database made what a release with schema 4 (before
  child runs) left: schema 5's, without the ``parent_id`` column and its
  index, and without graphs, version 4.
- `before_graphs`: the database made what the release before kept graphs left:
  schema 6's, without the ``flowdsl_graphs`` table, version 5.
- `graph_rows`, `delete_graphs`: the graphs the database keeps, (fingerprint,
  workflow) in order; every one deleted behind the stores' back.
- `backdate`: a run's last change (its end, for `prune_runs`) made older.

A kit that cannot run on this machine (no PostgreSQL server) raises
`KitUnavailable` when made: `store_kit` skips its tests, or fails them in CI.
"""

from __future__ import annotations

import abc
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Final, NamedTuple, Protocol, Self

import pgserver
import psycopg
from psycopg import sql

from flowdsl import SQLiteStore, Store

# isort: split
# flowdsl's internals the kits reach into (remap here when the modules move):
from flowdsl.stores import _postgres, _sqlite

__all__ = [
    "DAMAGES",
    "KITS",
    "AttemptRow",
    "KitUnavailable",
    "MailRow",
    "OpenStore",
    "PostgresKit",
    "SQLiteKit",
    "StoreKit",
    "WriteLock",
]

DAMAGES: Final = ("journal", "input", "definition", "output", "status")
"""The parts of a run `StoreKit.damage` can make unreadable:

- ``journal``: the outcomes of its journal entries are not JSON;
- ``input``: its input is not JSON;
- ``definition``: its recorded definition shape is JSON, but not a list of steps;
- ``output``: its output is not JSON;
- ``status``: its status is one flowdsl does not know.
"""


class KitUnavailable(Exception):
    """This kind of store cannot be tested here; the message says why and what to do."""


class OpenStore(Store, Protocol):
    """A store that is also its own context manager (closed on exit)."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


class AttemptRow(NamedTuple):
    """One journaled step attempt, as the database holds it."""

    run_id: str
    step: str
    visit: int
    attempt: int
    status: str
    """``succeeded`` or ``failed``."""
    worker: str
    """The owner token of the process that committed it."""


class MailRow(NamedTuple):
    """One event in a run's mailbox, as the database holds it."""

    event: str
    payload: str
    """The payload's JSON text."""
    taken: bool


class WriteLock(Protocol):
    """Another connection's hold on the database's write lock."""

    def take(self) -> None:
        """Take the lock; the store's writes wait from now on (its reads do not)."""
        ...

    def give_back(self) -> None:
        """Release the lock (once taken) and close the connection."""
        ...


class StoreKit(abc.ABC):
    """One kind of store on one fresh database (see the module docstring)."""

    kind: ClassVar[str]
    """The name of the kind, the test id of its runs: ``sqlite``."""
    release_schema: ClassVar[int]
    """The schema version this release writes for the kind."""
    packs: ClassVar[bool]
    """Whether the kind keeps large values compressed in their rows (`packed_values`)."""

    def __init__(self) -> None:
        self._opened: list[OpenStore] = []
        self._locks: list[WriteLock] = []

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The database's store URL, for child processes and the CLI."""

    def open(self, **options: Any) -> OpenStore:
        """A new store object on the database (``lease=`` and the kind's other options)."""
        store = self._open(**options)
        self._opened.append(store)
        return store

    def write_lock(self) -> WriteLock:
        """A connection of its own that can hold the write lock (given back at teardown)."""
        lock = self._write_lock()
        self._locks.append(lock)
        return lock

    def close(self) -> None:
        """Give back every write lock, then close every store `open` made (idempotent)."""
        for lock in self._locks:
            lock.give_back()
        for store in self._opened:
            store.close()
        self._locks.clear()
        self._opened.clear()

    @abc.abstractmethod
    def _open(self, **options: Any) -> OpenStore: ...

    @abc.abstractmethod
    def _write_lock(self) -> WriteLock: ...

    @abc.abstractmethod
    def set_owner(self, run_id: str, owner: str, lease_expires: float, epoch: int = 99) -> None:
        """Make `owner` hold `run_id`, running, as a new claim (its fencing epoch changes)."""

    @abc.abstractmethod
    def make_available(self, run_id: str) -> None:
        """Make a queued run claimable now, as if its ``delay=`` had passed already."""

    @abc.abstractmethod
    def claimed_at(self, run_id: str) -> float | None:
        """When `run_id` was first claimed (seconds since the epoch, the database's clock)."""

    @abc.abstractmethod
    def lease_expires(self, run_id: str) -> float:
        """When the lease on `run_id` expires (seconds since the epoch, the database's clock)."""

    @abc.abstractmethod
    def status_of(self, run_id: str) -> tuple[str, str | None] | None:
        """The run's status and owner as the database says now; None when there is no such run."""

    @abc.abstractmethod
    def has_run(self, run_id: str) -> bool:
        """Whether the database holds `run_id` (False too when no store made its tables yet)."""

    @abc.abstractmethod
    def attempt_rows(self) -> list[AttemptRow]:
        """Every journaled step attempt of every run, in commit order."""

    @abc.abstractmethod
    def damage(self, run_id: str, part: str) -> None:
        """Make one part of `run_id` unreadable; `part` is one of `DAMAGES`."""

    @abc.abstractmethod
    def forget_renewals(self, store: Store) -> None:
        """Make `store` no longer know that its leases hold, as after a pause of its process."""

    @abc.abstractmethod
    def mailbox(self, run_id: str) -> list[MailRow]:
        """Every event sent to `run_id`, taken or not, in the order they were sent."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The schema version the database records."""

    def packed_values(self, run_id: str) -> int:
        """How many of the run's values (journaled outcomes, input, output) are compressed."""
        return 0

    @abc.abstractmethod
    def as_schema_6(self) -> None:
        """Turn the database (no store open on it) into what schema 6 was (see the module)."""

    @abc.abstractmethod
    def as_schema_4(self) -> None:
        """Turn the database (no store open on it) into what schema 4 was (see the module)."""

    @abc.abstractmethod
    def before_graphs(self) -> None:
        """Turn the database (no store open on it) into what the schema before graphs was."""

    @abc.abstractmethod
    def graph_rows(self) -> list[tuple[str, str]]:
        """Every kept graph's (fingerprint, workflow), by fingerprint."""

    @abc.abstractmethod
    def delete_graphs(self) -> None:
        """Delete every kept graph (the stores open on the database are not told)."""

    @abc.abstractmethod
    def backdate(self, run_id: str, seconds: float) -> None:
        """Make the run's last change (``updated``: when it ended) `seconds` older."""


# The indexes schema 7 added, by kind (what `as_schema_6` drops).
_SCHEMA_7_INDEXES: Final = {
    "sqlite": ("flowdsl_runs_by_start", "flowdsl_runs_by_workflow"),
    "postgresql": ("flowdsl_runs_by_start", "flowdsl_runs_by_workflow", "flowdsl_events_by_run"),
}

# -- SQLite ------------------------------------------------------------------------------------

_SQLITE_DAMAGE: Final = {
    "journal": "UPDATE flowdsl_attempts SET outcome = '{not json' WHERE run_id = ?",
    "input": "UPDATE flowdsl_runs SET input = '[1, 2' WHERE run_id = ?",
    "definition": 'UPDATE flowdsl_runs SET shape = \'{"$": "nope"}\' WHERE run_id = ?',
    "output": "UPDATE flowdsl_runs SET output = '{\"$\": 1' WHERE run_id = ?",
    "status": "UPDATE flowdsl_runs SET status = 'exploded' WHERE run_id = ?",
}


class _SQLiteWriteLock:
    """``BEGIN IMMEDIATE`` on a connection of its own (usable from any thread)."""

    def __init__(self, path: Path) -> None:
        self.conn: sqlite3.Connection | None = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False
        )
        self.held = False

    def take(self) -> None:
        assert self.conn is not None, "this lock was given back"
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True

    def give_back(self) -> None:
        if self.conn is None:
            return
        if self.held:
            self.conn.execute("COMMIT")
            self.held = False
        self.conn.close()
        self.conn = None


class SQLiteKit(StoreKit):
    """`SQLiteStore` on ``runs.db`` in the test's temporary directory."""

    kind = "sqlite"
    release_schema = _sqlite.SCHEMA_VERSION
    packs = True

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.path = directory / "runs.db"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path.resolve()}"  # an absolute path: four slashes

    def _open(self, **options: Any) -> OpenStore:
        return SQLiteStore(self.path, **options)

    def _write_lock(self) -> WriteLock:
        return _SQLiteWriteLock(self.path)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path)
        try:
            with conn:  # commits what the block wrote
                yield conn
        finally:
            conn.close()

    def set_owner(self, run_id: str, owner: str, lease_expires: float, epoch: int = 99) -> None:
        with self._connection() as conn:
            conn.execute(
                "UPDATE flowdsl_runs SET status = 'running', owner = ?, lease_expires = ?, "
                "lease_epoch = ? WHERE run_id = ?",
                (owner, lease_expires, epoch, run_id),
            )

    def make_available(self, run_id: str) -> None:
        with self._connection() as conn:
            conn.execute(
                "UPDATE flowdsl_runs SET available_at = queued_at WHERE run_id = ?", (run_id,)
            )

    def claimed_at(self, run_id: str) -> float | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT claimed_at FROM flowdsl_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def lease_expires(self, run_id: str) -> float:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT lease_expires FROM flowdsl_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return float(row[0])

    def status_of(self, run_id: str) -> tuple[str, str | None] | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT status, owner FROM flowdsl_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def has_run(self, run_id: str) -> bool:
        if not self.path.exists():
            return False
        with self._connection() as conn:
            found = (
                conn.execute(
                    "SELECT name FROM sqlite_master WHERE name = 'flowdsl_runs'"
                ).fetchone()
                and conn.execute(
                    "SELECT 1 FROM flowdsl_runs WHERE run_id = ?", (run_id,)
                ).fetchone()
            )
        return bool(found)

    def attempt_rows(self) -> list[AttemptRow]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT run_id, step, visit, attempt, status, worker FROM flowdsl_attempts "
                "WHERE kind = 'step' ORDER BY seq"
            ).fetchall()
        return [AttemptRow(*row) for row in rows]

    def damage(self, run_id: str, part: str) -> None:
        assert part in DAMAGES, f"damage() takes one of {DAMAGES}, got {part!r}"
        with self._connection() as conn:
            conn.execute(_SQLITE_DAMAGE[part], (run_id,))

    def forget_renewals(self, store: Store) -> None:
        assert isinstance(store, SQLiteStore), store
        store._writer.confirmed = 0.0

    def mailbox(self, run_id: str) -> list[MailRow]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT event, payload, taken IS NOT NULL FROM flowdsl_events "
                "WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return [MailRow(event, payload, bool(taken)) for event, payload, taken in rows]

    def schema_version(self) -> int:
        with self._connection() as conn:
            return int(conn.execute("SELECT max(version) FROM flowdsl_schema").fetchone()[0])

    def packed_values(self, run_id: str) -> int:
        with self._connection() as conn:
            journal, run = conn.execute(
                "SELECT (SELECT count(*) FROM flowdsl_attempts WHERE run_id = ?1 "
                "AND typeof(outcome) = 'blob'), (SELECT (typeof(input) = 'blob') + "
                "(typeof(output) = 'blob') FROM flowdsl_runs WHERE run_id = ?1)",
                (run_id,),
            ).fetchone()
        return int(journal) + int(run or 0)

    def as_schema_6(self) -> None:
        with self._connection() as conn:
            for index in _SCHEMA_7_INDEXES["sqlite"]:
                conn.execute(f"DROP INDEX {index}")
            conn.execute("ALTER TABLE flowdsl_runs DROP COLUMN cancel_requested")
            conn.execute("UPDATE flowdsl_schema SET version = 6")

    def backdate(self, run_id: str, seconds: float) -> None:
        with self._connection() as conn:
            conn.execute(
                "UPDATE flowdsl_runs SET updated = updated - ? WHERE run_id = ?", (seconds, run_id)
            )

    def as_schema_4(self) -> None:
        self.before_graphs()
        with self._connection() as conn:
            conn.execute("DROP INDEX flowdsl_runs_by_parent")
            conn.execute("ALTER TABLE flowdsl_runs DROP COLUMN parent_id")
            conn.execute("UPDATE flowdsl_schema SET version = 4")

    def before_graphs(self) -> None:
        self.as_schema_6()
        with self._connection() as conn:
            conn.execute("DROP TABLE flowdsl_graphs")
            conn.execute("UPDATE flowdsl_schema SET version = 5")

    def graph_rows(self) -> list[tuple[str, str]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT fingerprint, workflow FROM flowdsl_graphs ORDER BY fingerprint"
            ).fetchall()
        return [(fingerprint, workflow) for fingerprint, workflow in rows]

    def delete_graphs(self) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM flowdsl_graphs")


# -- PostgreSQL --------------------------------------------------------------------------------

_POSTGRES_DAMAGE: Final = {part: text.replace("?", "%s") for part, text in _SQLITE_DAMAGE.items()}


class _PostgresWriteLock:
    """``LOCK TABLE ... IN EXCLUSIVE MODE`` on a connection of its own: it waits the
    store's writes and row locks (``FOR UPDATE``), not its plain reads."""

    def __init__(self, url: str) -> None:
        self.conn: psycopg.Connection[tuple[Any, ...]] | None = psycopg.connect(
            url, autocommit=True
        )
        self.held = False

    def take(self) -> None:
        assert self.conn is not None, "this lock was given back"
        self.conn.execute("BEGIN")
        self.conn.execute(
            "LOCK TABLE flowdsl_runs, flowdsl_attempts, flowdsl_events IN EXCLUSIVE MODE"
        )
        self.held = True

    def give_back(self) -> None:
        if self.conn is None:
            return
        if self.held:
            self.conn.execute("COMMIT")
            self.held = False
        self.conn.close()
        self.conn = None


class PostgresKit(StoreKit):
    """`PostgresStore` on a fresh schema ``t_<random>`` of the session's PostgreSQL database.

    The server is `pgserver.shared`, started by the first kit. The store's URL
    sets its connections' ``search_path`` to the schema, so its tables are the
    test's own; `close` drops the schema with them.
    """

    kind = "postgresql"
    release_schema = _postgres.SCHEMA_VERSION
    packs = False  # kept as text: PostgreSQL compresses a large value itself (TOAST)

    def __init__(self, directory: Path) -> None:
        super().__init__()
        try:
            server = pgserver.shared()
        except pgserver.ServerUnavailable as exc:
            raise KitUnavailable(str(exc)) from exc
        self.schema = f"t_{secrets.token_hex(6)}"
        self._url = pgserver.with_search_path(server.url, self.schema)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = psycopg.connect(
            self._url, autocommit=True
        )
        self._conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))

    @property
    def url(self) -> str:
        return self._url

    def close(self) -> None:
        """Close what `StoreKit.close` closes, then drop the schema (idempotent)."""
        try:
            super().close()
        finally:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with conn:
                    conn.execute("SET lock_timeout = '30s'")  # a leaked transaction: fail
                    conn.execute(
                        sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema))
                    )

    def _open(self, **options: Any) -> OpenStore:
        from flowdsl import PostgresStore

        store: OpenStore = PostgresStore(self._url, **options)
        return store

    def _write_lock(self) -> WriteLock:
        return _PostgresWriteLock(self._url)

    def _execute(self, query: str, params: tuple[Any, ...] = ()) -> psycopg.Cursor[Any]:
        assert self._conn is not None, "this kit was closed"
        return self._conn.execute(query, params)

    def set_owner(self, run_id: str, owner: str, lease_expires: float, epoch: int = 99) -> None:
        self._execute(
            "UPDATE flowdsl_runs SET status = 'running', owner = %s, lease_expires = %s, "
            "lease_epoch = %s WHERE run_id = %s",
            (owner, lease_expires, epoch, run_id),
        )

    def make_available(self, run_id: str) -> None:
        self._execute(
            "UPDATE flowdsl_runs SET available_at = queued_at WHERE run_id = %s", (run_id,)
        )

    def claimed_at(self, run_id: str) -> float | None:
        row = self._execute(
            "SELECT claimed_at FROM flowdsl_runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def lease_expires(self, run_id: str) -> float:
        row = self._execute(
            "SELECT lease_expires FROM flowdsl_runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        assert row is not None, f"no run {run_id!r}"
        return float(row[0])

    def status_of(self, run_id: str) -> tuple[str, str | None] | None:
        row = self._execute(
            "SELECT status, owner FROM flowdsl_runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def has_run(self, run_id: str) -> bool:
        found = self._execute("SELECT to_regclass('flowdsl_runs') IS NOT NULL").fetchone()
        if not (found and found[0]):
            return False
        row = self._execute("SELECT 1 FROM flowdsl_runs WHERE run_id = %s", (run_id,)).fetchone()
        return row is not None

    def attempt_rows(self) -> list[AttemptRow]:
        rows = self._execute(
            "SELECT run_id, step, visit, attempt, status, worker FROM flowdsl_attempts "
            "WHERE kind = 'step' ORDER BY seq"
        ).fetchall()
        return [AttemptRow(*row) for row in rows]

    def damage(self, run_id: str, part: str) -> None:
        assert part in DAMAGES, f"damage() takes one of {DAMAGES}, got {part!r}"
        self._execute(_POSTGRES_DAMAGE[part], (run_id,))

    def forget_renewals(self, store: Store) -> None:
        from flowdsl import PostgresStore

        assert isinstance(store, PostgresStore), store
        store._leases.confirmed = 0.0

    def mailbox(self, run_id: str) -> list[MailRow]:
        rows = self._execute(
            "SELECT event, payload, taken IS NOT NULL FROM flowdsl_events "
            "WHERE run_id = %s ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [MailRow(event, payload, bool(taken)) for event, payload, taken in rows]

    def schema_version(self) -> int:
        row = self._execute("SELECT max(version) FROM flowdsl_schema").fetchone()
        assert row is not None
        return int(row[0])

    def as_schema_6(self) -> None:
        for index in _SCHEMA_7_INDEXES["postgresql"]:
            self._execute(f"DROP INDEX {index}")
        self._execute("ALTER TABLE flowdsl_runs DROP COLUMN cancel_requested")
        self._execute("UPDATE flowdsl_schema SET version = 6")

    def backdate(self, run_id: str, seconds: float) -> None:
        self._execute(
            "UPDATE flowdsl_runs SET updated = updated - %s WHERE run_id = %s", (seconds, run_id)
        )

    def as_schema_4(self) -> None:
        self.before_graphs()
        self._execute("DROP INDEX flowdsl_runs_by_parent")
        self._execute("ALTER TABLE flowdsl_runs DROP COLUMN parent_id")
        self._execute("UPDATE flowdsl_schema SET version = 4")

    def before_graphs(self) -> None:
        self.as_schema_6()
        self._execute("DROP TABLE flowdsl_graphs")
        self._execute("UPDATE flowdsl_schema SET version = 5")

    def graph_rows(self) -> list[tuple[str, str]]:
        rows = self._execute(
            "SELECT fingerprint, workflow FROM flowdsl_graphs ORDER BY fingerprint"
        ).fetchall()
        return [(fingerprint, workflow) for fingerprint, workflow in rows]

    def delete_graphs(self) -> None:
        self._execute("DELETE FROM flowdsl_graphs")


# -- the kinds the suites run on ---------------------------------------------------------------

KITS: Final[dict[str, Callable[[Path], StoreKit]]] = {
    SQLiteKit.kind: SQLiteKit,
    PostgresKit.kind: PostgresKit,
}
"""Each kind's kit factory, given the test's temporary directory (`store_kit` runs each)."""
