"""EXECUTE one run: the top-level loop, and every attempt of every step.

The top-level sequence is a loop over an index that goto moves; a parallel
block (`_blocks`) is a nursery; compensation (`_compensation`) undoes a failed
run. One `_Execution` holds a run's state. A step runs in named parts:

* **the attempt**: `invoke` is where a step's body is called (threads,
  processes and remote executors plug in behind it, `_seams.Invoker`), but
  for the hot path: an ``async def`` step without a timeout or a hook is
  called by `step` itself, as `invoke`'s first case would; `attempt` adds
  the step's timeout and the attempt hook when there are any;
* **the commit**: `commit` hands the attempt to the durable journal, before
  anything that depends on it starts;
* **success** and **failure**: `succeeded` and `failed` record the attempt in
  the run, send its events, and decide what comes next (the block's policy
  settles a final failure, `_policies`).

The hot path is deliberate (docs/performance.md): the common attempt (an
``async def`` step, no timeout, no hook, not durable) costs the step's own
coroutine and nothing else: no call of `invoke`, none of `succeeded` unless
there is something to settle, its `Context` built without its ``__init__``;
events are built only when someone listens.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NoReturn

import attrs

from .._checks import seconds_problem
from .._outcome import Goto
from .._plan import (
    AGEN,
    ASYNC,
    END,
    SYNC,
    THREAD,
    CallNode,
    End,
    Node,
    Plan,
    StepNode,
    WaitNode,
)
from ..errors import ExecutorError, GotoError, TransitionLimitExceeded, UsageError
from ..result import Err, Ok
from ._blocking import call_blocking, run_in_thread
from ._blocks import branch_goto, run_block
from ._calls import child_attempt
from ._clock import clock
from ._compensation import compensate
from ._context import IMMUTABLE, PLAIN, Context, FrozenDict, Scope, freeze, freeze_plain
from ._events import (
    Listener,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
    fan_out,
)
from ._logging import context_hook
from ._mailbox import Inbox, executing
from ._parking import Parker
from ._policies import IN_SEQUENCE, Failed, Policy
from ._run import Attempted, CompensationRecord, Run, Waiting
from ._seams import DUE, STEP, AttemptHook, Entry, Invoker, Journal
from ._tracing import RunTracer, Scoped, run_tracer, with_tracing

__all__ = ["execute"]

_perf = time.perf_counter
_new = object.__new__
_OK_NONE: Final = Ok(None)


def _retries(node: StepNode | CallNode, attempt: int, exception: BaseException | None) -> bool:
    """Whether a failed attempt is tried again (an `error()` result is, while attempts remain)."""
    retry = node.retry
    return (
        retry is not None
        and attempt < retry.max_attempts
        and (exception is None or isinstance(exception, retry.retry_on))
    )


class _BadDeadline(Exception):
    """A wait's deadline could not be had: `reason` is the wait's failure."""

    def __init__(self, reason: Exception) -> None:
        self.reason = reason


def _when(node: WaitNode, ctx: Context, now: float) -> float | None:
    """When a wait first reached `now` ends (epoch seconds; None: an event without a timeout)."""
    if node.how == "event":
        return None if node.timeout is None else now + node.timeout
    if node.how == "sleep_for":
        seconds = node.seconds if node.fn is None else node.fn(ctx)
        problem = seconds_problem(seconds, "sleep_for()'s function", optional=False, zero=True)
        if problem is not None:
            raise UsageError(f"wait {node.name!r}: {problem}")
        return now + seconds  # type: ignore[operator]
    return node.until if node.fn is None else _timestamp(node, node.fn(ctx))


def _timestamp(node: WaitNode, when: object) -> float:
    """What a sleep_until function returned, as epoch seconds (it must be an aware datetime)."""
    if isinstance(when, _dt.datetime) and when.utcoffset() is not None:
        return when.timestamp()
    if isinstance(when, _dt.datetime):
        msg = (
            f"wait {node.name!r}: sleep_until()'s function returned the naive datetime "
            f"{when!r}; return an aware one: datetime(..., tzinfo=timezone.utc)"
        )
    else:
        msg = f"wait {node.name!r}: sleep_until()'s function must return an aware datetime, got {when!r}"
    raise UsageError(msg)


def _on_timeout(node: WaitNode) -> object:
    """A timed-out event wait's outcome: a failure, or where ``on_timeout`` goes."""
    if node.on_timeout is None:
        msg = f"wait {node.name!r} for event {node.event!r} timed out after {node.timeout:g}s"
        return Err(TimeoutError(msg))
    return Goto(node.on_timeout)


