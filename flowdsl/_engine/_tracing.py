"""OpenTelemetry spans of runs (``flowdsl[otel]``, on ``opentelemetry-api`` alone).

A run is traced when the application set a global tracer provider
(``opentelemetry.trace.set_tracer_provider``, or ``OTEL_PYTHON_TRACER_PROVIDER``):
`run_tracer` looks it up once per run and returns None when opentelemetry was
never imported or the provider is the API's default (its proxy, or a no-op
one), so an untraced run builds nothing and its steps keep the engine's fast
path. opentelemetry is not imported here: an application that set a provider
has imported it.

A traced run has a span ``workflow {name}``; under it a span per step attempt
(``step {name}``, ``call {name}`` for a ``call_workflow`` attempt), per
parallel or foreach block, per wait and per compensation; a child run's span
is a child of its call's attempt span. Every span carries ``flowdsl.run_id``
and ``flowdsl.workflow``; attempt spans ``flowdsl.step`` and
``flowdsl.attempt``, wait spans ``flowdsl.step`` (the wait), compensation
spans ``flowdsl.step`` (the step undone), block spans ``flowdsl.block``; run
and attempt spans say how they ended in ``flowdsl.status``. A span whose
work failed has status ERROR and the failure as an ``exception`` event. The
attempt span is the current span while the step's body runs (its task, its
thread), and a process or Dask worker runs the body under a non-recording
span with the attempt's context (`carrier` and `remote`, W3C
``traceparent``).

The run span's parent is the context current when the run starts, except for
a durable run whose journal holds a trace parent (entry kind `TRACE`): a
queued run's (the context current at ``start_workflow``), or the one a
resumed run's first execution journaled (its own parent, or, when it had
none, its own span), so every execution of a run is in one trace.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from .._plan import CallNode
from ..result import Err, Ok
from ._policies import Failed
from ._seams import TRACE, Entry

if TYPE_CHECKING:
    from .._plan import StepNode
    from ._context import Context
    from ._run import Run
    from ._seams import Attempt, AttemptHook, Journal

__all__ = [
    "TRACE_NAME",
    "RunTracer",
    "carrier",
    "remote",
    "run_tracer",
    "unattach",
    "with_tracing",
]

_API: Final = "opentelemetry.trace"
TRACE_NAME: Final = ""
"""The name (and visit 1) of the journal entry of kind `TRACE` holding a run's trace parent."""
_NAME: Final = "flowdsl"


class _Otel:
    """The opentelemetry API modules flowdsl uses, once opentelemetry is imported."""

    __slots__ = ("context", "defaults", "propagator", "trace")

    def __init__(self, trace: Any) -> None:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.trace = trace
        self.context = context
        self.propagator = TraceContextTextMapPropagator()
        self.defaults = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        """The API's own providers: none was set (its proxy), or a no-op one was."""


_otel: list[_Otel] = []
_last: list[Any] = [None, None]  # the provider a tracer was last made from, and that tracer


def _api() -> _Otel | None:
    """The API, or None when opentelemetry was never imported in this process."""
    if _otel:
        return _otel[0]
    trace = sys.modules.get(_API)
    if trace is None:
        return None
    _otel.append(_Otel(trace))
    return _otel[0]


def run_tracer(workflow: str, run_id: str) -> RunTracer | None:
    """The run's tracer, or None when no tracer provider is set (nothing is traced)."""
    api = _otel[0] if _otel else _api()
    if api is None:
        return None
    provider = api.trace.get_tracer_provider()
    if isinstance(provider, api.defaults):
        return None
    if _last[0] is not provider:  # one tracer per provider in a row
        version = getattr(sys.modules.get(_NAME), "__version__", None)
        _last[1] = provider.get_tracer(_NAME, version)
        _last[0] = provider
    return RunTracer(api, _last[1], workflow, run_id)


def carrier(context: Any = None) -> dict[str, str] | None:
    """The W3C trace context (``traceparent``, ``tracestate``) of `context` (default: the
    current one), or None when it holds no valid span (or opentelemetry is not imported)."""
    api = _otel[0] if _otel else _api()
    if api is None or not api.trace.get_current_span(context).get_span_context().is_valid:
        return None
    found: dict[str, str] = {}
    api.propagator.inject(found, context)
    return found


