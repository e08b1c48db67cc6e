"""`check_reducer`: property-test a parallel block's ``into=`` reducer with hypothesis.

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
from .._plan import CallNode, End, Node, ParallelNode, Plan, StepNode, WaitNode, is_async_callable
from .._running import resolve
from .._workflow import Workflow
from ..errors import UsageError
from ..result import Err, Ok

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["check_reducer"]

_MAX_PATTERNS = 64
"""Up to this many Ok/Err combinations (6 branches), every one is checked."""


def _blocks(nodes: Sequence[Node]) -> list[ParallelNode]:
    """Every parallel block, in declaration order (outer before inner)."""
    found: list[ParallelNode] = []
    for node in nodes:
        if isinstance(node, StepNode | WaitNode | CallNode):
            continue
        if isinstance(node, ParallelNode):
            found.append(node)
        found.extend(_blocks(node.children))
    return found


def _describe(blocks: list[ParallelNode]) -> str:
    return ", ".join(
        f"{i}: {b.name!r} ({'into=' + _name(b.into) if b.into else 'no into='})"
        for i, b in enumerate(blocks)
    )


def _name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))


def _find_block(plan: Plan, block: str | int | None) -> ParallelNode:
    blocks = _blocks(plan.nodes)
    if not blocks:
        msg = f"check_reducer(): workflow {plan.name!r} has no parallel block"
        raise UsageError(msg)
    if block is None:
        reducing = [b for b in blocks if b.into is not None]
        if len(reducing) != 1:
            how = "none has an into= reducer" if not reducing else "several have into= reducers"
            msg = (
                f"check_reducer(): workflow {plan.name!r} has {len(blocks)} parallel "
                f"block(s) and {how}; pass block= a name or an index: {_describe(blocks)}"
            )
            raise UsageError(msg)
        return reducing[0]
    if isinstance(block, bool) or not isinstance(block, str | int):
        msg = f"check_reducer(): block= takes a block name or index, got {block!r}"
        raise UsageError(msg)
    if isinstance(block, int):
        if not -len(blocks) <= block < len(blocks):
            msg = (
                f"check_reducer(): workflow {plan.name!r} has no parallel block at index "
                f"{block}; its blocks: {_describe(blocks)}"
            )
            raise UsageError(msg)
        chosen = blocks[block]
    else:
        named = [b for b in blocks if block in (b.name, b.key)]
        if not named:
            msg = (
                f"check_reducer(): workflow {plan.name!r} has no parallel block named "
                f"{block!r}; its blocks: {_describe(blocks)}. Name one with parallel(name=...)"
            )
            raise UsageError(msg)
        chosen = named[0]
    if chosen.into is None:
        msg = (
            f"check_reducer(): parallel block {chosen.name!r} of workflow {plan.name!r} "
            f"({chosen.where}) has no into= reducer; it adds '__results__' instead"
        )
        raise UsageError(msg)
    return chosen


def _settle(outcome: Awaitable[object]) -> object:
    async def wait() -> object:
        return await outcome

    return asyncio.run(wait())


def _problem(
    outcome: object, plan: Plan, block: ParallelNode, allow_plain_values: bool
) -> str | None:
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
                f"returned {outcome!r}, but the block is inside a parallel branch, where "
                f"a goto is an error; return ok(...) or error(...) there"
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
    max_examples: int = 100,
) -> None:
    """Check that a parallel block's ``into=`` reducer handles every mix of branch results.

    The reducer is called (never the steps) with ``results`` drawn by
    hypothesis for each combination of ``Ok``/``Err`` per branch (every one
    for up to six branches, random ones beyond), and must return something
    the engine can apply: ``ok(mapping)``, ``ok(value)``, ``ok()``, ``None``,
    ``error(reason)``, or ``goto(step)`` / ``goto(END)`` to a top-level step
    of the workflow (no goto at all for a block inside a branch). A raised
    exception, a goto elsewhere, or a plain value (``allow_plain_values=True``
    accepts those) fails the check with `AssertionError` showing the smallest
    ``results`` and ``ctx`` found.

    `block` is the block's name (``parallel(name=...)``) or its index among the
    workflow's parallel blocks in declaration order; it may be left out when
    one block has a reducer. `ok` / `err` draw the branch values and failure
    reasons (one strategy, or one per branch key); `context` is the ``ctx``
    the reducer sees (a mapping or a strategy of mappings; default empty).

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

    keys = node.keys
    dicts = st.dictionaries(st.text(min_size=1, max_size=4), values(), max_size=3)
    ok_default: dict[str, SearchStrategy[Any]] = {
        child.key: values() if isinstance(child, StepNode) else dicts for child in node.children
    }
    if isinstance(ok, Mapping):
        ok_default.update(ok)
        ok_for: SearchStrategy[Any] | Mapping[str, SearchStrategy[Any]] = ok_default
    else:
        ok_for = ok if ok is not None else ok_default
    contexts: SearchStrategy[Mapping[str, Any]] = (
        st.just(MappingProxyType({}))
        if context is None
        else context
        if not isinstance(context, Mapping)
        else st.just(context)
    )
    label = (
        f"the into= reducer {_name(into)} of parallel block {node.name!r} in workflow "
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
            msg = f"{label} {problem}\n  results: {dict(results)!r}\n  ctx: {dict(ctx)!r}"
            raise AssertionError(msg) from cause

    patterns: list[tuple[bool, ...] | None]
    if 2 ** len(keys) <= _MAX_PATTERNS:
        combos = itertools.product((True, False), repeat=len(keys))
        patterns = [*sorted(combos, key=lambda p: p.count(False))]
    else:
        patterns = [None]
    per_pattern = max(2, max_examples // len(patterns))
    config = settings(
        max_examples=per_pattern,
        deadline=None,
        database=None,
        derandomize=True,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=(HealthCheck.too_slow, HealthCheck.filter_too_much),
    )
    for pattern in patterns:
        if pattern is None:
            drawn = branch_results(keys, ok=ok_for, err=err)
        else:
            drawn = st.tuples(
                *(
                    st.builds(Ok, _pick(ok_for, key, values))
                    if succeeded
                    else st.builds(Err, _pick(err, key, errors))
                    for key, succeeded in zip(keys, pattern, strict=True)
                )
            ).map(lambda drawn: MappingProxyType(dict(zip(keys, drawn, strict=True))))
        config(given(results=drawn, ctx=contexts)(probe))()


def _pick(
    given: SearchStrategy[Any] | Mapping[str, SearchStrategy[Any]] | None,
    key: str,
    default: Callable[[], SearchStrategy[Any]],
) -> SearchStrategy[Any]:
    chosen = given.get(key) if isinstance(given, Mapping) else given
    return chosen if chosen is not None else default()
