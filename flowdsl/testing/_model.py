"""Generated workflows: their shape, how to build them, and the run each must produce.

`flowdsl.testing.strategies.workflows()` draws a `WorkflowShape`. This module
records it as a real `Workflow` (through the public DSL), and computes the
expected run with a small reference interpreter written from the documented
semantics (outcomes, snapshots for parallel branches, ``__results__``,
``into`` reducers, fail-fast vs complete-all, forward goto, retries, foreach
bodies run once per item on the block's snapshot with results in item order
and step names carrying the item's index, child workflows whose output is
stored under the call's key and whose failure is the call's).

Where the result depends on timing (which failing branch of a fail-fast block
or which failing item of a fail-fast foreach is reported first), the
expectation is a `OneOf` the check accepts any of. This module imports no
hypothesis.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs

from .._define import _registry
from .._define._calls import call_workflow
from .._define._dsl import foreach, parallel, sequence, step
from .._engine._run import Run
from .._outcome import Goto, goto
from .._plan import END, End, Retry
from .._workflow import Workflow, workflow
from ..result import Err, Ok

__all__ = [
    "FLAKY",
    "CallShape",
    "Expected",
    "ForeachShape",
    "OneOf",
    "ParallelShape",
    "ReducerShape",
    "SequenceShape",
    "StepShape",
    "WorkflowCase",
    "WorkflowShape",
    "make_case",
    "matches",
]

FLAKY: Final = "flaky attempt"
"""The error of the attempts a generated step fails before its outcome."""

_RESULTS: Final = "__results__"
_NAMES = itertools.count(1)

StepMode: TypeAlias = Literal["sync", "async", "agen", "thread"]
StepKind: TypeAlias = Literal[
    "ok_merge",
    "ok_value",
    "ok_empty",
    "none",
    "plain",
    "echo",
    "error",
    "raise",
    "goto",
    "item",
    "fail_odd",
]
CallInput: TypeAlias = Literal["none", "fixed", "pick", "pick_item"]
ReducerKind: TypeAlias = Literal["summary", "all_or_error", "values", "route"]
OnError: TypeAlias = Literal["fail_fast", "complete_all"]


@attrs.frozen
class OneOf:
    """Any one of `options`: a result that depends on which failure came first."""

    options: tuple[object, ...]

    def __repr__(self) -> str:
        return "one of (" + ", ".join(map(repr, self.options)) + ")"


def _one_of(items: list[object]) -> object:
    flat: list[object] = []
    for item in items:
        for option in item.options if isinstance(item, OneOf) else (item,):
            if not any(matches(seen, option) for seen in flat):
                flat.append(option)
    return flat[0] if len(flat) == 1 else OneOf(tuple(flat))


# -- shapes ----------------------------------------------------------------------------


@attrs.frozen
class StepShape:
    """A generated step: what it returns (or raises), how it is called, its retries."""

    name: str
    kind: StepKind
    outcome: object
    """The value returned (an Ok, Err, Goto or plain value) or, for "raise", the exception.

    Two kinds, drawn only inside a foreach body, compute it from the item:
    "item" returns ``ok({"<name>_seen": (ctx.index, ctx.item)})`` and
    "fail_odd" returns ``error("<name> odd <item>")`` for an odd item, else
    ``ok({"<name>_even": item})``.
    """
    mode: StepMode = "sync"
    returns: str | None = None
    attempts: int = 1
    """``Retry(max_attempts=)``; 1 means no retry policy."""
    fails_first: int = 0
    """How many first attempts return ``error(FLAKY)`` before the outcome."""

    @property
    def key(self) -> str:
        return self.returns if self.returns is not None else self.name


@attrs.frozen
class ReducerShape:
    """A generated ``into=`` reducer, one of a few deterministic kinds.

    * ``summary``: ``ok({"<block>_summary": ((key, succeeded), ...)})`` (declaration order)
    * ``all_or_error``: the first ``Err`` as it is, else ``ok({"<block>_count": n})``
    * ``values``: ``ok((keys that succeeded...))``, stored under the block's key
    * ``route``: ``goto(target, {"<block>_routed": True})`` if a branch failed, else ``ok()``
    """

    kind: ReducerKind
    block: str
    target: str | End | None = None
    is_async: bool = False

    def reduce(
        self, results: Mapping[str, Ok[Any] | Err[Any]] | tuple[Ok[Any] | Err[Any], ...]
    ) -> object:
        """The outcome for a parallel block's results (by branch key) or a foreach block's
        (a tuple in item order: the "keys" are then the item indices)."""
        pairs = list(results.items() if isinstance(results, Mapping) else enumerate(results))
        if self.kind == "summary":
            summary = tuple((key, type(result) is Ok) for key, result in pairs)
            return Ok({f"{self.block}_summary": summary})
        failed = [result for _, result in pairs if type(result) is Err]
        if self.kind == "all_or_error":
            return failed[0] if failed else Ok({f"{self.block}_count": len(pairs)})
        if self.kind == "values":
            return Ok(tuple(key for key, result in pairs if type(result) is Ok))
        if failed and self.target is not None:
            return goto(self.target, {f"{self.block}_routed": True})
        return Ok(None)

    def function(self) -> Callable[..., object]:
        """The reducer as the workflow calls it, sync or async."""
        if self.is_async:

            async def reduce_async(ctx: Mapping[str, Any], results: Mapping[str, Any]) -> object:
                return self.reduce(results)

            return reduce_async

        def reduce(ctx: Mapping[str, Any], results: Mapping[str, Any]) -> object:
            return self.reduce(results)

        return reduce

    def __str__(self) -> str:
        target = f" -> {self.target!r}" if self.kind == "route" else ""
        return f"{'async ' if self.is_async else ''}{self.kind}{target}"


@attrs.frozen
class SequenceShape:
    """A generated ``with sequence(name):`` branch."""

    name: str
    children: tuple[NodeShape, ...]

    @property
    def key(self) -> str:
        return self.name


def _fail_fast(on_error: OnError | None, into: ReducerShape | None) -> bool:
    """A block's policy: ``on_error``, else fail_fast without a reducer, complete_all with one."""
    return into is None if on_error is None else on_error == "fail_fast"


