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
    Undecodable,
    Unencodable,
    Unregistered,
    decode,
    describe_path,
    dumps,
    encode,
    encode_lenient,
    encode_reason,
    type_name,
)
from ._events import Listener, RunFinished, check_listeners, fan_out
from ._executor import Entry, Invoker, execute
from ._outcome import Goto
from ._plan import Plan
from ._run import CompensationRecord, Run, StepRecord
from ._runner import PLAN_OVERRIDES, run_listeners
from ._sqlite import SQLiteStore
from ._store import (
    STEP,
    UNDO,
    Attempt,
    Claim,
    Ending,
    Opened,
    RunHeader,
    Store,
    damaged,
    describe_owner,
    step_record,
)
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


def _wait_out_cancel(task: asyncio.Future[Any]) -> Any:
    """Await `task` to its end even if the caller is cancelled meanwhile; then re-raise that."""

    async def wait() -> Any:
        cancelled = False
        while True:
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():
                    cancelled = True
                    continue
                if task.cancelled():
                    raise
                result = task.result()  # raises the write's own error
            if cancelled:
                raise asyncio.CancelledError
            return result

    return wait()


class _RunJournal:
    """The executor's `Journal` for one durable run: one claim of it in one store."""

    __slots__ = ("claim", "finished", "history", "plan", "replay", "run_id", "store", "undo")

    def __init__(self, store: Store, plan: Plan, claim: Claim, attempts: Iterable[Attempt]) -> None:
        self.store = store
        self.plan = plan
        self.claim = claim
        self.run_id = claim.run_id
        self.finished = False
        self.history: list[StepRecord] = []
        self.undo: dict[tuple[str, int], CompensationRecord] = {}
        replay: dict[tuple[str, str, int], list[Any]] = {}
        for attempt in attempts:
            kind = attempt.kind
            if kind == UNDO:
                self.undo[(attempt.step, attempt.visit)] = self.undone_record(attempt)
                continue
            key = (kind, attempt.step, attempt.visit)
            entry = replay.get(key)
            if entry is None:
                entry = replay[key] = [0, None]
            if attempt.final:  # a success, or a failure that was not retried: the outcome
                outcome = self.decode(attempt)
                # A step that returned None finished too: replayed() must not say "not done".
                entry[1] = _OK_NONE if outcome is None else outcome
            if not attempt.succeeded:  # the attempts spent: numbering goes on from here
                entry[0] = max(entry[0], attempt.attempt)
            if kind == STEP:
                self.history.append(step_record(self.run_id, attempt))
        self.replay = replay

    def decode(self, attempt: Attempt) -> Any:
        """A journaled outcome, read strictly: a resumed run gets back exactly what it wrote."""
        try:
            return decode(attempt.outcome, strict=True)
        except Unregistered as exc:
            msg = (
                f"run {self.run_id!r} cannot resume: the journaled outcome of "
                f"{attempt.step!r} holds {exc.type!r}, which this process does not know; "
                f"import the module that registers it (flowdsl.register_type) and resume again"
            )
            raise StoreError(msg) from None
        except Undecodable as exc:
            raise damaged(self.run_id, f"journaled outcome of {attempt.step!r}", exc) from None

    def undone_record(self, attempt: Attempt) -> CompensationRecord:
        outcome = self.decode(attempt)
        error = outcome.error if type(outcome) is Err else None
        status = "failed" if type(outcome) is Err else "succeeded"
        return CompensationRecord(attempt.step, status, attempt.duration, error)

    def replayed(self, kind: str, name: str, visit: int) -> tuple[int, object | None]:
        entry = self.replay.get((kind, name, visit))
        if entry is None:
            return 0, None
        return entry[0], entry[1]

    def undone(self, name: str, visit: int) -> CompensationRecord | None:
        return self.undo.get((name, visit))

    def must_check(self) -> bool:
        return self.store.lost(self.claim)

    async def check(self) -> None:
        if not await self.store.holds(self.claim):
            msg = (
                f"run {self.run_id!r} is no longer owned by this process: its lease ran out "
                f"and another process took the run over; this call stops it, recording nothing"
            )
            raise StoreError(msg)

    async def record(self, entry: Entry) -> object:
        outcome = entry.outcome
        failed, retrying = entry.failed, entry.retrying
        if failed:
            text = dumps(encode(outcome))  # an Err: its reason always encodes
        else:
            try:
                text = dumps(encode(outcome))
            except Unencodable as exc:
                outcome = Err(SerializationError(self.unencodable(entry, outcome, exc)))
                text = dumps(encode(outcome))
                failed, retrying = True, False
        await self.store.append(
            self.claim,
            Attempt(
                entry.name,
                entry.visit,
                entry.attempt,
                not failed,
                not retrying,
                text,
                entry.started,
                entry.duration,
                kind=entry.kind,
            ),
        )
        return outcome

    def unencodable(self, entry: Entry, outcome: object, exc: Unencodable) -> str:
        path = exc.path  # innermost first: the key in the context is last
        kind = type(outcome)
        merged = kind is Goto or (kind is Ok and isinstance(outcome.value, Mapping))  # type: ignore[attr-defined]
        node = self.plan.steps.get(entry.name)
        if merged and path:
            key = path.pop()
        elif node is not None:  # the whole value is stored under the step's key
            key = node.key
        else:
            key = entry.name
        where = f" (at {key!r}{describe_path(path)})" if path else ""
        why = f": {exc.why}" if exc.why else ""
        what = "step" if entry.kind == STEP else "the into= reducer of"
        return (
            f"workflow {self.plan.name!r}, {what} {entry.name!r} returned a value the journal "
            f"cannot store: key {key!r} holds a {type_name(exc.value)}{where}{why}. {exc.hint}"
        )

    async def finish(self, run: Run) -> None:
        comps = [
            [c.step, c.status, c.duration, None if c.error is None else encode_reason(c.error)]
            for c in run.compensations
        ]
        ending = Ending(
            status=run.status,
            output=dumps(encode_lenient(run.output)),
            error=None if run.error is None else dumps(encode_reason(run.error)),
            failed_step=run.failed_step,
            compensations=dumps(comps),
            duration=run.duration,
        )
        # The final record is written whatever happens to the caller meanwhile: a cancel
        # that arrives now waits for it, so the store never says what the caller did not see.
        await _wait_out_cancel(asyncio.ensure_future(self.store.finish_run(self.claim, ending)))
        self.finished = True


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
    who = describe_owner(opened.owner) if opened.owner else "another task"
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
    claim = opened.claim
    if claim is None:
        if resuming and opened.workflow == plan.name and opened.fingerprint == plan.fingerprint:
            return None
        raise _refuse(opened, plan, run_id)
    journal: _RunJournal | None = None
    try:
        journal = _RunJournal(store, plan, claim, opened.attempts)
        if not opened.new:
            data = _decode_input(run_id, opened.input)
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
        if journal is None or not journal.finished:
            store.release(claim)
        stores, rest = group.split(StoreError)
        if stores is not None and rest is None:
            raise stores.exceptions[0] from group
        raise
    except BaseException:
        if journal is None or not journal.finished:
            store.release(claim)
        raise
    if journal.history:
        run = attrs.evolve(run, steps=(*journal.history, *run.steps), started=opened.started)
    return run


