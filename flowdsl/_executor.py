"""EXECUTE: run a `Plan` on asyncio with ok/error/goto routing and `into` reducers.

The top-level sequence is a loop over an index that goto moves; a parallel
block is a nursery (`asyncio.TaskGroup`): no branch outlives it. Three seams
keep what comes later out of the routing code:

* `_Execution.invoke` is the one place a step attempt is called (threads, processes and
  remote executors plug in here);
* `_Execution.step` records each attempt's outcome at one place: the durable
  journal first (the commit point), then the run's records and the events;
* events are data (`_events`), sent to listeners only when there are any.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NoReturn, Protocol

import attrs

from ._blocking import run_in_thread
from ._context import IMMUTABLE, Context, FrozenDict, Scope, freeze
from ._events import (
    CompensationFinished,
    Listener,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
    fan_out,
)
from ._outcome import Goto
from ._plan import AGEN, ASYNC, SYNC, THREAD, Node, ParallelNode, Plan, SequenceNode, StepNode
from ._run import CompensationRecord, Run, StepRecord
from ._spec import END, End
from ._trampoline import call_blocking
from .errors import ExecutorError, GotoError, TransitionLimitExceeded
from .result import Err, Ok

__all__ = ["REDUCE", "STEP", "UNDO", "Entry", "Invoker", "Journal", "execute"]

_perf = time.perf_counter
_new_record = tuple.__new__
_OK_NONE: Final = Ok(None)
_RESULTS: Final = "__results__"


# How `_Execution.step` runs: in a sequence, or as a parallel branch. A branch of a
# complete_all block gets _COMPLETE_ALL; a branch of a fail_fast block gets its block's
# _FailFast.
_IN_SEQUENCE: Final = 0
_COMPLETE_ALL: Final = 2


class _FailFast:
    """A fail_fast block in progress: its first failure, and the sibling tasks to cancel.

    The branches abort the block themselves rather than raising into the TaskGroup:
    CPython 3.11's TaskGroup then cancels the parent task and swallows a cancellation
    that comes from outside while it waits for the siblings. Here the group only ever
    sees cancelled or finished tasks, so a caller's cancel always propagates.
    """

    __slots__ = ("failure", "tasks")

    def __init__(self) -> None:
        self.failure: _Failed | None = None
        self.tasks: list[asyncio.Task[object]] = []

    def fail(self, failure: _Failed) -> None:
        if self.failure is None:
            self.failure = failure
            current = asyncio.current_task()
            for task in self.tasks:
                if task is not current:
                    task.cancel()


def _as_result(outcome: object) -> Ok[Any] | Err[Any]:
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


class Invoker(Protocol):
    """Runs one attempt of a step somewhere else (a thread pool, a process, a cluster)."""

    async def __call__(self, node: StepNode, ctx: Context) -> object: ...


STEP: Final = "step"
"""`Entry.kind` of a step attempt."""
REDUCE: Final = "reduce"
"""`Entry.kind` of a parallel block's ``into=`` reducer outcome."""
UNDO: Final = "undo"
"""`Entry.kind` of a finished compensation (its outcome is ``Ok(None)`` or ``Err(reason)``)."""


@attrs.frozen(kw_only=True)
class Entry:
    """What the engine hands the journal: one finished attempt (or reducer, compensation)."""

    kind: str
    """`STEP`, `REDUCE` or `UNDO`."""
    name: str
    """The step's name; the block's for a reducer; the undone step's for a compensation."""
    visit: int
    attempt: int
    outcome: object
    failed: bool
    retrying: bool
    """The attempt failed and will be tried again (else its outcome is final)."""
    started: float
    """Wall-clock seconds since the epoch."""
    duration: float


class Journal(Protocol):
    """Where a durable run records what it did, and finds it again on resume."""

    def replayed(self, kind: str, name: str, visit: int) -> tuple[int, object | None]:
        """Failed attempts already spent on this visit, and its recorded outcome if it finished.

        The outcome is an `Err` when the step failed for good (it is not run again), and
        never None for a finished step: a step that returned None is replayed as `Ok(None)`.
        """
        ...

    def undone(self, name: str, visit: int) -> CompensationRecord | None:
        """The recorded compensation of a step's visit, when it already ran."""
        ...

    def must_check(self) -> bool:
        """Cheap: whether the run's claim may have been lost (see `check`)."""
        ...

    async def check(self) -> None:
        """Raise `StoreError` when this run's claim is lost (called before an attempt starts)."""
        ...

    async def record(self, entry: Entry) -> object:
        """Commit one entry before anything that depends on it starts.

        Returns the outcome to use: the same one, or an `Err` when the outcome
        cannot be journaled (then the step fails with that error, not retried).
        """
        ...

    async def finish(self, run: Run) -> None:
        """Record the run's final status (written even if the caller is cancelled meanwhile)."""
        ...


