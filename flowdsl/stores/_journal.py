"""Durable runs: one run journaled in a store, started, returned, or resumed.

`run_durably` opens the run in the store (creates it, returns it when it is
finished, or claims it to resume it), then executes the plan with a
`RunJournal`: the engine asks it for recorded outcomes before running a step
(`replayed`), hands it every entry (`record`), which is committed before the
engine goes on, and checks the run's lease before an attempt when it may
have lost it. This is the engine's `Journal` seam, implemented for any
`Store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from .._engine import _context
from .._engine._clock import clock
from .._engine._events import Listener, RunFinished, fan_out
from .._engine._execution import execute
from .._engine._mailbox import executing
from .._engine._run import CompensationRecord, Run, StepRecord, Waiting
from .._engine._seams import STEP, TRACE, UNDO, Entry, Invoker, child_finished
from .._engine._tracing import TRACE_NAME, carrier
from .._outcome import Goto
from .._plan import Plan
from ..errors import IncompatibleDefinition, SerializationError, StoreError
from ..result import Err, Ok
from ._codec import (
    LARGE_PLAIN,
    Undecodable,
    Unencodable,
    Unregistered,
    decode,
    describe_path,
    dumps,
    encode,
    encode_lenient_text,
    encode_reason,
    encode_reason_text,
    encode_text,
    is_large,
    type_name,
)
from ._owner import describe_owner
from ._protocol import Attempt, Claim, Ending, Opened, RunHeader, Store, Ticket
from ._rows import damaged, step_record

_OK_NONE: Final = Ok(None)
_EVENT_POLL: Final = 60.0
"""How long one look at a run's mailbox waits before the claim is checked again."""
_MARK: Final = "\x00flowdsl-payload\x00"
CHILD_QUEUE: Final = "default"
"""The queue a worker's child run goes on without ``queue=`` (the default queue)."""


def _payload_wrap(key: str) -> tuple[str, str]:
    """The JSON around an event's payload in a wait's journaled outcome ``Ok({key: payload})``."""
    before, after = dumps(encode(Ok({key: _MARK}))).split(dumps(_MARK))
    return before, after


__all__ = [
    "RunJournal",
    "draw_graphs_with",
    "incompatible",
    "run_claimed",
    "run_durably",
    "run_header",
]

_log = logging.getLogger("flowdsl")

_GRAPHS: Final[weakref.WeakKeyDictionary[Plan, str | None]] = weakref.WeakKeyDictionary()
"""Each plan's graph as JSON, drawn once (the first time one of its runs starts)."""
_DRAW: list[Callable[[Plan], str]] = []


def draw_graphs_with(draw: Callable[[Plan], str]) -> None:
    """Give run headers their plan's graph as JSON, as `draw` makes it.

    The graph is what the run viewer shows, and the views draw it; the stores
    may not import the views, so the package hands their drawing function
    over here when it is imported.
    """
    _DRAW[:] = [draw]


def _graph_json(plan: Plan) -> str | None:
    """The plan's graph as JSON (None without a drawing function); drawn once per plan.

    A drawing that fails never fails the run: the run keeps no graph, and
    the failure is logged.
    """
    try:
        return _GRAPHS[plan]
    except KeyError:
        pass
    text: str | None = None
    if _DRAW:
        try:
            text = _DRAW[0](plan)
        except Exception:
            _log.warning("could not draw the graph of workflow %r", plan.name, exc_info=True)
    _GRAPHS[plan] = text
    return text


