"""Reading runs back: a `Run` from a store's rows, and what a damaged row raises.

Every store builds its `Run`s here, so a row that cannot be read is the same
`StoreError`, naming the run and what is wrong, whatever the store.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import MappingProxyType
from typing import Any, Final

from .._engine._run import CompensationRecord, Run, RunStatus, StepRecord, Waiting
from .._engine._seams import STEP, child_finished
from ..errors import RunNotFound, StoreError, UsageError
from ._codec import Undecodable, decode, dumps, encode
from ._packing import Unpackable, unpacked
from ._protocol import Attempt, Claim, Definition, Opened, RunHeader

__all__ = [
    "ATTEMPT_COLUMNS",
    "ATTEMPT_ROW",
    "DEFINITION_QUERY",
    "ENDED",
    "FINISHED",
    "RUN_COLUMNS",
    "STATUSES",
    "TABLE_COLUMNS",
    "WOKEN",
    "attempt_from_row",
    "attempt_row",
    "build_run",
    "cancel_action",
    "check_cursor",
    "check_limit",
    "check_status",
    "check_statuses",
    "child_notice",
    "damaged",
    "definition_from_row",
    "delivery",
    "final",
    "found_run",
    "keep_graph",
    "list_query",
    "lost_claim",
    "newer_schema",
    "no_such_run",
    "not_cancellable",
    "not_retryable",
    "parent_delivery",
    "partial_schema",
    "readable",
    "refused_event",
    "retry_ids",
    "run_from_row",
    "shape_of",
    "since_seconds",
    "step_record",
    "text_of",
    "waited_events",
    "waiting_text",
    "warn_damaged",
]


RUN_COLUMNS: Final = (
    "run_id, workflow, status, fingerprint, shape, input, output, error, failed_step, "
    "compensations, started, duration, owner, lease_expires, lease_epoch, claimed_at, waiting, "
    "parent_id, cancel_requested"
)
ATTEMPT_COLUMNS: Final = "step, visit, attempt, status, final, outcome, started, duration, kind"
FINISHED: Final = ("completed", "failed")
ENDED: Final = ("completed", "failed", "cancelled")
"""The statuses of a run that is not executing and never will on its own (`prune_runs`,
`retry_run`): finished, or cancelled (for good, or until asked for again)."""
WOKEN: Final = 0.0
"""`available_at` of a parked run an event woke: claimable now, whatever the claimer's clock."""
STATUSES: Final = ("queued", "running", "waiting", "completed", "failed", "cancelled")

TABLE_COLUMNS: Final = {
    "flowdsl_runs": (
        "run_id", "workflow", "status", "fingerprint", "shape", "input", "output", "error",
        "failed_step", "compensations", "started", "updated", "duration", "owner",
        "lease_expires", "lease_epoch", "resumes", "queue", "priority", "available_at",
        "queued_at", "claimed_at", "waiting", "parent_id", "cancel_requested",
    ),
    "flowdsl_attempts": (
        "seq", "run_id", "kind", "step", "visit", "attempt", "status", "final", "outcome",
        "started", "duration", "worker",
    ),
    "flowdsl_queues": ("name", "concurrency", "rate_count", "rate_period", "updated"),
    "flowdsl_events": ("seq", "run_id", "event", "payload", "sent", "taken", "taken_by"),
    "flowdsl_schedules": ("workflow", "since", "checked"),
    "flowdsl_graphs": ("fingerprint", "workflow", "graph"),
}  # fmt: skip
"""What each table of every store must have (one may have more: columns an older schema left)."""

DEFINITION_QUERY: Final = (
    "SELECT r.workflow, r.fingerprint, r.shape, g.graph FROM flowdsl_runs r "
    "LEFT JOIN flowdsl_graphs g ON g.fingerprint = r.fingerprint WHERE r.run_id = {mark}"
)
"""`Store.get_definition`'s query (`mark`: the driver's placeholder); `definition_from_row`."""

_KEEP_GRAPH: Final = (
    "INSERT INTO flowdsl_graphs (fingerprint, workflow, graph) VALUES ({mark}, {mark}, {mark}) "
    "ON CONFLICT (fingerprint) DO NOTHING"
)

_log = logging.getLogger("flowdsl")


