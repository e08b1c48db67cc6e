"""OpenTelemetry: the span tree of a run, the span current in a step, traces across resumes.

Each test gets a fresh SDK `TracerProvider` whose spans go to an
`InMemorySpanExporter`. The global provider can be set only once per process,
so the `spans` fixture does not set it: it replaces
``opentelemetry.trace.get_tracer_provider`` (the one lookup flowdsl makes, once
per run) for the test, and the test's provider is gone afterwards, so no other
test runs traced. `test_the_global_provider_set_by_the_application_is_used`
sets the real global provider, in a child interpreter of its own.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, StatusCode
from polling import serving
from structlog.testing import capture_logs

from flowdsl import (
    Retry,
    Run,
    Store,
    arun_workflow,
    call_workflow,
    error,
    foreach,
    ok,
    parallel,
    run_workflow,
    sleep_for,
    start_workflow,
    step,
    wait_for_event,
    workflow,
)

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl._engine import _execution, _logging
from flowdsl._engine._tracing import run_tracer
from flowdsl.executors import DaskExecutor, Executor, ProcessExecutor

SRC = str(Path(__file__).resolve().parent.parent)

pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


class Spans:
    """The finished spans of the test's provider, and ways to read them as a tree."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    @property
    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.all if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert 1 == len(found), f"{len(found)} spans named {name!r}: {[s.name for s in self.all]}"
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The spans whose parent is `parent`, in the order they started."""
        own = parent.context.span_id  # type: ignore[union-attr]
        found = [s for s in self.all if s.parent is not None and s.parent.span_id == own]
        return sorted(found, key=lambda s: s.start_time or 0)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    yield Spans(exporter)
    provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def exception_events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == "exception"]


def ids(span: ReadableSpan) -> tuple[int, int]:
    context = span.context
    assert context is not None
    return context.trace_id, context.span_id


# -- the span tree --------------------------------------------------------------------------


def test_a_run_has_a_span_and_each_attempt_a_child_span_failed_ones_in_error(
    spans: Spans,
) -> None:
    """One span per attempt under the run's span; a failed attempt is ERROR with its exception."""

    @workflow
    def traced() -> None:
        step(lambda ctx: ok({"a": 1}), name="first")

        @step(retry=Retry(max_attempts=3, base=0))
        def flaky(ctx: Any) -> Any:
            if ctx.attempt == 1:
                raise ValueError("card declined")
            if ctx.attempt == 2:
                return error("still declined")
            return ok()

    run = run_workflow(traced, run_id="t1")
    assert "completed" == run.status
    root = spans.one("workflow traced")
    assert root.parent is None
    assert {
        "flowdsl.run_id": "t1",
        "flowdsl.workflow": "traced",
        "flowdsl.status": "completed",
    } == attrs(root)
    assert StatusCode.UNSET == root.status.status_code
    children = spans.children(root)
    assert [
        ("step first", 1, StatusCode.UNSET, "succeeded"),
        ("step flaky", 1, StatusCode.ERROR, "failed"),
        ("step flaky", 2, StatusCode.ERROR, "failed"),
        ("step flaky", 3, StatusCode.UNSET, "succeeded"),
    ] == [
        (s.name, attrs(s)["flowdsl.attempt"], s.status.status_code, attrs(s)["flowdsl.status"])
        for s in children
    ]
    for child in children:
        assert ("t1", "traced") == (
            attrs(child)["flowdsl.run_id"],
            attrs(child)["flowdsl.workflow"],
        )
        assert child.name.removeprefix("step ") == attrs(child)["flowdsl.step"]
        assert ids(root)[0] == ids(child)[0]
    raised, returned = exception_events(children[1]), exception_events(children[2])
    assert [("ValueError", "card declined")] == [
        (e["exception.type"], e["exception.message"]) for e in raised
    ]
    assert "ValueError: card declined" == children[1].status.description
    assert [{"exception.message": "still declined"}] == returned  # error(reason), not raised
    assert [] == exception_events(children[0]) == exception_events(children[3])
    assert len(spans.all) == 5


