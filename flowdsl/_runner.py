"""Running workflows: `run_workflow`, `arun_workflow`, `run_many`, `stream_workflow`.

This module turns what a user passes (a name or a `Workflow`, an input, run
options) into one call of `_executor.execute`, adding the listeners that want
the run's events and, for durable runs, the store's journal.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Final

from . import _registry
from ._events import (
    LISTENERS,
    Event,
    Listener,
    RunFinished,
    StepChunk,
    StepFinished,
    StepStarted,
    check_listeners,
)
from ._executor import Invoker, execute
from ._logging import structlog_listener
from ._plan import Plan
from ._run import Run
from ._workflow import Workflow
from .errors import RunningLoopError, UsageError

__all__ = [
    "arun_many",
    "arun_workflow",
    "resolve",
    "run_many",
    "run_workflow",
    "stream_workflow",
]

_STREAMED = (StepStarted, StepChunk, StepFinished, RunFinished)

# Plans to run instead of others for runs started in this context (original plan ->
# plan with fake steps). Set only by flowdsl.testing.override_steps; read once per run.
PLAN_OVERRIDES: ContextVar[Mapping[Plan, Plan]] = ContextVar(
    "flowdsl_plan_overrides", default=MappingProxyType({})
)


def resolve(target: str | Workflow) -> Workflow:
    """The workflow named `target` (or `target` itself)."""
    if isinstance(target, Workflow):
        return target
    if isinstance(target, str):
        return _registry.get_workflow(target)
    msg = f"expected a workflow name or a @workflow object, got {target!r}"
    raise UsageError(msg)


def run_listeners(workflow: str, run_id: str, extra: Iterable[Listener]) -> tuple[Listener, ...]:
    """Who hears a run's events: structlog (when configured), the context's, then `extra`."""
    found = (*LISTENERS.get(), *extra)
    log = structlog_listener(workflow, run_id)
    return found if log is None else (log, *found)


RUN_OPTIONS: Final = ("run_id", "store", "timeout", "executors", "listeners")
"""The keyword options of `arun_workflow` (and of every call that passes them on)."""


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


def _check_input(wf: Workflow, input: object) -> Mapping[str, Any] | None:
    if input is None or isinstance(input, Mapping):
        return input
    msg = (
        f"the input of workflow {wf.name!r} must be a mapping (a dict of names to values), "
        f"got {type(input).__name__}; wrap it: {{'value': ...}}"
    )
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
    propagates. Bad arguments raise `UsageError`; an unknown name
    `WorkflowNotFound`.
    """
    wf = resolve(workflow)
    data = _check_input(wf, input)
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0
    ):
        msg = f"timeout= must be a number of seconds > 0 or None, got {timeout!r}"
        raise UsageError(msg)
    if executors:
        _check_executors(executors)
    rid = check_run_id(run_id) or uuid.uuid4().hex
    plan = wf.plan
    overrides = PLAN_OVERRIDES.get()
    if overrides:
        plan = overrides.get(plan, plan)
    found = run_listeners(plan.name, rid, check_listeners(listeners))
    if store is not None:
        from ._durable import arun_durable

        return await arun_durable(
            plan, data, rid, store, timeout=timeout, listeners=found, invokers=executors
        )
    return await execute(plan, data, rid, timeout=timeout, listeners=found, invokers=executors)


def _check_executors(executors: Mapping[str, Invoker]) -> None:
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
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        msg = f"concurrency must be an int >= 1, got {concurrency!r}"
        raise UsageError(msg)
    if "run_id" in options:
        msg = "run_many() gives each run its own run_id; do not pass run_id="
        raise UsageError(msg)
    check_options("run_many", options, ("concurrency", *RUN_OPTIONS[1:]))
    wf = resolve(workflow)
    if "listeners" in options:
        options["listeners"] = check_listeners(options["listeners"])
    items = list(inputs)
    for item in items:
        _check_input(wf, item)
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
