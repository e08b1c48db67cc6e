"""`check_reducer`: property-test a parallel or foreach block's ``into=`` reducer with hypothesis.

hypothesis is imported when the check runs, so ``import flowdsl.testing``
works without it.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._checks import count_problem, require
from .._engine._context import Context, Scope
from .._outcome import Goto
from .._plan import (
    BlockNode,
    CallNode,
    End,
    ForeachNode,
    Node,
    ParallelNode,
    Plan,
    StepNode,
    WaitNode,
    is_async_callable,
)
from .._running import resolve
from .._workflow import Workflow
from ..errors import UsageError
from ..result import Err, Ok

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["check_reducer"]

_MAX_PATTERNS = 64
"""Up to this many Ok/Err combinations (6 branches, or 0 to 5 items), every one is checked."""


def _blocks(nodes: Sequence[Node]) -> list[BlockNode]:
    """Every parallel and foreach block, in declaration order (outer before inner).

    A call_workflow node is skipped: its child is a workflow of its own, whose
    blocks are checked with ``check_reducer(child)``, never through the parent.
    """
    found: list[BlockNode] = []
    for node in nodes:
        if isinstance(node, StepNode | WaitNode | CallNode):
            continue
        if isinstance(node, ParallelNode | ForeachNode):
            found.append(node)
        found.extend(_blocks(node.children))
    return found


def _enclosing(nodes: Sequence[Node], block: BlockNode, around: str = "") -> str:
    """What holds `block` (not at the top level): "a parallel branch" or "a foreach body"."""
    for node in nodes:
        if node is block:
            return around
        if isinstance(node, StepNode | WaitNode | CallNode):
            continue
        if isinstance(node, ForeachNode):
            inner = "a foreach body"
        elif isinstance(node, ParallelNode):
            inner = "a parallel branch"
        else:  # a sequence: a part of the parallel branch around it
            inner = around
        found = _enclosing(node.children, block, inner)
        if found:
            return found
    return ""


def _kind(block: BlockNode) -> str:
    return "foreach" if isinstance(block, ForeachNode) else "parallel"


def _kinds(blocks: list[BlockNode]) -> str:
    """The kinds of block the workflow has: "parallel", "foreach" or "parallel or foreach"."""
    found = {_kind(b) for b in blocks}
    return " or ".join(k for k in ("parallel", "foreach") if k in found)


def _count(blocks: list[BlockNode]) -> str:
    each = [(k, sum(1 for b in blocks if _kind(b) == k)) for k in ("parallel", "foreach")]
    return " and ".join(f"{n} {k}" for k, n in each if n) + " block(s)"


def _describe(blocks: list[BlockNode]) -> str:
    return ", ".join(
        f"{i}: {'foreach ' if isinstance(b, ForeachNode) else ''}{b.name!r} "
        f"({'into=' + _name(b.into) if b.into else 'no into='})"
        for i, b in enumerate(blocks)
    )


def _name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))


def _find_block(plan: Plan, block: str | int | None) -> BlockNode:
    blocks = _blocks(plan.nodes)
    if not blocks:
        msg = (
            f"check_reducer(): workflow {plan.name!r} has no parallel block or foreach block, "
            f"so no into= reducer to check (a call_workflow's child is checked on its own: "
            f"check_reducer(child))"
        )
        raise UsageError(msg)
    if block is None:
        reducing = [b for b in blocks if b.into is not None]
        if len(reducing) != 1:
            how = "none has an into= reducer" if not reducing else "several have into= reducers"
            msg = (
                f"check_reducer(): workflow {plan.name!r} has {_count(blocks)} and {how}; "
                f"pass block= a name or an index: {_describe(blocks)}"
            )
            raise UsageError(msg)
        return reducing[0]
    if isinstance(block, bool) or not isinstance(block, str | int):
        msg = f"check_reducer(): block= takes a block name or index, got {block!r}"
        raise UsageError(msg)
    if isinstance(block, int):
        if not -len(blocks) <= block < len(blocks):
            msg = (
                f"check_reducer(): workflow {plan.name!r} has no {_kinds(blocks)} block at "
                f"index {block}; its blocks: {_describe(blocks)}"
            )
            raise UsageError(msg)
        chosen = blocks[block]
    else:
        named = [b for b in blocks if block in (b.name, b.key)]
        if not named:
            how = " or ".join(f"{k}(name=...)" for k in _kinds(blocks).split(" or "))
            msg = (
                f"check_reducer(): workflow {plan.name!r} has no {_kinds(blocks)} block named "
                f"{block!r}; its blocks: {_describe(blocks)}. Name one with {how}"
            )
            raise UsageError(msg)
        chosen = named[0]
    if chosen.into is None:
        adds = (
            f"its results tuple under {chosen.key!r}"
            if isinstance(chosen, ForeachNode)
            else "'__results__'"
        )
        msg = (
            f"check_reducer(): {_kind(chosen)} block {chosen.name!r} of workflow {plan.name!r} "
            f"({chosen.where}) has no into= reducer; it adds {adds} instead"
        )
        raise UsageError(msg)
    return chosen


def _settle(outcome: Awaitable[object]) -> object:
    async def wait() -> object:
        return await outcome

    return asyncio.run(wait())


def _problem(outcome: object, plan: Plan, block: BlockNode, allow_plain_values: bool) -> str | None:
    """What is wrong with a reducer's outcome, or None when the engine can apply it."""
    kind = type(outcome)
    if outcome is None or kind is Err:
        return None
    if kind is Ok:
        value = outcome.value  # type: ignore[attr-defined]
        if isinstance(value, Mapping) and not all(isinstance(k, str) for k in value):
            return f"returned {outcome!r}; the keys of a mapping merged into the context must be strings"
        return None
    if kind is Goto:
        target = outcome.target  # type: ignore[attr-defined]
        if block.top_index < 0:
            return (
                f"returned {outcome!r}, but the block is inside {_enclosing(plan.nodes, block)}, "
                f"where a goto is an error; return ok(...) or error(...) there"
            )
        if isinstance(target, End) or target in plan.targets:
            return None
        known = ", ".join([*map(repr, plan.targets), "END"])
        where = (
            "is inside a parallel block"
            if target in plan.steps
            else "is not a step of this workflow"
        )
        return f"returned {outcome!r}, but {target!r} {where}; goto targets: {known}"
    if allow_plain_values:
        return None
    shown = repr(outcome)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return (
        f"returned a plain {kind.__name__} {shown}, which the engine stores under the block's "
        f"key {block.key!r} (a plain mapping is not merged). Return ok(mapping) to merge it "
        f"into the context, ok(value) to store a value, or pass allow_plain_values=True"
    )


