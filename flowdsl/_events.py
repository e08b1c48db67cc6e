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
    """A run began (or resumed): the first event of a run that executes.

    A durable call that finds its run already finished in the store executes
    nothing and reports only `RunFinished`.
    """

    workflow: str
    """The workflow's registered name."""
    run_id: str = attrs.field(kw_only=True)
    """The run's id (given as ``run_id=``, or a fresh one)."""
    resumed: bool = attrs.field(default=False, kw_only=True)
    """True when a durable run picks up where an earlier process stopped."""


@attrs.frozen
class StepStarted:
    """An attempt of a step began."""

    step: str
    """The step's name."""
    attempt: int
    """Which attempt this is: 1, then 2, ... as the step is retried."""
    run_id: str = attrs.field(default="", kw_only=True)
    """The run's id."""


@attrs.frozen
class StepChunk:
    """An async-generator step yielded a progress item that is not an outcome."""

    step: str
    """The step's name."""
    data: Any
    """The item the step yielded, as it was yielded."""
    run_id: str = attrs.field(default="", kw_only=True)
    """The run's id."""


@attrs.frozen
class StepFinished:
    """An attempt of a step ended: ``status`` is "succeeded" or "failed".

    ``retry_in`` is the delay before the next attempt when a failed attempt
    will be retried, else None.
    """

    step: str
    """The step's name."""
    status: str
    """``"succeeded"`` or ``"failed"``."""
    duration: float
    """How long the attempt took, in seconds."""
    attempt: int = attrs.field(default=1, kw_only=True)
    """Which attempt ended: 1, 2, ..."""
    error: Any = attrs.field(default=None, kw_only=True)
    """Why a failed attempt failed (the exception raised, or the ``error()`` reason); None on success."""
    retry_in: float | None = attrs.field(default=None, kw_only=True)
    """Seconds before the next attempt when this failed attempt will be retried, else None."""
    run_id: str = attrs.field(default="", kw_only=True)
    """The run's id."""


@attrs.frozen
class CompensationFinished:
    """A step's compensation ran after the run failed."""

    step: str
    """The name of the step that was undone."""
    status: str
    """``"succeeded"`` or ``"failed"`` (the compensation raised or returned ``error()``)."""
    duration: float
    """How long the compensation took, in seconds."""
    error: Any = attrs.field(default=None, kw_only=True)
    """Why a failed compensation failed; None on success."""
    run_id: str = attrs.field(default="", kw_only=True)
    """The run's id."""


@attrs.frozen
class RunFinished:
    """The run ended; `run` is the final `Run`. Always the last event of a run."""

    run: Run
    """The finished run: its status, output, error and the record of every attempt."""


Event: TypeAlias = (
    RunStarted | StepStarted | StepChunk | StepFinished | CompensationFinished | RunFinished
)
"""Any of the six events a run reports."""
Listener: TypeAlias = Callable[[Event], None]
"""A plain function called with each event of a run (``listeners=[fn]``)."""

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
