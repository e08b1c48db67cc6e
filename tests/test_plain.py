"""Frozen containers the journal has found to be plain JSON are written again without a walk.

The mark is a cache: these tests hold it to what a cache must be, invisible. A value is
written to the same text the first time and again, with orjson or without; only containers that really are plain JSON, of the height their class says, are
marked; and a marked container is refused where it would be too deep exactly as an
unmarked one is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import test_codec
from hypothesis import given
from hypothesis import strategies as st

from flowdsl import ok, run_workflow, step, workflow
from flowdsl._engine._context import PLAIN, PLAIN_HEIGHT, FrozenDict, FrozenList, freeze
from flowdsl.result import Err, Ok
from flowdsl.stores import SQLiteStore, _codec
from flowdsl.stores._codec import (
    MAX_DEPTH,
    Unencodable,
    describe_path,
    dumps,
    encode,
    encode_lenient_text,
    encode_text,
    type_name,
)

values = test_codec.journal_values() | test_codec.plain_json


def parts(value: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """`value` and every value inside it (each container once)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from parts(key, seen)
            yield from parts(item, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from parts(item, seen)
    elif isinstance(value, Ok):
        yield from parts(value.value, seen)
    elif isinstance(value, Err):
        yield from parts(value.error, seen)


def plain_height(value: Any) -> int | None:
    """The height of `value` if it is a plain JSON container (written as it is), else None."""
    if not isinstance(value, FrozenDict | FrozenList):
        return None
    if isinstance(value, dict):
        if any(type(key) is not str or key == "$" for key in value):
            return None
        items = list(value.values())
    else:
        items = list(value)
    height = 1
    for item in items:
        kind = type(item)
        if kind is float:  # finite, and not one orjson writes unlike repr (under 1e-4)
            if item != item or item in (float("inf"), float("-inf")) or 0 < abs(item) < 1e-4:
                return None
        elif kind not in (str, int, bool, type(None)):
            inner = plain_height(item)
            if inner is None:
                return None
            height = max(height, inner + 1)
    return height


def nested(levels: int) -> list[Any]:
    """`levels` lists, one inside the other, the innermost holding 1."""
    value: list[Any] = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.fixture(params=["orjson", "json"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "json":
        monkeypatch.setattr(_codec, "orjson", None)


@given(values)
def test_a_frozen_value_is_written_the_same_the_first_time_and_again(value: object) -> None:
    """The text of a frozen value never depends on whether its parts were found plain before."""
    expected = dumps(encode(freeze(value)))  # a copy of its own (freezing makes sets frozensets)
    frozen = freeze(value)
    assert encode_text(frozen) == expected  # the first time: walked, and marked
    assert encode_text(frozen) == expected  # again: the marked parts are not walked
    writer, _codec.orjson = _codec.orjson, None
    try:
        assert encode_text(frozen) == expected
    finally:
        _codec.orjson = writer
    again = freeze(value)
    assert encode_lenient_text(again) == encode_lenient_text(again) == dumps(encode(again))


@given(values)
def test_only_plain_containers_are_marked_and_with_their_height(value: object) -> None:
    frozen = freeze(value)
    encode_text(frozen)
    for part in parts(frozen):
        marked = PLAIN.get(type(part))
        if marked is not None:
            assert plain_height(part) == marked


@given(test_codec.plain_json)
def test_a_plain_value_is_marked_by_its_first_write(value: object) -> None:
    frozen = freeze(value)
    encode_text(frozen)
    height = plain_height(frozen)
    if height is not None and height <= PLAIN_HEIGHT:
        assert PLAIN[type(frozen)] == height
        assert encode(frozen) is frozen


def test_what_cannot_be_written_as_it_is_is_never_marked() -> None:
    frozen = freeze(
        {
            "nan": [1.0, float("nan")],
            "tag": {"$": 1},
            "keys": {1: "a"},
            "tuple": [(1, 2)],
            "fine": [1.5, "x", None, True],
        }
    )
    encode_text(frozen)
    assert type(frozen["fine"]) in PLAIN
    for key in ("nan", "tag", "keys", "tuple"):
        assert type(frozen[key]) not in PLAIN, key
    assert type(frozen) not in PLAIN


def test_a_value_that_holds_itself_is_never_marked() -> None:
    loop: dict[str, Any] = {"data": [1, 2]}
    loop["self"] = loop
    frozen = freeze(loop)
    with pytest.raises(Unencodable) as caught:
        encode(frozen)
    assert caught.value.why == "it contains itself"
    assert type(frozen) not in PLAIN
    assert type(frozen["data"]) in PLAIN


@pytest.mark.parametrize("height", [1, 10, PLAIN_HEIGHT])
@pytest.mark.parametrize("total", [MAX_DEPTH + 1, MAX_DEPTH + 2])
def test_a_marked_value_is_refused_where_too_deep_as_an_unmarked_one(
    height: int, total: int, writer: None
) -> None:
    """`total` levels in all, of which the innermost `height` were found plain before."""
    marked = freeze(nested(height))
    encode(marked)
    assert PLAIN[type(marked)] == height
    unmarked = freeze(nested(height))
    outcomes = []
    for inner in (marked, unmarked):
        outer: Any = inner
        for _ in range(total - height):
            outer = [outer]
        try:
            outcomes.append(encode_text(freeze(outer)))
        except Unencodable as exc:
            outcomes.append(f"refused: {exc.why} at {describe_path(exc.path[::-1])}")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0].startswith("refused") == (total > MAX_DEPTH + 1)


def test_a_container_taller_than_the_marks_is_walked_and_its_parts_are_marked() -> None:
    frozen = freeze(nested(PLAIN_HEIGHT + 3))
    encode(frozen)
    assert type(frozen) not in PLAIN
    inner = frozen
    for _ in range(3):
        inner = inner[0]
    assert PLAIN[type(inner)] == PLAIN_HEIGHT


def test_a_frozen_container_is_still_named_a_dict_or_a_list_in_errors() -> None:
    frozen = freeze({"a": [object()], "b": {"c": [1]}})
    encode(frozen["b"])
    assert type(frozen["b"]) in PLAIN
    names = [type_name(frozen[key]) for key in ("a", "b")] + [type_name(frozen["b"]["c"])]
    assert names == ["list", "dict", "list"]


def test_a_durable_run_journals_the_context_values_it_outputs(tmp_path: Any) -> None:
    """A step's outcome is frozen before it is journaled: the output reuses what was found."""

    @workflow
    def report() -> None:
        step(
            lambda ctx: ok({"rows": [{"id": i, "tags": ["a", "b"]} for i in range(3)]}),
            name="fetch",
        )
        step(lambda ctx: ok({"count": len(ctx["rows"]), "at": (1, 2)}), name="count")

    with SQLiteStore(tmp_path / "runs.db") as store:
        run = run_workflow(report, store=store)
        assert run.status == "completed"
        assert PLAIN[type(run.output["rows"])] == 3
        assert run.output["at"] == (1, 2)
        saved = store.get_run(run.run_id)
        assert saved is not None
        assert saved.output == {"rows": [{"id": i, "tags": ["a", "b"]} for i in range(3)]} | {
            "count": 3,
            "at": (1, 2),
        }


@given(st.lists(st.integers(-(2**70), 2**70), max_size=5))
def test_ints_past_64_bits_in_a_marked_list_are_written_as_before(ints: list[int]) -> None:
    frozen = freeze({"n": ints})
    first = encode_text(frozen)
    assert encode_text(frozen) == first == dumps(encode({"n": list(ints)}))


@given(st.lists(st.floats(min_value=1e-12, max_value=1e-3) | st.floats(), max_size=4))
def test_small_floats_are_written_as_repr_writes_them_marked_or_not(floats: list[float]) -> None:
    """orjson writes some floats under 1e-4 unlike repr: such a list is never marked."""
    frozen = freeze({"f": floats, "nested": [floats]})
    first = encode_text(frozen)
    assert encode_text(frozen) == first == dumps(encode({"f": list(floats), "nested": [floats]}))
    small = any(0 < abs(f) < 1e-4 for f in floats)
    assert (type(frozen["f"]) in PLAIN) == (
        not small and all(f == f and abs(f) != float("inf") for f in floats)
    )
