"""Workers: throughput through 1, 2 and 4 worker processes, and dispatch latency.

    python benchmarks/bench_workers.py [--store URL] [--runs 400] [--workers 1,2,4]
                                       [--latency-samples 50] [--json]

``make bench`` runs it on SQLite and on PostgreSQL (`measure`; the server
the test suite uses, from ``tests/pgserver.py``, or ``FLOWDSL_TEST_POSTGRES``)
and puts both in docs/benchmark-report.md; where no PostgreSQL can be had,
the report says so.

Each worker is a real process (``flowdsl worker``-style, running `Worker`)
serving one store; the default store is a SQLite file in a temporary
folder, and ``--store postgresql://...`` measures PostgreSQL.

* **throughput**: `--runs` runs of a 10-step workflow are queued, then N
  workers (concurrency 10 each) are started; runs per second is the number
  of runs over the time from the first step started to the last step ended
  (the workers' start-up is not counted).
* **dispatch latency**: with one idle worker running, a run is queued, and
  the latency is the time from the run's recorded start (just before its
  enqueue commits) to its first step starting (both ``time.time()`` on this
  one host); `--latency-samples` runs, one at a time; p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FLOWS = Path(__file__).resolve().with_name("worker_flows.py")


def start_workers(store: str, count: int, marks: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_MARKS": str(marks)}
    code = (
        f"import sys; sys.path.insert(0, {str(FLOWS.parent)!r}); import worker_flows; "
        f"from flowdsl import Worker; Worker({store!r}, concurrency=10, poll=0.2).run()"
    )
    return [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO) for _ in range(count)]


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=60)


def queue_runs(store: str, prefix: str, count: int, workflow: str) -> None:
    sys.path.insert(0, str(FLOWS.parent))
    import worker_flows  # noqa: F401 - registers the workflows

    from flowdsl import start_workflow

    for i in range(count):
        start_workflow(workflow, {"i": i}, store=store, run_id=f"{prefix}-{i}")


def wait_done(store: str, prefix: str, count: int, timeout: float = 600) -> float:
    """Seconds from the first step started to the last step ended, once all runs completed."""
    from flowdsl.stores import open_store

    opened, owned = open_store(store)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [
                r for r in opened.list_runs(status="completed") if r.run_id.startswith(prefix + "-")
            ]
            if len(done) >= count:
                first = min(r.steps[0].started for r in done)
                last = max(r.steps[-1].started + r.steps[-1].duration for r in done)
                return last - first
            time.sleep(0.02)
    finally:
        if owned:
            opened.close()
    raise SystemExit(f"timed out waiting for {count} runs of {prefix}")


def throughput(store: str, runs: int, workers: int, marks: Path) -> float:
    """Runs per second once the workers are running (their start-up is not counted)."""
    prefix = f"t{workers}-{time.time_ns()}"
    queue_runs(store, prefix, runs, "ten_steps")
    procs = start_workers(store, workers, marks)
    try:
        took = wait_done(store, prefix, runs)
    finally:
        stop(procs)
    return runs / took


def latency(store: str, samples: int, marks: Path) -> tuple[float, float]:
    """p50 and p99 of enqueue (the run's start time as recorded) to first step started."""
    sys.path.insert(0, str(FLOWS.parent))
    import worker_flows  # noqa: F401 - registers the workflows

    from flowdsl import start_workflow
    from flowdsl.stores import open_store

    opened, owned = open_store(store)
    procs = start_workers(store, 1, marks)
    try:
        start_workflow("marked", {"mark": "warm-up"}, store=opened, run_id=f"warm-{time.time_ns()}")
        wait_mark(marks / "warm-up", 60)  # the worker is up; from here it is idle between runs
        found: list[float] = []
        for n in range(samples):
            run_id = f"lat-{time.time_ns()}-{n}"
            start_workflow("marked", {"mark": run_id}, store=opened, run_id=run_id)
            started = wait_mark(marks / run_id, 30)
            recorded = opened.get_run(run_id)
            assert recorded is not None
            found.append(started - recorded.started)
            time.sleep(0.01 + (n % 7) * 0.007)  # land at different points of a poll
    finally:
        stop(procs)
        if owned:
            opened.close()
    found.sort()
    return statistics.median(found), found[min(len(found) - 1, int(len(found) * 0.99))]


def wait_mark(mark: Path, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not mark.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no worker started {mark.name}")
        time.sleep(0.0005)
    return float(mark.read_text())


# -- the report (make bench) ---------------------------------------------------------------

WORKERS = (1, 2, 4)
STORES = ("sqlite", "postgresql")


@dataclass
class Report:
    """Each store's figures (as ``--json`` prints them), or why it was not measured."""

    runs: int
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    HEADER = ("10-step runs through workers (concurrency 10 each)", *STORES)

    def rows(self) -> list[list[str]]:
        def rate(store: str, count: int) -> str:
            figures = self.figures.get(store)
            if figures is None:
                return "not measured"
            return f"{figures[f'runs_per_s_{count}_workers']:,.0f} runs/s"

        def dispatch(store: str) -> str:
            figures = self.figures.get(store)
            if figures is None:
                return "not measured"
            return f"{figures['dispatch_p50_ms']:.1f} / {figures['dispatch_p99_ms']:.1f} ms"

        rows = [
            [f"{count} worker{'s' if count > 1 else ''}", *(rate(s, count) for s in STORES)]
            for count in WORKERS
        ]
        latency = "dispatch latency, queued to first step started (p50 / p99)"
        return [*rows, [latency, *(dispatch(s) for s in STORES)]]

    def notes(self) -> list[str]:
        notes = [
            f"{self.runs} runs queued, then the workers started; runs/s from the first step started "
            "to the last step ended. Dispatch: one idle worker, one run at a time. PostgreSQL: "
            "a schema of its own on the test suite's server, synchronous_commit=on.",
        ]
        notes += [f"{store}: not measured: {why}" for store, why in self.skipped.items()]
        return notes

    def text(self) -> str:
        from run import text_table  # run.py imports this module: not at the top

        return "\n".join(["Workers", text_table(list(self.HEADER), self.rows()), *self.notes()])

    def markdown(self) -> str:
        from run import md_table

        return "\n\n".join(["## Workers", md_table(list(self.HEADER), self.rows()), *self.notes()])

    def raw(self) -> dict[str, Any]:
        return {"runs": self.runs, "figures": self.figures, "skipped": self.skipped}


def postgres_url() -> tuple[str | None, str, Any]:
    """A database to measure on: (URL, why not when it is None, what stops what was started).

    The server the test suite uses (``FLOWDSL_TEST_POSTGRES``, else a throwaway database
    on 127.0.0.1:5432, else a private cluster), in a schema of its own, with every commit
    waiting for the server's flush (``synchronous_commit=on``, PostgreSQL's default; the
    test suite's throwaway databases turn it off).
    """
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import pgserver  # the test suite's server: an existing one, or a private cluster
        import psycopg

        server = pgserver.start()
    except Exception as exc:  # no server, no binaries, no psycopg: reported, never a failure
        return None, f"no PostgreSQL could be had ({str(exc).splitlines()[0]})", lambda: None
    schema = f"bench_workers_{os.getpid()}_{time.time_ns()}"
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        server.stop()
        return None, f"no schema could be made ({str(exc).splitlines()[0]})", lambda: None

    def stop() -> None:
        try:
            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            server.stop()

    url = pgserver.with_search_path(server.url, schema)
    return url.replace("options=", "options=-csynchronous_commit%3Don%20", 1), "", stop


def measure(
    python: str,
    runs: int = 400,
    samples: int = 50,
    timeout: float = 900.0,
    postgres: Any = postgres_url,
    stores: tuple[str, ...] = STORES,
) -> Report:
    """Each store (both by default) through this script in a process of its own (``--json``).

    `postgres` gives the PostgreSQL database (see `postgres_url`). A store that cannot be
    had, or whose measurement fails or times out, is reported as not measured, and why.
    """
    report = Report(runs)
    for store in stores:
        stop: Any = lambda: None  # noqa: E731
        if store == "sqlite":
            url: str | None = None  # the script's own file in a temporary folder
        else:
            url, why, stop = postgres()
            if url is None:
                report.skipped[store] = why
                continue
        command = [python, str(Path(__file__).resolve()), "--runs", str(runs)]
        command += ["--workers", ",".join(map(str, WORKERS)), "--latency-samples", str(samples)]
        command += ["--json", *(["--store", url] if url is not None else [])]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, cwd=REPO
            )
        except subprocess.TimeoutExpired:
            report.skipped[store] = f"timed out after {timeout:.0f} s"
            continue
        finally:
            stop()
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            report.skipped[store] = f"failed (exit {done.returncode}): {tail}"
            continue
        report.figures[store] = json.loads(lines[-1])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"sqlite:///{tmp}/runs.db"
        marks = Path(tmp) / "marks"
        marks.mkdir()
        figures: dict[str, object] = {"store": store.split("://")[0]}
        for count in (int(n) for n in args.workers.split(",")):
            rate = throughput(store, args.runs, count, marks)
            figures[f"runs_per_s_{count}_workers"] = round(rate, 1)
            print(f"{count} worker(s): {rate:.1f} runs/s ({args.runs} runs x 10 steps)")
        p50, p99 = latency(store, args.latency_samples, marks)
        figures["dispatch_p50_ms"] = round(p50 * 1000, 2)
        figures["dispatch_p99_ms"] = round(p99 * 1000, 2)
        print(f"dispatch latency: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        if args.json:
            print(json.dumps(figures))


if __name__ == "__main__":
    main()
