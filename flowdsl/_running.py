"""Running workflows: `run_workflow`, `arun_workflow`, `run_many`, `stream_workflow`, `resume_runs`.

This module turns what a user passes (a name or a `Workflow`, an input, run
options) into one run of the engine (`_engine.execute`): the checked options,
the listeners that want the run's events, the executors (the caller's, plus
the built-in process pool), and, for a durable run, the store
(`stores.run_durably`, which adds the journal).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ._checks import count_problem, require, seconds_problem
from ._define import _registry
from ._define._queues import DEFAULT_QUEUE, Queue
from ._engine._clock import clock
from ._engine._events import (
    Event,
    Listener,
    RunFinished,
    StepChunk,
    StepFinished,
    StepStarted,
    check_listeners,
)
from ._engine._execution import execute
from ._engine._options import (
    RUN_OPTIONS,
    check_executors,
    check_input,
    check_options,
    check_run_id,
    check_timeout,
    no_running_loop,
    planned,
    run_listeners,
)
from ._engine._run import Run
from ._engine._seams import Invoker
from ._plan import Plan
from .errors import (
    IncompatibleDefinition,
    ResultTimeout,
    StoreError,
    UsageError,
    WorkflowNotFound,
)
from .executors._builtin import with_builtins
from .stores import open_store
from .stores._journal import draw_graphs_with, incompatible, run_durably, run_header
from .stores._protocol import Ticket
from .views._graph import Graph

if TYPE_CHECKING:
    from ._workflow import Workflow

__all__ = [
    "RUN_OPTIONS",
    "RunHandle",
    "aresume_runs",
    "arun_many",
    "arun_workflow",
    "astart_workflow",
    "check_options",
    "resolve",
    "resume_runs",
    "run_many",
    "run_workflow",
    "start_workflow",
    "stream_workflow",
]

_STREAMED = (StepStarted, StepChunk, StepFinished, RunFinished)


def _graph_json(plan: Plan) -> str:
    return Graph.from_plan(plan).to_json(indent=None)


# A store keeps each definition's graph when its first run starts (for the run viewer).
draw_graphs_with(_graph_json)


def resolve(target: str | Workflow) -> Workflow:
    """The workflow named `target`, or `target` itself (anything holding a compiled plan)."""
    if isinstance(target, str):
        return _registry.get_workflow(target)
    if isinstance(getattr(target, "plan", None), Plan):
        return target
    msg = f"expected a workflow name or a @workflow object, got {target!r}"
    raise UsageError(msg)


async def arun_workflow(
    workflow: str | Workflow,
    input: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
    store: object = None,
    timeout: float | None = None,
    executors: Mapping[str, Invoker] | None = None,
    listeners: Iterable[Listener] = (),
) -> Run:
    """Run a workflow to the end on the running event loop and return its `Run`.

    ``workflow`` is a registered name or the object ``@workflow`` returned;
    ``input`` a mapping (or None), the first context. ``run_id`` names the run
    (a fresh one by default); ``store`` (a `SQLiteStore` or a URL such as
    ``"sqlite:///runs.db"``) makes it durable: a ``run_id`` the store holds
    returns the recorded run, or resumes an unfinished one. ``timeout`` bounds
    the whole run (default: the workflow's own); ``executors`` names where
    steps with ``@step(executor=NAME)`` run (they stay the caller's: never
    closed here); ``listeners`` receive every event.

    A failed run is returned, not raised (``run.unwrap()`` raises). If the
    calling task is cancelled, the run is cancelled and `CancelledError`
    propagates; a durable run that `cancel_run` stops is returned, with
    status "cancelled". Bad arguments raise `UsageError`; an unknown name
    `WorkflowNotFound`.
    """
    wf = resolve(workflow)
    data = check_input(wf.name, input)
    check_timeout(timeout)
    if executors:
        check_executors(executors)
    rid = check_run_id(run_id) or uuid.uuid4().hex
    plan = planned(wf.plan)
    found = run_listeners(plan.name, rid, check_listeners(listeners))
    where = with_builtins(executors)
    if store is None:
        return await execute(plan, data, rid, timeout=timeout, listeners=found, executors=where)
    opened, owned = open_store(store)
    try:
        run = await run_durably(
            plan, data, rid, opened, timeout=timeout, listeners=found, executors=where
        )
    finally:
        if owned:
            opened.close()
    assert run is not None  # only a resume finds a run another process holds
    return run


def run_workflow(
    workflow: str | Workflow,
    input: Mapping[str, Any] | None = None,
    **options: Any,
) -> Run:
    """Run a workflow to the end and return its `Run` (takes `arun_workflow`'s options).

    It runs its own event loop (``asyncio.run``); called from inside a running
    loop it raises `flowdsl.errors.RunningLoopError` (a `RuntimeError`): use
    ``await arun_workflow(...)`` there. An option it does not take is a
    `UsageError` naming it.
    """
    no_running_loop("run_workflow", "arun_workflow")
    check_options("run_workflow", options, RUN_OPTIONS)
    return asyncio.run(arun_workflow(workflow, input, **options))


async def arun_many(
    workflow: str | Workflow,
    inputs: Iterable[Mapping[str, Any] | None],
    *,
    concurrency: int = 10,
    **options: Any,
) -> list[Run]:
    """Run one workflow once per input, at most `concurrency` at a time; runs in input order.

    Each run gets its own ``run_id`` (so ``run_id=`` is refused); the other
    options of `arun_workflow` apply to every run. A failed run is in the list
    like any other; an exception a run raises (a store error, not a failed
    step) cancels the runs still going and is raised.
    """
    require(count_problem(concurrency, "concurrency"))
    if "run_id" in options:
        msg = "run_many() gives each run its own run_id; do not pass run_id="
        raise UsageError(msg)
    check_options("run_many", options, ("concurrency", *RUN_OPTIONS[1:]))
    wf = resolve(workflow)
    if "listeners" in options:
        options["listeners"] = check_listeners(options["listeners"])
    items = list(inputs)
    for item in items:
        check_input(wf.name, item)
    runs: list[Run | None] = [None] * len(items)
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, item: Mapping[str, Any] | None) -> None:
        async with gate:
            runs[index] = await arun_workflow(wf, item, **options)

    only: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            for index, item in enumerate(items):
                group.create_task(one(index, item))
    except BaseExceptionGroup as group_error:
        # A run that raises (a store error, not a failed step) cancels the others; raise
        # its own exception, as arun_workflow would, rather than a group of one.
        if len(group_error.exceptions) != 1:
            raise
        only = group_error.exceptions[0]
    if only is not None:
        raise only  # outside the except block: its own __cause__ and __context__ are kept
    return [run for run in runs if run is not None]


def run_many(
    workflow: str | Workflow,
    inputs: Iterable[Mapping[str, Any] | None],
    *,
    concurrency: int = 10,
    **options: Any,
) -> list[Run]:
    """Run one workflow once per input, at most `concurrency` at a time; runs in input order.

    The synchronous form of `arun_many` (its own event loop, like `run_workflow`).
    """
    no_running_loop("run_many", "arun_many")
    return asyncio.run(arun_many(workflow, inputs, concurrency=concurrency, **options))


async def stream_workflow(
    workflow: str | Workflow,
    input: Mapping[str, Any] | None = None,
    **options: Any,
) -> AsyncGenerator[Event, None]:
    """Run a workflow and yield its events as they happen; `RunFinished` comes last.

    Takes `arun_workflow`'s options. It yields `StepStarted`, `StepChunk`,
    `StepFinished` and, once and last, `RunFinished`: the same events, in the
    same order, as a listener of the run receives (`RunStarted` and
    `CompensationFinished` go to ``listeners=`` only). A failed run is
    streamed, not raised. Nothing runs until the first event is asked for.

    Events are buffered without bound, so a slow consumer loses nothing and
    never blocks the run. Closing the iterator early (``break``, or leaving an
    ``aclosing()`` block) cancels the run and waits for it to stop.
    """
    check_options("stream_workflow", options, RUN_OPTIONS)
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def listen(event: Event) -> None:
        if isinstance(event, _STREAMED):
            queue.put_nowait(event)

    extra = (*options.pop("listeners", ()), listen)
    task = asyncio.ensure_future(arun_workflow(workflow, input, listeners=extra, **options))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while True:
            event = await queue.get()
            if event is None:
                break
            yield event
            if isinstance(event, RunFinished):
                break
        await task
    finally:
        if not task.done():
            task.cancel()
        # Wait for the run to stop; an error it raised was either re-raised above or is
        # not wanted by a consumer that stopped early (gather marks it retrieved).
        await asyncio.gather(task, return_exceptions=True)


async def aresume_runs(
    store: object,
    *,
    concurrency: int = 10,
    timeout: float | None = None,
    executors: Mapping[str, Invoker] | None = None,
    listeners: Iterable[Listener] = (),
    include_cancelled: bool = False,
) -> list[Run]:
    """Resume every unfinished run in `store` that no live process owns; their `Run`s.

    Runs are resumed at most `concurrency` at a time, oldest first, each with
    the workflow registered under its name (import the modules that define
    them first). Every run is checked before any is resumed: a workflow that
    is not registered, or whose definition changed, raises and nothing runs.
    Runs in status "cancelled" (their caller was cancelled, or Ctrl-C) are
    skipped on purpose: ask for one by its ``run_id``, or pass
    ``include_cancelled=True`` to resume them too. A run whose journal cannot
    be read is not resumed: the others are, then a `StoreError` names it. A
    child run (`call_workflow`) whose parent is resumed is resumed by its
    parent, and is not in the list.
    """
    require(count_problem(concurrency, "concurrency"))
    opened, owned = open_store(store)
    try:
        damaged: list[Exception] = []  # raised after the healthy runs were resumed
        pending = opened.resumable(
            include_cancelled=include_cancelled,
            on_damaged=lambda run_id, exc: damaged.append(exc),
        )
        # A child run whose parent is resumed too is its parent's to resume (the parent's
        # call_workflow node picks it up): resumed here as well, it would run twice.
        resumed = {run.run_id for run in pending}
        pending = [run for run in pending if run.parent_id not in resumed]
        plans: list[Plan] = []
        missing: list[str] = []
        changed: list[str] = []
        for run in pending:
            try:
                plan = _registry.get_workflow(run.workflow).plan
            except WorkflowNotFound:
                missing.append(f"run {run.run_id!r} (workflow {run.workflow!r})")
                continue
            if plan.fingerprint != run.fingerprint:
                changed.append(incompatible(run.run_id, run.workflow, run.shape, plan.shape))
            plans.append(planned(plan))  # fakes apply here as in arun_workflow
        if missing:
            msg = (
                f"cannot resume {', '.join(missing)}: no workflow is registered under that "
                f"name in this process; import the module that defines it before resuming"
            )
            raise WorkflowNotFound(msg)
        if changed:
            raise IncompatibleDefinition("\n".join(changed))
        extra = check_listeners(listeners)
        where = with_builtins(executors)
        gate = asyncio.Semaphore(concurrency)
        runs: list[Run | None] = [None] * len(pending)

        async def one(index: int, plan: Plan, run_id: str) -> None:
            found = run_listeners(plan.name, run_id, extra)
            async with gate:
                try:
                    runs[index] = await run_durably(
                        plan,
                        None,
                        run_id,
                        opened,
                        timeout=timeout,
                        listeners=found,
                        executors=where,
                        resuming=True,
                    )
                except Exception as exc:  # kept for later: it must not cancel the other runs
                    errors.append(exc)

        errors: list[Exception] = damaged
        async with asyncio.TaskGroup() as group:
            for index, (plan, run) in enumerate(zip(plans, pending, strict=True)):
                group.create_task(one(index, plan, run.run_id))
        if len(errors) == 1:  # one run's store error, say: raise it as it is
            raise errors[0]
        if errors:
            msg = f"{len(errors)} runs could not be resumed (the others were)"
            raise ExceptionGroup(msg, errors)
    finally:
        if owned:
            opened.close()
    return [run for run in runs if run is not None]


def resume_runs(store: object, **options: Any) -> list[Run]:
    """Resume every unfinished run in `store` (see `aresume_runs` for the options)."""
    no_running_loop("resume_runs", "aresume_runs")
    check_options(
        "resume_runs",
        options,
        ("concurrency", "timeout", "executors", "listeners", "include_cancelled"),
    )
    return asyncio.run(aresume_runs(store, **options))


# -- queued runs -------------------------------------------------------------------------------

_ENDED = ("completed", "failed", "cancelled")


class RunHandle:
    """A run started with `start_workflow`: ``handle.run_id``, ``status()``, ``result()``.

    It reads the run from the store each time it is asked; it holds no
    connection of its own between calls when the store was named by URL.
    """

    __slots__ = ("_store", "run_id")

    def __init__(self, run_id: str, store: object) -> None:
        self.run_id = run_id
        self._store = store

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"

    def _get(self) -> Run:
        opened, owned = open_store(self._store, must_exist=True)
        try:
            run = opened.get_run(self.run_id)
        finally:
            if owned:
                opened.close()
        if run is None:
            msg = f"run {self.run_id!r} is not in the store (it was deleted, or pruned)"
            raise StoreError(msg)
        return run

    def status(self) -> str:
        """The run's status now: "queued", "running", "waiting", "completed", ..."""
        return self._get().status

    def result(self, timeout: float | None = None) -> Run:
        """Wait for the run to end and return its `Run`; `TimeoutError` after `timeout` s.

        The run goes on when the wait times out.
        """
        no_running_loop("RunHandle.result", "RunHandle.aresult")
        return asyncio.run(self.aresult(timeout))

    async def aresult(self, timeout: float | None = None) -> Run:
        """`result` on the running event loop."""
        check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            run = await asyncio.to_thread(self._get)
            if run.status in _ENDED:
                return run
            if deadline is not None and loop.time() >= deadline:
                msg = (
                    f"run {self.run_id!r} has not finished within {timeout:g}s (it is "
                    f"{run.status}); it goes on: ask again, or wait longer"
                )
                raise ResultTimeout(msg)
            pause = 0.05 if deadline is None else max(0.0, min(0.05, deadline - loop.time()))
            await asyncio.sleep(pause)


async def astart_workflow(
    workflow: str | Workflow,
    input: Mapping[str, Any] | None = None,
    *,
    store: object,
    queue: str | Queue | None = None,
    run_id: str | None = None,
    priority: int = 0,
    delay: float | None = None,
    parent_id: str | None = None,
) -> RunHandle:
    """`start_workflow` on the running event loop."""
    wf = resolve(workflow)
    data = check_input(wf.name, input)
    rid = check_run_id(run_id) or uuid.uuid4().hex
    require(_parent_problem(parent_id, rid))
    name = _queue_name(queue)
    require(_priority_problem(priority))
    require(seconds_problem(delay, "delay=", zero=True))
    if store is None:
        msg = "start_workflow() needs store=: a queued run lives in a store, e.g. store='sqlite:///runs.db'"
        raise UsageError(msg)
    # traced: the context current now is the run's trace parent
    header = run_header(planned(wf.plan), data, rid, parent_id=parent_id, traced=True)
    ticket = Ticket(name, priority, clock().now() + (delay or 0.0))
    opened, owned = open_store(store)
    try:
        found = await opened.enqueue(header, ticket)
    finally:
        if owned:
            opened.close()
    if not found.new and found.workflow != wf.name:
        msg = (
            f"run {rid!r} in the store belongs to workflow {found.workflow!r}, not {wf.name!r}; "
            f"use another run_id"
        )
        raise UsageError(msg)
    return RunHandle(rid, store)


def start_workflow(
    workflow: str | Workflow,
    input: Mapping[str, Any] | None = None,
    *,
    store: object,
    queue: str | Queue | None = None,
    run_id: str | None = None,
    priority: int = 0,
    delay: float | None = None,
    parent_id: str | None = None,
) -> RunHandle:
    """Queue a run for a worker and return at once; nothing runs here.

    The run is committed as "queued" in `store` (a store object or URL), on
    `queue` (a `Queue` or its name; "default" when None), with ``priority``
    (higher first within its queue) and, with ``delay=`` seconds, not before
    then. Called again with a ``run_id`` the store holds, it returns a handle
    to that run and queues nothing. Like `run_workflow` it needs the workflow
    registered: its definition's fingerprint is recorded, and only a worker
    with the same definition runs it. ``parent_id=`` records the run as a
    child of that run (`Run.parent_id`, ``store.list_runs(parent=...)``), as
    ``call_workflow`` does; the parent need not exist.
    """
    no_running_loop("start_workflow", "astart_workflow")
    return asyncio.run(
        astart_workflow(
            workflow,
            input,
            store=store,
            queue=queue,
            run_id=run_id,
            priority=priority,
            delay=delay,
            parent_id=parent_id,
        )
    )


_PRIORITIES: Final = range(-(2**31), 2**31)
"""A queued run's priority is a 32-bit int: what every store's priority column holds."""


def _priority_problem(priority: object) -> str | None:
    fine = isinstance(priority, int) and not isinstance(priority, bool) and priority in _PRIORITIES
    if fine:
        return None
    return (
        f"priority= must be an int from {_PRIORITIES.start} to {_PRIORITIES.stop - 1} "
        f"(higher runs first), got {priority!r}"
    )


def _parent_problem(parent_id: object, run_id: str) -> str | None:
    if parent_id is None:
        return None
    if not isinstance(parent_id, str) or not parent_id:
        return f"parent_id= takes the run id of the parent run (a non-empty str), got {parent_id!r}"
    if parent_id == run_id:
        return f"parent_id= names the run itself ({run_id!r}): a run cannot be its own parent"
    return None


def _queue_name(queue: object) -> str:
    if queue is None:
        return DEFAULT_QUEUE
    if isinstance(queue, Queue):
        return queue.name
    if isinstance(queue, str) and queue:
        return queue
    msg = f"queue= takes a Queue or a queue name, got {queue!r}"
    raise UsageError(msg)
