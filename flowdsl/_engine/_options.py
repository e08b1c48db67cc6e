"""Run assembly: checking what a run call was given, and who hears a run's events.

The run calls (`flowdsl._running`) and the durable driver (`flowdsl.stores`)
share these: the option names and their checks, the listeners of a run
(the logs when someone reads them, those of the context, the call's own), and the
plan overrides `flowdsl.testing.override_steps` sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Final

from .._checks import seconds_problem
from .._plan import Plan
from ..errors import RunningLoopError, UsageError
from ._events import LISTENERS, Listener
from ._logging import log_listener
from ._seams import Invoker

__all__ = [
    "PLAN_OVERRIDES",
    "RUN_OPTIONS",
    "check_executors",
    "check_input",
    "check_options",
    "check_run_id",
    "check_timeout",
    "no_running_loop",
    "planned",
    "run_listeners",
]

RUN_OPTIONS: Final = ("run_id", "store", "timeout", "executors", "listeners")
"""The keyword options of `arun_workflow` (and of every call that passes them on)."""

# Plans to run instead of others for runs started in this context (original plan ->
# plan with fake steps). Set only by flowdsl.testing.override_steps; read once per run.
PLAN_OVERRIDES: ContextVar[Mapping[Plan, Plan]] = ContextVar(
    "flowdsl_plan_overrides", default=MappingProxyType({})
)


def planned(plan: Plan) -> Plan:
    """The plan a run of `plan` executes: its override in this context, if any."""
    overrides = PLAN_OVERRIDES.get()
    return overrides.get(plan, plan) if overrides else plan


def run_listeners(workflow: str, run_id: str, extra: Iterable[Listener]) -> tuple[Listener, ...]:
    """Who hears a run's events: the logs (when heard), the context's, then `extra`."""
    found = (*LISTENERS.get(), *extra)
    log = log_listener(workflow, run_id)
    return found if log is None else (log, *found)


def check_options(caller: str, options: Mapping[str, object], known: Iterable[str]) -> None:
    """Refuse option names `caller` does not take, naming them and listing the known ones."""
    allowed = tuple(known)
    unknown = [name for name in options if name not in allowed]
    if unknown:
        listed = ", ".join(f"{name}=" for name in allowed)
        plural = "s" if len(unknown) > 1 else ""
        msg = (
            f"{caller}() got unknown option{plural} {', '.join(map(repr, unknown))}; "
            f"it takes {listed}"
        )
        raise UsageError(msg)


def check_run_id(run_id: object) -> str | None:
    """`run_id` when it is None or a non-empty str; anything else is a `UsageError`."""
    if run_id is None:
        return None
    if isinstance(run_id, str) and run_id:
        return str(run_id)  # a str subclass is stored as the plain str it reads as
    got = "''" if isinstance(run_id, str) else f"{type(run_id).__name__} {run_id!r}"
    hint = "" if isinstance(run_id, str) else f"; write run_id={str(run_id)!r}"
    msg = f"run_id= must be a non-empty string (or None for a fresh id), got {got}{hint}"
    raise UsageError(msg)


def check_timeout(timeout: object) -> None:
    """A run call's ``timeout=``: seconds > 0, or None (the workflow's own)."""
    problem = seconds_problem(timeout, "timeout=")
    if problem is not None:
        raise UsageError(problem)


def check_input(workflow: str, input: object) -> Mapping[str, Any] | None:
    """A run's input: a mapping, or None."""
    if input is None or isinstance(input, Mapping):
        return input
    msg = (
        f"the input of workflow {workflow!r} must be a mapping (a dict of names to values), "
        f"got {type(input).__name__}; wrap it: {{'value': ...}}"
    )
    raise UsageError(msg)


def check_executors(executors: Mapping[str, Invoker]) -> None:
    """``executors=``: names (not the built-in "thread") mapped to callables."""
    for name, invoker in executors.items():
        if not isinstance(name, str) or not name or name == "thread":
            msg = (
                f"executors= maps names to executors, got the name {name!r}; 'thread' is built "
                f"in, give a ThreadExecutor another name: executors={{'io': ThreadExecutor(4)}}"
            )
            raise UsageError(msg)
        if not callable(invoker):
            msg = (
                f"executors={{{name!r}: {invoker!r}}}: an executor must be callable as "
                f"'await executor(node, ctx)', e.g. flowdsl.executors.DaskExecutor(address)"
            )
            raise UsageError(msg)


def no_running_loop(name: str, instead: str) -> None:
    """Refuse a sync run function inside a running event loop (it would block the loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    msg = f"{name}() cannot be called from a running event loop; use 'await {instead}(...)'"
    raise RunningLoopError(msg)
