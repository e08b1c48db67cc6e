"""The journal codec: what durable runs store, as strict JSON, and read back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import json
import math
import subprocess
import sys
import textwrap
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowdsl import (
    END,
    Err,
    Goto,
    Ok,
    RecordedError,
    Run,
    SQLiteStore,
    arun_workflow,
    error,
    ok,
    register_type,
    run_workflow,
    step,
    workflow,
)
from flowdsl._engine._context import freeze
from flowdsl.errors import SerializationError, UsageError
from flowdsl.stores import _codec
from flowdsl.stores._codec import (
    LARGE,
    MAX_DEPTH,
    Undecodable,
    Unencodable,
    Unregistered,
    decode,
    describe_path,
    dumps,
    encode,
    encode_lenient,
    encode_lenient_text,
    encode_reason,
    encode_reason_text,
    encode_text,
    is_large,
)

SRC = str(Path(__file__).resolve().parent.parent)
PARIS = ZoneInfo("Europe/Paris")


def round_trip(value: object, *, strict: bool = False) -> Any:
    return decode(dumps(encode(value)), strict=strict)


@pytest.fixture(autouse=True)
def registered_types() -> Iterator[None]:
    """Each test registers classes of its own; the module's registrations are kept."""
    saved = (dict(_codec._by_name), dict(_codec._by_class), dict(_codec._encoders))
    try:
        yield
    finally:
        for live, kept in zip(
            (_codec._by_name, _codec._by_class, _codec._encoders), saved, strict=True
        ):
            live.clear()
            live.update(kept)


@pytest.fixture
def int_digits() -> Iterator[Callable[[int], None]]:
    """Set this process's int/str digit limit for one test."""
    before = sys.get_int_max_str_digits()
    try:
        yield sys.set_int_max_str_digits
    finally:
        sys.set_int_max_str_digits(before)


# -- classes the tests carry -----------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


class Shape(enum.Enum):
    SQUARE = (4, "sides")
    TRIANGLE = (3, "sides")


@dataclasses.dataclass(frozen=True)
class Point:
    x: object
    y: object


register_type(Point, lambda p: {"x": p.x, "y": p.y}, lambda data: Point(**data))


@attrs.frozen
class Money:
    amount: Decimal
    currency: str


register_type(Money, attrs.asdict, lambda data: Money(**data))


# -- comparing what came back ----------------------------------------------------------------


def same_zone(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, ZoneInfo):
        return a is b
    return a == b and (a is None or a.tzname(None) == b.tzname(None))


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (NaN is NaN, 1.0 is not 1.00)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is float:
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if kind is Decimal:
        return str(a) == str(b)
    if kind is datetime or kind is time:
        return (a.isoformat(), a.fold) == (b.isoformat(), b.fold) and same_zone(a.tzinfo, b.tzinfo)
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(map(same, a, b))
    if kind is dict:
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if kind is set or kind is frozenset:
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if kind is Ok:
        return same(a.value, b.value)
    if kind is Err:
        return same(a.error, b.error)
    if kind is Goto:
        return a.target == b.target and same(dict(a.update), dict(b.update))
    if kind is Point:
        return same(a.x, b.x) and same(a.y, b.y)
    if isinstance(a, enum.Enum):
        return a is b
    return a == b


# -- strategies ------------------------------------------------------------------------------

_offsets = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59, seconds=59),
    max_value=timedelta(hours=23, minutes=59, seconds=59),
)
zones = (
    st.none()
    | st.just(UTC)
    | st.builds(timezone, _offsets)
    | st.builds(timezone, _offsets, st.text(max_size=5))
    | st.timezones()
)
datetimes = st.builds(
    lambda moment, fold: moment.replace(fold=fold),
    st.datetimes(timezones=zones),
    st.sampled_from([0, 1]),
)
times = st.builds(
    lambda moment, fold: moment.replace(fold=fold),
    st.times(timezones=zones),
    st.sampled_from([0, 1]),
)
decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [Decimal("sNaN"), Decimal("-NaN123"), Decimal("-0"), Decimal("1.20E+999999"), Decimal("1E-50")]
)
huge_ints = st.integers(4290, 4400).flatmap(
    lambda digits: st.sampled_from([10**digits - 1, -(10**digits), 10**digits + 12345])
)
enum_members = (
    st.sampled_from([*Color, *Level, *Shape]) | st.integers(0, 7).map(Perm)  # Perm(6) is R|W
)
hashables = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=8)
    | st.dates()
    | datetimes
    | times
    | st.uuids()
    | st.decimals(allow_nan=False)
    | enum_members,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=5,
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()
    | st.text()
    | st.binary(max_size=8)
    | st.dates()
    | datetimes
    | times
    | st.uuids()
    | decimals
    | enum_members
)


def journal_values() -> st.SearchStrategy[object]:
    """Every type the journal carries, nested in every container it carries."""
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.lists(inner, max_size=3).map(tuple)
            | st.dictionaries(st.text() | st.just("$"), inner, max_size=3)
            | st.dictionaries(hashables, inner, max_size=3)
            | st.sets(hashables, max_size=3)
            | st.frozensets(hashables, max_size=3)
            | inner.map(Ok)
            | inner.map(Err)
            | st.builds(
                Goto,
                st.text(min_size=1) | st.just(END),
                st.dictionaries(st.text(), inner, max_size=2),
            )
            | st.builds(Point, inner, inner)
        ),
        max_leaves=12,
    )


plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**100), 10**100)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text().filter(lambda key: key != "$"), inner, max_size=4)
    ),
    max_leaves=20,
)


def no_constants(token: str) -> None:
    raise AssertionError(f"the journal wrote the non-JSON token {token}")


# -- laws ------------------------------------------------------------------------------------


@given(journal_values())
def test_every_carried_value_comes_back_the_same(value: object) -> None:
    """decode(dumps(encode(v))) is v: same types, same values, all the way down."""
    back = round_trip(value)
    assert same(value, back)
    assert same(value, round_trip(value, strict=True))


@given(journal_values())
def test_the_journal_is_strict_json(value: object) -> None:
    """No NaN/Infinity tokens and no int any reader refuses: json.loads reads every journal."""
    json.loads(dumps(encode(value)), parse_constant=no_constants)


@given(plain_json)
def test_plain_json_is_written_as_it_is_and_not_copied(value: object) -> None:
    """The journal of a plain JSON value is that JSON; encoding it copies nothing."""
    assert encode(value) is value
    assert json.dumps(value, separators=(",", ":")) == dumps(encode(value))


@given(journal_values() | st.builds(object) | st.builds(lambda: 1j))
def test_recording_a_failure_reason_never_fails(reason: object) -> None:
    """Any value is recordable as a reason, and what is recorded is strict JSON."""
    text = dumps(encode_reason(reason))
    json.loads(text, parse_constant=no_constants)
    decode(text)


journal_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        | st.fixed_dictionaries(
            {"$": st.sampled_from(sorted(_codec._decoders)) | st.text(max_size=4)},
            optional=dict.fromkeys(
                ("v", "to", "u", "type", "message", "traceback", "zone", "name", "fold"), inner
            ),
        )
    ),
    max_leaves=10,
)


@given(journal_like)
def test_decoding_any_json_raises_nothing_but_undecodable(data: object) -> None:
    """A hand-edited row gets a short description, never a KeyError or TypeError."""
    text = json.dumps(data)
    for strict in (False, True):
        try:
            decode(text, strict=strict)
        except Undecodable as exc:
            described = str(exc)
        else:
            described = "decoded"
        assert described


@given(st.text())
def test_decoding_any_text_raises_nothing_but_undecodable(text: str) -> None:
    """Text that is not JSON at all is Undecodable too."""
    with contextlib.suppress(Undecodable):
        decode(text)


# -- the journal's text, whichever writer writes it ------------------------------------------

try:
    import orjson
except ImportError:  # pragma: no cover - the flowdsl[fast] extra is installed for the tests
    orjson = None  # type: ignore[assignment]

WRITERS = [
    pytest.param(None, id="stdlib"),
    pytest.param(
        orjson,
        id="orjson",
        marks=pytest.mark.skipif(orjson is None, reason="the flowdsl[fast] extra is not installed"),
    ),
]


@pytest.fixture(params=WRITERS)
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> object:
    """The codec writing with orjson (the flowdsl[fast] extra), or with the json module only."""
    monkeypatch.setattr(_codec, "orjson", request.param)
    return request.param


# Written by the codec of flowdsl 0.1.0.dev0 before the journal could be written with orjson:
# journals already in stores must read back the same, and be written the same again.
OLD_JOURNAL = (
    '{"plain":{"s":"caf\\u00e9 \\u2603 \\ud83d\\ude00 \\u007f \\u0000\\n\\"\\\\","i":-12,"f":[1.5e-'
    '07,2.5e-05,1e+16,-0.0,0.1],"big":1180591620717411303424,"b":true,"n":null,"l":[1,2.0'
    ',"x",[]],"e":{}},"tagged":[{"$":"tuple","v":[1,{"$":"tuple","v":[2]}]},{"$":"map","v'
    '":[[1,"a"],["$","b"]]},{"$":"map","v":[["$","x"]]},{"$":"map","v":[[{"$":"frozenset"'
    ',"v":[1,3]},{"$":"set","v":["a","b"]}]]},{"$":"float","v":"NaN"},{"$":"float","v":"-'
    'Infinity"}],"times":[{"$":"datetime","v":"2024-05-01T12:30:00+00:00"},{"$":"datetime'
    '","v":"2024-10-27T02:30:00+01:00","fold":1,"zone":"Europe/Paris"},{"$":"date","v":"2'
    '024-01-02"},{"$":"time","v":"08:00:00+05:30","name":"IST"}],"misc":[{"$":"uuid","v":'
    '"00000000-0000-0000-0000-000000000007"},{"$":"decimal","v":"-1.20E+5"},{"$":"bytes",'
    '"v":"AP9yYXc="}],"results":[{"$":"ok","v":{"a":1}},{"$":"err","v":"bad"},{"$":"err",'
    '"v":{"$":"exc","type":"ValueError","message":"boom","traceback":null}},{"$":"goto","'
    'to":"next","u":{"k":1}},{"$":"goto","to":null,"u":{}}]}'
)
OLD_LENIENT = '{"out":1,"odd":{"$":"exc","type":"complex","message":"1j","traceback":null}}'


