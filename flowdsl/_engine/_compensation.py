"""Compensation: when a run fails, undo what its steps did, last completed first.

Every step with a ``compensate=`` that completed is undone in reverse
completion order (parallel branches included). A compensation fails when it
raises or returns ``error(reason)``: it is recorded and the rest still run.
Each is bounded by its step's ``timeout=``, or else by the run's, counted
afresh (a run that failed by timing out still gets to undo its steps). In a
durable run each finished compensation is journaled, and never runs again on
resume. A traced run gives each compensation a span.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._plan import CallNode, StepNode
from ..result import Err, Ok
from ._context import Context, Scope
from ._events import CompensationFinished
from ._run import CompensationRecord
from ._seams import UNDO, Entry

if TYPE_CHECKING:
    from ._execution import _Execution

__all__ = ["compensate"]

_perf = time.perf_counter
_OK_NONE: Final = Ok(None)


async def compensate(run: _Execution) -> tuple[CompensationRecord, ...]:
    """Undo the run's completed steps; their records, in the order they ran."""
    done: list[CompensationRecord] = []
    emit = run.emit
    journal = run.journal
    for node, scope, version, outcome, visit in reversed(run.compensable):
        each = scope.each
        name = node.name if each is None else node.name + each.suffix
        if journal is not None:
            recorded = journal.undone(name, visit)
            if recorded is not None:  # it ran before a resume: never again
                done.append(recorded)
                continue
        own = Scope(scope, version)
        run.apply(node.key, outcome, own)
        ctx = Context(own, own.version, run.run_id, name, 1, visit)
        limit = node.timeout if node.timeout is not None else run.limit
        started = _perf()
        tracer = run.tracer
        if tracer is None:
            error = await _undo(run, node, ctx, limit)
        else:  # a traced run: the compensation's span, ERROR when it failed
            with tracer.scoped("compensate", name, "flowdsl.step") as span:
                error = await _undo(run, node, ctx, limit)
                if error is not None:
                    span.fail(error)
        duration = _perf() - started
        status = "failed" if error is not None else "succeeded"
        if journal is not None:
            await journal.record(
                Entry(
                    kind=UNDO,
                    name=name,
                    visit=visit,
                    attempt=1,
                    outcome=_OK_NONE if error is None else Err(error),
                    failed=error is not None,
                    retrying=False,
                    started=run.wall(started),
                    duration=duration,
                )
            )
        done.append(CompensationRecord(name, status, duration, error))
        if emit is not None:
            emit(CompensationFinished(name, status, duration, error=error, run_id=run.run_id))
    return tuple(done)


async def _call(fn: Callable[..., Any], ctx: Context) -> object:
    """``fn(ctx)``, awaited when it returns an awaitable (compensations may be sync or async)."""
    result = fn(ctx)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _undo(
    run: _Execution, node: StepNode | CallNode, ctx: Context, limit: float | None
) -> object:
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
            return _timed_out(node, limit)
        return exc
    except Exception as exc:
        return exc
    except (KeyboardInterrupt, SystemExit) as exc:
        run.interrupt(exc)
    if limit is not None and _perf() - started > limit:  # a plain function is not cut off
        return _timed_out(node, limit)
    if type(result) is Err:
        return result.error
    return None


def _timed_out(node: StepNode | CallNode, limit: float | None) -> TimeoutError:
    return TimeoutError(f"the compensation of step {node.name!r} did not finish within {limit:g}s")
