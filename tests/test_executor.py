"""The executor: outcomes, parallel policies, goto, retries, timeouts, compensation, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import Any

import attrs
import pytest

from flowdsl import (
    END,
    Err,
    Event,
    Ok,
    Retry,
    Run,
    RunFinished,
    StepChunk,
    StepFinished,
    StepRecord,
    StepStarted,
    UsageError,
    WorkflowFailed,
    arun_workflow,
    error,
    goto,
    ok,
    parallel,
    parallel_ok,
    parallel_result,
    parallel_results,
    run_many,
    run_workflow,
    sequence,
    step,
    stream_workflow,
    workflow,
)
from flowdsl._engine._context import Context
from flowdsl.errors import GotoError, RunningLoopError, TransitionLimitExceeded

pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


def run(wf: Any, data: Mapping[str, Any] | None = None, **options: Any) -> Run:
    return run_workflow(wf, data, **options)


def in_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run `main` in a fresh loop and check that no task outlives it."""

    async def checked() -> Any:
        value = await main()
        await asyncio.sleep(0)
        leftover = asyncio.all_tasks() - {asyncio.current_task()}
        assert set() == leftover
        return value

    return asyncio.run(checked())


# -- the outcomes table ----------------------------------------------------------------


def test_ok_mapping_is_merged_into_the_context() -> None:
    """ok(mapping) shallow-merges the mapping; later steps see it."""

    @workflow
    def merge() -> None:
        @step
        async def first(ctx: Any) -> Any:
            return ok({"user": {"id": 1}, "n": 1})

        @step
        async def second(ctx: Any) -> Any:
            return ok({"n": ctx["n"] + 1})

    r = run(merge, {"name": "Ada"})
    assert "completed" == r.status
    assert {"name": "Ada", "user": {"id": 1}, "n": 2} == dict(r.output)


def test_ok_value_and_plain_values_are_stored_under_the_key() -> None:
    """ok(value), a plain value (even a dict) are stored under returns= or the step name."""

    @workflow
    def store() -> None:
        @step
        async def count(ctx: Any) -> Any:
            return ok(3)

        @step(returns="profile")
        def fetch(ctx: Any) -> Any:
            return {"name": "Ada"}

        @step
        async def total(ctx: Any) -> Any:
            return ctx["count"] + 1

    assert {"count": 3, "profile": {"name": "Ada"}, "total": 4} == dict(run(store).output)


def test_ok_empty_and_none_leave_the_context_unchanged() -> None:
    """ok() and None change nothing."""

    @workflow
    def nothing() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return ok()

        @step
        def b(ctx: Any) -> None:
            return None

    assert {"x": 1} == dict(run(nothing, {"x": 1}).output)


def test_error_fails_the_run_with_the_reason() -> None:
    """error(reason) fails the run: status, error and failed_step; later steps do not run."""
    ran: list[str] = []

    @workflow
    def failing() -> None:
        @step
        async def check(ctx: Any) -> Any:
            return error({"code": "card_declined"})

        @step
        async def after(ctx: Any) -> Any:
            ran.append("after")

    r = run(failing)
    assert ("failed", {"code": "card_declined"}, "check") == (r.status, r.error, r.failed_step)
    assert [] == ran
    assert Err({"code": "card_declined"}) == r.result


def test_raised_exception_is_the_reason_with_its_traceback() -> None:
    """A raised exception fails the run; the exception is the reason, traceback kept."""

    @workflow
    def raising() -> None:
        @step
        async def boom(ctx: Any) -> Any:
            raise ValueError("bad data")

    r = run(raising)
    assert isinstance(r.error, ValueError)
    assert "bad data" == str(r.error)
    assert r.error.__traceback__ is not None
    with pytest.raises(WorkflowFailed, match="failed at step 'boom'") as info:
        r.unwrap()
    assert r.error is info.value.__cause__


def test_goto_forward_skips_and_merges() -> None:
    """goto(step, mapping) merges the mapping and continues at that step."""
    ran: list[str] = []

    @workflow
    def jump() -> None:
        @step
        async def a(ctx: Any) -> Any:
            ran.append("a")
            return goto("c", {"jumped": True})

        @step
        async def b(ctx: Any) -> Any:
            ran.append("b")

        @step
        async def c(ctx: Any) -> Any:
            ran.append("c")

    r = run(jump)
    assert ["a", "c"] == ran
    assert {"jumped": True} == dict(r.output)


def test_goto_backward_loops_until_done() -> None:
    """A backward goto repeats steps; each visit sees the context so far."""

    @workflow
    def loop() -> None:
        @step
        async def inc(ctx: Any) -> Any:
            return ok({"i": ctx.get("i", 0) + 1})

        @step
        async def check(ctx: Any) -> Any:
            if ctx["i"] < 5:
                return goto("inc")
            return ok()

    r = run(loop)
    assert 5 == r.output["i"]
    assert ["inc", "check"] * 5 == [s.name for s in r.steps]


def test_goto_end_finishes_successfully_now() -> None:
    """goto(END, mapping) merges and completes; nothing after runs."""

    @workflow
    def early() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return goto(END, {"done": "early"})

        @step
        async def b(ctx: Any) -> Any:
            raise AssertionError("must not run")

    r = run(early)
    assert ("completed", {"done": "early"}) == (r.status, dict(r.output))


def test_goto_to_an_unknown_step_fails_with_known_steps() -> None:
    """An undeclared goto target is checked when returned."""

    @workflow
    def lost() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return goto("nowhere")

    r = run(lost)
    assert isinstance(r.error, GotoError)
    assert "goto('nowhere')" in str(r.error)
    assert "known steps: 'a'" in str(r.error)


def test_max_transitions_stops_an_endless_loop() -> None:
    """A goto loop that never ends fails once it passes max_transitions."""

    @workflow("spin", max_transitions=50)
    def spin() -> None:
        @step
        async def again(ctx: Any) -> Any:
            return goto("again")

    r = run(spin)
    assert isinstance(r.error, TransitionLimitExceeded)
    assert "more than 50 goto transitions" in str(r.error)
    assert 51 == len(r.steps)  # the first visit, then 50 jumps back


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_are_never_turned_into_errors(exc: type[BaseException]) -> None:
    """KeyboardInterrupt and SystemExit raised by a step propagate out of the run."""

    @workflow
    def interrupted() -> None:
        @step
        async def stop(ctx: Any) -> Any:
            raise exc

    with pytest.raises(exc):
        run(interrupted)


def test_step_raising_cancelled_error_cancels_the_run() -> None:
    """CancelledError inside a step is not an error: the run is cancelled."""
    finished: list[Event] = []

    @workflow
    def cancelled() -> None:
        @step
        async def stop(ctx: Any) -> Any:
            raise asyncio.CancelledError

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await arun_workflow(cancelled, listeners=[finished.append])

    in_loop(main)
    last = finished[-1]
    assert isinstance(last, RunFinished)
    assert "cancelled" == last.run.status


