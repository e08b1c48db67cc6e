"""Durable runs: flowdsl against DBOS Transact, both on SQLite, in interleaved rounds.

    python benchmarks/bench_dbos.py [--quick] [--rounds 5] [--configs flowdsl,dbos-tuned]
                                    [--out report.md]

Also run by ``benchmarks/run.py`` in full mode (``--no-dbos`` skips it), never
in ``--quick``: DBOS is installed with pip, pinned (`DBOS_REQUIREMENT`), into a
throwaway virtual environment, benchmarks/.venvs/dbos, made from the project's
interpreter. When it cannot be made (no package index, say), the report says
"skipped" and why; nothing fails.

Workloads, the same in both (benchmarks/_durable_worker.py; flowdsl's side is
durable_flowdsl.py, DBOS's durable_dbos.py):

1. chain: a 10-step workflow of trivial async steps, one run after another (ms per run);
2. concurrent: 200 such runs at once on one database (runs/s);
3. fan-out: a workflow of 100 trivial steps started together (flowdsl: one
   ``parallel`` block; DBOS: the steps started as tasks, then ``asyncio.gather``);
4. recovery: the process is killed (SIGKILL) during step 6 of a 10-step run;
   the time from starting a new process to that run completing (flowdsl:
   ``aresume_runs``; DBOS: the recovery ``DBOS.launch()`` starts);
5. payload: 10 steps, each returning the same ~100 KB value (800 records; about
   100 KB of JSON), ms per step. flowdsl journals JSON, never pickle.

Configurations (each a process of its own per round, on a fresh database):

* ``flowdsl``: ``SQLiteStore(path)`` as shipped: WAL, ``synchronous=NORMAL``.
  That is also the tuned setting, so it is measured once and compared with both DBOS ones;
* ``flowdsl-full``: ``synchronous="full"`` (an fsync per commit);
* ``dbos-tuned``: WAL and ``synchronous=NORMAL`` on every connection DBOS opens;
* ``dbos-shipped``: DBOS's config of ``name`` and ``system_database_url`` only
  (SQLite's defaults: a rollback journal, ``synchronous=FULL``);
* ``dbos-json``: ``dbos-tuned`` with DBOS's JSON serializer, payload only.

The journal mode and synchronous level in force are read back from the
connections and printed. Medians over all rounds; a ratio is flowdsl's median
over DBOS's, measured in the same rounds. Bytecode is cached for both
(PYTHONPYCACHEPREFIX=benchmarks/.venvs/pycache), so a restart does not
recompile either. The report never fails on a figure.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _durable_worker import CONCURRENT_RUNS, PAYLOAD_STEPS

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENVS = BENCH_DIR / ".venvs"
RESULTS = BENCH_DIR / "results"
WORKER = BENCH_DIR / "_durable_worker.py"
PYCACHE = VENVS / "pycache"
PREFIX = "BENCH "

DBOS_REQUIREMENT = "dbos==3.4.0"
GOAL = 5.0  # flowdsl at least 5x faster than DBOS on every workload (printed, never enforced)

WORKLOADS = ("chain", "concurrent", "fanout", "recovery", "payload")
ALL = ("chain", "fanout", "payload", "concurrent")  # measured in one process, in this order

EnsureVenv = Callable[[str, str, str], tuple[str | None, str]]


@dataclass(frozen=True)
class Config:
    key: str
    impl: str
    setting: str
    label: str
    workloads: tuple[str, ...] = ALL
    recovery: bool = True


CONFIGS = (
    Config("flowdsl", "flowdsl", "normal", "flowdsl, WAL + synchronous=NORMAL (as shipped)"),
    Config("flowdsl-full", "flowdsl", "full", 'flowdsl, WAL + synchronous="full"'),
    Config("dbos-tuned", "dbos", "tuned", "DBOS, WAL + synchronous=NORMAL"),
    Config("dbos-shipped", "dbos", "shipped", "DBOS as shipped (rollback journal, FULL)"),
    Config(
        "dbos-json",
        "dbos",
        "json",
        "DBOS, WAL + synchronous=NORMAL",
        workloads=("payload",),
        recovery=False,
    ),
)
BY_KEY = {c.key: c for c in CONFIGS}

# (label, flowdsl config, DBOS config, workloads compared)
PAIRS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("both WAL + NORMAL", "flowdsl", "dbos-tuned", WORKLOADS),
    ("each as shipped", "flowdsl", "dbos-shipped", WORKLOADS),
    ("both fsync each commit", "flowdsl-full", "dbos-shipped", WORKLOADS),
    ("both WAL + NORMAL, DBOS on JSON", "flowdsl", "dbos-json", ("payload",)),
)


@dataclass(frozen=True)
class Mode:
    name: str
    rounds: int
    plan: dict[str, int]  # timed reps per workload and round (at most)
    budget: float  # seconds of timed reps per workload and round (at least two reps)
    timeout: float  # seconds per child process


FULL = Mode("full", 5, {"chain": 15, "fanout": 5, "payload": 5, "concurrent": 1}, 3.0, 600.0)
QUICK = Mode("quick", 2, {"chain": 5, "fanout": 2, "payload": 2, "concurrent": 1}, 1.0, 300.0)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- results ---------------------------------------------------------------------------


@dataclass
class Report:
    mode: Mode
    configs: tuple[str, ...]
    skipped: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # seconds
    resume: dict[str, list[float]] = field(default_factory=dict)  # recovery, in-process part
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    elapsed: float = 0.0

    def add(self, key: str, workload: str, values: list[float]) -> None:
        self.times.setdefault(key, {}).setdefault(workload, []).extend(values)

    def fail(self, key: str, workload: str, why: str) -> None:
        self.errors.setdefault(key, {}).setdefault(workload, why)

    def median(self, key: str, workload: str) -> float | None:
        values = self.times.get(key, {}).get(workload)
        return statistics.median(values) if values else None

    # -- figures, in the unit of each workload

    @staticmethod
    def figure(workload: str, seconds: float) -> str:
        if workload == "concurrent":
            return f"{CONCURRENT_RUNS / seconds:,.0f} runs/s"
        if workload == "payload":
            return f"{seconds / PAYLOAD_STEPS * 1e3:.2f} ms/step"
        return f"{seconds * 1e3:,.1f} ms" if seconds < 10 else f"{seconds * 1e3:,.0f} ms"

    def cell(self, key: str, workload: str) -> str:
        error = self.errors.get(key, {}).get(workload)
        if error:
            return error
        med = self.median(key, workload)
        return "not run" if med is None else self.figure(workload, med)

    def ratio(self, flowdsl: str, dbos: str, workload: str) -> float | None:
        a, b = self.median(flowdsl, workload), self.median(dbos, workload)
        return a / b if a is not None and b else None

    # -- tables

    HEADER = ("workload", "setting", "flowdsl", "DBOS", "flowdsl / DBOS", f"goal {GOAL:g}x faster")

    def rows(self) -> list[list[str]]:
        rows = []
        for workload in WORKLOADS:
            for label, flowdsl, dbos, workloads in PAIRS:
                if workload not in workloads:
                    continue
                if flowdsl not in self.configs or dbos not in self.configs:
                    continue
                ratio = self.ratio(flowdsl, dbos, workload)
                verdict = ""
                if ratio is not None:
                    verdict = (
                        f"met ({1 / ratio:.1f}x)"
                        if ratio <= 1 / GOAL
                        else (f"**missed** ({1 / ratio:.1f}x)")
                    )
                rows.append(
                    [
                        WORKLOAD_LABELS[workload],
                        label,
                        self.cell(flowdsl, workload),
                        self.cell(dbos, workload),
                        _ratio(ratio),
                        verdict,
                    ]
                )
        return rows

    DETAIL_HEADER = ("workload", "config", "median", "mean", "min", "max", "n", "note")

    def detail_rows(self) -> list[list[str]]:
        rows = []
        for workload in WORKLOADS:
            for key in self.configs:
                config = BY_KEY[key]
                if workload not in (*config.workloads, "recovery" if config.recovery else ""):
                    continue
                values = self.times.get(key, {}).get(workload, [])
                error = self.errors.get(key, {}).get(workload)
                if error or not values:
                    rows.append(
                        [WORKLOAD_LABELS[workload], key, error or "no samples", "", "", "", "", ""]
                    )
                    continue
                note = ""
                if workload == "recovery" and self.resume.get(key):
                    inside = statistics.median(self.resume[key])
                    note = (
                        f"in-process {inside * 1e3:,.0f} ms (open + resume); the rest is "
                        "interpreter start and imports"
                    )
                # min and max of the figure: for runs/s the slowest batch gives the min
                low, high = min(values), max(values)
                if workload == "concurrent":
                    low, high = high, low
                rows.append(
                    [
                        WORKLOAD_LABELS[workload],
                        key,
                        self.figure(workload, statistics.median(values)),
                        self.figure(workload, statistics.fmean(values)),
                        self.figure(workload, low),
                        self.figure(workload, high),
                        str(len(values)),
                        note,
                    ]
                )
        return rows

    SETTINGS_HEADER = ("config", "what", "journal_mode", "synchronous", "version")

    def settings_rows(self) -> list[list[str]]:
        rows = []
        for key in self.configs:
            seen = self.settings.get(key, {})
            what = BY_KEY[key].label
            if seen.get("serializer"):
                what += f"; serializer: {seen['serializer']}"
            rows.append(
                [
                    key,
                    what,
                    seen.get("journal_mode", "?"),
                    seen.get("synchronous", "?"),
                    self.versions.get(key, "?"),
                ]
            )
        return rows

    def rounds_text(self) -> str:
        n = self.mode.rounds
        return "1 round" if n == 1 else f"{n} interleaved rounds"

    def notes(self) -> list[str]:
        return [
            f"Medians over {self.rounds_text()}; flowdsl / DBOS is the ratio "
            "of the medians (of time: for runs/s, the inverse), below 1 when flowdsl is faster; "
            f"the goal column gives how many times faster flowdsl is (goal: {GOAL:g}x).",
            "mean: over the same samples. A run that waited for a checkpoint of SQLite's log "
            "(about 7-12 ms per 1,000 pages written, for flowdsl here) or for a full garbage "
            "collection counts in the mean; a median leaves out the few runs that did.",
            "recovery: from starting the new process to the killed run completing, "
            "interpreter start and imports included (both from cached bytecode); DBOS's "
            "recovered run is waited for by polling its status every 2 ms.",
        ]

    def text(self) -> str:
        if self.skipped:
            return f"Durable runs against DBOS: skipped: {self.skipped}"
        return "\n".join(
            [
                f"Durable runs against DBOS, {self.mode.name} mode, {self.rounds_text()} "
                f"({self.elapsed:.0f} s)",
                "",
                _text_table(self.HEADER, self.rows()),
                "",
                _text_table(self.DETAIL_HEADER, self.detail_rows()),
                "",
                _text_table(self.SETTINGS_HEADER, self.settings_rows()),
                "",
                *self.notes(),
            ]
        )

    def markdown(self) -> str:
        if self.skipped:
            return f"## Durable runs against DBOS\n\nskipped: {self.skipped}\n"
        return "\n".join(
            [
                "## Durable runs against DBOS",
                "",
                f"{self.mode.name} mode, {self.rounds_text()}, "
                f"{self.elapsed:.0f} s (`benchmarks/bench_dbos.py`).",
                "",
                _md_table(self.HEADER, self.rows()),
                "",
                _md_table(self.DETAIL_HEADER, self.detail_rows()),
                "",
                _md_table(self.SETTINGS_HEADER, self.settings_rows()),
                "",
                *(line + "\n" for line in self.notes()),
            ]
        )

    def raw(self) -> dict[str, Any]:
        return {
            "mode": self.mode.name,
            "rounds": self.mode.rounds,
            "skipped": self.skipped,
            "elapsed_s": self.elapsed,
            "versions": self.versions,
            "settings": self.settings,
            "times": self.times,
            "resume": self.resume,
            "errors": self.errors,
        }


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    if ratio < 0.01:
        return f"{ratio:.3f}x"
    return f"{ratio:.2f}x" if ratio < 1 else f"{ratio:.1f}x"


WORKLOAD_LABELS = {
    "chain": "10-step chain, per run",
    "concurrent": "200 concurrent 10-step runs",
    "fanout": "100-way fan-out, per run",
    "recovery": "recovery after SIGKILL",
    "payload": "100 KB step payload, per step",
}


def _text_table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(header), *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
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


# -- child processes -------------------------------------------------------------------


def child_env(impl: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # Both sides import from cached bytecode (DBOS's wheel is compiled at install; the
    # repository's flowdsl would otherwise be compiled by every process it starts).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if impl == "flowdsl":
        env["PYTHONPATH"] = str(REPO)
    return env


class Child:
    """A worker process whose stdout lines arrive on a queue (read by a thread)."""

    def __init__(self, python: str, args: list[str], impl: str) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [python, str(WORKER), *args],
            cwd=BENCH_DIR,
            env=child_env(impl),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            del self.stderr[:-20]  # the tail is what an error report needs

    def until(self, marker: str | None, deadline: float, records: list[dict[str, Any]]) -> bool:
        """Collect BENCH records until the line `marker` (or the end); False on the deadline."""
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                return False
            if line is None:
                return marker is None
            if line.startswith(PREFIX):
                records.append(json.loads(line[len(PREFIX) :]))
            elif marker is not None and line == marker:
                return True

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def close(self) -> int:
        self.kill()
        code = self.proc.wait()
        for thread in self.threads:
            thread.join()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def why(self, what: str) -> str:
        tail = " | ".join(line for line in self.stderr[-3:] if line.strip())
        return f"{what}: {tail}"[:300] if tail else what


def run_measure(report: Report, config: Config, python: str, folder: Path, mode: Mode) -> None:
    plan = {**mode.plan, "budget": mode.budget, "workloads": list(config.workloads)}
    args = ["--impl", config.impl, "--setting", config.setting]
    args += ["--db", str(folder / "measure.db"), "--phase", "measure", "--plan", json.dumps(plan)]
    child = Child(python, args, config.impl)
    records: list[dict[str, Any]] = []
    try:
        finished = child.until(None, time.perf_counter() + mode.timeout, records)
    finally:
        code = child.close()
    seen = set()
    for record in records:
        if record["type"] == "meta":
            report.versions[config.key] = record["version"]
            report.settings[config.key] = record["settings"]
        elif record["type"] == "case":
            seen.add(record["workload"])
            if record.get("error"):
                report.fail(config.key, record["workload"], f"error: {record['error']}")
            else:
                report.add(config.key, record["workload"], record["times"])
    if not finished or code != 0:
        why = child.why(f"timeout: over {mode.timeout:g} s" if not finished else f"exit {code}")
        for workload in config.workloads:
            if workload not in seen:
                report.fail(config.key, workload, why)


def run_recovery(report: Report, config: Config, python: str, folder: Path, mode: Mode) -> None:
    db, steps = folder / "recover.db", folder / "steps.log"
    args = ["--impl", config.impl, "--setting", config.setting, "--db", str(db)]
    args += ["--log", str(steps)]
    crashed = Child(python, [*args, "--phase", "crash"], config.impl)
    try:
        ready = crashed.until("READY", time.perf_counter() + mode.timeout, [])
    finally:
        crashed.close()  # SIGKILL: the run is mid-step
    if not ready:
        report.fail(config.key, "recovery", crashed.why("the crash phase never reached READY"))
        return
    started = time.perf_counter()
    restarted = Child(python, [*args, "--phase", "recover"], config.impl)
    records: list[dict[str, Any]] = []
    try:
        done = restarted.until("DONE", started + mode.timeout, records)
        elapsed = time.perf_counter() - started
        finished = restarted.until(None, time.perf_counter() + 60.0, records)
    finally:
        code = restarted.close()
    if not done or not finished or code != 0:
        report.fail(config.key, "recovery", restarted.why(f"recovery failed (exit {code})"))
        return
    report.add(config.key, "recovery", [elapsed])
    report.resume.setdefault(config.key, []).extend(
        r["resume"] for r in records if r["type"] == "recovered"
    )


def warm(python: str, impl: str) -> str | None:
    """Import the implementation once (fills the bytecode cache); None, or why it cannot run."""
    proc = subprocess.run(
        [python, "-c", f"import durable_{impl}"],
        cwd=BENCH_DIR,
        env=child_env(impl),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode == 0:
        return None
    tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
    return f"cannot import durable_{impl}: {tail}"[:300]


def measure(
    mode: Mode,
    base_python: str,
    ensure_venv: EnsureVenv,
    configs: tuple[str, ...] = tuple(BY_KEY),
) -> Report:
    """Make DBOS's venv (or say why not), then run the configs' interleaved rounds."""
    report = Report(mode=mode, configs=configs)
    started = time.perf_counter()
    dbos_python, message = ensure_venv("dbos", DBOS_REQUIREMENT, base_python)
    if dbos_python is None:
        report.skipped = f"the DBOS environment could not be made ({message})"
        return report
    pythons = {"flowdsl": base_python, "dbos": dbos_python}
    PYCACHE.mkdir(parents=True, exist_ok=True)
    marker = VENVS / ".gitignore"  # as run.py keeps it: nothing in there is the project's
    if not marker.exists():
        marker.write_text("*\n")
    for impl in sorted({BY_KEY[key].impl for key in configs}):
        why = warm(pythons[impl], impl)
        if why is not None:
            report.skipped = why
            return report
    with tempfile.TemporaryDirectory(prefix="bench-dbos-") as tmp:
        for round_no in range(mode.rounds):
            order = configs if round_no % 2 == 0 else tuple(reversed(configs))
            for key in order:
                config = BY_KEY[key]
                if report.errors.get(key):  # a config that failed is not run again
                    continue
                t0 = time.perf_counter()
                folder = Path(tmp) / f"{key}-{round_no}"
                folder.mkdir()
                run_measure(report, config, pythons[config.impl], folder, mode)
                if config.recovery:
                    run_recovery(report, config, pythons[config.impl], folder, mode)
                status = "ok" if not report.errors.get(key) else "error"
                log(
                    f"[dbos round {round_no + 1}/{mode.rounds}] {key:<13} "
                    f"{time.perf_counter() - t0:6.1f} s  {status}"
                )
    report.elapsed = time.perf_counter() - started
    return report


def save(report: Report) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    marker = RESULTS / ".gitignore"
    if not marker.exists():
        marker.write_text("*\n")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"dbos-{report.mode.name}-{stamp}.json"
    path.write_text(json.dumps(report.raw(), indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, fewer reps")
    parser.add_argument("--rounds", type=int, default=0, help="override the number of rounds")
    parser.add_argument(
        "--configs", default="", help=f"comma list among {','.join(BY_KEY)} (default: all)"
    )
    parser.add_argument("--out", default="", help="also write the report as markdown here")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    if args.rounds:
        mode = Mode(**{**mode.__dict__, "rounds": args.rounds})
    configs = tuple(filter(None, args.configs.split(","))) or tuple(BY_KEY)
    unknown = set(configs) - set(BY_KEY)
    if unknown:
        parser.error(f"unknown config(s) {', '.join(sorted(unknown))}; known: {', '.join(BY_KEY)}")
    from run import ensure_peer_venv, project_python  # run.py imports this module: not at the top

    report = measure(mode, project_python(), ensure_peer_venv, configs)
    print(report.text())
    print(f"raw results: {save(report).relative_to(REPO)}")
    if args.out:
        Path(args.out).write_text("# Durable runs against DBOS\n\n" + report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
