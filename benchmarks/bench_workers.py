"""Workers: throughput through 1, 2 and 4 worker processes, and dispatch latency.

    python benchmarks/bench_workers.py [--store URL] [--runs 400] [--workers 1,2,4]
                                       [--latency-samples 50]

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
from pathlib import Path

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
