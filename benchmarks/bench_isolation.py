"""What the context's deep isolation costs: chains whose steps read and write nested values.

    python benchmarks/bench_isolation.py [--steps 10000] [--rounds 7]
    python benchmarks/bench_isolation.py --instructions   # valgrind: stable under load

Three chains of `--steps` async steps, run back to back in one process:

* ``scalar``: each step merges ``{key: i}`` (the W2 chain of benchmarks/run.py):
  values that need no freezing, so this is the isolation's fixed cost per step;
* ``reads``: each step also reads a nested 10-item cart (reads cost nothing extra);
* ``writes``: each step merges a new nested dict (one small dict with a list),
  which is frozen (copied) as it enters the context.

Prints microseconds per step (best of `--rounds`), or with ``--instructions``
the CPU instructions per step counted by callgrind (the difference between a
run of one and of five chains, so set-up is not counted): a figure that does
not move when the machine is busy, for comparing two checkouts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def build(kind: str, n: int) -> Any:
    from flowdsl import ok, step, workflow
    from flowdsl._define import _registry

    def make(i: int) -> Any:
        key = f"k{i}"
        if kind == "scalar":

            async def add(ctx: Any) -> Any:
                return ok({key: i})

        elif kind == "reads":

            async def add(ctx: Any) -> Any:
                return ok({key: len(ctx["cart"]["items"])})

        else:

            async def add(ctx: Any) -> Any:
                return ok({key: {"i": i, "tags": ["a", "b"]}})

        return add

    fns = [make(i) for i in range(n)]
    cart = {"items": [{"sku": j, "qty": 1} for j in range(10)], "coupon": None}

    def body() -> None:
        step(lambda ctx: ok({"cart": cart}), name="seed")
        for i, fn in enumerate(fns):
            step(fn, name=f"s{i}")

    name = f"isolation-{kind}-{n}-{os.getpid()}"
    wf = workflow(name)(body)
    _registry.unregister(name)
    return wf


async def time_chain(kind: str, n: int, rounds: int) -> float:
    wf = build(kind, n)
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        run = await wf.arun({"input": 1})
        best = min(best, time.perf_counter() - started)
        assert run.status == "completed", run
    return best / n * 1e6


def child(kind: str, n: int, runs: int) -> None:
    """Run `runs` chains (the callgrind subject)."""
    wf = build(kind, n)

    async def main() -> None:
        for _ in range(runs):
            await wf.arun({"input": 1})

    asyncio.run(main())


def instructions(kind: str, n: int, runs: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        kind,
        str(n),
        str(runs),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stderr
    for line in out.splitlines():
        if "Collected" in line:
            return int(line.split()[-1])
    raise RuntimeError(f"no instruction count in callgrind's output:\n{out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "N", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    for kind in ("scalar", "reads", "writes"):
        if args.instructions:
            if shutil.which("valgrind") is None:
                raise SystemExit("--instructions needs valgrind")
            n = min(args.steps, 2_000)  # callgrind is ~50x slower
            per = (instructions(kind, n, 5) - instructions(kind, n, 1)) / (4 * n)
            print(f"{kind:>7}: {per:,.0f} instructions per step")
        else:
            per = asyncio.run(time_chain(kind, args.steps, args.rounds))
            print(f"{kind:>7}: {per:.2f} us per step")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