# -- step kinds and ctx ----------------------------------------------------------------


def test_sync_steps_run_on_the_loop_thread_and_blocking_ones_in_a_worker() -> None:
    """Sync steps are called directly; blocking=True runs in another thread."""
    main_thread = threading.get_ident()

    @workflow
    def threads() -> None:
        @step
        def direct(ctx: Any) -> Any:
            return threading.get_ident()

        @step(blocking=True)
        def worker(ctx: Any) -> Any:
            return threading.get_ident()

    out = run(threads).output
    assert main_thread == out["direct"]
    assert main_thread != out["worker"]


def test_async_generator_steps_stream_chunks_and_end_with_their_last_outcome() -> None:
    """Non-outcome items are chunks, in order; the last outcome yielded is the step's."""
    events: list[Event] = []

    @workflow
    def streaming() -> None:
        @step
        async def tokens(ctx: Any) -> AsyncIterator[Any]:
            for word in ("a", "b", "c"):
                yield word
            yield ok({"text": "abc"})

        @step
        async def silent(ctx: Any) -> AsyncIterator[Any]:
            yield "only a chunk"

    r = run(streaming, listeners=[events.append])
    assert {"text": "abc"} == dict(r.output)
    chunks = [(e.step, e.data) for e in events if isinstance(e, StepChunk)]
    assert [("tokens", "a"), ("tokens", "b"), ("tokens", "c"), ("silent", "only a chunk")] == chunks


def test_ctx_carries_run_id_step_attempt_and_a_stable_idempotency_key() -> None:
    """ctx.idempotency_key is the same on every attempt of one step."""
    seen: list[tuple[str, str, int, str]] = []

    @workflow
    def ids() -> None:
        @step(retry=Retry(max_attempts=3, base=0))
        async def charge(ctx: Any) -> Any:
            seen.append((ctx.run_id, ctx.step, ctx.attempt, ctx.idempotency_key))
            if ctx.attempt < 3:
                return error("flaky")
            return ok()

    r = run(ids, run_id="run-7")
    assert "run-7" == r.run_id
    assert [("run-7", "charge", n, "run-7:charge") for n in (1, 2, 3)] == seen


def test_a_steps_context_has_every_field_context_init_would_set() -> None:
    """The executor builds a step's Context without calling __init__ (the hot path):
    every field Context declares is set, to what __init__ would set it to."""
    seen: list[Any] = []

    @workflow
    def flaky() -> None:
        @step(retry=Retry(max_attempts=2, base=0))
        async def charge(ctx: Any) -> Any:
            seen.append(ctx)
            return error("once") if ctx.attempt == 1 else ok({"y": 2})

    run(flaky, {"x": 1}, run_id="r-1")
    assert 2 == len(seen)
    for attempt, ctx in enumerate(seen, start=1):
        made = Context(ctx._scope, ctx._version, "r-1", "charge", attempt=attempt, visit=1)
        assert {slot: getattr(made, slot) for slot in Context.__slots__} == {
            slot: getattr(ctx, slot) for slot in Context.__slots__
        }
        assert {"x": 1} == dict(ctx)


def test_context_is_immutable_for_steps() -> None:
    """A step that tries to write into ctx fails; nothing leaks into the context."""

    @workflow
    def mutate() -> None:
        @step
        async def sneaky(ctx: Any) -> Any:
            ctx["x"] = 1

    r = run(mutate)
    assert isinstance(r.error, TypeError)


def test_run_output_is_read_only() -> None:
    """run.output cannot be changed."""

    @workflow
    def simple() -> None:
        step(lambda ctx: 1, name="one")

    output = run(simple).output
    with pytest.raises(TypeError):
        output["one"] = 2  # type: ignore[index]


# -- parallel blocks -------------------------------------------------------------------


def test_parallel_without_into_adds_results_in_declaration_order() -> None:
    """__results__ maps each branch key to Ok(value), in declaration order, whatever finishes first."""

    @workflow
    def fan() -> None:
        with parallel():

            @step
            async def slow(ctx: Any) -> Any:
                for _ in range(5):
                    await asyncio.sleep(0)
                return ok({"s": 1})

            @step(returns="quick")
            async def fast(ctx: Any) -> Any:
                return 2

            with sequence("billing"):

                @step
                async def customer(ctx: Any) -> Any:
                    return ok({"customer": "c1"})

                @step
                async def plan(ctx: Any) -> Any:
                    return ok({"plan": ctx["customer"] + "-pro"})

        @step
        async def after(ctx: Any) -> Any:
            assert parallel_ok(ctx, "slow")
            return ok({"keys": list(parallel_results(ctx))})

    r = run(fan)
    results = r.output["__results__"]
    assert ["slow", "quick", "billing"] == list(results)
    assert Ok({"s": 1}) == results["slow"]
    assert Ok(2) == results["quick"]
    assert Ok({"customer": "c1", "plan": "c1-pro"}) == results["billing"]
    assert ["slow", "quick", "billing"] == r.output["keys"]
    assert "slow" not in r.output  # branch outputs are not merged into the context


def test_branches_see_the_same_snapshot_not_each_other() -> None:
    """Every branch reads the context as it was when the block started."""

    @workflow
    def snap() -> None:
        step(lambda ctx: ok({"v": 1}), name="before")
        with parallel():
            with sequence("left"):
                step(lambda ctx: ok({"v": 10, "left": True}), name="l1")
                step(lambda ctx: ok({"seen_v": ctx["v"], "seen_right": "right" in ctx}), name="l2")
            with sequence("right"):
                step(lambda ctx: ok({"right": True}), name="r1")
                step(lambda ctx: ok({"seen_v": ctx["v"], "seen_left": "left" in ctx}), name="r2")

    results = run(snap).output["__results__"]
    assert {"v": 10, "left": True, "seen_v": 10, "seen_right": False} == results["left"].value
    assert {"right": True, "seen_v": 1, "seen_left": False} == results["right"].value


def test_fail_fast_cancels_running_siblings_and_awaits_them() -> None:
    """The first failure cancels the siblings still running; none outlives the block."""
    state: dict[str, Any] = {}
    started = asyncio.Event()

    @workflow
    def fast_fail() -> None:
        with parallel():

            @step
            async def waits(ctx: Any) -> Any:
                started.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    state["cancelled"] = True
                    raise

            @step
            async def fails(ctx: Any) -> Any:
                await started.wait()
                raise RuntimeError("down")

        @step
        async def never(ctx: Any) -> Any:
            raise AssertionError("must not run")

    r = in_loop(lambda: arun_workflow(fast_fail))
    assert ("failed", "fails") == (r.status, r.failed_step)
    assert isinstance(r.error, RuntimeError)
    assert state["cancelled"] is True


