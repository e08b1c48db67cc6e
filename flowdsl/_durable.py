"""Durable runs: a run call with ``store=`` journals every step, and resumes.

`arun_durable` opens the run in the store (create it, return it when it is
finished, or claim it to resume it), then executes the plan with a
`_RunJournal`: the executor asks it for recorded outcomes before running a
step (`replayed`) and hands it every attempt (`record`), which is committed
before the executor continues. `resume_runs` finds the unfinished runs no
live process owns and resumes each.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from . import _registry
from ._codec import (
    Unencodable,
    decode,
    describe_path,
    dumps,
    encode,
    encode_lenient,
    encode_reason,
    type_name,
)
from ._events import Listener, RunFinished, check_listeners, fan_out
from ._executor import Invoker, execute
from ._outcome import Goto
from ._plan import Plan
from ._run import Run, StepRecord
from ._runner import PLAN_OVERRIDES, run_listeners
from ._sqlite import SQLiteStore
from ._store import Attempt, Ending, Opened, RunHeader, Store, step_record
from .errors import (
    IncompatibleDefinition,
    SerializationError,
    StoreError,
    UsageError,
    WorkflowNotFound,
)
from .result import Err, Ok

_OK_NONE: Final = Ok(None)

__all__ = ["aresume_runs", "arun_durable", "open_store", "resume_runs"]


def _sqlite_file(path: str, must_exist: bool) -> Store:
    if must_exist and not os.path.exists(path):
        msg = (
            f"no store at {path!r}: the file does not exist; check the path (a store file "
            f"is created by the first durable run that names it)"
        )
        raise StoreError(msg)
    return SQLiteStore(path)


def _sqlite_url(url: str, rest: str, must_exist: bool) -> Store:
    """The store of a ``sqlite://`` URL: three slashes then a relative path, four absolute."""
    if rest.startswith("/") and rest != "/":
        return _sqlite_file(rest[1:], must_exist)
    if rest and rest != "/":  # sqlite://runs.db: that is a host, and SQLite has none
        fix = f"'sqlite:///{rest}' (relative to the current directory)"
    else:
        fix = "'sqlite:///runs.db' (relative) or 'sqlite:////abs/path/runs.db' (absolute)"
    msg = (
        f"store URL {url!r} names no file: a SQLite URL is 'sqlite:///' followed by the "
        f"path (three slashes, then a fourth for an absolute path); write {fix}"
    )
    raise UsageError(msg)


def _no_postgres(url: str, rest: str, must_exist: bool) -> Store:
    msg = (
        f"store URL {url!r} names a PostgreSQL store, which this version of flowdsl does "
        f"not have yet; use a SQLite store: 'sqlite:///runs.db' or a file path"
    )
    raise UsageError(msg)


# Store URLs, ``scheme://rest``: each scheme's opener takes (url, rest, must_exist).
_SCHEMES: Final[dict[str, Callable[[str, str, bool], Store]]] = {
    "sqlite": _sqlite_url,
    "postgresql": _no_postgres,
    "postgres": _no_postgres,
}

_STORE_FORMS: Final = "'sqlite:///relative/path.db', 'sqlite:////absolute/path.db' or a file path"


def open_store(store: object, *, must_exist: bool = False) -> tuple[Store, bool]:
    """The store `store` names, and whether the caller opened it (and must close it).

    The one parser of store URLs: the run functions and the command line both
    use it. `store` is ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, a
    file path (``str`` or path object), or a store object, returned as it is.
    ``must_exist=True`` (for commands that read runs) refuses a store file
    that does not exist with a `StoreError` instead of creating an empty one.
    """
    if isinstance(store, str):
        scheme, sep, rest = store.partition("://")
        if not sep and store:
            return _sqlite_file(store, must_exist), True
        opener = _SCHEMES.get(scheme.lower()) if sep else None
        if opener is None:
            msg = f"unknown store {store!r}; a store is named by {_STORE_FORMS}"
            raise UsageError(msg)
        return opener(store, rest, must_exist), True
    if isinstance(store, os.PathLike):
        return _sqlite_file(os.fspath(store), must_exist), True
    if isinstance(store, Store):
        return store, False
    msg = (
        f"store= takes a store object such as SQLiteStore(path) or a URL such as "
        f"'sqlite:///runs.db', got {store!r}"
    )
    raise UsageError(msg)