def test_a_failed_run_and_a_timed_out_attempt_are_in_error(spans: Spans) -> None:
    @workflow
    def slow() -> None:
        @step(timeout=0.01)
        async def stuck(ctx: Any) -> None:
            await asyncio.Event().wait()

    run = run_workflow(slow, run_id="s1")
    assert ("failed", "stuck") == (run.status, run.failed_step)
    root = spans.one("workflow slow")
    assert (StatusCode.ERROR, "failed") == (root.status.status_code, attrs(root)["flowdsl.status"])
    assert ["TimeoutError"] == [e["exception.type"] for e in exception_events(root)]
    attempt = spans.one("step stuck")
    assert StatusCode.ERROR == attempt.status.status_code
    assert "timed out after 0.01s" in exception_events(attempt)[0]["exception.message"]


def test_the_attempt_span_is_current_inside_the_step_body_wherever_it_runs(spans: Spans) -> None:
    """async, plain, blocking=True and executor="thread" bodies see their attempt's span."""
    seen: dict[str, tuple[int, int, bool]] = {}

    def current(ctx: Any) -> None:
        span = trace.get_current_span()
        context = span.get_span_context()
        seen[ctx.step] = (context.trace_id, context.span_id, span.is_recording())

    @workflow
    def everywhere() -> None:
        @step
        async def on_loop(ctx: Any) -> None:
            current(ctx)

        @step
        def plain(ctx: Any) -> None:
            current(ctx)

        @step(blocking=True)
        def blocking(ctx: Any) -> None:
            current(ctx)

        @step(executor="thread")
        def threaded(ctx: Any) -> None:
            current(ctx)

    assert "completed" == run_workflow(everywhere).status
    for name in ("on_loop", "plain", "blocking", "threaded"):
        assert (*ids(spans.one(f"step {name}")), True) == seen[name]
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached once the run is over


def test_parallel_and_foreach_blocks_have_spans_over_their_branches(spans: Spans) -> None:
    @workflow
    def blocks() -> None:
        with parallel(name="both"):
            step(lambda ctx: ok({"x": 1}), name="left")
            step(lambda ctx: ok({"y": 2}), name="right")

        with foreach(lambda ctx: [10, 20], name="each", on_error="complete_all"):

            @step
            def load(ctx: Any) -> Any:
                return error("odd one") if ctx.index == 1 else ok({"v": ctx.item})

    run = run_workflow(blocks, run_id="b1")
    assert "completed" == run.status
    root = spans.one("workflow blocks")
    both, each = spans.children(root)
    assert ("parallel both", "foreach each") == (both.name, each.name)
    assert {"flowdsl.run_id": "b1", "flowdsl.workflow": "blocks", "flowdsl.block": "both"} == (
        attrs(both)
    )
    assert ["step left", "step right"] == sorted(s.name for s in spans.children(both))
    items = sorted(spans.children(each), key=lambda s: attrs(s)["flowdsl.step"])
    assert [("load[0]", StatusCode.UNSET), ("load[1]", StatusCode.ERROR)] == [
        (attrs(s)["flowdsl.step"], s.status.status_code) for s in items
    ]
    assert StatusCode.UNSET == each.status.status_code  # complete_all: the block itself succeeded


def test_a_failed_block_is_in_error(spans: Spans) -> None:
    @workflow
    def failing() -> None:
        with foreach(lambda ctx: [1, 2], name="each"):

            @step
            def boom(ctx: Any) -> Any:
                raise RuntimeError(f"item {ctx.item}")

    run = run_workflow(failing)
    assert "failed" == run.status
    block = spans.one("foreach each")
    assert StatusCode.ERROR == block.status.status_code
    assert "RuntimeError" == exception_events(block)[0]["exception.type"]


