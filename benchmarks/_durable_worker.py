"""Worker of the durable-runs benchmark against DBOS (benchmarks/bench_dbos.py).

Runs in the environment of ONE implementation (the project's interpreter for
flowdsl, benchmarks/.venvs/dbos for DBOS), in a process of its own::

    python benchmarks/_durable_worker.py --impl flowdsl --setting normal \\
        --db /tmp/x/runs.db --phase measure --plan '{"chain": 15, ...}'

Phases:

* ``measure``: opens a fresh database, warms up, then times the workloads
  (a 10-step chain run after run, a 100-way fan-out, a 10-step chain whose
  steps each return a 100 KB value, and 200 chains at once) and prints one
  ``BENCH`` line of JSON per workload;
* ``crash``: starts the recovery workflow (a 10-step chain) and, once step
  `CRASH_AT` has started (the steps before it are committed), prints ``READY``
  and waits to be killed;
* ``recover``: opens the database the killed process left and lets the
  implementation resume the run; prints ``DONE`` with how long that took
  in-process once the run has completed.

Nothing here imports flowdsl or DBOS: the implementation is the module
``durable_<impl>`` beside this file. Every run's result is checked; a wrong
one is an error line, never a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

PREFIX = "BENCH "
CHAIN_STEPS = 10
FANOUT_WIDTH = 100
CONCURRENT_RUNS = 200
PAYLOAD_STEPS = 10
CRASH_AT = 5
"""The recovery workflow's step during which the process is killed (0-based)."""


def _payload() -> list[dict[str, Any]]:
    """About 100 KB of JSON: 800 flat records of str, int, float, bool and a list."""
    return [
        {
            "id": i,
            "sku": f"SKU-{i:05d}",
            "name": f"Widget number {i}",
            "price": round(1.25 * i + 0.99, 2),
            "qty": i % 7,
            "active": i % 2 == 0,
            "tags": ["blue", "large"],
        }
        for i in range(800)
    ]


PAYLOAD = _payload()
"""The value each step of the payload workload returns (built once, the same in both)."""


class WrongResult(Exception):
    """A run finished, but not with the result it must have."""


class Impl(Protocol):
    """What a ``durable_<impl>`` module provides (each function checks its run's result)."""

    def version(self) -> str: ...
    def settings(self) -> dict[str, str]: ...
    async def start(self, setting: str, path: str) -> None: ...
    async def stop(self) -> None: ...
    async def chain(self, run_id: str) -> None: ...
    async def concurrent(self, prefix: str, runs: int) -> None: ...
    async def fanout(self, run_id: str) -> None: ...
    async def payload(self, run_id: str) -> None: ...
    async def crash(self, run_id: str, log: str) -> None: ...
    async def recover(self, run_id: str, log: str) -> None: ...


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(record) + "\n")
    sys.stdout.flush()


def step_log(log: str, index: int) -> None:
    """Append one step's index to the recovery workflow's log (which steps ran, in order)."""
    with open(log, "a") as handle:
        handle.write(f"{index}\n")


def steps_ran(log: str) -> list[int]:
    """The indices `step_log` wrote, in order."""
    return [int(line) for line in Path(log).read_text().split()]


async def blocked_step(index: int) -> None:
    """In the crash phase, step CRASH_AT tells the parent and waits to be killed."""
    if index == CRASH_AT and PHASE == "crash":
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        await asyncio.sleep(3600)


PHASE = ""
"""The phase this process runs (set by main; the recovery steps read it)."""


async def _timed(
    fn: Callable[[int], Awaitable[None]],
    reps: int,
    budget: float,
    warmup: int,
) -> list[float]:
    for index in range(warmup):
        await fn(-1 - index)
    times: list[float] = []
    spent = 0.0
    for index in range(reps):
        started = time.perf_counter()
        await fn(index)
        elapsed = time.perf_counter() - started
        times.append(elapsed)
        spent += elapsed
        if spent >= budget and len(times) >= min(reps, 2):
            break
    return times


async def measure(impl: Impl, setting: str, path: str, plan: dict[str, Any]) -> None:
    await impl.start(setting, path)
    try:
        emit({"type": "meta", "version": impl.version(), "settings": impl.settings()})
        budget = float(plan.get("budget", 3.0))
        workloads: dict[str, Callable[[], Awaitable[list[float]]]] = {
            "chain": lambda: _timed(
                lambda i: impl.chain(f"chain-{i}"),
                plan["chain"],
                budget,
                warmup=2,
            ),
            "fanout": lambda: _timed(
                lambda i: impl.fanout(f"fan-{i}"),
                plan["fanout"],
                budget,
                warmup=1,
            ),
            "payload": lambda: _timed(
                lambda i: impl.payload(f"payload-{i}"),
                plan["payload"],
                budget,
                warmup=1,
            ),
            # No warm-up batch (one batch of the slowest setting is most of a round);
            # the chain's warm-up and runs came first in this process.
            "concurrent": lambda: _timed(
                lambda i: impl.concurrent(f"many-{i}", CONCURRENT_RUNS),
                plan["concurrent"],
                0.0,
                warmup=0,
            ),
        }
        for name in plan["workloads"]:
            try:
                times = await workloads[name]()
            except Exception as exc:  # reported as that workload's error; the rest goes on
                why = f"{type(exc).__name__}: {exc}"
                emit({"type": "case", "workload": name, "error": why[:300]})
                traceback.print_exc()
                continue
            emit({"type": "case", "workload": name, "times": times})
    finally:
        await impl.stop()


async def crash(impl: Impl, setting: str, path: str, log: str) -> None:
    await impl.start(setting, path)
    await impl.crash("recover-1", log)
    msg = "the recovery workflow finished in the crash phase; it must block at its step CRASH_AT"
    raise WrongResult(msg)


async def recover(impl: Impl, setting: str, path: str, log: str) -> None:
    started = time.perf_counter()
    await impl.start(setting, path)
    try:
        await impl.recover("recover-1", log)
        elapsed = time.perf_counter() - started
    finally:
        await impl.stop()
    ran = steps_ran(log)
    expected = [*range(CRASH_AT + 1), *range(CRASH_AT, CHAIN_STEPS)]
    if ran != expected:
        msg = f"steps ran in the order {ran}, expected {expected} (completed steps ran again?)"
        raise WrongResult(msg)
    emit({"type": "recovered", "resume": elapsed})
    sys.stdout.write("DONE\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    global PHASE
    parser = argparse.ArgumentParser(description="durable-runs benchmark worker")
    parser.add_argument("--impl", required=True, choices=("flowdsl", "dbos"))
    parser.add_argument("--setting", required=True)
    parser.add_argument("--db", required=True, help="the database file (made if missing)")
    parser.add_argument("--phase", required=True, choices=("measure", "crash", "recover"))
    parser.add_argument("--plan", default="{}", help="measure: JSON of reps per workload")
    parser.add_argument("--log", default="", help="crash/recover: the steps' log file")
    args = parser.parse_args(argv)
    PHASE = args.phase
    # The implementation imports this module for its helpers: let it find this copy
    # (run as a script, it is __main__), so that it sees PHASE.
    sys.modules.setdefault("_durable_worker", sys.modules[__name__])
    impl: Any = importlib.import_module(f"durable_{args.impl}")
    if args.phase == "measure":
        asyncio.run(measure(impl, args.setting, args.db, json.loads(args.plan)))
    elif args.phase == "crash":
        asyncio.run(crash(impl, args.setting, args.db, args.log))
    else:
        asyncio.run(recover(impl, args.setting, args.db, args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