def _builtin_invoker(name: str | None) -> Invoker | None:
    """The library-owned executors a run has without being given them: ``"process"``."""
    if name == "process":
        from .executors._process import shared_process_executor

        return shared_process_executor()
    return None


def _retries(node: StepNode, attempt: int, exception: BaseException | None) -> bool:
    """Whether a failed attempt is tried again (an `error()` result is, while attempts remain)."""
    retry = node.retry
    return (
        retry is not None
        and attempt < retry.max_attempts
        and (exception is None or isinstance(exception, retry.retry_on))
    )


class _Failed(Exception):
    """A step (or reducer) failed for good: unwinds to the top-level loop."""

    def __init__(self, step: str, reason: object) -> None:
        super().__init__(step, reason)
        self.step = step
        self.reason = reason


def _timeout_reason(node: StepNode) -> TimeoutError:
    return TimeoutError(f"step {node.name!r} timed out after {node.timeout:g}s")


def _check_overrun(node: StepNode, started: float) -> None:
    """A plain function on the loop cannot be interrupted; an attempt that overran its
    timeout still fails, when it returns (docs/decisions.md)."""
    if _perf() - started > node.timeout:  # type: ignore[operator]
        raise _timeout_reason(node)


async def _call(fn: Callable[..., Any], ctx: Context) -> object:
    """``fn(ctx)``, awaited when it returns an awaitable (compensations may be sync or async)."""
    result = fn(ctx)
    if inspect.isawaitable(result):
        result = await result
    return result


