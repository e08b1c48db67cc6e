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
its recorded end is used, or it is resumed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from .._plan import CallNode
from ..errors import UsageError
from ..result import Err, Ok
from ._clock import clock
from ._context import Context, Scope
from ._events import StepFinished, StepStarted
from ._policies import Failed, Policy
from ._run import Run, StepRecord
from ._seams import STEP, child_finished

if TYPE_CHECKING:
    from ._execution import _Execution

__all__ = ["child_run_id", "run_call"]

_perf = time.perf_counter
_new_record = tuple.__new__
_COMPLETED: Final = "completed"


def child_run_id(parent: str, name: str, visit: int, attempt: int) -> str:
    """The run id of attempt `attempt` of visit `visit` of call `name` in run `parent`."""
    base = f"{parent}/{name}#{visit}"
    return base if attempt == 1 else f"{base}.{attempt}"


Execute = Callable[..., Awaitable[Run]]


async def run_call(
    run: _Execution, node: CallNode, scope: Scope, version: int, policy: Policy, execute: Execute
) -> object:
    """Run the child to its end, every attempt: the node's outcome, settled as a step's is.

    `execute` runs a child without a store (the engine's own `execute`).
    """
    each = scope.each
    name = node.name if each is None else node.name + each.suffix
    run.current = name
    visits = run.visits
    visit = visits[name] = visits.get(name, 0) + 1
    attempt = 0
    journal = run.journal
    if journal is not None:
        attempt, done = journal.replayed(STEP, name, visit)
        if done is not None:
            return run.replayed(node, name, scope, version, visit, done, policy)
    emit = run.emit
    run_id = run.run_id
    retry = node.retry
    while True:
        attempt += 1
        if run.due is not None and run.clock() >= run.due:
            run.overdue()
        if journal is not None and journal.must_check():
            await journal.check()
        ctx = Context(scope, version, run_id, name, attempt, visit)
        if emit is not None:
            emit(StepStarted(name, attempt, run_id=run_id))
        started = _perf()
        exception: BaseException | None = None
        try:
            child_id = child_run_id(run_id, name, visit, attempt)
            child = await _child(run, node, ctx, child_id, execute)
        except Exception as exc:  # the input function, an unknown workflow, the store
            outcome: object = Err(exc)
            exception = exc
        except asyncio.CancelledError:
            if run.parking is None:  # parking is no cancellation: the run goes on later
                run.cancelled(name, attempt, started)
            raise
        else:
            outcome = _outcome(node, child)
        duration = _perf() - started
        failed = type(outcome) is Err
        retrying = (
            failed
            and retry is not None
            and attempt < retry.max_attempts
            and (exception is None or isinstance(exception, retry.retry_on))
        )
        if journal is not None:
            outcome, failed, retrying = await run.commit(
                name, visit, attempt, outcome, failed, retrying, started, duration
            )
        if not failed:
            run.records.append(
                _new_record(
                    StepRecord,
                    (name, attempt, "succeeded", run.wall(started), duration, None, visit),
                )
            )
            if emit is not None:
                emit(StepFinished(name, "succeeded", duration, attempt=attempt, run_id=run_id))
            return outcome
        delay = run.failed(node, name, visit, attempt, started, duration, outcome, retrying)
        if delay is None:
            return policy.settle(Failed(name, outcome.error))  # type: ignore[attr-defined]
        if delay > 0:
            now = clock()
            await now.sleep_until(now.now() + delay)


def _outcome(node: CallNode, child: Run) -> object:
    """The node's outcome: the child's output under the node's key, or the child's error."""
    if child.status == _COMPLETED:
        return Ok({node.key: dict(child.output)})
    if child.status == "failed":
        return Err(child.error)
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
            hook=run.hook,
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
