"""foreach at scale (issue 15): the cost per item, and the memory of 100,000 items.

    python benchmarks/bench_foreach.py [--quick] [--rounds 5] [--sizes 1000,10000]
                                       [--mem-items 100000] [--out report.md]
    python benchmarks/bench_foreach.py --profile [--items 10000]   # cProfile of one run
    python benchmarks/bench_foreach.py --instructions [--items 1000]  # valgrind: stable under load

Also run by ``benchmarks/run.py`` (full and ``--quick``), after its own table.

Time per item, N items whose body is one trivial async step returning
``{"v": item + 1}``:

* ``foreach``: ``with foreach("items"):`` around that step (no limit);
* ``parallel``: the same body as a static ``parallel`` block of N steps, the
  workflow built before the clock starts;
* ``taskgroup``: a hand-written ``asyncio.TaskGroup`` loop, one task per item;
* ``foreach/64`` against ``semaphore/64``: ``max_concurrency=64`` against a
  TaskGroup whose N tasks each take an ``asyncio.Semaphore(64)``.

Every case runs in a process of its own per round (the workflow of another
case never sits in the heap a collection walks), in interleaved rounds; a
process builds, runs once to warm up, then times runs (``gc.collect()`` before
each) until its reps or its time budget are used. Every result is checked.
The figures are medians over all rounds; ratios are taken between cases of
the same run.

Peak memory (``tracemalloc``, Python allocations only) of one run of
``--mem-items`` items, each case in a fresh process: a plain list of the
results as the baseline, ``foreach(max_concurrency=100)``, foreach without a
limit, a TaskGroup with a task per item, and a TaskGroup + Semaphore(100).
*kept* is what is still allocated after the run while its result is held.

The report never fails on a figure: the goals are printed as met or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
PREFIX = "FOREACH "

TIME_CASES = ("taskgroup", "parallel", "foreach", "semaphore/64", "foreach/64")
MEM_CASES = ("list", "foreach/100", "foreach", "taskgroup", "semaphore/100")


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: tuple[int, ...]
    rounds: int
    reps: int  # timed runs per case and round (at most)
    budget: float  # seconds of timed runs per case and round (at least one run)
    mem_items: int
    timeout: float  # seconds per child process


QUICK = Mode("quick", (1_000,), 3, 3, 0.3, 10_000, 60.0)
FULL = Mode("full", (1_000, 10_000), 5, 5, 1.0, 100_000, 300.0)

# Goals of max_concurrency=100, printed as met or missed (never a failure: see the docstring).
# Both are deterministic (tracemalloc counts allocations, not timings) and generous.
GOAL_BOUNDED = 1.25  # peak at most 1.25x what the run keeps at its end: the running items
# add a bounded amount, not an amount per item
GOAL_RESULTS = 3.0  # peak at most 3x a plain list of the same results


# -- the workloads (run in a child process) ---------------------------------------------


def _limit(case: str) -> int | None:
    return int(case.split("/")[1]) if "/" in case else None


def _flowdsl_workflow(case: str, n: int) -> Any:
    """The workflow of a flowdsl case, built (defined and compiled) now."""
    from flowdsl import foreach, ok, parallel, step, workflow
    from flowdsl._define import _registry

    if case.startswith("foreach"):
        limit = _limit(case)

        async def work(ctx: Any) -> Any:
            return ok({"v": ctx.item + 1})

        def body() -> None:
            with foreach("items", max_concurrency=limit, name="out"):
                step(work, name="work")

    else:

        def make(i: int) -> Callable[[Any], Any]:
            async def work(ctx: Any) -> Any:
                return ok({"v": i + 1})

            return work

        fns = [make(i) for i in range(n)]

        def body() -> None:
            with parallel(name="out"):
                for i, fn in enumerate(fns):
                    step(fn, name=f"work{i}")

    name = f"bench-foreach-{case}-{n}-{os.getpid()}"
    wf = workflow(name)(body)
    _registry.unregister(name)
    return wf


async def _work(item: int) -> dict[str, int]:
    return {"v": item + 1}


async def _taskgroup(items: list[int]) -> list[dict[str, int]]:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_work(item)) for item in items]
    return [task.result() for task in tasks]


async def _semaphore(items: list[int], limit: int) -> list[dict[str, int]]:
    slots = asyncio.Semaphore(limit)

    async def guarded(item: int) -> dict[str, int]:
        async with slots:
            return await _work(item)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(guarded(item)) for item in items]
    return [task.result() for task in tasks]


async def _plain_list(items: list[int]) -> list[dict[str, int]]:
    return [{"v": item + 1} for item in items]


def _runner(case: str, n: int) -> Callable[[list[int]], Any]:
    """An async function of the items that runs the case once and returns its result."""
    if case == "taskgroup":
        return _taskgroup
    if case.startswith("semaphore"):
        limit = _limit(case)
        assert limit is not None
        return lambda items: _semaphore(items, limit)
    if case == "list":
        return _plain_list
    wf = _flowdsl_workflow(case, n)

    async def run_flowdsl(items: list[int]) -> Any:
        run = await wf.arun({"items": items})
        if run.status != "completed":
            raise RuntimeError(f"flowdsl run {run.status}: {run.error!r}")
        return run

    return run_flowdsl


def _values(case: str, result: Any) -> list[int]:
    """The ``v`` of every item's result, in item order."""
    if case in ("taskgroup", "list") or case.startswith("semaphore"):
        return [r["v"] for r in result]
    from flowdsl import Ok

    out = result.output["out"] if case.startswith("foreach") else result.output["__results__"]
    results = list(out) if case.startswith("foreach") else list(out.values())
    if any(type(r) is not Ok for r in results):
        raise RuntimeError(f"a branch failed: {next(r for r in results if type(r) is not Ok)!r}")
    return [r.value["v"] for r in results]