@attrs.frozen
class ParallelShape:
    """A generated ``with parallel(name=...):`` block."""

    name: str
    branches: tuple[BranchShape, ...]
    on_error: OnError | None = None
    into: ReducerShape | None = None
    max_concurrency: int | None = None

    @property
    def key(self) -> str:
        return self.name

    @property
    def fail_fast(self) -> bool:
        return _fail_fast(self.on_error, self.into)


@attrs.frozen
class ForeachShape:
    """A generated ``with foreach(items, name=...):`` block, its items a context key's list."""

    name: str
    items: str
    """The context key holding the items (the workflow's input sets it)."""
    body: tuple[NodeShape, ...]
    on_error: OnError | None = None
    into: ReducerShape | None = None
    max_concurrency: int | None = None

    @property
    def key(self) -> str:
        return self.name

    @property
    def fail_fast(self) -> bool:
        return _fail_fast(self.on_error, self.into)


@attrs.frozen
class CallShape:
    """A generated ``call_workflow(child, name=...)``; the child is a generated workflow too.

    `input` says what the child is called with: "none" (no input), "fixed"
    (the mapping `data`), "pick" (``fn(ctx)``: the keys "a", "b", "c" of the
    context that are set) or, inside a foreach body, "pick_item" (those and
    ``"item": ctx.item``).
    """

    name: str
    child: tuple[NodeShape, ...]
    input: CallInput = "none"
    data: Mapping[str, Any] = attrs.field(factory=dict)
    returns: str | None = None
    attempts: int = 1
    """``Retry(max_attempts=)`` of the call; 1 means no retry policy."""

    @property
    def key(self) -> str:
        return self.returns if self.returns is not None else self.name


NodeShape: TypeAlias = StepShape | ParallelShape | ForeachShape | CallShape
BranchShape: TypeAlias = StepShape | SequenceShape | ParallelShape | ForeachShape | CallShape


@attrs.frozen
class WorkflowShape:
    """A generated workflow: its top-level sequence and the input it is run with."""

    nodes: tuple[NodeShape, ...]
    input: Mapping[str, Any] = attrs.field(factory=dict)


# -- building the real workflow -----------------------------------------------------------


def _of_item(shape: StepShape, index: int, item: Any) -> object:
    """The outcome of an "item" or "fail_odd" step for item `item` at `index`."""
    if shape.kind == "item":
        return Ok({f"{shape.name}_seen": (index, item)})
    if item % 2:
        return Err(f"{shape.name} odd {item}")
    return Ok({f"{shape.name}_even": item})


