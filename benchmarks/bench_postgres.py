"""What a journaled step costs on PostgreSQL, against SQLite in the same run.

    .venv/bin/python benchmarks/bench_postgres.py [--dsn URL] [--steps 200] [--runs 200] [--repeat 5]

``--dsn`` names a PostgreSQL database (default: ``$FLOWDSL_TEST_POSTGRES``, else
the server the test suite uses, from ``tests/pgserver.py``); the benchmark works
in a schema of its own and drops it at the end. Three figures, each the median
of ``--repeat`` interleaved rounds:

* sequential: one run of ``--steps`` trivial steps on each store and in
  memory; the cost per journaled step is (durable - in memory) / steps. Every
  step waits for its own commit: the worst case, nothing to batch.
* concurrent: ``--runs`` runs of 10 steps at once on one store, whose journal
  writes share statements and commits (group commit).
* the same on PostgreSQL with ``synchronous_commit="off"`` (``postgresql_off``).
* journal entries per statement on PostgreSQL in the concurrent case: each
  statement is one round trip and one commit, shared by the runs whose
  entries were waiting at once.

The server's ``synchronous_commit`` setting is printed: with ``on`` (the
default) every commit waits for the WAL to reach the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_durable import chain  # a chain of trivial steps, as that benchmark runs

from flowdsl import PostgresStore, SQLiteStore, Store, arun_workflow


def server_dsn(given: str | None) -> tuple[str, Callable[[], None]]:
    """The database to measure on, and what stops whatever was started for it."""
    if given:
        return given, lambda: None
    found = os.environ.get("FLOWDSL_TEST_POSTGRES")
    if found and found != "private":
        return found, lambda: None
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import pgserver  # the test suite's server: an existing one, or a private cluster

    server = pgserver.start()
    return server.url, server.stop


@contextmanager
def schema_of(dsn: str) -> Iterator[str]:
    """A URL whose tables live in a fresh schema of `dsn`'s database (dropped after)."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in dsn else "?"
    try:
        yield f"{dsn}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


class Statements:
    """Counts the journal statements `PostgresStore` sends and the entries they carry."""

    def __init__(self) -> None:
        from flowdsl.stores import _postgres

        self.statements = 0
        self.entries = 0
        insert = _postgres._Engine.insert

        async def counted(conn: Any, batch: Any) -> Any:
            self.statements += 1
            self.entries += len(batch)
            return await insert(conn, batch)

        _postgres._Engine.insert = staticmethod(counted)  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    dsn, stop = server_dsn(args.dsn)
    try:
        figures = measure(dsn, args.steps, args.runs, args.repeat)
    finally:
        stop()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"PostgreSQL synchronous_commit = {figures['synchronous_commit']}")
    for kind in ("sqlite", "postgresql", "postgresql_off"):
        print(
            f"{kind:>14}: {figures[kind + '_step_us']:8.0f} us per journaled step (sequential), "
            f"{figures[kind + '_concurrent_us']:6.0f} us per step with {args.runs} runs at once"
        )
    print(
        f"PostgreSQL / SQLite: {figures['ratio_sequential']:.2f}x sequential, "
        f"{figures['ratio_concurrent']:.2f}x concurrent; "
        f"{figures['entries_per_statement']:.1f} journal entries per statement with {args.runs} runs at once"
    )


def measure(dsn: str, steps: int, runs: int, repeat: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    figures: dict[str, Any] = {"synchronous_commit": row[0] if row else "?"}
    long_chain = chain(steps, "bench_pg_chain")
    ten = chain(10, "bench_pg_ten")
    with tempfile.TemporaryDirectory() as tmp, schema_of(dsn) as url:
        stores: dict[str, Store] = {
            "sqlite": SQLiteStore(Path(tmp) / "runs.db"),
            "postgresql": PostgresStore(url),
            "postgresql_off": PostgresStore(url, synchronous_commit="off"),
        }
        try:
            sequential: dict[str, list[float]] = {"memory": [], **{kind: [] for kind in stores}}
            concurrent: dict[str, list[float]] = {kind: [] for kind in stores}
            entries: list[float] = []
            counter = Statements()

            async def one(store: Store | None, round_: int) -> float:
                run_id = None if store is None else f"seq-{round_}-{uuid.uuid4().hex}"
                began = time.perf_counter()
                run = await arun_workflow(long_chain, {}, store=store, run_id=run_id)
                assert run.status == "completed", run
                return time.perf_counter() - began

            async def many(store: Store, round_: int) -> float:
                began = time.perf_counter()
                done = await asyncio.gather(
                    *(
                        arun_workflow(ten, {}, store=store, run_id=f"c-{round_}-{n}")
                        for n in range(runs)
                    )
                )
                assert all(run.status == "completed" for run in done)
                return time.perf_counter() - began

            asyncio.run(one(None, -1))  # warm-up: imports, the stores' threads and pools
            for store in stores.values():
                asyncio.run(one(store, -1))
            for round_ in range(repeat):  # interleaved: a noisy moment hits every kind
                sequential["memory"].append(asyncio.run(one(None, round_)))
                for kind, store in stores.items():
                    sequential[kind].append(asyncio.run(one(store, round_)))
                for kind, store in stores.items():
                    before = (counter.statements, counter.entries)
                    concurrent[kind].append(asyncio.run(many(store, round_)))
                    if kind == "postgresql":
                        sent = counter.statements - before[0]
                        entries.append((counter.entries - before[1]) / sent)
        finally:
            for store in stores.values():
                store.close()
    memory = statistics.median(sequential["memory"])
    for kind in ("sqlite", "postgresql", "postgresql_off"):
        figures[kind + "_step_us"] = (statistics.median(sequential[kind]) - memory) / steps * 1e6
        figures[kind + "_concurrent_us"] = statistics.median(concurrent[kind]) / (runs * 10) * 1e6
    figures["ratio_sequential"] = figures["postgresql_step_us"] / figures["sqlite_step_us"]
    figures["ratio_concurrent"] = (
        figures["postgresql_concurrent_us"] / figures["sqlite_concurrent_us"]
    )
    figures["entries_per_statement"] = statistics.median(entries)
    return figures


if __name__ == "__main__":
    main()
