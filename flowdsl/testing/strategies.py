"""Hypothesis strategies for flowdsl: results, outcomes, branch results and whole workflows.

Needs `hypothesis` (a test dependency: ``pip install hypothesis``)::

    from hypothesis import given
    from flowdsl.testing import strategies as fst

    @given(fst.workflows())
    def test_every_generated_workflow_runs_as_specified(case):
        case.check(case.run())

* `results` -- ``Ok(value)`` or ``Err(reason)``.
* `outcomes` -- what a step may return: ``ok(...)``, a plain value, ``None``,
  ``error(...)`` and, for the targets you name, ``goto(...)``.
* `branch_results` -- the ``results`` mapping an ``into=`` reducer receives, in
  declaration order.
* `workflows` -- random valid workflows (`WorkflowCase`: steps, parallel and foreach blocks,
  child workflow calls) with the run each must produce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - exercised in a test that hides hypothesis
    msg = (
        "flowdsl.testing.strategies needs hypothesis, a test dependency: "
        "pip install hypothesis (or flowdsl[test]). The rest of flowdsl.testing works without it."
    )
    raise ImportError(msg, name=exc.name) from exc

from .._outcome import Goto, goto
from .._plan import END, End
from ..errors import UsageError
from ..result import Err, Ok
from ._model import (
    BranchShape,
    CallInput,
    CallShape,
    Expected,
    ForeachShape,
    NodeShape,
    OneOf,
    ParallelShape,
    ReducerShape,
    SequenceShape,
    StepMode,
    StepShape,
    WorkflowCase,
    WorkflowShape,
    make_case,
)

__all__ = [
    "Expected",
    "OneOf",
    "WorkflowCase",
    "branch_results",
    "errors",
    "outcomes",
    "results",
    "values",
    "workflows",
]

T = TypeVar("T")

_KEYS = ("a", "b", "c")
_MODES: tuple[StepMode, ...] = ("sync", "async", "agen", "thread")


def values() -> st.SearchStrategy[object]:
    """Small values a step may produce: None, bools, ints, short text, tuples and dicts of them."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.text(max_size=4))
    return st.one_of(
        scalars,
        st.tuples(scalars, scalars),
        st.dictionaries(st.text(min_size=1, max_size=3), scalars, max_size=3),
    )


def errors() -> st.SearchStrategy[object]:
    """Failure reasons: short text, ints, and exception instances."""
    return st.one_of(
        st.text(max_size=6),
        st.integers(0, 99),
        st.builds(
            lambda cls, text: cls(text),
            st.sampled_from([ValueError, RuntimeError, KeyError, TimeoutError]),
            st.text(max_size=6),
        ),
    )


_values = values  # outcomes() has parameters with these names
_errors = errors


def results(
    ok: st.SearchStrategy[T] | None = None, err: st.SearchStrategy[object] | None = None
) -> st.SearchStrategy[Ok[T] | Err[object]]:
    """``Ok(v)`` for `v` drawn from `ok` (default `values`), or ``Err(e)`` for `e` from `err`."""
    ok_values: st.SearchStrategy[Any] = values() if ok is None else ok
    return st.one_of(st.builds(Ok, ok_values), st.builds(Err, errors() if err is None else err))


def outcomes(
    *,
    values: st.SearchStrategy[object] | None = None,
    mappings: st.SearchStrategy[Mapping[str, object]] | None = None,
    errors: st.SearchStrategy[object] | None = None,
    targets: Sequence[str | End] = (),
) -> st.SearchStrategy[object]:
    """Anything a step may return: ``ok(mapping)``, ``ok(value)``, ``ok()``, a plain value,
    ``None``, ``error(reason)``, and ``goto(target[, mapping])`` for each of `targets`
    (none by default: pass step names and/or ``END``).
    """
    plain = _values() if values is None else values
    merged = (
        st.dictionaries(st.sampled_from(_KEYS), st.integers(0, 9), max_size=3)
        if mappings is None
        else mappings
    )
    options: list[st.SearchStrategy[object]] = [
        st.builds(Ok, merged),
        st.builds(Ok, plain),
        st.just(Ok(None)),
        st.none(),
        plain,
        st.builds(Err, _errors() if errors is None else errors),
    ]
    if targets:
        options.append(
            st.builds(
                goto,
                st.sampled_from(tuple(targets)),
                st.one_of(st.none(), merged),
            )
        )
    return st.one_of(options)