def test_a_journal_written_before_reads_back_and_is_written_the_same(writer: object) -> None:
    """Text the earlier codec wrote decodes to its values, and encodes to that text again."""
    value = decode(OLD_JOURNAL, strict=True)
    assert same(
        {
            "s": 'caf\u00e9 \u2603 \U0001f600 \x7f \x00\n"\\',
            "i": -12,
            "f": [1.5e-07, 2.5e-05, 1e16, -0.0, 0.1],
            "big": 2**70,
            "b": True,
            "n": None,
            "l": [1, 2.0, "x", []],
            "e": {},
        },
        value["plain"],
    )
    tagged = value["tagged"]
    assert same(
        [(1, (2,)), {1: "a", "$": "b"}, {"$": "x"}, {frozenset({1, 3}): {"a", "b"}}], tagged[:4]
    )
    assert math.isnan(tagged[4])
    assert -math.inf == tagged[5]
    assert same(
        [
            datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
            datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),
            date(2024, 1, 2),
            time(8, 0, tzinfo=timezone(timedelta(hours=5, minutes=30), "IST")),
        ],
        value["times"],
    )
    assert same([uuid.UUID(int=7), Decimal("-1.20E+5"), b"\x00\xffraw"], value["misc"])
    ok_, err, exc, goto, end = value["results"]
    assert (Ok({"a": 1}), Err("bad"), Err(RecordedError("ValueError", "boom"))) == (ok_, err, exc)
    assert ("next", {"k": 1}, END, {}) == (
        goto.target,
        dict(goto.update),
        end.target,
        dict(end.update),
    )
    assert OLD_JOURNAL == encode_text(value) == dumps(encode(value))
    assert OLD_LENIENT == encode_lenient_text({"out": 1, "odd": 1j})


@given(journal_values())
def test_every_writer_writes_the_same_text(value: object) -> None:
    """encode_text(v) is dumps(encode(v)), with orjson or without, frozen or not."""
    for candidate in (value, freeze(value)):
        expected = dumps(encode(candidate))
        with_orjson = encode_text(candidate)
        try:
            _codec.orjson = None  # type: ignore[assignment]
            without = encode_text(candidate)
        finally:
            _codec.orjson = orjson
        assert expected == with_orjson == without
        assert dumps(encode_reason(candidate)) == encode_reason_text(candidate)
        assert dumps(encode_lenient(candidate)) == encode_lenient_text(candidate)
    assert same(value, decode(encode_text(value)))


@given(
    st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-12, max_value=1e-3)
    | st.floats(min_value=1e14, max_value=1e18)
    | st.integers(-(2**64), 2**64),
    st.text()
    | st.text(
        st.sampled_from(["\ud800", "\udfff", "\x7f", "\x00", "\u00e9", "\U0001f600", '"', "\\"])
    ),
)
def test_numbers_and_text_are_written_as_the_json_module_writes_them(
    number: float, text: str
) -> None:
    """Float digits and exponents, ints, escapes (DEL, controls, non-ASCII, surrogates)."""
    data = [number, -number, text, {text: number}]
    assert _codec._dumps(data) == _codec._write(data)


def test_with_the_fast_extra_orjson_writes_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    """encode_text hands what the walk made to orjson, and keeps its text when it is the same."""
    written: list[object] = []

    class Writer:
        @staticmethod
        def dumps(data: object) -> bytes:
            written.append(data)
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    monkeypatch.setattr(_codec, "orjson", Writer)
    value = {"when": datetime(2024, 5, 1, tzinfo=UTC), "caf\u00e9": [1, "\x7f"]}
    assert dumps(encode(value)) == encode_text(value)
    assert [encode(value)] == written


@pytest.mark.parametrize("value", [math.nan, [math.inf, {"x": -math.inf}], Ok((math.nan,))])
def test_the_walk_tags_non_finite_floats(value: object, writer: object) -> None:
    """So no writer ever sees a NaN (orjson would write null for it)."""
    text = encode_text(value)
    json.loads(text, parse_constant=no_constants)
    assert text == dumps(encode(value))
    assert "null" not in text


def test_a_value_is_large_by_the_values_it_holds_at_any_depth() -> None:
    """Counted through every container the journal walks, frozen or not; stops early."""
    assert not is_large(Ok({"a": 1, "b": [1, 2, 3]}))
    assert not is_large("x" * 1_000_000)  # one value: cheap to walk, and written in C
    deep: object = list(range(LARGE + 1))
    for _ in range(10):
        deep = {"k": [deep]}
    assert is_large(Ok(deep))
    assert is_large(freeze({"rows": [{"i": i} for i in range(LARGE)]}))
    assert not is_large(freeze({"rows": [{"i": i} for i in range(LARGE // 4)]}))
    assert is_large([(i,) for i in range(LARGE)])
    endless: list[Any] = []
    endless.append(endless)
    assert is_large(endless)


# -- the types, one by one -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 5, 1, 12, 30, 15, 123456),
        datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=-3, seconds=7))),
        datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=2), "CEST")),
        datetime(2024, 5, 1, 12, 30, tzinfo=PARIS),
        datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),  # the second 02:30 that night
        datetime(2024, 10, 27, 2, 30, fold=1),
        time(23, 59, 59, 999999),
        time(8, 0, tzinfo=timezone(timedelta(minutes=330), "IST")),
        time(8, 0, tzinfo=PARIS),
        date(1, 1, 1),
    ],
    ids=repr,
)
def test_dates_and_times_keep_their_time_zone_and_fold(value: date) -> None:
    """UTC and fixed offsets exactly (names included), a ZoneInfo by its key."""
    assert same(value, round_trip(value))


