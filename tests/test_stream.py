"""stream_workflow: events in order, RunFinished last, no loss, and early exits cancel the run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings

from flowdsl import (
    Event,
    Retry,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
    Workflow,
    WorkflowNotFound,
    error,
    ok,
    step,
    stream_workflow,
    workflow,
)
from flowdsl.testing import strategies as fst

T = TypeVar("T")


pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, checking that nothing is left pending when `main` returns."""

    async def checked() -> T:
        result = await main
        assert set() == {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        return result

    return asyncio.run(checked())


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


def shape(events: list[Event]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples, without durations and run ids."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, StepStarted):
            out.append(("started", event.step, event.attempt))
        elif isinstance(event, StepChunk):
            out.append(("chunk", event.step, event.data))
        elif isinstance(event, StepFinished):
            out.append(("finished", event.step, event.status, event.attempt))
        elif isinstance(event, RunFinished):
            out.append(("run", event.run.status))
        else:
            out.append((type(event).__name__,))
    return out


async def settle(limit: int = 100) -> None:
    """Let the loop run until only the current task is left (bounded: never hangs)."""
    for _ in range(limit):
        if {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}:
            await asyncio.sleep(0)
        else:
            return
    pytest.fail("tasks still pending")


def progress() -> Workflow:
    @workflow
    def progress_flow() -> None:
        @step
        async def prepare(ctx: Any) -> Any:
            return ok({"n": 3})

        @step
        async def count(ctx: Any) -> Any:
            for i in range(ctx["n"]):
                yield {"done": i}
            yield ok({"counted": ctx["n"]})

        @step(retry=Retry(max_attempts=2, base=0))
        def flaky(ctx: Any) -> Any:
            return error("busy") if ctx.attempt == 1 else ok()

    return progress_flow


def test_events_come_in_order_and_run_finished_is_last() -> None:
    """Started, chunks, finished for each attempt in order; one RunFinished, last."""
    events = run(collect(stream_workflow(progress(), {"x": 1})))
    assert [
        ("started", "prepare", 1),
        ("finished", "prepare", "succeeded", 1),
        ("started", "count", 1),
        ("chunk", "count", {"done": 0}),
        ("chunk", "count", {"done": 1}),
        ("chunk", "count", {"done": 2}),
        ("finished", "count", "succeeded", 1),
        ("started", "flaky", 1),
        ("finished", "flaky", "failed", 1),
        ("started", "flaky", 2),
        ("finished", "flaky", "succeeded", 2),
        ("run", "completed"),
    ] == shape(events)
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert {"x": 1, "n": 3, "counted": 3} == dict(last.run.output)
    assert {last.run.run_id} == {e.run_id for e in events[:-1]}  # type: ignore[union-attr]


def test_streams_by_registered_name_with_run_options() -> None:
    """The workflow may be named; run options such as run_id pass through."""
    progress()
    events = run(collect(stream_workflow("progress_flow", run_id="r-7")))
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert ("r-7", "completed") == (last.run.run_id, last.run.status)


def test_a_failed_run_is_streamed_not_raised() -> None:
    """A failing step gives StepFinished(failed) and RunFinished(failed); iteration ends normally."""

    @workflow
    def failing() -> None:
        @step
        async def boom(ctx: Any) -> Any:
            raise ValueError("no")

    events = run(collect(stream_workflow(failing)))
    assert [("started", "boom", 1), ("finished", "boom", "failed", 1), ("run", "failed")] == shape(
        events
    )
    finished = events[1]
    assert isinstance(finished, StepFinished)
    assert isinstance(finished.error, ValueError)


def test_a_slow_consumer_loses_no_chunk_and_gets_them_in_order() -> None:
    """Many chunks, a consumer that yields to the loop between each: all arrive, in order."""

    @workflow
    def chatty() -> None:
        @step
        async def talk(ctx: Any) -> Any:
            for i in range(500):
                yield i
                if i % 50 == 0:
                    await asyncio.sleep(0)

    async def slow() -> list[Event]:
        seen: list[Event] = []
        async for event in stream_workflow(chatty):
            seen.append(event)
            for _ in range(3):
                await asyncio.sleep(0)
        return seen

    events = run(slow())
    assert list(range(500)) == [e.data for e in events if isinstance(e, StepChunk)]
    assert isinstance(events[-1], RunFinished)


def test_the_run_does_not_wait_for_the_consumer() -> None:
    """A consumer that stops reading does not block the run: it finishes, events are kept."""

    @workflow
    def ahead() -> None:
        @step
        async def first(ctx: Any) -> Any:
            return ok()

        @step
        async def many(ctx: Any) -> Any:
            for i in range(100):
                yield i

        @step
        async def last(ctx: Any) -> Any:
            ctx["done"].set()
            return ok()

    async def main() -> list[Event]:
        done = asyncio.Event()
        events = stream_workflow(ahead, {"done": done})
        head = await anext(events)
        async with asyncio.timeout(5):  # a guard against a deadlock, not a wait
            await done.wait()  # the run reached its last step while nobody was reading
        rest = await collect(events)
        return [head, *rest]

    events = run(main())
    assert list(range(100)) == [e.data for e in events if isinstance(e, StepChunk)]
    assert ("started", "first", 1) == shape(events)[0]
    assert ("run", "completed") == shape(events)[-1]


def blocked(log: list[str]) -> Workflow:
    """A workflow whose second step waits forever and notes its cancellation."""

    @workflow
    def blocked_flow() -> None:
        @step
        async def first(ctx: Any) -> Any:
            return ok()

        @step
        async def wait(ctx: Any) -> Any:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.append("cancelled")
                raise

    return blocked_flow


def test_breaking_early_cancels_the_run() -> None:
    """break out of the loop: the step running sees CancelledError, and no task is left."""
    log: list[str] = []
    wf = blocked(log)
    seen: list[Event] = []

    async def main() -> None:
        async for event in stream_workflow(wf, listeners=[seen.append]):
            if isinstance(event, StepStarted) and event.step == "wait":
                break
        await settle()  # the abandoned generator is closed by the loop, then the run unwinds

    run(main())
    assert ["cancelled"] == log
    last = seen[-1]
    assert isinstance(last, RunFinished)
    assert "cancelled" == last.run.status


def test_aclosing_cancels_the_run_before_the_block_ends() -> None:
    """With contextlib.aclosing the run is cancelled and awaited when the block exits."""
    log: list[str] = []
    wf = blocked(log)

    async def main() -> None:
        async with contextlib.aclosing(stream_workflow(wf)) as events:
            async for event in events:
                if isinstance(event, StepStarted) and event.step == "wait":
                    break
        assert ["cancelled"] == log  # already: aclose() waited for the run to stop
        assert set() == {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    run(main())


def test_an_error_in_the_consumer_cancels_the_run_and_propagates() -> None:
    """An exception in the loop body leaves the block; the run is cancelled, the error raised."""
    log: list[str] = []
    wf = blocked(log)

    async def main() -> None:
        async with contextlib.aclosing(stream_workflow(wf)) as events:
            async for event in events:
                if isinstance(event, StepStarted) and event.step == "wait":
                    raise LookupError("consumer gave up")

    with pytest.raises(LookupError, match="consumer gave up"):
        run(main())
    assert ["cancelled"] == log


def test_cancelling_the_consumer_cancels_the_run() -> None:
    """The consumer's task cancelled while waiting for an event: the run is cancelled too."""
    log: list[str] = []
    wf = blocked(log)

    async def consume(started: asyncio.Event) -> None:
        async with contextlib.aclosing(stream_workflow(wf)) as events:
            async for event in events:
                if isinstance(event, StepStarted) and event.step == "wait":
                    started.set()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(consume(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert ["cancelled"] == log


def test_nothing_runs_until_the_first_event_is_asked_for() -> None:
    """Creating the iterator starts no run; closing it unused is harmless."""
    calls: list[str] = []

    @workflow
    def lazy() -> None:
        @step
        def only(ctx: Any) -> Any:
            calls.append("only")
            return ok()

    async def main() -> None:
        events = stream_workflow(lazy)
        await asyncio.sleep(0)
        await events.aclose()

    run(main())
    assert [] == calls


def test_an_unknown_workflow_raises_from_the_iterator() -> None:
    """A name that is not registered raises WorkflowNotFound on the first event."""
    with pytest.raises(WorkflowNotFound, match="no workflow named 'missing'"):
        run(collect(stream_workflow("missing")))


@settings(max_examples=40, deadline=None)
@given(fst.workflows(max_steps=6, max_depth=2))
def test_the_stream_is_the_run_s_events(case: fst.WorkflowCase) -> None:
    """For any workflow: the stream is exactly what a listener sees, with one RunFinished, last."""
    heard: list[Event] = []
    events = run(
        collect(stream_workflow(case.workflow, dict(case.input), listeners=[heard.append]))
    )
    streamed = (StepStarted, StepChunk, StepFinished, RunFinished)
    assert [e for e in heard if isinstance(e, streamed)] == events
    assert isinstance(heard[0], RunStarted)
    assert 1 == sum(isinstance(e, RunFinished) for e in events)
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert last.run.status in ("completed", "failed")
