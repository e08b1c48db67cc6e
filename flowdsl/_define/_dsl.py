"""RECORD: `@step`, `parallel()`, `sequence()`, `foreach()`, and running a workflow body once.

Recording runs no user step. `record_workflow` (what `@workflow` calls) runs
the body once, in a frame of its own (`_frames`); the decorators and blocks
inside it append frozen specs to the innermost open frame. When the body
returns, the spec tree is compiled (`_compiler` checks it). Here only what
recording needs is checked: that a call is inside a workflow body, and that
the body can be run once to record it.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, overload

from .._checks import arity_problem
from .._plan import End, Plan, Retry, Where
from ..errors import DefinitionError
from ._compiler import compile_workflow
from ._frames import Frame, current_frame, recording, stack
from ._spec import ForeachSpec, ParallelSpec, SequenceSpec, StepSpec, WorkflowSpec

__all__ = [
    "DEFAULT_MAX_TRANSITIONS",
    "foreach",
    "parallel",
    "record_workflow",
    "sequence",
    "step",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_TRANSITIONS = 10_000


def _where(depth: int) -> Where:
    frame = sys._getframe(depth + 1)
    return Where(frame.f_code.co_filename, frame.f_lineno)


def _open_frame(what: str, where: Where) -> Frame:
    frame = current_frame()
    if frame is None:
        msg = f"{where}: use {what} inside a @workflow body, not at module level"
        raise DefinitionError(msg)
    return frame


# -- recording a workflow body -----------------------------------------------------


def record_workflow(
    body: Callable[[], object],
    name: str | None,
    timeout: object,
    max_transitions: object,
    executor: object = None,
    schedule: tuple[object, object, object] = (None, None, None),
) -> Plan:
    """Run a workflow body once to record its steps, then compile it (checking everything).

    `schedule` is ``(cron, timezone, catch_up)`` as given to ``@workflow``.
    """
    code = getattr(body, "__code__", None)
    where = (
        Where(code.co_filename, code.co_firstlineno) if code is not None else Where("<unknown>", 0)
    )
    wf_name = name if name is not None else getattr(body, "__name__", "workflow")
    if current_frame() is not None:
        msg = (
            f"workflow {wf_name!r} ({where}): @workflow cannot be nested inside another "
            f"workflow body; define it at module level"
        )
        raise DefinitionError(msg)
    problem = _body_problem(body)
    if problem is not None:
        msg = f"workflow {wf_name!r} ({where}): {problem}"
        raise DefinitionError(msg)
    frame = Frame("workflow", wf_name)
    with recording(frame):
        body()
    spec = WorkflowSpec(
        name=wf_name,
        children=tuple(frame.children),
        timeout=timeout,
        max_transitions=max_transitions,
        executor=executor,
        schedule=schedule[0],
        timezone=schedule[1],
        catch_up=schedule[2],
        qualname=f"{getattr(body, '__module__', '?')}.{getattr(body, '__qualname__', wf_name)}",
        where=where,
    )
    return compile_workflow(spec)


def _body_problem(body: Callable[[], object]) -> str | None:
    """Why `body` cannot be a workflow body (run once, with no arguments, to record steps)."""
    if inspect.iscoroutinefunction(body) or inspect.isasyncgenfunction(body):
        return (
            "the workflow body is an async def; it runs once, at import, to record the steps, "
            "so write it as a plain def (the steps inside it can be async def)"
        )
    problem = arity_problem(body, 0, "body()")
    if problem is not None:
        return (
            f"{problem}; a workflow body takes no parameters: the run's input reaches each "
            f"step as its ctx argument (ctx['name'])"
        )
    return None


# -- @step ---------------------------------------------------------------------------


@overload
def step(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def step(
    fn: Callable[P, R],
    /,
    *,
    name: str | None = None,
    returns: str | None = None,
    retry: Retry | None = None,
    timeout: float | None = None,
    compensate: Callable[..., object] | None = None,
    routes: Iterable[str | End] | str = (),
    blocking: bool = False,
    executor: str | None = None,
) -> Callable[P, R]: ...
@overload
def step(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    returns: str | None = None,
    retry: Retry | None = None,
    timeout: float | None = None,
    compensate: Callable[..., object] | None = None,
    routes: Iterable[str | End] | str = (),
    blocking: bool = False,
    executor: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    returns: str | None = None,
    retry: Retry | None = None,
    timeout: float | None = None,
    compensate: Callable[..., object] | None = None,
    routes: Iterable[str | End] | str = (),
    blocking: bool = False,
    executor: str | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Record a step in the workflow body being defined; returns the function unchanged.

    Use it as ``@step``, ``@step(retry=Retry(3), timeout=5)``, or call it on a
    function defined elsewhere: ``step(send_email, name="email")``.
    """
    where = _where(1)
    frame = _open_frame("'@step'", where)
    if isinstance(routes, str | End):
        route_names: tuple[str | End, ...] = (routes,)
    else:
        try:
            route_names = tuple(routes)
        except TypeError:
            msg = (
                f"workflow {frame.workflow!r} ({where}): routes= takes a step name, END, or a "
                f"tuple of them, got {routes!r}; write routes=('retry', END)"
            )
            raise DefinitionError(msg) from None

    def record(target: Callable[P, R]) -> Callable[P, R]:
        if not callable(target):
            msg = (
                f"workflow {frame.workflow!r} ({where}): @step decorates a function, got {target!r}"
            )
            raise DefinitionError(msg)
        frame.children.append(
            StepSpec(
                fn=target,
                name=name if name is not None else getattr(target, "__name__", repr(target)),
                returns=returns,
                retry=retry,
                timeout=timeout,
                compensate=compensate,
                routes=route_names,
                blocking=blocking,
                executor=executor,
                where=where,
            )
        )
        return target

    if fn is not None:
        return record(fn)
    return record