def test_a_zone_unknown_to_the_reader_reads_as_its_offset_or_fails_strictly() -> None:
    """Without the zone (no tzdata), a read keeps the instant; a strict read says why."""
    text = dumps(encode(datetime(2024, 5, 1, 12, tzinfo=PARIS))).replace(
        "Europe/Paris", "Mars/Base"
    )
    assert same(datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))), decode(text))
    with pytest.raises(Undecodable, match="the zone 'Mars/Base', which this process does not know"):
        decode(text, strict=True)


def keyless_zone() -> ZoneInfo:
    with open(f"/usr/share/zoneinfo/{PARIS.key}", "rb") as data:
        return ZoneInfo.from_file(data)


class Moonlight(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)


@pytest.mark.parametrize(
    ("zone", "why"),
    [
        (Moonlight(), "its time zone is a test_codec.Moonlight"),
        (keyless_zone(), "its time zone is a zoneinfo.ZoneInfo without a key"),
    ],
)
def test_other_time_zones_are_refused_saying_which_to_use(zone: tzinfo, why: str) -> None:
    """The journal cannot name them, so it does not pretend to."""
    with pytest.raises(Unencodable) as caught:
        encode({"at": datetime(2024, 1, 1, tzinfo=zone)})
    assert (why, ["at"]) == (caught.value.why, caught.value.path)
    assert "datetime.timezone and zoneinfo.ZoneInfo(key)" in caught.value.hint


@pytest.mark.parametrize(
    "value",
    [
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        Decimal("-1.20E+5"),
        Decimal("sNaN"),
        Decimal("-Infinity"),
        Decimal("0.000"),
        b"\x00\xff raw",
        b"",
        {1, "a", (2, 3)},
        frozenset({Color.RED, 1.5}),
        set(),
        math.nan,
        math.inf,
        -math.inf,
        -0.0,
        10**5000,
        -(10**4301),
        10**4300 - 1,
        OrderedDict(b=1, a=2),
    ],
    ids=lambda value: type(value).__name__,
)
def test_each_carried_type_comes_back_exactly(value: object) -> None:
    """UUID, Decimal (exponent and NaNs kept), bytes, sets, non-finite floats, huge ints."""
    back = round_trip(value)
    assert same(dict(value) if type(value) is OrderedDict else value, back)


def test_a_set_is_the_same_text_in_every_process() -> None:
    """Set items are sorted, so the hash seed does not change the journal."""
    script = (
        "from flowdsl.stores._codec import dumps, encode\n"
        "print(dumps(encode({'s': set('abcdefgh'), 'f': frozenset({3, 'x', (1, 2)})})))"
    )
    texts = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": SRC},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert 1 == len(texts)
    assert '{"$":"set","v":["a","b","c","d","e","f","g","h"]}' in texts.pop()


def test_non_finite_floats_are_tagged_and_old_journals_still_read() -> None:
    """NaN and infinities become tags; the NaN tokens journals used to hold still decode."""
    assert '[{"$":"float","v":"NaN"},{"$":"float","v":"-Infinity"},1.5]' == dumps(
        encode([math.nan, -math.inf, 1.5])
    )
    assert math.isinf(decode('{"a": [Infinity]}')["a"][0])


def test_huge_ints_are_hex_whatever_limit_the_writer_runs_with(
    int_digits: Callable[[int], None],
) -> None:
    """Decimal up to 4,300 digits (the default limit): beyond, or over a lowered limit, hex."""
    big = 10**5000 + 7
    assert f'{{"$":"int","v":"{hex(big)}"}}' == dumps(encode(big))
    int_digits(0)  # unlimited here: still hex, so a reader with the default limit reads it
    text = dumps(encode({"n": big, "small": 10**4299}))
    assert hex(big) in text
    assert str(10**4299) in text
    int_digits(1000)
    text = dumps(encode([10**2000, 10**999]))
    assert hex(10**2000) in text
    assert str(10**999) in text
    assert [10**2000, 10**999] == decode(text)


def test_huge_ints_in_failure_reasons_are_recordable() -> None:
    """A reason holding one is kept; an exception whose message cannot be printed, too."""
    assert Err({"n": 10**5000}) == decode(dumps(encode(Err({"n": 10**5000}))))
    recorded = decode(dumps(encode_reason(ValueError(10**5000))))
    assert ("ValueError", "<ValueError object>") == (recorded.type, recorded.message)


# -- Enum members ----------------------------------------------------------------------------


def test_enum_members_come_back_as_members() -> None:
    """By class and value: an IntEnum stays a member, a Flag combination too, keys too."""
    value = {"c": Color.RED, "l": Level.HIGH, "p": Perm.R | Perm.W, Level.LOW: Shape.SQUARE}
    back = round_trip(value)
    assert same(value, back)
    assert '{"$":"enum","type":"test_codec.Color","v":"red"}' == dumps(encode(Color.RED))


def test_an_enum_the_reader_has_not_imported_is_its_value_or_fails_strictly() -> None:
    """Nothing is imported to read a journal: without the class, the member is its value."""
    text = '{"$":"enum","type":"tabnanny.NannyNag","v":1}'
    assert "tabnanny" not in sys.modules
    assert 1 == decode(text)
    with pytest.raises(Unregistered, match=r"the Enum 'tabnanny\.NannyNag', which is not imported"):
        decode(text, strict=True)
    assert "tabnanny" not in sys.modules