def test_complete_all_keeps_failures_as_values() -> None:
    """complete_all runs every branch and records failures as Err; the run continues."""

    @workflow
    def everyone() -> None:
        with parallel(on_error="complete_all"):
            step(lambda ctx: error("no stock"), name="inventory")
            step(lambda ctx: ok({"paid": True}), name="payment")

        @step
        async def check(ctx: Any) -> Any:
            return ok({"inventory_ok": parallel_ok(ctx, "inventory")})

    r = run(everyone)
    assert "completed" == r.status
    assert Err("no stock") == parallel_result(r.output, "inventory")
    assert r.output["inventory_ok"] is False


def test_into_defaults_to_complete_all_and_gets_results_in_declaration_order() -> None:
    """With into=, failures reach the reducer; __results__ is not added."""
    seen: list[Any] = []

    def reduce(ctx: Any, results: Mapping[str, Any]) -> Any:
        seen.append(list(results.items()))
        return ok({"total": sum(r.value for r in results.values() if isinstance(r, Ok))})

    @workflow
    def summed() -> None:
        with parallel(into=reduce):

            @step
            async def a(ctx: Any) -> Any:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                return 1

            @step
            async def b(ctx: Any) -> Any:
                raise ValueError("b broke")

            step(lambda ctx: 3, name="c")

    r = run(summed)
    assert {"total": 4} == dict(r.output)
    [items] = seen
    assert ["a", "b", "c"] == [key for key, _ in items]
    assert isinstance(items[1][1].error, ValueError)


def test_into_can_route_with_goto_and_fail_with_error() -> None:
    """A reducer's goto routes the run; its error fails it, naming the block."""

    def route(ctx: Any, results: Mapping[str, Any]) -> Any:
        if isinstance(results["stock"], Err):
            return goto("backorder", {"reason": results["stock"].error})
        if isinstance(results["pay"], Err):
            return error("payment issue")
        return ok({"ready": True})

    def build(stock_ok: bool, pay_ok: bool) -> Any:
        @workflow(f"orders_{stock_ok}_{pay_ok}")
        def orders() -> None:
            with parallel(into=route, name="checks"):
                step(lambda ctx: 5 if stock_ok else error("out of stock"), name="stock")
                step(lambda ctx: True if pay_ok else error("declined"), name="pay")
            step(lambda ctx: goto(END, {"shipped": True}), name="ship")
            step(lambda ctx: ok({"backordered": True}), name="backorder")

        return orders

    assert {"ready": True, "shipped": True} == dict(run(build(True, True)).output)
    assert {"reason": "out of stock", "backordered": True} == dict(run(build(False, True)).output)
    failed = run(build(True, False))
    assert ("failed", "payment issue", "checks") == (
        failed.status,
        failed.error,
        failed.failed_step,
    )


async def async_reducer(ctx: Any, results: Mapping[str, Any]) -> Any:
    await asyncio.sleep(0)
    return ok({"n": len(results)})


def test_async_reducer_and_raising_reducer() -> None:
    """An async reducer is awaited; a raising reducer fails the run with its exception."""

    @workflow
    def asynced() -> None:
        with parallel(into=async_reducer):
            step(lambda ctx: 1, name="a")

    def broken(ctx: Any, results: Any) -> Any:
        raise KeyError("missing")

    @workflow
    def raising() -> None:
        with parallel(into=broken, name="fan"):
            step(lambda ctx: 1, name="b")

    assert {"n": 1} == dict(run(asynced).output)
    r = run(raising)
    assert ("fan", KeyError) == (r.failed_step, type(r.error))


def test_goto_inside_a_branch_is_an_error() -> None:
    """A branch can only succeed or fail: goto inside it fails the branch."""

    @workflow
    def bad_branch() -> None:
        with parallel(on_error="complete_all"):
            step(lambda ctx: goto("end"), name="jumper")
        step(lambda ctx: None, name="end")

    r = run(bad_branch)
    reason = r.output["__results__"]["jumper"].error
    assert isinstance(reason, GotoError)
    assert "inside a parallel branch" in str(reason)


def test_nested_parallel_inside_a_sequence_branch() -> None:
    """Blocks nest freely: a parallel inside a sequence inside a parallel."""

    @workflow
    def nested() -> None:
        with parallel(name="outer"):
            with sequence("pipeline"):
                step(lambda ctx: ok({"raw": 2}), name="load")
                with parallel(
                    name="inner",
                    into=lambda ctx, rs: ok({"sum": sum(r.value for r in rs.values())}),
                ):
                    step(lambda ctx: ctx["raw"] * 10, name="x")
                    step(lambda ctx: ctx["raw"] * 100, name="y")
            with parallel(name="side"):
                step(lambda ctx: 7, name="z")

    results = run(nested).output["__results__"]
    assert Ok({"raw": 2, "sum": 220}) == results["pipeline"]
    assert {"z": Ok(7)} == dict(results["side"].value["__results__"])


def test_max_concurrency_bounds_running_branches() -> None:
    """No more than max_concurrency branches run at once, and the bound is reached."""
    running = 0
    peak = 0

    async def branch(ctx: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):
            await asyncio.sleep(0)
        running -= 1

    @workflow
    def limited() -> None:
        with parallel(max_concurrency=3):
            for i in range(10):
                step(branch, name=f"b{i}")

    r = run(limited)
    assert "completed" == r.status
    assert 3 == peak


# -- retries and timeouts ---------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_retry_makes_exactly_max_attempts(attempts: int) -> None:
    """A step that always fails is attempted exactly max_attempts times."""
    calls = 0

    @workflow
    def flaky() -> None:
        @step(retry=Retry(max_attempts=attempts, base=0))
        async def call(ctx: Any) -> Any:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

    r = run(flaky)
    assert attempts == calls
    assert [(n, "failed") for n in range(1, attempts + 1)] == [
        (s.attempt, s.status) for s in r.steps
    ]


def test_retry_recovers_and_error_results_count_as_failed_attempts() -> None:
    """error() is a failed attempt too; a later success completes the step."""

    @workflow
    def recovering() -> None:
        @step(retry=Retry(max_attempts=4, base=0))
        async def call(ctx: Any) -> Any:
            return error("busy") if ctx.attempt < 3 else ok({"attempts": ctx.attempt})

    r = run(recovering)
    assert {"attempts": 3} == dict(r.output)
    assert ["failed", "failed", "succeeded"] == [s.status for s in r.steps]


