"""Parallel enrichment: fetch a user's profile and memory at once, then summarize.

The two lookups do not depend on each other, so they are the branches of one
``parallel()`` block. Its ``into=`` reducer folds both values into the context
for ``summarize``; a lookup that fails is left out and the summary says less.
The same steps recorded one after the other show the wall-clock win.

Run it: ``python examples/parallel_enrichment.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from flowdsl import Context, Ok, Result, Run, ok, parallel, run_workflow, step, workflow

LOOKUP_DELAY = 0.05  # seconds each fake service takes to answer


# -- fake services ----------------------------------------------------------------


async def fetch_profile(user_id: str) -> dict[str, Any]:
    await asyncio.sleep(LOOKUP_DELAY)
    return {"display_name": "Alice", "goals": ["learn Python", "build APIs"]}


async def fetch_memory(session_id: str) -> dict[str, Any]:
    await asyncio.sleep(LOOKUP_DELAY)
    return {"recent_topics": ["async programming", "databases"]}


# -- steps, defined once and recorded in two workflows ----------------------------------


async def profile_enrich(ctx: Context):
    return await fetch_profile(ctx["user_id"])  # a plain value is stored under "profile"


async def memory_enrich(ctx: Context):
    return await fetch_memory(ctx["session_id"])


def summarize(ctx: Context):
    parts = []
    if "profile" in ctx:
        parts.append(f"User: {ctx['profile']['display_name']}")
    if "memory" in ctx:
        parts.append(f"Topics: {', '.join(ctx['memory']['recent_topics'])}")
    return ok({"summary": " | ".join(parts) or "no enrichment data"})


def keep_successes(ctx: Context, results: Mapping[str, Result[Any, Any]]):
    """The block's reducer: merge every lookup that worked into the context."""
    return ok({key: result.value for key, result in results.items() if isinstance(result, Ok)})


@workflow
def enrich_parallel() -> None:
    with parallel(into=keep_successes, name="lookups"):
        step(profile_enrich, returns="profile")
        step(memory_enrich, returns="memory")
    step(summarize)


@workflow
def enrich_sequential() -> None:
    step(profile_enrich, returns="profile")
    step(memory_enrich, returns="memory")
    step(summarize)


# -- running it ---------------------------------------------------------------------------


def show(run: Run) -> None:
    """Print a run: its status, each step attempt with its duration, and the output."""
    print(f"{run.workflow}: {run.status} in {run.duration * 1000:.0f} ms")
    for attempt in run.steps:
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(
            f"  {attempt.name:<16} attempt {attempt.attempt}  {attempt.status:<9}"
            f" {attempt.duration * 1000:5.1f} ms{note}"
        )
    print(f"  output: {dict(run.output)}")


def compare(user: Mapping[str, Any]) -> tuple[Run, Run]:
    """Run the sequential and the parallel workflow on the same input."""
    sequential = run_workflow("enrich_sequential", user)
    concurrent = run_workflow("enrich_parallel", user)
    return sequential, concurrent


def main() -> None:
    sequential, concurrent = compare({"user_id": "u-1", "session_id": "s-1"})
    show(sequential)
    show(concurrent)
    speedup = sequential.duration / concurrent.duration
    print(
        f"sequential {sequential.duration * 1000:.0f} ms, parallel "
        f"{concurrent.duration * 1000:.0f} ms: {speedup:.1f}x faster"
    )


if __name__ == "__main__":
    main()