def test_only_an_enum_class_is_looked_up_by_name() -> None:
    """A tag naming a function (os.system) reads as plain data; nothing is called."""
    assert "echo hacked" == decode('{"$":"enum","type":"os.system","v":"echo hacked"}')


def test_a_member_that_no_longer_exists_is_its_value_or_fails_strictly() -> None:
    """A value the Enum does not have any more (a renamed member) is kept as the value."""
    text = '{"$":"enum","type":"test_codec.Color","v":"blue"}'
    assert "blue" == decode(text)
    with pytest.raises(Undecodable, match=r"test_codec\.Color has no member with the value 'blue'"):
        decode(text, strict=True)


def test_an_enum_that_cannot_be_found_by_name_is_refused_unless_registered() -> None:
    """A class defined in a function could not be read back, so it fails when written."""

    class Local(enum.Enum):
        ONE = 1

    with pytest.raises(Unencodable) as caught:
        encode({"k": [Local.ONE]})
    assert (Local.ONE, ["k", 0]) == (caught.value.value, caught.value.path[::-1])
    assert "cannot be found by that name" in caught.value.why
    assert "register_type(cls, name=...)" in caught.value.hint
    register_type(Local, name="tests.Local")
    assert Local.ONE is round_trip(Local.ONE, strict=True)


def test_an_enum_value_the_journal_cannot_hold_is_named() -> None:
    """The member is the offending value; why says what its value is."""
    Odd = enum.Enum("Odd", {"ONE": 1j}, module=__name__)
    globals()["Odd"] = Odd
    try:
        with pytest.raises(Unencodable) as caught:
            encode(Odd.ONE)
    finally:
        del globals()["Odd"]
    assert (Odd.ONE, "its value is a complex") == (caught.value.value, caught.value.why)


# -- registered types ------------------------------------------------------------------------


def test_registered_types_come_back_as_their_class() -> None:
    """What to_json returns is journaled like any value (datetimes, tuples, nested types)."""
    value = {
        "p": Point(Point(1, (2, 3)), datetime(2024, 1, 1, tzinfo=UTC)),
        "m": Money(Decimal("9.99"), "EUR"),
    }
    assert same(value, round_trip(value, strict=True))
    assert Money(Decimal("9.99"), "EUR") == round_trip(Money(Decimal("9.99"), "EUR"))


def test_an_unregistered_class_reads_as_its_json_form_or_fails_strictly() -> None:
    """Listing runs never fails on a class this process does not know; a replay does."""
    text = dumps(encode({"p": Point(1, 2)}))
    del _codec._by_name["test_codec.Point"]
    assert {"p": {"x": 1, "y": 2}} == decode(text)
    with pytest.raises(Unregistered) as caught:
        decode(text, strict=True)
    assert "test_codec.Point" == caught.value.type
    assert "import the module that calls flowdsl.register_type(Point, ...) first" in str(
        caught.value
    )


def test_a_failing_from_json_reads_as_the_json_form_or_fails_strictly() -> None:
    """A from_json that raises (the class changed) does not break a read."""
    register_type(Point, lambda p: {"x": p.x}, lambda data: Point(**data))
    text = dumps(encode(Point(1, 2)))
    assert {"x": 1} == decode(text)
    with pytest.raises(Undecodable, match=r"from_json of test_codec\.Point raised TypeError"):
        decode(text, strict=True)


def test_a_failing_to_json_fails_the_value_not_the_journal() -> None:
    """Its exception is the why of an Unencodable; a reason holding it is still recorded."""

    def broken(value: object) -> object:
        raise KeyError("x")

    register_type(Point, broken, lambda data: Point(**data))
    with pytest.raises(Unencodable) as caught:
        encode({"p": Point(1, 2)})
    assert ("its to_json raised KeyError: 'x'", ["p"]) == (caught.value.why, caught.value.path)
    assert RecordedError("test_codec.Point", "Point(x=1, y=2)") == decode(
        dumps(encode_reason(Point(1, 2)))
    )


def test_a_subclass_of_a_registered_class_is_not_registered() -> None:
    """Classes are matched exactly: a subclass would come back as its base."""

    class Point3(Point):
        pass

    with pytest.raises(Unencodable) as caught:
        encode(Point3(1, 2))
    assert "register its class with flowdsl.register_type(cls, to_json, from_json)" in (
        caught.value.hint
    )


def test_name_keeps_reading_a_renamed_class() -> None:
    """Journals written under the old name read back as the class registered under it."""
    text = dumps(encode(Point(1, 2))).replace("test_codec.Point", "shop.models.Pt")

    @dataclasses.dataclass
    class Renamed:
        x: int
        y: int

    register_type(Renamed, dataclasses.asdict, lambda data: Renamed(**data), name="shop.models.Pt")
    assert Renamed(1, 2) == decode(text, strict=True)
    assert text == dumps(encode(Point(1, 2))).replace("test_codec.Point", "shop.models.Pt")
    assert '"type":"shop.models.Pt"' in dumps(encode(Renamed(1, 2)))


