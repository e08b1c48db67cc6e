"""What journaling costs: a durable step against the same step in memory.

    .venv/bin/python benchmarks/bench_durable.py [--steps 200] [--repeat 5] [--runs 1000]

Three figures, each the median of ``--repeat`` rounds:

* sequential: one run of ``--steps`` trivial steps, in memory and with an
  `SQLiteStore` (``synchronous="normal"``, then ``"full"``); the cost per
  journaled step is (durable - in memory) / steps. Every step waits for its
  own commit, so this is the worst case: nothing to batch.
* concurrent: ``--runs`` runs of 10 steps at once on one store, where the
  writer thread batches many steps into each commit.

The database lives in a temporary directory on the same disk as the system's
temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowdsl import SQLiteStore, Workflow, arun_workflow, ok, step, workflow


def chain(steps: int, name: str) -> Workflow:
    """A workflow of `steps` async steps, each adding one key."""

    @workflow(name)
    def body() -> None:
        for index in range(steps):

            async def add(ctx: Any, index: int = index) -> Any:
                return ok({f"k{index}": index})

            step(add, name=f"s{index}")

    return body


def median_time(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sequential(steps: int, repeat: int, folder: Path, synchronous: str) -> tuple[float, float]:
    wf = chain(steps, f"chain_{synchronous}")
    counter = iter(range(1_000_000))

    def memory() -> None:
        run = asyncio.run(arun_workflow(wf))
        assert run.status == "completed"

    with SQLiteStore(folder / f"seq-{synchronous}.db", synchronous=synchronous) as store:  # type: ignore[arg-type]

        def durable() -> None:
            run = asyncio.run(arun_workflow(wf, run_id=f"r{next(counter)}", store=store))
            assert run.status == "completed"

        durable()  # warm up: the file, the writer thread
        memory()
        return median_time(memory, repeat), median_time(durable, repeat)


def concurrent(runs: int, repeat: int, folder: Path) -> tuple[float, float]:
    wf = chain(10, "chain_concurrent")
    counter = iter(range(1_000_000))

    async def many(store: SQLiteStore | None) -> None:
        if store is None:
            done = await asyncio.gather(*(arun_workflow(wf) for _ in range(runs)))
        else:
            done = await asyncio.gather(
                *(arun_workflow(wf, run_id=f"c{next(counter)}", store=store) for _ in range(runs))
            )
        assert all(run.status == "completed" for run in done)

    with SQLiteStore(folder / "concurrent.db") as store:
        asyncio.run(many(store))
        memory = median_time(lambda: asyncio.run(many(None)), repeat)
        durable = median_time(lambda: asyncio.run(many(store)), repeat)
    return memory, durable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for synchronous in ("normal", "full"):
            memory, durable = sequential(args.steps, args.repeat, folder, synchronous)
            per_step = (durable - memory) / args.steps
            print(
                f"sequential, synchronous={synchronous}: {args.steps} steps in memory "
                f"{memory * 1e3:.2f} ms, journaled {durable * 1e3:.2f} ms -> "
                f"{per_step * 1e3:.3f} ms per journaled step"
            )
        memory, durable = concurrent(args.runs, args.repeat, folder)
        steps = args.runs * 10
        print(
            f"concurrent: {args.runs} runs x 10 steps in memory {memory * 1e3:.0f} ms, "
            f"journaled {durable * 1e3:.0f} ms -> "
            f"{(durable - memory) / steps * 1e3:.3f} ms per journaled step "
            f"({steps / durable:,.0f} journaled steps/s)"
        )


if __name__ == "__main__":
    main()