def branch_results(
    keys: Sequence[str],
    *,
    ok: st.SearchStrategy[object] | Mapping[str, st.SearchStrategy[object]] | None = None,
    err: st.SearchStrategy[object] | Mapping[str, st.SearchStrategy[object]] | None = None,
) -> st.SearchStrategy[Mapping[str, Ok[object] | Err[object]]]:
    """The ``results`` an ``into=`` reducer receives: key -> ``Ok``/``Err``, in the order of `keys`.

    `ok` and `err` are one strategy for every branch, or a mapping from branch
    key to strategy (branches not in it use the defaults, `values` and
    `errors`). The mapping is read-only, as the engine's is.
    """
    names = tuple(keys)
    if len(set(names)) != len(names) or not all(isinstance(k, str) for k in names):
        msg = f"branch_results() takes distinct branch keys (strings), got {list(names)!r}"
        raise UsageError(msg)
    for label, given in (("ok", ok), ("err", err)):
        if isinstance(given, Mapping):
            extra = [k for k in given if k not in names]
            if extra:
                msg = (
                    f"branch_results({label}=...) names {', '.join(map(repr, extra))}, which "
                    f"{'is' if len(extra) == 1 else 'are'} not among the keys "
                    f"{', '.join(map(repr, names))}"
                )
                raise UsageError(msg)

    def pick(
        given: st.SearchStrategy[object] | Mapping[str, st.SearchStrategy[object]] | None,
        key: str,
    ) -> st.SearchStrategy[object] | None:
        if isinstance(given, Mapping):
            return given.get(key)
        return given

    per_branch = [results(pick(ok, key), pick(err, key)) for key in names]
    return st.tuples(*per_branch).map(
        lambda drawn: MappingProxyType(dict(zip(names, drawn, strict=True)))
    )


# -- whole workflows ---------------------------------------------------------------------------


@attrs.frozen
class _Options:
    """What one ``workflows()`` strategy may draw."""

    modes: tuple[StepMode, ...]
    max_depth: int
    retries: bool
    foreach: bool
    calls: bool


class _Names:
    """Hands out step, sequence, block and call names, unique within one workflow, and
    collects the items each foreach block reads from the workflow's input."""

    def __init__(self, max_steps: int) -> None:
        self.steps = 0
        self.blocks = 0
        self.sequences = 0
        self.foreachs = 0
        self.calls = 0
        self.left = max_steps
        self.items: dict[str, list[int]] = {}

    def step(self) -> str:
        self.steps += 1
        self.left -= 1
        return f"s{self.steps}"

    def block(self) -> str:
        self.blocks += 1
        return f"p{self.blocks}"

    def sequence(self) -> str:
        self.sequences += 1
        return f"q{self.sequences}"

    def foreach(self) -> str:
        self.foreachs += 1
        return f"f{self.foreachs}"

    def call(self) -> str:
        self.calls += 1
        self.left -= 1
        return f"c{self.calls}"


_STEP_KINDS = ("ok_merge", "ok_value", "ok_empty", "none", "plain", "echo", "error", "raise")
_ITEM_KINDS = ("item", "item", "item", "fail_odd", "fail_odd")
"""Inside a foreach body, about a third of the steps use the item."""
_LATER = "<a later top-level step>"


def _draw_step(
    draw: st.DrawFn, names: _Names, options: _Options, top: bool, in_each: bool
) -> StepShape:
    name = names.step()
    kinds = (*_STEP_KINDS, "goto") if top else _STEP_KINDS
    kind = draw(st.sampled_from((*kinds, *_ITEM_KINDS) if in_each else kinds))
    small = st.one_of(st.integers(0, 9), st.text("xyz", max_size=2))
    mapping = st.dictionaries(st.sampled_from(_KEYS), st.integers(0, 9), max_size=2)
    outcome: object
    if kind == "ok_merge":
        outcome = Ok(draw(mapping))
    elif kind == "ok_value":
        outcome = Ok(draw(st.one_of(small, st.tuples(small, small))))
    elif kind == "ok_empty":
        outcome = Ok(None)
    elif kind == "none" or kind == "echo":
        outcome = None
    elif kind == "plain":
        outcome = draw(st.one_of(small, mapping))
    elif kind == "error":
        outcome = Err(draw(small))
    elif kind == "raise":
        outcome = draw(
            st.builds(
                lambda cls, n: cls(f"{name} broke {n}"),
                st.sampled_from([ValueError, RuntimeError, KeyError]),
                st.integers(0, 9),
            )
        )
    elif kind == "goto":
        outcome = Goto(_LATER, draw(mapping))  # target drawn once the later steps exist
    else:
        outcome = None  # "item" and "fail_odd" compute theirs from ctx.item
    modes = options.modes
    usable = modes
    if kind == "plain" and isinstance(outcome, Mapping):
        # An async generator's last item is its outcome; a plain mapping would be merged.
        usable = tuple(m for m in modes if m != "agen") or ("sync",)
    mode = draw(st.sampled_from(usable))
    returns = draw(st.sampled_from((None, f"{name}_out")))
    attempts, fails_first = 1, 0
    if options.retries:
        attempts = draw(st.integers(1, 3))
        flaky = draw(st.sampled_from(("steady", "steady", "recovers", "gives_up")))
        if flaky == "gives_up":
            fails_first = attempts
        elif flaky == "recovers" and attempts > 1:
            fails_first = draw(st.integers(1, attempts - 1))
    return StepShape(name, kind, outcome, mode, returns, attempts, fails_first)


