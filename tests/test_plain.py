"""Frozen containers the journal has found to be plain JSON are written again without a walk.

The mark is a cache: these tests hold it to what a cache must be, invisible. A value is
written to the same text the first time and again, with orjson or without; only containers that really are plain JSON, of the height their class says, are
marked; and a marked container is refused where it would be too deep exactly as an
unmarked one is.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import test_codec
from hypothesis import given
from hypothesis import strategies as st

from flowdsl import UsageError, ok, run_workflow, step, workflow
from flowdsl._engine import _context
from flowdsl._engine._context import (
    PLAIN,
    PLAIN_HEIGHT,
    FrozenDict,
    FrozenList,
    freeze,
)
from flowdsl.result import Err, Ok
from flowdsl.stores import SQLiteStore, _codec, _journal
from flowdsl.stores._codec import (
    LARGE_PLAIN,
    MAX_DEPTH,
    Unencodable,
    describe_path,
    dumps,
    encode,
    encode_lenient_text,
    encode_text,
    is_large,
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


@pytest.mark.parametrize("marking", ["the journal's walk", "freeze_plain"])
def test_what_cannot_be_written_as_it_is_is_never_marked(marking: str) -> None:
    value = {
        "nan": [1.0, float("nan")],
        "tag": {"$": 1},
        "keys": {1: "a"},
        "tuple": [(1, 2)],
        "fine": [1.5, "x", None, True],
    }
    if marking == "freeze_plain":
        frozen, _ = _context.freeze_plain(value)
    else:
        frozen = freeze(value)
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


# -- freeze_plain: a durable step's outcome, frozen and marked in one copy -------------------
#
# Each test runs with the copy a run uses (the compiled one, where it was built) and with
# the Python copy alone: both must give the same frozen value, marks and count.

FreezePlain = Callable[[Any], tuple[Any, int]]


def python_freeze_plain(value: Any) -> tuple[Any, int]:
    """`freeze_plain` with the compiled copy turned off: the Python copy, all of it."""
    copy_plain, _context._copy_plain = _context._copy_plain, None
    try:
        return _context.freeze_plain(value)
    finally:
        _context._copy_plain = copy_plain


def python_freeze(value: Any) -> Any:
    copy_plain, _context._copy_plain = _context._copy_plain, None
    try:
        return freeze(value)
    finally:
        _context._copy_plain = copy_plain


COPIES = pytest.mark.parametrize(
    "freeze_plain", [_context.freeze_plain, python_freeze_plain], ids=["as-run", "python"]
)


def size_of(value: Any) -> int:
    """The parts `value` holds at any depth: a dict's keys and values, a list's items."""
    if isinstance(value, dict):
        return sum(2 + size_of(item) for item in value.values())
    if isinstance(value, list):
        return sum(1 + size_of(item) for item in value)
    return 0


def unmarked(part: Any) -> type:
    """The class of `part`, a marked container's frozen base class for a marked one."""
    kind = type(part)
    if kind in PLAIN:
        return FrozenDict if isinstance(part, FrozenDict) else FrozenList
    return kind


def marks(value: Any) -> list[int | None]:
    return [PLAIN.get(type(part)) for part in parts(value)]


@COPIES
@given(values)
def test_freeze_plain_freezes_as_freeze_does_and_marks_only_what_the_walk_would(
    freeze_plain: FreezePlain, value: object
) -> None:
    expected = dumps(encode(freeze(value)))
    marked, _ = freeze_plain(value)
    for part in parts(marked):
        height = PLAIN.get(type(part))
        if height is not None:
            assert plain_height(part) == height
    walked = freeze(value)
    assert [unmarked(part) for part in parts(marked)] == [unmarked(part) for part in parts(walked)]
    assert encode_text(marked) == encode_text(walked) == expected
    assert encode_text(marked) == expected  # again, through the marks
    assert marks(marked) == marks(walked)  # once written, the same marks as the walk's