def keep_graph(header: RunHeader, kept: set[str], mark: str) -> tuple[str, tuple[str, ...]] | None:
    """The statement that keeps `header`'s graph (once per fingerprint), or None.

    None when the header carries no graph, or when `kept` (the fingerprints
    this store object wrote already) holds its fingerprint: after a
    definition's first run, starting a run costs nothing more.
    """
    if header.graph is None or header.fingerprint in kept:
        return None
    return _KEEP_GRAPH.format(mark=mark), (header.fingerprint, header.workflow, header.graph)


def definition_from_row(run_id: str, row: Sequence[Any]) -> Definition:
    """A `Definition` from `DEFINITION_QUERY`'s row."""
    workflow, fingerprint, shape, graph = row
    return Definition(workflow, fingerprint, shape_of(run_id, shape), graph)


def damaged(run_id: str, where: str, why: object) -> StoreError:
    """The error for a run whose journal cannot be read (edited, truncated, a bad page)."""
    return StoreError(
        f"run {run_id!r} is damaged in the store: its {where} cannot be read ({why}); "
        f"the other runs are not affected. Delete the run, or restore the store from a backup"
    )


def _decode(run_id: str, where: str, text: str, strict: bool = False) -> Any:
    try:
        return decode(text, strict=strict)
    except Undecodable as exc:
        raise damaged(run_id, where, exc) from None


def step_record(run_id: str, attempt: Attempt) -> StepRecord:
    """The `StepRecord` of a step attempt's journal row."""
    error: object = None
    if not attempt.succeeded:
        outcome = _decode(run_id, f"attempt of step {attempt.step!r}", attempt.outcome)
        error = getattr(outcome, "error", outcome)
    return StepRecord(
        attempt.step,
        attempt.attempt,
        "succeeded" if attempt.succeeded else "failed",
        attempt.started,
        attempt.duration,
        error,
        visit=attempt.visit,
    )


def build_run(
    *,
    run_id: str,
    workflow: str,
    status: RunStatus,
    input: str,
    output: str | None,
    error: str | None,
    failed_step: str | None,
    compensations: str | None,
    started: float,
    duration: float | None,
    attempts: Iterable[Attempt],
    owner: str | None = None,
    lease_expires: float | None = None,
    fingerprint: str = "",
    waiting: str | None = None,
    parent_id: str | None = None,
) -> Run:
    """A `Run` from a store's rows; `StoreError` naming the run when they cannot be read.

    A run still running shows its input as its output.
    """
    data = _decode(run_id, "output" if output is not None else "input", output or input)
    if data is not None and not isinstance(data, dict):
        raise damaged(run_id, "output", f"a {type(data).__name__}, not a mapping")
    comps: list[CompensationRecord] = []
    if compensations:
        for item in _decode(run_id, "compensations", compensations):
            try:
                step, state, took, reason = item
            except (TypeError, ValueError):
                raise damaged(run_id, "compensations", f"{item!r} is not a record") from None
            comps.append(CompensationRecord(step, state, took, reason))
    return Run(
        run_id=run_id,
        workflow=workflow,
        status=status,
        output=MappingProxyType(dict(data or {})),
        error=_decode(run_id, "error", error) if error is not None else None,
        failed_step=failed_step,
        steps=tuple(step_record(run_id, a) for a in attempts if a.kind == STEP),
        compensations=tuple(comps),
        duration=duration or 0.0,
        started=started,
        owner=owner,
        lease_expires=lease_expires,
        fingerprint=fingerprint,
        waiting=None if waiting is None else _waiting(run_id, waiting),
        parent_id=parent_id,
    )


def waiting_text(waiting: Waiting) -> str:
    """How a store keeps `Run.waiting` (JSON)."""
    return json.dumps(
        {"waits": list(waiting.waits), "events": list(waiting.events), "until": waiting.until}
    )


def _waiting(run_id: str, text: str) -> Waiting:
    found = _decode(run_id, "waiting", text)
    try:
        waits, events, until = found["waits"], found["events"], found["until"]
        return Waiting(
            tuple(str(w) for w in waits),
            tuple(str(e) for e in events),
            None if until is None else float(until),
        )
    except (TypeError, KeyError, ValueError):
        raise damaged(run_id, "waiting", f"{found!r} is not what a parked run waits for") from None


def readable(
    rows: Iterable[Any], build: Callable[[Any], Run], on_damaged: Callable[[str, StoreError], None]
) -> list[Run]:
    """The runs `build` makes of `rows`; a damaged one is handed to `on_damaged`, not raised."""
    runs: list[Run] = []
    for row in rows:
        try:
            runs.append(build(row))
        except StoreError as exc:
            on_damaged(row[0], exc)
    return runs