# -- parallel(), sequence() and foreach() ------------------------------------------------

OnError = Literal["fail_fast", "complete_all"]


class _Block:
    """The context manager behind ``with parallel():``, ``with sequence():`` and ``with foreach():``."""

    __slots__ = ("_frame", "_make", "_parent")

    def __init__(self, parent: Frame, kind: str, make: Callable[[tuple[Any, ...]], Any]):
        self._parent = parent
        self._frame = Frame(kind, parent.workflow)
        self._make = make

    def __enter__(self) -> None:
        if current_frame() is not self._parent:
            msg = (
                f"workflow {self._parent.workflow!r}: enter a {self._frame.kind}() block in the "
                f"body where it was created, once"
            )
            raise DefinitionError(msg)
        stack().append(self._frame)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack().pop()
        if exc_type is None:
            self._parent.children.append(self._make(tuple(self._frame.children)))


def parallel(
    *,
    on_error: OnError | None = None,
    into: Callable[..., object] | None = None,
    max_concurrency: int | None = None,
    name: str | None = None,
) -> _Block:
    """``with parallel():`` runs each branch inside it at once and joins them.

    A branch is a step, a ``with sequence(name):`` block, or a nested
    ``parallel``. ``on_error`` is ``"fail_fast"`` (default without `into`) or
    ``"complete_all"`` (default with `into`). Without `into` the block adds
    ``"__results__"`` to the context; with ``into=fn(ctx, results)`` the
    reducer's outcome is applied as a step's would be.
    """
    where = _where(1)
    parent = _open_frame("'with parallel():'", where)
    return _Block(
        parent,
        "parallel",
        lambda children: ParallelSpec(
            name=name,
            children=children,
            on_error=on_error,
            into=into,
            max_concurrency=max_concurrency,
            where=where,
        ),
    )


def sequence(name: str) -> _Block:
    """``with sequence(name):`` groups steps into one branch of a parallel block, run in order."""
    where = _where(1)
    parent = _open_frame("'with sequence():'", where)
    return _Block(
        parent,
        "sequence",
        lambda children: SequenceSpec(name=name, children=children, where=where),
    )


def foreach(
    items: str | Callable[[Any], Iterable[Any]],
    *,
    max_concurrency: int | None = None,
    on_error: OnError | None = None,
    into: Callable[..., object] | None = None,
    name: str | None = None,
) -> _Block:
    """``with foreach(items):`` runs the body inside it once per item, at once, and joins them.

    `items` is a context key or ``fn(ctx)`` returning an iterable, read once
    into a list when the block starts. Each item's body is a sequence on the
    block's snapshot, with ``ctx.item`` and ``ctx.index``; at most
    `max_concurrency` items run at a time. Results are in item order: without
    `into` the block adds ``{name: (Ok(v) | Err(reason), ...)}`` (`name`
    defaults to ``foreach#n``), with ``into=fn(ctx, results)`` the reducer
    gets that tuple. `on_error` is as for `parallel`.
    """
    where = _where(1)
    parent = _open_frame("'with foreach():'", where)
    return _Block(
        parent,
        "foreach",
        lambda children: ForeachSpec(
            items=items,
            name=name,
            children=children,
            on_error=on_error,
            into=into,
            max_concurrency=max_concurrency,
            where=where,
        ),
    )
