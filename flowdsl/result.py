"""Ok / Err: the Result algebra that flowdsl steps return and compose.

A step that can fail in an expected way returns a `Result`: either ``Ok(value)``
or ``Err(error)``. Both are frozen, slotted, hashable and pattern-matchable::

    >>> from flowdsl.result import Err, Ok, combine
    >>> def parse_qty(text: str) -> Ok[int] | Err[str]:
    ...     return Ok(int(text)) if text.isdigit() else Err(f"not a quantity: {text!r}")
    >>> parse_qty("3").map(lambda n: n * 2)
    Ok(6)
    >>> parse_qty("x").map(lambda n: n * 2)
    Err("not a quantity: 'x'")

A short tour:

- Transform the success: ``map`` (plain function), ``bind`` (function returning a
  Result), ``ensure`` (turn an ``Ok`` into an ``Err`` when a predicate fails),
  ``tap`` (side effect, result unchanged).
- Transform the failure: ``map_error``, ``or_else`` (the dual of ``bind``),
  ``recover`` (turn an ``Err`` back into an ``Ok``), ``tap_error``.
- Leave the algebra: ``match(ok=..., err=...)``, ``unwrap()``, ``unwrap_or()``,
  ``unwrap_or_else()``, or a ``match`` statement::

      match result:
          case Ok(value): ...
          case Err(error): ...

- Every method that calls a user function has an ``_async`` twin that awaits it
  (``map_async``, ``bind_async``, ...).
- Many results at once: `combine` (all values, or every error), `traverse`
  (stop at the first error), `traverse_all` (collect every error), `gather`
  (await concurrently, optionally at most ``limit`` at a time).
- From exceptions: `try_` / `try_async` turn a raised `Exception` into an ``Err``;
  cancellation and other `BaseException` are never caught.

Two or more errors combine into ``Err(ErrorGroup(...))``. An `ErrorGroup` never
nests: its ``.errors`` is always the flat tuple of reasons in argument order, so
merging errors is associative. A single error is returned as it is.

The methods obey the usual laws (functor laws for ``map`` and ``map_error``,
monad laws for ``bind`` and ``or_else``); ``tests/test_result.py`` checks each one
as a hypothesis property, and ``docs/result.md`` states them in words.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import (
    Any,
    Generic,
    Literal,
    Never,
    NoReturn,
    ParamSpec,
    TypeAlias,
    TypeVar,
    final,
    overload,
)

from flowdsl.errors import FlowError, InvalidArgument, UnwrapError

__all__ = [
    "Err",
    "ErrorGroup",
    "Ok",
    "Result",
    "combine",
    "gather",
    "traverse",
    "traverse_all",
    "traverse_all_async",
    "traverse_async",
    "try_",
    "try_async",
]

T_co = TypeVar("T_co", covariant=True)
E_co = TypeVar("E_co", covariant=True)
U = TypeVar("U")
F = TypeVar("F")
A = TypeVar("A")
P = ParamSpec("P")
_T = TypeVar("_T")
_E = TypeVar("_E")
_T1 = TypeVar("_T1")
_T2 = TypeVar("_T2")
_T3 = TypeVar("_T3")
_T4 = TypeVar("_T4")
_E1 = TypeVar("_E1")
_E2 = TypeVar("_E2")
_E3 = TypeVar("_E3")
_E4 = TypeVar("_E4")

_REPR_LIMIT = 200


def _short_repr(obj: object) -> str:
    """``repr(obj)``, cut to a length that keeps an error message readable."""
    text = repr(obj)
    if len(text) > _REPR_LIMIT:
        return text[: _REPR_LIMIT - 3] + "..."
    return text


def _no_subclass(cls: type) -> NoReturn:
    raise TypeError(f"{cls.__name__} is final and cannot be subclassed")


@final
class Ok(Generic[T_co]):
    """The success case of a `Result`: holds ``value``.

    Frozen, slotted and hashable (when the value is); equal to another ``Ok`` with
    an equal value and never equal to an ``Err``. Matches ``case Ok(value):``.
    """

    __slots__ = ("value",)
    __match_args__ = ("value",)

    value: T_co

    def __init__(self, value: T_co) -> None:
        # A cached slot setter: the executor builds an Ok for every step, so this is
        # kept to one C call (measurably faster than object.__setattr__ or attrs).
        _set_ok_value(self, value)

    def __init_subclass__(cls, **kwargs: object) -> NoReturn:
        _no_subclass(Ok)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Ok is frozen; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Ok is frozen; cannot delete {name!r}")

    def __repr__(self) -> str:
        return f"Ok({self.value!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is Ok:
            # Identity first, as tuples compare items: Ok(nan) equals itself, so the laws hold.
            return self.value is other.value or bool(self.value == other.value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Ok, self.value))

    def __reduce__(self) -> tuple[type[Ok[Any]], tuple[T_co]]:
        return (Ok, (self.value,))

    def is_ok(self) -> Literal[True]:
        """Return True: this is an ``Ok``."""
        return True

    def is_err(self) -> Literal[False]:
        """Return False: this is not an ``Err``."""
        return False

    # Transforming the value.

    def map(self, f: Callable[[T_co], U]) -> Ok[U]:
        """Return ``Ok(f(value))``."""
        return Ok(f(self.value))

    async def map_async(self, f: Callable[[T_co], Awaitable[U]]) -> Ok[U]:
        """Return ``Ok(await f(value))``."""
        return Ok(await f(self.value))

    def bind(self, f: Callable[[T_co], Result[U, F]]) -> Result[U, F]:
        """Return ``f(value)``, a Result: chain a step that can fail."""
        return f(self.value)

    async def bind_async(self, f: Callable[[T_co], Awaitable[Result[U, F]]]) -> Result[U, F]:
        """Return ``await f(value)``."""
        return await f(self.value)

    def tap(self, f: Callable[[T_co], object]) -> Ok[T_co]:
        """Call ``f(value)`` for its effect and return this result unchanged."""
        f(self.value)
        return self

    async def tap_async(self, f: Callable[[T_co], Awaitable[object]]) -> Ok[T_co]:
        """Await ``f(value)`` for its effect and return this result unchanged."""
        await f(self.value)
        return self

    def ensure(
        self, predicate: Callable[[T_co], bool], error: Callable[[T_co], F]
    ) -> Ok[T_co] | Err[F]:
        """Return this result if ``predicate(value)``, else ``Err(error(value))``.

        ``error`` is always a function of the value (so the message can name it);
        an exception class works as one: ``ensure(is_positive, ValueError)``.
        """
        value = self.value
        if predicate(value):
            return self
        return Err(error(value))

    async def ensure_async(
        self, predicate: Callable[[T_co], Awaitable[bool]], error: Callable[[T_co], F]
    ) -> Ok[T_co] | Err[F]:
        """Like `ensure`, awaiting ``predicate(value)``; ``error`` stays a plain function."""
        value = self.value
        if await predicate(value):
            return self
        return Err(error(value))

    # Transforming the error: an Ok passes through untouched.

    def map_error(self, f: Callable[[Never], object]) -> Ok[T_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    async def map_error_async(self, f: Callable[[Never], Awaitable[object]]) -> Ok[T_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    def or_else(self, f: Callable[[Never], object]) -> Ok[T_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    async def or_else_async(self, f: Callable[[Never], Awaitable[object]]) -> Ok[T_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    def recover(self, f: Callable[[Never], object]) -> Ok[T_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    async def recover_async(self, f: Callable[[Never], Awaitable[object]]) -> Ok[T_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    def tap_error(self, f: Callable[[Never], object]) -> Ok[T_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    async def tap_error_async(self, f: Callable[[Never], Awaitable[object]]) -> Ok[T_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    # Leaving the algebra.

    def match(self, *, ok: Callable[[T_co], U], err: Callable[[Never], object]) -> U:
        """Return ``ok(value)``."""
        return ok(self.value)

    async def match_async(
        self,
        *,
        ok: Callable[[T_co], Awaitable[U]],
        err: Callable[[Never], Awaitable[object]],
    ) -> U:
        """Return ``await ok(value)``."""
        return await ok(self.value)

    def unwrap(self) -> T_co:
        """Return the value."""
        return self.value

    def unwrap_err(self) -> NoReturn:
        """Raise `UnwrapError`: an ``Ok`` has no error."""
        message = (
            f"called unwrap_err() on {_short_repr(self)}; "
            "check is_err() first, or use match(ok=..., err=...)"
        )
        raise UnwrapError(message)

    def unwrap_or(self, default: object) -> T_co:
        """Return the value; ``default`` is not used."""
        return self.value

    def unwrap_or_else(self, f: Callable[[Never], object]) -> T_co:
        """Return the value; ``f`` is not called."""
        return self.value

    async def unwrap_or_else_async(self, f: Callable[[Never], Awaitable[object]]) -> T_co:
        """Return the value; ``f`` is not called."""
        return self.value


@final
class Err(Generic[E_co]):
    """The failure case of a `Result`: holds ``error``, the reason (any value).

    Frozen, slotted and hashable (when the error is); equal to another ``Err`` with
    an equal error and never equal to an ``Ok``. Matches ``case Err(error):``.
    """

    __slots__ = ("error",)
    __match_args__ = ("error",)

    error: E_co

    def __init__(self, error: E_co) -> None:
        _set_err_error(self, error)

    def __init_subclass__(cls, **kwargs: object) -> NoReturn:
        _no_subclass(Err)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Err is frozen; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Err is frozen; cannot delete {name!r}")

    def __repr__(self) -> str:
        return f"Err({self.error!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is Err:
            return self.error is other.error or bool(self.error == other.error)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Err, self.error))

    def __reduce__(self) -> tuple[type[Err[Any]], tuple[E_co]]:
        return (Err, (self.error,))

    def is_ok(self) -> Literal[False]:
        """Return False: this is not an ``Ok``."""
        return False

    def is_err(self) -> Literal[True]:
        """Return True: this is an ``Err``."""
        return True

    # Transforming the value: an Err short-circuits.

    def map(self, f: Callable[[Never], object]) -> Err[E_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    async def map_async(self, f: Callable[[Never], Awaitable[object]]) -> Err[E_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    def bind(self, f: Callable[[Never], object]) -> Err[E_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    async def bind_async(self, f: Callable[[Never], Awaitable[object]]) -> Err[E_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    def tap(self, f: Callable[[Never], object]) -> Err[E_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    async def tap_async(self, f: Callable[[Never], Awaitable[object]]) -> Err[E_co]:
        """Return this result unchanged; ``f`` is not called."""
        return self

    def ensure(
        self, predicate: Callable[[Never], object], error: Callable[[Never], object]
    ) -> Err[E_co]:
        """Return this result unchanged; neither function is called."""
        return self

    async def ensure_async(
        self,
        predicate: Callable[[Never], Awaitable[object]],
        error: Callable[[Never], object],
    ) -> Err[E_co]:
        """Return this result unchanged; neither function is called."""
        return self

    # Transforming the error.

    def map_error(self, f: Callable[[E_co], F]) -> Err[F]:
        """Return ``Err(f(error))``."""
        return Err(f(self.error))

    async def map_error_async(self, f: Callable[[E_co], Awaitable[F]]) -> Err[F]:
        """Return ``Err(await f(error))``."""
        return Err(await f(self.error))

    def or_else(self, f: Callable[[E_co], Result[U, F]]) -> Result[U, F]:
        """Return ``f(error)``, a Result: try an alternative (the dual of ``bind``)."""
        return f(self.error)

    async def or_else_async(self, f: Callable[[E_co], Awaitable[Result[U, F]]]) -> Result[U, F]:
        """Return ``await f(error)``."""
        return await f(self.error)

    def recover(self, f: Callable[[E_co], U]) -> Ok[U]:
        """Return ``Ok(f(error))``: replace the failure with a value."""
        return Ok(f(self.error))

    async def recover_async(self, f: Callable[[E_co], Awaitable[U]]) -> Ok[U]:
        """Return ``Ok(await f(error))``."""
        return Ok(await f(self.error))

    def tap_error(self, f: Callable[[E_co], object]) -> Err[E_co]:
        """Call ``f(error)`` for its effect and return this result unchanged."""
        f(self.error)
        return self

    async def tap_error_async(self, f: Callable[[E_co], Awaitable[object]]) -> Err[E_co]:
        """Await ``f(error)`` for its effect and return this result unchanged."""
        await f(self.error)
        return self

    # Leaving the algebra.

    def match(self, *, ok: Callable[[Never], object], err: Callable[[E_co], U]) -> U:
        """Return ``err(error)``."""
        return err(self.error)

    async def match_async(
        self,
        *,
        ok: Callable[[Never], Awaitable[object]],
        err: Callable[[E_co], Awaitable[U]],
    ) -> U:
        """Return ``await err(error)``."""
        return await err(self.error)

    def unwrap(self) -> NoReturn:
        """Raise `UnwrapError`, chained to the error when it is an `Exception`."""
        message = (
            f"called unwrap() on {_short_repr(self)}; check is_ok() first, "
            "or use unwrap_or(), unwrap_or_else() or match(ok=..., err=...)"
        )
        error = self.error
        if isinstance(error, Exception):
            raise UnwrapError(message) from error
        raise UnwrapError(message)

    def unwrap_err(self) -> E_co:
        """Return the error."""
        return self.error

    def unwrap_or(self, default: U) -> U:
        """Return ``default``."""
        return default

    def unwrap_or_else(self, f: Callable[[E_co], U]) -> U:
        """Return ``f(error)``."""
        return f(self.error)

    async def unwrap_or_else_async(self, f: Callable[[E_co], Awaitable[U]]) -> U:
        """Return ``await f(error)``."""
        return await f(self.error)


_set_ok_value: Callable[[Ok[Any], object], None] = Ok.__dict__["value"].__set__
_set_err_error: Callable[[Err[Any], object], None] = Err.__dict__["error"].__set__

Result: TypeAlias = Ok[_T] | Err[_E]
"""``Ok[T] | Err[E]``: narrow it with ``match`` or ``isinstance``."""


class ErrorGroup(FlowError):
    """Two or more failure reasons, combined; ``.errors`` is their flat tuple.

    Reasons can be any values, not only exceptions. An ``ErrorGroup`` given as a
    reason is flattened into its reasons, so groups never nest and merging them
    is associative. Two groups are equal when their ``errors`` are equal.
    """

    def __init__(self, errors: Iterable[object]) -> None:
        flat: list[object] = []
        for error in errors:
            if isinstance(error, ErrorGroup):
                flat.extend(error.errors)
            else:
                flat.append(error)
        if not flat:
            raise InvalidArgument("ErrorGroup needs at least one error; got none")
        self._errors = tuple(flat)
        lines = [f"{len(flat)} error{'s' if len(flat) != 1 else ''}:"]
        lines.extend(f"  {i}. {_short_repr(error)}" for i, error in enumerate(flat, 1))
        self._message = "\n".join(lines)
        # args holds the reasons so that pickling rebuilds an equal group.
        super().__init__(self._errors)

    @property
    def errors(self) -> tuple[object, ...]:
        """The reasons, flat and in the order they were combined."""
        return self._errors

    def __str__(self) -> str:
        return self._message

    def __repr__(self) -> str:
        return f"ErrorGroup({self._errors!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ErrorGroup):
            return self._errors == other._errors
        return NotImplemented

    def __hash__(self) -> int:
        return hash((ErrorGroup, self._errors))


def _not_a_result(what: str, obj: object) -> TypeError:
    hint = (
        "; await it first, or pass awaitables to gather()"
        if inspect.isawaitable(obj)
        else "; wrap plain values in Ok(...) and failures in Err(...)"
    )
    if inspect.iscoroutine(obj):
        obj.close()  # it will never be awaited; don't leave a warning behind
    return TypeError(f"{what} {_short_repr(obj)}, not Ok or Err{hint}")


@overload
def combine() -> Ok[tuple[()]]: ...
@overload
def combine(r1: Result[_T1, _E1], /) -> Result[tuple[_T1], _E1]: ...
@overload
def combine(
    r1: Result[_T1, _E1], r2: Result[_T2, _E2], /
) -> Result[tuple[_T1, _T2], _E1 | _E2 | ErrorGroup]: ...
@overload
def combine(
    r1: Result[_T1, _E1], r2: Result[_T2, _E2], r3: Result[_T3, _E3], /
) -> Result[tuple[_T1, _T2, _T3], _E1 | _E2 | _E3 | ErrorGroup]: ...
@overload
def combine(
    r1: Result[_T1, _E1],
    r2: Result[_T2, _E2],
    r3: Result[_T3, _E3],
    r4: Result[_T4, _E4],
    /,
) -> Result[tuple[_T1, _T2, _T3, _T4], _E1 | _E2 | _E3 | _E4 | ErrorGroup]: ...
@overload
def combine(*results: Result[_T, _E]) -> Result[tuple[_T, ...], _E | ErrorGroup]: ...
def combine(*results: Result[object, object]) -> Result[tuple[object, ...], object]:
    """Combine results: all ``Ok`` gives ``Ok`` of the values' tuple, in argument order.

    Exactly one ``Err`` is returned as it is. Two or more give
    ``Err(ErrorGroup(reasons))`` with the reasons flat and in argument order (a
    reason that is an `ErrorGroup` contributes its own reasons).
    """
    values: list[object] = []
    failures: list[Err[object]] = []
    for i, result in enumerate(results):
        if type(result) is Ok:
            values.append(result.value)
        elif type(result) is Err:
            failures.append(result)
        else:
            raise _not_a_result(f"combine() argument {i} is", result)
    if not failures:
        return Ok(tuple(values))
    if len(failures) == 1:
        return failures[0]
    return Err(ErrorGroup([failure.error for failure in failures]))


def traverse(items: Iterable[A], f: Callable[[A], Result[_T, _E]]) -> Result[tuple[_T, ...], _E]:
    """Apply ``f`` to each item in order; ``Ok`` of the values' tuple, or the first ``Err``.

    ``f`` is not called on the items after the first ``Err``.
    """
    values: list[_T] = []
    for item in items:
        result = f(item)
        if type(result) is Err:
            return result
        values.append(result.value)
    return Ok(tuple(values))


async def traverse_async(
    items: Iterable[A], f: Callable[[A], Awaitable[Result[_T, _E]]]
) -> Result[tuple[_T, ...], _E]:
    """Like `traverse`, awaiting ``f(item)`` one item at a time.

    For concurrency use ``gather(*(f(item) for item in items), limit=...)``.
    """
    values: list[_T] = []
    for item in items:
        result = await f(item)
        if type(result) is Err:
            return result
        values.append(result.value)
    return Ok(tuple(values))


def traverse_all(
    items: Iterable[A], f: Callable[[A], Result[_T, _E]]
) -> Result[tuple[_T, ...], _E | ErrorGroup]:
    """Apply ``f`` to every item and `combine` the results, collecting every error."""
    return combine(*[f(item) for item in items])


async def traverse_all_async(
    items: Iterable[A], f: Callable[[A], Awaitable[Result[_T, _E]]]
) -> Result[tuple[_T, ...], _E | ErrorGroup]:
    """Like `traverse_all`, awaiting ``f(item)`` one item at a time."""
    return combine(*[await f(item) for item in items])


async def gather(
    *awaitables: Awaitable[Result[_T, _E]], limit: int | None = None
) -> Result[tuple[_T, ...], _E | ErrorGroup]:
    """Await the awaitables concurrently and `combine` their results in argument order.

    With ``limit``, at most ``limit`` of them are awaited at once, started in
    argument order (tasks or futures passed in are already running; ``limit``
    cannot hold those back). The finishing order never changes the result.

    An exception raised by an awaitable is not a Result: the others are cancelled
    and awaited, then the exception propagates as it is (several that were raised
    before the cancellation took effect propagate together as an ExceptionGroup).
    No task outlives the call, and cancelling ``gather`` cancels them all.
    """
    count = len(awaitables)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        cancelled = _discard(awaitables)
        if cancelled:
            await asyncio.wait(cancelled)
        raise InvalidArgument(f"gather() limit must be a positive int or None, got {limit!r}")
    workers = count if limit is None else min(limit, count)
    slots: list[Result[_T, _E] | None] = [None] * count
    pending = iter(enumerate(awaitables))
    started = 0

    async def work() -> None:
        nonlocal started
        for i, awaitable in pending:
            started = i + 1
            result = await awaitable
            if result.__class__ is not Ok and result.__class__ is not Err:
                raise _not_a_result(f"gather() awaitable {i} returned", result)
            slots[i] = result

    failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(work())
    except BaseExceptionGroup as exc_group:
        if len(exc_group.exceptions) != 1:
            raise
        failure = exc_group.exceptions[0]
    finally:
        cancelled = _discard(awaitables[started:])
        if cancelled:  # no task outlives gather(): wait for their cancellation to finish
            await asyncio.wait(cancelled)
    if failure is not None:
        try:
            raise failure
        finally:
            failure = None
    results: list[Result[_T, _E]] = []
    for i, slot in enumerate(slots):
        if slot is None:
            # An awaitable raised CancelledError by itself; the task group let it pass.
            raise asyncio.CancelledError(f"gather() awaitable {i} was cancelled")
        results.append(slot)
    return combine(*results)


def _discard(awaitables: Iterable[object]) -> list[asyncio.Future[Any]]:
    """Close coroutines and cancel futures that gather() will never await.

    Returns the futures cancelled, for the caller to wait on.
    """
    cancelled: list[asyncio.Future[Any]] = []
    for awaitable in awaitables:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        elif isinstance(awaitable, asyncio.Future):
            awaitable.cancel()
            cancelled.append(awaitable)
    return cancelled


def try_(fn: Callable[P, _T], /, *args: P.args, **kwargs: P.kwargs) -> Result[_T, Exception]:
    """Return ``Ok(fn(*args, **kwargs))``, or ``Err(exc)`` if it raised an `Exception`.

    Only `Exception` is caught: cancellation, KeyboardInterrupt, SystemExit and
    every other `BaseException` propagate. A Result returned by ``fn`` is wrapped
    as any other value (``Ok(Ok(...))``).
    """
    try:
        return Ok(fn(*args, **kwargs))
    except Exception as exc:
        return Err(exc)


async def try_async(
    fn: Callable[P, Awaitable[_T]], /, *args: P.args, **kwargs: P.kwargs
) -> Result[_T, Exception]:
    """Return ``Ok(await fn(*args, **kwargs))``, or ``Err(exc)`` if it raised an `Exception`.

    Like `try_`, cancellation and other `BaseException` always propagate.
    """
    try:
        return Ok(await fn(*args, **kwargs))
    except Exception as exc:
        return Err(exc)