def test_step_records_are_built_once_and_their_raw_form_is_not_tracked_by_the_collector() -> None:
    """Attempts are kept as plain tuples while a run goes (a collection stops tracking them,
    so a long run's records do not lengthen every full collection); `Run.steps` turns them
    into the same StepRecords, once, and a run built from StepRecords equals it."""

    @workflow
    def recorded() -> None:
        @step(retry=Retry(max_attempts=2, base=0))
        async def call(ctx: Any) -> Any:
            return error("busy") if ctx.attempt == 1 else ok({"n": ctx.attempt})

        @step
        async def after(ctx: Any) -> Any:
            return ok()

    r = run(recorded)
    gc.collect()
    assert not any(gc.is_tracked(raw) for raw in r._steps if raw[5] is None)
    steps = r.steps
    assert all(type(s) is StepRecord for s in steps)
    assert steps is r.steps
    assert [
        ("call", 1, "failed", "busy"),
        ("call", 2, "succeeded", None),
        ("after", 1, "succeeded", None),
    ] == [(s.name, s.attempt, s.status, s.error) for s in steps]
    assert "steps=<3 attempts>" in repr(r)
    assert attrs.evolve(r, steps=steps) == r
    assert attrs.evolve(r, steps=steps[1:]).steps == steps[1:]


def test_retry_on_limits_which_exceptions_are_retried() -> None:
    """An exception outside retry_on fails the step at once."""
    calls = 0

    @workflow
    def picky() -> None:
        @step(retry=Retry(max_attempts=5, base=0, retry_on=ConnectionError))
        async def call(ctx: Any) -> Any:
            nonlocal calls
            calls += 1
            raise ValueError("not transient")

    r = run(picky)
    assert (1, ValueError) == (calls, type(r.error))


def test_retry_waits_the_backoff_between_attempts() -> None:
    """The executor sleeps Retry.delay(n) after the n-th failure."""
    events: list[Event] = []

    @workflow
    def backing_off() -> None:
        @step(retry=Retry(max_attempts=3, backoff="linear", base=0.001))
        async def call(ctx: Any) -> Any:
            return error("again")

    run(backing_off, listeners=[events.append])
    delays = [e.retry_in for e in events if isinstance(e, StepFinished)]
    assert [0.001, 0.002, None] == delays


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("exponential", [0.5, 1.0, 2.0, 3.0]),
        ("linear", [0.5, 1.0, 1.5, 2.0]),
        ("constant", [0.5, 0.5, 0.5, 0.5]),
    ],
)
def test_retry_delay_by_backoff_capped_at_max_delay(backoff: Any, expected: list[float]) -> None:
    """Exponential doubles, linear grows by base, constant stays; all capped at max_delay."""
    policy = Retry(max_attempts=5, backoff=backoff, base=0.5, max_delay=3.0)
    assert expected == [policy.delay(n) for n in range(1, 5)]


def test_retry_jitter_stays_within_its_fraction() -> None:
    """With jitter j the delay lies in [d * (1 - j), d]."""
    import random

    rng = random.Random(7)
    policy = Retry(base=1.0, jitter=0.25, backoff="constant")
    draws = [policy.delay(1, rng) for _ in range(200)]
    assert all(0.75 <= d <= 1.0 for d in draws)
    assert len(set(draws)) > 100


def test_step_timeout_is_a_failed_attempt_and_retried() -> None:
    """A timed-out attempt fails with TimeoutError and is retried."""

    @workflow
    def slow() -> None:
        @step(timeout=0.01, retry=Retry(max_attempts=2, base=0))
        async def hang(ctx: Any) -> Any:
            if ctx.attempt == 1:
                await asyncio.Event().wait()
            return ok({"second": True})

    r = in_loop(lambda: arun_workflow(slow))
    assert {"second": True} == dict(r.output)
    first = r.steps[0]
    assert ("failed", TimeoutError) == (first.status, type(first.error))
    assert "timed out after 0.01s" in str(first.error)


def test_run_timeout_fails_the_run_with_timeout_error() -> None:
    """A run past its timeout is cancelled inside and fails with a TimeoutError reason."""
    cancelled: list[bool] = []

    @workflow("bounded", timeout=0.01)
    def bounded() -> None:
        @step
        async def forever(ctx: Any) -> Any:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

    r = in_loop(lambda: arun_workflow(bounded))
    assert ("failed", "forever", TimeoutError) == (r.status, r.failed_step, type(r.error))
    assert "did not finish within its 0.01s timeout" in str(r.error)
    assert [True] == cancelled


def test_run_call_timeout_overrides_inside_a_parallel_block() -> None:
    """timeout= on the run call bounds the run, cancelling parallel branches."""

    @workflow
    def wide() -> None:
        with parallel():
            for i in range(3):
                step(lambda ctx: asyncio.Event().wait(), name=f"w{i}")

    r = in_loop(lambda: arun_workflow(wide, timeout=0.01))
    assert ("failed", TimeoutError) == (r.status, type(r.error))


# -- compensation -----------------------------------------------------------------------


def test_compensation_runs_in_reverse_completion_order_including_branches() -> None:
    """When a run fails, every completed step's undo runs, last completed first."""
    undone: list[tuple[str, Any]] = []

    def undo(ctx: Any) -> None:
        undone.append((ctx.step, ctx.get(ctx.step)))

    @workflow
    def trip() -> None:
        step(lambda ctx: "F1", name="flight", compensate=undo)
        with parallel():

            @step(compensate=undo)
            async def hotel(ctx: Any) -> Any:
                return "H1"

            @step(compensate=undo)
            async def car(ctx: Any) -> Any:
                await asyncio.sleep(0)
                return "C1"

        @step
        async def pay(ctx: Any) -> Any:
            raise RuntimeError("card declined")

    r = run(trip)
    assert [("car", "C1"), ("hotel", "H1"), ("flight", "F1")] == undone
    assert ["car", "hotel", "flight"] == [c.step for c in r.compensations]
    assert all("succeeded" == c.status for c in r.compensations)


def test_failing_compensation_is_recorded_and_the_rest_still_run() -> None:
    """A compensation that raises is recorded; the others still run."""
    undone: list[str] = []

    async def undo_a(ctx: Any) -> None:
        undone.append("a")

    def undo_b(ctx: Any) -> None:
        raise OSError("cannot undo b")

    @workflow
    def saga() -> None:
        step(lambda ctx: 1, name="a", compensate=undo_a)
        step(lambda ctx: 2, name="b", compensate=undo_b)
        step(lambda ctx: error("stop"), name="c")

    r = run(saga)
    assert ["a"] == undone
    assert [("b", "failed"), ("a", "succeeded")] == [(c.step, c.status) for c in r.compensations]
    assert isinstance(r.compensations[0].error, OSError)


