"""Parallel blocks: a nursery of branches, joined, then reduced.

A block runs every branch at once in an `asyncio.TaskGroup` (no branch
outlives it), at most ``max_concurrency`` at a time, each on the block's
snapshot of the context. Its policy (`_policies`) settles a branch's final
failure; the results are collected in declaration order whatever order the
branches finished in, frozen, and either added as ``__results__`` or handed
to the ``into=`` reducer, whose outcome is journaled in a durable run.

These are functions of the run's `_Execution` (`run`): the state they share
with the top-level loop (visits, the journal, the step runner) lives there.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from .._outcome import Goto
from .._plan import End, Node, ParallelNode, SequenceNode, StepNode, WaitNode
from ..errors import GotoError
from ..result import Err, Ok
from ._context import IMMUTABLE, Context, FrozenDict, Scope, freeze
from ._policies import COMPLETE_ALL, Failed, FailFast, Policy
from ._seams import REDUCE, Entry

if TYPE_CHECKING:
    from ._execution import _Execution

__all__ = ["as_result", "branch_goto", "run_parallel"]

_perf = time.perf_counter
_OK_NONE: Final = Ok(None)
_RESULTS: Final = "__results__"


def as_result(outcome: object) -> Ok[Any] | Err[Any]:
    """A branch's final outcome as its entry in `results`, its value frozen (see `freeze`)."""
    kind = type(outcome)
    if kind is Ok:
        value = outcome.value  # type: ignore[attr-defined]
        return outcome if type(value) in IMMUTABLE else Ok(freeze(value))  # type: ignore[return-value]
    if kind is Err:
        return outcome  # type: ignore[return-value]
    if outcome is None:
        return _OK_NONE
    return Ok(outcome if type(outcome) in IMMUTABLE else freeze(outcome))


async def run_parallel(run: _Execution, node: ParallelNode, scope: Scope) -> str | End | None:
    """Run a block: every branch at once, joined; returns the reducer's goto, if any."""
    run.current = node.name
    version = scope.version
    visits = run.visits
    visit = visits[node.name] = visits.get(node.name, 0) + 1
    policy: Policy = FailFast() if node.fail_fast else COMPLETE_ALL
    tasks: list[asyncio.Task[object]] = policy.tasks if type(policy) is FailFast else []
    limit = asyncio.Semaphore(node.max_concurrency) if node.max_concurrency else None
    step = run.step
    parker = run.parker
    if parker is not None:  # this thread pauses while its branches run (see _parking)
        parker.threads_changed(-1)
    try:
        async with asyncio.TaskGroup() as group:
            spawn = group.create_task
            for child in node.children:
                if limit is None and parker is None and type(child) is StepNode:
                    tasks.append(spawn(step(child, scope, version, policy)))
                else:
                    tasks.append(spawn(_branch(run, child, scope, version, policy, limit)))
    finally:
        if parker is not None:
            parker.threads_changed(1)
    if type(policy) is FailFast and policy.failure is not None:
        raise policy.failure  # the first failure: the siblings were cancelled and awaited
    raw = [task.result() for task in tasks]
    # Free the finished tasks (and their coroutines) before wrapping the results, so
    # that a collection triggered by the wrapping has less to walk (docs/performance.md).
    tasks.clear()
    outcomes = {key: as_result(value) for key, value in zip(node.keys, raw, strict=True)}
    into = node.into
    if into is None:
        scope.write({_RESULTS: MappingProxyType(outcomes)})
        return None
    outcome = await _reduce_journaled(run, node, into, scope, version, visit, outcomes)
    if type(outcome) is Err:
        raise Failed(node.name, outcome.error)
    return run.apply(node.key, outcome, scope)