def _step_function(shape: StepShape) -> Callable[..., Any]:
    def outcome(ctx: Mapping[str, Any]) -> object:
        if ctx.attempt <= shape.fails_first:  # type: ignore[attr-defined]
            return Err(FLAKY)
        if shape.kind == "raise":
            if isinstance(shape.outcome, BaseException):
                raise shape.outcome
        elif shape.kind == "echo":
            return tuple(sorted(ctx))
        elif shape.kind in ("item", "fail_odd"):
            return _of_item(shape, ctx.index, ctx.item)  # type: ignore[attr-defined]
        return shape.outcome

    fn: Callable[..., Any]
    if shape.mode == "async":

        async def fn(ctx: Mapping[str, Any]) -> object:
            return outcome(ctx)

    elif shape.mode == "agen":

        async def fn(ctx: Mapping[str, Any]) -> Any:
            yield f"{shape.name} working"
            result = outcome(ctx)
            if type(result) in (Ok, Err, Goto):
                yield result
            elif result is not None:
                yield Ok(result)

    else:

        def fn(ctx: Mapping[str, Any]) -> object:
            return outcome(ctx)

    fn.__name__ = fn.__qualname__ = shape.name
    return fn


_PICKED: Final = ("a", "b", "c")


def _picked(ctx: Mapping[str, Any]) -> dict[str, Any]:
    return {key: ctx[key] for key in _PICKED if key in ctx}


def _call_input(shape: CallShape) -> Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] | None:
    if shape.input == "fixed":
        return dict(shape.data)
    if shape.input == "pick":
        return _picked
    if shape.input == "pick_item":
        return lambda ctx: {**_picked(ctx), "item": ctx.item}
    return None


def _record(nodes: tuple[BranchShape, ...], children: Mapping[str, Workflow]) -> None:
    for node in nodes:
        if isinstance(node, StepShape):
            step(
                _step_function(node),
                name=node.name,
                returns=node.returns,
                retry=(
                    Retry(max_attempts=node.attempts, backoff="constant", base=0.0)
                    if node.attempts > 1
                    else None
                ),
                blocking=node.mode == "thread",
            )
        elif isinstance(node, SequenceShape):
            with sequence(node.name):
                _record(node.children, children)
        elif isinstance(node, ForeachShape):
            with foreach(
                node.items,
                name=node.name,
                on_error=node.on_error,
                into=node.into.function() if node.into is not None else None,
                max_concurrency=node.max_concurrency,
            ):
                _record(node.body, children)
        elif isinstance(node, CallShape):
            call_workflow(
                children[node.name],
                input=_call_input(node),
                returns=node.returns,
                name=node.name,
                retry=(
                    Retry(max_attempts=node.attempts, backoff="constant", base=0.0)
                    if node.attempts > 1
                    else None
                ),
            )
        else:
            with parallel(
                name=node.name,
                on_error=node.on_error,
                into=node.into.function() if node.into is not None else None,
                max_concurrency=node.max_concurrency,
            ):
                _record(node.branches, children)


def _calls(nodes: tuple[BranchShape, ...]) -> list[CallShape]:
    """Every call in `nodes`, at any depth (not inside the children they call)."""
    found: list[CallShape] = []
    for node in nodes:
        if isinstance(node, CallShape):
            found.append(node)
        elif isinstance(node, SequenceShape):
            found.extend(_calls(node.children))
        elif isinstance(node, ParallelShape):
            found.extend(_calls(node.branches))
        elif isinstance(node, ForeachShape):
            found.extend(_calls(node.body))
    return found


def _build(name: str, shape: WorkflowShape) -> Workflow:
    """Record `shape` as workflow `name`, and each child it calls as ``<name>_<call>``.

    None is left in the registry: the calls hold their child workflows as
    objects, which the engine runs when no workflow of that name is registered.
    """
    children = {
        call.name: _build(f"{name}_{call.name}", WorkflowShape(call.child))
        for call in _calls(shape.nodes)
    }

    def body() -> None:
        _record(shape.nodes, children)

    wf = workflow(name)(body)
    _registry.unregister(name)  # runnable through the object; never clashes by name
    return wf


# -- the reference interpreter -------------------------------------------------------------


class _Failure(Exception):
    def __init__(self, step: object, reason: object) -> None:
        super().__init__(step, reason)
        self.step = step
        self.reason = reason


