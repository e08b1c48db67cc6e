"""Executors benchmark (issue 8): where a step runs, and what it costs.

    python benchmarks/bench_executors.py [--rounds 3] [--work 0.4] [--chain 40]

1. CPU-bound: 8 steps of about ``--work`` seconds of pure-Python work each,
   in one parallel block, run inline (on the event loop: one after another),
   on a 2-process ``ProcessExecutor`` and on a Dask ``LocalCluster`` of 2
   worker processes; with the same work submitted straight to the process
   pool and to ``client.submit`` as baselines for flowdsl's overhead.
2. Per-step overhead: a chain of ``--chain`` trivial steps (each waits for the
   one before) on every executor, and a raw Dask submit/result round trip.

Cases run in ``--rounds`` interleaved rounds after a warm-up run (pools and
workers already started); the table gives the best and the median wall time,
and the CPU time the calling process spent (flowdsl's own share, which other
programs on the machine cannot inflate). The ``__main__`` guard below is
required: the process pool and the Dask workers are spawned processes that
import this file again.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowdsl import Workflow, ok, parallel, run_workflow, step, workflow
from flowdsl.executors import DaskExecutor, ProcessExecutor

WIDTH = 8
RESULTS = Path(__file__).resolve().parent / "results"


def burn(n: int) -> int:
    """Pure-Python CPU work: about `n` loop iterations."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    """Iterations of `burn` that take about `seconds` here."""
    n = 100_000
    while True:
        started = time.perf_counter()
        burn(n)
        took = time.perf_counter() - started
        if took > 0.05:
            return int(n * seconds / took)
        n *= 2


def cpu_workflow(executor: str) -> Workflow:
    @workflow(f"cpu_{executor}", executor=executor)
    def cpu() -> None:
        with parallel():
            for index in range(WIDTH):

                def work(ctx: Any) -> object:
                    return ok(burn(ctx["n"]))

                step(work, name=f"burn{index}")

    return cpu


def chain_workflow(executor: str, length: int) -> Workflow:
    @workflow(f"chain_{executor}", executor=executor)
    def chain() -> None:
        for index in range(length):

            def hop(ctx: Any) -> object:
                return ok({"i": ctx.get("i", 0) + 1})

            step(hop, name=f"hop{index}")

    return chain


def measure(
    cases: dict[str, Callable[[], object]], rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """Warm every case up, then time them in interleaved rounds (load drifts hit all alike).

    Each sample is (wall seconds, CPU seconds of this process): the second is
    what the caller's side costs, and does not move when other programs
    compete for the CPUs.
    """
    for fn in cases.values():
        fn()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            cpu = time.process_time()
            started = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - started, time.process_time() - cpu))
    return samples


def run_ok(wf: Workflow, data: dict[str, Any], executors: dict[str, Any]) -> None:
    run = run_workflow(wf, data, executors=executors)
    if run.status != "completed":
        raise SystemExit(f"{wf.name} {run.status}: {run.error!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=float, default=0.4, help="seconds per CPU-bound step")
    parser.add_argument("--chain", type=int, default=40, help="trivial steps in the chain")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    n = calibrate(args.work)
    data = {"n": n}
    chain = args.chain
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
        DaskExecutor(client) as dask,
        ProcessExecutor(max_workers=2) as processes,
        concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context("forkserver")
        ) as raw_pool,
    ):
        executors = {"dask": dask, "process": processes}
        cpu_cases: dict[str, Callable[[], object]] = {}
        for name in ("inline", "process", "dask"):
            wf = cpu_workflow(name)
            cpu_cases[name] = lambda wf=wf: run_ok(wf, data, executors)
        cpu_cases["raw-pool"] = lambda: list(raw_pool.map(burn, [n] * WIDTH))
        cpu_cases["raw-dask"] = lambda: client.gather(
            [client.submit(burn, n, pure=False) for _ in range(WIDTH)]
        )
        steps: dict[str, Callable[[], object]] = {}
        for name in ("inline", "thread", "process", "dask"):
            wf = chain_workflow(name, chain)
            steps[name] = lambda wf=wf: run_ok(wf, {}, executors)
        steps["raw-dask"] = lambda: [
            client.submit(burn, 1, pure=False).result() for _ in range(chain)
        ]
        cpu_samples = measure(cpu_cases, args.rounds)
        step_samples = measure(steps, args.rounds)
    report(cpu_samples, step_samples, n, args)


Samples = dict[str, list[tuple[float, float]]]


def best(samples: list[tuple[float, float]]) -> float:
    """The fastest wall time: other programs on the machine only ever add to it."""
    return min(wall for wall, _ in samples)


def median(samples: list[tuple[float, float]]) -> float:
    return statistics.median(wall for wall, _ in samples)


def cpu(samples: list[tuple[float, float]]) -> float:
    return statistics.median(used for _, used in samples)


def overhead(flow: list[tuple[float, float]], raw: list[tuple[float, float]]) -> float:
    """What flowdsl adds to the raw call: rounds pair the two, so load drifts cancel out."""
    differences = [f - r for (f, _), (r, _) in zip(flow, raw, strict=True)]
    return statistics.median(differences) / median(raw)


def report(cpu_bound: Samples, steps: Samples, n: int, args: argparse.Namespace) -> None:
    inline = best(cpu_bound["inline"])
    lines = [
        f"# flowdsl executors benchmark: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {args.rounds} interleaved rounds",
        "",
        f"CPU-bound: {WIDTH} steps x ~{args.work}s ({n:,} iterations) in one parallel block",
        "",
        "| run | best s | median s | speed-up (best) | caller CPU s |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in ("inline", "process", "raw-pool", "dask", "raw-dask"):
        sample = cpu_bound[key]
        lines.append(
            f"| {key} | {best(sample):.2f} | {median(sample):.2f} | "
            f"{inline / best(sample):.2f}x | {cpu(sample):.3f} |"
        )
    over_dask = overhead(cpu_bound["dask"], cpu_bound["raw-dask"])
    over_pool = overhead(cpu_bound["process"], cpu_bound["raw-pool"])
    lines += [
        "",
        f"flowdsl over raw client.submit: {over_dask:+.1%}; over the raw process pool: "
        f"{over_pool:+.1%} (median of the differences within a round, over the raw median)",
        "",
        f"Per-step overhead, a chain of {args.chain} trivial steps (each waits for the last):",
        "",
        "| executor | ms per step (best) | ms per step (median) | caller CPU ms per step |",
        "|---|---:|---:|---:|",
    ]
    for key in ("inline", "thread", "process", "dask", "raw-dask"):
        sample, k = steps[key], 1000 / args.chain
        lines.append(
            f"| {key} | {best(sample) * k:.3f} | {median(sample) * k:.3f} | {cpu(sample) * k:.3f} |"
        )
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record = {
        "python": sys.version,
        "cpus": os.cpu_count(),
        "iterations": n,
        "chain": args.chain,
        "cpu_bound": cpu_bound,
        "chain_steps": steps,
    }
    (RESULTS / f"executors-{stamp}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