class _Execution:
    """The mutable state of one run. One instance per run; never shared."""

    __slots__ = (
        "cancelled_task",
        "clock",
        "compensable",
        "current",
        "due",
        "emit",
        "expired",
        "interrupted",
        "invokers",
        "journal",
        "limit",
        "plan",
        "records",
        "root",
        "run_id",
        "t0",
        "task",
        "task_cancels",
        "timer",
        "transitions",
        "visits",
        "wall0",
    )

    def __init__(
        self,
        plan: Plan,
        run_id: str,
        root: Scope,
        emit: Listener | None,
        invokers: Mapping[str, Invoker],
        journal: Journal | None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.root = root
        self.emit = emit
        self.invokers = invokers
        self.journal = journal
        self.records: list[StepRecord] = []
        self.compensable: list[tuple[StepNode, Scope, int, object, int]] = []
        self.visits: dict[str, int] = {}
        self.transitions = 0
        self.current: str | None = None
        self.t0 = _perf()
        self.wall0 = time.time()
        # The run's deadline (see `start_clock`), and what stopped the run from inside.
        self.limit: float | None = None
        self.due: float | None = None
        self.clock: Callable[[], float] = _perf
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[Any] | None = None
        self.expired = False
        self.cancelled_task = False
        self.task_cancels = 0  # interrupt()'s cancels of the run's task, taken back in execute
        self.interrupted: BaseException | None = None

    # -- the run's deadline and interruptions ---------------------------------------------

    def start_clock(self, limit: float | None) -> None:
        """Arm the run's timeout: `expire` runs at the deadline, in this (the run's) task."""
        self.task = asyncio.current_task()
        if limit is None:
            return
        loop = asyncio.get_running_loop()
        self.limit = limit
        self.clock = loop.time
        self.due = loop.time() + limit
        self.timer = loop.call_at(self.due, self.expire, True)

    def forget_cancels(self) -> None:
        """Take back the run task's cancellations `interrupt` asked for (they were delivered)."""
        task = self.task
        if task is not None:
            for _ in range(self.task_cancels):
                task.uncancel()
        self.task_cancels = 0

    def timed_out(self) -> bool:
        """After a CancelledError in the run's task: whether it was the run's own deadline.

        A cancellation of the caller's that came too is never taken for a timeout.
        """
        if not self.expired or self.interrupted is not None:
            return False
        task = self.task
        if task is None:
            return True
        if self.cancelled_task:  # the deadline cancelled the task: was the caller's there too?
            return task.uncancel() == 0
        return task.cancelling() == 0  # `overdue` raised in the task itself

    def expire(self, cancel_run: bool) -> None:
        """The run's deadline passed: cancel its task (unless it is the caller, see `overdue`)."""
        if self.expired:
            return
        self.expired = True
        if self.timer is not None:
            self.timer.cancel()
        if cancel_run and self.task is not None:
            self.cancelled_task = True
            self.task.cancel()

    def overdue(self) -> None:
        """Called before an attempt starts past the deadline: nothing may start after it.

        A plain sync step blocks the loop, so the deadline's timer may not have
        fired yet. The run's own task unwinds with a CancelledError it raises
        itself; a branch's task cancels the run's task, which cancels the block.
        """
        self.expire(asyncio.current_task() is not self.task)
        raise asyncio.CancelledError

    def interrupt(self, exc: BaseException) -> NoReturn:
        """A step raised KeyboardInterrupt or SystemExit: stop the run, record it, re-raise.

        The run's task records the run as cancelled and then raises `exc` (see
        `execute`); from a branch's task the run's task is cancelled to get there.
        """
        if self.interrupted is None:
            self.interrupted = exc
            if self.task is not None and asyncio.current_task() is not self.task:
                self.task.cancel()
                self.task_cancels += 1
        raise asyncio.CancelledError

    # -- the top-level sequence ------------------------------------------------------

    async def main(self) -> None:
        plan = self.plan
        nodes = plan.nodes
        targets = plan.targets
        root = self.root
        count = len(nodes)
        index = 0
        while index < count:
            node = nodes[index]
            if type(node) is StepNode:
                route = self.apply(node.key, await self.step(node, root, root.version), root)
            else:
                route = await self.parallel(node, root)  # type: ignore[arg-type]
            if route is None:
                index += 1
            elif route is END:
                return
            else:
                target = targets.get(route)
                if target is None:
                    raise _Failed(node.name, self.bad_goto(node, route))
                self.transitions += 1
                if self.transitions > plan.max_transitions:
                    raise _Failed(node.name, self.too_many_transitions(node, route))
                index = target

    def too_many_transitions(self, node: Node, route: object) -> TransitionLimitExceeded:
        return TransitionLimitExceeded(
            f"workflow {self.plan.name!r} made more than {self.plan.max_transitions} goto "
            f"transitions ({node.name!r} returned goto({route!r})); a goto loop does not end. "
            f"Return goto(END) or go on to another step when it is done, or raise "
            f"@workflow(max_transitions=...)"
        )

    def bad_goto(self, node: Node, route: object) -> GotoError:
        known = ", ".join(repr(n) for n in self.plan.targets)
        if isinstance(route, str) and route in self.plan.steps:
            why = "is inside a parallel block; goto targets must be top-level steps"
        else:
            why = "is not a top-level step of this workflow"
        return GotoError(
            f"workflow {self.plan.name!r}, {node.name!r} returned goto({route!r}), which {why}; "
            f"known steps: {known}"
        )

    # -- one step, all its attempts ----------------------------------------------------

    async def step(
        self, node: StepNode, scope: Scope, version: int, branch: int | _FailFast = _IN_SEQUENCE
    ) -> object:
        """Run a step to its final outcome; returns a successful outcome or raises _Failed.

        As a parallel branch a goto is a failure, and a failure is settled here (see
        `settle`) instead of raised, so the block's task needs no wrapper.
        """
        name = node.name
        self.current = name
        visits = self.visits
        visit = visits[name] = visits.get(name, 0) + 1
        attempt = 0
        journal = self.journal
        if journal is not None:
            attempt, done = journal.replayed(STEP, name, visit)
            if done is not None:
                if type(done) is Err:  # it failed for good before the crash: fail the same way
                    return self.settle(branch, _Failed(name, done.error))
                if node.compensate is not None:
                    self.remember(node, scope, version, done, visit)
                return self.as_branch(node, done, branch) if branch else done
        retry = node.retry
        emit = self.emit
        run_id = self.run_id
        while True:
            attempt += 1
            if self.due is not None and self.clock() >= self.due:
                self.overdue()
            if journal is not None and journal.must_check():
                await journal.check()
            ctx = Context(scope, version, run_id, name, attempt, visit)
            if emit is not None:
                emit(StepStarted(name, attempt, run_id=run_id))
            started = _perf()
            exception: BaseException | None = None
            try:
                if node.timeout is None:
                    outcome = await self.invoke(node, ctx)
                else:
                    limit = asyncio.timeout(node.timeout)
                    try:
                        async with limit:
                            outcome = await self.invoke(node, ctx)
                    except TimeoutError as exc:
                        if limit.expired():  # ours; a step's own TimeoutError stays its own
                            raise _timeout_reason(node) from exc
                        raise
                    if node.mode is SYNC:
                        _check_overrun(node, started)
                failed = type(outcome) is Err
            except Exception as exc:  # a raised exception is the step's failure
                outcome = Err(exc)
                exception = exc
                failed = True
            except (KeyboardInterrupt, SystemExit) as exc:
                self.interrupt(exc)
            duration = _perf() - started
            retrying = failed and _retries(node, attempt, exception)
            if journal is not None:
                journaled = await journal.record(
                    Entry(
                        kind=STEP,
                        name=name,
                        visit=visit,
                        attempt=attempt,
                        outcome=outcome,
                        failed=failed,
                        retrying=retrying,
                        started=self.wall(started),
                        duration=duration,
                    )
                )
                if journaled is not outcome:  # the journal refused it: retrying cannot help
                    outcome, failed, retrying = journaled, True, False
            self.note(name, visit, attempt, started, duration, outcome, failed)
            if not failed:
                if node.compensate is not None:
                    self.remember(node, scope, version, outcome, visit)
                if emit is not None:
                    emit(StepFinished(name, "succeeded", duration, attempt=attempt, run_id=run_id))
                return self.as_branch(node, outcome, branch) if branch else outcome
            reason = outcome.error  # type: ignore[attr-defined]
            delay = retry.delay(attempt) if retrying and retry is not None else None
            if emit is not None:
                emit(
                    StepFinished(
                        name,
                        "failed",
                        duration,
                        attempt=attempt,
                        error=reason,
                        retry_in=delay,
                        run_id=run_id,
                    )
                )
            if delay is None:
                return self.settle(branch, _Failed(name, reason))
            if delay > 0:
                await asyncio.sleep(delay)

    def as_branch(self, node: StepNode, outcome: object, branch: int | _FailFast) -> object:
        """A branch step's successful outcome; a goto there is the branch's failure."""
        if type(outcome) is not Goto:
            return outcome
        return self.settle(branch, _Failed(node.name, self.branch_goto(node, outcome)))

    @staticmethod
    def settle(branch: int | _FailFast, failure: _Failed) -> object:
        """A step's final failure: raised in a sequence; a complete_all branch's Err; or,
        in a fail_fast block, the block's first failure (the siblings are cancelled)."""
        if branch is _COMPLETE_ALL:
            return Err(failure.reason)
        if branch:
            branch.fail(failure)  # type: ignore[union-attr]
            return None
        raise failure

    def invoke(self, node: StepNode, ctx: Context) -> Awaitable[object]:
        """THE seam: the one place where an attempt of a step's body is called.

        Returns what the caller awaits; an ``async def`` step's own coroutine is
        returned as it is, so the common case costs no extra frame.
        """
        mode = node.mode
        if mode is ASYNC:
            return node.fn(ctx)  # type: ignore[no-any-return]
        if mode is SYNC:
            return self.call_sync(node, ctx)
        if mode is THREAD:
            return run_in_thread(call_blocking, node.fn, ctx)
        if mode is AGEN:
            return self.drain(node, node.fn(ctx))
        invoker = self.invokers.get(node.executor)  # type: ignore[arg-type]
        if invoker is None:
            invoker = _builtin_invoker(node.executor)
            if invoker is None:
                return self.no_executor(node)
        return invoker(node, ctx)

    async def call_sync(self, node: StepNode, ctx: Context) -> object:
        outcome = node.fn(ctx)
        if inspect.isawaitable(outcome):
            return await outcome
        if inspect.isasyncgen(outcome):  # a wrapper around an async generator step
            return await self.drain(node, outcome)
        return outcome

    async def no_executor(self, node: StepNode) -> object:
        known = ", ".join(repr(n) for n in ("thread", "process", *self.invokers))
        msg = (
            f"workflow {self.plan.name!r}, step {node.name!r} ({node.where}) asks for "
            f"executor {node.executor!r}, which this run does not have; pass "
            f"executors={{{node.executor!r}: ...}} to the run call. Known: {known}"
        )
        raise ExecutorError(msg)

    async def drain(self, node: StepNode, agen: AsyncGenerator[object, Any]) -> object:
        """Run an async-generator step: outcomes are kept, other items are chunks."""
        outcome: object = _OK_NONE
        emit = self.emit
        try:
            async for item in agen:
                kind = type(item)
                if kind is Ok or kind is Err or kind is Goto:
                    outcome = item
                elif emit is not None:
                    emit(StepChunk(node.name, item, run_id=self.run_id))
        finally:
            await agen.aclose()
        return outcome

    def note(
        self,
        name: str,
        visit: int,
        attempt: int,
        started: float,
        duration: float,
        outcome: object,
        failed: bool,
    ) -> None:
        """THE other seam: the one place an attempt's outcome is recorded in the run."""
        self.records.append(
            _new_record(
                StepRecord,
                (
                    name,
                    attempt,
                    "failed" if failed else "succeeded",
                    self.wall0 + (started - self.t0),  # self.wall(started), inlined
                    duration,
                    outcome.error if failed else None,  # type: ignore[attr-defined]
                    visit,
                ),
            )
        )

    def wall(self, started: float) -> float:
        """Wall-clock seconds since the epoch for a `perf_counter` reading of this run."""
        return self.wall0 + (started - self.t0)

    def remember(
        self, node: StepNode, scope: Scope, version: int, outcome: object, visit: int
    ) -> None:
        """Keep what a step with a compensation needs to be undone later."""
        self.compensable.append((node, scope, version, outcome, visit))

    # -- applying an outcome ---------------------------------------------------------------

    @staticmethod
    def apply(key: str, outcome: object, scope: Scope) -> str | End | None:
        """Merge a successful outcome into `scope` (a plain value under `key`); returns a goto target."""
        kind = type(outcome)
        if kind is Ok:
            value = outcome.value  # type: ignore[attr-defined]
            if value is None:
                return None
            if type(value) is dict or isinstance(value, Mapping):  # dict first: ABCs are slow
                scope.write(value)
            else:
                scope.write({key: value})
            return None
        if outcome is None:
            return None
        if kind is Goto:
            if outcome.update:  # type: ignore[attr-defined]
                scope.write(outcome.update)  # type: ignore[attr-defined]
            return outcome.target  # type: ignore[attr-defined, no-any-return]
        scope.write({key: outcome})
        return None

    # -- parallel blocks -------------------------------------------------------------------

    async def parallel(self, node: ParallelNode, scope: Scope) -> str | End | None:
        """Run a block: every branch at once, joined; returns the reducer's goto, if any."""
        self.current = node.name
        version = scope.version
        visits = self.visits
        visit = visits[node.name] = visits.get(node.name, 0) + 1
        mode: int | _FailFast = _FailFast() if node.fail_fast else _COMPLETE_ALL
        tasks: list[asyncio.Task[object]] = mode.tasks if type(mode) is _FailFast else []
        limit = asyncio.Semaphore(node.max_concurrency) if node.max_concurrency else None
        step = self.step
        branch = self.branch
        async with asyncio.TaskGroup() as group:
            spawn = group.create_task
            for child in node.children:
                if limit is None and type(child) is StepNode:
                    tasks.append(spawn(step(child, scope, version, mode)))
                else:
                    tasks.append(spawn(branch(child, scope, version, mode, limit)))
        if type(mode) is _FailFast and mode.failure is not None:
            raise mode.failure  # the first failure: the siblings were cancelled and awaited
        raw = [task.result() for task in tasks]
        # Free the finished tasks (and their coroutines) before wrapping the results, so
        # that a collection triggered by the wrapping has less to walk (docs/performance.md).
        tasks.clear()
        outcomes = {key: _as_result(value) for key, value in zip(node.keys, raw, strict=True)}
        into = node.into
        if into is None:
            scope.write({_RESULTS: MappingProxyType(outcomes)})
            return None
        journal = self.journal
        if journal is None:
            outcome = await self.reduce(node, into, scope, version, outcomes)
        else:  # its outcome is journaled: a resume replays it and never calls it again
            _, outcome = journal.replayed(REDUCE, node.name, visit)
            if outcome is None:
                started = _perf()
                outcome = await self.reduce(node, into, scope, version, outcomes)
                outcome = await journal.record(
                    Entry(
                        kind=REDUCE,
                        name=node.name,
                        visit=visit,
                        attempt=1,
                        outcome=outcome,
                        failed=type(outcome) is Err,
                        retrying=False,
                        started=self.wall(started),
                        duration=_perf() - started,
                    )
                )
        if type(outcome) is Err:
            raise _Failed(node.name, outcome.error)
        return self.apply(node.key, outcome, scope)

    async def reduce(
        self,
        node: ParallelNode,
        into: Callable[..., Any],
        scope: Scope,
        version: int,
        outcomes: dict[str, Any],
    ) -> object:
        """Call the block's reducer: its outcome, or ``Err`` when it raised."""
        ctx = Context(scope, version, self.run_id, node.name)
        try:
            outcome = into(ctx, MappingProxyType(outcomes))
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as exc:
            return Err(exc)
        except (KeyboardInterrupt, SystemExit) as exc:
            self.interrupt(exc)
        return outcome

    async def branch(
        self,
        child: Node,
        scope: Scope,
        version: int,
        mode: int | _FailFast,
        limit: asyncio.Semaphore | None,
    ) -> object:
        """A branch that is a block, or any branch under max_concurrency: its Ok or Err."""
        try:
            if limit is None:
                return await self.branch_result(child, scope, version, mode)
            async with limit:
                return await self.branch_result(child, scope, version, mode)
        except _Failed as failure:
            return self.settle(mode, failure)
        except (KeyboardInterrupt, SystemExit) as exc:  # a reducer's, nested in this branch
            self.interrupt(exc)

    async def branch_result(
        self, child: Node, scope: Scope, version: int, mode: int | _FailFast
    ) -> Ok[Any] | Err[Any]:
        """Run one branch on the block's snapshot; its value for `results`, or raise _Failed."""
        if type(child) is StepNode:
            return _as_result(await self.step(child, scope, version, mode))
        own = Scope(scope, version)
        nodes = child.children if type(child) is SequenceNode else (child,)
        for node in nodes:
            if type(node) is StepNode:
                route = self.apply(node.key, await self.step(node, own, own.version), own)
            else:
                route = await self.parallel(node, own)  # type: ignore[arg-type]
            if route is not None:
                raise _Failed(node.name, self.branch_goto(node, route))
        return Ok(FrozenDict(own.added()))

    def branch_goto(self, node: Node, route: object) -> GotoError:
        target = route.target if isinstance(route, Goto) else route
        return GotoError(
            f"workflow {self.plan.name!r}, {node.name!r} ({node.where}) returned "
            f"goto({target!r}) inside a parallel branch; a branch can only succeed or fail. "
            f"Route from the block's into= reducer or from a step after the block"
        )

    # -- compensation ----------------------------------------------------------------------

    async def compensate(self) -> tuple[CompensationRecord, ...]:
        """Undo completed steps in reverse completion order; failures are recorded, not raised.

        A compensation fails when it raises or returns ``error(reason)``. Each is
        bounded by its step's ``timeout=``, or else by the run's (counted afresh:
        a run that failed by timing out still gets to undo its steps).
        """
        done: list[CompensationRecord] = []
        emit = self.emit
        journal = self.journal
        for node, scope, version, outcome, visit in reversed(self.compensable):
            if journal is not None:
                recorded = journal.undone(node.name, visit)
                if recorded is not None:  # it ran before a resume: never again
                    done.append(recorded)
                    continue
            own = Scope(scope, version)
            self.apply(node.key, outcome, own)
            ctx = Context(own, own.version, self.run_id, node.name, 1, visit)
            limit = node.timeout if node.timeout is not None else self.limit
            started = _perf()
            error = await self.undo(node, ctx, limit)
            duration = _perf() - started
            status = "failed" if error is not None else "succeeded"
            if journal is not None:
                await journal.record(
                    Entry(
                        kind=UNDO,
                        name=node.name,
                        visit=visit,
                        attempt=1,
                        outcome=_OK_NONE if error is None else Err(error),
                        failed=error is not None,
                        retrying=False,
                        started=self.wall(started),
                        duration=duration,
                    )
                )
            done.append(CompensationRecord(node.name, status, duration, error))
            if emit is not None:
                emit(
                    CompensationFinished(
                        node.name, status, duration, error=error, run_id=self.run_id
                    )
                )
        return tuple(done)

    async def undo(self, node: StepNode, ctx: Context, limit: float | None) -> object:
        """Run one compensation; its failure reason, or None when it succeeded."""
        undo: Callable[..., Any] = node.compensate  # type: ignore[assignment]
        window = None if limit is None else asyncio.timeout(limit)
        started = _perf()
        try:
            if window is None:
                result = await _call(undo, ctx)
            else:
                async with window:
                    result = await _call(undo, ctx)
        except TimeoutError as exc:
            if window is not None and window.expired():
                return self.undo_timed_out(node, limit)
            return exc
        except Exception as exc:
            return exc
        except (KeyboardInterrupt, SystemExit) as exc:
            self.interrupt(exc)
        if limit is not None and _perf() - started > limit:  # a plain function is not cut off
            return self.undo_timed_out(node, limit)
        if type(result) is Err:
            return result.error
        return None

    @staticmethod
    def undo_timed_out(node: StepNode, limit: float | None) -> TimeoutError:
        return TimeoutError(
            f"the compensation of step {node.name!r} did not finish within {limit:g}s"
        )

    # -- the run as a whole ----------------------------------------------------------------

    def finish(
        self,
        status: Any,
        error: object = None,
        failed_step: str | None = None,
        compensations: tuple[CompensationRecord, ...] = (),
    ) -> Run:
        return Run(
            run_id=self.run_id,
            workflow=self.plan.name,
            status=status,
            output=MappingProxyType(self.root.snapshot().to_dict()),
            error=error,
            failed_step=failed_step,
            steps=tuple(self.records),
            compensations=compensations,
            duration=_perf() - self.t0,
            started=self.wall0,
        )


async def execute(
    plan: Plan,
    input: Mapping[str, Any] | None,
    run_id: str,
    *,
    timeout: float | None = None,
    listeners: tuple[Listener, ...] = (),
    invokers: Mapping[str, Invoker] | None = None,
    journal: Journal | None = None,
    resumed: bool = False,
) -> Run:
    """Run `plan` once with `input`; returns the finished `Run`.

    A failing step fails the run (compensations then run); the run's own
    timeout fails it with a `TimeoutError` reason. Cancellation from outside
    is never turned into a failure: it propagates after the run is reported
    as "cancelled" to listeners and the journal.
    """
    emit = fan_out(listeners)
    state = _Execution(plan, run_id, Scope(initial=input), emit, invokers or {}, journal)
    if emit is not None:
        emit(RunStarted(plan.name, run_id=run_id, resumed=resumed))
    state.start_clock(timeout if timeout is not None else plan.timeout)
    error: object = None
    failed_step: str | None = None
    try:
        await state.main()
    except _Failed as failure:
        error, failed_step = failure.reason, failure.step
    except asyncio.CancelledError:
        if not state.timed_out():
            interrupted = state.interrupted
            if interrupted is not None:
                state.forget_cancels()
            await _report(state.finish("cancelled"), emit, journal)
            if interrupted is not None:
                raise interrupted from None
            raise
        failed_step = state.current
        error = TimeoutError(
            f"workflow {plan.name!r} did not finish within its {state.limit:g}s timeout "
            f"(running step {failed_step!r})"
        )
    finally:
        if state.timer is not None:
            state.timer.cancel()
    if failed_step is None and error is None:
        run = state.finish("completed")
    else:
        try:
            compensations = await state.compensate()
        except asyncio.CancelledError:  # cancelled while undoing: still reported, then raised
            interrupted = state.interrupted
            if interrupted is not None:
                state.forget_cancels()
            await _report(state.finish("cancelled", error, failed_step), emit, journal)
            if interrupted is not None:
                raise interrupted from None
            raise
        run = state.finish("failed", error, failed_step, compensations)
    await _report(run, emit, journal)
    return run


async def _report(run: Run, emit: Listener | None, journal: Journal | None) -> None:
    """Record the run's end, then tell the listeners; a cancel meanwhile waits for both."""
    cancelled = False
    if journal is not None:
        try:
            await journal.finish(run)
        except asyncio.CancelledError:  # the record was written (see Journal.finish)
            cancelled = True
    if emit is not None:
        emit(RunFinished(run))
    if cancelled:
        raise asyncio.CancelledError
