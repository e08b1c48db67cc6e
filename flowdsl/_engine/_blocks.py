"""Blocks: a nursery of branches, joined, then reduced (``parallel`` and ``foreach``).

One mechanism runs both kinds. A block has a number of branches and a way to
start branch i: a ``parallel`` block's branches are its children, a
``foreach`` block's are its items, each running the block's body. Every
branch runs in an `asyncio.TaskGroup` (none outlives the block), on the
block's snapshot of the context; with ``max_concurrency`` only that many
tasks exist, each starting the next branch as it finishes one, so a block of
100,000 items holds 100,000 results, never 100,000 running branches. The
block's policy (`_policies`) settles a branch's final failure; the results
are collected in branch order whatever order the branches finished in,
frozen, and added to the context or handed to the ``into=`` reducer, whose
outcome is journaled in a durable run.

Inside a foreach item every name the body journals carries the item's index
(``load[3]``; ``load[3][0]`` when nested), so each item's steps are journaled,
replayed and keyed on their own. The item list itself is journaled when the
block starts, so a resumed run goes over the same items.

These are functions of the run's `_Execution` (`run`): the state they share
with the top-level loop (visits, the journal, the step runner) lives there.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final

from .._outcome import Goto
from .._plan import (
    BlockNode,
    CallNode,
    End,
    ForeachNode,
    Node,
    ParallelNode,
    SequenceNode,
    StepNode,
    WaitNode,
)
from ..errors import GotoError, UsageError
from ..result import Err, Ok, _set_ok_value
from ._context import IMMUTABLE, Context, FrozenDict, Item, Scope, freeze
from ._policies import COMPLETE_ALL, Failed, FailFast, Policy
from ._seams import ITEMS, REDUCE, Entry

if TYPE_CHECKING:
    from ._execution import _Execution

__all__ = ["as_result", "branch_goto", "run_block", "run_sequence"]

_perf = time.perf_counter
_new = object.__new__
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
    made: Ok[Any] = _new(Ok)  # `Ok(...)` without its __init__ frame: once per branch
    _set_ok_value(made, outcome if type(outcome) in IMMUTABLE else freeze(outcome))
    return made


def named(node: Node, scope: Scope) -> str:
    """The node's name as journaled here: with the foreach item's index when in one."""
    each = scope.each
    return node.name if each is None else node.name + each.suffix


async def run_block(run: _Execution, node: BlockNode, scope: Scope) -> str | End | None:
    """Run a parallel or foreach block, joined; returns the reducer's goto, if any.

    In a traced run the block has a span, current while its branches run.
    """
    name = named(node, scope)
    run.current = name
    visits = run.visits
    visit = visits[name] = visits.get(name, 0) + 1
    tracer = run.tracer
    if tracer is None:
        return await _block(run, node, scope, name, visit)
    what = "foreach" if type(node) is ForeachNode else "parallel"
    with tracer.scoped(what, name, "flowdsl.block"):
        return await _block(run, node, scope, name, visit)


async def _block(
    run: _Execution, node: BlockNode, scope: Scope, name: str, visit: int
) -> str | End | None:
    version = scope.version
    policy: Policy = FailFast() if node.fail_fast else COMPLETE_ALL
    if type(node) is ForeachNode:
        items = await _items(run, node, name, scope, version, visit)
        count = len(items)
        start = _foreach_starter(run, node, items, scope, version, policy)
    else:
        count = len(node.children)
        start = _parallel_starter(run, node, scope, version, policy)  # type: ignore[arg-type]
    raw = await _join(run, policy, count, start, node.max_concurrency)
    if type(policy) is FailFast and policy.failure is not None:
        raise policy.failure  # the first failure: the siblings were cancelled and awaited
    # Each result is frozen by as_result, so the whole is frozen already: put, not write.
    if type(node) is ForeachNode:
        results: object = tuple([as_result(value) for value in raw])
    else:
        results = FrozenDict(
            {key: as_result(value) for key, value in zip(node.keys, raw, strict=True)}  # type: ignore[union-attr]
        )
    raw.clear()
    into = node.into
    if into is None:
        scope.put(_RESULTS if type(node) is ParallelNode else node.key, results)
        return None
    outcome = await _reduce_journaled(run, name, into, scope, version, visit, results)
    if type(outcome) is Err:
        raise Failed(name, outcome.error)
    return run.apply(node.key, outcome, scope)


_BATCH: Final = 64
"""Branches a block without ``max_concurrency`` starts at once; more start in batches."""


async def _join(
    run: _Execution,
    policy: Policy,
    count: int,
    start: Callable[[int], Coroutine[Any, Any, object]],
    limit: int | None,
) -> list[object]:
    """Run branches ``0 .. count-1`` (at most `limit` at once); their outcomes, in order."""
    parker = run.parker
    fail_fast = policy if type(policy) is FailFast else None
    tasks: list[asyncio.Task[object]] = [] if fail_fast is None else fail_fast.tasks
    bounded = limit is not None and limit < count
    results: list[object] = [None] * count if bounded or count > _BATCH else []
    pending: list[tuple[int, asyncio.Task[object]]] = []
    if parker is not None:  # this thread pauses while its branches run (see _parking)
        parker.threads_changed(-1)
    try:
        async with asyncio.TaskGroup() as group:
            spawn = group.create_task
            if bounded:
                cursor = iter(range(count))

                async def take_turns() -> None:
                    # One of `limit` tasks: start the next branch as soon as one finishes.
                    for index in cursor:
                        results[index] = await start(index)
                        if fail_fast is not None and fail_fast.failure is not None:
                            return

                tasks.extend([spawn(take_turns()) for _ in range(limit)])  # type: ignore[arg-type]
            elif count <= _BATCH:
                tasks.extend([spawn(start(index)) for index in range(count)])
            else:
                pending = await _in_batches(spawn, start, count, fail_fast, tasks, results)
    finally:
        if parker is not None:
            parker.threads_changed(1)
    if fail_fast is not None and fail_fast.failure is not None:
        raw = []  # the siblings were cancelled: the block raises the failure
    elif bounded:
        raw = results
    elif count <= _BATCH:
        raw = [task.result() for task in tasks]
    else:
        for index, task in pending:
            results[index] = task.result()
        raw = results
    # Free the finished tasks (and their coroutines) before wrapping the results, so
    # that a collection triggered by the wrapping has less to walk (docs/performance.md).
    tasks.clear()
    pending.clear()
    return raw


async def _in_batches(
    spawn: Callable[[Coroutine[Any, Any, object]], asyncio.Task[object]],
    start: Callable[[int], Coroutine[Any, Any, object]],
    count: int,
    fail_fast: FailFast | None,
    tasks: list[asyncio.Task[object]],
    results: list[object],
) -> list[tuple[int, asyncio.Task[object]]]:
    """Start `count` branches `_BATCH` at a time; the branches still running, by index.

    Each batch starts once the loop has run the one before to its first wait, in the
    order a single TaskGroup would run them; what of a batch finished by then is taken
    into `results` and its task dropped (each branch is looked at once here). So a
    wide block of quick steps keeps about a batch of tasks alive instead of all of
    them, and the garbage collector does not promote them all to its oldest
    generation (a full collection walks every object in the process:
    docs/performance.md). `tasks` is kept to the live ones, which a fail-fast
    block's failure (`fail_fast`) cancels; after one, no batch starts.
    """
    pending: list[tuple[int, asyncio.Task[object]]] = []
    for first in range(0, count, _BATCH):
        batch = [(index, spawn(start(index))) for index in range(first, min(first + _BATCH, count))]
        tasks.extend([task for _, task in batch])
        await asyncio.sleep(0)  # the loop runs this batch's branches (as a TaskGroup would)
        if fail_fast is not None and fail_fast.failure is not None:
            break  # the block failed: the rest never start
        del tasks[len(tasks) - len(batch) :]
        for entry in batch:
            task = entry[1]
            if task.done() and not task.cancelled() and task.exception() is None:
                results[entry[0]] = task.result()
            else:  # waiting, or failed (the TaskGroup sees to that): taken at the end
                pending.append(entry)
                tasks.append(task)
    return pending


def _parallel_starter(
    run: _Execution, node: ParallelNode, scope: Scope, version: int, policy: Policy
) -> Callable[[int], Coroutine[Any, Any, object]]:
    """How a parallel block starts its branch i: its i-th child."""
    children = node.children
    step = run.step
    if run.parker is None:

        def start(index: int) -> Coroutine[Any, Any, object]:
            child = children[index]
            if type(child) is StepNode:  # the common branch: the step's own coroutine
                return step(child, scope, version, policy)
            return _branch(run, child, scope, version, policy)

        return start
    return lambda index: _branch(run, children[index], scope, version, policy)


def _foreach_starter(
    run: _Execution,
    node: ForeachNode,
    items: list[Any],
    scope: Scope,
    version: int,
    policy: Policy,
) -> Callable[[int], Coroutine[Any, Any, object]]:
    """How a foreach block starts its branch i: the body, on item i."""
    each = scope.each
    prefix = "" if each is None else each.suffix
    body = node.children

    async def start(index: int) -> object:
        own = Scope(scope, version)
        own.each = Item(index, items[index], f"{prefix}[{index}]")
        try:
            parker = run.parker
            if parker is None:
                return await run_sequence(run, body, own)
            parker.threads_changed(1)
            try:
                return await run_sequence(run, body, own)
            finally:
                parker.threads_changed(-1)
        except Failed as failure:
            return policy.settle(failure)
        except (KeyboardInterrupt, SystemExit) as exc:  # a reducer's, nested in the body
            run.interrupt(exc)

    return start


async def _items(
    run: _Execution, node: ForeachNode, name: str, scope: Scope, version: int, visit: int
) -> list[Any]:
    """The block's items, read once: from the journal of a resumed run, else now (journaled)."""
    journal = run.journal
    if journal is not None:
        _, recorded = journal.replayed(ITEMS, name, visit)
        if recorded is not None:
            if type(recorded) is Err:
                raise Failed(name, recorded.error)
            return list(recorded.value)  # type: ignore[attr-defined]
    started = _perf()
    try:
        items = _read_items(node, Context(scope, version, run.run_id, name, 1, visit))
    except Exception as exc:  # items(ctx) raised, or gave something that is not a collection
        raise Failed(name, exc) from None
    if journal is not None:
        outcome = await journal.record(
            Entry(
                kind=ITEMS,
                name=name,
                visit=visit,
                attempt=1,
                outcome=Ok(items),
                failed=False,
                retrying=False,
                started=run.wall(started),
                duration=_perf() - started,
            )
        )
        if type(outcome) is Err:  # an item the journal cannot store
            raise Failed(name, outcome.error)
    return items