def _timeout_reason(node: StepNode | CallNode) -> TimeoutError:
    return TimeoutError(f"step {node.name!r} timed out after {node.timeout:g}s")


class _Execution:
    """The mutable state of one run. One instance per run; never shared."""

    __slots__ = (
        "cancelled_task",
        "clock",
        "closing",
        "compensable",
        "current",
        "due",
        "emit",
        "executors",
        "expired",
        "given_hook",
        "hook",
        "inbox",
        "interrupted",
        "journal",
        "limit",
        "parent_id",
        "parked_visits",
        "parker",
        "parking",
        "plan",
        "records",
        "root",
        "run_id",
        "stopping",
        "t0",
        "task",
        "task_cancels",
        "timer",
        "tracer",
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
        executors: Mapping[str, Invoker],
        journal: Journal | None,
        hook: AttemptHook | None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.root = root
        self.emit = emit
        self.executors = executors
        self.journal = journal
        self.hook = hook
        self.given_hook: AttemptHook | None = None  # the caller's, handed to child runs
        self.tracer: RunTracer | None = None  # a traced run's spans (see _tracing)
        self.parent_id: str | None = None  # the run that called this one (call_workflow)
        self.inbox: Inbox | None = None  # events sent to a run without a store (see _mailbox)
        self.parker: Parker | None = None  # a worker's run with waits (see start_parker)
        self.parking: Waiting | None = None  # set when the run parks: what it waits for
        self.parked_visits: tuple[tuple[str, int], ...] = ()  # and which visits of which waits
        self.records: list[Attempted] = []  # plain tuples: the collector untracks them
        self.compensable: list[tuple[StepNode | CallNode, Scope, int, object, int]] = []
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
        self.stopping = False  # cancel_run asked the run to stop: it ends "cancelled", returned
        self.closing = False  # the run's end is being recorded: nothing stops it any more

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

    def start_parker(self) -> None:
        """A run its journal can park (a worker's, with waits) gets a `Parker`."""
        journal = self.journal
        if journal is not None and (self.plan.waits or self.plan.calls):
            after = journal.park_after
            if after is not None:
                self.parker = Parker(after, self.park)

    def park(self, waiting: Waiting, visits: tuple[tuple[str, int], ...]) -> None:
        """Every thread of the run waits (see `Parker`): stop it here, to be parked by `execute`."""
        if (
            self.parking is None
            and self.interrupted is None
            and not self.stopping
            and self.task is not None
        ):
            self.parking = waiting
            self.parked_visits = visits
            self.task.cancel()
            self.task_cancels += 1

    def request_stop(self) -> None:
        """`cancel_run` asked the run to stop (its journal's watch, on the run's loop): cancel
        its task; `execute` records it as cancelled and returns it.

        A run being parked is left to its store (a run parked while asked to stop
        is claimable at once, and then recorded as cancelled), and so is one
        whose end is being recorded: it has ended.
        """
        if (
            self.stopping
            or self.closing
            or self.parking is not None
            or self.interrupted is not None
            or self.task is None
        ):
            return
        self.stopping = True
        self.task.cancel()
        self.task_cancels += 1

    def stop_here(self) -> NoReturn:
        """Stop the run for good from inside it (a child run that `cancel_run` stopped with
        this run): as `request_stop`, from the task that raises."""
        if not self.stopping and self.interrupted is None:
            self.stopping = True
            if self.task is not None and asyncio.current_task() is not self.task:
                self.task.cancel()
                self.task_cancels += 1
        raise asyncio.CancelledError

    async def refuse(self) -> NoReturn:
        """Instead of `main` for a run asked to stop before it was claimed: nothing runs."""
        self.stopping = True
        raise asyncio.CancelledError

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

    def overdue(self) -> NoReturn:
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
        tracer, journal = self.tracer, self.journal
        if tracer is not None and tracer.entry is not None and journal is not None:
            await journal.record(tracer.entry)  # a durable run's trace parent (see _tracing)
        plan = self.plan
        nodes = plan.nodes
        targets = plan.targets
        root = self.root
        count = len(nodes)
        index = 0
        while index < count:
            node = nodes[index]
            if type(node) is StepNode:
                outcome = await self.step(node, root, root.version)
                if type(outcome) is Ok and type(outcome.value) is dict:
                    # `apply` and `Scope.write`, inlined: most steps end here
                    root.version = version = root.version + 1
                    latest = root.latest
                    for key, value in outcome.value.items():
                        frozen = value if type(value) in IMMUTABLE else freeze(value)
                        previous = latest.get(key)
                        if previous is not None:
                            root.keep(key, previous)
                        latest[key] = (version, frozen)
                    index += 1
                    continue
                route = self.apply(node.key, outcome, root)
            elif type(node) is WaitNode:
                route = self.apply(node.key, await self.wait(node, root, root.version), root)
            elif type(node) is CallNode:
                route = self.apply(node.key, await self.step(node, root, root.version), root)
            else:
                route = await run_block(self, node, root)  # type: ignore[arg-type]
            if route is None:
                index += 1
            elif route is END:
                return
            else:
                target = targets.get(route)
                if target is None:
                    raise Failed(node.name, self.bad_goto(node, route))
                self.transitions += 1
                if self.transitions > plan.max_transitions:
                    raise Failed(node.name, self.too_many_transitions(node, route))
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
        self, node: StepNode | CallNode, scope: Scope, version: int, policy: Policy = IN_SEQUENCE
    ) -> object:
        """Run a step to its final outcome: a successful outcome, or what `policy` settles.

        In a sequence a final failure raises `Failed`; as a parallel branch a goto
        is a failure too, and the block's policy settles it. Inside a foreach
        item the step is named with the item's index (``load[3]``). A
        ``call_workflow`` node is run here too: each attempt is a child run.
        """
        each = scope.each
        name = node.name if each is None else node.name + each.suffix
        self.current = name
        visits = self.visits
        visit = visits[name] = visits.get(name, 0) + 1
        attempt = 0
        journal = self.journal
        if journal is not None:
            attempt, done = journal.replayed(STEP, name, visit)
            if done is not None:
                return self.replayed(node, name, scope, version, visit, done, policy)
        emit = self.emit
        run_id = self.run_id
        fast = node.timeout is None and self.hook is None
        direct = fast and node.mode is ASYNC  # `invoke`'s first case, without its call
        while True:
            attempt += 1
            if self.due is not None and self.clock() >= self.due:
                self.overdue()
            if journal is not None and journal.must_check():
                await journal.check()
            ctx = _new(Context)  # `Context(...)` without its __init__ frame: the hot path
            ctx._scope = scope
            ctx._version = version
            ctx._visit = visit
            ctx.run_id = run_id
            ctx.step = name
            ctx.attempt = attempt
            if emit is not None:
                emit(StepStarted(name, attempt, run_id=run_id))
            started = _perf()
            exception: BaseException | None = None
            try:
                if direct:
                    outcome: object = await node.fn(ctx)
                elif fast:
                    outcome = await self.invoke(node, ctx)
                else:
                    outcome = await self.attempt(node, ctx, started)
                failed = type(outcome) is Err
            except Exception as exc:  # a raised exception is the step's failure
                outcome = Err(exc)
                exception = exc
                failed = True
            except asyncio.CancelledError:
                if self.parking is None:  # parking (a call waiting for its child) goes on later
                    self.cancelled(name, attempt, started)
                raise
            except (KeyboardInterrupt, SystemExit) as exc:
                self.cancelled(name, attempt, started)
                self.interrupt(exc)
            duration = _perf() - started
            retrying = failed and _retries(node, attempt, exception)
            if journal is not None:
                outcome, failed, retrying = await self.commit(
                    name, visit, attempt, outcome, failed, retrying, started, duration
                )
            if not failed:
                wall = self.wall0 + (started - self.t0)
                self.records.append((name, attempt, "succeeded", wall, duration, None, visit))
                if (
                    node.compensate is None
                    and emit is None
                    and (not policy.branch or type(outcome) is not Goto)
                ):
                    return outcome  # the common case: nothing else to note or settle
                return self.succeeded(
                    node, name, scope, version, visit, attempt, duration, outcome, policy
                )
            delay = self.failed(node, name, visit, attempt, started, duration, outcome, retrying)
            if delay is None:
                return policy.settle(Failed(name, outcome.error))  # type: ignore[attr-defined]
            if delay > 0:  # flowdsl's clock: a test's fake clock moves it
                now = clock()
                await now.sleep_until(now.now() + delay)

    async def attempt(self, node: StepNode | CallNode, ctx: Context, started: float) -> object:
        """One attempt bounded by the step's timeout and wrapped by the attempt hook."""
        hook = self.hook
        if hook is None:
            return await self.in_time(node, ctx, started)
        with hook(node, ctx) as seen:
            try:
                outcome = await self.in_time(node, ctx, started)
            except Exception as exc:
                seen.ended(Err(exc), True)
                raise
            seen.ended(outcome, type(outcome) is Err)
            return outcome

    async def in_time(self, node: StepNode | CallNode, ctx: Context, started: float) -> object:
        """`invoke`, bounded by the step's ``timeout=`` (a plain function: when it returns)."""
        if node.timeout is None:
            return await self.invoke(node, ctx)
        limit = asyncio.timeout(node.timeout)
        try:
            async with limit:
                outcome = await self.invoke(node, ctx)
        except TimeoutError as exc:
            if limit.expired():  # ours; a step's own TimeoutError stays its own
                raise _timeout_reason(node) from exc
            raise
        # A plain function on the loop cannot be interrupted: an attempt that overran
        # its timeout still fails, when it returns (docs/decisions.md).
        if node.mode is SYNC and _perf() - started > node.timeout:
            raise _timeout_reason(node)
        return outcome

    async def commit(
        self,
        name: str,
        visit: int,
        attempt: int,
        outcome: object,
        failed: bool,
        retrying: bool,
        started: float,
        duration: float,
    ) -> tuple[object, bool, bool]:
        """Hand the attempt to the journal; what to go on with (the journal may refuse it).

        A success is frozen first, as the context would freeze it, and the freeze marks
        what is plain JSON as it copies (`freeze_plain`): the journal writes those parts
        without a walk, and the run's output (made of the same values) too.
        """
        plain_size = -1
        if not failed and type(outcome) is Ok:
            value = outcome.value
            if type(value) is dict or (
                type(value) not in IMMUTABLE and not isinstance(value, Mapping)
            ):
                value, size = freeze_plain(value)
                outcome = Ok(value)
                if type(value) in PLAIN:
                    plain_size = size
        journaled = await self.journal.record(  # type: ignore[union-attr]
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
                plain_size=plain_size,
            )
        )
        if journaled is not outcome:  # the journal refused it: retrying cannot help
            return journaled, True, False
        return outcome, failed, retrying

    def succeeded(
        self,
        node: StepNode | CallNode,
        name: str,
        scope: Scope,
        version: int,
        visit: int,
        attempt: int,
        duration: float,
        outcome: object,
        policy: Policy,
    ) -> object:
        """After a successful attempt's record (`step` appends it): its compensation, its
        event, and for a branch its goto as a failure; returns the step's outcome."""
        if node.compensate is not None:
            self.compensable.append((node, scope, version, outcome, visit))
        emit = self.emit
        if emit is not None:
            emit(StepFinished(name, "succeeded", duration, attempt=attempt, run_id=self.run_id))
        if policy.branch and type(outcome) is Goto:
            return policy.settle(Failed(name, branch_goto(self.plan.name, node, outcome)))
        return outcome

    def failed(
        self,
        node: StepNode | CallNode,
        name: str,
        visit: int,
        attempt: int,
        started: float,
        duration: float,
        outcome: object,
        retrying: bool,
    ) -> float | None:
        """Record a failed attempt; the delay before the next one, or None when it was the last."""
        reason = outcome.error  # type: ignore[attr-defined]
        self.records.append((name, attempt, "failed", self.wall(started), duration, reason, visit))
        retry = node.retry
        delay = retry.delay(attempt) if retrying and retry is not None else None
        emit = self.emit
        if emit is not None:
            emit(
                StepFinished(
                    name,
                    "failed",
                    duration,
                    attempt=attempt,
                    error=reason,
                    retry_in=delay,
                    run_id=self.run_id,
                )
            )
        return delay

    def cancelled(self, name: str, attempt: int, started: float) -> None:
        """An attempt was cancelled (a sibling failed, the run timed out, the caller): close it."""
        emit = self.emit
        if emit is not None:
            emit(
                StepFinished(
                    name, "cancelled", _perf() - started, attempt=attempt, run_id=self.run_id
                )
            )

    def replayed(
        self,
        node: StepNode | CallNode,
        name: str,
        scope: Scope,
        version: int,
        visit: int,
        done: object,
        policy: Policy,
    ) -> object:
        """A step a resumed run finished before: its journaled outcome, not run again."""
        if type(done) is Err:  # it failed for good before the crash: fail the same way
            return policy.settle(Failed(name, done.error))
        if type(node) is StepNode and node.compensate is not None:
            self.compensable.append((node, scope, version, done, visit))
        if policy.branch and type(done) is Goto:
            return policy.settle(Failed(name, branch_goto(self.plan.name, node, done)))
        return done

    # -- waits -------------------------------------------------------------------------------

    async def wait(
        self, node: WaitNode, scope: Scope, version: int, policy: Policy = IN_SEQUENCE
    ) -> object:
        """Run a wait to its outcome: ``Ok(None)`` after a sleep, ``Ok({key: payload})`` for an
        event, or what its timeout says (a failure, or a goto); settled like a step's."""
        each = scope.each
        name = node.name if each is None else node.name + each.suffix
        self.current = name
        visits = self.visits
        visit = visits[name] = visits.get(name, 0) + 1
        journal = self.journal
        if journal is not None:
            _, done = journal.replayed(STEP, name, visit)
            if done is not None:
                return await self.waited(node, name, visit, None, done, policy)
        tracer = self.tracer
        if tracer is None:
            return await self.waiting(node, scope, version, name, visit, policy)
        with tracer.scoped("wait", name, "flowdsl.step") as span:
            return await self.waiting(node, scope, version, name, visit, policy, span)

    async def waiting(
        self,
        node: WaitNode,
        scope: Scope,
        version: int,
        name: str,
        visit: int,
        policy: Policy,
        span: Scoped | None = None,
    ) -> object:
        """A wait that was not replayed: wait, then settle what came (`span`: a traced run's)."""
        ctx = Context(scope, version, self.run_id, name, 1, visit)
        emit = self.emit
        if emit is not None:
            emit(StepStarted(name, 1, run_id=self.run_id))
        started = _perf()
        parker = self.parker
        token = object()  # this visit of the wait, told from others (branches, items) waiting
        journaled = False
        try:
            try:
                due = await self.deadline(node, ctx, visit)
            except _BadDeadline as bad:  # fn(ctx) raised, or returned a bad deadline
                outcome: object = Err(bad.reason)
            else:
                if parker is not None:
                    parker.enter(token, name, visit, node.event, due)
                if node.how == "event":
                    got, payload = await self.receive(node, name, visit, due)
                    if got:  # the journal took the event and recorded this outcome in one commit
                        outcome = Ok(FrozenDict({node.key: freeze(payload)}))
                        journaled = True
                    else:
                        outcome = _on_timeout(node)
                else:
                    if due is not None:
                        await clock().sleep_until(due)
                    outcome = _OK_NONE
        except asyncio.CancelledError:
            if self.parking is None:  # parking is no cancellation: the run goes on later
                self.cancelled(name, 1, started)
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            self.cancelled(name, 1, started)
            self.interrupt(exc)
        finally:
            if parker is not None:
                parker.leave(token)
        if span is not None and type(outcome) is Err:
            span.fail(outcome.error)
        return await self.waited(node, name, visit, started, outcome, policy, journaled)

    async def deadline(self, node: WaitNode, ctx: Context, visit: int) -> float | None:
        """When the wait ends (epoch seconds; None: an event without a timeout).

        A durable run journals it when the wait is first reached, so a resumed
        run waits only what remains.
        """
        journal = self.journal
        if journal is not None:
            _, recorded = journal.replayed(DUE, ctx.step, visit)
            if recorded is not None:
                return recorded.value  # type: ignore[attr-defined, no-any-return]
        now = clock().now()
        try:
            due = _when(node, ctx, now)
        except Exception as exc:  # the wait's own failure, as a step's raised exception is
            raise _BadDeadline(exc) from None
        if journal is not None:
            await journal.record(
                Entry(
                    kind=DUE,
                    name=ctx.step,
                    visit=visit,
                    attempt=1,
                    outcome=Ok(due),
                    failed=False,
                    retrying=False,
                    started=now,
                    duration=0.0,
                )
            )
        return due

    async def receive(
        self, node: WaitNode, name: str, visit: int, due: float | None
    ) -> tuple[bool, object]:
        """The event's payload: from the journal's store (durable), else this process's inbox."""
        event: str = node.event  # type: ignore[assignment]
        if self.journal is not None:
            return await self.journal.receive(name, visit, node.key, event, due)
        assert self.inbox is not None  # made by execute for a run with waits
        return await self.inbox.receive(event, clock().sleep_until, due)

    async def waited(
        self,
        node: WaitNode,
        name: str,
        visit: int,
        started: float | None,
        outcome: object,
        policy: Policy,
        journaled: bool = False,
    ) -> object:
        """Record a finished wait (an attempt of its own) and settle it like a step's outcome.

        `started` is None for a wait replayed from the journal (recorded already).
        """
        failed = type(outcome) is Err
        if started is not None:
            duration = _perf() - started
            if self.journal is not None and not journaled:
                outcome = await self.journal.record(
                    Entry(
                        kind=STEP,
                        name=name,
                        visit=visit,
                        attempt=1,
                        outcome=outcome,
                        failed=failed,
                        retrying=False,
                        started=self.wall(started),
                        duration=duration,
                    )
                )
                failed = type(outcome) is Err
            reason = outcome.error if failed else None  # type: ignore[attr-defined]
            status = "failed" if failed else "succeeded"
            self.records.append((name, 1, status, self.wall(started), duration, reason, visit))
            if self.emit is not None:
                self.emit(StepFinished(name, status, duration, error=reason, run_id=self.run_id))
        if failed:
            return policy.settle(Failed(name, outcome.error))  # type: ignore[attr-defined]
        if policy.branch and type(outcome) is Goto:
            return policy.settle(Failed(name, branch_goto(self.plan.name, node, outcome)))
        return outcome

    # -- the attempt's body ----------------------------------------------------------------

    def invoke(self, node: StepNode | CallNode, ctx: Context) -> Awaitable[object]:
        """THE seam: where an attempt of a step's body is called.

        Returns what the caller awaits; an ``async def`` step's own coroutine is
        returned as it is. `step` calls such a step itself when it has no timeout
        and no hook is set (the hot path), exactly as this first case does.
        """
        mode = node.mode
        if mode is ASYNC:
            return node.fn(ctx)  # type: ignore[no-any-return]
        if isinstance(node, CallNode):  # mode CALL: the attempt is a child run
            return child_attempt(self, node, ctx, execute)
        if mode is SYNC:
            return self.call_sync(node, ctx)
        if mode is THREAD:
            return run_in_thread(call_blocking, node.fn, ctx)
        if mode is AGEN:
            return self.drain(node, node.fn(ctx))
        invoker = self.executors.get(node.executor)  # type: ignore[arg-type]
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
        known = ", ".join(repr(n) for n in ("thread", *self.executors))
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

    def wall(self, started: float) -> float:
        """Wall-clock seconds since the epoch for a `perf_counter` reading of this run."""
        return self.wall0 + (started - self.t0)

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
            fingerprint=self.plan.fingerprint,
            parent_id=self.parent_id,
        )