def _draw_into(draw: st.DrawFn, name: str, top: bool) -> ReducerShape | None:
    reducer_kinds = ["summary", "all_or_error", "values"] + (["route"] if top else [])
    reducer = draw(st.sampled_from([None, *reducer_kinds]))
    if reducer is None:
        return None
    target = _LATER if reducer == "route" else None
    return ReducerShape(reducer, name, target, draw(st.booleans()))  # type: ignore[arg-type]


def _draw_parallel(
    draw: st.DrawFn, names: _Names, options: _Options, depth: int, top: bool, in_each: bool
) -> ParallelShape:
    name = names.block()
    branches: list[BranchShape] = []
    for _ in range(draw(st.integers(1, 3))):
        if branches and names.left <= 0:
            break
        kinds = ["step"] * 2 + ["sequence"] * 2  # weights as in _draw_nodes
        if depth < options.max_depth:
            kinds.append("parallel")
            if options.foreach:
                kinds.append("foreach")
        if options.calls:
            kinds.append("call")
        kind = draw(st.sampled_from(kinds))
        if kind == "step" or names.left < 2:
            branches.append(_draw_step(draw, names, options, False, in_each))
        elif kind == "sequence":
            seq_name = names.sequence()
            children = _draw_nodes(draw, names, options, depth + 1, False, in_each)
            branches.append(SequenceShape(seq_name, tuple(children)))
        elif kind == "parallel":
            branches.append(_draw_parallel(draw, names, options, depth + 1, False, in_each))
        elif kind == "foreach":
            branches.append(_draw_foreach(draw, names, options, depth + 1, False))
        else:
            branches.append(_draw_call(draw, names, options, in_each))
    return ParallelShape(
        name,
        tuple(branches),
        on_error=draw(st.sampled_from([None, "fail_fast", "complete_all"])),
        into=_draw_into(draw, name, top),
        max_concurrency=draw(st.sampled_from([None, 1, 2])),
    )


def _draw_foreach(
    draw: st.DrawFn, names: _Names, options: _Options, depth: int, top: bool
) -> ForeachShape:
    """A foreach block over a list of 0..3 small ints that the workflow's input holds."""
    name = names.foreach()
    items = f"{name}_items"
    names.items[items] = draw(st.lists(st.integers(0, 5), max_size=3))
    body = _draw_nodes(draw, names, options, depth + 1, False, True)
    return ForeachShape(
        name,
        items,
        tuple(body),
        on_error=draw(st.sampled_from([None, "fail_fast", "complete_all"])),
        # Half without into=: the results tuple itself then lands in the output.
        into=_draw_into(draw, name, top) if draw(st.booleans()) else None,
        max_concurrency=draw(st.sampled_from([None, 1, 2])),
    )


def _draw_call(draw: st.DrawFn, names: _Names, options: _Options, in_each: bool) -> CallShape:
    """A call of a small generated child workflow (steps and parallel blocks, no calls)."""
    name = names.call()
    child_options = attrs.evolve(
        options, max_depth=min(options.max_depth, 1), foreach=False, calls=False
    )
    child_names = _Names(draw(st.integers(1, 3)))
    child = _aim(draw, _draw_nodes(draw, child_names, child_options, 0, True, False))
    inputs: list[CallInput] = ["none", "fixed", "pick"]
    if in_each:
        inputs.append("pick_item")
    kind = draw(st.sampled_from(inputs))
    data = (
        draw(st.dictionaries(st.sampled_from(_KEYS), st.integers(0, 9), max_size=2))
        if kind == "fixed"
        else {}
    )
    return CallShape(
        name,
        child,
        kind,
        data,
        returns=draw(st.sampled_from((None, f"{name}_out"))),
        attempts=draw(st.integers(1, 2)) if options.retries else 1,
    )