def test_no_compensation_on_success_or_for_failed_steps() -> None:
    """A completed run undoes nothing; the failing step itself is not compensated."""
    undone: list[str] = []

    @workflow
    def fine() -> None:
        step(lambda ctx: 1, name="a", compensate=lambda ctx: undone.append("a"))

    @workflow
    def broken() -> None:
        step(lambda ctx: error("x"), name="b", compensate=lambda ctx: undone.append("b"))

    assert [] == list(run(fine).compensations)
    run(broken)
    assert [] == undone


# -- cancellation and concurrency ----------------------------------------------------------


def test_cancelling_the_caller_cancels_the_run_and_leaves_no_task() -> None:
    """Cancellation from outside propagates, reaches the step, and is reported as cancelled."""
    events: list[Event] = []
    reached = asyncio.Event
    state: dict[str, Any] = {}

    @workflow
    def long() -> None:
        with parallel():

            @step
            async def a(ctx: Any) -> Any:
                state["started"].set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    state["a_cancelled"] = True
                    raise

            step(lambda ctx: asyncio.Event().wait(), name="b")

    async def main() -> None:
        state["started"] = reached()
        task = asyncio.create_task(arun_workflow(long, listeners=[events.append]))
        await state["started"].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    in_loop(main)
    assert state["a_cancelled"] is True
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert "cancelled" == finished.run.status


def test_two_hundred_concurrent_runs_of_one_workflow() -> None:
    """One compiled workflow runs 200 times at once in one loop, each run isolated."""

    @workflow
    def shared() -> None:
        @step
        async def double(ctx: Any) -> Any:
            await asyncio.sleep(0)
            return ok({"out": ctx["n"] * 2})

        with parallel():
            step(lambda ctx: ctx["out"] + 1, name="plus")

    async def main() -> list[Run]:
        return await asyncio.gather(*(arun_workflow(shared, {"n": n}) for n in range(200)))

    runs = in_loop(main)
    assert [n * 2 for n in range(200)] == [r.output["out"] for r in runs]
    assert [Ok(n * 2 + 1) for n in range(200)] == [r.output["__results__"]["plus"] for r in runs]
    assert 200 == len({r.run_id for r in runs})


def test_long_chain_runs_without_recursion() -> None:
    """A 20,000-step chain, each adding a key, completes (no recursion, no quadratic copy)."""

    @workflow
    def chain() -> None:
        for i in range(20_000):
            step(lambda ctx, i=i: ok({f"k{i}": i}), name=f"s{i}")

    r = run(chain)
    assert 20_000 == len(r.output)
    assert 19_999 == r.output["k19999"]


# -- running -----------------------------------------------------------------------------


def test_run_workflow_inside_a_loop_names_arun_workflow() -> None:
    """The sync call from a running loop raises and says what to use instead."""

    @workflow
    def w() -> None:
        step(lambda ctx: None, name="a")

    async def main() -> None:
        with pytest.raises(RunningLoopError, match=r"use 'await arun_workflow\(...\)'") as caught:
            run_workflow(w)
        assert isinstance(caught.value, RuntimeError)
        assert not isinstance(caught.value, TypeError)

    asyncio.run(main())


def test_runs_by_name_and_by_object_and_methods() -> None:
    """run_workflow takes a name or the workflow; wf.run and wf.arun work too."""

    @workflow("by-name")
    def named() -> None:
        step(lambda ctx: ctx["x"] + 1, name="inc")

    assert 2 == run_workflow("by-name", {"x": 1}).output["inc"]
    assert 3 == named.run({"x": 2}).output["inc"]
    assert 4 == asyncio.run(named.arun({"x": 3})).output["inc"]


def test_input_must_be_a_mapping() -> None:
    """A non-mapping input fails before running, with a fix."""

    @workflow
    def w() -> None:
        step(lambda ctx: None, name="a")

    with pytest.raises(UsageError, match="must be a mapping"):
        run_workflow(w, [1, 2])  # type: ignore[arg-type]


def test_events_in_order_for_a_retried_step() -> None:
    """Listeners see started/finished per attempt and RunFinished last."""
    events: list[Event] = []

    @workflow
    def once_flaky() -> None:
        @step(retry=Retry(max_attempts=2, base=0))
        async def call(ctx: Any) -> Any:
            return error("x") if ctx.attempt == 1 else ok()

    run(once_flaky, listeners=[events.append])
    kinds = [
        (type(e).__name__, getattr(e, "attempt", None))
        for e in events
        if isinstance(e, StepStarted | StepFinished | RunFinished)
    ]
    assert [
        ("StepStarted", 1),
        ("StepFinished", 1),
        ("StepStarted", 2),
        ("StepFinished", 2),
        ("RunFinished", None),
    ] == kinds


def test_sync_step_that_overruns_its_timeout_fails_when_it_returns() -> None:
    """A plain function cannot be interrupted, but an attempt past its timeout still fails."""
    import time

    @workflow
    def blocking_sync() -> None:
        @step(timeout=0.001)
        def slow(ctx: Any) -> Any:
            time.sleep(0.01)
            return ok({"late": True})

    r = run(blocking_sync)
    assert ("failed", "slow", TimeoutError) == (r.status, r.failed_step, type(r.error))
    assert "late" not in r.output


def test_goto_pickles_and_compares_by_value() -> None:
    """A Goto survives pickling (it crosses process boundaries) and is equal by value."""
    import pickle

    jump = goto("retry", {"n": 1})
    assert jump == pickle.loads(pickle.dumps(jump))
    assert goto(END) == pickle.loads(pickle.dumps(goto(END)))


