"""Blocks wider than a batch of branches (``_blocks._BATCH``): started in batches, same semantics.

A block without ``max_concurrency`` starts its branches a batch at a time, each batch once
the loop has run the one before, and drops the tasks of branches that finished at once.
These tests hold it to what a single TaskGroup did: every branch runs, first steps in
declaration order, results in order, a fail-fast failure stops every sibling, a cancel
leaves nothing running, and a durable run journals each branch once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from flowdsl import arun_workflow, foreach, ok, parallel, run_workflow, step, workflow
from flowdsl._engine._blocks import _BATCH
from flowdsl.stores import SQLiteStore

pytestmark = pytest.mark.usefixtures("flowdsl_registry")

WIDE = 3 * _BATCH + 5  # three full batches and part of a fourth


def in_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run `main` in a fresh loop and check that no task outlives it."""

    async def checked() -> Any:
        async with asyncio.timeout(60):  # a guard: a branch left waiting fails the test, not CI
            value = await main()
        await asyncio.sleep(0)
        assert set() == asyncio.all_tasks() - {asyncio.current_task()}
        return value

    return asyncio.run(checked())


def test_every_branch_runs_first_steps_in_order_results_in_order() -> None:
    """Quick and waiting branches mixed: all run, started in order, results by index."""
    began: list[int] = []
    gate = asyncio.Event

    def branch(i: int) -> Callable[[Any], Coroutine[Any, Any, Any]]:
        async def body(ctx: Any) -> Any:
            began.append(i)
            if len(began) == WIDE:  # the last to begin opens the gate
                ctx["gate"].set()
            if i % 3 == 0:  # a third wait for the gate: they are still running later
                await ctx["gate"].wait()
            return i * 10

        return body

    @workflow
    def wide() -> None:
        with parallel(name="fan", into=lambda ctx, results: ok({"out": list(results.values())})):
            for i in range(WIDE):
                step(branch(i), name=f"b{i}")

    run = in_loop(lambda: arun_workflow(wide, {"gate": gate()}))
    assert run.status == "completed"
    assert began == list(range(WIDE))
    assert [r.value for r in run.output["out"]] == [i * 10 for i in range(WIDE)]


def test_quick_branches_keep_about_a_batch_of_tasks_alive() -> None:
    """Branches that finish at once do not pile up as tasks: memory stays bounded."""
    alive: list[int] = []

    async def body(ctx: Any) -> Any:
        alive.append(len(asyncio.all_tasks()))
        return 1

    @workflow
    def quick() -> None:
        with foreach(lambda ctx: range(20 * _BATCH), into=lambda ctx, rs: ok({"n": len(rs)})):
            step(body, name="one")

    run = in_loop(lambda: arun_workflow(quick))
    assert (run.status, run.output["n"]) == ("completed", 20 * _BATCH)
    assert max(alive) <= 2 * _BATCH + 8  # this batch, what is left of the one before, the run


def failing_at(failing: int, began: list[int], cancelled: list[int]) -> Any:
    """A fail-fast block of WIDE branches: branch `failing` raises, every other one waits."""

    def branch(i: int) -> Callable[[Any], Coroutine[Any, Any, Any]]:
        async def body(ctx: Any) -> Any:
            began.append(i)
            if i == failing:
                raise RuntimeError("down")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(i)
                raise

        return body

    @workflow(name=f"failing_at_{failing}")
    def block() -> None:
        with parallel(name="fan"):
            for i in range(WIDE):
                step(branch(i), name=f"b{i}")

    return block


def test_a_fail_fast_failure_in_the_first_batch_starts_no_later_branch() -> None:
    began: list[int] = []
    cancelled: list[int] = []
    run = in_loop(lambda: arun_workflow(failing_at(5, began, cancelled)))
    assert (run.status, run.failed_step) == ("failed", "b5")
    assert began == list(range(6))  # the rest of the batch was cancelled before it began
    assert cancelled == list(range(5))


def test_a_failure_in_a_later_batch_cancels_the_earlier_ones_still_running() -> None:
    began: list[int] = []
    cancelled: list[int] = []
    late = 2 * _BATCH + 1
    run = in_loop(lambda: arun_workflow(failing_at(late, began, cancelled)))
    assert (run.status, run.failed_step) == ("failed", f"b{late}")
    assert began == list(range(late + 1))
    assert sorted(cancelled) == list(range(late))


def test_cancelling_a_wide_block_between_batches_leaves_nothing_running() -> None:
    began: list[int] = []
    second = asyncio.Event

    async def body(ctx: Any) -> Any:
        began.append(ctx.index)
        if len(began) == _BATCH + 1:  # the second batch has begun, the rest not yet
            ctx["second"].set()
        await asyncio.Event().wait()

    @workflow
    def waiting() -> None:
        with foreach(lambda ctx: range(WIDE)):
            step(body, name="w")

    async def main() -> None:
        begun = second()
        task = asyncio.create_task(arun_workflow(waiting, {"second": begun}))
        await begun.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    in_loop(main)
    assert _BATCH < len(began) < WIDE


def test_a_durable_wide_foreach_journals_each_item_once(tmp_path: Path) -> None:
    @workflow
    def items() -> None:
        with foreach(
            lambda ctx: range(WIDE),
            into=lambda ctx, rs: ok({"s": sum(r.value["double"] for r in rs)}),
        ):
            step(lambda ctx: ctx.item * 2, name="double")

    with SQLiteStore(tmp_path / "runs.db") as store:
        run = run_workflow(items, store=store)
        assert run.status == "completed", run.error
        assert (run.status, run.output["s"]) == ("completed", 2 * sum(range(WIDE)))
        saved = store.get_run(run.run_id)
        assert saved is not None
        steps = [(s.name, s.attempt) for s in saved.steps if s.name.startswith("double")]
        assert sorted(steps) == sorted((f"double[{i}]", 1) for i in range(WIDE))
