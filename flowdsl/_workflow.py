"""`Workflow`: what `@workflow` returns, registered by name and runnable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._plan import Plan
from ._spec import Where

if TYPE_CHECKING:
    from ._graph import Graph
    from ._run import Run

__all__ = ["Workflow"]


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
        from ._runner import run_workflow

        return run_workflow(self, input, **options)

    async def arun(self, input: Mapping[str, Any] | None = None, **options: Any) -> Run:
        """Run to the end on the running event loop (see `arun_workflow`)."""
        from ._runner import RUN_OPTIONS, arun_workflow, check_options

        check_options("Workflow.arun", options, RUN_OPTIONS)

        return await arun_workflow(self, input, **options)

    def graph(self) -> Graph:
        """The static graph of this workflow (nothing runs): ``wf.graph().to_mermaid()``."""
        from ._graph import Graph

        return Graph.from_plan(self.plan)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} ({len(self.plan.steps)} steps) at {self.where}>"