def test_goto_rejects_a_bad_target_or_update_with_the_fix() -> None:
    """goto() takes a step name or END, and a mapping to merge."""
    with pytest.raises(TypeError, match=r"write goto\('step_name'\) or goto\(END\)"):
        goto(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes a mapping to merge into the context, got list"):
        goto("next", [1])  # type: ignore[arg-type]
    assert "goto('next', {'a': 1})" == repr(goto("next", {"a": 1}))
    assert "goto(END)" == repr(goto(END))


def test_results_helpers_say_what_is_missing() -> None:
    """Without __results__, or for an unknown branch, the helpers name the problem."""
    with pytest.raises(KeyError, match="no parallel results in this context"):
        parallel_results({})
    results = {"__results__": {"a": Ok(1), "b": Err("x")}}
    with pytest.raises(KeyError, match="no branch 'c'; its branches: 'a', 'b'"):
        parallel_result(results, "c")
    assert (True, False) == (parallel_ok(results, "a"), parallel_ok(results, "b"))


def test_a_steps_own_timeout_error_is_not_mistaken_for_its_step_timeout() -> None:
    """A TimeoutError the step raises itself (a client's timeout) is kept as it is."""

    class ClientTimeout(TimeoutError):
        pass

    @workflow
    def calls_api() -> None:
        @step(timeout=30)
        async def call_api(ctx: Any) -> Any:
            raise ClientTimeout("read timed out")

    r = run(calls_api)
    assert (ClientTimeout, "read timed out") == (type(r.error), str(r.error))


def test_a_cancel_during_a_fail_fast_abort_is_not_swallowed() -> None:
    """A cancel arriving while a failed block waits for a sibling's cleanup still cancels."""
    in_cleanup = asyncio.Event
    state: dict[str, Any] = {}

    @workflow
    def aborting() -> None:
        with parallel():

            @step
            async def boom(ctx: Any) -> Any:
                await state["slow_started"].wait()
                raise RuntimeError("boom")

            @step
            async def slow(ctx: Any) -> Any:
                state["slow_started"].set()
                try:
                    await asyncio.Event().wait()
                finally:
                    state["cleaning"].set()
                    await state["cleaned"].wait()  # async cleanup while being cancelled

    async def main() -> None:
        state.update(slow_started=in_cleanup(), cleaning=in_cleanup(), cleaned=in_cleanup())
        task = asyncio.create_task(arun_workflow(aborting))
        await state["cleaning"].wait()  # boom failed; slow is cancelled and cleaning up
        task.cancel()
        await asyncio.sleep(0)
        state["cleaned"].set()
        with pytest.raises(asyncio.CancelledError):
            await task

    in_loop(main)


def test_a_cancel_during_compensation_is_reported_then_raised() -> None:
    """Listeners still get RunFinished (cancelled) when compensation is cancelled."""
    events: list[Event] = []
    state: dict[str, Any] = {}

    async def undo(ctx: Any) -> None:
        state["undoing"].set()
        await asyncio.Event().wait()

    @workflow
    def undone() -> None:
        step(lambda ctx: 1, name="a", compensate=undo)
        step(lambda ctx: error("stop"), name="b")

    async def main() -> None:
        state["undoing"] = asyncio.Event()
        task = asyncio.create_task(arun_workflow(undone, listeners=[events.append]))
        await state["undoing"].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    in_loop(main)
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert ("cancelled", "b") == (last.run.status, last.run.failed_step)


def test_exponential_backoff_never_overflows() -> None:
    """Thousands of attempts keep a finite delay, capped at max_delay."""
    assert 5.0 == Retry(max_attempts=2000, base=0.1, max_delay=5.0).delay(1500)
    assert 0.0 == Retry(max_attempts=2000, base=0, max_delay=0).delay(1025)


def test_run_call_timeout_must_be_a_positive_number() -> None:
    """timeout= on a run call is checked before the run starts."""

    @workflow
    def w() -> None:
        step(lambda ctx: None, name="a")

    for bad in (0, -1, "5", True):
        with pytest.raises(UsageError, match="timeout= must be a number of seconds > 0"):
            run_workflow(w, timeout=bad)


def test_a_wrapped_async_generator_step_still_streams() -> None:
    """A decorator around an async generator step (functools.wraps) is drained like one."""
    import functools

    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(ctx: Any) -> Any:
            return fn(ctx)

        return wrapper

    events: list[Event] = []

    @workflow
    def wrapped() -> None:
        @step
        @logged
        async def tokens(ctx: Any) -> AsyncIterator[Any]:
            yield "a"
            yield ok({"text": "a"})

    r = run(wrapped, listeners=[events.append])
    assert {"text": "a"} == dict(r.output)
    assert ["a"] == [e.data for e in events if isinstance(e, StepChunk)]


def test_unknown_run_options_are_a_usage_error_listing_the_known_ones() -> None:
    """A misspelt option names itself and the options the call takes, for every run call."""

    @workflow
    def opts() -> None:
        step(lambda ctx: None, name="a")

    with pytest.raises(UsageError) as info:
        run_workflow(opts, timout=3)
    message = str(info.value)
    assert "run_workflow() got unknown option 'timout'" in message
    assert "run_id=, store=, timeout=, executors=, listeners=" in message
    with pytest.raises(UsageError, match=r"Workflow\.arun\(\) got unknown option 'retries'"):
        asyncio.run(opts.arun(retries=2))
    with pytest.raises(UsageError, match=r"run_many\(\) got unknown option 'stor'"):
        run_many(opts, [{}], stor="x.db")

    async def stream() -> None:
        async for _ in stream_workflow(opts, executor="thread"):
            pass

    with pytest.raises(UsageError, match=r"stream_workflow\(\) got unknown option 'executor'"):
        asyncio.run(stream())


@pytest.mark.parametrize("bad", [42, "", b"id", 1.5])
def test_run_id_must_be_a_non_empty_string(bad: object) -> None:
    """run_id=42 and run_id='' are refused: a run id is stored and compared as a str."""

    @workflow
    def named_run() -> None:
        step(lambda ctx: None, name="a")

    with pytest.raises(UsageError, match="run_id= must be a non-empty string"):
        run_workflow(named_run, run_id=bad)


# -- listeners -----------------------------------------------------------------------------


def test_a_listener_that_raises_never_changes_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """Later steps run, compensation and RunFinished happen; the error is logged once."""
    ran: list[str] = []
    heard: list[object] = []

    def broken(event: object) -> None:
        raise ValueError("listener bug")

    @workflow
    def heard_anyway() -> None:
        @step(compensate=lambda ctx: ran.append("undo"))
        def first(ctx: Any) -> None:
            ran.append("first")

        @step
        def second(ctx: Any) -> object:
            ran.append("second")
            return error("no")

    with caplog.at_level("ERROR", logger="flowdsl"):
        r = run(heard_anyway, listeners=[broken, heard.append])
    assert "failed" == r.status
    assert "second" == r.failed_step
    assert ["first", "second", "undo"] == ran
    assert isinstance(heard[-1], RunFinished)
    mine = [rec for rec in caplog.records if rec.name == "flowdsl"]
    errors = [rec for rec in mine if rec.getMessage().startswith("listener")]
    assert 1 == len(errors)
    # The run's own failure records (the logger is at ERROR) are the only others.
    assert ["step.failed", "workflow.finished"] == [
        rec.getMessage() for rec in mine if rec not in errors
    ]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ValueError)


def test_an_async_listener_is_refused_at_the_call() -> None:
    """An async def listener would never be awaited: the run call refuses it before running."""
    ran: list[str] = []

    async def listener(event: object) -> None:
        return None

    @workflow
    def never_runs() -> None:
        step(lambda ctx: ran.append("a"), name="a")

    with pytest.raises(UsageError, match="is an async def; listeners are called synchronously"):
        run(never_runs, listeners=[listener])
    with pytest.raises(UsageError, match="is an async def"):
        run_many(never_runs, [{}], listeners=[listener])
    assert [] == ran


# -- the run's deadline, interruptions, compensations (issue: contract gaps) ---------------