async def execute(
    plan: Plan,
    input: Mapping[str, Any] | None,
    run_id: str,
    *,
    timeout: float | None = None,
    listeners: tuple[Listener, ...] = (),
    executors: Mapping[str, Invoker] | None = None,
    journal: Journal | None = None,
    hook: AttemptHook | None = None,
    resumed: bool = False,
    parent_id: str | None = None,
    stopped: bool = False,
) -> Run:
    """Run `plan` once with `input`; returns the finished `Run`.

    A failing step fails the run (compensations then run); the run's own
    timeout fails it with a `TimeoutError` reason. Cancellation from outside
    is never turned into a failure: it propagates after the run is reported
    as "cancelled" to listeners and the journal. A durable run asked to stop
    for good (`cancel_run`, which its journal watches) is cancelled too, and
    returned with status "cancelled"; `stopped` says it was asked before this
    call, so nothing of it executes. ``executors`` maps executor names to
    where steps run (the run assembly adds the built-in ones).
    """
    given = hook
    if hook is None:
        hook = context_hook(plan.name)
    tracer = run_tracer(plan.name, run_id)
    if tracer is not None:
        hook = with_tracing(hook, tracer)
    emit = fan_out(listeners)
    state = _Execution(plan, run_id, Scope(initial=input), emit, executors or {}, journal, hook)
    state.parent_id = parent_id
    state.given_hook = given
    if tracer is None:
        return await _run(state, timeout, resumed, stopped)
    state.tracer = tracer
    with tracer.run(journal, resumed, parent_id) as span:
        run = await _run(state, timeout, resumed, stopped)
        span.ended(run)
        return run


