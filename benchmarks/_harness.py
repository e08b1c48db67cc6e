"""Benchmark worker: runs the cases of ONE implementation in this process.

Started by ``benchmarks/run.py`` (one process per implementation and round),
with the interpreter of that implementation's environment::

    python benchmarks/_harness.py --impl grafo --cases '[{"id": "W1/100", ...}]'

For each case it builds the workload (timed), runs it (timed), checks the
result, repeats, and prints one JSON line per case on stdout, each prefixed
with ``BENCH``. Nothing here imports flowdsl or a peer except the impl module.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import json
import signal
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable
from typing import Any

PREFIX = "BENCH "


class WrongResult(Exception):
    """The workload ran but its result is not the expected one."""


class CaseTimeout(BaseException):
    """Raised by SIGALRM when a case runs past its time limit (a BaseException,
    so that no implementation turns it into an ordinary step failure)."""


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(record) + "\n")
    sys.stdout.flush()


# -- workloads -----------------------------------------------------------------
# Each workload: how many nodes it has, how to build it, how to run it, and
# what the result must be. ``check`` returns None when the result is right,
# else a message.


def _check_fanout(n: int, result: Any) -> str | None:
    expected = n * (n - 1) // 2
    return None if result == expected else f"fan-in sum {result!r}, expected {expected}"


def _check_chain(n: int, ctx: Any) -> str | None:
    if ctx.get("input") != 1:
        return "the input key is missing from the final context"
    if len(ctx) != n + 1:
        return f"final context has {len(ctx)} keys, expected {n + 1}"
    for i in range(n):
        if ctx.get(f"k{i}") != i:
            return f"key k{i} is {ctx.get(f'k{i}')!r}, expected {i}"
    return None


def _check_sleep(n: int, result: Any) -> str | None:
    return None if result == n else f"{result!r} branches finished, expected {n}"


def _check_layers(layers: int, width: int, ctx: Any) -> str | None:
    expected = width * (width - 1) // 2
    for layer in range(layers):
        got = ctx.get(f"layer{layer}")
        if got != expected:
            return f"layer{layer} sum is {got!r}, expected {expected}"
    return None


class Workload:
    def __init__(self, impl: Any, case: dict[str, Any]) -> None:
        kind = case["workload"]
        n = case.get("n", 0)
        self.kind = kind
        self.steady = bool(case.get("steady"))
        if self.steady and not getattr(impl, "REUSABLE", True):
            raise NotImplementedError("a built graph runs only once")
        self.build_only = kind == "compile"
        self.build: Callable[[], Any]
        self.run: Callable[[Any], Any] | None
        self.check: Callable[[Any], str | None]
        if kind == "fanout":
            self.nodes = n
            build_fanout = impl.build_fanout
            self.build = lambda: build_fanout(n)
            self.run = impl.run_fanout
            self.check = lambda r: _check_fanout(n, r)
        elif kind == "chain":
            self.nodes = n
            build_chain = impl.build_chain
            self.build = lambda: build_chain(n)
            self.run = impl.run_chain
            self.check = lambda r: _check_chain(n, r)
        elif kind == "sleep":
            delay = case["delay"]
            self.nodes = n
            build_sleep = impl.build_sleep
            self.build = lambda: build_sleep(n, delay)
            self.run = impl.run_sleep
            self.check = lambda r: _check_sleep(n, r)
        elif kind == "layers":
            layers, width = case["layers"], case["width"]
            self.nodes = layers * width
            build_layers = impl.build_layers
            self.build = lambda: build_layers(layers, width)
            self.run = impl.run_layers
            self.check = lambda r: _check_layers(layers, width, r)
        elif kind == "compile":
            self.nodes = n
            build_compile = impl.build_chain
            self.build = lambda: build_compile(n)
            self.run = None
            self.check = lambda r: None
        else:
            raise ValueError(f"unknown workload {kind!r}")

    async def once(self) -> tuple[float, float | None]:
        """One build + run; returns (build seconds, run seconds or None)."""
        t0 = time.perf_counter()
        built = self.build()
        if inspect.isawaitable(built):
            built = await built
        t1 = time.perf_counter()
        if self.run is None:
            return t1 - t0, None
        result = await self.run(built)
        t2 = time.perf_counter()
        problem = self.check(result)
        if problem is not None:
            raise WrongResult(problem)
        return t1 - t0, t2 - t1


async def _steady_reps(work: Workload, reps: int, budget: float) -> tuple[list, list]:
    """Build once, then time back-to-back runs of the same built workload (no gc.collect)."""
    assert work.run is not None
    gc.collect()
    t0 = time.perf_counter()
    built = work.build()
    if inspect.isawaitable(built):
        built = await built
    build_s = time.perf_counter() - t0
    await work.run(built)  # warm-up
    runs: list[float] = []
    started = time.perf_counter()
    while len(runs) < reps and (not runs or time.perf_counter() - started < budget):
        t1 = time.perf_counter()
        result = await work.run(built)
        runs.append(time.perf_counter() - t1)
        problem = work.check(result)
        if problem is not None:
            raise WrongResult(problem)
    return [build_s], runs


async def _timed_reps(work: Workload, reps: int, budget: float) -> tuple[list, list]:
    if work.steady:
        return await _steady_reps(work, reps, budget)
    builds: list[float] = []
    runs: list[float] = []
    # Warm-up rep (caches, lazy imports). A slow case keeps it as a sample:
    # for a run of seconds the first-run effects are noise, and time is short.
    gc.collect()
    started = time.perf_counter()
    build_s, run_s = await work.once()
    if time.perf_counter() - started > budget:
        builds.append(build_s)
        runs.append(run_s if run_s is not None else build_s)
    started = time.perf_counter()
    while len(runs) < reps and (not runs or time.perf_counter() - started < budget):
        gc.collect()
        build_s, run_s = await work.once()
        builds.append(build_s)
        runs.append(run_s if run_s is not None else build_s)
    return builds, runs


async def _memory_rep(work: Workload) -> int:
    """Peak traced memory (bytes) of one build + run, above what was live before."""
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        await work.once()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(0, peak - base)


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def run_case(impl: Any, case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "case", "id": case["id"], "error": None}
    try:
        work = Workload(impl, case)
    except (AttributeError, NotImplementedError) as exc:
        record["error"] = f"n/a: {exc}"
        return record
    record["nodes"] = work.nodes
    signal.setitimer(signal.ITIMER_REAL, args.case_timeout)
    try:
        builds, runs = asyncio.run(_timed_reps(work, args.reps, args.budget))
        record["build"] = builds
        record["run"] = None if work.build_only else runs
        if args.mem:
            record["mem_peak"] = asyncio.run(_memory_rep(work))
    except CaseTimeout:
        record["error"] = f"timeout: over {args.case_timeout:g} s"
    except WrongResult as exc:
        record["error"] = f"wrong result: {exc}"[:300]
    except RecursionError:
        record["error"] = "crash: RecursionError"
    except NotImplementedError as exc:
        record["error"] = f"n/a: {exc}" if str(exc) else "n/a"
    except Exception as exc:  # any failure of an implementation is a result
        record["error"] = f"crash: {type(exc).__name__}: {exc}"[:300]
        record["traceback"] = traceback.format_exc()[-2000:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    gc.collect()
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", required=True, help="taskgroup, plain, flowdsl, grafo, ...")
    parser.add_argument("--cases", required=True, help="JSON list of case objects")
    parser.add_argument("--reps", type=int, default=5, help="timed reps per case (at most)")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of reps per case")
    parser.add_argument("--case-timeout", type=float, default=120.0)
    parser.add_argument("--mem", action="store_true", help="add one tracemalloc rep per case")
    args = parser.parse_args(argv)

    try:
        impl = importlib.import_module(f"impl_{args.impl}")
        impl_version = impl.version()
    except (ImportError, AttributeError) as exc:
        emit({"type": "unavailable", "reason": f"{type(exc).__name__}: {exc}"})
        return 0

    emit(
        {
            "type": "meta",
            "impl": args.impl,
            "version": impl_version,
            "python": sys.version.split()[0],
            "executable": sys.executable,
        }
    )
    signal.signal(signal.SIGALRM, _on_alarm)
    for case in json.loads(args.cases):
        emit(run_case(impl, case, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