class _Scope:
    """A parent snapshot plus this scope's own writes (like the engine's `Scope`)."""

    def __init__(self, parent: Mapping[str, Any], own: dict[str, Any] | None = None) -> None:
        self.parent = parent
        self.own: dict[str, Any] = own if own is not None else {}

    def view(self) -> dict[str, Any]:
        return {**self.parent, **self.own}

    def apply(self, key: str, outcome: object) -> str | End | None:
        kind = type(outcome)
        if kind is Ok:
            value = outcome.value  # type: ignore[attr-defined]
            if isinstance(value, Mapping):
                self.own.update(value)
            elif value is not None:
                self.own[key] = value
            return None
        if kind is Goto:
            self.own.update(outcome.update)  # type: ignore[attr-defined]
            return outcome.target  # type: ignore[attr-defined, no-any-return]
        if outcome is not None:
            self.own[key] = outcome
        return None


@attrs.frozen
class _Item:
    """The foreach item a node runs for: what ``ctx.index`` and ``ctx.item`` are there, and
    the suffix its name gets (``[i]``, ``[i][j]`` when nested)."""

    index: int
    item: Any
    suffix: str


def _suffix(each: _Item | None) -> str:
    return "" if each is None else each.suffix


def _final(shape: StepShape, ctx: Mapping[str, Any], each: _Item | None) -> object:
    """A step's final successful outcome after its retries, or `_Failure`."""
    name = shape.name + _suffix(each)
    if shape.fails_first >= shape.attempts:
        raise _Failure(name, FLAKY)
    if shape.kind == "raise":
        raise _Failure(name, shape.outcome)
    if shape.kind == "error":
        raise _Failure(name, shape.outcome.error)  # type: ignore[attr-defined]
    if shape.kind == "echo":
        return tuple(sorted(ctx))
    if shape.kind in ("item", "fail_odd"):
        assert each is not None, "item steps are drawn inside foreach bodies only"
        outcome = _of_item(shape, each.index, each.item)
        if type(outcome) is Err:
            raise _Failure(name, outcome.error)
        return outcome
    return shape.outcome


def _node(shape: NodeShape, scope: _Scope, each: _Item | None) -> str | End | None:
    """Run one node of a sequence in `scope`; returns the goto route it took, if any."""
    if isinstance(shape, StepShape):
        return scope.apply(shape.key, _final(shape, scope.view(), each))
    if isinstance(shape, CallShape):
        return scope.apply(shape.key, Ok({shape.key: _call(shape, scope.view(), each)}))
    if isinstance(shape, ForeachShape):
        return _foreach(shape, scope, each)
    return _parallel(shape, scope, each)


def _call(shape: CallShape, ctx: Mapping[str, Any], each: _Item | None) -> Mapping[str, Any]:
    """The child run's output (its final context), or `_Failure` with the child's error."""
    data: Mapping[str, Any] = {}
    if shape.input == "fixed":
        data = shape.data
    elif shape.input in ("pick", "pick_item"):
        data = _picked(ctx)
        if shape.input == "pick_item":
            assert each is not None, "pick_item is drawn inside foreach bodies only"
            data = {**data, "item": each.item}
    child = _expect(WorkflowShape(shape.child, data))
    if child.status == "failed":
        raise _Failure(shape.name + _suffix(each), child.error)
    return child.output


def _branch(shape: BranchShape, snapshot: Mapping[str, Any], each: _Item | None) -> object:
    if isinstance(shape, StepShape):
        outcome = _final(shape, snapshot, each)
        return outcome.value if type(outcome) is Ok else outcome
    if isinstance(shape, CallShape):
        return {shape.key: _call(shape, snapshot, each)}
    own = _Scope(snapshot)
    for child in shape.children if isinstance(shape, SequenceShape) else (shape,):
        _node(child, own, each)
    return own.own


def _settle(
    shape: ParallelShape | ForeachShape,
    scope: _Scope,
    each: _Item | None,
    results: Mapping[str, Ok[Any] | Err[Any]] | tuple[Ok[Any] | Err[Any], ...],
    failures: list[_Failure],
) -> str | End | None:
    """What parallel and foreach blocks share once every branch or item has run."""
    if failures and shape.fail_fast:
        raise _Failure(_one_of([f.step for f in failures]), _one_of([f.reason for f in failures]))
    if shape.into is None:
        scope.own[_RESULTS if isinstance(shape, ParallelShape) else shape.key] = results
        return None
    outcome = shape.into.reduce(results)
    if type(outcome) is Err:
        raise _Failure(shape.name + _suffix(each), outcome.error)
    return scope.apply(shape.key, outcome)


