"""run_many / arun_many: one run per input, in input order, never more than `concurrency` at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdsl import (
    Event,
    RunFinished,
    RunStarted,
    SQLiteStore,
    UsageError,
    Workflow,
    arun_many,
    error,
    ok,
    run_many,
    step,
    workflow,
)
from flowdsl._define import _registry
from flowdsl.errors import RunningLoopError

pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


def doubler() -> Workflow:
    @workflow
    def double() -> None:
        @step
        async def twice(ctx: Any) -> Any:
            await asyncio.sleep(0)
            return ok({"out": ctx["n"] * 2})

    return double


def test_runs_come_back_in_input_order() -> None:
    """Whatever order runs finish in, the list follows the inputs."""

    @workflow
    def reverse() -> None:
        @step
        async def wait_turn(ctx: Any) -> Any:
            for _ in range(10 - ctx["n"]):  # later inputs finish first
                await asyncio.sleep(0)
            return ok({"out": ctx["n"]})

    finished: list[int] = []

    def listen(event: Event) -> None:
        if isinstance(event, RunFinished):
            finished.append(event.run.output["n"])

    runs = run_many(reverse, [{"n": n} for n in range(10)], concurrency=10, listeners=[listen])
    assert list(range(10)) == [run.output["out"] for run in runs]
    assert list(range(9, -1, -1)) == finished  # they really finished in reverse


def test_never_more_than_concurrency_runs_at_once() -> None:
    """Counting runs in flight (by steps and by events): the bound is reached, never passed."""
    gate: dict[str, Any] = {}
    in_flight = 0
    most = 0
    by_events = 0
    most_by_events = 0

    @workflow
    def bounded() -> None:
        @step
        async def hold(ctx: Any) -> Any:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            if in_flight == 3:
                gate["full"].set()
            await gate["release"].wait()
            in_flight -= 1
            return ok()

    def listen(event: Event) -> None:
        nonlocal by_events, most_by_events
        if isinstance(event, RunStarted):
            by_events += 1
            most_by_events = max(most_by_events, by_events)
        elif isinstance(event, RunFinished):
            by_events -= 1

    async def main() -> list[Any]:
        gate["full"], gate["release"] = asyncio.Event(), asyncio.Event()
        batch = asyncio.create_task(
            arun_many(bounded, [{"i": i} for i in range(8)], concurrency=3, listeners=[listen])
        )
        await gate["full"].wait()
        for _ in range(20):  # give a 4th run every chance to start
            await asyncio.sleep(0)
        assert (3, 3) == (in_flight, by_events)
        gate["release"].set()
        return await batch

    runs = asyncio.run(main())
    assert ["completed"] * 8 == [r.status for r in runs]
    assert (3, 3) == (most, most_by_events)


def test_each_run_is_isolated() -> None:
    """Every run has its own id, sees only its own input, and a failure stays in its run."""

    @workflow
    def separate() -> None:
        @step
        async def check(ctx: Any) -> Any:
            await asyncio.sleep(0)
            if ctx["n"] == 2:
                return error(f"bad {ctx['n']}")
            return ok({f"saw_{ctx['n']}": sorted(ctx)})

    runs = run_many(separate, [{"n": n} for n in range(5)], concurrency=5)
    assert ["completed", "completed", "failed", "completed", "completed"] == [
        r.status for r in runs
    ]
    assert 5 == len({r.run_id for r in runs})
    for n in (0, 1, 3, 4):
        assert {"n": n, f"saw_{n}": ["n"]} == dict(runs[n].output)
    assert "bad 2" == runs[2].error


def test_arun_many_by_name_inside_a_loop() -> None:
    """arun_many takes a registered name and works on the running loop."""
    doubler()
    runs = asyncio.run(arun_many("double", [{"n": 1}, {"n": 2}], concurrency=1))
    assert [2, 4] == [r.output["out"] for r in runs]


def test_no_inputs_no_runs() -> None:
    """An empty batch returns an empty list."""
    assert [] == run_many(doubler(), [], concurrency=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_concurrency_must_be_a_positive_int(bad: Any) -> None:
    """concurrency is checked before anything runs."""
    with pytest.raises(UsageError, match="concurrency must be an int >= 1"):
        run_many(doubler(), [{"n": 1}], concurrency=bad)


def test_inputs_must_be_mappings_and_run_ids_are_not_shared() -> None:
    """A non-mapping input or a run_id= is refused before any run starts."""
    wf = doubler()
    with pytest.raises(UsageError, match="must be a mapping"):
        run_many(wf, [{"n": 1}, [1, 2]], concurrency=2)  # type: ignore[list-item]
    with pytest.raises(UsageError, match="do not pass run_id="):
        run_many(wf, [{"n": 1}], concurrency=2, run_id="x")


def test_run_many_refuses_a_running_loop() -> None:
    """run_many inside a running loop names arun_many."""

    async def main() -> None:
        run_many(doubler(), [{"n": 1}], concurrency=1)

    with pytest.raises(RunningLoopError, match=r"use 'await arun_many\(...\)'"):
        asyncio.run(main())


class _BreakingStore(SQLiteStore):
    """A real store whose `nth` open_run raises `error` (a store problem, not a failed step)."""

    def __init__(self, path: Path, nth: int, error: BaseException) -> None:
        super().__init__(path)
        self.opened = 0
        self.nth = nth
        self.error = error
        self.others_busy: asyncio.Event | None = None  # set: raise only once it is

    async def open_run(self, header: Any) -> Any:
        self.opened += 1
        if self.opened == self.nth:
            if self.others_busy is not None:
                await self.others_busy.wait()
            raise self.error
        return await super().open_run(header)


def test_an_exception_from_one_run_is_raised_as_itself(tmp_path: Path) -> None:
    """A run that raises (here: its store) cancels the others and raises its own exception."""
    cancelled: list[int] = []
    waiting = 0
    store = _BreakingStore(tmp_path / "runs.db", 3, LookupError("store broke"))

    @workflow
    def waits() -> None:
        @step
        async def wait(ctx: Any) -> Any:
            nonlocal waiting
            waiting += 1
            if waiting == 2:
                assert store.others_busy is not None
                store.others_busy.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(ctx["n"])
                raise

    async def main() -> None:
        store.others_busy = asyncio.Event()
        await arun_many(waits, [{"n": n} for n in range(3)], concurrency=3, store=store)

    with store, pytest.raises(LookupError, match="store broke"):
        asyncio.run(main())
    assert [0, 1] == sorted(cancelled)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=12), st.integers(1, 4))
def test_order_and_bound_hold_for_any_batch(delays: list[int], concurrency: int) -> None:
    """Any inputs and bound: outputs follow inputs and in-flight runs never exceed the bound."""
    in_flight = 0
    most = 0

    @workflow
    def any_batch() -> None:
        @step
        async def work(ctx: Any) -> Any:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            for _ in range(ctx["delay"]):
                await asyncio.sleep(0)
            in_flight -= 1
            return ok({"out": ctx["i"]})

    runs = run_many(
        any_batch, [{"i": i, "delay": d} for i, d in enumerate(delays)], concurrency=concurrency
    )
    assert list(range(len(delays))) == [r.output["out"] for r in runs]
    assert most <= concurrency
    _registry.unregister("any_batch")


def test_a_run_that_raises_keeps_its_own_cause(tmp_path: Path) -> None:
    """run_many raises a run's exception as run_workflow would, its __cause__ intact."""

    @workflow
    def quiet() -> None:
        step(lambda ctx: ok(), name="a")

    try:
        {}["missing"]
    except KeyError as exc:
        broke = RuntimeError("store broke")
        broke.__cause__ = exc
    store = _BreakingStore(tmp_path / "runs.db", 1, broke)
    with store, pytest.raises(RuntimeError, match="store broke") as caught:
        run_many(quiet, [{}], store=store)
    assert isinstance(caught.value.__cause__, KeyError)