async def _run(state: _Execution, timeout: float | None, resumed: bool, stopped: bool) -> Run:
    """`execute` once the run's state is made: the run, from its start to its report."""
    plan, run_id, journal, emit = state.plan, state.run_id, state.journal, state.emit
    if emit is not None:
        emit(RunStarted(plan.name, run_id=run_id, resumed=resumed))
    state.start_clock(timeout if timeout is not None else plan.timeout)
    state.start_parker()
    unwatch = None if journal is None else journal.watch(state.request_stop)
    try:
        return await _body(state, stopped)
    finally:
        if unwatch is not None:
            unwatch()


async def _body(state: _Execution, stopped: bool) -> Run:
    """The run itself, its failure or cancellation, and its record."""
    plan = state.plan
    error: object = None
    failed_step: str | None = None
    mailbox = None
    if plan.waits and state.journal is None:  # send_event(run_id, ...) reaches it here
        state.inbox = Inbox(state.run_id)
        mailbox = executing(state.run_id, state.inbox)
        mailbox.__enter__()
    try:
        await (state.refuse() if stopped else state.main())
    except Failed as failure:
        error, failed_step = failure.reason, failure.step
    except asyncio.CancelledError as cancel:
        if state.parking is not None:
            return await _parked(state, state.parking, cancel)
        if state.stopping and state.interrupted is None:
            return await _cancelled(state, state.finish("cancelled"), cancel)
        if not state.timed_out():
            await _stopped(state, state.finish("cancelled"), cancel)
        failed_step = state.current
        error = TimeoutError(
            f"workflow {plan.name!r} did not finish within its {state.limit:g}s timeout "
            f"(running step {failed_step!r})"
        )
    finally:
        if state.timer is not None:
            state.timer.cancel()
        if state.parker is not None:
            state.parker.close()
        if mailbox is not None:
            mailbox.__exit__()
    if failed_step is None and error is None:
        run = state.finish("completed")
    else:
        try:
            compensations = await compensate(state)
        except asyncio.CancelledError as cancel:  # cancelled while undoing: reported, then raised
            cut_short = state.finish("cancelled", error, failed_step)
            if state.stopping and state.interrupted is None:
                return await _cancelled(state, cut_short, cancel)
            await _stopped(state, cut_short, cancel)
        run = state.finish("failed", error, failed_step, compensations)
    state.closing = True
    await _report(run, state.emit, state.journal)
    return run