class _RunJournal:
    """The executor's `Journal` for one durable run."""

    __slots__ = ("finished", "history", "keys", "plan", "replay", "run_id", "store")

    def __init__(self, store: Store, plan: Plan, run_id: str, attempts: Iterable[Attempt]) -> None:
        self.store = store
        self.plan = plan
        self.run_id = run_id
        self.finished = False
        self.history: list[StepRecord] = []
        replay: dict[tuple[str, int], list[Any]] = {}
        for attempt in attempts:
            entry = replay.get((attempt.step, attempt.visit))
            if entry is None:
                entry = replay[(attempt.step, attempt.visit)] = [0, None]
            if attempt.final:  # a success, or a failure that was not retried: the outcome
                outcome = decode(attempt.outcome)
                # A step that returned None finished too: replayed() must not say "not done".
                entry[1] = _OK_NONE if outcome is None else outcome
            if not attempt.succeeded:  # the attempts spent: numbering goes on from here
                entry[0] = max(entry[0], attempt.attempt)
            self.history.append(step_record(attempt))
        self.replay = replay

    def replayed(self, step: str, visit: int) -> tuple[int, object | None]:
        entry = self.replay.get((step, visit))
        if entry is None:
            return 0, None
        return entry[0], entry[1]

    async def record(
        self,
        step: str,
        visit: int,
        attempt: int,
        outcome: object,
        failed: bool,
        started: float,
        duration: float,
        retrying: bool,
    ) -> object:
        if failed:
            text = dumps(encode(outcome))  # an Err: its reason always encodes
        else:
            try:
                text = dumps(encode(outcome))
            except Unencodable as exc:
                outcome = Err(SerializationError(self.unencodable(step, outcome, exc)))
                text = dumps(encode(outcome))
                failed, retrying = True, False
        await self.store.append(
            self.run_id,
            Attempt(
                step,
                visit,
                attempt,
                not failed,
                not retrying,
                text,
                started,
                duration,
            ),
        )
        return outcome

    def unencodable(self, step: str, outcome: object, exc: Unencodable) -> str:
        path = exc.path  # innermost first: the key in the context is last
        kind = type(outcome)
        merged = kind is Goto or (kind is Ok and isinstance(outcome.value, Mapping))  # type: ignore[attr-defined]
        if merged and path:
            key = path.pop()
        else:  # the whole value is stored under the step's key (or it contains itself)
            key = self.plan.steps[step].key
        where = f" (at {key!r}{describe_path(path)})" if path else ""
        why = f": {exc.why}" if exc.why else ""
        return (
            f"workflow {self.plan.name!r}, step {step!r} returned a value the journal cannot "
            f"store: key {key!r} holds a {type_name(exc.value)}{where}{why}. {exc.hint}"
        )

    async def finish(self, run: Run) -> None:
        self.finished = True
        comps = [
            [c.step, c.status, c.duration, None if c.error is None else encode_reason(c.error)]
            for c in run.compensations
        ]
        await self.store.finish_run(
            self.run_id,
            Ending(
                status=run.status,
                output=dumps(encode_lenient(run.output)),
                error=None if run.error is None else dumps(encode_reason(run.error)),
                failed_step=run.failed_step,
                compensations=dumps(comps),
                duration=run.duration,
            ),
        )