def test_waits_have_spans_a_timed_out_one_in_error(spans: Spans) -> None:
    @workflow
    def waits() -> None:
        sleep_for(0, name="nap")
        wait_for_event("approved", timeout=0.01)

    run = run_workflow(waits, run_id="w1")
    assert ("failed", "approved") == (run.status, run.failed_step)
    root = spans.one("workflow waits")
    nap, approved = spans.children(root)
    assert ("wait nap", StatusCode.UNSET) == (nap.name, nap.status.status_code)
    assert {"flowdsl.run_id": "w1", "flowdsl.workflow": "waits", "flowdsl.step": "nap"} == attrs(
        nap
    )
    assert ("wait approved", StatusCode.ERROR) == (approved.name, approved.status.status_code)
    assert "TimeoutError" == exception_events(approved)[0]["exception.type"]


def test_a_child_runs_span_is_a_child_of_its_call_nodes_attempt_span(spans: Spans) -> None:
    @workflow("payment")
    def payment() -> None:
        step(lambda ctx: ok({"charged": ctx["amount"]}), name="charge")

    @workflow
    def order() -> None:
        call_workflow("payment", input={"amount": 3}, returns="paid", name="pay")

    run = run_workflow(order, run_id="o1")
    assert "completed" == run.status
    root = spans.one("workflow order")
    (call,) = spans.children(root)
    assert ("call pay", "pay", 1) == (
        call.name,
        attrs(call)["flowdsl.step"],
        attrs(call)["flowdsl.attempt"],
    )
    (child,) = spans.children(call)
    assert "workflow payment" == child.name
    assert {
        "flowdsl.run_id": "o1/pay#1",
        "flowdsl.workflow": "payment",
        "flowdsl.parent_id": "o1",
        "flowdsl.status": "completed",
    } == attrs(child)
    (charge,) = spans.children(child)
    assert ("o1/pay#1", "payment") == (
        attrs(charge)["flowdsl.run_id"],
        attrs(charge)["flowdsl.workflow"],
    )


def test_compensations_have_spans_naming_the_step_undone(spans: Spans) -> None:
    def undo_hold(ctx: Any) -> None:
        raise OSError("hold not released")

    @workflow
    def booking() -> None:
        step(lambda ctx: ok({"a": 1}), name="reserve", compensate=lambda ctx: None)
        step(lambda ctx: ok({"b": 1}), name="hold", compensate=undo_hold)

        @step
        def pay(ctx: Any) -> Any:
            return error("declined")

    run = run_workflow(booking, run_id="c1")
    assert "failed" == run.status
    root = spans.one("workflow booking")
    undone = [s for s in spans.children(root) if s.name.startswith("compensate ")]
    assert [
        ("compensate hold", "hold", StatusCode.ERROR),
        ("compensate reserve", "reserve", StatusCode.UNSET),
    ] == [(s.name, attrs(s)["flowdsl.step"], s.status.status_code) for s in undone]
    assert "OSError" == exception_events(undone[0])[0]["exception.type"]
    assert {"flowdsl.run_id": "c1", "flowdsl.workflow": "booking", "flowdsl.step": "hold"} == (
        attrs(undone[0])
    )


def test_the_log_context_and_the_span_are_both_bound_in_a_step(spans: Spans) -> None:
    """With structlog configured too, the two attempt hooks are one: both hold in the body."""
    seen: list[tuple[object, int]] = []

    @workflow
    def both() -> None:
        @step
        def look(ctx: Any) -> None:
            bound = structlog.contextvars.get_contextvars()
            seen.append((bound.get("step"), trace.get_current_span().get_span_context().span_id))

    try:
        with capture_logs():
            assert "completed" == run_workflow(both).status
    finally:
        structlog.reset_defaults()
    assert [("look", ids(spans.one("step look"))[1])] == seen


# -- executors in other processes -----------------------------------------------------------


def _remote_span(ctx: Any) -> Any:
    """Runs in a worker process: what span is current there."""
    from opentelemetry import trace as remote_trace

    span = remote_trace.get_current_span()
    context = span.get_span_context()
    return ok(
        {
            "ids": [context.trace_id, context.span_id],
            "kind": type(span).__name__,
            "recording": span.is_recording(),
            "remote": context.is_remote,
        }
    )


