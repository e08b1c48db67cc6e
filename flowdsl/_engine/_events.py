"""Run lifecycle events: plain data, emitted at one place in the executor.

The same objects feed `stream_workflow`, `flowdsl.testing.capture_events` and
the structlog events (``flowdsl._logging``). Listeners are callables that
take an event; a run with no listener builds no event at all.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from ..errors import UsageError

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
    "check_listeners",
    "fan_out",
    "listening",
]

_log = logging.getLogger("flowdsl")


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


def check_listeners(listeners: Iterable[object]) -> tuple[Listener, ...]:
    """The listeners a run call was given, refused when one cannot be called synchronously."""
    try:
        found = tuple(listeners)
    except TypeError:
        msg = f"listeners= takes a list of functions fn(event), got {listeners!r}"
        raise UsageError(msg) from None
    for listener in found:
        if not callable(listener):
            msg = f"listeners= takes functions fn(event), got {listener!r}"
            raise UsageError(msg)
        if inspect.iscoroutinefunction(listener) or inspect.iscoroutinefunction(
            getattr(listener, "__call__", None)  # noqa: B004 - a callable object's async __call__
        ):
            msg = (
                f"listener {listener!r} is an async def; listeners are called synchronously, "
                f"in order, as events happen. Use a plain function (to do async work, hand the "
                f"event to a queue: listeners=[queue.put_nowait])"
            )
            raise UsageError(msg)
    return found  # type: ignore[return-value]


def _guard(listener: Listener) -> Listener:
    """`listener`, made harmless: what it raises is logged (once per run) and the run goes on."""
    failed = False

    def call(event: Event) -> None:
        nonlocal failed
        try:
            result: object = listener(event)  # type: ignore[func-returns-value]
        except Exception:
            if not failed:
                failed = True
                _log.exception(
                    "listener %r raised on %s; the run goes on (later errors of this "
                    "listener in this run are not logged)",
                    listener,
                    type(event).__name__,
                )
            return
        if inspect.iscoroutine(result):  # an async callable that slipped past check_listeners
            result.close()
            if not failed:
                failed = True
                _log.error(
                    "listener %r returned a coroutine, which is never awaited: listeners are "
                    "called synchronously; use a plain function",
                    listener,
                )

    return call


def fan_out(listeners: tuple[Listener, ...]) -> Listener | None:
    """One callable that hands an event to every listener in order, or None when there are none.

    A listener that raises never changes the run (see `_guard`).
    """
    if not listeners:
        return None
    guarded = tuple(_guard(listener) for listener in listeners)
    if len(guarded) == 1:
        return guarded[0]

    def emit(event: Event) -> None:
        for listener in guarded:
            listener(event)

    return emit
