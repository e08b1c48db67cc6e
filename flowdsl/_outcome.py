"""What a step returns: `ok`, `error`, `goto` (and `END`).

`ok(...)` and `error(...)` build the Result types of `flowdsl.result`, so a
step may equally return a Result it computed with the combinators.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeVar, final, overload

from ._plan import END, End
from .errors import KeyNotFound, UsageError
from .result import Err, Ok, _set_ok_value

__all__ = [
    "END",
    "Goto",
    "error",
    "goto",
    "ok",
    "parallel_ok",
    "parallel_result",
    "parallel_results",
]

T = TypeVar("T")
E = TypeVar("E")

_EMPTY: Final[Mapping[str, Any]] = {}
_new = object.__new__


@overload
def ok() -> Ok[None]: ...
@overload
def ok(value: T) -> Ok[T]: ...
def ok(value: object = None) -> Ok[object]:
    """Succeed: a mapping is merged into the context, another value is stored under the step's key."""
    made: Ok[object] = _new(Ok)  # `Ok(value)` without its __init__ frame: every step calls this
    _set_ok_value(made, value)
    return made


def error(reason: E) -> Err[E]:
    """Fail the step with `reason` (any value; an exception keeps its traceback)."""
    return Err(reason)


@final
class Goto:
    """Continue at another top-level step (or finish with `END`), merging `update` first."""

    __slots__ = ("target", "update")
    __match_args__ = ("target", "update")

    target: str | End
    update: Mapping[str, Any]

    def __init__(self, target: str | End, update: Mapping[str, Any] = _EMPTY) -> None:
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "update", update)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Goto is immutable; return a new goto({self.target!r}, ...)")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Goto:
            return NotImplemented
        return self.target == other.target and dict(self.update) == dict(other.update)

    def __hash__(self) -> int:
        return hash((Goto, self.target))

    def __reduce__(self) -> tuple[type[Goto], tuple[str | End, Mapping[str, Any]]]:
        # Slots with a raising __setattr__ need this to pickle (process and Dask executors).
        return (Goto, (self.target, dict(self.update)))

    def __repr__(self) -> str:
        if self.update:
            return f"goto({self.target!r}, {dict(self.update)!r})"
        return f"goto({self.target!r})"


def goto(target: str | End, update: Mapping[str, Any] | None = None) -> Goto:
    """Jump to the top-level step `target` (or `END`), merging `update` into the context."""
    if not isinstance(target, str | End):
        msg = (
            f"goto() takes a step name or END, got {target!r}; write goto('step_name') or goto(END)"
        )
        raise UsageError(msg)
    if update is not None and not isinstance(update, Mapping):
        msg = (
            f"goto({target!r}, update) takes a mapping to merge into the context, "
            f"got {type(update).__name__}; write goto({target!r}, {{'key': value}})"
        )
        raise UsageError(msg)
    return Goto(target, update if update is not None else _EMPTY)


def parallel_results(ctx: Mapping[str, Any]) -> Mapping[str, Ok[Any] | Err[Any]]:
    """The ``__results__`` a parallel block without ``into=`` added: key -> Ok(value) | Err(reason)."""
    results = ctx.get("__results__")
    if results is None:
        msg = (
            "no parallel results in this context: a parallel block without into= adds "
            "'__results__'; read it in a step after the block"
        )
        raise KeyNotFound(msg)
    return results  # type: ignore[no-any-return]


def parallel_result(ctx: Mapping[str, Any], key: str) -> Ok[Any] | Err[Any]:
    """One branch's result, ``Ok(value)`` or ``Err(reason)``, from the context's ``__results__``.

    That is the last parallel block *without* ``into=`` before this step: a
    block with a reducer adds what the reducer returns instead.
    """
    results = parallel_results(ctx)
    try:
        return results[key]
    except KeyError:
        known = ", ".join(repr(k) for k in results)
        msg = (
            f"the parallel results in this context have no branch {key!r}; its branches: "
            f"{known} (a block with into= adds no results)"
        )
        raise KeyNotFound(msg) from None


def parallel_ok(ctx: Mapping[str, Any], key: str) -> bool:
    """True when branch `key` succeeded, in the last block without ``into=`` (see `parallel_result`)."""
    return type(parallel_result(ctx, key)) is Ok