def _check(case: str, n: int, result: Any) -> None:
    values = _values(case, result)
    if values != list(range(1, n + 1)):
        raise RuntimeError(f"wrong result: {len(values)} values, first {values[:3]}")


async def _time_case(case: str, n: int, reps: int, budget: float) -> dict[str, Any]:
    runner = _runner(case, n)
    items = list(range(n))
    _check(case, n, await runner(items))  # warm-up
    runs: list[float] = []
    cpu: list[float] = []
    started = time.perf_counter()
    while len(runs) < reps and (not runs or time.perf_counter() - started < budget):
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        result = await runner(items)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        _check(case, n, result)
        del result
    return {"run": runs, "cpu": cpu}


async def _memory_case(case: str, n: int) -> dict[str, Any]:
    runner = _runner(case, n)
    _check(case, 100, await runner(list(range(100))))  # warm-up: lazy imports, caches
    items = list(range(n))
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = await runner(items)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _check(case, n, result)
    return {"peak": max(0, peak - base), "kept": max(0, kept - base)}


async def _repeat_case(case: str, n: int, runs: int) -> dict[str, Any]:
    """`runs` runs back to back, untimed (the subject of --instructions)."""
    runner = _runner(case, n)
    items = list(range(n))
    for _ in range(runs):
        _check(case, n, await runner(items))
    return {}


def child(spec: dict[str, Any]) -> None:
    case, n = spec["case"], spec["n"]
    record: dict[str, Any] = {"case": case, "n": n, "kind": spec["kind"]}
    try:
        if spec["kind"] == "repeat":
            record.update(asyncio.run(_repeat_case(case, n, spec["runs"])))
        elif spec["kind"] == "time":
            record.update(asyncio.run(_time_case(case, n, spec["reps"], spec["budget"])))
        else:
            record.update(asyncio.run(_memory_case(case, n)))
    except (ImportError, AttributeError) as exc:
        record["error"] = f"not available: {type(exc).__name__}: {exc}"[:300]
    except Exception as exc:  # a crash or a wrong result is a result
        record["error"] = f"crash: {type(exc).__name__}: {exc}"[:300]
    sys.stdout.write(PREFIX + json.dumps(record) + "\n")


