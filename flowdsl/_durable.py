"""Durable runs: placeholder until the SQLite store lands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._events import Listener
from ._executor import Invoker
from ._plan import Plan
from ._run import Run
from .errors import UsageError

__all__ = ["arun_durable"]


async def arun_durable(
    plan: Plan,
    data: Mapping[str, Any] | None,
    run_id: str,
    store: object,
    *,
    timeout: float | None,
    listeners: tuple[Listener, ...],
    invokers: Mapping[str, Invoker] | None,
) -> Run:
    msg = f"durable runs are not available yet (store={store!r})"
    raise UsageError(msg)
