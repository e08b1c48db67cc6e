"""Run lifecycle events: plain data, emitted at one place in the executor.

The same objects feed `stream_workflow`, `flowdsl.testing.capture_events` and
the structlog events (``flowdsl._logging``). Listeners are callables that
take an event; a run with no listener builds no event at all.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

if TYPE_CHECKING:
    from ._run import Run

__all__ = [
    "CompensationFinished",
    "Event",
    "Listener",
    "RunFinished",
    "RunStarted",
    "StepChunk",
    "StepFinished",
    "StepStarted",
    "listening",
]


@attrs.frozen
class RunStarted:
    """A run began (or resumed)."""

    workflow: str
    run_id: str = attrs.field(kw_only=True)
    resumed: bool = attrs.field(default=False, kw_only=True)


@attrs.frozen
class StepStarted:
    """An attempt of a step began."""

    step: str
    attempt: int
    run_id: str = attrs.field(default="", kw_only=True)


@attrs.frozen
class StepChunk:
    """An async-generator step yielded a progress item that is not an outcome."""

    step: str
    data: Any
    run_id: str = attrs.field(default="", kw_only=True)


@attrs.frozen
class StepFinished:
    """An attempt of a step ended: ``status`` is "succeeded" or "failed".

    ``retry_in`` is the delay before the next attempt when a failed attempt
    will be retried, else None.
    """

    step: str
    status: str
    duration: float
    attempt: int = attrs.field(default=1, kw_only=True)
    error: Any = attrs.field(default=None, kw_only=True)
    retry_in: float | None = attrs.field(default=None, kw_only=True)
    run_id: str = attrs.field(default="", kw_only=True)


@attrs.frozen
class CompensationFinished:
    """A step's compensation ran after the run failed."""

    step: str
    status: str
    duration: float
    error: Any = attrs.field(default=None, kw_only=True)
    run_id: str = attrs.field(default="", kw_only=True)


@attrs.frozen
class RunFinished:
    """The run ended; `run` is the final `Run`. Always the last event of a run."""

    run: Run


Event: TypeAlias = (
    RunStarted | StepStarted | StepChunk | StepFinished | CompensationFinished | RunFinished
)
Listener: TypeAlias = Callable[[Event], None]

# Listeners that every run started in this context reports to (capture_events, plugins).
LISTENERS: ContextVar[tuple[Listener, ...]] = ContextVar("flowdsl_listeners", default=())


class listening:
    """Report the events of every run started inside the block to `listener`."""

    __slots__ = ("_listener", "_token")

    def __init__(self, listener: Listener) -> None:
        self._listener = listener

    def __enter__(self) -> None:
        self._token = LISTENERS.set((*LISTENERS.get(), self._listener))

    def __exit__(self, *exc: object) -> None:
        LISTENERS.reset(self._token)
