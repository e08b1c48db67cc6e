"""Hypothesis strategies shared by the test suite.

- `values()` / `errors()`: payloads for ``Ok`` and ``Err`` (errors include
  exceptions and `ErrorGroup` values, so flattening is always exercised).
- `oks()`, `errs()`, `results()`: the Results themselves.
- `functions(returns)`: pure, deterministic, printable functions of one argument;
  `result_functions()` returns Results, `predicates()` returns bools.
- `Spy`: wraps a function and counts its calls, to prove short-circuits.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from hypothesis import strategies as st

from flowdsl.result import Err, ErrorGroup, Ok, Result

T = TypeVar("T")
R = TypeVar("R")

_scalars: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.text(max_size=8),
)


def values() -> st.SearchStrategy[object]:
    """Payloads for ``Ok``: scalars and small tuples of them (all hashable)."""
    return st.one_of(_scalars, st.tuples(_scalars, _scalars))


def exceptions() -> st.SearchStrategy[Exception]:
    """Fresh exception instances, as a step would produce them."""
    return st.builds(
        lambda cls, message: cls(message),
        st.sampled_from([ValueError, KeyError, RuntimeError, TypeError]),
        st.text(max_size=8),
    )


def error_groups() -> st.SearchStrategy[ErrorGroup]:
    """Groups of two or three plain reasons."""
    return st.lists(st.one_of(_scalars, exceptions()), min_size=2, max_size=3).map(ErrorGroup)


def errors() -> st.SearchStrategy[object]:
    """Reasons for ``Err``: scalars, exceptions and (sometimes) error groups."""
    return st.one_of(_scalars, exceptions(), error_groups())


def oks(inner: st.SearchStrategy[object] | None = None) -> st.SearchStrategy[Ok[object]]:
    """``Ok`` of `values()` (or of ``inner``)."""
    return st.builds(Ok, values() if inner is None else inner)


def errs(inner: st.SearchStrategy[object] | None = None) -> st.SearchStrategy[Err[object]]:
    """``Err`` of `errors()` (or of ``inner``)."""
    return st.builds(Err, errors() if inner is None else inner)


def results() -> st.SearchStrategy[Result[object, object]]:
    """Either an ``Ok`` or an ``Err``."""
    return st.one_of(oks(), errs())


def _index(arg: object, size: int) -> int:
    # repr() is deterministic for the payloads above (no ids, no hash seeds).
    return zlib.crc32(repr(arg).encode()) % size


class TableFunction(Generic[R]):
    """A pure function: picks its answer from ``outputs`` by a checksum of ``repr(arg)``."""

    def __init__(self, outputs: Sequence[R]) -> None:
        self.outputs = tuple(outputs)

    def __call__(self, arg: object) -> R:
        return self.outputs[_index(arg, len(self.outputs))]

    def __repr__(self) -> str:
        return f"TableFunction({self.outputs!r})"


def functions(returns: st.SearchStrategy[R] | None = None) -> st.SearchStrategy[TableFunction[R]]:
    """Pure functions of one argument whose answers are drawn from ``returns``."""
    answers: st.SearchStrategy[Any] = values() if returns is None else returns
    return st.lists(answers, min_size=1, max_size=4).map(TableFunction)


def result_functions() -> st.SearchStrategy[TableFunction[Result[object, object]]]:
    """Pure functions returning Results: for ``bind`` and ``or_else``."""
    return functions(results())


def predicates() -> st.SearchStrategy[TableFunction[bool]]:
    """Pure functions returning bools: for ``ensure``."""
    return functions(st.booleans())


class Spy(Generic[T, R]):
    """Wraps ``fn`` and records each argument it is called with."""

    def __init__(self, fn: Callable[[T], R]) -> None:
        self.fn = fn
        self.calls: list[T] = []

    def __call__(self, arg: T) -> R:
        self.calls.append(arg)
        return self.fn(arg)

    def __repr__(self) -> str:
        return f"Spy({self.fn!r})"


def spies(returns: st.SearchStrategy[R] | None = None) -> st.SearchStrategy[Spy[object, R]]:
    """Fresh `Spy` objects around `functions` (one per example)."""
    return functions(returns).map(Spy)


def asyncify(fn: Callable[[T], R]) -> Callable[[T], Coroutine[object, object, R]]:
    """An ``async def`` twin of ``fn``: same answers, awaited."""

    async def call(arg: T) -> R:
        return fn(arg)

    return call