def waited_events(run_id: str, text: str | None) -> tuple[str, ...]:
    """The events a parked run's `waiting` column says it waits for."""
    return () if text is None else _waiting(run_id, text).events


def no_such_run(run_id: str, where: str) -> str:
    return (
        f"no run {run_id!r} in the store at {where!r}; check the run id "
        f"(flowdsl runs list --store ...) and the store"
    )


def refused_event(run_id: str, event: str, status: str) -> str:
    ended = "was cancelled" if status == "cancelled" else f"has {status}"
    return (
        f"run {run_id!r} {ended}: it waits for nothing any more, so the event "
        f"{event!r} is refused; send it to a run that is not finished"
    )


def final(status: str, cancel_requested: object) -> bool:
    """Whether a run with this row has ended for good: completed, failed, or stopped by
    `cancel_run` (a run cancelled because its caller was interrupted resumes when asked for)."""
    return status in FINISHED or (status == "cancelled" and bool(cancel_requested))


def delivery(run_id: str, event: str, found: Sequence[Any] | None, where: str) -> bool:
    """`send_event`'s rule, given the run's ``(status, waiting, cancel_requested)`` (None: no
    such run).

    An unknown run is `RunNotFound`, a run that ended for good (`final`) refuses
    the event (`UsageError`); otherwise the event goes in the run's mailbox,
    and the answer is whether it wakes the run: parked, and waiting for `event`.
    """
    if found is None:
        raise RunNotFound(no_such_run(run_id, where))
    status, waiting, cancel_requested = found
    if final(status, cancel_requested):
        raise UsageError(refused_event(run_id, event, status))
    return status == "waiting" and event in waited_events(run_id, waiting)


def child_notice(
    run_id: str, status: str, cancel_requested: object = False
) -> tuple[str, str] | None:
    """The event a child run that ended with `status` sends its parent: (name, JSON payload).

    None when the run has not ended for good: a run cancelled because its
    caller was interrupted resumes when asked for, so its parent goes on
    waiting for it; one stopped by `cancel_run` has ended (status "cancelled").
    """
    if not final(status, cancel_requested):
        return None
    return child_finished(run_id), dumps(encode({"run_id": run_id, "status": status}))


def parent_delivery(
    parent_id: str, event: str, found: Sequence[Any] | None, where: str
) -> bool | None:
    """`delivery` for a child's end: None when the parent takes no event (gone, or finished).

    A child's end never fails because of its parent: a parent whose
    ``waiting`` cannot be read gets the event without being woken (logged).
    """
    try:
        return delivery(parent_id, event, found, where)
    except (RunNotFound, UsageError):
        return None
    except StoreError as exc:
        _log.warning("%s; the event %r is kept in its mailbox", exc, event)
        return False


def list_query(
    status: object,
    workflow: object,
    since: object,
    limit: object,
    before: object,
    parent: object,
    mark: str,
) -> tuple[str, tuple[Any, ...]]:
    """`list_runs`'s filters, order and page as SQL after ``FROM flowdsl_runs``, and its args.

    `mark` is the driver's placeholder. Oldest first without `limit`, newest
    first with it; ``before`` keeps the runs after a cursor in the newest-first
    order (older ones): ``(started, run_id) < cursor``, which the indexes on
    ``(started, run_id)`` (and ``(workflow, started, run_id)``) serve.
    """
    statuses = check_statuses(status)
    if parent is not None and not (isinstance(parent, str) and parent):
        msg = f"parent= takes the run id of a parent run (a non-empty str), or None; got {parent!r}"
        raise UsageError(msg)
    if workflow is not None and not (isinstance(workflow, str) and workflow):
        msg = f"workflow= takes a workflow's name (a non-empty str), or None; got {workflow!r}"
        raise UsageError(msg)
    cut = since_seconds(since)
    count = check_limit(limit)
    cursor = check_cursor(before)
    clauses: list[str] = []
    args: list[Any] = []
    if statuses is not None:
        if len(statuses) == 1:
            clauses.append(f"status = {mark}")
        else:
            clauses.append(f"status IN ({', '.join(mark for _ in statuses)})")
        args.extend(statuses)
    if workflow is not None:
        clauses.append(f"workflow = {mark}")
        args.append(workflow)
    if parent is not None:
        clauses.append(f"parent_id = {mark}")
        args.append(parent)
    if cut is not None:
        clauses.append(f"started >= {mark}")
        args.append(cut)
    if cursor is not None:
        clauses.append(f"(started, run_id) < ({mark}, {mark})")
        args.extend(cursor)
    text = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    if count is None:
        return f"{text} ORDER BY started, run_id", tuple(args)
    return f"{text} ORDER BY started DESC, run_id DESC LIMIT {count}", tuple(args)