# -- the parent: rounds, figures, report ----------------------------------------------------


@dataclass
class Report:
    mode: Mode
    times: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0

    # -- figures

    def per_item(self, case: str, n: int, cpu: bool = False) -> float | None:
        """Median run time (or CPU time of the process) per item, in microseconds."""
        runs = (self.cpu if cpu else self.times).get((case, n))
        return statistics.median(runs) / n * 1e6 if runs else None

    def ratio(self, case: str, base: str, n: int, cpu: bool = False) -> float | None:
        a, b = self.per_item(case, n, cpu), self.per_item(base, n, cpu)
        return a / b if a is not None and b else None

    def mem_ratio(self, case: str) -> float | None:
        a, b = self.memory.get(case), self.memory.get("list")
        return a["peak"] / b["peak"] if a and b and b["peak"] else None

    def goals(self) -> list[tuple[str, str, str]]:
        """(goal, measured, met / missed / not measured)."""
        limited = self.memory.get("foreach/100")
        unlimited = self.memory.get("foreach")
        over_kept = limited["peak"] / limited["kept"] if limited and limited["kept"] else None
        measured = "not measured"
        if over_kept is not None:
            measured = f"{over_kept:.2f}x"
            if unlimited and unlimited["kept"]:
                measured += f" (no limit: {unlimited['peak'] / unlimited['kept']:.2f}x)"
        over_list = self.mem_ratio("foreach/100")
        n = self.mode.mem_items
        return [
            (
                f"{n:,} items, max_concurrency=100: peak at most {GOAL_BOUNDED:g}x what "
                "the run keeps at its end",
                measured,
                _verdict(over_kept, GOAL_BOUNDED),
            ),
            (
                f"{n:,} items, max_concurrency=100: peak at most {GOAL_RESULTS:g}x a plain "
                "list of the results",
                "not measured" if over_list is None else f"{over_list:.2f}x",
                _verdict(over_list, GOAL_RESULTS),
            ),
        ]

    # -- tables

    def time_rows(self) -> list[list[str]]:
        rows = []
        for n in self.mode.sizes:
            for case in TIME_CASES:
                error = self.errors.get(f"{case}@{n}")
                runs = self.times.get((case, n))
                if error or not runs:
                    rows.append([f"N = {n:,}", case, error or "no samples", *[""] * 6])
                    continue
                base = "semaphore/64" if case.endswith("/64") else "taskgroup"
                foreach = case.startswith("foreach")
                rows.append(
                    [
                        f"N = {n:,}",
                        case,
                        f"{self.per_item(case, n):.2f}",
                        f"{min(runs) / n * 1e6:.2f} - {max(runs) / n * 1e6:.2f}",
                        f"{self.per_item(case, n, cpu=True):.2f}",
                        _ratios(self.ratio(case, base, n), self.ratio(case, base, n, cpu=True)),
                        _ratios(
                            self.ratio(case, "parallel", n) if foreach else None,
                            self.ratio(case, "parallel", n, cpu=True) if foreach else None,
                        ),
                        str(len(runs)),
                    ]
                )
        return rows

    def memory_rows(self) -> list[list[str]]:
        rows = []
        n = self.mode.mem_items
        for case in MEM_CASES:
            error = self.errors.get(f"mem:{case}")
            figures = self.memory.get(case)
            if error or not figures:
                rows.append([case, error or "not measured", "", "", "", ""])
                continue
            rows.append(
                [
                    case,
                    _mib(figures["peak"]),
                    f"{figures['peak'] / n:,.0f}",
                    _ratio(self.mem_ratio(case)),
                    _mib(figures["kept"]),
                    f"{figures['kept'] / n:,.0f}",
                ]
            )
        return rows

    TIME_HEADER = (
        "size",
        "case",
        "us/item",
        "min - max",
        "cpu us/item",
        "x baseline",
        "x parallel",
        "n",
    )
    MEM_HEADER = ("case", "peak", "peak B/item", "x list", "kept", "kept B/item")

    def notes(self) -> list[str]:
        return [
            "us/item: median run time over all rounds / N (min - max: of all runs); cpu: "
            "the same with the CPU time of the process, which waiting for a busy CPU does "
            "not inflate. x baseline: against the hand-written TaskGroup loop (the /64 "
            "cases: TaskGroup + Semaphore(64)); x parallel: foreach against the same body "
            "as a static parallel block; each as wall time (cpu time).",
            f"peak: tracemalloc peak of one run of {self.mode.mem_items:,} items in a fresh "
            "process, above what was live before it (the item list itself is not counted); "
            "kept: still allocated after the run, its result held. Python allocations only.",
        ]

    def text(self) -> str:
        lines = [
            f"foreach at scale, {self.mode.name} mode, {self.mode.rounds} interleaved rounds "
            f"({self.elapsed:.0f} s)",
            "",
            _text_table(self.TIME_HEADER, self.time_rows()),
            "",
            f"Peak memory, {self.mode.mem_items:,} items:",
            _text_table(self.MEM_HEADER, self.memory_rows()),
            "",
            *(f"goal: {g} -> {m}: {v}" for g, m, v in self.goals()),
            *self.notes(),
        ]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [
            "## foreach at scale",
            "",
            f"{self.mode.name} mode, {self.mode.rounds} interleaved rounds, "
            f"{self.elapsed:.0f} s. Time per item:",
            "",
            _md_table(self.TIME_HEADER, self.time_rows()),
            "",
            f"Peak memory of {self.mode.mem_items:,} items:",
            "",
            _md_table(self.MEM_HEADER, self.memory_rows()),
            "",
            _md_table(("goal", "measured", ""), [list(g) for g in self.goals()]),
            "",
            *(line + "\n" for line in self.notes()),
        ]
        return "\n".join(lines)

    def raw(self) -> dict[str, Any]:
        return {
            "mode": self.mode.name,
            "elapsed_s": self.elapsed,
            "times": {f"{case}@{n}": runs for (case, n), runs in self.times.items()},
            "cpu": {f"{case}@{n}": runs for (case, n), runs in self.cpu.items()},
            "memory": self.memory,
            "errors": self.errors,
        }


