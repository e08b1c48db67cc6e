"""Run the flowdsl benchmarks (issue 7) and print the comparison table.

    python benchmarks/run.py [--quick] [--only NAME,...] [--out docs/performance.md]

Implementations: taskgroup and plain (hand-written asyncio baselines), flowdsl
(this repository), and the peers grafo and stageflow-core, which this script
installs, pinned, into throwaway virtual environments under benchmarks/.venvs/
(never a dependency of flowdsl). Every implementation runs in its own process
(benchmarks/_harness.py), in interleaved rounds, all on the same CPython.
After them, when flowdsl is selected, the foreach benchmark (issue 15,
benchmarks/bench_foreach.py) runs its own cases and prints its tables, and in
full mode the durable runs against DBOS (benchmarks/bench_dbos.py) and the
workers on SQLite and PostgreSQL (benchmarks/bench_workers.py) follow.
See benchmarks/README.md for what is measured and how to read the table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_dbos
import bench_foreach
import bench_workers

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
HARNESS = BENCH_DIR / "_harness.py"
VENVS = BENCH_DIR / ".venvs"
RESULTS = BENCH_DIR / "results"

ORDER = ("taskgroup", "plain", "flowdsl", "grafo", "stageflow")
PEERS = {"grafo": "grafo==0.3.6", "stageflow": "stageflow-core==1.2.0"}
BASELINE = "taskgroup"
SLEEP_DELAY = 0.05


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: tuple[int, ...]
    rounds: int
    reps: int  # timed reps per case per round (at most)
    budget: float  # seconds of timed reps per case per round (at least one rep)
    case_timeout: float
    round_timeout: float
    huge_chain: int | None  # the no-recursion chain, flowdsl (+ baselines) only


QUICK = Mode("quick", (100, 1000), 3, 3, 0.3, 20.0, 240.0, None)
FULL = Mode("full", (100, 1_000, 10_000), 5, 5, 2.0, 180.0, 1800.0, 100_000)


# -- cases ----------------------------------------------------------------------


def cases_for(mode: Mode, impl: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for n in mode.sizes:
        cases.append({"id": f"W1/{n}", "workload": "fanout", "n": n})
    # The same, as a compiled workflow is used: built once, run again and again, with
    # no forced collection between runs (so the collector's cost is amortized).
    largest = max(mode.sizes)
    cases.append({"id": f"W1s/{largest}", "workload": "fanout", "n": largest, "steady": True})
    for n in mode.sizes:
        cases.append({"id": f"W2/{n}", "workload": "chain", "n": n})
    if mode.huge_chain and impl in ("flowdsl", "taskgroup", "plain"):
        n = mode.huge_chain
        cases.append({"id": f"W2/{n}", "workload": "chain", "n": n})
    cases.append({"id": "W3", "workload": "sleep", "n": 50, "delay": SLEEP_DELAY})
    cases.append({"id": "W4", "workload": "layers", "layers": 10, "width": 100})
    cases.append({"id": "W5", "workload": "compile", "n": 10_000})
    return cases


def case_label(case: dict[str, Any]) -> str:
    kind = case["workload"]
    if kind == "fanout":
        steady = ", steady state" if case.get("steady") else ""
        return f"W1 fan-out 1->{case['n']:,}->1{steady}"
    if kind == "chain":
        return f"W2 chain of {case['n']:,} steps"
    if kind == "sleep":
        return f"W3 {case['n']} branches x sleep({case['delay'] * 1000:g} ms): ms over ideal"
    if kind == "layers":
        return f"W4 layered DAG {case['layers']} x {case['width']}"
    return f"W5 build/compile of a {case['n']:,}-step chain"


# -- environments ------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def project_python() -> str:
    venv_python = REPO / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def _ignore_dir(path: Path) -> None:
    """Keep a generated folder out of git and linters, whatever .gitignore says."""
    path.mkdir(parents=True, exist_ok=True)
    marker = path / ".gitignore"
    if not marker.exists():
        marker.write_text("*\n")


def ensure_peer_venv(name: str, requirement: str, base_python: str) -> tuple[str | None, str]:
    """Create benchmarks/.venvs/NAME with REQUIREMENT; returns (python, message)."""
    _ignore_dir(VENVS)
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirement"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == requirement:
        return str(python), "cached"
    if venv.exists():
        shutil.rmtree(venv)
    log(f"[setup] creating {venv.relative_to(REPO)} with {requirement} ...")
    steps = [
        [base_python, "-m", "venv", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            return None, f"setup timed out: {' '.join(cmd[:4])}"
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, f"setup failed ({' '.join(cmd[1:4])}): {' | '.join(tail)}"
    stamp.write_text(requirement + "\n")
    return str(python), "installed"


# -- results -----------------------------------------------------------------


@dataclass
class CaseResult:
    case: dict[str, Any]
    run: list[float] = field(default_factory=list)
    build: list[float] = field(default_factory=list)
    nodes: int = 0
    mem_peak: int | None = None
    error: str | None = None
    build_only: bool = False


@dataclass
class ImplResult:
    name: str
    python: str
    available: bool = True
    reason: str = ""
    version: str = ""
    cases: dict[str, CaseResult] = field(default_factory=dict)


def run_round(impl: ImplResult, cases: list[dict[str, Any]], mode: Mode, first: bool) -> None:
    cmd = [
        impl.python,
        str(HARNESS),
        "--impl",
        impl.name,
        "--cases",
        json.dumps(cases),
        "--reps",
        str(mode.reps),
        "--budget",
        str(mode.budget),
        "--case-timeout",
        str(mode.case_timeout),
    ]
    if first:
        cmd.append("--mem")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    if impl.name == "flowdsl":
        env["PYTHONPATH"] = str(REPO)
    timed_out = False
    try:
        proc = subprocess.run(
            cmd,
            cwd=BENCH_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=mode.round_timeout,
            check=False,
        )
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except OSError as exc:
        impl.available = False
        impl.reason = f"cannot start {impl.python}: {exc}"
        return
    except subprocess.TimeoutExpired as exc:
        timed_out = True
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        rc = -1

    seen: set[str] = set()
    for line in stdout.splitlines():
        if not line.startswith("BENCH "):
            continue
        record = json.loads(line[len("BENCH ") :])
        if record["type"] == "unavailable":
            impl.available = False
            impl.reason = record["reason"]
            return
        if record["type"] == "meta":
            impl.version = record["version"]
            continue
        seen.add(record["id"])
        result = impl.cases[record["id"]]
        if record.get("error"):
            result.error = record["error"]
            continue
        result.nodes = record["nodes"]
        result.build += record["build"]
        if record["run"] is None:
            result.build_only = True
        else:
            result.run += record["run"]
        if record.get("mem_peak") is not None:
            result.mem_peak = record["mem_peak"]

    missing = [c["id"] for c in cases if c["id"] not in seen]
    if missing:
        if timed_out:
            why = f"timeout: round over {mode.round_timeout:g} s"
        else:
            tail = " | ".join(stderr.strip().splitlines()[-2:])
            why = f"crash: worker exited {rc}: {tail}"[:300]
        if not seen and not impl.version:
            impl.available = False
            impl.reason = why
            return
        for case_id in missing:
            impl.cases[case_id].error = why


# -- table -------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def fmt_bytes(n: float) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n:.0f} B"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"


def short_error(error: str) -> str:
    """'crash: RecursionError: maximum ...' -> 'crash: RecursionError'."""
    return ": ".join(error.split(": ")[:2])


def _median(values: list[float]) -> float:
    return statistics.median(values)


def detail_rows(impls: list[ImplResult], all_cases: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for case in all_cases:
        cid = case["id"]
        base = next((i.cases.get(cid) for i in impls if i.name == BASELINE), None)
        base_med = _median(base.run) if base and base.run else None
        for impl in impls:
            result = impl.cases.get(cid)
            if result is None:
                continue
            label = case_label(case)
            if not impl.available:
                rows.append([label, impl.name, "not available", "", "", "", "", "", "", ""])
                continue
            if result.error:
                rows.append([label, impl.name, result.error, "", "", "", "", "", "", ""])
                continue
            if not result.build:
                continue
            build = fmt_time(_median(result.build))
            mem = fmt_bytes(result.mem_peak / result.nodes) if result.mem_peak is not None else ""
            n_samples = str(len(result.build))
            if result.build_only:
                samples = result.build
                rows.append(
                    [
                        label,
                        impl.name,
                        fmt_time(_median(samples)),
                        fmt_time(min(samples)),
                        fmt_time(max(samples)),
                        "",
                        f"{_median(samples) / result.nodes * 1e6:.1f}",
                        build,
                        mem,
                        n_samples,
                    ]
                )
                continue
            med = _median(result.run)
            if case["workload"] == "sleep":
                delay = case["delay"]
                over = [(x - delay) * 1e3 for x in result.run]
                rows.append(
                    [
                        label,
                        impl.name,
                        f"+{_median(over):.2f} ms",
                        f"+{min(over):.2f} ms",
                        f"+{max(over):.2f} ms",
                        "",
                        "",
                        build,
                        mem,
                        n_samples,
                    ]
                )
                continue
            ratio = fmt_ratio(med / base_med) if base_med else ""
            rows.append(
                [
                    label,
                    impl.name,
                    fmt_time(med),
                    fmt_time(min(result.run)),
                    fmt_time(max(result.run)),
                    ratio,
                    f"{med / result.nodes * 1e6:.2f}",
                    build,
                    mem,
                    n_samples,
                ]
            )
    return rows


DETAIL_HEADER = [
    "workload",
    "impl",
    "run median",
    "min",
    "max",
    "x TaskGroup",
    "us/node",
    "build",
    "peak mem/node",
    "n",
]


def summary_rows(impls: list[ImplResult], all_cases: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for case in all_cases:
        cid = case["id"]
        base = next((i.cases.get(cid) for i in impls if i.name == BASELINE), None)
        base_med = _median(base.run) if base and base.run else None
        row = [case_label(case)]
        for impl in impls:
            result = impl.cases.get(cid)
            if not impl.available:
                row.append("not available")
            elif result is None:
                row.append("not run")
            elif result.error:
                row.append(short_error(result.error))
            elif result.build_only:
                row.append(fmt_time(_median(result.build)))
            elif not result.run:
                row.append("-")
            elif case["workload"] == "sleep":
                row.append(f"+{(_median(result.run) - case['delay']) * 1e3:.2f} ms")
            else:
                med = _median(result.run)
                us = med / result.nodes * 1e6
                ratio = fmt_ratio(med / base_med) if base_med else "?"
                row.append(f"{ratio} ({us:.2f} us)")
        rows.append(row)
    return rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    previous = None
    for row in rows:
        first = row[0] if row[0] != previous else ""
        previous = row[0]
        cells = [first, *row[1:]]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    previous = None
    for row in rows:
        first = row[0] if row[0] != previous else ""
        previous = row[0]
        lines.append("| " + " | ".join([first, *row[1:]]) + " |")
    return "\n".join(lines)


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_implementation() + " " + platform.python_version(),
    }


MEMORY_NOTE = (
    "peak mem/node: tracemalloc peak of one extra, untimed build + run (first round), "
    "above what was live before it, divided by the node count; Python allocations "
    "only (not C/Rust extension buffers)."
)
READING_NOTE = (
    "x TaskGroup: median run time / median run time of hand-written asyncio.TaskGroup "
    "on the same workload (W2's TaskGroup baseline awaits one task per step; plain "
    "awaits none). us/node: median run / nodes. W3 shows time over the ideal 50 ms. "
    "W5 shows build time only (define + compile / graph construction)."
)


# -- main ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="flowdsl benchmarks (issue 7)")
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds (CI)")
    parser.add_argument("--only", default="", help=f"comma list among {','.join(ORDER)}")
    parser.add_argument("--out", default="", help="also write a markdown report to this path")
    parser.add_argument("--rounds", type=int, default=0, help="override the number of rounds")
    parser.add_argument(
        "--no-foreach", action="store_true", help="skip the foreach benchmark (bench_foreach.py)"
    )
    parser.add_argument(
        "--no-workers",
        action="store_true",
        help="skip workers on SQLite and PostgreSQL (bench_workers.py; full mode only)",
    )
    parser.add_argument(
        "--no-dbos",
        action="store_true",
        help="skip the durable runs against DBOS (bench_dbos.py; full mode only)",
    )
    args = parser.parse_args(argv)

    mode = QUICK if args.quick else FULL
    if args.rounds:
        mode = Mode(**{**mode.__dict__, "rounds": args.rounds})
    selected = [n for n in ORDER if not args.only or n in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(ORDER)
    if unknown:
        parser.error(f"unknown implementation(s): {', '.join(sorted(unknown))}")

    started = time.perf_counter()
    base_python = project_python()
    impls: list[ImplResult] = []
    for name in selected:
        impl = ImplResult(name=name, python=base_python)
        if name in PEERS:
            python, message = ensure_peer_venv(name, PEERS[name], base_python)
            if python is None:
                impl.available = False
                impl.reason = message
            else:
                impl.python = python
        for case in cases_for(mode, name):
            impl.cases[case["id"]] = CaseResult(case=case)
        impls.append(impl)

    for round_no in range(mode.rounds):
        for impl in impls:
            if not impl.available:
                continue
            todo = [r.case for r in impl.cases.values() if r.error is None]
            if not todo:
                continue
            t0 = time.perf_counter()
            run_round(impl, todo, mode, first=round_no == 0)
            status = "ok" if impl.available else f"not available ({impl.reason})"
            log(
                f"[round {round_no + 1}/{mode.rounds}] {impl.name:<10} "
                f"{time.perf_counter() - t0:6.1f} s  {status}"
            )

    foreach: bench_foreach.Report | None = None
    flowdsl_impl = next((i for i in impls if i.name == "flowdsl"), None)
    if flowdsl_impl is not None and flowdsl_impl.available and not args.no_foreach:
        foreach_mode = bench_foreach.QUICK if args.quick else bench_foreach.FULL
        if args.rounds:
            foreach_mode = bench_foreach.Mode(**{**foreach_mode.__dict__, "rounds": args.rounds})
        foreach = bench_foreach.measure(foreach_mode, base_python)

    # Not in --quick: it installs DBOS with pip and takes minutes. A venv that cannot be
    # made is reported as skipped, never as a failure.
    dbos: bench_dbos.Report | None = None
    if flowdsl_impl is not None and flowdsl_impl.available and not args.quick and not args.no_dbos:
        dbos_mode = bench_dbos.FULL
        if args.rounds:
            dbos_mode = bench_dbos.Mode(**{**dbos_mode.__dict__, "rounds": args.rounds})
        dbos = bench_dbos.measure(dbos_mode, base_python, ensure_peer_venv)

    # Not in --quick either: real worker processes, and a PostgreSQL server (found or started).
    workers: bench_workers.Report | None = None
    if (
        flowdsl_impl is not None
        and flowdsl_impl.available
        and not args.quick
        and not args.no_workers
    ):
        log("[workers] SQLite and PostgreSQL ...")
        workers = bench_workers.measure(base_python)

    elapsed = time.perf_counter() - started
    all_cases: list[dict[str, Any]] = []
    for impl in impls:
        for result in impl.cases.values():
            if result.case["id"] not in {c["id"] for c in all_cases}:
                all_cases.append(result.case)
    all_cases.sort(
        key=lambda c: (c["id"].split("/")[0].rstrip("s"), c.get("steady", False), c.get("n", 0))
    )

    info = machine_info()
    versions = {i.name: (i.version if i.available else f"not available: {i.reason}") for i in impls}
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = summary_rows(impls, all_cases)
    details = detail_rows(impls, all_cases)
    summary_header = ["workload", *(i.name for i in impls)]

    print()
    print(f"flowdsl benchmarks, {mode.name} mode, {mode.rounds} interleaved rounds")
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['platform']}, {info['python']}")
    for name, ver in versions.items():
        print(f"  {name:<10} {ver}")
    print()
    print("Run time as a multiple of TaskGroup (us per node):")
    print(text_table(summary_header, summary))
    print()
    print(text_table(DETAIL_HEADER, details))
    print()
    print(READING_NOTE)
    print(MEMORY_NOTE)
    if foreach is not None:
        print()
        print(foreach.text())
    if dbos is not None:
        print()
        print(dbos.text())
    if workers is not None:
        print()
        print(workers.text())
    print(f"total {elapsed:.0f} s")

    _ignore_dir(RESULTS)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw = {
        "mode": mode.name,
        "command": command,
        "machine": info,
        "versions": versions,
        "elapsed_s": elapsed,
        "results": {
            i.name: {
                cid: {
                    "run": r.run,
                    "build": r.build,
                    "nodes": r.nodes,
                    "mem_peak": r.mem_peak,
                    "error": r.error,
                }
                for cid, r in i.cases.items()
            }
            for i in impls
        },
        "foreach": foreach.raw() if foreach is not None else None,
        "dbos": dbos.raw() if dbos is not None else None,
        "workers": workers.raw() if workers is not None else None,
    }
    raw_path = RESULTS / f"bench-{mode.name}-{stamp}.json"
    raw_path.write_text(json.dumps(raw, indent=1))
    (RESULTS / f"latest-{mode.name}.json").write_text(json.dumps(raw, indent=1))
    print(f"raw results: {raw_path.relative_to(REPO)}")

    if args.out:
        out = Path(args.out)
        lines = [
            "# Benchmark report",
            "",
            f"Generated by `{command.strip()}` (`make bench`) on {_dt.date.today().isoformat()} "
            f"({mode.name} mode, {mode.rounds} interleaved rounds, {elapsed:.0f} s); "
            f"read it with [performance.md](performance.md).",
            "",
            f"Machine: {info['cpu']}, {info['cores']} cores, {info['platform']}, {info['python']}.",
            "",
            *(f"- {name}: {ver}" for name, ver in versions.items()),
            "",
            "## Run time as a multiple of TaskGroup (us per node)",
            "",
            md_table(summary_header, summary),
            "",
            "## Details",
            "",
            md_table(DETAIL_HEADER, details),
            "",
            READING_NOTE,
            "",
            MEMORY_NOTE,
            "",
        ]
        if foreach is not None:
            lines += [foreach.markdown(), ""]
        if dbos is not None:
            lines += [dbos.markdown(), ""]
        if workers is not None:
            lines += [workers.markdown(), ""]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines))
        print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