def _block_the_loop_past(seconds: float) -> None:
    """A plain sync step's body: keep the event loop busy until `seconds` have passed."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        time.sleep(seconds / 10)


def test_no_step_starts_after_the_run_deadline_a_sync_step_carried_it_past() -> None:
    """A sync step that overruns the run's timeout: the next step never starts."""
    started: list[str] = []

    @workflow(timeout=0.02)
    def carried_past() -> None:
        @step
        def slow(ctx: Any) -> None:
            started.append("slow")
            _block_the_loop_past(0.05)

        @step
        async def after(ctx: Any) -> None:
            started.append("after")

    r = run(carried_past)
    assert ["slow"] == started
    assert ("failed", TimeoutError) == (r.status, type(r.error))
    assert "did not finish within its 0.02s timeout" in str(r.error)
    assert ["slow"] == [rec.name for rec in r.steps]


def test_no_branch_starts_after_the_run_deadline() -> None:
    """In a parallel block, a sync branch that blocks past the deadline stops its siblings
    from starting, whatever the policy."""
    started: list[str] = []

    @workflow(timeout=0.02)
    def wide_past() -> None:
        with parallel(on_error="complete_all"):

            @step
            def blocker(ctx: Any) -> None:
                started.append("blocker")
                _block_the_loop_past(0.05)

            @step
            async def sibling(ctx: Any) -> None:
                started.append("sibling")

        step(lambda ctx: started.append("later"), name="later")

    r = in_loop(lambda: arun_workflow(wide_past))
    assert ["blocker"] == started
    assert ("failed", TimeoutError) == (r.status, type(r.error))


def test_no_retry_starts_after_the_run_deadline() -> None:
    """A retried sync step with no backoff is not tried again past the deadline."""
    attempts: list[int] = []

    @workflow(timeout=0.02)
    def retried_past() -> None:
        @step(retry=Retry(max_attempts=5, base=0))
        def flaky(ctx: Any) -> Any:
            attempts.append(ctx.attempt)
            _block_the_loop_past(0.03)
            return error("again")

    r = run(retried_past)
    assert [1] == attempts
    assert TimeoutError is type(r.error)


def test_a_caller_cancel_at_the_deadline_is_still_a_cancellation() -> None:
    """Cancelled from outside as the deadline also passes: the caller's cancel wins."""
    events: list[Event] = []
    waiting = asyncio.Event

    @workflow(timeout=0.01)
    def racing() -> None:
        @step
        async def waits(ctx: Any) -> None:
            gate["inside"].set()
            await asyncio.Event().wait()

    gate: dict[str, asyncio.Event] = {}

    async def main() -> None:
        gate["inside"] = waiting()
        task = asyncio.create_task(arun_workflow(racing, listeners=[events.append]))
        await gate["inside"].wait()
        _block_the_loop_past(0.02)  # the deadline's timer and our cancel are both due now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    in_loop(main)
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert "cancelled" == last.run.status


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_or_system_exit_in_a_step_records_a_cancelled_run(
    kind: type[BaseException],
) -> None:
    """The run is reported cancelled (RunFinished), then the exception propagates as itself."""
    events: list[Event] = []
    ran: list[str] = []

    @workflow
    def interrupted() -> None:
        @step(compensate=lambda ctx: ran.append("undo"))
        def first(ctx: Any) -> None:
            ran.append("first")

        @step
        def stop(ctx: Any) -> None:
            raise kind()

        step(lambda ctx: ran.append("never"), name="never")

    with pytest.raises(kind):
        run(interrupted, listeners=[events.append])
    assert ["first"] == ran  # no later step, no compensation: it is a cancel, not a failure
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert "cancelled" == last.run.status


def test_keyboard_interrupt_in_a_branch_cancels_the_siblings_and_propagates() -> None:
    """From a branch's task too: siblings are cancelled and awaited, the run is recorded."""
    events: list[Event] = []
    cancelled: list[str] = []

    @workflow
    def branchy() -> None:
        with parallel():

            @step
            async def waits(ctx: Any) -> None:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.append("waits")
                    raise

            @step
            async def interrupts(ctx: Any) -> None:
                await asyncio.sleep(0)
                raise KeyboardInterrupt

    async def main() -> None:
        with pytest.raises(KeyboardInterrupt):
            await arun_workflow(branchy, listeners=[events.append])

    in_loop(main)
    assert ["waits"] == cancelled
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert "cancelled" == last.run.status


def test_a_compensation_returning_error_is_a_failed_compensation() -> None:
    """error(reason) from undo is recorded as failed with its reason; the rest still run."""
    undone: list[str] = []

    @workflow
    def refused() -> None:
        step(lambda ctx: 1, name="a", compensate=lambda ctx: undone.append("a"))
        step(lambda ctx: 2, name="b", compensate=lambda ctx: error("refund declined"))
        step(lambda ctx: error("stop"), name="c")

    r = run(refused)
    assert ["a"] == undone
    assert [("b", "failed", "refund declined"), ("a", "succeeded", None)] == [
        (c.step, c.status, c.error) for c in r.compensations
    ]


@pytest.mark.parametrize("bound", ["step", "run"])
def test_a_hanging_compensation_is_bounded(bound: str) -> None:
    """By its step's timeout=, else the run's: it fails with TimeoutError, the rest still run."""
    undone: list[str] = []

    async def hangs(ctx: Any) -> None:
        await asyncio.Event().wait()

    step_timeout = 0.01 if bound == "step" else None
    run_timeout = 0.01 if bound == "run" else None

    async def two(ctx: Any) -> int:  # cannot time out itself: it never yields
        return 2

    @workflow("hanging_undo", timeout=run_timeout)
    def hanging_undo() -> None:
        step(lambda ctx: 1, name="a", compensate=lambda ctx: undone.append("a"))
        step(two, name="b", compensate=hangs, timeout=step_timeout)
        step(lambda ctx: error("stop"), name="c")

    r = in_loop(lambda: arun_workflow(hanging_undo))
    assert "failed" == r.status
    assert ["a"] == undone
    b = r.compensations[0]
    assert ("b", "failed", TimeoutError) == (b.step, b.status, type(b.error))
    assert "did not finish within 0.01s" in str(b.error)


def test_a_run_that_timed_out_still_compensates() -> None:
    """The compensation window is counted afresh after a run's own timeout."""
    undone: list[str] = []

    async def undo(ctx: Any) -> None:
        await asyncio.sleep(0)
        undone.append(ctx.step)

    @workflow("timed_out_undo", timeout=0.01)
    def timed_out_undo() -> None:
        step(lambda ctx: 1, name="a", compensate=undo)
        step(lambda ctx: asyncio.Event().wait(), name="forever")

    r = in_loop(lambda: arun_workflow(timed_out_undo))
    assert (TimeoutError, ["a"]) == (type(r.error), undone)
    assert "succeeded" == r.compensations[0].status