def check_reducer(
    workflow: str | Workflow,
    block: str | int | None = None,
    *,
    ok: SearchStrategy[Any] | Mapping[str, SearchStrategy[Any]] | None = None,
    err: SearchStrategy[Any] | Mapping[str, SearchStrategy[Any]] | None = None,
    context: Mapping[str, Any] | SearchStrategy[Mapping[str, Any]] | None = None,
    allow_plain_values: bool = False,
    max_items: int = 4,
    max_examples: int = 100,
) -> None:
    """Check that a block's ``into=`` reducer handles every mix of results it may be handed.

    The reducer is called (never the steps) with ``results`` drawn by
    hypothesis. For a parallel block they are a mapping with an ``Ok`` or
    ``Err`` per branch, tried for each combination (every one for up to six
    branches, random ones beyond). For a foreach block they are a tuple of
    0 to `max_items` ``Ok``/``Err``, as the block hands them in item order:
    every combination of every length while there are at most 64 of them
    (`max_items` up to 5), random tuples beyond. The reducer must return
    something the engine can apply: ``ok(mapping)``, ``ok(value)``,
    ``ok()``, ``None``, ``error(reason)``, or ``goto(step)`` /
    ``goto(END)`` to a top-level step of the workflow (no goto at all for a
    block inside a parallel branch or a foreach body). A raised exception, a
    goto elsewhere, or a plain value (``allow_plain_values=True`` accepts
    those) fails the check with `AssertionError` showing the smallest
    ``results`` and ``ctx`` found.

    `block` is the block's name (``parallel(name=...)``,
    ``foreach(..., name=...)``, or the ``foreach#n`` an unnamed one gets) or
    its index among the workflow's parallel and foreach blocks in
    declaration order; it may be left out when one block has a reducer.
    `ok` / `err` draw the branch or item values and the failure reasons: one
    strategy, or for a parallel block one per branch key (an item's value is
    the mapping its body added; by default, small dicts). `context` is the
    ``ctx`` the reducer sees (a mapping or a strategy of mappings; default
    empty). A ``call_workflow``'s child is a workflow of its own: check its
    reducers with ``check_reducer(child)``.

    The check is deterministic (derandomized, no example database). Call it
    from a plain test function, not from inside another ``@given`` test.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from .strategies import branch_results, errors, values

    wf = resolve(workflow)
    plan = wf.plan
    node = _find_block(plan, block)
    into: Callable[..., object] = node.into  # type: ignore[assignment]
    if is_async_callable(into):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            msg = (
                "check_reducer() runs an async reducer with asyncio.run(); call it from a "
                "plain (sync) test, not from a running event loop"
            )
            raise UsageError(msg)
    require(count_problem(max_examples, "check_reducer(): max_examples"))
    require(count_problem(max_items, "check_reducer(): max_items", minimum=0))

    dicts = st.dictionaries(st.text(min_size=1, max_size=4), values(), max_size=3)
    contexts: SearchStrategy[Mapping[str, Any]] = (
        st.just(MappingProxyType({}))
        if context is None
        else context
        if not isinstance(context, Mapping)
        else st.just(context)
    )
    label = (
        f"the into= reducer {_name(into)} of {_kind(node)} block {node.name!r} in workflow "
        f"{plan.name!r} ({node.where})"
    )

    def probe(results: Mapping[str, Ok[Any] | Err[Any]], ctx: Mapping[str, Any]) -> None:
        context_ = Context(Scope(initial=ctx), 0, "check_reducer", node.name)
        try:
            outcome = into(context_, results)
            if inspect.isawaitable(outcome):
                outcome = _settle(outcome)
        except Exception as exc:
            problem: str | None = f"raised {exc!r}"
            cause: BaseException | None = exc
        else:
            problem, cause = _problem(outcome, plan, node, allow_plain_values), None
        if problem is not None:
            shown = dict(results) if isinstance(results, Mapping) else results
            msg = f"{label} {problem}\n  results: {shown!r}\n  ctx: {dict(ctx)!r}"
            raise AssertionError(msg) from cause

    drawings: list[SearchStrategy[Any]]
    if isinstance(node, ForeachNode):
        for given_, what in ((ok, "ok"), (err, "err")):
            if isinstance(given_, Mapping):
                msg = (
                    f"check_reducer({what}=...): foreach block {node.name!r} has items, not "
                    f"branches with keys; pass one strategy for every item"
                )
                raise UsageError(msg)
        item_ok: SearchStrategy[Any] = dicts if ok is None else ok  # type: ignore[assignment]
        item_err: SearchStrategy[Any] = errors() if err is None else err  # type: ignore[assignment]
        drawings = _item_tuples(item_ok, item_err, max_items)
    else:
        keys = node.keys
        ok_default: dict[str, SearchStrategy[Any]] = {
            child.key: values() if isinstance(child, StepNode) else dicts for child in node.children
        }
        if isinstance(ok, Mapping):
            ok_default.update(ok)
            ok_for: SearchStrategy[Any] | Mapping[str, SearchStrategy[Any]] = ok_default
        else:
            ok_for = ok if ok is not None else ok_default
        if 2 ** len(keys) <= _MAX_PATTERNS:
            combos = itertools.product((True, False), repeat=len(keys))
            drawings = [
                st.tuples(
                    *(
                        st.builds(Ok, _pick(ok_for, key, values))
                        if succeeded
                        else st.builds(Err, _pick(err, key, errors))
                        for key, succeeded in zip(keys, pattern, strict=True)
                    )
                ).map(lambda drawn: MappingProxyType(dict(zip(keys, drawn, strict=True))))
                for pattern in sorted(combos, key=lambda p: p.count(False))
            ]
        else:
            drawings = [branch_results(keys, ok=ok_for, err=err)]
    per_pattern = max(2, max_examples // len(drawings))
    config = settings(
        max_examples=per_pattern,
        deadline=None,
        database=None,
        derandomize=True,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=(HealthCheck.too_slow, HealthCheck.filter_too_much),
    )
    for drawn in drawings:
        config(given(results=drawn, ctx=contexts)(probe))()


def _item_tuples(
    ok: SearchStrategy[Any], err: SearchStrategy[Any], max_items: int
) -> list[SearchStrategy[Any]]:
    """Strategies of foreach results: a tuple of Ok/Err per item, in item order.

    While 0..`max_items` items make at most `_MAX_PATTERNS` Ok/Err patterns
    (every length counted), one strategy per pattern, fewest items and
    failures first; beyond, one strategy of random tuples.
    """
    from hypothesis import strategies as st

    oks, errs = st.builds(Ok, ok), st.builds(Err, err)
    if 2 ** (max_items + 1) - 1 > _MAX_PATTERNS:
        return [st.lists(st.one_of(oks, errs), max_size=max_items).map(tuple)]
    patterns = [
        pattern
        for size in range(max_items + 1)
        for pattern in sorted(
            itertools.product((True, False), repeat=size), key=lambda p: p.count(False)
        )
    ]
    return [st.tuples(*(oks if good else errs for good in pattern)) for pattern in patterns]


def _pick(
    given: SearchStrategy[Any] | Mapping[str, SearchStrategy[Any]] | None,
    key: str,
    default: Callable[[], SearchStrategy[Any]],
) -> SearchStrategy[Any]:
    chosen = given.get(key) if isinstance(given, Mapping) else given
    return chosen if chosen is not None else default()