async def _cancelled(state: _Execution, run: Run, cancel: asyncio.CancelledError) -> Run:
    """The run was asked to stop for good (`cancel_run`): record it, and return it.

    A cancel of the caller's that came too is raised once the run is recorded.
    """
    state.closing = True
    state.forget_cancels()
    task = state.task
    if state.cancelled_task and task is not None:  # the deadline's cancel came too: not a caller's
        state.cancelled_task = False
        task.uncancel()
    await _report(run, state.emit, state.journal)
    if task is not None and task.cancelling():
        raise cancel
    return run


async def _parked(state: _Execution, waiting: Waiting, cancel: asyncio.CancelledError) -> Run:
    """Every thread of the run waited long enough: give it up as "waiting" (see `Parker`).

    No step was in flight. A cancel of the caller's that came meanwhile is
    raised once the run is parked.
    """
    state.closing = True
    state.forget_cancels()
    task = state.task
    journal = state.journal
    assert journal is not None
    await journal.park(waiting, state.parked_visits)
    if task is not None and task.cancelling():
        raise cancel
    return attrs.evolve(state.finish("waiting"), waiting=waiting)


async def _stopped(state: _Execution, run: Run, cancel: asyncio.CancelledError) -> NoReturn:
    """The run was cancelled (or interrupted): record it, then raise what stopped it."""
    state.closing = True  # it has ended: a cancel_run now has nothing left to stop
    interrupted = state.interrupted
    if interrupted is not None:
        state.forget_cancels()
    await _report(run, state.emit, state.journal)
    if interrupted is not None:
        raise interrupted from None
    raise cancel


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
