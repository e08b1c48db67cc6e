"""The persistent context: snapshots never change, and reads match a plain dict model."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowdsl._engine._context import Context, FrozenDict, FrozenList, Scope, freeze
from flowdsl.errors import UsageError

keys = st.sampled_from(["a", "b", "c", "d", "e"])
writes = st.dictionaries(keys, st.integers(), max_size=3)


@given(initial=writes, steps=st.lists(writes, max_size=12))
def test_every_snapshot_equals_a_dict_copy_taken_at_that_time(
    initial: dict[str, int], steps: list[dict[str, int]]
) -> None:
    """A snapshot taken at any point reads exactly like a dict copied at that point."""
    scope = Scope(initial=initial)
    model = dict(initial)
    taken: list[tuple[Context, dict[str, Any]]] = [(scope.snapshot(), dict(model))]
    for update in steps:
        scope.write(update)
        model.update(update)
        taken.append((scope.snapshot(), dict(model)))
    for snapshot, expected in taken:
        assert expected == dict(snapshot)
        assert len(expected) == len(snapshot)
        assert list(expected) == list(snapshot)
        for key in "abcdef":
            assert expected.get(key) == snapshot.get(key)
            assert (key in expected) == (key in snapshot)


@given(
    base=st.lists(writes, max_size=5),
    left=st.lists(writes, max_size=5),
    right=st.lists(writes, max_size=5),
)
def test_child_scopes_see_the_fork_point_but_not_each_other(
    base: list[dict[str, int]], left: list[dict[str, int]], right: list[dict[str, int]]
) -> None:
    """Two branches forked from one snapshot read the parent as it was, plus only their own writes."""
    parent = Scope()
    model: dict[str, int] = {}
    for update in base:
        parent.write(update)
        model.update(update)
    fork = parent.version
    a, b = Scope(parent, fork), Scope(parent, fork)
    model_a, model_b = dict(model), dict(model)
    for update in left:
        a.write(update)
        model_a.update(update)
    for update in right:
        b.write(update)
        model_b.update(update)
    parent.write({"a": -1, "z": -2})  # the parent moves on: the branches must not see it
    assert model_a == dict(a.snapshot())
    assert model_b == dict(b.snapshot())
    added = {}
    for update in left:
        added.update(update)
    assert added == a.added()


def test_missing_key_raises_key_error_and_get_returns_default() -> None:
    """Reading an absent key behaves like a dict."""
    ctx = Scope(initial={"x": 1}).snapshot()
    with pytest.raises(KeyError):
        ctx["nope"]
    assert "d" == ctx.get("nope", "d")
    assert 1 not in ctx  # type: ignore[comparison-overlap]


def test_idempotency_key_names_run_step_and_later_visits() -> None:
    """The key is run_id:step, with #n from the second visit of a goto loop on."""
    scope = Scope()
    assert "r1:charge" == Context(scope, 0, "r1", "charge", attempt=3).idempotency_key
    assert "r1:charge#2" == Context(scope, 0, "r1", "charge", visit=2).idempotency_key


def test_context_is_read_only() -> None:
    """A step cannot write into its context."""
    ctx = Scope(initial={"x": 1}).snapshot()
    with pytest.raises(TypeError):
        ctx["x"] = 2  # type: ignore[index]


# -- deep isolation ------------------------------------------------------------------------

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=3), inner, max_size=4)
        | st.tuples(inner, inner)
        | st.sets(st.integers(), max_size=3)
    ),
    max_leaves=20,
)


def _mutable_parts(value: Any) -> list[Any]:
    """Every dict, list and set inside `value` (including itself)."""
    found: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            if isinstance(item, list):
                found.append(item)
            stack.extend(item)
        elif isinstance(item, set):
            found.append(item)
    return found