def test_registering_a_redefined_class_again_replaces_it() -> None:
    """A class defined again under the same name (reload, a notebook cell) takes over."""

    def define() -> type:
        @dataclasses.dataclass
        class Cell:
            v: int

        register_type(Cell, dataclasses.asdict, lambda data: Cell(**data))
        return Cell

    old, new = define(), define()
    back = round_trip(old(1))
    assert (new, 1) == (type(back), back.v)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: register_type(3, str, int), r"takes a class as its first argument, got 3"),  # type: ignore[call-overload]
        (
            lambda: register_type(datetime, str, datetime.fromisoformat),
            r"register_type\(datetime.datetime\): the journal carries datetime.datetime values",
        ),
        (lambda: register_type(dict, str, dict), r"the journal carries dict values already"),
        (
            lambda: register_type(Money),  # type: ignore[call-overload]
            r"register_type\(test_codec.Money\) needs to_json and from_json",
        ),
        (
            lambda: register_type(Money, attrs.asdict),  # type: ignore[call-overload]
            r"from_json must be a function taking what to_json returned and returning a Money, got None",
        ),
        (
            lambda: register_type(Money, "asdict", dict),  # type: ignore[arg-type]
            r"to_json must be a function taking a Money and returning what to keep, got 'asdict'",
        ),
        (
            lambda: register_type(Money, attrs.asdict, dict, name=""),
            r"name must be a non-empty str, got ''",
        ),
        (
            lambda: register_type(Money, attrs.asdict, dict, name="money"),
            r"test_codec.Money is registered as 'test_codec.Money' already",
        ),
        (
            lambda: register_type(Color, name="test_codec.Point"),
            r"the name 'test_codec.Point' is registered for another class, test_codec.Point; "
            r"pass name= to give this one its own",
        ),
    ],
)
def test_register_type_refuses_bad_arguments_saying_what_to_do(
    call: Callable[[], None], message: str
) -> None:
    """A UsageError that names the class and the fix."""
    with pytest.raises(UsageError, match=message):
        call()


def test_register_type_is_idempotent_for_the_same_class_and_name() -> None:
    """Registering again (a module imported twice) replaces the functions."""
    register_type(Point, lambda p: {"x": p.x, "y": p.y, "again": True}, lambda d: Point(d["x"], 0))
    assert Point(1, 0) == round_trip(Point(1, 2))


# -- where an unencodable value is -----------------------------------------------------------


def test_a_value_containing_itself_is_named_where_it_refers_to_itself() -> None:
    """The path runs from the top down to the reference; the type is the container's."""
    loop: dict[str, Any] = {"name": "root"}
    loop["a"] = loop
    with pytest.raises(Unencodable) as caught:
        encode(Ok({"out": loop, "fine": 1}))
    assert (loop, ["out", "a"]) == (caught.value.value, caught.value.path[::-1])
    assert "it contains itself" == caught.value.why
    assert "Return a copy without the reference to itself" == caught.value.hint


def test_a_list_containing_itself_deep_down_is_found() -> None:
    """The cycle can start below the top and run through several containers."""
    inner: list[Any] = [1]
    inner.append({"back": (inner,)})
    with pytest.raises(Unencodable) as caught:
        encode({"x": [[inner]]})
    assert (inner, ["x", 0, 0, 1, "back", 0]) == (caught.value.value, caught.value.path[::-1])


def test_a_value_nested_too_deeply_is_named_down_to_where_the_limit_was_hit() -> None:
    """A 5,000-deep list: the path reaches MAX_DEPTH levels down, the type is a list."""
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(Unencodable) as caught:
        encode({"deep": deep})
    assert ["deep", *[0] * MAX_DEPTH] == caught.value.path[::-1]
    assert (list, f"it is nested more than {MAX_DEPTH} levels deep") == (
        type(caught.value.value),
        caught.value.why,
    )


def test_an_unencodable_value_deep_in_a_tuple_is_named() -> None:
    """Indexes of tuples and keys of dicts make up the path."""
    with pytest.raises(Unencodable) as caught:
        encode({"cfg": {"opts": (1, [2, (3, object())])}})
    assert ["cfg", "opts", 1, 1, 1] == caught.value.path[::-1]
    assert object is type(caught.value.value)


def test_a_long_path_is_shortened_in_the_middle() -> None:
    """Messages stay readable: the first six and last three steps are shown."""
    assert "['a'][0][1][2][3][4]...(91 more)...[96][97][98]" == describe_path(
        [*range(98, -1, -1), "a"]
    )
    assert "['s']{0.5j}" == describe_path([_codec._Member(0.5j), "s"])


def test_the_deepest_value_round_trips_with_most_of_the_stack_in_use() -> None:
    """MAX_DEPTH is far below the recursion limit, even for tags that nest three JSON levels."""
    value: object = "leaf"
    for _ in range(MAX_DEPTH):
        value = {(1,): value}  # each level is {"$":"map","v":[[key, value]]}
    free = 400

    def at_depth(frames: int) -> object:
        if frames:
            return at_depth(frames - 1)
        return decode(dumps(encode(value)))

    used = len(_stack())
    assert same(value, at_depth(sys.getrecursionlimit() - used - free))
    with pytest.raises(Unencodable):
        encode([value])


def _stack() -> list[object]:
    frames = []
    frame = sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return frames