@COPIES
@given(test_codec.plain_json)
def test_freeze_plain_marks_a_plain_value_whole_and_counts_its_parts(
    freeze_plain: FreezePlain, value: object
) -> None:
    marked, size = freeze_plain(value)
    if not isinstance(value, dict | list):
        assert (marked, size) == (value, -1)
        return
    assert size == size_of(value)
    height = plain_height(marked)  # None: a small float inside
    if height is None or height > PLAIN_HEIGHT:
        assert type(marked) not in PLAIN
    else:
        assert PLAIN[type(marked)] == height
        assert encode(marked) is marked  # written without a walk


@COPIES
def test_freeze_plain_marks_nothing_inside_a_cycle(freeze_plain: FreezePlain) -> None:
    loop: dict[str, Any] = {"data": [1, 2], "rows": [{"a": ["x"]}]}
    loop["self"] = [loop]
    marked, _ = freeze_plain(loop)
    assert marked["self"][0] is marked
    assert type(marked) not in PLAIN
    assert type(marked["self"]) not in PLAIN
    assert type(marked["data"]) in PLAIN
    assert PLAIN[type(marked["rows"])] == 3


@COPIES
def test_a_cycle_through_parts_held_once_is_found_by_each_copy(freeze_plain: FreezePlain) -> None:
    """The compiled copy remembers only the containers held more than once (a part held by
    one container alone is met once); a cycle always passes through one held twice."""
    inner: list[Any] = []
    outer: list[Any] = [inner, {"row": [1]}]
    inner.append(outer)
    value = {"v": outer, "plain": [{"a": [1, 2]}]}
    del inner, outer  # now only the cycle holds `inner`
    marked, size = freeze_plain(value)
    assert marked["v"][0][0] is marked["v"]
    assert size == -1
    assert type(marked["v"]) not in PLAIN
    assert PLAIN[type(marked["v"][1])] == 2
    assert PLAIN[type(marked["plain"])] == 3
    assert shape(marked) == shape(python_freeze_plain(value)[0])


@COPIES
def test_freeze_plain_keeps_shared_parts_shared_and_does_not_count_them(
    freeze_plain: FreezePlain,
) -> None:
    """A part met twice is written twice: the count says it does not know (-1)."""
    tags = ["a", "b"]
    row = {"id": 1, "tags": tags}
    marked, size = freeze_plain({"x": tags, "y": tags, "z": [tags], "r": [row, row]})
    assert marked["x"] is marked["y"] is marked["z"][0] is marked["r"][0]["tags"]
    assert marked["r"][0] is marked["r"][1]
    assert PLAIN[type(marked)] == 4
    assert size == -1
    _, once = freeze_plain({"x": list(tags), "r": [dict(row)]})
    assert once == 4 + 2 + 1 + 4 + 2
    assert freeze_plain({"r": [{"id": 1}] * 2})[1] == -1  # a dict met twice


@COPIES
def test_freeze_plain_does_not_count_a_part_marked_before(freeze_plain: FreezePlain) -> None:
    rows, size = freeze_plain([{"i": i} for i in range(1_000)])
    assert size == 1_000 * 3
    marked, again = freeze_plain({"rows": rows, "more": rows})
    assert PLAIN[type(marked)] == 3
    assert marked["rows"] is rows
    assert again == -1  # written in full, twice, but not looked at by this freeze


@COPIES
def test_freeze_plain_of_a_value_too_deep_to_copy_by_recursion_only_freezes_it(
    freeze_plain: FreezePlain,
) -> None:
    marked, size = freeze_plain(nested(20_000))
    assert size == -1
    depth = 1
    while marked != [1]:
        assert type(marked) is FrozenList  # frozen, and not marked
        marked = marked[0]
        depth += 1
    assert depth == 20_000


@COPIES
def test_freeze_plain_returns_what_needs_no_copy_as_it_is(freeze_plain: FreezePlain) -> None:
    frozen, _ = freeze_plain({"a": [1]})
    same, size = freeze_plain(frozen)
    assert same is frozen
    assert size == -1
    assert freeze_plain("text") == ("text", -1)


