"""Child workflows: a ``call_workflow`` node runs another workflow as a run of its own.

The child run has its own run id, ``"{parent}/{node}#{visit}"`` (``.{n}``
added for attempt n > 1 of a retried node; the node's name carries the
foreach indices when inside one), its own journal in the parent's store, and
the parent's run id as `Run.parent_id`. Its output is stored under the node's
key; its failure is the node's failure, retried as a step's would be, each
attempt a new child run.

Without a store the child executes here, inside the parent's task (so the
parent's cancellation and deadline reach it). A durable parent asks its
journal (`Journal.child`): the child runs here too, or, under a worker, is
queued and waited for like an event, so the parent can park. A child run the
store holds already (the parent crashed while it ran) is never started twice:
its recorded end is used, or it is resumed. A child that ended "cancelled"
(`cancel_run` stopped it) fails its node, unless its parent was stopped with
it: then the parent stops too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from .._plan import CallNode
from ..errors import UsageError
from ..result import Err, Ok
from ._context import Context
from ._run import Run
from ._seams import child_finished

if TYPE_CHECKING:
    from ._execution import _Execution

__all__ = ["child_attempt", "child_run_id"]

_COMPLETED: Final = "completed"


def child_run_id(parent: str, name: str, visit: int, attempt: int) -> str:
    """The run id of attempt `attempt` of visit `visit` of call `name` in run `parent`."""
    base = f"{parent}/{name}#{visit}"
    return base if attempt == 1 else f"{base}.{attempt}"


Execute = Callable[..., Awaitable[Run]]


async def child_attempt(run: _Execution, node: CallNode, ctx: Context, execute: Execute) -> object:
    """One attempt of a call node: its child run, to its end, as the attempt's outcome.

    The engine's step loop runs a call node's attempts (retries, journal,
    records and events as a step's); `execute` runs a child without a store
    (the engine's own `execute`, handed in: no import cycle).
    """
    child_id = child_run_id(run.run_id, ctx.step, ctx._visit, ctx.attempt)
    child = await _child(run, node, ctx, child_id, execute)
    if child.status == _COMPLETED:
        return Ok({node.key: dict(child.output)})
    if child.status == "failed":
        return Err(child.error)
    if child.status == "cancelled" and run.journal is not None and await run.journal.cancelling():
        run.stop_here()  # the child was stopped with this run (cancel_run): stop here too
    msg = f"child run {child.run_id!r} of workflow {child.workflow!r} ended {child.status!r}"
    return Err(UsageError(msg))


async def _child(
    run: _Execution, node: CallNode, ctx: Context, child_id: str, execute: Execute
) -> Run:
    """Run (or find, or wait for) one child run to its end."""
    data: Any = node.input
    if callable(data) and not isinstance(data, Mapping):
        data = data(ctx)
    if data is not None and not isinstance(data, Mapping):
        msg = (
            f"call_workflow {node.name!r} ({node.where}): input= must give a mapping (or None), "
            f"got {data!r}"
        )
        raise UsageError(msg)
    if isinstance(data, MappingProxyType):
        data = dict(data)
    plan = node.resolve()
    journal = run.journal
    if journal is None:
        return await execute(
            plan,
            data,
            child_id,
            executors=run.executors,
            hook=run.given_hook,  # the child makes its own log context and spans
            parent_id=run.run_id,
        )
    parker = run.parker
    if parker is None:
        return await journal.child(plan, data, child_id, node.queue, run.executors)
    token = object()
    step, visit, event = ctx.step, ctx._visit, child_finished(child_id)

    def waiting() -> None:
        # Only once the child is known not to have ended: a resumed parent whose child
        # ended meanwhile must not park again on the event that woke it (with a short
        # park_after it would be woken at once, again and again).
        parker.enter(token, step, visit, event, None)

    try:
        return await journal.child(plan, data, child_id, node.queue, run.executors, waiting)
    finally:
        parker.leave(token)