def check_statuses(status: object) -> tuple[str, ...] | None:
    """`status=` of `list_runs` and `prune_runs`: one status, a tuple of them, or None."""
    if status is None:
        return None
    if isinstance(status, str):
        check_status(status)
        return (status,)
    if isinstance(status, tuple | list | set | frozenset) and status:
        for one in status:
            check_status(one)
        return tuple(sorted(set(status)))
    known = ", ".join(repr(s) for s in STATUSES)
    msg = f"status= takes one of {known}, a non-empty tuple of them, or None; got {status!r}"
    raise UsageError(msg)


def since_seconds(since: object) -> float | None:
    """`list_runs(since=)`: an aware datetime as epoch seconds (None: no lower bound)."""
    if since is None:
        return None
    if not isinstance(since, _dt.datetime):
        msg = (
            f"since= takes an aware datetime (runs started at or after it), got {since!r}; "
            f"e.g. datetime.now(timezone.utc) - timedelta(hours=1)"
        )
        raise UsageError(msg)
    if since.tzinfo is None or since.tzinfo.utcoffset(since) is None:
        msg = (
            f"since= takes an aware datetime, got the naive {since.isoformat()!r} (no time "
            f"zone: which moment it names is unknown); give it one, e.g. "
            f"since.replace(tzinfo=timezone.utc) or datetime.now(timezone.utc)"
        )
        raise UsageError(msg)
    return since.timestamp()


def check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
        return limit
    msg = (
        f"limit= takes how many runs to return (an int >= 1), or None for every run; got {limit!r}"
    )
    raise UsageError(msg)


def check_cursor(before: object) -> tuple[float, str] | None:
    """`list_runs(before=)`: a `Run` of the previous page (its last), or ``(started, run_id)``."""
    if before is None:
        return None
    if isinstance(before, Run):
        return float(before.started), before.run_id
    if (
        isinstance(before, tuple)
        and len(before) == 2
        and isinstance(before[0], int | float)
        and not isinstance(before[0], bool)
        and isinstance(before[1], str)
    ):
        return float(before[0]), before[1]
    msg = (
        f"before= takes the last Run of the previous page (or its (started, run_id)), got "
        f"{before!r}; e.g. page = store.list_runs(limit=50); "
        f"store.list_runs(limit=50, before=page[-1])"
    )
    raise UsageError(msg)


def cancel_action(status: str, cancel_requested: object, claimable: bool) -> str | None:
    """What `cancel_run` does to an (unfinished) run of a cancelled tree.

    ``"cancelled"``: it becomes cancelled now (queued, parked, cancelled by an
    interrupted caller, or running with no live owner); ``"stopping"``: its
    owner is asked to stop it (running, owned); None: it has ended already.
    """
    if final(status, cancel_requested):
        return None
    if status == "running" and not claimable:
        return "stopping"
    return "cancelled"


def not_retryable(run_id: str, status: str) -> str:
    return (
        f"run {run_id!r} is {status}: only a run that has ended (completed, failed or "
        f"cancelled) is retried; cancel it first (cancel_run), or wait for it to end"
    )


def retry_ids(run_id: str) -> Iterator[str]:
    """The ids a retry of `run_id` may take, in order: ``{run_id}.retry1``, ``.retry2``, ..."""
    n = 1
    while True:
        yield f"{run_id}.retry{n}"
        n += 1


def not_cancellable(run_id: str, status: str) -> str:
    what = "was cancelled already" if status == "cancelled" else f"has {status}"
    return (
        f"run {run_id!r} {what}: only a run that has not ended can be cancelled; "
        f"to run it again, use retry_run (flowdsl runs retry)"
    )


ATTEMPT_ROW: Final = (
    "run_id, kind, step, visit, attempt, status, final, outcome, started, duration, worker"
)
"""The columns a journal row is written with, in `attempt_row`'s order."""


