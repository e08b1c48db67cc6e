"""The journal's data format: JSON with a few tags, never pickle.

What a durable store keeps (step outcomes, a run's input and output, failure
reasons) is encoded here, so every store shares one format. Plain JSON values
are written as they are; the rest is a small object whose ``"$"`` key names
what it holds, so that what is read back has the type that was written:

====================================  =======================================
value                                 JSON
====================================  =======================================
``None``, bool, int, float, str,      themselves
list, dict with str keys
tuple                                 ``{"$": "tuple", "v": [...]}``
other mapping (non-str keys, or a     ``{"$": "map", "v": [[key, value], ...]}``
``"$"`` key)
``Ok(value)``                         ``{"$": "ok", "v": value}``
``Err(reason)``                       ``{"$": "err", "v": reason}``
``goto(target, update)``              ``{"$": "goto", "to": target, "u": update}``
an exception (a failure reason)       ``{"$": "exc", "type": ..., "message": ...,
                                      "traceback": ...}``, read back as a
                                      `RecordedError`
``ErrorGroup``                        ``{"$": "group", "v": [reason, ...]}``
====================================  =======================================

Encoding a value fails with `Unencodable` (which knows where in the value the
problem is); encoding a failure reason never fails: what JSON cannot hold is
kept as its type and ``repr``.
"""

from __future__ import annotations

import json
import traceback as _traceback
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

from ._context import FrozenList
from ._outcome import Goto
from ._spec import END
from .errors import FlowError
from .result import Err, ErrorGroup, Ok

__all__ = [
    "RecordedError",
    "Unencodable",
    "decode",
    "describe_path",
    "dumps",
    "encode",
    "encode_lenient",
    "encode_reason",
    "type_name",
]

Json: TypeAlias = Any
_TAG: Final = "$"
# ensure_ascii: a lone surrogate (a file name decoded with surrogateescape, say) is
# written as an escape and read back the same, instead of failing sqlite's UTF-8.
_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False).encode


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
    """A value (somewhere inside what was encoded) that the journal's JSON cannot hold."""

    def __init__(self, value: object, why: str = "") -> None:
        super().__init__(value)
        self.value = value
        self.why = why
        self.path: list[object] = []
        """Keys and indexes from the offending value out to the top (innermost first)."""


def type_name(obj: object) -> str:
    """``"ValueError"`` for builtins, else ``"module.Qualname"``."""
    cls = type(obj)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def describe_path(path: list[object]) -> str:
    """``['a'][0]`` for a path collected innermost first."""
    return "".join(f"[{part!r}]" for part in reversed(path))


# -- encoding -------------------------------------------------------------------------------

_Fallback: TypeAlias = Callable[[object], Json] | None


def _encode(value: object, fallback: _Fallback) -> Json:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, Mapping):
        return _encode_mapping(value, fallback)  # type: ignore[arg-type]
    if kind is list or kind is tuple or kind is FrozenList:
        out: list[Json] = []
        index: int
        item: object
        for index, item in enumerate(value):  # type: ignore[arg-type]
            try:
                out.append(_encode(item, fallback))
            except Unencodable as exc:
                exc.path.append(index)
                raise
        return out if kind is not tuple else {_TAG: "tuple", "v": out}
    if kind is Ok:
        return {_TAG: "ok", "v": _encode(value.value, fallback)}  # type: ignore[attr-defined]
    if kind is Err:
        return {_TAG: "err", "v": encode_reason(value.error)}  # type: ignore[attr-defined]
    if kind is Goto:
        target = value.target  # type: ignore[attr-defined]
        update = _encode_mapping(value.update, fallback)  # type: ignore[attr-defined]
        return {_TAG: "goto", "to": None if target is END else target, "u": update}
    if fallback is not None:
        return fallback(value)
    raise Unencodable(value)


def _encode_mapping(value: Mapping[Any, Any], fallback: _Fallback) -> Json:
    plain = True
    for key in value:
        if type(key) is not str or key == _TAG:
            plain = False
            break
    if plain:
        out: dict[str, Json] = {}
        for key, item in value.items():
            try:
                out[key] = _encode(item, fallback)
            except Unencodable as exc:
                exc.path.append(key)
                raise
        return out
    pairs = []
    for key, item in value.items():
        try:
            pairs.append([_encode(key, fallback), _encode(item, fallback)])
        except Unencodable as exc:
            exc.path.append(key)
            raise
    return {_TAG: "map", "v": pairs}


def encode(value: object) -> Json:
    """``value`` as JSON-ready data; raises `Unencodable` naming where the problem is."""
    try:
        return _encode(value, None)
    except RecursionError:
        raise Unencodable(value, "it is nested too deeply or contains itself") from None


def _as_repr(value: object) -> Json:
    return {_TAG: "exc", "type": type_name(value), "message": _safe_repr(value), "traceback": None}


def encode_lenient(value: object) -> Json:
    """Like `encode`, but a value JSON cannot hold is kept as its type and ``repr``.

    A mapping (a run's output) stays a mapping: only a value under one of its
    keys that contains itself, or is nested too deeply, is replaced.
    """
    if isinstance(value, Mapping) and all(type(k) is str and k != _TAG for k in value):
        return {key: _lenient_one(item) for key, item in value.items()}
    return _lenient_one(value)


def _lenient_one(value: object) -> Json:
    try:
        return _encode(value, _as_repr)
    except RecursionError:
        return _as_repr(value)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not make recording fail
        return f"<{type_name(value)} object>"


def _exception_record(exc: BaseException) -> Json:
    try:
        message = str(exc)
    except Exception:
        message = _safe_repr(exc)
    tb: str | None = None
    if exc.__traceback__ is not None or exc.__cause__ is not None or exc.__context__ is not None:
        try:
            tb = "".join(_traceback.format_exception(exc))
        except Exception:
            tb = None
    return {_TAG: "exc", "type": type_name(exc), "message": message, "traceback": tb}


def encode_reason(reason: object) -> Json:
    """A failure reason as JSON-ready data; never fails."""
    if type(reason) is RecordedError:
        return {
            _TAG: "exc",
            "type": reason.type,
            "message": reason.message,
            "traceback": reason.traceback,
        }
    if isinstance(reason, ErrorGroup):
        return {_TAG: "group", "v": [encode_reason(r) for r in reason.errors]}
    if isinstance(reason, BaseException):
        return _exception_record(reason)
    return encode_lenient(reason)


def dumps(data: Json) -> str:
    """JSON text for data made by `encode`, `encode_lenient` or `encode_reason`."""
    return _dumps(data)


# -- decoding -------------------------------------------------------------------------------


def _hook(obj: dict[str, Any]) -> object:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    if tag == "ok":
        return Ok(obj["v"])
    if tag == "tuple":
        return tuple(obj["v"])
    if tag == "err":
        return Err(obj["v"])
    if tag == "goto":
        target = obj["to"]
        return Goto(END if target is None else target, obj["u"])
    if tag == "exc":
        return RecordedError(obj["type"], obj["message"], obj["traceback"])
    if tag == "map":
        return dict(obj["v"])
    if tag == "group":
        return ErrorGroup(obj["v"])
    return obj


_loads = json.JSONDecoder(object_hook=_hook).decode


def decode(text: str) -> Any:
    """The value `dumps` wrote, with its tagged types rebuilt."""
    return _loads(text)
