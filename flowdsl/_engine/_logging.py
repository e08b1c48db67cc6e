"""Logs of runs: structlog when configured, else the standard ``logging`` logger ``"flowdsl"``.

The library never configures logging. Events become log entries named
``workflow.started``, ``step.started``, ``step.succeeded``, ``step.retrying``,
``step.failed``, ... with their fields: through structlog when the
application configured it, else as records of the stdlib logger
``"flowdsl"`` (which has a `NullHandler`, so nothing is printed unless the
application adds a handler). A run whose logs would reach no handler builds
no listener and pays nothing. structlog is not imported here: an application
that configured it has imported it, so a process that never did need not pay
for importing it (about a third of ``import flowdsl``).

While a step runs, its ``run_id``, ``workflow``, ``step`` and ``attempt`` are
bound in context variables (structlog's, when configured, and ours, read by
`LogContextFilter`), so the user's own log lines carry them; that binding is
an attempt hook, made only when someone reads it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from ._events import (
    CompensationFinished,
    Event,
    Listener,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
)

if TYPE_CHECKING:
    from .._plan import CallNode, StepNode
    from ._context import Context

__all__ = ["LogContextFilter", "context_hook", "log_listener", "structlog_listener"]

LOGGER: Final = logging.getLogger("flowdsl")
# A library logs through "flowdsl" and leaves the handlers to the application.
LOGGER.addHandler(logging.NullHandler())

_DEBUG, _INFO, _WARNING, _ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
_CONTEXT_FIELDS: Final = ("run_id", "workflow", "step", "attempt")
# LogRecord's own attribute names: an event field named like one is prefixed "flowdsl_".
_RECORD_NAMES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


def describe(event: Event) -> tuple[int, str, dict[str, Any]] | None:
    """An event as a log entry: its level, its name and its fields (None: not logged)."""
    if isinstance(event, StepStarted):
        return _DEBUG, "step.started", {"step": event.step, "attempt": event.attempt}
    if isinstance(event, StepFinished):
        ms = round(event.duration * 1000, 3)
        fields: dict[str, Any] = {"step": event.step, "attempt": event.attempt, "duration_ms": ms}
        if event.status == "succeeded":
            return _INFO, "step.succeeded", fields
        if event.status == "cancelled":
            return _INFO, "step.cancelled", fields
        fields["error"] = repr(event.error)
        if event.retry_in is not None:
            fields["retry_in_ms"] = round(event.retry_in * 1000, 3)
            return _WARNING, "step.retrying", fields
        return _ERROR, "step.failed", fields
    if isinstance(event, StepChunk):
        return _DEBUG, "step.chunk", {"step": event.step}
    if isinstance(event, CompensationFinished):
        error = event.error
        return (
            _INFO if error is None else _ERROR,
            "compensation." + event.status,
            {
                "step": event.step,
                "duration_ms": round(event.duration * 1000, 3),
                "error": None if error is None else repr(error),
            },
        )
    if isinstance(event, RunStarted):
        return _INFO, "workflow.resumed" if event.resumed else "workflow.started", {}
    if isinstance(event, RunFinished):
        run = event.run
        return (
            _INFO if run.status == "completed" else _ERROR,
            "workflow.finished",
            {
                "status": run.status,
                "failed_step": run.failed_step,
                "duration_ms": round(run.duration * 1000, 3),
            },
        )
    return None


def _structlog() -> Any:
    """The structlog module when the application configured it, else None."""
    structlog = sys.modules.get("structlog")
    if structlog is None or not structlog.is_configured():
        return None
    return structlog


def log_listener(workflow: str, run_id: str) -> Listener | None:
    """The run's log listener: structlog when configured, else stdlib when it reaches a handler."""
    found = structlog_listener(workflow, run_id)
    return found if found is not None else stdlib_listener(workflow, run_id)