def _decode_input(run_id: str, text: str) -> Any:
    try:
        return decode(text, strict=True)
    except Unregistered as exc:
        msg = (
            f"run {run_id!r} cannot resume: its journaled input holds {exc.type!r}, which "
            f"this process does not know; import the module that registers it "
            f"(flowdsl.register_type) and resume again"
        )
        raise StoreError(msg) from None
    except Undecodable as exc:
        raise damaged(run_id, "input", exc) from None


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
    Runs in status "cancelled" (their caller was cancelled, or Ctrl-C) are
    skipped on purpose: ask for one by its ``run_id``, or pass
    ``include_cancelled=True`` to resume them too. A run whose journal cannot
    be read is not resumed: the others are, then a `StoreError` names it.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        msg = f"concurrency must be an int >= 1, got {concurrency!r}"
        raise UsageError(msg)
    opened, owned = open_store(store)
    try:
        damaged: list[Exception] = []  # raised after the healthy runs were resumed
        pending = opened.resumable(
            include_cancelled=include_cancelled,
            on_damaged=lambda run_id, exc: damaged.append(exc),
        )
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
    from ._runner import check_options, no_running_loop

    no_running_loop("resume_runs", "aresume_runs")
    check_options(
        "resume_runs",
        options,
        ("concurrency", "timeout", "executors", "listeners", "include_cancelled"),
    )
    return asyncio.run(aresume_runs(store, **options))
