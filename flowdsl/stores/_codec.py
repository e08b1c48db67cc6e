"""The journal's data format: strict JSON with a few tags, never pickle.

What a durable store keeps (step outcomes, a run's input and output, failure
reasons) is encoded here, so every store shares one format. Plain JSON values
are written as they are; the rest is a small object whose ``"$"`` key names
what it holds, so that what is read back has the type that was written:

====================================  =======================================
value                                 JSON
====================================  =======================================
``None``, bool, str, list, dict with  themselves (another mapping with str
str keys, finite float, int of at     keys: as a dict)
most 4,300 digits (fewer if the
process's int/str limit is lower)
int of more digits                    ``{"$": "int", "v": "-0x1f..."}`` (hex)
``nan``, ``inf``, ``-inf``            ``{"$": "float", "v": "NaN"}`` (or
                                      ``"Infinity"``, ``"-Infinity"``)
tuple                                 ``{"$": "tuple", "v": [...]}``
set, frozenset                        ``{"$": "set", "v": [...]}``,
                                      ``{"$": "frozenset", "v": [...]}``
                                      (items sorted: the same set is always
                                      the same text)
other mapping (non-str keys, or a     ``{"$": "map", "v": [[key, value], ...]}``
``"$"`` key)
``datetime``, ``time``                ``{"$": "datetime", "v": isoformat}``,
                                      ``{"$": "time", ...}``; with
                                      ``"zone": key`` for a ``ZoneInfo``,
                                      ``"name": tzname`` for a named
                                      ``timezone``, ``"fold": 1``
``date``                              ``{"$": "date", "v": "2024-05-01"}``
``UUID``                              ``{"$": "uuid", "v": str(u)}``
``Decimal``                           ``{"$": "decimal", "v": str(d)}``
``bytes``                             ``{"$": "bytes", "v": base64}``
an ``Enum`` member                    ``{"$": "enum", "type": name, "v": value}``
a `register_type` class               ``{"$": "obj", "type": name,
                                      "v": to_json(value)}``
``Ok(value)``                         ``{"$": "ok", "v": value}``
``Err(reason)``                       ``{"$": "err", "v": reason}``
``goto(target, update)``              ``{"$": "goto", "to": target, "u": update}``
an exception (a failure reason)       ``{"$": "exc", "type": ..., "message": ...,
                                      "traceback": ...}``, read back as a
                                      `RecordedError`
``ErrorGroup``                        ``{"$": "group", "v": [reason, ...]}``
====================================  =======================================

A class is named by its registered name (``module.qualname`` unless
``register_type(name=...)``); an Enum class that is not registered by
``module.qualname``, and it must be reachable by that name. Reading never
imports anything: a registered type comes back as its class when it is
registered in the reading process, an Enum member when its class is
registered or its module is already imported; otherwise `decode` gives the
JSON form (what ``to_json`` returned, the member's value) and
``decode(strict=True)`` raises `Unregistered`.

Encoding a value fails with `Unencodable` (which knows where in the value the
problem is and how to fix it); encoding a failure reason never fails: what
JSON cannot hold is kept as its type and ``repr``. Values nested deeper than
`MAX_DEPTH` levels are refused (a value that contains itself hits that limit
too), so no walk here, in ``json`` or in the reader can exhaust the stack.
`decode` of anything `dumps` did not write raises `Undecodable`.

The journal is written with `encode_text` (``dumps(encode(value))``), which
hands what the walk made to orjson when the ``flowdsl[fast]`` extra is
installed: the same text, written several times faster.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime as _dt
import gc
import importlib
import json
import math
import re
import reprlib
import sys
import threading
import traceback as _traceback
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Any, Final, TypeAlias, TypeVar, overload

import attrs

from .._engine._context import (
    PLAIN,
    PLAIN_DICTS,
    PLAIN_HEIGHT,
    PLAIN_LISTS,
    SMALL_FLOAT,
    FrozenDict,
    FrozenList,
)
from .._outcome import Goto
from .._plan import END
from ..errors import FlowError, UsageError
from ..result import Err, ErrorGroup, Ok


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - the tests run with the extras installed
        return None


orjson: Any = _optional("orjson")
"""The optional flowdsl[fast] extra: a faster writer of the same text (None without it)."""

__all__ = [
    "MAX_DEPTH",
    "RecordedError",
    "Undecodable",
    "Unencodable",
    "Unregistered",
    "decode",
    "describe_path",
    "dumps",
    "encode",
    "encode_lenient",
    "encode_lenient_text",
    "encode_reason",
    "encode_reason_text",
    "encode_text",
    "is_large",
    "register_type",
    "type_name",
]

Json: TypeAlias = Any
_T = TypeVar("_T")
_TAG: Final = "$"
_STR: Final = frozenset({str})

MAX_DEPTH: Final = 100
"""Levels of nesting a journaled value may have: far below the interpreter's recursion
limit even for the JSON it becomes (a tag nests at most three JSON levels per value level)."""

# Python refuses to write or read an int of more decimal digits than this (its default
# sys.get_int_max_str_digits()); longer ones are written in hex, so every reader can read
# every journal whatever limit its writer ran with.
_DIGITS: Final = 4300

_JOURNAL_TYPES: Final = (
    "JSON values, tuples, sets, datetime/date/time, UUID, Decimal, bytes and Enum members"
)
_TYPE_HINT: Final = (
    f"The journal keeps {_JOURNAL_TYPES}; convert the value first, or register its class "
    f"with flowdsl.register_type(cls, to_json, from_json)"
)

# ensure_ascii: a lone surrogate (a file name decoded with surrogateescape, say) is
# written as an escape and read back the same, instead of failing sqlite's UTF-8.
# allow_nan=False: the journal is strict JSON; dumps() tags what this refuses.
_dumps = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), check_circular=False, allow_nan=False
).encode


class RecordedError(FlowError):
    """A failure reason read back from a journal, standing in for the original exception.

    A durable store keeps an exception as its type's name, its message and its
    traceback text (JSON, never pickle), so after a resume, or in a `Run` read
    with ``store.get_run()``, a step's exception comes back as this value:
    ``type`` is the exception class's qualified name (``"ValueError"``,
    ``"myapp.errors.Declined"``), ``message`` is ``str(exc)`` and
    ``traceback`` the formatted traceback (``None`` when there was none).
    ``str()`` reads like the original: ``"ValueError: bad card"``.
    """

    def __init__(self, type: str, message: str, traceback: str | None = None) -> None:
        super().__init__(type, message, traceback)
        self.type = type
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    def __repr__(self) -> str:
        return f"RecordedError({self.type!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not RecordedError:
            return NotImplemented
        return (self.type, self.message, self.traceback) == (
            other.type,
            other.message,
            other.traceback,
        )

    def __hash__(self) -> int:
        return hash((RecordedError, self.type, self.message))


class Unencodable(Exception):
    """A value (somewhere inside what was encoded) that the journal's JSON cannot hold.

    ``value`` is the offending value, ``why`` says what is wrong with it when
    its type alone does not (``""`` otherwise), ``hint`` how to fix it, and
    ``path`` where it is.
    """

    def __init__(self, value: object, why: str = "", hint: str = _TYPE_HINT) -> None:
        super().__init__(value)
        self.value = value
        self.why = why
        self.hint = hint
        self.deep = False
        """It hit `MAX_DEPTH` (or contains itself): lenient encoding cannot keep it in place."""
        self.path: list[object] = []
        """Keys and indexes from the offending value out to the top (innermost first)."""
        self.chain: list[object] = []
        """The containers `path` runs through, innermost first (to find a value containing itself)."""


class Undecodable(ValueError):
    """Journal text that `dumps` did not write: not JSON, or a malformed or unknown tag."""


class Unregistered(Undecodable):
    """``decode(strict=True)`` met a class that is not registered in this process."""

    def __init__(self, message: str, type: str) -> None:
        super().__init__(message)
        self.type = type


def type_name(obj: object) -> str:
    """``"ValueError"`` for builtins, else ``"module.Qualname"``."""
    return _class_name(type(obj))


def _class_name(cls: type) -> str:
    if issubclass(cls, (FrozenDict, FrozenList)):  # what the step returned, frozen: a dict, a list
        return "dict" if issubclass(cls, dict) else "list"
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


class _Member:
    """A path step into a set, which has no keys: shown as the member itself."""

    __slots__ = ("item",)

    def __init__(self, item: object) -> None:
        self.item = item

    def __repr__(self) -> str:
        return _brief_repr(self.item)


def describe_path(path: list[object]) -> str:
    """``['a'][0]`` for a path collected innermost first (a long one is shortened)."""
    parts = [f"{{{part!r}}}" if type(part) is _Member else f"[{part!r}]" for part in reversed(path)]
    if len(parts) > 12:
        parts[6:-3] = [f"...({len(parts) - 9} more)..."]
    return "".join(parts)


# -- registered types -----------------------------------------------------------------------


@attrs.frozen
class _Registration:
    cls: type
    name: str
    to_json: Callable[[Any], object] | None
    from_json: Callable[[Any], object] | None


_lock = threading.Lock()
_by_name: dict[str, _Registration] = {}
_by_class: dict[type, _Registration] = {}


@overload
def register_type(
    cls: type[_T],
    to_json: Callable[[_T], object],
    from_json: Callable[[Any], _T],
    *,
    name: str | None = None,
) -> None: ...
@overload
def register_type(cls: type[Enum], *, name: str | None = None) -> None: ...
def register_type(
    cls: type[Any],
    to_json: Callable[[Any], object] | None = None,
    from_json: Callable[[Any], object] | None = None,
    *,
    name: str | None = None,
) -> None:
    """Let durable runs journal instances of `cls`, and read them back as `cls`.

    ``to_json(value)`` returns what the journal keeps (any value the journal
    carries: a dict of fields, say); ``from_json(data)`` gets that back and
    rebuilds the value. An Enum class needs neither (its members are carried
    by value already); registering it gives it a name. The name in the journal
    is ``module.qualname``; pass ``name=`` to keep reading a class under the
    name it had when it was journaled (after a rename), or for a class defined
    inside a function. Register in the module that defines the class, so every
    process that imports it (a resume, a worker, the CLI) can read it back.
    """
    if not isinstance(cls, type):
        msg = f"register_type() takes a class as its first argument, got {_brief_repr(cls)}"
        raise UsageError(msg)
    label = _class_name(cls)
    if cls in _CARRIED:
        msg = (
            f"register_type({label}): the journal carries {label} values already; "
            f"register only classes it does not carry"
        )
        raise UsageError(msg)
    if name is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
    elif not isinstance(name, str) or not name:
        msg = f"register_type({label}, name=...): name must be a non-empty str, got {name!r}"
        raise UsageError(msg)
    if to_json is None and from_json is None:
        if not issubclass(cls, Enum):
            msg = (
                f"register_type({label}) needs to_json and from_json, e.g. "
                f"register_type({cls.__qualname__}, to_json=lambda value: {{...}}, "
                f"from_json=lambda data: {cls.__qualname__}(...)); only an Enum class "
                f"can be registered without them"
            )
            raise UsageError(msg)
    else:
        for role, fn, what in (
            ("to_json", to_json, f"a {cls.__qualname__} and returning what to keep"),
            ("from_json", from_json, f"what to_json returned and returning a {cls.__qualname__}"),
        ):
            if not callable(fn):
                msg = (
                    f"register_type({label}): {role} must be a function taking {what}, "
                    f"got {_brief_repr(fn)}"
                )
                raise UsageError(msg)
    entry = _Registration(cls, name, to_json, from_json)
    with _lock:
        known = _by_class.get(cls)
        if known is not None and known.name != name:
            msg = (
                f"register_type({label}, name={name!r}): {label} is registered as "
                f"{known.name!r} already; a class has one name in the journal"
            )
            raise UsageError(msg)
        other = _by_name.get(name)
        if other is not None and not _same_definition(other.cls, cls):
            msg = (
                f"register_type({label}): the name {name!r} is registered for another "
                f"class, {_class_name(other.cls)}; pass name= to give this one its own"
            )
            raise UsageError(msg)
        # The same class again, or a redefinition of it (importlib.reload, a notebook
        # cell run twice): the newest definition reads the name back, both write it.
        _by_name[name] = entry
        _by_class[cls] = entry
        _encoders.pop(cls, None)  # an Enum class cached under its default name


def _same_definition(a: type, b: type) -> bool:
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _find_class(name: str) -> object:
    """The object `name` (``module.qualname``) names in an imported module, or None.

    Nothing is imported and no module ``__getattr__`` runs: only module and
    class dictionaries are read.
    """
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        found: object = sys.modules.get(".".join(parts[:split]))
        if found is None:
            continue
        for part in parts[split:]:
            space = getattr(found, "__dict__", None)
            found = space.get(part) if isinstance(space, Mapping) else None
            if found is None:
                break
        else:
            return found
    return None


# -- encoding -------------------------------------------------------------------------------

# A nonzero float of magnitude below SMALL_FLOAT may be written by orjson unlike ``repr``:
# the walk counts each it meets, so the writer checks orjson's text only then.


class _Seen(threading.local):
    small = 0
    """Small floats the walk has met in this thread (only ever grows: nested writes add)."""


_seen: Final = _Seen()

_Fallback: TypeAlias = Callable[[object], Json] | None
_Encoder: TypeAlias = Callable[[Any, _Fallback, int], Json]


def _encode(value: Any, fallback: _Fallback, depth: int) -> Json:
    # The hot path: plain JSON comes back as it is, a container only copied (at C speed)
    # when something inside it changes, so a plain value costs one walk and no copy.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value  # ints too long for decimal are dumps()'s business
    if kind is float:  # NaN and infinities are tagged here, so no writer ever sees one
        if value - value != 0.0:
            return _non_finite(value)
        if -SMALL_FLOAT < value < SMALL_FLOAT and value:
            _seen.small += 1
        return value
    if depth > MAX_DEPTH:
        raise _too_deep(value)
    if kind is dict or kind is FrozenDict:
        if _TAG in value:
            return _encode_pairs(value, fallback, depth)
        out: Any = None
        tallest = 0  # the tallest plain part so far; -1 once a part is not plain
        for key, item in value.items():
            if type(key) is not str:
                return _encode_pairs(value, fallback, depth)
            each = type(item)
            if each is str or each is int or each is bool or item is None:
                continue
            if each is float and item - item == 0.0:  # finite
                if -SMALL_FLOAT < item < SMALL_FLOAT and item:
                    _seen.small += 1
                    tallest = -1  # a small float: left for the writer to check, never marked
                continue
            try:
                encoded = _encode(item, fallback, depth + 1)
            except Unencodable as exc:
                exc.path.append(key)
                exc.chain.append(value)
                raise
            except RecursionError:  # the caller's stack was deep already
                raise _too_deep(item, key, value) from None
            if encoded is not item:
                if out is None:
                    out = dict(value)
                out[key] = encoded
            elif tallest >= 0:
                height = PLAIN.get(type(item), -1)
                if height < 0 or height > tallest:
                    tallest = height
        if out is not None:
            return out
        if kind is FrozenDict and 0 <= tallest < PLAIN_HEIGHT:
            value.__class__ = PLAIN_DICTS[tallest + 1]  # what the walk found stays true
        return value
    if kind is list or kind is tuple or kind is FrozenList:
        out = None
        tallest = 0
        for index, item in enumerate(value):
            each = type(item)
            if each is str or each is int or each is bool or item is None:
                continue
            if each is float and item - item == 0.0:
                if -SMALL_FLOAT < item < SMALL_FLOAT and item:
                    _seen.small += 1
                    tallest = -1
                continue
            try:
                encoded = _encode(item, fallback, depth + 1)
            except Unencodable as exc:
                exc.path.append(index)
                exc.chain.append(value)
                raise
            except RecursionError:
                raise _too_deep(item, index, value) from None
            if encoded is not item:
                if out is None:
                    out = list(value)
                out[index] = encoded
            elif tallest >= 0:
                height = PLAIN.get(type(item), -1)
                if height < 0 or height > tallest:
                    tallest = height
        if kind is tuple:
            return {_TAG: "tuple", "v": list(value) if out is None else out}
        if out is not None:
            return out
        if kind is FrozenList and 0 <= tallest < PLAIN_HEIGHT:
            value.__class__ = PLAIN_LISTS[tallest + 1]
        return value
    encoder = _encoders.get(kind)
    if encoder is None:
        encoder = _encoder_for(kind)
    if encoder is not None:
        try:
            return encoder(value, fallback, depth)
        except Unencodable as exc:
            if fallback is None or exc.deep:
                raise
        except RecursionError:  # a to_json that recurses, say
            raise _too_deep(value) from None
    if fallback is not None:
        return fallback(value)
    raise Unencodable(value)


def _non_finite(value: float) -> Json:
    return {
        _TAG: "float",
        "v": "NaN" if value != value else "Infinity" if value > 0 else "-Infinity",
    }


def _too_deep(value: object, key: object = None, container: object = None) -> Unencodable:
    exc = Unencodable(
        value,
        f"it is nested more than {MAX_DEPTH} levels deep",
        "Flatten it, or keep it as JSON text (json.dumps) and parse it where it is used",
    )
    exc.deep = True
    if container is not None:
        exc.path.append(key)
        exc.chain.append(container)
    return exc


def _encode_pairs(value: Mapping[Any, Any], fallback: _Fallback, depth: int) -> Json:
    pairs = []
    for key, item in value.items():
        try:
            pairs.append([_encode(key, fallback, depth + 1), _encode(item, fallback, depth + 1)])
        except Unencodable as exc:
            exc.path.append(key)
            exc.chain.append(value)
            raise
        except RecursionError:
            raise _too_deep(item, key, value) from None
    return {_TAG: "map", "v": pairs}


def _encode_mapping(value: Mapping[Any, Any], fallback: _Fallback, depth: int) -> Json:
    """Any mapping: read back as a plain dict (an `OrderedDict`, a `Context`, ...)."""
    if type(value) is dict:
        return _encode(value, fallback, depth)
    if _TAG in value or not all(type(key) is str for key in value):
        return _encode_pairs(value, fallback, depth)
    out: dict[str, Json] = {}
    for key, item in value.items():
        try:
            out[key] = _encode(item, fallback, depth + 1)
        except Unencodable as exc:
            exc.path.append(key)
            exc.chain.append(value)
            raise
        except RecursionError:
            raise _too_deep(item, key, value) from None
    return out


def _encode_set(value: set[Any] | frozenset[Any], fallback: _Fallback, depth: int) -> Json:
    items: list[Json] = []
    for item in value:
        try:
            items.append(_encode(item, fallback, depth + 1))
        except Unencodable as exc:
            exc.path.append(_Member(item))
            exc.chain.append(value)
            raise
        except RecursionError:
            raise _too_deep(item, _Member(item), value) from None
    try:  # the same set in any process (whatever its hash seed) is the same text
        items.sort()
    except TypeError:  # items of mixed kinds, or tags
        items.sort(key=dumps)
    return {_TAG: "set" if type(value) is set else "frozenset", "v": items}


def _time_zone(value: _dt.datetime | _dt.time, out: dict[str, Json]) -> dict[str, Json]:
    zone = value.tzinfo
    if value.fold:
        out["fold"] = 1
    if zone is None or zone is _dt.UTC:
        return out
    if type(zone) is _dt.timezone:
        name = zone.tzname(None)
        if name != _dt.timezone(zone.utcoffset(None)).tzname(None):
            out["name"] = name
        return out
    if isinstance(zone, zoneinfo.ZoneInfo) and zone.key is not None:
        out["zone"] = zone.key
        return out
    kind = "a zoneinfo.ZoneInfo without a key" if isinstance(zone, zoneinfo.ZoneInfo) else None
    raise Unencodable(
        value,
        f"its time zone is {kind or f'a {type_name(zone)}'}",
        "The journal keeps datetime.timezone and zoneinfo.ZoneInfo(key) time zones; "
        "convert it to one of those first",
    )


def _encode_datetime(value: _dt.datetime, fallback: _Fallback, depth: int) -> Json:
    return _time_zone(value, {_TAG: "datetime", "v": value.isoformat()})


def _encode_time(value: _dt.time, fallback: _Fallback, depth: int) -> Json:
    return _time_zone(value, {_TAG: "time", "v": value.isoformat()})


def _enum_encoder(cls: type[Enum]) -> _Encoder:
    entry = _by_class.get(cls)
    name = entry.name if entry is not None else f"{cls.__module__}.{cls.__qualname__}"
    if entry is None and _find_class(name) is not cls:
        return lambda value, fallback, depth: _lost_enum(value, name)
    return lambda value, fallback, depth: _encode_enum(value, name, fallback, depth)


def _lost_enum(value: Enum, name: str) -> Json:
    raise Unencodable(
        value,
        f"its class {name} cannot be found by that name when the journal is read "
        f"(it is defined inside a function, or made by Enum())",
        "Define the Enum at module level, or register it with flowdsl.register_type(cls, name=...)",
    )


def _encode_enum(value: Enum, name: str, fallback: _Fallback, depth: int) -> Json:
    try:
        data = _encode(value.value, fallback, depth + 1)
    except Unencodable as exc:
        if exc.deep:
            raise
        why = f"its value is a {type_name(exc.value)}"
        raise Unencodable(value, why, "Give the Enum JSON values") from None
    return {_TAG: "enum", "type": name, "v": data}


def _encode_registered(
    entry: _Registration, value: object, fallback: _Fallback, depth: int
) -> Json:
    assert entry.to_json is not None
    try:
        data = entry.to_json(value)
    except Exception as exc:  # a broken to_json fails this value, not the journal
        raise Unencodable(
            value,
            f"its to_json raised {type_name(exc)}: {_safe_str(exc)}",
            f"Fix the to_json registered for {entry.name}",
        ) from None
    try:
        encoded = _encode(data, fallback, depth + 1)
    except Unencodable as exc:
        if not exc.why:
            exc.why = f"inside what to_json returned for a {entry.name}"
        raise
    return {_TAG: "obj", "type": entry.name, "v": encoded}


def _encode_reason_in(value: Err[object], fallback: _Fallback, depth: int) -> Json:
    return {_TAG: "err", "v": _reason(value.error, depth + 1)}


def _encode_goto(value: Goto, fallback: _Fallback, depth: int) -> Json:
    target = value.target
    update = _encode_mapping(value.update, fallback, depth)
    return {_TAG: "goto", "to": None if target is END else target, "u": update}


_encoders: dict[type, _Encoder] = {
    Ok: lambda value, fallback, depth: {_TAG: "ok", "v": _encode(value.value, fallback, depth + 1)},
    Err: _encode_reason_in,
    Goto: _encode_goto,
    set: _encode_set,
    frozenset: _encode_set,
    _dt.datetime: _encode_datetime,
    _dt.date: lambda value, fallback, depth: {_TAG: "date", "v": value.isoformat()},
    _dt.time: _encode_time,
    uuid.UUID: lambda value, fallback, depth: {_TAG: "uuid", "v": str(value)},
    Decimal: lambda value, fallback, depth: {_TAG: "decimal", "v": str(value)},
    bytes: lambda value, fallback, depth: {
        _TAG: "bytes",
        "v": binascii.b2a_base64(value, newline=False).decode("ascii"),
    },
}
"""How each class that is not plain JSON is written; registered classes join it."""


def _plain_encoder(height: int) -> _Encoder:
    """A frozen container found plain before: written as it is, unless it is now too deep."""

    def encode_plain(value: Any, fallback: _Fallback, depth: int) -> Json:
        if depth + height <= MAX_DEPTH + 1:  # its deepest container within MAX_DEPTH
            return value
        return _encode(dict(value) if isinstance(value, dict) else list(value), fallback, depth)

    return encode_plain


_encoders.update({kind: _plain_encoder(height) for kind, height in PLAIN.items()})

_CARRIED: Final = frozenset({str, int, float, bool, type(None), list, tuple, dict, *_encoders})


def _encoder_for(kind: type) -> _Encoder | None:
    """The encoder of a class met for the first time (kept for the next time), or None."""
    entry = _by_class.get(kind)
    encoder: _Encoder
    if entry is not None and entry.to_json is not None:
        encoder = lambda value, fallback, depth: _encode_registered(entry, value, fallback, depth)  # noqa: E731
    elif issubclass(kind, Enum):  # registered for its name only, or not registered
        encoder = _enum_encoder(kind)
    elif issubclass(kind, Mapping):
        encoder = _encode_mapping
    else:
        return None
    _encoders[kind] = encoder
    return encoder


def _diagnose(exc: Unencodable) -> Unencodable:
    """Turn "nested too deeply" into "contains itself" when a container repeats on the path."""
    if not exc.deep:
        return exc
    seen: dict[int, int] = {}
    chain = exc.chain[::-1]  # outermost first: chain[i][path[i]] is chain[i + 1]
    path = exc.path[::-1]
    for index, container in enumerate(chain):
        first = seen.setdefault(id(container), index)
        if first != index:  # chain[first] holds itself, index levels down
            found = Unencodable(
                container,
                "it contains itself",
                "Return a copy without the reference to itself",
            )
            found.deep = True
            found.path = path[:index][::-1]
            found.chain = chain[:index][::-1]
            return found
    return exc


def encode(value: object) -> Json:
    """``value`` as data for `dumps`; raises `Unencodable` naming where the problem is."""
    try:
        return _encode(value, None, 0)
    except Unencodable as exc:
        raise _diagnose(exc) from None
    except RecursionError:  # not reached through a container: a chain of Ok(Ok(...)), say
        raise _too_deep(value) from None


def _as_repr(value: object) -> Json:
    return {_TAG: "exc", "type": type_name(value), "message": _safe_repr(value), "traceback": None}


def _as_brief_repr(value: object) -> Json:
    """`_as_repr` for a value that is nested too deeply (or contains itself): a bounded repr.

    ``repr()`` of it recurses in C, which crashes the interpreter when the
    recursion limit has been raised far enough.
    """
    return {_TAG: "exc", "type": type_name(value), "message": _brief_repr(value), "traceback": None}


def encode_lenient(value: object) -> Json:
    """Like `encode`, but a value JSON cannot hold is kept as its type and ``repr``.

    A mapping (a run's output) stays a mapping: only a value under one of its
    keys that contains itself, or is nested too deeply, is replaced.
    """
    if isinstance(value, Mapping) and _TAG not in value and set(map(type, value)) <= _STR:
        try:  # in one walk (the usual case), else key by key
            return _encode_mapping(value, _as_repr, 0)
        except (Unencodable, RecursionError):
            return {key: _lenient_one(item, 1) for key, item in value.items()}
    return _lenient_one(value, 0)


def _lenient_one(value: object, depth: int) -> Json:
    try:
        return _encode(value, _as_repr, depth)
    except (Unencodable, RecursionError):  # too deep: its own representation is all we keep
        return _as_brief_repr(value)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ (or a huge int in it) must not make recording fail
        return f"<{type_name(value)} object>"


_brief: Final = reprlib.Repr()
_brief.maxstring = _brief.maxother = 60


def _brief_repr(value: object) -> str:
    """A repr for messages: a few items and levels, whatever the value holds."""
    try:
        return _brief.repr(value)
    except Exception:
        return f"<{type_name(value)} object>"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return _safe_repr(exc)


def _exception_record(exc: BaseException) -> Json:
    message = _safe_str(exc)
    tb: str | None = None
    if exc.__traceback__ is not None or exc.__cause__ is not None or exc.__context__ is not None:
        try:
            tb = "".join(_traceback.format_exception(exc))
        except Exception:
            tb = None
    return {_TAG: "exc", "type": type_name(exc), "message": message, "traceback": tb}


def encode_reason(reason: object) -> Json:
    """A failure reason as data for `dumps`; never fails."""
    return _reason(reason, 0)


def _reason(reason: object, depth: int) -> Json:
    if type(reason) is RecordedError:
        return {
            _TAG: "exc",
            "type": reason.type,
            "message": reason.message,
            "traceback": reason.traceback,
        }
    if isinstance(reason, ErrorGroup):
        if depth > MAX_DEPTH:
            return _as_brief_repr(reason)
        return {_TAG: "group", "v": [_reason(r, depth + 1) for r in reason.errors]}
    if isinstance(reason, BaseException):
        return _exception_record(reason)
    if depth == 0:
        return encode_lenient(reason)
    return _lenient_one(reason, depth)


# -- writing text ---------------------------------------------------------------------------


def dumps(data: Json) -> str:
    """Strict JSON text for data made by `encode`, `encode_lenient` or `encode_reason`.

    Never fails on a number: a float JSON has no token for, and an int too
    long to write in decimal, are tagged here, so the common case pays nothing.
    """
    try:
        text = _dumps(data)
    except ValueError:  # nan, inf, or an int over this process's int/str digit limit
        return _dumps_tagging_numbers(data)
    except RecursionError:  # only when the caller's stack is nearly exhausted already
        raise _too_deep(data) from None
    if len(text) > _DIGITS and not 0 < sys.get_int_max_str_digits() <= _DIGITS:
        # This process may write ints that a process with the default limit cannot read.
        return _dumps_tagging_numbers(data)
    return text


# orjson writes the same JSON as `_dumps` (compact, keys in order, the same escapes and float
# digits) but UTF-8 instead of ASCII escapes, DEL unescaped, and a float between 1e-10 and
# 1e-4 as "1e-7" or "0.00001" where repr() writes "1e-07" and "1e-05"; `_write` mends the
# first two and leaves the third to `_dumps`, so the journal is the same text either way.
# (Each pattern is a regex: the regex module finds a literal faster than ``in`` does here.)
_ORJSON_EXPONENT: Final = re.compile(rb"e-[0-9](?![0-9])")
_ORJSON_SMALL: Final = re.compile(rb"0\.0000")


def _escape_non_ascii(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: the JSON escapes `_dumps` writes for what ASCII cannot hold."""
    if not isinstance(error, UnicodeEncodeError):  # pragma: no cover - only encoding uses it
        raise error
    quoted = json.encoder.encode_basestring_ascii(error.object[error.start : error.end])
    return quoted[1:-1], error.end


codecs.register_error("flowdsl.json-ascii", _escape_non_ascii)


def _write(data: Json, small: bool = True) -> str:
    """`dumps` for what `_encode` made (no NaN or infinity left in it), with orjson if installed.

    `small`: whether `data` may hold a small float (see `SMALL_FLOAT`), which orjson's text is
    then checked for. Containers marked plain never hold one.
    """
    if orjson is not None:
        try:
            out: bytes = orjson.dumps(data)
        except TypeError:  # an int beyond 64 bits, a lone surrogate, nesting past orjson's limit
            pass
        else:
            if not small or not (_ORJSON_SMALL.search(out) or _ORJSON_EXPONENT.search(out)):
                if b"\x7f" in out:
                    out = out.replace(b"\x7f", b"\\u007f")
                try:
                    return out.decode("ascii")  # one pass where all is ASCII, the common case
                except UnicodeDecodeError:
                    wide = out.decode("utf-8").encode("ascii", "flowdsl.json-ascii")
                    return wide.decode("ascii")
    return dumps(data)


def encode_text(value: object) -> str:
    """``dumps(encode(value))``, written with the fastest writer installed (the same text)."""
    return _text(encode, value)


def encode_lenient_text(value: object) -> str:
    """``dumps(encode_lenient(value))``, as `encode_text` writes it."""
    return _text(encode_lenient, value)


def encode_reason_text(reason: object) -> str:
    """``dumps(encode_reason(reason))``, as `encode_text` writes it."""
    return _text(encode_reason, reason)


def _text(encoder: Callable[[Any], Json], value: object) -> str:
    """``encoder(value)`` written; orjson's text is checked for small floats only if it met one."""
    seen = _seen.small
    data = encoder(value)
    return _write(data, _seen.small != seen)


def _dumps_tagging_numbers(data: Json) -> str:
    limit = sys.get_int_max_str_digits()
    digits = limit if 0 < limit <= _DIGITS else _DIGITS
    try:
        return _dumps(_tag_numbers(data, 10**digits))
    except RecursionError:
        raise _too_deep(data) from None


def _tag_numbers(data: Json, bound: int) -> Json:
    """A copy of `data` with non-finite floats and ints of `bound` or more tagged."""
    kind = type(data)
    if kind is float:
        return data if math.isfinite(data) else _non_finite(data)
    if kind is int:
        return data if -bound < data < bound else {_TAG: "int", "v": hex(data)}
    if isinstance(data, dict):  # a dict, or a frozen one (plain or not)
        return {key: _tag_numbers(item, bound) for key, item in data.items()}
    if isinstance(data, list):
        return [_tag_numbers(item, bound) for item in data]
    return data


# -- decoding -------------------------------------------------------------------------------


class _Bad(Exception):
    """A malformed tag, reported by `_hook` with the tag's text."""


def _str(obj: dict[str, Any], key: str = "v") -> str:
    value = obj[key]
    if type(value) is not str:
        raise _Bad(f"{key!r} must be a string")
    return value


def _list(obj: dict[str, Any]) -> list[Any]:
    value = obj["v"]
    if type(value) is not list:
        raise _Bad("'v' must be a list")
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and type(value) is not str:
        raise _Bad(f"{key!r} must be a string or null")
    return value


def _goto(obj: dict[str, Any], strict: bool) -> object:
    target, update = obj["to"], obj["u"]
    if target is not None and type(target) is not str:
        raise _Bad("'to' must be a step name or null")
    if type(update) is not dict:
        raise _Bad("'u' must be an object")
    return Goto(END if target is None else target, update)


def _exc(obj: dict[str, Any], strict: bool) -> object:
    return RecordedError(_str(obj, "type"), _str(obj, "message"), _optional_str(obj, "traceback"))


def _map(obj: dict[str, Any], strict: bool) -> object:
    pairs = _list(obj)
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            raise _Bad("'v' must be a list of [key, value] pairs")
    return dict(pairs)


_FLOATS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_HEX: Final = re.compile(r"-?0x[0-9a-f]+\Z")


def _float(obj: dict[str, Any], strict: bool) -> object:
    text = _str(obj)
    if text not in _FLOATS:
        raise _Bad("'v' must be 'NaN', 'Infinity' or '-Infinity'")
    return _FLOATS[text]


def _int(obj: dict[str, Any], strict: bool) -> object:
    text = _str(obj)
    if not _HEX.match(text):
        raise _Bad("'v' must be a hexadecimal int ('0x...')")
    return int(text, 16)


def _zone(key: str, strict: bool) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(key)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        pass
    if strict:
        raise Undecodable(
            f"the journal holds a time in the zone {key!r}, which this process does not "
            f"know; install the tzdata package"
        )
    return None  # read with the fixed offset it had


def _clock(obj: dict[str, Any], strict: bool, parse: Callable[[str], Any]) -> object:
    value = parse(_str(obj))
    zone, name, fold = _optional_str(obj, "zone"), _optional_str(obj, "name"), obj.get("fold", 0)
    if fold not in (0, 1) or type(fold) is not int:
        raise _Bad("'fold' must be 1")
    if zone is not None:
        found = _zone(zone, strict)
        if found is not None:
            value = value.replace(tzinfo=found)
    elif name is not None:
        offset = value.utcoffset()
        if offset is None:
            raise _Bad("'name' needs a time with a UTC offset")
        value = value.replace(tzinfo=_dt.timezone(offset, name))
    return value.replace(fold=1) if fold else value


def _registered(obj: dict[str, Any], strict: bool) -> object:
    name, data = _str(obj, "type"), obj["v"]
    entry = _by_name.get(name)
    if entry is None or entry.from_json is None:
        if strict:
            raise Unregistered(
                f"the journal holds a value of type {name!r}, and no class is registered "
                f"under that name in this process; import the module that calls "
                f"flowdsl.register_type({name.rpartition('.')[2]}, ...) first",
                name,
            )
        return data
    try:
        return entry.from_json(data)
    except Exception as exc:
        if strict:
            raise _Bad(f"from_json of {name} raised {type_name(exc)}: {_safe_str(exc)}") from None
        return data


def _enum(obj: dict[str, Any], strict: bool) -> object:
    name, data = _str(obj, "type"), obj["v"]
    entry = _by_name.get(name)
    cls = entry.cls if entry is not None else _find_class(name)
    if not (isinstance(cls, type) and issubclass(cls, Enum)):
        if strict:
            raise Unregistered(
                f"the journal holds a member of the Enum {name!r}, which is not imported "
                f"in this process; import its module (or register it with "
                f"flowdsl.register_type) first",
                name,
            )
        return data
    try:
        return cls(data)
    except Exception:  # ValueError: the member was renamed or removed since
        if strict:
            raise _Bad(f"{name} has no member with the value {_brief_repr(data)}") from None
        return data


def _decimal(obj: dict[str, Any], strict: bool) -> object:
    text = _str(obj)
    try:
        return Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation
        raise _Bad("'v' must be a decimal number") from None


def _group(obj: dict[str, Any], strict: bool) -> object:
    reasons = _list(obj)
    if not reasons:
        raise _Bad("'v' must hold at least one reason")
    return ErrorGroup(reasons)


_Decoder: TypeAlias = Callable[[dict[str, Any], bool], object]

_decoders: Final[dict[str, tuple[frozenset[str], frozenset[str], _Decoder]]] = {
    # tag: (required keys, optional keys, decoder)
    "ok": (frozenset({"v"}), frozenset(), lambda obj, strict: Ok(obj["v"])),
    "err": (frozenset({"v"}), frozenset(), lambda obj, strict: Err(obj["v"])),
    "tuple": (frozenset({"v"}), frozenset(), lambda obj, strict: tuple(_list(obj))),
    "map": (frozenset({"v"}), frozenset(), _map),
    "goto": (frozenset({"to", "u"}), frozenset(), _goto),
    "exc": (frozenset({"type", "message", "traceback"}), frozenset(), _exc),
    "group": (frozenset({"v"}), frozenset(), _group),
    "float": (frozenset({"v"}), frozenset(), _float),
    "int": (frozenset({"v"}), frozenset(), _int),
    "set": (frozenset({"v"}), frozenset(), lambda obj, strict: set(_list(obj))),
    "frozenset": (frozenset({"v"}), frozenset(), lambda obj, strict: frozenset(_list(obj))),
    "datetime": (
        frozenset({"v"}),
        frozenset({"zone", "name", "fold"}),
        lambda obj, strict: _clock(obj, strict, _dt.datetime.fromisoformat),
    ),
    "time": (
        frozenset({"v"}),
        frozenset({"zone", "name", "fold"}),
        lambda obj, strict: _clock(obj, strict, _dt.time.fromisoformat),
    ),
    "date": (frozenset({"v"}), frozenset(), lambda obj, strict: _dt.date.fromisoformat(_str(obj))),
    "uuid": (frozenset({"v"}), frozenset(), lambda obj, strict: uuid.UUID(_str(obj))),
    "decimal": (frozenset({"v"}), frozenset(), _decimal),
    "bytes": (
        frozenset({"v"}),
        frozenset(),
        lambda obj, strict: base64.b64decode(_str(obj), validate=True),
    ),
    "enum": (frozenset({"type", "v"}), frozenset(), _enum),
    "obj": (frozenset({"type", "v"}), frozenset(), _registered),
}


def _make_hook(strict: bool) -> Callable[[dict[str, Any]], object]:
    def hook(obj: dict[str, Any]) -> object:
        if _TAG not in obj:
            return obj
        tag = obj[_TAG]
        known = _decoders.get(tag) if type(tag) is str else None
        if known is None:
            raise Undecodable(f"unknown tag {_brief_repr(obj)}")
        required, optional, decoder = known
        keys = obj.keys() - {_TAG}
        if not required <= keys or not keys <= required | optional:
            raise Undecodable(f"malformed {tag!r} tag (keys {sorted(keys)}): {_brief_repr(obj)}")
        try:
            return decoder(obj, strict)
        except Undecodable:
            raise
        except _Bad as exc:
            raise Undecodable(f"malformed {tag!r} tag ({exc}): {_brief_repr(obj)}") from None
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            # fromisoformat, UUID(), Decimal(), b64decode, dict() of unhashable keys
            raise Undecodable(f"malformed {tag!r} tag ({exc}): {_brief_repr(obj)}") from None

    return hook


_loads: Final = json.JSONDecoder(object_hook=_make_hook(False)).decode
_loads_strict: Final = json.JSONDecoder(object_hook=_make_hook(True)).decode


def decode(text: str, *, strict: bool = False) -> Any:
    """The value `dumps` wrote, with its tagged types rebuilt.

    A class that is not registered here comes back as its JSON form (an Enum
    member as its value); with ``strict=True`` (replaying a run, which must
    get back what it wrote) that raises `Unregistered` instead. Anything
    `dumps` could not have written raises `Undecodable`. ``NaN`` and
    ``Infinity`` tokens, which journals written before the JSON was strict
    hold, are still read.
    """
    try:
        return (_loads_strict if strict else _loads)(text)
    except Undecodable:
        raise
    except RecursionError:
        raise Undecodable("the JSON is nested too deeply to read") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, an over-long int, not a str
        raise Undecodable(f"not journal JSON: {exc}") from None


# -- how big a value is ---------------------------------------------------------------------

_get_referents: Final = gc.get_referents

LARGE: Final = 2048
"""Values (and parts of values) above which encoding a value is worth doing off the event loop."""
LARGE_PLAIN: Final = 8 * LARGE
"""The same for a value all marked plain, which orjson writes without a walk: measured on a
100 KB list of 800 records (13,602 parts), 0.17 ms against 1.7 ms for the walk."""

_HOLDERS: Final = frozenset(
    {dict, list, tuple, set, frozenset, Ok, Err, Goto, MappingProxyType, *PLAIN_DICTS, *PLAIN_LISTS}
)


def is_large(value: object, limit: int = LARGE) -> bool:
    """Whether `value` holds more than `limit` values (at any depth), told cheaply.

    What encoding it costs grows with that count, so this bounds the cost
    without encoding. What the containers the journal walks hold is counted
    level by level (``gc.get_referents`` of a whole level at once), stopping
    as soon as the count passes `limit`: a large value costs about `limit`
    values' worth of this, a small one next to nothing. What a registered
    class holds is not counted.
    """
    count = 0
    level = [value] if type(value) in _HOLDERS else []
    while level:
        found = _get_referents(*level)
        count += len(found)
        if count > limit:
            return True
        holders = _HOLDERS
        level = [part for part in found if type(part) in holders]
    return False