async def _reduce_journaled(
    run: _Execution,
    node: ParallelNode,
    into: Callable[..., Any],
    scope: Scope,
    version: int,
    visit: int,
    outcomes: dict[str, Any],
) -> object:
    """The reducer's outcome: replayed from the journal of a resumed run, else called now."""
    journal = run.journal
    if journal is None:
        return await _reduce(run, node, into, scope, version, outcomes)
    _, outcome = journal.replayed(REDUCE, node.name, visit)
    if outcome is not None:  # it ran before a resume: never again
        return outcome
    started = _perf()
    outcome = await _reduce(run, node, into, scope, version, outcomes)
    return await journal.record(
        Entry(
            kind=REDUCE,
            name=node.name,
            visit=visit,
            attempt=1,
            outcome=outcome,
            failed=type(outcome) is Err,
            retrying=False,
            started=run.wall(started),
            duration=_perf() - started,
        )
    )


async def _reduce(
    run: _Execution,
    node: ParallelNode,
    into: Callable[..., Any],
    scope: Scope,
    version: int,
    outcomes: dict[str, Any],
) -> object:
    """Call the block's reducer: its outcome, or ``Err`` when it raised."""
    ctx = Context(scope, version, run.run_id, node.name)
    try:
        outcome = into(ctx, MappingProxyType(outcomes))
        if inspect.isawaitable(outcome):
            outcome = await outcome
    except Exception as exc:
        return Err(exc)
    except (KeyboardInterrupt, SystemExit) as exc:
        run.interrupt(exc)
    return outcome


async def _branch(
    run: _Execution,
    child: Node,
    scope: Scope,
    version: int,
    policy: Policy,
    limit: asyncio.Semaphore | None,
) -> object:
    """A branch that is a block or a wait, any branch under max_concurrency or of a run that
    may park: its Ok or Err."""
    try:
        if limit is None:
            return await _active(run, child, scope, version, policy)
        async with limit:
            return await _active(run, child, scope, version, policy)
    except Failed as failure:
        return policy.settle(failure)
    except (KeyboardInterrupt, SystemExit) as exc:  # a reducer's, nested in this branch
        run.interrupt(exc)


async def _active(
    run: _Execution, child: Node, scope: Scope, version: int, policy: Policy
) -> Ok[Any] | Err[Any]:
    """The branch, counted as an active thread of a run that may park while it runs."""
    parker = run.parker
    if parker is None:
        return await _branch_result(run, child, scope, version, policy)
    parker.threads_changed(1)
    try:
        return await _branch_result(run, child, scope, version, policy)
    finally:
        parker.threads_changed(-1)


async def _branch_result(
    run: _Execution, child: Node, scope: Scope, version: int, policy: Policy
) -> Ok[Any] | Err[Any]:
    """Run one branch on the block's snapshot; its value for `results`, or raise Failed."""
    kind = type(child)
    if kind is StepNode:
        return as_result(await run.step(child, scope, version, policy))  # type: ignore[arg-type]
    if kind is WaitNode:
        return as_result(await run.wait(child, scope, version, policy))  # type: ignore[arg-type]
    own = Scope(scope, version)
    nodes = child.children if kind is SequenceNode else (child,)  # type: ignore[union-attr]
    for node in nodes:
        if type(node) is StepNode:
            route = run.apply(node.key, await run.step(node, own, own.version), own)
        elif type(node) is WaitNode:
            route = run.apply(node.key, await run.wait(node, own, own.version), own)
        else:
            route = await run_parallel(run, node, own)  # type: ignore[arg-type]
        if route is not None:
            raise Failed(node.name, branch_goto(run.plan.name, node, route))
    return Ok(FrozenDict(own.added()))


def branch_goto(workflow: str, node: Node, route: object) -> GotoError:
    """The error of a goto returned inside a parallel branch (by a step or a nested reducer)."""
    target = route.target if isinstance(route, Goto) else route
    return GotoError(
        f"workflow {workflow!r}, {node.name!r} ({node.where}) returned "
        f"goto({target!r}) inside a parallel branch; a branch can only succeed or fail. "
        f"Route from the block's into= reducer or from a step after the block"
    )