async def _encoded(encoder: Callable[[Any], str], value: object, plain_size: int = -1) -> str:
    """``encoder(value)``: in a thread when `value` is large, so the loop is never held long.

    `plain_size`: how many parts `value` holds when all of it is marked plain
    (`Entry.plain_size`); written without a walk, it is large only past `LARGE_PLAIN`.
    A cancel waits for the thread's encoding to end (nothing outlives the
    caller), then propagates.
    """
    small = plain_size <= LARGE_PLAIN if plain_size >= 0 else not is_large(value)
    if small:
        return encoder(value)
    text: str = await _wait_out_cancel(asyncio.ensure_future(asyncio.to_thread(encoder, value)))
    return text


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def _output_size(output: Mapping[str, Any]) -> int:
    """How many parts a run's output holds when orjson writes all of it without a walk
    (scalars, and containers marked plain, as a step's plain outcome is), counted in C up
    to a little past `LARGE_PLAIN`; -1 when it does not, or where the count is not built."""
    count = _context.count_parts
    if count is None:
        return -1
    size = 2 * len(output)
    plain = _context.PLAIN
    for value in output.values():
        kind = type(value)
        if kind in plain:
            size += count(value, LARGE_PLAIN)
        elif kind not in _SCALARS:
            return -1
        if size > LARGE_PLAIN:
            break
    return size


def _wait_out_cancel(task: asyncio.Future[Any]) -> Any:
    """Await `task` to its end even if the caller is cancelled meanwhile; then re-raise that."""

    async def wait() -> Any:
        cancelled = False
        while True:
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = True  # even when `task` ended in this same turn of the loop
                if not task.done():
                    continue
                if task.cancelled():
                    raise
                result = task.result()  # raises the write's own error
            if cancelled:
                raise asyncio.CancelledError
            return result

    return wait()