def test_no_nesting_can_crash_the_interpreter() -> None:
    """With the recursion limit lifted, a million levels are refused, not a C stack overflow."""
    script = textwrap.dedent(
        """
        import sys
        sys.setrecursionlimit(10**7)
        from flowdsl.stores._codec import Unencodable, decode, dumps, encode, encode_lenient, encode_reason
        deep = []
        nested = {}
        for _ in range(10**6):
            deep = [deep]
            nested = {"n": nested}
        for value in (deep, nested, {"a": deep}):
            try:
                encode(value)
            except Unencodable as exc:
                assert exc.deep, exc
            else:
                raise AssertionError("encoded")
            decode(dumps(encode_lenient(value)))
            decode(dumps(encode_reason(value)))
        print("refused")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC},
        timeout=120,
    )
    assert ("refused\n", 0) == (done.stdout, done.returncode), done.stderr


def test_lenient_encoding_replaces_only_the_key_that_cannot_be_kept() -> None:
    """A run's output keeps every other key; an odd value inside a key is kept as its repr."""
    loop: dict[str, Any] = {}
    loop["self"] = loop
    back = decode(dumps(encode_lenient({"ok": 1, "loop": loop, "odd": [1, 1j]})))
    assert 1 == back["ok"]
    assert (
        RecordedError("dict", "{'self': {'self': {'self': {'self': {'self': {'self': {...}}}}}}}")
        == (back["loop"])
    )
    assert [1, RecordedError("complex", "1j")] == back["odd"]


# -- decoding strictly -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not journal JSON: Expecting property name"),
        ("1" * 5000, "not journal JSON: Exceeds the limit"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply to read"),
        ('{"$": "pickle", "v": 1}', "unknown tag {'$': 'pickle', 'v': 1}"),
        ('{"$": 7}', "unknown tag"),
        ('{"$": "tuple"}', "malformed 'tuple' tag (keys [])"),
        ('{"$": "tuple", "v": [], "w": 1}', "malformed 'tuple' tag (keys ['v', 'w'])"),
        ('{"$": "tuple", "v": "abc"}', "'v' must be a list"),
        ('{"$": "map", "v": [[1, 2, 3]]}', "list of [key, value] pairs"),
        ('{"$": "map", "v": [[[1], 2]]}', "unhashable type: 'list'"),
        ('{"$": "set", "v": [{"a": 1}]}', "unhashable type: 'dict'"),
        ('{"$": "goto", "to": 3, "u": {}}', "'to' must be a step name or null"),
        ('{"$": "goto", "to": null, "u": []}', "'u' must be an object"),
        ('{"$": "exc", "type": 1, "message": "", "traceback": null}', "'type' must be a string"),
        ('{"$": "group", "v": []}', "at least one reason"),
        ('{"$": "float", "v": "1.5"}', "'v' must be 'NaN', 'Infinity' or '-Infinity'"),
        ('{"$": "int", "v": "12"}', "hexadecimal int"),
        ('{"$": "datetime", "v": "yesterday"}', "Invalid isoformat string"),
        ('{"$": "datetime", "v": "2024-01-01", "fold": 2}', "'fold' must be 1"),
        ('{"$": "time", "v": "10:00", "name": "X"}', "'name' needs a time with a UTC offset"),
        ('{"$": "date", "v": 20240101}', "'v' must be a string"),
        ('{"$": "uuid", "v": "nope"}', "badly formed hexadecimal UUID string"),
        ('{"$": "decimal", "v": "1,5"}', "'v' must be a decimal number"),
        ('{"$": "bytes", "v": "not base64!"}', "malformed 'bytes' tag"),
        ('{"$": "enum", "type": ["x"], "v": 1}', "'type' must be a string"),
        ('{"$": "obj", "v": 1}', "malformed 'obj' tag (keys ['v'])"),
    ],
)
def test_decoding_what_dumps_cannot_have_written_is_undecodable(text: str, message: str) -> None:
    """Invalid JSON, unknown tags, missing keys, wrong shapes: one exception, a short reason."""
    with pytest.raises(Undecodable) as caught:
        decode(text)
    assert message in str(caught.value)


# -- through a durable run -------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "runs.db") as opened:
        yield opened


def in_loop(main: Callable[[], Coroutine[Any, Any, Run]]) -> Run:
    return asyncio.run(main())


WHEN = datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS)


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_datetime_output_is_journaled_and_replayed_on_resume(store: SQLiteStore) -> None:
    """A step returning a datetime completes; the resumed run reads it from the journal."""
    calls: list[str] = []
    seen: list[object] = []
    reached, release = asyncio.Event(), asyncio.Event()

    @workflow
    def dated() -> None:
        @step
        async def stamp(ctx: Any) -> Any:
            calls.append("stamp")
            return ok({"when": WHEN, "ids": {uuid.UUID(int=1)}})

        @step
        async def use(ctx: Any) -> Any:
            seen.append(ctx["when"])
            if not release.is_set():
                reached.set()
                await release.wait()
            return ok({"day": ctx["when"].date()})

    async def main() -> Run:
        task = asyncio.ensure_future(arun_workflow(dated, run_id="d1", store=store))
        await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        return await arun_workflow(dated, run_id="d1", store=store)

    run = in_loop(main)
    assert ("completed", ["stamp"]) == (run.status, calls)
    assert 2 == len(seen)
    assert all(same(WHEN, when) for when in seen)
    stored = store.get_run("d1")
    assert stored is not None
    # A set entering the context is frozen (the context is read-only all the way down).
    expected = {"when": WHEN, "ids": frozenset({uuid.UUID(int=1)}), "day": date(2024, 10, 27)}
    assert same(expected, dict(stored.output))


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_huge_int_output_completes_the_run(store: SQLiteStore) -> None:
    """A 5,000-digit int (and NaN) is journaled: the run completes, not left "running"."""

    @workflow
    def counted() -> None:
        step(lambda ctx: ok({"n": 10**5000, "ratio": math.nan}), name="count")

    run = run_workflow(counted, run_id="h1", store=store)
    stored = store.get_run("h1")
    assert stored is not None
    assert ("completed", "completed", 10**5000) == (run.status, stored.status, stored.output["n"])
    assert math.isnan(stored.output["ratio"])


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_huge_int_in_an_input_or_a_failure_reason_is_recorded(store: SQLiteStore) -> None:
    """The input is journaled, and so is the reason of the step that fails with it."""

    @workflow
    def refuses() -> None:
        step(lambda ctx: error({"too_big": ctx["n"]}), name="check")

    run = run_workflow(refuses, {"n": 10**5000}, run_id="h2", store=store)
    stored = store.get_run("h2")
    assert stored is not None
    assert ("failed", "failed") == (run.status, stored.status)
    assert {"too_big": 10**5000} == stored.error


