"""RECORD: `@workflow`, `@step`, `parallel()` and `sequence()`.

Recording runs no user step. `@workflow` calls the body once; the decorators
and blocks inside it append frozen specs to the open frame of `_registry`.
When the body returns, the spec tree is compiled (all validation happens in
`_compiler`), and the workflow is registered under its name.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, overload

from . import _registry
from ._compiler import arity_problem, compile_workflow
from ._spec import End, ParallelSpec, Retry, SequenceSpec, StepSpec, Where, WorkflowSpec
from ._workflow import Workflow
from .errors import DefinitionError

__all__ = ["parallel", "sequence", "step", "workflow"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_TRANSITIONS = 10_000


def _where(depth: int) -> Where:
    frame = sys._getframe(depth + 1)
    return Where(frame.f_code.co_filename, frame.f_lineno)


def _open_frame(what: str, where: Where) -> _registry.Frame:
    frame = _registry.current_frame()
    if frame is None:
        msg = f"{where}: use {what} inside a @workflow body, not at module level"
        raise DefinitionError(msg)
    return frame


# -- @workflow ---------------------------------------------------------------------


@overload
def workflow(fn: Callable[[], object], /) -> Workflow: ...
@overload
def workflow(
    name: str | None = None,
    /,
    *,
    timeout: float | None = None,
    max_transitions: int = DEFAULT_MAX_TRANSITIONS,
    executor: str | None = None,
) -> Callable[[Callable[[], object]], Workflow]: ...
def workflow(
    fn_or_name: Callable[[], object] | str | None = None,
    /,
    *,
    timeout: float | None = None,
    max_transitions: int = DEFAULT_MAX_TRANSITIONS,
    name: str | None = None,
    executor: str | None = None,
) -> Workflow | Callable[[Callable[[], object]], Workflow]:
    """Declare a workflow: the body is run once, now, to record its steps.

    ``@workflow`` names it after the function; ``@workflow("name", timeout=30,
    max_transitions=10_000, executor="process")`` sets the name and options
    (``executor`` is where steps without an ``executor=`` of their own run;
    ``@step(executor="inline")`` keeps one on the event loop). The returned
    `Workflow` is registered under its name and can be run with
    ``run_workflow(name, input)`` or ``wf.run(input)``.
    """
    if callable(fn_or_name):
        return _define(fn_or_name, name, timeout, max_transitions, executor)
    if fn_or_name is not None and not isinstance(fn_or_name, str):
        msg = f"@workflow takes a name string, got {fn_or_name!r}; write @workflow('my_flow')"
        raise DefinitionError(msg)
    chosen = fn_or_name if fn_or_name is not None else name

    def decorate(body: Callable[[], object]) -> Workflow:
        return _define(body, chosen, timeout, max_transitions, executor)

    return decorate


def _define(
    body: Callable[[], object],
    name: str | None,
    timeout: object,
    max_transitions: object,
    executor: object = None,
) -> Workflow:
    code = getattr(body, "__code__", None)
    where = (
        Where(code.co_filename, code.co_firstlineno) if code is not None else Where("<unknown>", 0)
    )
    wf_name = name if name is not None else getattr(body, "__name__", "workflow")
    if _registry.current_frame() is not None:
        msg = (
            f"workflow {wf_name!r} ({where}): @workflow cannot be nested inside another "
            f"workflow body; define it at module level"
        )
        raise DefinitionError(msg)
    problem = _body_problem(body)
    if problem is not None:
        msg = f"workflow {wf_name!r} ({where}): {problem}"
        raise DefinitionError(msg)
    frame = _registry.Frame("workflow", wf_name)
    with _registry.recording(frame):
        body()
    spec = WorkflowSpec(
        name=wf_name,
        children=tuple(frame.children),
        timeout=timeout,
        max_transitions=max_transitions,
        executor=executor,
        qualname=f"{getattr(body, '__module__', '?')}.{getattr(body, '__qualname__', wf_name)}",
        where=where,
    )
    plan = compile_workflow(spec)
    wf = Workflow(plan)
    _registry.register(wf)
    return wf


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


# -- parallel() and sequence() -----------------------------------------------------------

OnError = Literal["fail_fast", "complete_all"]


class _Block:
    """The context manager behind ``with parallel():`` and ``with sequence():``."""

    __slots__ = ("_frame", "_make", "_parent")

    def __init__(self, parent: _registry.Frame, kind: str, make: Callable[[tuple[Any, ...]], Any]):
        self._parent = parent
        self._frame = _registry.Frame(kind, parent.workflow)
        self._make = make

    def __enter__(self) -> None:
        if _registry.current_frame() is not self._parent:
            msg = (
                f"workflow {self._parent.workflow!r}: enter a {self._frame.kind}() block in the "
                f"body where it was created, once"
            )
            raise DefinitionError(msg)
        _registry._stack().append(self._frame)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _registry._stack().pop()
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