@given(json_like)
def test_freeze_keeps_the_value_and_shares_no_mutable_part(value: Any) -> None:
    """freeze(x) == x; nothing mutable in x is reachable from freeze(x), and nothing in it mutates."""
    frozen = freeze(value)
    assert value == frozen
    originals = {id(part) for part in _mutable_parts(value)}
    for part in _mutable_parts(frozen):
        assert id(part) not in originals
        assert isinstance(part, FrozenDict | FrozenList)  # a plain one may be marked so
        change = part.__setitem__ if isinstance(part, dict) else part.insert
        with pytest.raises(UsageError, match="part of the workflow context"):
            change(0, 1)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(a=1),
        lambda d: d.pop("k"),
        lambda d: d.setdefault("z", 1),
        lambda d: d.clear(),
        lambda d: d.popitem(),
        lambda d: d.__delitem__("k"),
        lambda d: d.__ior__({"a": 1}),
        lambda d: d["l"].append(1),
        lambda d: d["l"].extend([1]),
        lambda d: d["l"].insert(0, 1),
        lambda d: d["l"].sort(),
        lambda d: d["l"].reverse(),
        lambda d: d["l"].remove(1),
        lambda d: d["l"].pop(),
        lambda d: d["l"].__setitem__(slice(0, 1), [9]),
        lambda d: d["l"].__iadd__([1]),
        lambda d: d["l"].__imul__(2),
        lambda d: d["l"].clear(),
    ],
)
def test_every_mutation_of_a_frozen_container_is_refused(change: Any) -> None:
    """No mutating method of dict or list gets through."""
    frozen = freeze({"k": 1, "l": [1, 2]})
    with pytest.raises(UsageError):
        change(frozen)
    assert {"k": 1, "l": [1, 2]} == frozen


def test_copies_of_frozen_values_are_plain_and_mutable() -> None:
    """dict(), list(), copy, deepcopy, pickle and json all give ordinary data back."""
    frozen = freeze({"cart": {"items": [{"sku": "a"}]}, "tags": {"x"}})
    deep = copy.deepcopy(frozen)
    assert (dict, dict, list) == (type(deep), type(deep["cart"]), type(deep["cart"]["items"]))
    deep["cart"]["items"].append({"sku": "b"})
    assert 1 == len(frozen["cart"]["items"])
    assert dict is type(copy.copy(frozen))
    assert list is type(list(frozen["cart"]["items"]))
    loaded = pickle.loads(pickle.dumps(frozen))
    assert (dict, list) == (type(loaded["cart"]), type(loaded["cart"]["items"]))
    assert '{"items": [{"sku": "a"}]}' == json.dumps(frozen["cart"])
    assert frozenset({"x"}) == frozen["tags"]


def test_a_value_that_contains_itself_freezes_into_one_that_does() -> None:
    """Cycles are kept, not followed forever."""
    loop: dict[str, Any] = {"name": "a"}
    loop["self"] = loop
    frozen = freeze(loop)
    assert frozen["self"] is frozen
    assert type(frozen) is FrozenDict


def test_a_cycle_entered_through_a_tuple_is_patched_in() -> None:
    """{'t': (d,)} reached from the tuple: the frozen dict still points at the frozen tuple."""
    d: dict[str, Any] = {}
    t = (d,)
    d["t"] = t
    frozen = freeze(t)
    assert type(frozen) is tuple
    assert type(frozen[0]) is FrozenDict
    assert frozen[0]["t"] is frozen


def test_freezing_any_depth_never_fails() -> None:
    """A list nested 20,000 deep is frozen without recursion (and equals the original)."""
    deep: list[Any] = []
    node = deep
    for _ in range(20_000):
        child: list[Any] = []
        node.append(child)
        node = child
    frozen = freeze(deep)
    depth = 0
    while frozen:
        assert type(frozen) is FrozenList
        frozen = frozen[0]
        depth += 1
    assert 20_000 == depth


def test_shared_parts_stay_shared_and_immutable_parts_are_reused() -> None:
    """One list reached twice is frozen once; a tuple of scalars is kept as it is."""
    shared = [1, 2]
    scalars = (1, "a")
    frozen = freeze({"a": shared, "b": shared, "c": scalars})
    assert frozen["a"] is frozen["b"]
    assert frozen["c"] is scalars