@pytest.mark.usefixtures("flowdsl_registry")
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda: (lambda d: (d.update(a=d), {"out": d})[1])({}),
            "key 'out' holds a dict (at 'out'['a']): it contains itself. Return a copy",
        ),
        (
            lambda: {"deep": functools.reduce(lambda inner, _: [inner], range(5000), [])},
            "key 'deep' holds a list (at 'deep'[0][0][0][0][0][0]...(",
        ),
        (
            lambda: {"cfg": {"opts": (1, [2, (3, object())])}},
            "key 'cfg' holds a object (at 'cfg'['opts'][1][1][1]). The journal keeps",
        ),
        (
            lambda: {"p": Point(1, 1j)},
            "key 'p' holds a complex (at 'p'['y']): inside what to_json returned for a test_codec.Point",
        ),
    ],
    ids=["contains-itself", "too-deep", "deep-in-a-tuple", "in-a-registered-type"],
)
def test_the_serialization_error_names_the_real_key_path_and_type(
    store: SQLiteStore, make: Callable[[], dict[str, Any]], problem: str
) -> None:
    """The step fails with a SerializationError naming where the value is; the run is failed."""

    @workflow
    def odd() -> None:
        step(lambda ctx: ok(make()), name="build")

    run = run_workflow(odd, run_id="s1", store=store)
    assert ("failed", "build", SerializationError) == (run.status, run.failed_step, type(run.error))
    assert problem in str(run.error)
    stored = store.get_run("s1")
    assert stored is not None
    assert ("failed", str(run.error)) == (stored.status, stored.error.message)


@pytest.mark.usefixtures("flowdsl_registry")
def test_the_input_error_names_the_real_key_path_and_type(store: SQLiteStore) -> None:
    """An input that contains itself is refused naming the key, before anything runs."""
    loop: dict[str, Any] = {}
    loop["again"] = loop

    @workflow
    def takes() -> None:
        step(lambda ctx: ok(), name="a")

    with pytest.raises(SerializationError) as caught:
        run_workflow(takes, {"n": 1, "tree": loop}, store=store)
    assert (
        "cannot be journaled: key 'tree' holds a dict (at 'tree'['again']): it contains itself"
    ) in str(caught.value)
    assert [] == store.list_runs()


@pytest.mark.usefixtures("flowdsl_registry")
def test_runs_holding_a_class_this_process_does_not_know_still_list(store: SQLiteStore) -> None:
    """Reading a run back never needs its classes: they read as their JSON form."""

    @workflow
    def pointed() -> None:
        step(lambda ctx: ok({"p": Point(1, 2), "c": Color.GREEN}), name="make")

    run_workflow(pointed, run_id="p1", store=store)
    assert Point(1, 2) == store.get_run("p1").output["p"]  # type: ignore[union-attr]
    del _codec._by_name["test_codec.Point"]
    [listed] = store.list_runs()
    assert {"p": {"x": 1, "y": 2}, "c": Color.GREEN} == dict(listed.output)


class Probe:
    """A registered type whose to_json says which thread encodes it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_large_outcome_or_output_is_encoded_in_a_thread_in_journal_order(
    store: SQLiteStore,
) -> None:
    """The loop is not held by a large encoding; small ones stay on it; the order is kept."""
    encoded: list[tuple[str, bool]] = []
    loop_threads: list[threading.Thread] = []

    def to_json(probe: Probe) -> str:
        encoded.append((probe.tag, threading.current_thread() in loop_threads))
        return probe.tag

    register_type(Probe, to_json, Probe)

    @workflow
    def sized() -> None:
        @step
        async def small(ctx: Any) -> Any:
            loop_threads.append(threading.current_thread())
            return ok({"small": Probe("small")})

        @step
        async def large(ctx: Any) -> Any:
            return ok({"large": [Probe("large"), *range(LARGE)]})

        @step
        async def last(ctx: Any) -> Any:
            return ok({"last": Probe("last")})

    run = run_workflow(sized, run_id="big", store=store)
    assert "completed" == run.status
    stored = store.get_run("big")
    assert stored is not None
    assert ["small", "large", "last"] == [record.name for record in stored.steps]
    assert [*range(LARGE)] == stored.output["large"][1:]
    assert ["small", "large", "last"] == [
        stored.output["small"].tag,
        stored.output["large"][0].tag,
        stored.output["last"].tag,
    ]
    on_loop = [("small", True), ("large", False), ("last", True)]
    the_output = [("small", False), ("large", False), ("last", False)]
    assert on_loop + the_output == encoded