def remote(found: object) -> object:
    """In a worker: make a non-recording span with the trace context `found` current.

    Returns the token to give `unattach`, or None (no context came, or
    opentelemetry is not installed here: the body runs untraced).
    """
    if not isinstance(found, dict):
        return None
    if not _otel:
        try:
            import opentelemetry.trace as trace
        except ImportError:
            return None
        _otel.append(_Otel(trace))
    api = _otel[0]
    return api.context.attach(api.propagator.extract(found))


def unattach(token: object) -> None:
    """Undo `remote`."""
    if token is not None and _otel:
        _otel[0].context.detach(token)


def _failed(trace: Any, span: Any, reason: object) -> None:
    """Mark `span` as failed by `reason`: status ERROR, the reason as an ``exception`` event."""
    if isinstance(reason, BaseException):
        span.record_exception(reason)
        description = f"{type(reason).__name__}: {reason}"
    else:  # error(reason) with a reason that is not an exception
        description = str(reason)
        span.add_event("exception", {"exception.message": description})
    span.set_status(trace.Status(trace.StatusCode.ERROR, description))


class Scoped:
    """A span made current while a block, a wait or a compensation runs (a context manager).

    An exception leaving it is its failure (a `Failed` one by its reason);
    a cancellation is not. `fail` marks a failure that is returned, not raised.
    """

    __slots__ = ("api", "marked", "span", "token")

    def __init__(self, api: _Otel, span: Any) -> None:
        self.api = api
        self.span = span
        self.marked = False
        self.token: object = None

    def __enter__(self) -> Self:
        api = self.api
        self.token = api.context.attach(api.trace.set_span_in_context(self.span))
        return self

    def fail(self, reason: object) -> None:
        if not self.marked:
            self.marked = True
            _failed(self.api.trace, self.span, reason)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                self.escaped(exc)
        finally:
            self.api.context.detach(self.token)
            self.span.end()

    def escaped(self, exc: BaseException) -> None:
        """`exc` leaves the span: a failure, unless it is a cancellation (or an interrupt)."""
        if isinstance(exc, Exception):
            self.fail(exc.reason if isinstance(exc, Failed) else exc)


class _AttemptSpan(Scoped):
    """The attempt hook's context manager: the attempt's span, current while the body runs.

    ``flowdsl.status`` is the attempt's: "succeeded", "failed", or "cancelled"
    when it did not run to an outcome here (cancelled, or its run parked).
    """

    __slots__ = ()

    def ended(self, outcome: object, failed: bool) -> None:
        self.span.set_attribute("flowdsl.status", "failed" if failed else "succeeded")
        if failed:
            self.fail(outcome.error)  # type: ignore[attr-defined]
        else:
            self.marked = True  # the attempt succeeded: nothing after this is its failure

    def escaped(self, exc: BaseException) -> None:
        if self.marked:  # ended: the engine re-raises a failure it reported already
            return
        if isinstance(exc, Exception):
            self.ended(Err(exc), True)
        else:
            self.span.set_attribute("flowdsl.status", "cancelled")


class _RunSpan(Scoped):
    """The run's span: ``flowdsl.status`` says how the run ended (ERROR when it failed)."""

    __slots__ = ()

    def ended(self, run: Run) -> None:
        self.span.set_attribute("flowdsl.status", run.status)
        if run.status == "failed":
            self.fail(run.error)

    def escaped(self, exc: BaseException) -> None:
        if isinstance(exc, Exception):
            self.fail(exc)
        else:  # cancelled (or interrupted): recorded as cancelled, no failure
            self.span.set_attribute("flowdsl.status", "cancelled")


