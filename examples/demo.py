"""What ``make demo`` runs: the onboarding workflow end to end, durably, printed plainly.

The run is journaled in a SQLite store (in a temporary folder).
``stream_workflow`` yields its events as they happen: each attempt starting
and finishing (retries included) is printed live. The last event carries the
finished `Run`, printed as a timeline of every attempt and the output, with
each parallel branch's ``Ok``/``Err`` outcome. Then the same ``run_id`` is
run again: the store holds it, completed, so nothing runs and the recorded
run comes back.

Run it: ``python examples/demo.py`` (or ``make demo``)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from onboarding import onboard_user

from flowdsl import (
    Event,
    Run,
    RunFinished,
    SQLiteStore,
    StepFinished,
    StepStarted,
    parallel_results,
    run_workflow,
    stream_workflow,
)


def live(event: Event) -> None:
    """Print an attempt as it starts and ends."""
    if isinstance(event, StepStarted):
        print(f"  > {event.step} (attempt {event.attempt})")
    elif isinstance(event, StepFinished):
        retry = (
            f", retrying in {event.retry_in * 1000:.0f} ms" if event.retry_in is not None else ""
        )
        print(f"  < {event.step} {event.status} in {event.duration * 1000:.1f} ms{retry}")


def show(run: Run) -> None:
    """Print a finished run: status, a timeline of the attempts, and the output."""
    print(f"\nrun {run.run_id} of {run.workflow!r}: {run.status} in {run.duration * 1000:.0f} ms")
    print(f"  {'start':>8} {'took':>8}  {'step':<20} {'attempt':>7}  status")
    for attempt in sorted(run.steps, key=lambda attempt: attempt.started):
        start = (attempt.started - run.started) * 1000
        print(
            f"  {start:5.1f} ms {attempt.duration * 1000:5.1f} ms  {attempt.name:<20} "
            f"{attempt.attempt:>7}  {attempt.status}"
        )
    print("output:")
    for key, value in run.output.items():
        if key != "__results__":
            print(f"  {key}: {value!r}")
    print("parallel branches:")
    for branch, outcome in parallel_results(run.output).items():
        print(f"  {branch}: {outcome!r}")


INPUT = {"name": "Ada", "mail_outages": 2}  # the mail server is busy for two attempts


async def onboard(store: SQLiteStore, run_id: str) -> Run:
    """Run the onboarding workflow, printing its events live; returns the finished run."""
    async for event in stream_workflow(onboard_user, INPUT, run_id=run_id, store=store):
        live(event)
        if isinstance(event, RunFinished):
            return event.run
    raise AssertionError("a run that executes streams RunFinished last")


def demo(path: Path) -> tuple[Run, Run]:
    """Run onboarding once with a store at `path`, then ask for the same run_id again."""
    with SQLiteStore(path) as store:
        print(f"onboarding {INPUT['name']}, journaled in {path}")
        first = asyncio.run(onboard(store, "onboard-ada"))
        show(first)
        again = run_workflow(onboard_user, INPUT, run_id="onboard-ada", store=store)
    return first, again


def attempts(run: Run) -> list[tuple[str, int, str, float]]:
    return [(a.name, a.attempt, a.status, a.duration) for a in run.steps]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        first, again = demo(Path(folder) / "demo.db")
    print(f"\nrunning {again.run_id!r} again: the store returns the recorded run, nothing runs")
    print(f"  status: {again.status}")
    print(f"  same attempts, same durations: {attempts(again) == attempts(first)}")
    print(f"  same output: {again.output == first.output}")


if __name__ == "__main__":
    main()