def structlog_listener(workflow: str, run_id: str) -> Listener | None:
    """A listener that turns events into structlog events, or None when structlog is unconfigured."""
    structlog = _structlog()
    if structlog is None:
        return None
    log = structlog.get_logger("flowdsl").bind(run_id=run_id, workflow=workflow)

    def listen(event: Event) -> None:
        entry = describe(event)
        if entry is not None:
            level, name, fields = entry
            log.log(level, name, **fields)

    return listen


def _handled(logger: logging.Logger) -> bool:
    """Whether a record of `logger` reaches a handler that is not a `NullHandler`."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(type(handler) is not logging.NullHandler for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def stdlib_listener(workflow: str, run_id: str) -> Listener | None:
    """A listener writing one record per event to the logger ``"flowdsl"``; None when unheard."""
    logger = LOGGER
    if logger.disabled or not logger.isEnabledFor(_ERROR) or not _handled(logger):
        return None
    enabled = logger.isEnabledFor

    def listen(event: Event) -> None:
        entry = describe(event)
        if entry is None or not enabled(entry[0]):
            return
        level, name, fields = entry
        extra = {"run_id": run_id, "workflow": workflow}
        for key, value in fields.items():
            extra["flowdsl_" + key if key in _RECORD_NAMES else key] = value
        logger.log(level, name, extra=extra)

    return listen


# -- the context of the step that runs -----------------------------------------------------

_CURRENT: ContextVar[tuple[str, str, str, int] | None] = ContextVar(
    "flowdsl_log_context", default=None
)
_filters_made = False


class LogContextFilter(logging.Filter):
    """Gives every record ``run_id``, ``workflow``, ``step`` and ``attempt`` (None outside a step).

    Add it to a handler (``handler.addFilter(LogContextFilter())``): the
    user's own log lines inside a step, thread steps included, then carry the
    step they came from. A record that has one of these attributes already
    (flowdsl's own records) keeps it.
    """

    def __init__(self, name: str = "") -> None:
        global _filters_made
        super().__init__(name)
        _filters_made = True  # runs started from now on bind their steps' context

    def filter(self, record: logging.LogRecord) -> bool:
        current = _CURRENT.get()
        values = (None, None, None, None) if current is None else current
        for field, value in zip(_CONTEXT_FIELDS, values, strict=True):
            if not hasattr(record, field):
                setattr(record, field, value)
        return True


class _Bound:
    """One attempt's binding: entered just before the body runs, undone right after."""

    __slots__ = ("ctx", "hook", "ours", "theirs")

    def __init__(self, hook: _ContextHook, ctx: Context) -> None:
        self.hook = hook
        self.ctx = ctx
        self.ours: Token[tuple[str, str, str, int] | None] | None = None
        self.theirs: Any = None

    def __enter__(self) -> _Bound:
        ctx = self.ctx
        hook = self.hook
        self.ours = _CURRENT.set((ctx.run_id, hook.workflow, ctx.step, ctx.attempt))
        if hook.structlog is not None:
            self.theirs = hook.structlog.contextvars.bind_contextvars(
                run_id=ctx.run_id, workflow=hook.workflow, step=ctx.step, attempt=ctx.attempt
            )
        return self

    def ended(self, outcome: object, failed: bool) -> None:
        pass

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.theirs is not None:
            self.hook.structlog.contextvars.reset_contextvars(**self.theirs)
        if self.ours is not None:
            _CURRENT.reset(self.ours)


class _ContextHook:
    """The attempt hook that binds the step's log context (see the module's docstring)."""

    __slots__ = ("structlog", "workflow")

    def __init__(self, workflow: str, structlog: Any) -> None:
        self.workflow = workflow
        self.structlog = structlog

    def __call__(self, node: StepNode | CallNode, ctx: Context) -> _Bound:
        return _Bound(self, ctx)


def context_hook(workflow: str) -> _ContextHook | None:
    """The hook binding each attempt's log context, or None when nothing would read it."""
    structlog = _structlog()
    if structlog is None and not _filters_made:
        return None
    return _ContextHook(workflow, structlog)
