"""The worker process of tests/test_workers.py: a `Worker` on a store, plus the workflows it runs.

The test imports this file too (with a registry of its own) to queue runs of
the same definitions. The ``job`` workflow has three steps, ``first``,
``middle`` and ``last``; each step body appends a ``start`` and an ``end``
line to a side log, apart from the journal, so the test can tell what ran
where and when::

    start|end KEY ATTEMPT PID TIME      KEY is ctx.idempotency_key, TIME is time.time()

and the worker adds ``stopping - 0 PID TIME`` once it has been told to stop
(a signal, or ``stop()``). ``middle`` does what the run's input asks:

- ``meet: N``: wait (at most ``MEET_WAIT`` seconds) until the side log shows
  N runs in progress (their ``first`` started, their ``last`` not ended), so a
  test can show a limit is reached, not only that it is not exceeded;
- ``hold: S``: then take S seconds;
- ``gate: PATH``: in a worker started with ``--gated`` only, wait until PATH
  exists (a test holds a run in a step with it; another worker is not held).

``--crash-log PATH`` also runs tests/crash_child.py's ``crash_checkout``
with its side log in PATH and its kill point ``--kill N`` (die at the N-th
kill point this process reaches; 0: never), so one worker process among
several can be SIGKILLed inside a step. Usage::

    python worker_child.py STORE LOG [--lease S] [--concurrency N] [--grace S]
                           [--gated] [--crash-log PATH] [--kill N]

STORE is a store URL, handed to the `Worker` as it is; with ``--lease`` the
store is opened here with that lease (each kind of store by its own class)
and handed to the `Worker` as an object. ``Worker.run()`` handles SIGTERM and
SIGINT; the process exits 0 when it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowdsl import Queue, SQLiteStore, Store, Worker, ok, step, workflow

MEET_WAIT = 5.0
"""The longest ``middle`` waits for the runs it should meet (then it goes on)."""

CAPPED = Queue("capped", concurrency=2)
PACED = Queue("paced", rate_limit=(3, 1.0))

_log_fd = -1
_log_path = ""
_gated = False


def note(event: str, key: str, attempt: int) -> None:
    """Append one line to the side log (one ``write`` of an ``O_APPEND`` file: never torn)."""
    if _log_fd >= 0:
        line = f"{event} {key} {attempt} {os.getpid()} {time.time():.6f}\n"
        os.write(_log_fd, line.encode())


def in_progress(log: str) -> int:
    """How many runs the side log shows in progress: ``first`` started, ``last`` not ended."""
    started: set[str] = set()
    ended: set[str] = set()
    for text in Path(log).read_text().splitlines():
        event, key = text.split()[:2]
        run_id, _, name = key.rpartition(":")
        if event == "start" and name == "first":
            started.add(run_id)
        elif event == "end" and name == "last":
            ended.add(run_id)
    return len(started - ended)


async def _poll(done: Callable[[], bool], deadline: float = math.inf) -> None:
    """Until `done()` or `deadline`: what it waits for is a file other processes write."""
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110 -- nothing to notify us
        await asyncio.sleep(0.005)


async def _middle(ctx: Any, log: str) -> None:
    meet = ctx.get("meet", 0)
    if meet:
        await _poll(lambda: in_progress(log) >= meet, time.monotonic() + MEET_WAIT)
    if ctx.get("hold"):
        await asyncio.sleep(ctx["hold"])  # the work itself, not a synchronisation
    gate = ctx.get("gate")
    if gate and _gated:
        await _poll(lambda: os.path.exists(gate))


@workflow("job")
def job() -> None:
    """Three steps; ``middle`` meets, holds or waits at a gate as the input says."""

    @step
    async def first(ctx: Any) -> Any:
        note("start", ctx.idempotency_key, ctx.attempt)
        note("end", ctx.idempotency_key, ctx.attempt)
        return ok({"first_by": os.getpid()})

    @step
    async def middle(ctx: Any) -> Any:
        note("start", ctx.idempotency_key, ctx.attempt)
        await _middle(ctx, _log_path)
        note("end", ctx.idempotency_key, ctx.attempt)
        return ok({"middle_by": os.getpid()})

    @step
    async def last(ctx: Any) -> Any:
        note("start", ctx.idempotency_key, ctx.attempt)
        note("end", ctx.idempotency_key, ctx.attempt)
        return ok({"last_by": os.getpid(), "n": ctx.get("n", 0) * 2})


class NotingWorker(Worker):
    """A `Worker` that notes in the side log when it has been told to stop."""

    def stop(self) -> None:
        super().stop()
        note("stopping", "-", 0)


def open_with_lease(url: str, lease: float) -> Store:
    """The store `url` names, opened with `lease` (a new kind of store adds its line here)."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        return SQLiteStore(rest[1:], lease=lease)
    if scheme in ("postgresql", "postgres"):
        import flowdsl

        store: Store = flowdsl.PostgresStore(url, lease=lease)  # type: ignore[attr-defined]
        return store
    msg = f"worker_child.py cannot open {url!r} with a lease"
    raise SystemExit(msg)


def main(argv: list[str]) -> None:
    global _log_fd, _gated, _log_path
    parser = argparse.ArgumentParser(prog="worker_child.py")
    parser.add_argument("store")
    parser.add_argument("log")
    parser.add_argument("--lease", type=float)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--gated", action="store_true")
    parser.add_argument("--crash-log")
    parser.add_argument("--kill", type=int, default=0)
    args = parser.parse_args(argv)
    # The worker's warnings (a run it lost, a run that raised) go to stderr for the test.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    _log_path = args.log
    _log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _gated = args.gated
    modules = []
    if args.crash_log:
        import crash_child

        crash_child._log_fd = os.open(args.crash_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        crash_child._kill = args.kill
        modules.append("crash_child")  # imported already: the worker finds it by name
    # With a lease the store is an object of ours, else the worker opens (and closes) the URL.
    store = None if args.lease is None else open_with_lease(args.store, args.lease)
    worker = NotingWorker(
        args.store if store is None else store,
        modules=modules,
        concurrency=args.concurrency,
        grace=args.grace,
    )
    try:
        worker.run()
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
