"""The child process of tests/test_waits_crash.py: durable waits that die by SIGKILL on cue.

The test imports this file too (with a registry of its own), to resume the
runs in its own process with the same definitions. Every step body appends
one line to a side log (one ``write`` of an ``O_APPEND`` file: never torn),
apart from the journal, so the test can tell what ran, where and when::

    KEY PID TIME        KEY is ctx.idempotency_key, TIME is time.time()

The child also notes its waits' commit points in a marker file, and can die
right after one of them (SIGKILL, so nothing of the run's own is cleaned up)::

    due NAME VISIT STARTED      the wait's deadline entry committed (STARTED: when it
                                was first reached, time.time(); its deadline is STARTED
                                plus the sleep or the timeout)
    took NAME VISIT             the wait took its event and journaled it (one commit)

A kill is ``due:NAME:VISIT`` or ``took:NAME:VISIT`` (die right after that
line is written), or ``0`` (never). Modes::

    python wait_child.py run STORE LOG MARKS RUN_ID WORKFLOW INPUT KILL
        run WORKFLOW (INPUT is JSON) as RUN_ID on the store; exit 0 when it returns
    python wait_child.py worker STORE LOG MARKS
        a `Worker(park_after=0)` on the store, serving every queue until SIGTERM

STORE is a store URL (any scheme flowdsl opens). The commit points are found
by wrapping the store class's ``append`` and ``take_event`` in this process
only, so every kind of store is observed the same way.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from flowdsl import (
    END,
    Store,
    Worker,
    goto,
    ok,
    run_workflow,
    sleep_for,
    step,
    wait_for_event,
    workflow,
)

# isort: split
# flowdsl's internals this script reaches into (remap here when the modules move):
from flowdsl._engine._seams import DUE
from flowdsl.stores import open_store
from flowdsl.stores._protocol import Attempt, Claim

DAY = 86_400.0

_log_fd = -1
_marks_fd = -1
_kill = ""


def note(ctx: Any) -> None:
    """One side-log line for the step running now."""
    if _log_fd >= 0:
        os.write(_log_fd, f"{ctx.idempotency_key} {os.getpid()} {time.time():.6f}\n".encode())


def log_to(path: str | None) -> None:
    """Write the side log to `path` from now on (None: close it; the test process uses this)."""
    global _log_fd
    if _log_fd >= 0:
        os.close(_log_fd)
        _log_fd = -1
    if path is not None:
        _log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _mark(line: str) -> None:
    """Note a commit point; die here if it is the one the kill names."""
    if _marks_fd >= 0:
        os.write(_marks_fd, f"{line}\n".encode())
        os.fsync(_marks_fd)
    what, name, visit = line.split()[:3]
    if _kill == f"{what}:{name}:{visit}":
        os.kill(os.getpid(), signal.SIGKILL)


@workflow("napping")
def napping() -> None:
    """``a``, a durable sleep of ``ctx["seconds"]``, then ``b``."""

    @step
    async def a(ctx: Any) -> Any:
        note(ctx)
        return ok({"a_by": os.getpid()})

    sleep_for(lambda ctx: ctx["seconds"], name="nap")

    @step
    async def b(ctx: Any) -> Any:
        note(ctx)
        return ok({"b_at": time.time()})


@workflow("reading")
def reading() -> None:
    """``a``, then a goto loop over one wait that reads two ``note`` events, in order."""

    @step
    async def a(ctx: Any) -> Any:
        note(ctx)
        return ok({"seen": ()})

    wait_for_event("note", returns="note", timeout=DAY)

    @step
    async def collect(ctx: Any) -> Any:
        note(ctx)
        seen = (*ctx["seen"], ctx["note"])
        if len(seen) < 2:
            return goto("note", {"seen": seen})
        return ok({"seen": seen})


@workflow("replying")
def replying() -> None:
    """``a``, a wait for ``reply`` with a timeout of a day, then ``b``, or ``gave_up`` on timeout."""

    @step
    async def a(ctx: Any) -> Any:
        note(ctx)
        return ok({"asked": True})

    wait_for_event("reply", returns="reply", timeout=DAY, on_timeout="gave_up")

    @step
    async def b(ctx: Any) -> Any:
        note(ctx)
        return goto(END, {"answered": ctx["reply"]})

    @step
    async def gave_up(ctx: Any) -> Any:
        note(ctx)
        return ok({"gave_up_at": time.time()})


def _observe(store: Store) -> None:
    """Wrap the store class's commit points of waits (this process only) to note them."""
    cls = type(store)
    append, take_event = cls.append, cls.take_event

    async def noting_append(self: Store, claim: Claim, attempt: Attempt) -> None:
        await append(self, claim, attempt)
        if attempt.kind == DUE:
            _mark(f"due {attempt.step} {attempt.visit} {attempt.started!r}")

    async def noting_take_event(
        self: Store, claim: Claim, event: str, entry: Attempt, wrap: tuple[str, str]
    ) -> str | None:
        payload = await take_event(self, claim, event, entry, wrap)
        if payload is not None:
            _mark(f"took {entry.step} {entry.visit}")
        return payload

    cls.append = noting_append  # type: ignore[method-assign]
    cls.take_event = noting_take_event  # type: ignore[method-assign]


def _files(log: str, marks: str) -> None:
    global _marks_fd
    log_to(log)
    _marks_fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _run(target: str, run_id: str, name: str, data: str, kill: str) -> None:
    global _kill
    _kill = kill
    store, _ = open_store(target)
    _observe(store)
    try:
        run_workflow(name, json.loads(data), run_id=run_id, store=store)
    finally:
        store.close()


def _work(target: str) -> None:
    store, _ = open_store(target)
    _observe(store)
    try:
        Worker(store, park_after=0, poll=0.05, grace=1.0).run()
    finally:
        store.close()


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "run":
        _files(argv[2], argv[3])
        _run(argv[1], *argv[4:8])
    elif mode == "worker":
        _files(argv[2], argv[3])
        _work(argv[1])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
