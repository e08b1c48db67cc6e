"""The frozen step tree that recording produces and compiling consumes.

Specs are plain data: they hold the user's callables and options exactly as
given, plus where each was written (`Where`) for error messages. They run
nothing and validate nothing: `_compiler` checks them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import attrs

from .._plan import End, Retry, Where

__all__ = [
    "BlockSpec",
    "CallSpec",
    "ForeachSpec",
    "NodeSpec",
    "ParallelSpec",
    "SequenceSpec",
    "StepSpec",
    "WaitSpec",
    "WorkflowSpec",
]


@attrs.frozen(eq=False)
class StepSpec:
    """One recorded step: the user's callable and its options, as given."""

    fn: Callable[..., object]
    name: str
    returns: str | None
    retry: Retry | None
    timeout: float | None
    compensate: object
    routes: tuple[str | End, ...]
    blocking: bool
    executor: str | None
    where: Where

    @property
    def key(self) -> str:
        """The context key of the step's value: ``returns=`` or its name."""
        return self.returns if self.returns is not None else self.name


@attrs.frozen(eq=False)
class SequenceSpec:
    """``with sequence(name):`` a branch of several steps, run in order."""

    name: str
    children: tuple[NodeSpec, ...]
    where: Where

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(eq=False)
class ParallelSpec:
    """``with parallel(...):`` branches started at once, joined at the end."""

    name: str | None
    children: tuple[NodeSpec, ...]
    on_error: object
    into: object
    max_concurrency: object
    where: Where


@attrs.frozen(eq=False)
class WaitSpec:
    """``sleep_for``, ``sleep_until`` or ``wait_for_event`` as recorded: arguments as given."""

    how: str
    """``"sleep_for"``, ``"sleep_until"`` or ``"event"``."""
    name: str | None
    value: object
    """The seconds, the datetime, or a function of the context returning one; the event name."""
    returns: object
    timeout: object
    on_timeout: object
    where: Where


@attrs.frozen(eq=False)
class ForeachSpec:
    """``with foreach(items, ...):`` a body run once per item, as given."""

    items: object
    name: str | None
    children: tuple[NodeSpec, ...]
    on_error: object
    into: object
    max_concurrency: object
    where: Where


@attrs.frozen(eq=False)
class CallSpec:
    """``call_workflow(workflow, ...)`` as recorded: arguments as given."""

    workflow: object
    input: object
    returns: object
    name: object
    queue: object
    retry: object
    where: Where


NodeSpec: TypeAlias = StepSpec | SequenceSpec | ParallelSpec | WaitSpec | ForeachSpec | CallSpec
BlockSpec: TypeAlias = SequenceSpec | ParallelSpec | ForeachSpec


@attrs.frozen(eq=False)
class WorkflowSpec:
    """A whole recorded workflow: its top-level sequence and its options."""

    name: str
    children: tuple[NodeSpec, ...]
    timeout: object
    max_transitions: object
    qualname: str
    where: Where
    executor: object = None
    """Where steps without an ``executor=`` of their own run (``@workflow(executor=...)``)."""
    schedule: object = None
    timezone: object = None
    catch_up: object = None