def _shape_diff(old: tuple[str, ...], new: tuple[str, ...]) -> str:
    lines = [
        line
        for line in difflib.unified_diff(list(old), list(new), "recorded", "now", n=0, lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return "\n".join(f"  {line[0]} {line[1:]}" for line in lines)


def _incompatible(run_id: str, workflow: str, old: tuple[str, ...], new: tuple[str, ...]) -> str:
    return (
        f"run {run_id!r} of workflow {workflow!r} was journaled by a different definition; "
        f"resuming it could replay recorded outcomes into the wrong steps. What changed "
        f"(- recorded, + now):\n{_shape_diff(old, new)}\n"
        f"Finish the run with the definition it started with, or start a new run_id"
    )


def _refuse(opened: Opened, plan: Plan, run_id: str) -> StoreError:
    if opened.workflow != plan.name:
        return StoreError(
            f"run {run_id!r} in the store belongs to workflow {opened.workflow!r}, "
            f"not {plan.name!r}; use another run_id"
        )
    if opened.fingerprint != plan.fingerprint:
        return IncompatibleDefinition(_incompatible(run_id, plan.name, opened.shape, plan.shape))
    owner = opened.owner or "another task"
    host, _, rest = owner.partition("|")
    who = f"process {rest.partition('|')[0]} on {host}" if rest else owner
    return StoreError(
        f"run {run_id!r} of workflow {plan.name!r} is being executed by {who}; "
        f"wait for it to finish (or for that process to exit) and ask again"
    )


async def _run(
    plan: Plan,
    data: Mapping[str, Any] | None,
    run_id: str,
    store: Store,
    *,
    timeout: float | None,
    listeners: tuple[Listener, ...],
    invokers: Mapping[str, Invoker] | None,
    resuming: bool,
) -> Run | None:
    """Start, return or resume one run; None when `resuming` and another process has it."""
    try:
        text = dumps(encode(data))
    except Unencodable as exc:
        path = exc.path  # innermost first: the input's own key is last
        key = path.pop() if path else None
        what = "it is" if key is None else f"key {key!r} holds"
        where = f" (at {key!r}{describe_path(path)})" if path else ""
        msg = (
            f"the input of durable run {run_id!r} of workflow {plan.name!r} cannot be "
            f"journaled: {what} a {type_name(exc.value)}{where}"
            f"{f': {exc.why}' if exc.why else ''}. {exc.hint}"
        )
        raise SerializationError(msg) from None
    opened = await store.open_run(
        RunHeader(run_id, plan.name, plan.fingerprint, plan.shape, text, time.time())
    )
    if opened.finished is not None and opened.workflow == plan.name:
        # Nothing executes, whatever the definition is now; listeners (a stream) still
        # hear how the run ended, so RunFinished is always the last event of a call.
        emit = fan_out(listeners)
        if emit is not None:
            emit(RunFinished(opened.finished))
        return opened.finished
    if not opened.claimed:
        if resuming and opened.workflow == plan.name and opened.fingerprint == plan.fingerprint:
            return None
        raise _refuse(opened, plan, run_id)
    journal = _RunJournal(store, plan, run_id, opened.attempts)
    if not opened.new:
        data = decode(opened.input)
    try:
        run = await execute(
            plan,
            data,
            run_id,
            timeout=timeout,
            listeners=listeners,
            invokers=invokers,
            journal=journal,
            resumed=not opened.new,
        )
    except BaseExceptionGroup as group:
        if not journal.finished:
            store.release(run_id)
        stores, rest = group.split(StoreError)
        if stores is not None and rest is None:
            raise stores.exceptions[0] from group
        raise
    except BaseException:
        if not journal.finished:
            store.release(run_id)
        raise
    if journal.history:
        run = attrs.evolve(run, steps=(*journal.history, *run.steps), started=opened.started)
    return run


async def arun_durable(
    plan: Plan,
    data: Mapping[str, Any] | None,
    run_id: str,
    store: object,
    *,
    timeout: float | None,
    listeners: tuple[Listener, ...],
    invokers: Mapping[str, Invoker] | None,
) -> Run:
    """`arun_workflow` with ``store=``: start the run, return it if finished, or resume it."""
    opened, owned = open_store(store)
    try:
        run = await _run(
            plan,
            data,
            run_id,
            opened,
            timeout=timeout,
            listeners=listeners,
            invokers=invokers,
            resuming=False,
        )
    finally:
        if owned:
            opened.close()
    assert run is not None
    return run


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
    ``include_cancelled=True`` resumes runs cancelled from outside too.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        msg = f"concurrency must be an int >= 1, got {concurrency!r}"
        raise UsageError(msg)
    opened, owned = open_store(store)
    try:
        pending = opened.resumable(include_cancelled=include_cancelled)
        overrides = PLAN_OVERRIDES.get()
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
                changed.append(_incompatible(run.run_id, run.workflow, run.shape, plan.shape))
            plans.append(overrides.get(plan, plan))  # fakes apply here as in arun_workflow
        if missing:
            msg = (
                f"cannot resume {', '.join(missing)}: no workflow is registered under that "
                f"name in this process; import the module that defines it before resuming"
            )
            raise WorkflowNotFound(msg)
        if changed:
            raise IncompatibleDefinition("\n".join(changed))
        extra = check_listeners(listeners)
        gate = asyncio.Semaphore(concurrency)
        runs: list[Run | None] = [None] * len(pending)

        async def one(index: int, plan: Plan, run_id: str) -> None:
            found = run_listeners(plan.name, run_id, extra)
            async with gate:
                try:
                    runs[index] = await _run(
                        plan,
                        None,
                        run_id,
                        opened,
                        timeout=timeout,
                        listeners=found,
                        invokers=executors,
                        resuming=True,
                    )
                except Exception as exc:  # kept for later: it must not cancel the other runs
                    errors.append(exc)

        errors: list[Exception] = []
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
    from ._runner import check_options, no_running_loop

    no_running_loop("resume_runs", "aresume_runs")
    check_options(
        "resume_runs",
        options,
        ("concurrency", "timeout", "executors", "listeners", "include_cancelled"),
    )
    return asyncio.run(aresume_runs(store, **options))