def _read_items(node: ForeachNode, ctx: Context) -> list[Any]:
    source = node.items
    if isinstance(source, str):
        try:
            found = ctx[source]
        except KeyError:
            msg = (
                f"foreach {node.name!r} ({node.where}): the context has no key {source!r} to "
                f"take the items from; have a step before the block return it"
            )
            raise UsageError(msg) from None
        what = f"context key {source!r}"
    else:
        found = source(ctx)
        what = "items(ctx)"
    if isinstance(found, str | bytes | Mapping):
        msg = (
            f"foreach {node.name!r} ({node.where}): {what} is a {type(found).__name__}, not a "
            f"collection of items; give a list (for a mapping: list(d.items()) or list(d))"
        )
        raise UsageError(msg)
    try:
        return [value if type(value) in IMMUTABLE else freeze(value) for value in found]
    except TypeError:
        msg = (
            f"foreach {node.name!r} ({node.where}): {what} must be an iterable of items, got "
            f"{found!r}"
        )
        raise UsageError(msg) from None


async def _reduce_journaled(
    run: _Execution,
    name: str,
    into: Callable[..., Any],
    scope: Scope,
    version: int,
    visit: int,
    results: object,
) -> object:
    """The reducer's outcome: replayed from the journal of a resumed run, else called now."""
    journal = run.journal
    if journal is None:
        return await _reduce(run, name, into, scope, version, results)
    _, outcome = journal.replayed(REDUCE, name, visit)
    if outcome is not None:  # it ran before a resume: never again
        return outcome
    started = _perf()
    outcome = await _reduce(run, name, into, scope, version, results)
    return await journal.record(
        Entry(
            kind=REDUCE,
            name=name,
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
    name: str,
    into: Callable[..., Any],
    scope: Scope,
    version: int,
    results: object,
) -> object:
    """Call the block's reducer: its outcome, or ``Err`` when it raised."""
    ctx = Context(scope, version, run.run_id, name)
    try:
        outcome = into(ctx, results)
        if inspect.isawaitable(outcome):
            outcome = await outcome
    except Exception as exc:
        return Err(exc)
    except (KeyboardInterrupt, SystemExit) as exc:
        run.interrupt(exc)
    return outcome


async def _branch(
    run: _Execution, child: Node, scope: Scope, version: int, policy: Policy
) -> object:
    """A branch that is a block, a wait or a call, any branch of a run that may park: its
    Ok or Err."""
    try:
        parker = run.parker
        if parker is None:
            return await _branch_result(run, child, scope, version, policy)
        parker.threads_changed(1)
        try:
            return await _branch_result(run, child, scope, version, policy)
        finally:
            parker.threads_changed(-1)
    except Failed as failure:
        return policy.settle(failure)
    except (KeyboardInterrupt, SystemExit) as exc:  # a reducer's, nested in this branch
        run.interrupt(exc)


async def _branch_result(
    run: _Execution, child: Node, scope: Scope, version: int, policy: Policy
) -> Ok[Any] | Err[Any]:
    """Run one branch on the block's snapshot; its value for `results`, or raise Failed."""
    kind = type(child)
    if kind is StepNode:
        return as_result(await run.step(child, scope, version, policy))  # type: ignore[arg-type]
    if kind is WaitNode:
        return as_result(await run.wait(child, scope, version, policy))  # type: ignore[arg-type]
    if kind is CallNode:
        return as_result(await run.step(child, scope, version, policy))  # type: ignore[arg-type]
    own = Scope(scope, version)
    nodes = child.children if kind is SequenceNode else (child,)  # type: ignore[union-attr]
    return await run_sequence(run, nodes, own)


async def run_sequence(run: _Execution, nodes: tuple[Node, ...], own: Scope) -> Ok[Any]:
    """Run a branch's nodes in order in its own scope; ``Ok(what it added)``, or raise Failed."""
    for node in nodes:
        kind = type(node)
        if kind is StepNode:
            route = run.apply(node.key, await run.step(node, own, own.version), own)  # type: ignore[arg-type]
        elif kind is WaitNode:
            route = run.apply(node.key, await run.wait(node, own, own.version), own)  # type: ignore[arg-type]
        elif kind is CallNode:
            route = run.apply(node.key, await run.step(node, own, own.version), own)  # type: ignore[arg-type]
        else:
            route = await run_block(run, node, own)  # type: ignore[arg-type]
        if route is not None:
            raise Failed(named(node, own), branch_goto(run.plan.name, node, route))
    return Ok(FrozenDict(own.added()))


def branch_goto(workflow: str, node: Node, route: object) -> GotoError:
    """The error of a goto returned inside a branch or a foreach body (by a step or a reducer)."""
    target = route.target if isinstance(route, Goto) else route
    return GotoError(
        f"workflow {workflow!r}, {node.name!r} ({node.where}) returned "
        f"goto({target!r}) inside a parallel branch or a foreach body; a branch can only "
        f"succeed or fail. Route from the block's into= reducer or from a step after the block"
    )
