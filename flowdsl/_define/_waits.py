"""RECORD waits: ``sleep_for``, ``sleep_until`` and ``wait_for_event``, placed like steps.

A wait is recorded in the workflow body being defined, in order with the
steps around it; the compiler checks it (`_compiler`) and the engine runs it:
sleeping on flowdsl's clock, or waiting for an event sent to the run with
`send_event`. Called inside a step's body (where the body is running, not
being recorded), they say to use ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import sys
from collections.abc import Callable
from typing import Any

from .._plan import End, Where
from ..errors import DefinitionError, UsageError
from ._frames import current_frame
from ._spec import WaitSpec

__all__ = ["sleep_for", "sleep_until", "wait_for_event"]


def _record(spec: WaitSpec, call: str) -> None:
    frame = current_frame()
    if frame is not None:
        frame.children.append(spec)
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        msg = f"{spec.where}: use {call} inside a @workflow body, not at module level"
        raise DefinitionError(msg) from None
    msg = (
        f"{spec.where}: {call} records a wait in a @workflow body; it cannot be called while "
        f"a step runs. Inside a step's body, use 'await asyncio.sleep(seconds)' (or wait "
        f"for the event in the workflow, with a wait_for_event between two steps)"
    )
    raise UsageError(msg)


def _where() -> Where:
    frame = sys._getframe(2)
    return Where(frame.f_code.co_filename, frame.f_lineno)


def sleep_for(seconds: float | Callable[[Any], float], *, name: str | None = None) -> None:
    """Wait `seconds` (or ``seconds(ctx)``) on flowdsl's clock, then go on.

    Durable: the deadline is journaled when the wait is first reached, so a
    resumed run sleeps only what remains. Named ``sleep_for#n`` (the
    workflow's n-th unnamed sleep_for) unless ``name=`` is given.
    """
    _record(WaitSpec("sleep_for", name, seconds, None, None, None, _where()), "sleep_for()")


def sleep_until(
    when: _dt.datetime | Callable[[Any], _dt.datetime], *, name: str | None = None
) -> None:
    """Wait until `when` (a time-zone-aware datetime, or ``when(ctx)`` returning one)."""
    _record(WaitSpec("sleep_until", name, when, None, None, None, _where()), "sleep_until()")


def wait_for_event(
    event: str,
    *,
    name: str | None = None,
    returns: str | None = None,
    timeout: float | None = None,
    on_timeout: str | End | None = None,
) -> None:
    """Wait for `event` to be sent to the run (`send_event`); store its payload, go on.

    The payload is stored as one value under `returns` (default: the wait's
    name, itself the event's name unless ``name=``). After `timeout` seconds
    with no event: ``on_timeout=None`` fails the run (`TimeoutError`), a step
    name goes there, `END` finishes the run. Events sent before the run gets
    here are kept, first in first out.
    """
    _record(
        WaitSpec("event", name, event, returns, timeout, on_timeout, _where()),
        "wait_for_event()",
    )