def _parallel(shape: ParallelShape, scope: _Scope, each: _Item | None) -> str | End | None:
    snapshot = scope.view()
    results: dict[str, Ok[Any] | Err[Any]] = {}
    failures: list[_Failure] = []
    for branch in shape.branches:
        try:
            value = _branch(branch, snapshot, each)
        except _Failure as failure:
            failures.append(failure)
            results[branch.key] = Err(failure.reason)
        else:
            results[branch.key] = Ok(value)
    return _settle(shape, scope, each, results, failures)


def _foreach(shape: ForeachShape, scope: _Scope, each: _Item | None) -> str | End | None:
    """Each item's body on the block's snapshot, in item order (what order they finish in
    does not change the results; a fail-fast block's first failure may be any item's)."""
    snapshot = scope.view()
    results: list[Ok[Any] | Err[Any]] = []
    failures: list[_Failure] = []
    for index, item in enumerate(snapshot[shape.items]):
        here = _Item(index, item, f"{_suffix(each)}[{index}]")
        own = _Scope(snapshot)
        try:
            for child in shape.body:
                _node(child, own, here)
        except _Failure as failure:
            failures.append(failure)
            results.append(Err(failure.reason))
        else:
            results.append(Ok(own.own))
    return _settle(shape, scope, each, tuple(results), failures)


@attrs.frozen
class Expected:
    """The run a generated workflow must produce.

    ``failed_step`` and ``error`` are None for a completed run; any of them may
    be a `OneOf` when a fail-fast block has several failing branches.
    """

    status: Literal["completed", "failed"]
    output: Mapping[str, Any]
    failed_step: object = None
    error: object = None


def _expect(shape: WorkflowShape) -> Expected:
    scope = _Scope({}, dict(shape.input))
    nodes = shape.nodes
    targets = {
        node.name: i for i, node in enumerate(nodes) if isinstance(node, StepShape | CallShape)
    }
    index = 0
    try:
        while index < len(nodes):
            route = _node(nodes[index], scope, None)
            if route is None:
                index += 1
            elif route is END:
                break
            else:
                index = targets[route]
    except _Failure as failure:
        return Expected("failed", scope.own, failure.step, failure.reason)
    return Expected("completed", scope.own)


# -- comparing -------------------------------------------------------------------------------


def matches(expected: object, actual: object, *, ordered: bool = False) -> bool:
    """True when `actual` is what `expected` describes (a `OneOf` accepts any option).

    Mappings compare without regard to order, except ``__results__`` (declaration
    order is part of the contract); lists and tuples in order. Exceptions
    compare by identity.
    """
    if isinstance(expected, OneOf):
        return any(matches(option, actual, ordered=ordered) for option in expected.options)
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping) or set(expected) != set(actual):
            return False
        if ordered and list(expected) != list(actual):
            return False
        return all(
            matches(value, actual[key], ordered=key == _RESULTS) for key, value in expected.items()
        )
    if type(expected) is Ok:
        return type(actual) is Ok and matches(expected.value, actual.value)
    if type(expected) is Err:
        return type(actual) is Err and matches(expected.error, actual.error)
    if type(expected) is tuple or type(expected) is list:
        # A list in the context reads as a list, frozen (a list subclass); a tuple stays one.
        same_kind = type(actual) is tuple if type(expected) is tuple else isinstance(actual, list)
        return (
            same_kind
            and len(expected) == len(actual)  # type: ignore[arg-type]
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))  # type: ignore[call-overload]
        )
    if isinstance(expected, BaseException):
        return actual is expected
    return type(expected) is type(actual) and bool(expected == actual)


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


# -- describing -----------------------------------------------------------------------------


def _describe_step(shape: StepShape) -> str:
    notes: list[str] = [shape.mode]
    if shape.returns is not None:
        notes.append(f"returns={shape.returns!r}")
    if shape.attempts > 1:
        notes.append(f"retry {shape.attempts}")
    if shape.fails_first:
        notes.append(f"first {shape.fails_first} attempt(s) fail")
    if shape.kind == "raise":
        what = f"raise {shape.outcome!r}"
    elif shape.kind == "echo":
        what = "the sorted keys of ctx"
    elif shape.kind == "item":
        what = f"ok({{{shape.name + '_seen'!r}: (ctx.index, ctx.item)}})"
    elif shape.kind == "fail_odd":
        what = f"error for an odd ctx.item, else ok({{{shape.name + '_even'!r}: ctx.item}})"
    else:
        what = repr(shape.outcome)
    return f"step {shape.name} [{', '.join(notes)}]: {what}"