def _verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value <= goal else "**missed**"


def _ratios(wall: float | None, cpu: float | None) -> str:
    if wall is None or cpu is None:
        return ""
    return f"{_ratio(wall)} ({_ratio(cpu)})"


def _ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}x" if value >= 1 else f"{value:.2f}x"


def _mib(n: float) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"


def _text_table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(header), *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    previous = None
    for row in rows:
        first = row[0] if row[0] != previous else ""
        previous = row[0]
        cells = [first, *row[1:]]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _md_table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    previous = None
    for row in rows:
        first = row[0] if row[0] != previous else ""
        previous = row[0]
        lines.append("| " + " | ".join([first, *row[1:]]) + " |")
    return "\n".join(lines)


def _spawn(python: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPO))
    cmd = [python, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(
            cmd, cwd=BENCH_DIR, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout: over {timeout:g} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(PREFIX):
            record: dict[str, Any] = json.loads(line[len(PREFIX) :])
            return record
    tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
    return {"error": f"crash: exited {proc.returncode}: {tail}"[:300]}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(mode: Mode, python: str | None = None) -> Report:
    """Run the cases of `mode` in child processes on `python` (default: this one)."""
    python = python or sys.executable
    report = Report(mode)
    started = time.perf_counter()
    for round_no in range(mode.rounds):
        t0 = time.perf_counter()
        for n in mode.sizes:
            for case in TIME_CASES:
                key = f"{case}@{n}"
                if key in report.errors:
                    continue
                spec = {
                    "kind": "time",
                    "case": case,
                    "n": n,
                    "reps": mode.reps,
                    "budget": mode.budget,
                }
                record = _spawn(python, spec, mode.timeout)
                if record.get("error"):
                    report.errors[key] = record["error"]
                else:
                    report.times.setdefault((case, n), []).extend(record["run"])
                    report.cpu.setdefault((case, n), []).extend(record["cpu"])
        log(f"[foreach round {round_no + 1}/{mode.rounds}] {time.perf_counter() - t0:6.1f} s")
    t0 = time.perf_counter()
    for case in MEM_CASES:
        record = _spawn(python, {"kind": "memory", "case": case, "n": mode.mem_items}, mode.timeout)
        if record.get("error"):
            report.errors[f"mem:{case}"] = record["error"]
        else:
            report.memory[case] = {"peak": record["peak"], "kept": record["kept"]}
    log(f"[foreach memory] {time.perf_counter() - t0:6.1f} s")
    report.elapsed = time.perf_counter() - started
    return report


def save(report: Report) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    marker = RESULTS / ".gitignore"
    if not marker.exists():
        marker.write_text("*\n")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"foreach-{report.mode.name}-{stamp}.json"
    path.write_text(json.dumps(report.raw(), indent=1))
    return path


# -- profile ----------------------------------------------------------------------------


def profile(n: int) -> None:
    """cProfile of one foreach run of `n` items (after a warm-up), top functions by own time."""
    import cProfile
    import pstats

    runner = _runner("foreach", n)
    items = list(range(n))
    asyncio.run(runner(items))
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    asyncio.run(runner(items))
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)


def instructions(case: str, n: int, runs: int) -> int:
    """CPU instructions (callgrind) of a child that builds the case and runs it `runs` times."""
    spec = json.dumps({"kind": "repeat", "case": case, "n": n, "runs": runs})
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        spec,
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="0")
    proc = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    if '"error"' in proc.stdout:
        raise SystemExit(proc.stdout)
    for line in proc.stderr.splitlines():
        if "Collected" in line:
            return int(line.split()[-1])
    raise RuntimeError(f"no instruction count in callgrind's output:\n{proc.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1,000, 3 rounds (CI)")
    parser.add_argument("--rounds", type=int, default=0, help="override the number of rounds")
    parser.add_argument("--sizes", default="", help="comma list of N for the time cases")
    parser.add_argument("--mem-items", type=int, default=0, help="items of the memory cases")
    parser.add_argument("--out", default="", help="also write the report as markdown here")
    parser.add_argument("--profile", action="store_true", help="cProfile one foreach run")
    parser.add_argument(
        "--instructions", action="store_true", help="CPU instructions per item (valgrind)"
    )
    parser.add_argument("--items", type=int, default=0, help="N of --profile, --instructions")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    if args.profile:
        profile(args.items or 10_000)
        return 0
    if args.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("--instructions needs valgrind")
        n = args.items or 1_000
        for case in TIME_CASES:
            per = (instructions(case, n, 4) - instructions(case, n, 1)) / (3 * n)
            print(f"{case:>12}: {per:,.0f} instructions per item (N = {n:,})", flush=True)
        return 0
    mode = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.rounds:
        overrides["rounds"] = args.rounds
    if args.sizes:
        overrides["sizes"] = tuple(int(s) for s in args.sizes.split(","))
    if args.mem_items:
        overrides["mem_items"] = args.mem_items
    if overrides:
        mode = Mode(**{**mode.__dict__, **overrides})
    report = measure(mode)
    print(report.text())
    print(f"raw results: {save(report).relative_to(REPO)}")
    if args.out:
        Path(args.out).write_text("# foreach benchmark\n\n" + report.markdown())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # --profile imports flowdsl here
    sys.exit(main())