@pytest.fixture(params=["process", "dask"])
def far(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """A process pool, or a Dask cluster's workers: steps run in other processes."""
    if request.param == "process":
        with ProcessExecutor(max_workers=1) as pool:
            yield pool
    else:
        with DaskExecutor(request.getfixturevalue("dask_client")) as cluster:
            yield cluster


def test_a_step_in_another_process_sees_the_attempts_span_context(
    spans: Spans, far: Executor
) -> None:
    """There a non-recording span with the attempt's context is current while the body runs."""

    @workflow
    def remote() -> None:
        step(_remote_span, name="far", executor="far")

    run = run_workflow(remote, executors={"far": far})
    assert "completed" == run.status, run.error
    assert list(ids(spans.one("step far"))) == run.output["ids"]
    assert (NonRecordingSpan.__name__, False, True) == (
        run.output["kind"],
        run.output["recording"],
        run.output["remote"],
    )


# -- durable runs: one trace across executions ----------------------------------------------


class Gate:
    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()


def _paused(gate: Gate) -> Any:
    @workflow
    def paused() -> None:
        step(lambda ctx: ok({"a": 1}), name="one")

        @step
        async def two(ctx: Any) -> Any:
            if not gate.release.is_set():
                gate.reached.set()
                await gate.release.wait()
            return ok({"b": 2})

    return paused


async def _cancel_then_resume(paused: Any, gate: Gate, store: Store, outer: Any) -> Run:
    """Start the run (under span `outer`, or none), cancel it at the gate, resume it."""
    tracer = trace.get_tracer_provider().get_tracer("test")

    async def first() -> None:
        if outer is None:
            await arun_workflow(paused, run_id="r1", store=store)
        else:
            with tracer.start_as_current_span(outer):
                await arun_workflow(paused, run_id="r1", store=store)

    task = asyncio.ensure_future(first())
    await gate.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.release.set()
    with tracer.start_as_current_span("resumer"):
        return await arun_workflow(paused, run_id="r1", store=store)


@pytest.mark.parametrize("outer", [None, "request"])
def test_a_resumed_runs_spans_are_in_the_trace_of_its_first_ones(
    spans: Spans, store: Store, outer: str | None
) -> None:
    """Cancelled midway then resumed (SQLite, and PostgreSQL when configured): one trace."""
    gate = Gate()
    paused = _paused(gate)
    run = asyncio.run(_cancel_then_resume(paused, gate, store, outer))
    assert "completed" == run.status
    first, second = sorted(spans.named("workflow paused"), key=lambda s: s.start_time or 0)
    assert "cancelled" == attrs(first)["flowdsl.status"]
    assert StatusCode.UNSET == first.status.status_code
    assert (True, "completed") == (
        attrs(second)["flowdsl.resumed"],
        attrs(second)["flowdsl.status"],
    )
    resumer = spans.one("resumer")
    traced = [s for s in spans.all if s is not resumer]
    assert {ids(first)[0]} == {ids(s)[0] for s in traced}  # every span of the run, one trace
    assert ids(first)[0] != ids(resumer)[0]
    if outer is None:  # the first execution had no parent: the later ones hang under it
        assert first.parent is None
        assert second.parent is not None
        assert ids(first)[1] == second.parent.span_id
    else:  # both under the context that first started the run
        request = spans.one(outer)
        assert ids(request)[1] == first.parent.span_id == second.parent.span_id  # type: ignore[union-attr]
    assert [ids(resumer)] == [
        (link.context.trace_id, link.context.span_id) for link in second.links
    ]
    cut = [s for s in spans.children(first) if s.name == "step two"]
    assert [("cancelled", StatusCode.UNSET)] == [
        (attrs(s)["flowdsl.status"], s.status.status_code) for s in cut
    ]
    steps = [s.name for s in spans.children(first) if s.name.startswith("step ")]
    assert (["step one", "step two"], ["step two"]) == (  # "one" was replayed: no span
        steps,
        [s.name for s in spans.children(second)],
    )


def test_a_queued_runs_parent_is_the_context_current_at_start_workflow(
    spans: Spans, store: Store
) -> None:
    """A worker runs the run (and its queued child run) in the trace of start_workflow's caller."""

    @workflow("payment")
    def payment() -> None:
        step(lambda ctx: ok({"charged": 1}), name="charge")

    @workflow
    def queued() -> None:
        step(lambda ctx: ok({"a": 1}), name="one")
        call_workflow("payment", returns="paid", name="pay")

    tracer = trace.get_tracer_provider().get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        handle = start_workflow(queued, store=store, run_id="q1")
    with serving(store, poll=0.02):
        run = handle.result(timeout=60)
    assert "completed" == run.status, run.error
    root = spans.one("workflow queued")
    assert root.parent is not None
    assert (request.get_span_context().trace_id, request.get_span_context().span_id) == (
        root.parent.trace_id,
        root.parent.span_id,
    )
    calls = spans.named("call pay")  # the parent may wait for the child parked, then resume
    child = spans.one("workflow payment")
    assert child.parent is not None
    assert child.parent.span_id in {ids(call)[1] for call in calls}
    assert {ids(root)[0]} == {ids(s)[0] for s in spans.all}


# -- untraced runs --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", [trace.ProxyTracerProvider, trace.NoOpTracerProvider])
def test_without_a_tracer_provider_no_span_is_made_and_no_hook(
    monkeypatch: pytest.MonkeyPatch, provider: type[Any]
) -> None:
    """The API's own providers (unset: its proxy; or a no-op one) mean an untraced run.

    Nothing reads the log context either (no `LogContextFilter` made, as in a
    process that never made one), so the run has no attempt hook at all.
    """
    monkeypatch.setattr(trace, "get_tracer_provider", provider)
    monkeypatch.setattr(_logging, "_filters_made", False)
    assert not structlog.is_configured()
    hooks: list[object] = []

    class Watched(_execution._Execution):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            hooks.append(self.hook)

    monkeypatch.setattr(_execution, "_Execution", Watched)
    valid: list[bool] = []

    @workflow
    def plain() -> None:
        @step
        def look(ctx: Any) -> None:
            valid.append(trace.get_current_span().get_span_context().is_valid)

    assert run_tracer("plain", "r") is None
    assert "completed" == run_workflow(plain).status
    assert ([None], [False]) == (hooks, valid)


_CHILD = """
import sys
import flowdsl
from flowdsl import ok, run_workflow, step, workflow
from flowdsl._engine._tracing import run_tracer
from flowdsl.executors import DaskExecutor, Executor, ProcessExecutor

@workflow
def plain():
    step(lambda ctx: ok({"a": 1}), name="one")

assert run_workflow(plain).status == "completed"
assert "opentelemetry" not in sys.modules, "flowdsl imported opentelemetry"
assert run_tracer("plain", "r") is None

from opentelemetry import trace
assert run_tracer("plain", "r") is None  # imported, no provider set: the proxy
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
assert run_workflow(plain).status == "completed"
print(sorted(span.name for span in exporter.get_finished_spans()))
"""


def test_the_global_provider_set_by_the_application_is_used() -> None:
    """In a fresh interpreter: untraced until the application sets a provider, then traced."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    assert "['step one', 'workflow plain']" == done.stdout.strip()


def test_the_guides_example_runs_and_prints_what_it_says() -> None:
    """docs/observability.md's OpenTelemetry example, in a fresh interpreter (it sets the
    global provider, which no test process may keep): its output is the one shown."""
    page = (Path(SRC) / "docs" / "observability.md").read_text()
    section = page.split("\n## OpenTelemetry\n", 1)[1]
    (code,) = re.findall(r"^```py\n(.*?)^```", section, flags=re.M | re.S)
    shown = [line.removeprefix("# ") for line in code.splitlines() if line.startswith("# ")]
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert (0, "") == (done.returncode, done.stderr)
    assert 3 == len(shown)
    assert shown == done.stdout.splitlines()