def attempt_row(
    run_id: str, attempt: Attempt, worker: str, pack: Callable[[str], str | bytes] | None = None
) -> tuple[Any, ...]:
    """The values of `attempt`'s journal row (`ATTEMPT_ROW`), written by `worker`; its
    outcome as `pack` makes it (the SQLite store's compression), or as it is."""
    a = attempt
    status = "succeeded" if a.succeeded else "failed"
    outcome = a.outcome if pack is None else pack(a.outcome)
    return (run_id, a.kind, a.step, a.visit, a.attempt, status, a.final, outcome, a.started, a.duration, worker)  # fmt: skip


def text_of(run_id: str, where: str, value: Any) -> Any:
    """A text column's value as text (a compressed one unpacked; see `_packing`); None and
    other values as they are, for the reader to say what is wrong with them."""
    if type(value) is not bytes:
        return value
    try:
        return unpacked(value)
    except Unpackable as exc:
        raise damaged(run_id, where, exc) from None


def attempt_from_row(run_id: str, row: Sequence[Any]) -> Attempt:
    """An `Attempt` of run `run_id` from a journal row (`ATTEMPT_COLUMNS`)."""
    step, visit, attempt, status, final, outcome, started, duration, kind = row
    return Attempt(
        step,
        visit,
        attempt,
        status == "succeeded",
        bool(final),
        text_of(run_id, f"journaled outcome of {step!r}", outcome),
        started,
        duration,
        kind=kind,
    )


def run_from_row(row: Sequence[Any], attempts: Iterable[Attempt]) -> Run:
    """A `Run` from a run row (`RUN_COLUMNS`) and its journal."""
    (run_id, workflow, status, fingerprint, _, data, output, error, failed_step, comps) = row[:10]
    started, duration = row[10], row[11]
    owner, lease_expires = row[12], row[13]
    if status not in STATUSES:
        raise damaged(run_id, "status", f"{status!r} is not a run status")
    return build_run(
        run_id=run_id,
        workflow=workflow,
        status=status,
        input=text_of(run_id, "input", data),
        output=text_of(run_id, "output", output),
        error=error,
        failed_step=failed_step,
        compensations=comps,
        started=started,
        duration=duration,
        attempts=attempts,
        owner=owner if status == "running" else None,
        lease_expires=lease_expires if status == "running" else None,
        fingerprint=fingerprint,
        waiting=row[16] if status == "waiting" else None,
        parent_id=row[17],
    )


def shape_of(run_id: str, text: str) -> tuple[str, ...]:
    """The recorded definition shape (a JSON list of lines) of a run."""
    try:
        shape = decode(text)
    except Undecodable as exc:
        raise damaged(run_id, "definition fingerprint", exc) from None
    if not isinstance(shape, list) or not all(isinstance(line, str) for line in shape):
        raise damaged(run_id, "definition fingerprint", "not a list of lines")
    return tuple(shape)


def found_run(row: Sequence[Any], claim: Claim | None, **more: Any) -> Opened:
    """What a store row says about a run: `claim` set when this process just claimed it."""
    run_id = row[0]
    return Opened(
        run_id=run_id,
        claim=claim,
        new=False,
        workflow=row[1],
        fingerprint=row[3],
        shape=shape_of(run_id, row[4]),
        input=text_of(run_id, "input", row[5]),
        started=row[10],
        fresh=row[15] is None,
        parent_id=row[17],
        cancel_requested=bool(row[18]),
        **more,
    )


def check_status(status: object) -> None:
    """A run status or None, else a `UsageError` listing them."""
    if status is not None and status not in STATUSES:
        known = ", ".join(repr(s) for s in STATUSES)
        msg = f"status must be one of {known}, or None; got {status!r}"
        raise UsageError(msg)


def warn_damaged(run_id: str, error: StoreError) -> None:
    """What `list_runs` does with a damaged run when no ``on_damaged`` is given."""
    _log.warning("%s", error)


def lost_claim(claim: Claim) -> StoreError:
    """The error of a write whose claim another process took over (fencing)."""
    return StoreError(
        f"run {claim.run_id!r} is no longer owned by this process (its lease was taken over "
        f"by another process, or the run finished); nothing more of it is recorded here, "
        f"and this call stops it"
    )


def partial_schema(where: str, what: str, instead: str) -> StoreError:
    return StoreError(
        f"the store at {where!r} has an incomplete flowdsl schema ({what}): it was damaged "
        f"or written by something else; restore it from a backup or {instead}"
    )


def newer_schema(where: str, found: int, reads: int) -> StoreError:
    return StoreError(
        f"the store at {where!r} was written by a newer flowdsl (journal schema {found}, "
        f"this release reads {reads}); upgrade flowdsl to use it"
    )