class RunTracer:
    """One traced run: its span, and the spans of everything that runs in it.

    Called as ``tracer(node, ctx)`` it is the run's `AttemptHook`.
    """

    __slots__ = ("api", "attributes", "entry", "tracer", "workflow")

    def __init__(self, api: _Otel, tracer: Any, workflow: str, run_id: str) -> None:
        self.api = api
        self.tracer = tracer
        self.workflow = workflow
        self.attributes: dict[str, object] = {
            "flowdsl.run_id": run_id,
            "flowdsl.workflow": workflow,
        }
        self.entry: Entry | None = None
        """The trace parent to journal when the run starts (a durable run's first execution)."""

    def run(self, journal: Journal | None, resumed: bool, parent_id: str | None) -> _RunSpan:
        """The run's span (entered around the run), parented as the module docstring says."""
        trace = self.api.trace
        attributes = dict(self.attributes)
        if parent_id is not None:
            attributes["flowdsl.parent_id"] = parent_id
        if resumed:
            attributes["flowdsl.resumed"] = True
        parent = None
        links = None
        if journal is not None:
            _, recorded = journal.replayed(TRACE, TRACE_NAME, 1)
            if type(recorded) is Ok and isinstance(recorded.value, Mapping):
                parent = self.api.propagator.extract(dict(recorded.value))
                here = trace.get_current_span().get_span_context()
                if here.is_valid:  # who resumed it is linked; the trace stays the first one's
                    links = [trace.Link(here)]
        span = self.tracer.start_span(
            f"workflow {self.workflow}", context=parent, attributes=attributes, links=links
        )
        if journal is not None and parent is None:
            above = carrier()
            own = above if above is not None else carrier(trace.set_span_in_context(span))
            self.entry = Entry(
                kind=TRACE,
                name=TRACE_NAME,
                visit=1,
                attempt=1,
                outcome=Ok(own),
                failed=False,
                retrying=False,
                started=time.time(),
                duration=0.0,
            )
        return _RunSpan(self.api, span)

    def __call__(self, node: StepNode | CallNode, ctx: Context) -> _AttemptSpan:
        attributes = dict(self.attributes)
        attributes["flowdsl.step"] = ctx.step
        attributes["flowdsl.attempt"] = ctx.attempt
        name = ("call " if type(node) is CallNode else "step ") + ctx.step
        return _AttemptSpan(self.api, self.tracer.start_span(name, attributes=attributes))

    def scoped(self, what: str, name: str, key: str) -> Scoped:
        """A span ``{what} {name}`` with ``{key}: name`` (a block, a wait, a compensation)."""
        attributes = dict(self.attributes)
        attributes[key] = name
        return Scoped(self.api, self.tracer.start_span(f"{what} {name}", attributes=attributes))


class _Both:
    """Two attempt hooks as one: `outer`'s context manager around `inner`'s."""

    __slots__ = ("inner", "outer")

    def __init__(self, outer: AttemptHook, inner: AttemptHook) -> None:
        self.outer = outer
        self.inner = inner

    def __call__(self, node: StepNode | CallNode, ctx: Context) -> _BothAttempt:
        return _BothAttempt(self.outer(node, ctx), self.inner(node, ctx))


class _BothAttempt:
    __slots__ = ("inner", "outer", "seen")

    def __init__(
        self, outer: AbstractContextManager[Attempt], inner: AbstractContextManager[Attempt]
    ) -> None:
        self.outer = outer
        self.inner = inner
        self.seen: tuple[Attempt, Attempt] | None = None

    def __enter__(self) -> _BothAttempt:
        first = self.outer.__enter__()
        try:
            second = self.inner.__enter__()
        except BaseException:
            self.outer.__exit__(*sys.exc_info())
            raise
        self.seen = (first, second)
        return self

    def ended(self, outcome: object, failed: bool) -> None:
        assert self.seen is not None
        self.seen[0].ended(outcome, failed)
        self.seen[1].ended(outcome, failed)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.inner.__exit__(kind, exc, tb)
        finally:
            self.outer.__exit__(kind, exc, tb)


def with_tracing(hook: AttemptHook | None, tracer: RunTracer) -> AttemptHook:
    """The run's attempt hook: the tracer's, around `hook` when there is one."""
    return tracer if hook is None else _Both(tracer, hook)
