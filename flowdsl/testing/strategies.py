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
* `workflows` -- random valid workflows (`WorkflowCase`) with the run each must produce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

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
    Expected,
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


class _Names:
    """Hands out step, sequence and block names, unique within one workflow."""

    def __init__(self, max_steps: int) -> None:
        self.steps = 0
        self.blocks = 0
        self.sequences = 0
        self.left = max_steps

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


_STEP_KINDS = ("ok_merge", "ok_value", "ok_empty", "none", "plain", "echo", "error", "raise")
_LATER = "<a later top-level step>"


def _draw_step(
    draw: st.DrawFn, names: _Names, modes: tuple[StepMode, ...], top: bool, retries: bool
) -> StepShape:
    name = names.step()
    kind = draw(st.sampled_from((*_STEP_KINDS, "goto") if top else _STEP_KINDS))
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
    else:
        outcome = Goto(_LATER, draw(mapping))  # target drawn once the later steps exist
    usable = modes
    if kind == "plain" and isinstance(outcome, Mapping):
        # An async generator's last item is its outcome; a plain mapping would be merged.
        usable = tuple(m for m in modes if m != "agen") or ("sync",)
    mode = draw(st.sampled_from(usable))
    returns = draw(st.sampled_from((None, f"{name}_out")))
    attempts, fails_first = 1, 0
    if retries:
        attempts = draw(st.integers(1, 3))
        flaky = draw(st.sampled_from(("steady", "steady", "recovers", "gives_up")))
        if flaky == "gives_up":
            fails_first = attempts
        elif flaky == "recovers" and attempts > 1:
            fails_first = draw(st.integers(1, attempts - 1))
    return StepShape(name, kind, outcome, mode, returns, attempts, fails_first)  # type: ignore[arg-type]


def _draw_parallel(
    draw: st.DrawFn,
    names: _Names,
    modes: tuple[StepMode, ...],
    depth: int,
    max_depth: int,
    top: bool,
    retries: bool,
) -> ParallelShape:
    name = names.block()
    branches: list[StepShape | SequenceShape | ParallelShape] = []
    for _ in range(draw(st.integers(1, 3))):
        if branches and names.left <= 0:
            break
        kinds = ["step", "sequence"] + (["parallel"] if depth < max_depth else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "step" or names.left < 2:
            branches.append(_draw_step(draw, names, modes, False, retries))
        elif kind == "sequence":
            seq_name = names.sequence()
            children = _draw_nodes(draw, names, modes, depth + 1, max_depth, False, retries)
            branches.append(SequenceShape(seq_name, tuple(children)))
        else:
            branches.append(
                _draw_parallel(draw, names, modes, depth + 1, max_depth, False, retries)
            )
    reducer_kinds = ["summary", "all_or_error", "values"] + (["route"] if top else [])
    reducer = draw(st.sampled_from([None, *reducer_kinds]))
    into = (
        ReducerShape(reducer, name, _LATER if reducer == "route" else None, draw(st.booleans()))  # type: ignore[arg-type]
        if reducer is not None
        else None
    )
    return ParallelShape(
        name,
        tuple(branches),
        on_error=draw(st.sampled_from([None, "fail_fast", "complete_all"])),
        into=into,
        max_concurrency=draw(st.sampled_from([None, 1, 2])),
    )


def _draw_nodes(
    draw: st.DrawFn,
    names: _Names,
    modes: tuple[StepMode, ...],
    depth: int,
    max_depth: int,
    top: bool,
    retries: bool,
) -> list[StepShape | ParallelShape]:
    nodes: list[StepShape | ParallelShape] = []
    for _ in range(draw(st.integers(1, 4))):
        if nodes and names.left <= 0:
            break
        kinds = ["step"] + (["parallel"] if depth < max_depth and names.left >= 2 else [])
        if draw(st.sampled_from(kinds)) == "step":
            nodes.append(_draw_step(draw, names, modes, top, retries))
        else:
            nodes.append(_draw_parallel(draw, names, modes, depth, max_depth, top, retries))
    return nodes


def _aim(
    draw: st.DrawFn, nodes: list[StepShape | ParallelShape]
) -> tuple[StepShape | ParallelShape, ...]:
    """Give each top-level goto and routing reducer a target: a later top-level step or END."""
    aimed: list[StepShape | ParallelShape] = []
    for index, node in enumerate(nodes):
        later: list[str | End] = [n.name for n in nodes[index + 1 :] if isinstance(n, StepShape)]
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
            isinstance(node, ParallelShape) and node.into is not None and node.into.kind == "route"
        ):
            target = draw(st.sampled_from([*later, END]))
            into = ReducerShape("route", node.name, target, node.into.is_async)
            node = ParallelShape(
                node.name, node.branches, node.on_error, into, node.max_concurrency
            )
        aimed.append(node)
    return tuple(aimed)


@st.composite
def _workflows(
    draw: st.DrawFn,
    max_steps: int,
    max_depth: int,
    modes: tuple[StepMode, ...],
    retries: bool,
) -> WorkflowCase:
    names = _Names(max_steps)
    nodes = _aim(draw, _draw_nodes(draw, names, modes, 0, max_depth, True, retries))
    data = draw(st.dictionaries(st.sampled_from(("a", "b", "in")), st.integers(0, 9), max_size=2))
    return make_case(WorkflowShape(nodes, data))


def workflows(
    *,
    max_steps: int = 8,
    max_depth: int = 2,
    modes: Sequence[StepMode] = _MODES,
    retries: bool = True,
) -> st.SearchStrategy[WorkflowCase]:
    """Random valid workflows, each a `WorkflowCase` ready to ``.run()`` and ``.check(run)``.

    A workflow has up to about `max_steps` steps in a top-level sequence and
    parallel blocks nested up to `max_depth` deep (branches are steps,
    sequences or blocks), with every ``on_error`` policy, ``max_concurrency``
    and a few deterministic ``into=`` reducers. Steps are sync, async, async
    generators or blocking (`modes` picks among "sync", "async", "agen",
    "thread"); each returns a random outcome (``ok`` of a mapping or a value,
    a plain value, ``None``, ``error``, a raised exception, a copy of the keys
    it sees, or a forward ``goto``) and, with `retries`, may fail its first
    attempts under a ``Retry`` policy without delay.

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
    return _workflows(max_steps, max_depth, chosen, retries)
