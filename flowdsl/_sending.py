"""Sending events to runs: `send_event` and `asend_event`.

With a store, the event is committed in the run's mailbox there (first in,
first out per run and event name), so it reaches the run wherever and
whenever it waits: a run not yet at its wait, parked by a worker, or being
resumed elsewhere. Without one, it goes to a run executing in this process:
posted to the mailbox of a run without a store, or committed in the store of
a durable one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._engine._context import freeze
from ._engine._mailbox import Inbox, find
from ._engine._options import no_running_loop
from .errors import SerializationError, UsageError
from .stores import open_store
from .stores._codec import Unencodable, describe_path, dumps, encode, type_name

__all__ = ["asend_event", "send_event"]


def _check(run_id: object, event: object) -> None:
    if not isinstance(run_id, str) or not run_id:
        raise UsageError(f"send_event() takes the run's id as a non-empty string, got {run_id!r}")
    if not isinstance(event, str) or not event:
        raise UsageError(
            f"send_event() takes the event's name as a non-empty string, got {event!r}"
        )


def _payload(run_id: str, event: str, payload: object) -> str:
    """The payload as the store keeps it (JSON); `SerializationError` saying what cannot be."""
    try:
        return dumps(encode(payload))
    except Unencodable as exc:
        where = f" (at{describe_path(exc.path)})" if exc.path else ""
        why = f": {exc.why}" if exc.why else ""
        msg = (
            f"the payload of event {event!r} for run {run_id!r} cannot be stored: it holds a "
            f"{type_name(exc.value)}{where}{why}. {exc.hint}"
        )
        raise SerializationError(msg) from None


async def _commit(store: object, run_id: str, event: str, payload: object) -> None:
    text = _payload(run_id, event, payload)
    opened, owned = open_store(store, must_exist=True)
    try:
        await opened.send_event(run_id, event, text)
    finally:
        if owned:
            opened.close()


async def asend_event(
    run_id: str, event: str, payload: Any = None, *, store: object = None
) -> None:
    """`send_event` on the running event loop: returns once the event is committed."""
    _check(run_id, event)
    if store is None:
        target = find(run_id, event)
        if isinstance(target, Inbox):
            target.post(event, freeze(payload))
            return
        store = target  # a durable run executing here: its events live in its store
    await _commit(store, run_id, event, payload)


def send_event(run_id: str, event: str, payload: Any = None, *, store: object = None) -> None:
    """Send `event` (with `payload`) to the run `run_id`; safe from any thread.

    With ``store=`` (a store object or URL) it returns once the event is
    committed in the run's mailbox: kept until a wait for `event` takes it,
    first in first out, each event by exactly one visit of a wait. Without
    a store it reaches a run executing in this process (`RunNotFound`
    otherwise). An unknown `run_id` is `RunNotFound`; a completed or failed
    run refuses events (`UsageError`). Inside a running event loop, use
    ``await asend_event(...)`` for a store.
    """
    _check(run_id, event)
    if store is None:
        target = find(run_id, event)
        if isinstance(target, Inbox):  # no store: a post, fine anywhere (no loop is blocked)
            target.post(event, freeze(payload))
            return
        store = target
    no_running_loop("send_event", "asend_event")
    asyncio.run(_commit(store, run_id, event, payload))