class RunJournal:
    """The executor's `Journal` for one durable run: one claim of it in one store."""

    __slots__ = (
        "claim",
        "finished",
        "handing_over",
        "history",
        "park_after",
        "plan",
        "replay",
        "run_id",
        "store",
        "undo",
    )

    def __init__(self, store: Store, plan: Plan, claim: Claim, attempts: Iterable[Attempt]) -> None:
        self.store = store
        self.plan = plan
        self.claim = claim
        self.run_id = claim.run_id
        self.finished = False
        self.handing_over = False
        """Set by a worker that stops: the run's end is a hand-over, not its final record."""
        self.park_after: float | None = None
        """Set by a worker: how long the run may wait in place before it is parked."""
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
            text = await _encoded(encode_text, outcome)  # an Err: its reason always encodes
        else:
            try:
                text = await _encoded(encode_text, outcome, entry.plain_size)
            except Unencodable as exc:
                outcome = Err(SerializationError(self.unencodable(entry, outcome, exc)))
                text = encode_text(outcome)
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

    async def receive(
        self, name: str, visit: int, key: str, event: str, due: float | None
    ) -> tuple[bool, object]:
        """Take the next event for `event` from the run's mailbox in the store, until `due`."""
        store, claim, now = self.store, self.claim, clock().now
        started = now()
        wrap = _payload_wrap(key)
        while True:
            entry = Attempt(name, visit, 1, True, True, "", started, now() - started)
            # Never half-taken: a cancel (the run parking, its caller) waits for the commit.
            taking = asyncio.ensure_future(store.take_event(claim, event, entry, wrap))
            payload = await _wait_out_cancel(taking)
            if payload is not None:
                return True, self.payload(name, payload)
            left = _EVENT_POLL if due is None else min(due - now(), _EVENT_POLL)
            if left <= 0:
                return False, None
            if store.lost(claim):
                await self.check()
            arrived = asyncio.ensure_future(store.wait_for_event(self.run_id, event, left))
            if due is None:
                await arrived
                continue
            deadline = asyncio.ensure_future(clock().sleep_until(due))
            try:
                await asyncio.wait({arrived, deadline}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (arrived, deadline):
                    waiter.cancel()
                await asyncio.gather(arrived, deadline, return_exceptions=True)

    def payload(self, name: str, text: str) -> Any:
        """An event's payload, decoded strictly (it was encoded strictly when sent)."""
        try:
            return decode(text, strict=True)
        except Unregistered as exc:
            msg = (
                f"run {self.run_id!r}: the event taken by wait {name!r} holds {exc.type!r}, "
                f"which this process does not know; import the module that registers it "
                f"(flowdsl.register_type) and resume the run"
            )
            raise StoreError(msg) from None
        except Undecodable as exc:
            raise damaged(self.run_id, f"event taken by wait {name!r}", exc) from None

    async def child(
        self,
        plan: Plan,
        data: Mapping[str, Any] | None,
        run_id: str,
        queue: str | None,
        executors: Mapping[str, Invoker],
        waiting: Callable[[], None] | None = None,
    ) -> Run:
        """The child run `run_id`, to its end: run here, or queued and waited for (a worker's)."""
        if self.park_after is None:
            run = await run_durably(
                plan,
                data,
                run_id,
                self.store,
                timeout=None,
                listeners=(),
                executors=executors,
                parent_id=self.run_id,
            )
            assert run is not None  # not resuming: a run held elsewhere raised
            return run
        header = run_header(plan, data, run_id, parent_id=self.run_id, traced=True)
        ticket = Ticket(queue or CHILD_QUEUE, 0, clock().now())
        event = child_finished(run_id)
        while True:
            found = await self.store.enqueue(header, ticket)
            if found.finished is not None:
                return found.finished
            if not found.new and found.workflow != plan.name:
                msg = (
                    f"run {run_id!r} in the store belongs to workflow {found.workflow!r}, "
                    f"not {plan.name!r}: it cannot be the child run of {self.run_id!r}"
                )
                raise StoreError(msg)
            if self.store.lost(self.claim):
                await self.check()
            if waiting is not None:
                waiting()
            await self.store.wait_for_event(self.run_id, event, _EVENT_POLL)

    def watch(self, stop: Callable[[], None]) -> Callable[[], None]:
        """`stop()` on this event loop when `cancel_run` asks for the run to stop (the store
        finds out at a lease renewal, or is notified)."""
        loop = asyncio.get_running_loop()

        def asked() -> None:  # from the store's thread
            with contextlib.suppress(RuntimeError):  # the loop closed: the run is over
                loop.call_soon_threadsafe(stop)

        return self.store.watch(self.claim, asked)

    async def cancelling(self) -> bool:
        return await self.store.cancel_requested(self.run_id)

    async def park(self, waiting: Waiting, visits: tuple[tuple[str, int], ...]) -> None:
        parking = self.store.park(self.claim, waiting, visits)
        await _wait_out_cancel(asyncio.ensure_future(parking))
        self.finished = True

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
        if self.handing_over:  # cancelled by a worker that stops: another worker resumes it
            self.store.release(self.claim)
            self.finished = True
            return
        comps = [
            [c.step, c.status, c.duration, None if c.error is None else encode_reason(c.error)]
            for c in run.compensations
        ]

        async def write() -> None:
            ending = Ending(
                status=run.status,
                output=await _encoded(encode_lenient_text, run.output, _output_size(run.output)),
                error=None if run.error is None else encode_reason_text(run.error),
                failed_step=run.failed_step,
                compensations=dumps(comps),
                duration=run.duration,
            )
            await self.store.finish_run(self.claim, ending)

        # The final record is encoded and written whatever happens to the caller meanwhile:
        # a cancel that arrives now waits for it, so the store never says what the caller
        # did not see.
        await _wait_out_cancel(asyncio.ensure_future(write()))
        self.finished = True


def _shape_diff(old: tuple[str, ...], new: tuple[str, ...]) -> str:
    lines = [
        line
        for line in difflib.unified_diff(list(old), list(new), "recorded", "now", n=0, lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return "\n".join(f"  {line[0]} {line[1:]}" for line in lines)


def incompatible(run_id: str, workflow: str, old: tuple[str, ...], new: tuple[str, ...]) -> str:
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
        return IncompatibleDefinition(incompatible(run_id, plan.name, opened.shape, plan.shape))
    who = describe_owner(opened.owner) if opened.owner else "another task"
    return StoreError(
        f"run {run_id!r} of workflow {plan.name!r} is being executed by {who}; "
        f"wait for it to finish (or for that process to exit) and ask again"
    )


def run_header(
    plan: Plan,
    data: Mapping[str, Any] | None,
    run_id: str,
    parent_id: str | None = None,
    *,
    traced: bool = False,
) -> RunHeader:
    """What a store is asked to create: the run, its definition and its journaled input.

    `traced`: a queued run, whose trace parent is the context current now
    (journaled with the run when the current span is a valid one).
    """
    try:
        text = encode_text(data)
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
    now = time.time()
    found = carrier() if traced else None
    journal = () if found is None else (_trace_entry(found, now),)
    return RunHeader(
        run_id,
        plan.name,
        plan.fingerprint,
        plan.shape,
        text,
        now,
        parent_id=parent_id,
        graph=_graph_json(plan),
        journal=journal,
    )


def _trace_entry(found: dict[str, str], now: float) -> Attempt:
    """The journal entry of a queued run's trace parent (see `flowdsl._engine._tracing`)."""
    return Attempt(TRACE_NAME, 1, 1, True, True, encode_text(Ok(found)), now, 0.0, kind=TRACE)


async def run_durably(
    plan: Plan,
    data: Mapping[str, Any] | None,
    run_id: str,
    store: Store,
    *,
    timeout: float | None,
    listeners: tuple[Listener, ...],
    executors: Mapping[str, Invoker] | None,
    resuming: bool = False,
    parent_id: str | None = None,
) -> Run | None:
    """Start, return or resume one run; None when `resuming` and another process has it."""
    opened = await store.open_run(run_header(plan, data, run_id, parent_id=parent_id))
    if opened.finished is not None and opened.workflow == plan.name:
        # Nothing executes, whatever the definition is now; listeners (a stream) still
        # hear how the run ended, so RunFinished is always the last event of a call.
        emit = fan_out(listeners)
        if emit is not None:
            emit(RunFinished(opened.finished))
        return opened.finished
    if opened.claim is None:
        if resuming and opened.workflow == plan.name and opened.fingerprint == plan.fingerprint:
            return None
        raise _refuse(opened, plan, run_id)
    return await run_claimed(
        plan,
        opened,
        store,
        data=data,
        timeout=timeout,
        listeners=listeners,
        executors=executors,
        parent_id=parent_id,
    )


async def run_claimed(
    plan: Plan,
    opened: Opened,
    store: Store,
    *,
    data: Mapping[str, Any] | None = None,
    timeout: float | None,
    listeners: tuple[Listener, ...],
    executors: Mapping[str, Invoker] | None,
    journal: RunJournal | None = None,
    parent_id: str | None = None,
) -> Run:
    """Execute a run this process has claimed (`opened.claim`), journaled in `store`.

    A new run executes `data`; any other its journaled input. `journal` is
    the run's journal when the caller keeps a handle on it (a worker does, to
    hand the run over when it stops); one is made otherwise. The run's
    `Run.parent_id` is `parent_id`, or the one the store recorded.
    """
    claim = opened.claim
    assert claim is not None
    if parent_id is None:
        parent_id = opened.parent_id
    try:
        if journal is None:
            journal = RunJournal(store, plan, claim, opened.attempts)
        if not opened.new:
            data = _decode_input(opened.run_id, opened.input)
        # A run with waits is reachable by send_event(run_id, ...) without store= here.
        with executing(opened.run_id, store) if plan.waits else contextlib.nullcontext():
            run = await execute(
                plan,
                data,
                opened.run_id,
                timeout=timeout,
                listeners=listeners,
                executors=executors,
                journal=journal,
                resumed=not (opened.new or opened.fresh),
                parent_id=parent_id,
                stopped=opened.cancel_requested,
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