def test_a_blocking_sibling_does_not_hold_up_run_workflow() -> None:
    """fail_fast abandons a blocking=True sibling; run_workflow returns while it still runs."""
    release = threading.Event()
    inside = threading.Event()
    finished = threading.Event()

    @workflow
    def abandon() -> None:
        with parallel():

            @step(blocking=True)
            def blocked(ctx: Any) -> None:
                inside.set()
                release.wait(timeout=30)
                finished.set()

            @step
            async def fails(ctx: Any) -> Any:
                await asyncio.to_thread(inside.wait, 30)
                return error("no")

    try:
        r = run(abandon)
        assert ("failed", "fails") == (r.status, r.failed_step)
        assert not finished.is_set()  # returned while the thread is still blocked
    finally:
        release.set()
    assert finished.wait(timeout=30)


# -- deep isolation of the context ---------------------------------------------------------


def test_a_branch_cannot_change_what_its_sibling_or_the_caller_sees() -> None:
    """ctx['cart']['coupon'] = ... fails that branch; the sibling and the input are untouched."""
    seen: list[Any] = []
    data = {"cart": {"coupon": None, "items": ["a"]}}

    @workflow
    def shopping() -> None:
        with parallel(on_error="complete_all"):

            @step
            async def meddle(ctx: Any) -> None:
                ctx["cart"]["coupon"] = "FREE"

            @step
            async def sibling(ctx: Any) -> None:
                await asyncio.sleep(0)
                seen.append(ctx["cart"]["coupon"])

        @step
        def copy_then_change(ctx: Any) -> Any:
            cart = dict(ctx["cart"])
            cart["items"] = [*cart["items"], "b"]
            return ok({"cart": cart})

    r = run(shopping, data)
    assert [None] == seen
    meddled = parallel_result(r.output, "meddle")
    assert isinstance(meddled.error, UsageError)
    assert "copy of it" in str(meddled.error)
    assert {"cart": {"coupon": None, "items": ["a"]}} == data  # the caller's input
    assert ["a", "b"] == r.output["cart"]["items"]


def test_an_output_the_step_changes_later_is_not_changed_in_the_context() -> None:
    """What a step returned is copied as it enters the context: its later edits do not leak."""
    kept: dict[str, list[str]] = {"items": ["a"]}

    @workflow
    def leaky() -> None:
        step(lambda ctx: ok({"items": kept["items"]}), name="give")
        step(lambda ctx: kept["items"].append("sneaked"), name="change_own_copy")
        step(lambda ctx: ok({"count": len(ctx["items"])}), name="count")

    r = run(leaky)
    assert (1, ["a"]) == (r.output["count"], r.output["items"])


# -- seams: cancelled attempts, the attempt hook, visits, fingerprints ---------------------


def test_a_cancelled_attempt_is_closed_with_a_cancelled_step_finished() -> None:
    """A fail_fast sibling's attempt gets StepFinished(status='cancelled') after StepStarted."""
    events: list[Event] = []

    @workflow
    def racing() -> None:
        with parallel():

            @step
            async def waits(ctx: Any) -> None:
                await asyncio.Event().wait()

            @step
            async def fails(ctx: Any) -> Any:
                await asyncio.sleep(0)
                return error("no")

    r = run(racing, listeners=[events.append])
    assert "failed" == r.status
    waits = [
        (type(e).__name__, getattr(e, "status", None))
        for e in events
        if getattr(e, "step", "") == "waits"
    ]
    assert [("StepStarted", None), ("StepFinished", "cancelled")] == waits


class RecordingHook:
    """An attempt hook that keeps what it saw: enter, ended(outcome), exit(exception)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, object]] = []

    @contextlib.contextmanager
    def __call__(self, node: Any, ctx: Any) -> Iterator[Any]:
        hook = self

        class Seen:
            def ended(self, outcome: object, failed: bool) -> None:
                hook.seen.append(("ended", node.name, ctx.attempt, ("failed" if failed else "ok")))

        self.seen.append(("enter", node.name, ctx.attempt, None))
        try:
            yield Seen()
        except BaseException as exc:
            self.seen.append(("exit", node.name, ctx.attempt, type(exc).__name__))
            raise
        self.seen.append(("exit", node.name, ctx.attempt, None))


def test_the_attempt_hook_wraps_every_attempt_and_is_told_how_it_ended() -> None:
    """Entered and exited once per attempt: successes, failures, retries, timeouts, cancels."""
    from flowdsl._engine._execution import execute

    @workflow
    def hooked() -> None:
        step(lambda ctx: 1, name="plain")

        @step(retry=Retry(max_attempts=2, base=0))
        def flaky(ctx: Any) -> Any:
            return error("again") if ctx.attempt == 1 else ok()

        with parallel():

            @step(timeout=0.01)
            async def slow(ctx: Any) -> None:
                await asyncio.Event().wait()

            @step
            async def sibling(ctx: Any) -> None:
                await asyncio.Event().wait()

    hook = RecordingHook()
    result = asyncio.run(execute(hooked.plan, None, "r1", hook=hook))
    assert ("failed", "slow") == (result.status, result.failed_step)
    assert [
        ("enter", "plain", 1, None),
        ("ended", "plain", 1, "ok"),
        ("exit", "plain", 1, None),
        ("enter", "flaky", 1, None),
        ("ended", "flaky", 1, "failed"),
        ("exit", "flaky", 1, None),
        ("enter", "flaky", 2, None),
        ("ended", "flaky", 2, "ok"),
        ("exit", "flaky", 2, None),
    ] == hook.seen[:9]
    rest = hook.seen[9:]
    assert ("ended", "slow", 1, "failed") in rest  # a timed-out attempt is a failed one
    assert ("exit", "sibling", 1, "CancelledError") in rest  # closed when cancelled
    assert sorted(e[1] for e in rest if e[0] == "enter") == sorted(
        e[1] for e in rest if e[0] == "exit"
    )


def test_step_records_carry_the_visit_and_runs_the_fingerprint() -> None:
    """A goto loop's second visit is visit 2; Run.fingerprint is the definition's."""

    @workflow
    def looping() -> None:
        @step
        def count(ctx: Any) -> Any:
            return ok({"n": ctx.get("n", 0) + 1})

        @step(routes=("count",))
        def again(ctx: Any) -> Any:
            return goto("count") if ctx["n"] < 2 else ok()

    r = run(looping)
    assert [("count", 1), ("again", 1), ("count", 2), ("again", 2)] == [
        (s.name, s.visit) for s in r.steps
    ]
    assert looping.plan.fingerprint == r.fingerprint