def shape(
    value: Any, seen: dict[int, int] | None = None, kind: Callable[[Any], type] = type
) -> object:
    """`value`'s parts with their classes (as `kind` names them), and which containers are
    one object, to compare."""
    seen = {} if seen is None else seen
    if isinstance(value, dict | list | tuple | set | frozenset | Ok | Err):
        if id(value) in seen:
            return ("the same as", seen[id(value)])
        seen[id(value)] = len(seen)
    if isinstance(value, dict):
        return (kind(value), [(key, shape(item, seen, kind)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return (kind(value), [shape(item, seen, kind) for item in value])
    if isinstance(value, set | frozenset):
        return (kind(value), sorted(map(id, value)))
    if isinstance(value, Ok | Err):
        return (
            kind(value),
            shape(value.value if isinstance(value, Ok) else value.error, seen, kind),
        )
    return (kind(value), id(value))  # a scalar: the one object, in any copy


@given(values)
def test_freezes_give_the_same_with_and_without_the_compiled_copy(value: object) -> None:
    """Copying plain parts in C inside any value changes nothing a run can see or write: the
    same classes, the same parts shared, the same count and text. It may mark a plain part
    the Python freeze leaves to the journal's walk (inside a tuple, say), never wrongly."""
    marked, size = _context.freeze_plain(value)
    expected, expected_size = python_freeze_plain(value)
    assert shape(marked, kind=unmarked) == shape(expected, kind=unmarked)
    for part in parts(marked):
        if type(part) in PLAIN:
            assert plain_height(part) == PLAIN[type(part)]
    assert size == expected_size
    frozen = freeze(value)
    assert [unmarked(part) for part in parts(frozen)] == [
        unmarked(part) for part in parts(python_freeze(value))
    ]
    assert encode_text(frozen) == encode_text(marked) == encode_text(expected)


def test_a_part_shared_by_plain_and_other_parts_is_copied_once() -> None:
    tags = ["a", "b"]
    row = {"id": 1, "tags": tags}
    value = {"rows": [row], "again": (row,), "tags": tags, "when": {"at": 1e-9, "tags": tags}}
    for copy in (_context.freeze_plain, python_freeze_plain):
        marked, size = copy(value)
        assert marked["rows"][0] is marked["again"][0]
        assert marked["rows"][0]["tags"] is marked["tags"] is marked["when"]["tags"]
        assert size == -1
        assert PLAIN[type(marked["rows"])] == 3
        assert type(marked["when"]) is FrozenDict  # a small float: not marked
    assert shape(_context.freeze_plain(value)[0]) == shape(python_freeze_plain(value)[0])


def test_a_part_shared_inside_a_tuple_is_copied_once() -> None:
    """A tuple is not remembered before its parts: the copies in it are, so they are shared."""
    row = {"id": 1}
    frozen = freeze((row, [row], row))
    assert frozen[0] is frozen[1][0] is frozen[2]
    marked, _ = _context.freeze_plain({"t": (row, row)})
    assert marked["t"][0] is marked["t"][1]


@given(values)
def test_the_compiled_copy_gives_what_the_python_copy_gives_or_leaves_it_to_it(
    value: object,
) -> None:
    """It copies exactly the values the Python copy marks whole and counts (plain JSON, no
    part met twice), to the same classes, parts and count; any other value it leaves."""
    if _context._copy_plain is None:
        pytest.skip("the compiled copy was not built here")
    before = shape(value)
    python = python_freeze_plain(value)
    compiled = _context._copy_plain(value)
    assert shape(value) == before  # the original is left as it was
    wholly_plain = type(python[0]) in PLAIN and python[1] >= 0
    assert (compiled is not None) == (wholly_plain and type(value) in (dict, list))
    if compiled is not None:
        assert shape(compiled[0]) == shape(python[0])
        assert compiled[1] == python[1]
        assert encode_text(compiled[0]) == encode_text(python[0])


@pytest.mark.parametrize("levels", [PLAIN_HEIGHT - 1, PLAIN_HEIGHT, PLAIN_HEIGHT + 1])
def test_the_compiled_copy_marks_up_to_the_tallest_height_and_leaves_taller_values(
    levels: int,
) -> None:
    if _context._copy_plain is None:
        pytest.skip("the compiled copy was not built here")
    compiled = _context._copy_plain(nested(levels))
    if levels > PLAIN_HEIGHT:
        assert compiled is None  # the Python copy marks its parts, not it
        assert type(python_freeze_plain(nested(levels))[0]) is FrozenList
    else:
        assert compiled is not None
        assert PLAIN[type(compiled[0])] == levels
        assert compiled[1] == levels


def test_the_compiled_copy_is_built_where_the_tests_run_in_ci() -> None:
    """CI installs with a compiler at hand: a run there uses the compiled copy."""
    if _context._copy_plain is None and not os.environ.get("CI"):
        pytest.skip("the compiled copy was not built here")
    assert _context._copy_plain is not None


def test_flowdsl_runs_on_the_python_copy_when_the_compiled_one_is_turned_off() -> None:
    code = (
        "from flowdsl._engine import _context as c; "
        "frozen, size = c.freeze_plain({'rows': [{'id': 1, 'tags': ['a']}]}); "
        "print(c._copy_plain, size, c.PLAIN[type(frozen)])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "FLOWDSL_NO_CEXT": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["None", "8", "4"]


def test_the_compiled_copy_leaves_its_copies_to_the_collector_untracked_and_read_only() -> None:
    """A plain copy holds only scalars and copies made for it, so it is never in a cycle:
    the collector need not follow it (as CPython does for a tuple of scalars)."""
    if _context._copy_plain is None:
        pytest.skip("the compiled copy was not built here")
    made = _context._copy_plain({"rows": [{"id": 1, "tags": ["a"]}]})
    assert made is not None
    frozen, _ = made
    gc.collect()
    assert not gc.is_tracked(frozen)
    assert not gc.is_tracked(frozen["rows"][0]["tags"])
    with pytest.raises(UsageError, match="read-only"):
        frozen["rows"][0]["tags"].append("b")
    with pytest.raises(UsageError, match="read-only"):
        frozen["rows"][0]["id"] = 2


def test_the_compiled_copy_refuses_classes_it_cannot_fill() -> None:
    if _context._copy_plain is None:
        pytest.skip("the compiled copy was not built here")
    from flowdsl._engine import _cfreeze

    with pytest.raises(TypeError, match="dict and list subclasses"):
        _cfreeze.configure((dict, tuple), (list, list), 1e-4)


def rows(count: int, extra: object) -> list[dict[str, Any]]:
    return [{"i": i, "tags": ["a"], "extra": extra} for i in range(count)]


@pytest.mark.parametrize(
    ("count", "extra", "on_loop"),
    [
        (2_000, "plain", True),  # 16,002 parts: large to walk, not to write as it is
        (2_000, ("a", "tuple"), False),  # the same size, but a walk finds the tuples
        (LARGE_PLAIN // 6, "plain", False),  # too large even written as it is
    ],
)
def test_a_large_outcome_is_written_on_the_loop_only_when_it_is_plain_and_not_too_large(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, count: int, extra: object, on_loop: bool
) -> None:
    threads: list[bool] = []

    def encode_text_noting_where(value: object) -> str:
        if isinstance(value, Ok) and isinstance(value.value, dict) and "rows" in value.value:
            threads.append(threading.current_thread() is threading.main_thread())
        return encode_text(value)

    monkeypatch.setattr(_journal, "encode_text", encode_text_noting_where)
    made = rows(count, extra)
    assert is_large(Ok(freeze(made)))  # every case is large for the walk

    @workflow
    def export() -> None:
        step(lambda ctx: ok({"rows": made}), name="fetch")

    with SQLiteStore(tmp_path / "runs.db") as store:
        run = run_workflow(export, store=store)
        assert run.status == "completed"
        saved = store.get_run(run.run_id)
        assert saved is not None
        assert saved.output["rows"] == made
    assert threads == [on_loop]


def test_an_outcome_passing_on_a_large_marked_value_is_written_in_a_thread(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its freeze counts none of what it passes on, so the count cannot put it on the loop."""
    threads: dict[str, bool] = {}

    def encode_text_noting_where(value: object) -> str:
        if isinstance(value, Ok) and isinstance(value.value, dict):
            for key in ("rows", "again"):
                if key in value.value:
                    threads[key] = threading.current_thread() is threading.main_thread()
        return encode_text(value)

    monkeypatch.setattr(_journal, "encode_text", encode_text_noting_where)

    @workflow
    def pass_on() -> None:
        step(lambda ctx: ok({"rows": rows(2_000, "plain")}), name="fetch")
        step(lambda ctx: ok({"again": ctx["rows"], "twice": ctx["rows"]}), name="pass_on")

    with SQLiteStore(tmp_path / "runs.db") as store:
        run = run_workflow(pass_on, store=store)
        assert run.status == "completed"
        assert PLAIN[type(run.output["again"])] == 3
    assert threads == {"rows": True, "again": False}


def depth_of(value: Any) -> int:
    """How many containers deep `value` goes (0 for a scalar)."""
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    return 0


@given(test_codec.plain_json, st.integers(0, 60))
def test_the_compiled_count_of_parts_is_what_freeze_plain_counts_up_to_its_limit(
    value: object, limit: int
) -> None:
    count = _context.count_parts
    if count is None:
        pytest.skip("the compiled copy was not built here")
    if not isinstance(value, dict | list):
        return
    marked, size = _context.freeze_plain(value)
    expected = size if size <= limit and depth_of(value) <= PLAIN_HEIGHT else limit + 1
    assert count(value, limit) == expected  # the value as it came
    assert count(marked, limit) == expected  # and its frozen copy
    assert count(marked, 10**9) == (size if depth_of(value) <= PLAIN_HEIGHT else 10**9 + 1)


@pytest.mark.parametrize(
    ("count", "extra", "on_loop"),
    [
        (2_000, "plain", True),  # 16,002 parts, all marked plain: written without a walk
        (2_000, ("a", "tuple"), False),  # the same size, but the tuples must be walked
        (LARGE_PLAIN // 6, "plain", False),  # too large even written as it is
    ],
)
def test_a_runs_output_is_written_on_the_loop_only_when_it_is_plain_and_not_too_large(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, count: int, extra: object, on_loop: bool
) -> None:
    """As a step's outcome is: a thread's round trip would cost more than writing it."""
    if _context.count_parts is None and on_loop:
        pytest.skip("the compiled copy was not built here: every large output is walked")
    threads: list[bool] = []

    def encode_lenient_text_noting_where(value: object) -> str:
        if isinstance(value, Mapping) and "rows" in value:
            threads.append(threading.current_thread() is threading.main_thread())
        return encode_lenient_text(value)

    monkeypatch.setattr(_journal, "encode_lenient_text", encode_lenient_text_noting_where)
    made = rows(count, extra)

    @workflow
    def export_output() -> None:
        step(lambda ctx: ok({"rows": made, "count": len(made)}), name="fetch")

    with SQLiteStore(tmp_path / "runs.db") as store:
        run = run_workflow(export_output, store=store)
        saved = store.get_run(run.run_id)
    assert saved is not None
    assert ("completed", made) == (saved.status, saved.output["rows"])
    assert threads == [on_loop]


def test_the_compiled_count_of_parts_stops_where_the_marks_stop() -> None:
    """As tall as a mark goes, counted; one more level, and it is past any limit."""
    count = _context.count_parts
    if count is None:
        pytest.skip("the compiled copy was not built here")
    assert PLAIN_HEIGHT == count(nested(PLAIN_HEIGHT), 100)
    assert 101 == count(nested(PLAIN_HEIGHT + 1), 100)
    assert 1 == count([1], sys.maxsize)  # the largest limit there is
    with pytest.raises(ValueError, match="0 or more"):
        count([1], -1)
