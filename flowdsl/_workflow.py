"""`@workflow` and `Workflow`: what it returns, registered by name and runnable.

The one place the layers meet for a user: the decorator records and compiles
the body (`_define`) and registers the result; the object runs itself
(`_running`) and draws itself (`views`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from ._define._dsl import DEFAULT_MAX_TRANSITIONS, record_workflow
from ._define._registry import register
from ._plan import Plan, Where
from ._running import RUN_OPTIONS, arun_workflow, check_options, run_workflow
from .errors import DefinitionError
from .views._graph import Graph

if TYPE_CHECKING:
    from ._engine._run import Run

__all__ = ["Workflow", "workflow"]


class Workflow:
    """A compiled workflow. Run it with ``wf.run(input)`` or ``await wf.arun(input)``.

    ``@workflow`` returns one and registers it under its name, so
    ``run_workflow("name", ...)`` and ``run_workflow(wf, ...)`` run the same
    thing. It is immutable and reusable: one workflow may be run any number of
    times, concurrently.
    """

    __slots__ = ("__weakref__", "plan")

    def __init__(self, plan: Plan) -> None:
        # Only the plan is kept: the spec tree it was compiled from would double the
        # objects the garbage collector walks for a large workflow (docs/performance.md).
        self.plan = plan
        """The compiled plan the executor runs (routing tables, retry policies, ...)."""

    @property
    def name(self) -> str:
        """The registered name: ``@workflow("name")``, or the decorated function's name."""
        return self.plan.name

    @property
    def where(self) -> Where:
        """Where the workflow was defined (``where.file``, ``where.line``), as in error messages."""
        return self.plan.where

    @property
    def qualname(self) -> str:
        """The decorated function's module and qualified name: ``"module.qualname"``."""
        return self.plan.qualname

    @property
    def identity(self) -> tuple[str, Where, str]:
        """What makes two registrations the same definition (a module imported twice)."""
        return (self.qualname, self.where, self.plan.fingerprint)

    def run(self, input: Mapping[str, Any] | None = None, **options: Any) -> Run:
        """Run to the end and return the `Run` (see `run_workflow` for options)."""
        return run_workflow(self, input, **options)

    async def arun(self, input: Mapping[str, Any] | None = None, **options: Any) -> Run:
        """Run to the end on the running event loop (see `arun_workflow`)."""
        check_options("Workflow.arun", options, RUN_OPTIONS)
        return await arun_workflow(self, input, **options)

    def graph(self) -> Graph:
        """The static graph of this workflow (nothing runs): ``wf.graph().to_mermaid()``."""
        return Graph.from_plan(self.plan)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} ({len(self.plan.steps)} steps) at {self.where}>"


@overload
def workflow(fn: Callable[[], object], /) -> Workflow: ...
@overload
def workflow(
    name: str | None = None,
    /,
    *,
    timeout: float | None = None,
    max_transitions: int = DEFAULT_MAX_TRANSITIONS,
    executor: str | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    catch_up: Literal["latest", "all", "none"] | None = None,
) -> Callable[[Callable[[], object]], Workflow]: ...
def workflow(
    fn_or_name: Callable[[], object] | str | None = None,
    /,
    *,
    timeout: float | None = None,
    max_transitions: int = DEFAULT_MAX_TRANSITIONS,
    name: str | None = None,
    executor: str | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    catch_up: Literal["latest", "all", "none"] | None = None,
) -> Workflow | Callable[[Callable[[], object]], Workflow]:
    """Declare a workflow: the body is run once, now, to record its steps.

    ``@workflow`` names it after the function; ``@workflow("name", timeout=30,
    max_transitions=10_000, executor="process")`` sets the name and options
    (``executor`` is where steps without an ``executor=`` of their own run;
    ``@step(executor="inline")`` keeps one on the event loop). The returned
    `Workflow` is registered under its name and can be run with
    ``run_workflow(name, input)`` or ``wf.run(input)``.

    ``schedule="0 2 * * *"`` makes workers start a run at every tick of the
    cron expression, read in ``timezone`` (default ``"UTC"``), with the input
    ``{"scheduled_at": tick}`` and the run id ``"{name}@{tick.isoformat()}"``;
    ``catch_up`` says which ticks missed while no worker ran still run:
    ``"latest"`` (the default: the most recent, once), ``"all"`` or ``"none"``.
    """
    timing = (schedule, timezone, catch_up)
    if callable(fn_or_name):
        return _define(fn_or_name, name, timeout, max_transitions, executor, timing)
    if fn_or_name is not None and not isinstance(fn_or_name, str):
        msg = f"@workflow takes a name string, got {fn_or_name!r}; write @workflow('my_flow')"
        raise DefinitionError(msg)
    chosen = fn_or_name if fn_or_name is not None else name

    def decorate(body: Callable[[], object]) -> Workflow:
        return _define(body, chosen, timeout, max_transitions, executor, timing)

    return decorate


def _define(
    body: Callable[[], object],
    name: str | None,
    timeout: object,
    max_transitions: object,
    executor: object,
    timing: tuple[object, object, object],
) -> Workflow:
    workflow = Workflow(record_workflow(body, name, timeout, max_transitions, executor, timing))
    register(workflow)
    return workflow