def _draw_nodes(
    draw: st.DrawFn, names: _Names, options: _Options, depth: int, top: bool, in_each: bool
) -> list[NodeShape]:
    nodes: list[NodeShape] = []
    for _ in range(draw(st.integers(1, 4))):
        if nodes and names.left <= 0:
            break
        kinds = ["step"] * 3  # weights: steps 3, each kind of block 2, calls 1
        if depth < options.max_depth and names.left >= 2:
            kinds += ["parallel"] * 2
            if options.foreach:
                kinds += ["foreach"] * 2
        if options.calls:
            kinds.append("call")
        kind = draw(st.sampled_from(kinds))
        if kind == "step":
            nodes.append(_draw_step(draw, names, options, top, in_each))
        elif kind == "parallel":
            nodes.append(_draw_parallel(draw, names, options, depth, top, in_each))
        elif kind == "foreach":
            nodes.append(_draw_foreach(draw, names, options, depth, top))
        else:
            nodes.append(_draw_call(draw, names, options, in_each))
    return nodes


def _aim(draw: st.DrawFn, nodes: list[NodeShape]) -> tuple[NodeShape, ...]:
    """Give each top-level goto and routing reducer a target: a later top-level step or
    call, or END."""
    aimed: list[NodeShape] = []
    for index, node in enumerate(nodes):
        later: list[str | End] = [
            n.name for n in nodes[index + 1 :] if isinstance(n, StepShape | CallShape)
        ]
        if isinstance(node, StepShape) and isinstance(node.outcome, Goto):
            target = draw(st.sampled_from([*later, END]))
            node = StepShape(
                node.name,
                node.kind,
                goto(target, node.outcome.update),
                node.mode,
                node.returns,
                node.attempts,
                node.fails_first,
            )
        elif (
            isinstance(node, ParallelShape | ForeachShape)
            and node.into is not None
            and node.into.kind == "route"
        ):
            target = draw(st.sampled_from([*later, END]))
            into = ReducerShape("route", node.name, target, node.into.is_async)
            node = attrs.evolve(node, into=into)
        aimed.append(node)
    return tuple(aimed)


@st.composite
def _workflows(draw: st.DrawFn, max_steps: int, options: _Options) -> WorkflowCase:
    names = _Names(max_steps)
    nodes = _aim(draw, _draw_nodes(draw, names, options, 0, True, False))
    data = draw(st.dictionaries(st.sampled_from(("a", "b", "in")), st.integers(0, 9), max_size=2))
    return make_case(WorkflowShape(nodes, {**data, **names.items}))


def workflows(
    *,
    max_steps: int = 8,
    max_depth: int = 2,
    modes: Sequence[StepMode] = _MODES,
    retries: bool = True,
    foreach: bool = True,
    calls: bool = True,
) -> st.SearchStrategy[WorkflowCase]:
    """Random valid workflows, each a `WorkflowCase` ready to ``.run()`` and ``.check(run)``.

    A workflow has up to about `max_steps` steps in a top-level sequence and
    parallel and foreach blocks nested up to `max_depth` deep (branches are
    steps, sequences, blocks or calls), with every ``on_error`` policy,
    ``max_concurrency`` and a few deterministic ``into=`` reducers. Steps are
    sync, async, async generators or blocking (`modes` picks among "sync",
    "async", "agen", "thread"); each returns a random outcome (``ok`` of a
    mapping or a value, a plain value, ``None``, ``error``, a raised
    exception, a copy of the keys it sees, or a forward ``goto``) and, with
    `retries`, may fail its first attempts under a ``Retry`` policy without
    delay.

    With `foreach`, blocks ``with foreach("<block>_items"):`` go over a list
    of 0 to 3 small ints that the workflow's input holds; their body steps may
    also use ``ctx.item`` and ``ctx.index`` (and fail for odd items). With
    `calls`, ``call_workflow`` nodes run a small generated child workflow
    (steps and parallel blocks, with its own gotos and retries), called with
    no input, a fixed mapping, or a function of the context (and of
    ``ctx.item`` inside a foreach), each call with or without ``returns=``
    and a retry policy.

    ``case.expected`` is the run it must produce (status, output, failed step,
    error), computed by a reference interpreter of flowdsl's semantics; ``case.check(run)``
    compares. Each workflow has a fresh name and is not left in the registry.
    """
    chosen = tuple(modes)
    if not chosen or any(m not in _MODES for m in chosen):
        msg = f"workflows(modes=...) takes some of {', '.join(map(repr, _MODES))}, got {chosen!r}"
        raise UsageError(msg)
    if max_steps < 1 or max_depth < 0:
        msg = f"workflows() needs max_steps >= 1 and max_depth >= 0, got {max_steps}, {max_depth}"
        raise UsageError(msg)
    return _workflows(max_steps, _Options(chosen, max_depth, retries, foreach, calls))