def _options(node: ParallelShape | ForeachShape) -> str:
    options = ["fail_fast" if node.fail_fast else "complete_all"]
    if node.into is not None:
        options.append(f"into={node.into}")
    if node.max_concurrency is not None:
        options.append(f"max_concurrency={node.max_concurrency}")
    return ", ".join(options)


def _describe(nodes: tuple[BranchShape, ...], depth: int) -> list[str]:
    pad = "    " * depth
    lines: list[str] = []
    for node in nodes:
        if isinstance(node, StepShape):
            lines.append(pad + _describe_step(node))
        elif isinstance(node, SequenceShape):
            lines.append(f"{pad}sequence {node.name}:")
            lines.extend(_describe(node.children, depth + 1))
        elif isinstance(node, ForeachShape):
            lines.append(f"{pad}foreach {node.name} over {node.items!r} ({_options(node)}):")
            lines.extend(_describe(node.body, depth + 1))
        elif isinstance(node, CallShape):
            notes = [f"input {dict(node.data)!r}" if node.input == "fixed" else node.input]
            if node.returns is not None:
                notes.append(f"returns={node.returns!r}")
            if node.attempts > 1:
                notes.append(f"retry {node.attempts}")
            lines.append(f"{pad}call {node.name} [{', '.join(notes)}], a child workflow of:")
            lines.extend(_describe(node.child, depth + 1))
        else:
            lines.append(f"{pad}parallel {node.name} ({_options(node)}):")
            lines.extend(_describe(node.branches, depth + 1))
    return lines


# -- the case handed to users -------------------------------------------------------------------


@attrs.frozen(eq=False, repr=False)
class WorkflowCase:
    """A generated workflow, ready to run, with the run it must produce.

    ``case.run()`` / ``await case.arun()`` run it with its input (any run
    option passes through); ``case.check(run)`` raises `AssertionError` with
    the workflow drawn as text when the run is not what ``case.expected`` says.
    The workflow is not left in the registry: run it through the case or
    ``case.workflow``.
    """

    workflow: Workflow
    shape: WorkflowShape
    expected: Expected

    @property
    def input(self) -> Mapping[str, Any]:
        return self.shape.input

    def run(self, **options: Any) -> Run:
        """Run the workflow with its input (see `run_workflow` for options)."""
        return self.workflow.run(dict(self.shape.input), **options)

    async def arun(self, **options: Any) -> Run:
        """Run the workflow with its input on the running loop (see `arun_workflow`)."""
        return await self.workflow.arun(dict(self.shape.input), **options)

    def check(self, run: Run) -> None:
        """Raise `AssertionError` unless `run` is the run this workflow must produce."""
        expected = self.expected
        problems: list[str] = []
        if run.status != expected.status:
            got = repr(run.status)
            if run.status == "failed":
                got += f" (step {run.failed_step!r} failed: {run.error!r})"
            problems.append(f"status: expected {expected.status!r}, got {got}")
        else:
            if not matches(expected.failed_step, run.failed_step):
                problems.append(
                    f"failed_step: expected {expected.failed_step!r}, got {run.failed_step!r}"
                )
            if not matches(expected.error, run.error):
                problems.append(f"error: expected {expected.error!r}, got {run.error!r}")
            if not matches(expected.output, run.output):
                problems.append(
                    f"output: expected {dict(expected.output)!r}, got {_plain(run.output)!r}"
                )
        if problems:
            raise AssertionError(f"{self!r}\n" + "\n".join(problems))

    def __repr__(self) -> str:
        head = f"workflow {self.workflow.name!r}, input {dict(self.shape.input)!r}:"
        return "\n".join([head, *_describe(self.shape.nodes, 1)])


def make_case(shape: WorkflowShape) -> WorkflowCase:
    """Build the workflow drawn as `shape` under a fresh name, with its expected run."""
    name = f"flowdsl_generated_{next(_NAMES)}"
    return WorkflowCase(_build(name, shape), shape, _expect(shape))
