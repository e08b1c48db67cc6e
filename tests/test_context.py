"""The persistent context: snapshots never change, and reads match a plain dict model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowdsl._context import Context, Scope

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
