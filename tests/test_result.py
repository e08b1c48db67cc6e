"""Tests for flowdsl.result: the Ok / Err algebra, its laws and combinators."""

from __future__ import annotations

import asyncio
import copy
import inspect
import pickle
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    Spy,
    asyncify,
    errors,
    errs,
    exceptions,
    functions,
    oks,
    predicates,
    result_functions,
    results,
    spies,
    values,
)

from flowdsl import ok
from flowdsl.errors import FlowError, UnwrapError
from flowdsl.result import (
    Err,
    ErrorGroup,
    Ok,
    Result,
    combine,
    gather,
    traverse,
    traverse_all,
    traverse_all_async,
    traverse_async,
    try_,
    try_async,
)

AnyResult = Result[Any, Any]


def identity(x: object) -> object:
    return x


def reasons(result: AnyResult) -> tuple[object, ...]:
    """The flat reasons a result carries: () for Ok."""
    match result:
        case Ok():
            return ()
        case Err(ErrorGroup() as group):
            return group.errors
        case Err(error):
            return (error,)
    raise AssertionError(result)


def run(awaitable: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await awaitable

    return asyncio.run(main())


# Construction, equality, hashing.


def test_repr_shows_constructor_call() -> None:
    """repr() reads like the call that builds the result."""
    expected = ["Ok(1)", "Err(ValueError('x'))"]
    assert expected == [repr(Ok(1)), repr(Err(ValueError("x")))]


@given(values())
def test_equality_follows_payload_and_side(value: object) -> None:
    """Ok(v) == Ok(v), Err(v) == Err(v), and an Ok never equals an Err."""
    assert Ok(value) == Ok(value)
    assert Err(value) == Err(value)
    assert Ok(value) != Err(value)
    assert Err(value) != Ok(value)
    assert Ok(value) != value


@given(values())
def test_hash_follows_payload(value: object) -> None:
    """Equal results hash equally and work as dict keys and set members."""
    assert hash(Ok(value)) == hash(Ok(copy.deepcopy(value)))
    assert {Ok(value), Err(value)} == {Ok(value), Err(value), Ok(value)}


@given(values())
def test_ok_builds_what_the_constructor_builds(value: object) -> None:
    """ok(v) makes its Ok without calling Ok.__init__ (every step returns one): it is an
    Ok(v) in every way, frozen, and ok() is Ok(None)."""
    made = ok(value)
    assert Ok is type(made)
    assert value is made.value
    assert Ok(value) == made
    assert repr(Ok(value)) == repr(made)
    assert made == pickle.loads(pickle.dumps(made))
    with pytest.raises(AttributeError, match="frozen"):
        made.value = 1  # type: ignore[misc]
    assert Ok(None) == ok()


def test_unhashable_payload_raises_only_when_hashed() -> None:
    """An unhashable payload is fine until the result itself is hashed."""
    result = Ok([1])
    assert Ok([1]) == result
    with pytest.raises(TypeError, match="unhashable"):
        hash(result)
    with pytest.raises(TypeError, match="unhashable"):
        hash(Err({}))


def test_results_are_frozen_and_slotted() -> None:
    """Attributes cannot be set or deleted, and there is no instance __dict__."""
    ok, err = Ok(1), Err("e")
    for result, name in [(ok, "value"), (err, "error")]:
        with pytest.raises(AttributeError, match="frozen"):
            setattr(result, name, 2)
        with pytest.raises(AttributeError, match="frozen"):
            delattr(result, name)
        assert not hasattr(result, "__dict__")


@pytest.mark.parametrize("cls", [Ok, Err])
def test_results_cannot_be_subclassed(cls: type) -> None:
    """Ok and Err are final at run time too."""
    with pytest.raises(TypeError, match="final"):
        type("Sub", (cls,), {})


@given(st.one_of(oks(), errs(values())))
def test_pickle_and_copy_round_trip(result: AnyResult) -> None:
    """pickle, copy and deepcopy rebuild an equal result."""
    assert result == pickle.loads(pickle.dumps(result))
    assert result == copy.copy(result)
    assert result == copy.deepcopy(result)


def test_match_statement_narrows() -> None:
    """A match statement picks the case and binds the payload."""

    def describe(result: Result[int, str]) -> str:
        match result:
            case Ok(value):
                return f"ok {value + 1}"
            case Err(error):
                return f"err {error.upper()}"

    expected = ["ok 2", "err BAD"]
    assert expected == [describe(Ok(1)), describe(Err("bad"))]


@given(results())
def test_is_ok_and_is_err_tell_the_side(result: AnyResult) -> None:
    """is_ok() and is_err() are opposite and match the class."""
    assert isinstance(result, Ok) == result.is_ok()
    assert isinstance(result, Err) == result.is_err()


# Functor laws.


@given(results())
def test_map_identity(result: AnyResult) -> None:
    """map(identity) changes nothing."""
    assert result == result.map(identity)


@given(results(), functions(), functions())
def test_map_composition(result: AnyResult, f: Any, g: Any) -> None:
    """map(f).map(g) == map(g . f)."""
    assert result.map(lambda x: g(f(x))) == result.map(f).map(g)


@given(results())
def test_map_error_identity(result: AnyResult) -> None:
    """map_error(identity) changes nothing."""
    assert result == result.map_error(identity)


@given(results(), functions(), functions())
def test_map_error_composition(result: AnyResult, f: Any, g: Any) -> None:
    """map_error(f).map_error(g) == map_error(g . f)."""
    assert result.map_error(lambda e: g(f(e))) == result.map_error(f).map_error(g)


# Monad laws for bind, and dually for or_else.


@given(values(), result_functions())
def test_bind_left_identity(value: object, f: Any) -> None:
    """Ok(x).bind(f) == f(x)."""
    assert f(value) == Ok(value).bind(f)


@given(results())
def test_bind_right_identity(result: AnyResult) -> None:
    """r.bind(Ok) == r."""
    assert result == result.bind(Ok)


@given(results(), result_functions(), result_functions())
def test_bind_associativity(result: AnyResult, f: Any, g: Any) -> None:
    """r.bind(f).bind(g) == r.bind(lambda x: f(x).bind(g))."""
    assert result.bind(lambda x: f(x).bind(g)) == result.bind(f).bind(g)


@given(errors(), result_functions())
def test_or_else_left_identity(error: object, f: Any) -> None:
    """Err(e).or_else(f) == f(e)."""
    assert f(error) == Err(error).or_else(f)


@given(results())
def test_or_else_right_identity(result: AnyResult) -> None:
    """r.or_else(Err) == r."""
    assert result == result.or_else(Err)


@given(results(), result_functions(), result_functions())
def test_or_else_associativity(result: AnyResult, f: Any, g: Any) -> None:
    """r.or_else(f).or_else(g) == r.or_else(lambda e: f(e).or_else(g))."""
    assert result.or_else(lambda e: f(e).or_else(g)) == result.or_else(f).or_else(g)


@given(results(), functions())
def test_map_is_bind_of_ok(result: AnyResult, f: Any) -> None:
    """r.map(f) == r.bind(lambda x: Ok(f(x)))."""
    assert result.bind(lambda x: Ok(f(x))) == result.map(f)


@given(results(), functions())
def test_map_error_is_or_else_of_err(result: AnyResult, f: Any) -> None:
    """r.map_error(f) == r.or_else(lambda e: Err(f(e)))."""
    assert result.or_else(lambda e: Err(f(e))) == result.map_error(f)


@given(results(), functions())
def test_recover_is_or_else_of_ok(result: AnyResult, f: Any) -> None:
    """r.recover(f) == r.or_else(lambda e: Ok(f(e)))."""
    assert result.or_else(lambda e: Ok(f(e))) == result.recover(f)


# Taps, ensure, match and unwrap.


@given(results(), spies())
def test_tap_returns_result_unchanged_and_calls_once_on_ok(result: AnyResult, spy: Spy) -> None:
    """tap(f) returns the same result and calls f(value) once on Ok only."""
    assert result is result.tap(spy)
    expected = [result.value] if isinstance(result, Ok) else []
    assert expected == spy.calls


@given(results(), spies())
def test_tap_error_returns_result_unchanged_and_calls_once_on_err(
    result: AnyResult, spy: Spy
) -> None:
    """tap_error(f) returns the same result and calls f(error) once on Err only."""
    assert result is result.tap_error(spy)
    expected = [result.error] if isinstance(result, Err) else []
    assert expected == spy.calls


@given(values(), predicates(), functions(errors()))
def test_ensure_keeps_ok_when_predicate_holds(value: object, predicate: Any, error: Any) -> None:
    """Ok(v).ensure(p, e) is Ok(v) if p(v), else Err(e(v))."""
    expected = Ok(value) if predicate(value) else Err(error(value))
    assert expected == Ok(value).ensure(predicate, error)


def test_ensure_builds_error_from_value() -> None:
    """ensure's error argument is a function of the value; an exception class works."""
    result = Ok(-3).ensure(lambda n: n > 0, ValueError)
    assert isinstance(result, Err)
    assert isinstance(result.error, ValueError)
    expected = (-3,)
    assert expected == result.error.args


@given(results(), functions(), functions())
def test_match_calls_the_matching_side(result: AnyResult, f: Any, g: Any) -> None:
    """match(ok=f, err=g) is f(value) for Ok and g(error) for Err."""
    expected = f(result.value) if isinstance(result, Ok) else g(result.error)
    assert expected == result.match(ok=f, err=g)


@given(results(), values(), functions())
def test_unwrap_or_and_unwrap_or_else(result: AnyResult, default: object, f: Any) -> None:
    """unwrap_or gives the value or the default; unwrap_or_else gives the value or f(error)."""
    if isinstance(result, Ok):
        assert result.value == result.unwrap_or(default)
        assert result.value == result.unwrap_or_else(f)
        assert result.value == result.unwrap()
    else:
        assert default == result.unwrap_or(default)
        assert f(result.error) == result.unwrap_or_else(f)
        assert result.error == result.unwrap_err()


@given(exceptions())
def test_unwrap_on_err_raises_chained_unwrap_error(error: Exception) -> None:
    """Err(exc).unwrap() raises UnwrapError from exc, saying what to do instead."""
    with pytest.raises(UnwrapError, match=r"called unwrap\(\) on Err\(") as info:
        Err(error).unwrap()
    assert error is info.value.__cause__
    assert "check is_ok() first" in str(info.value)
    assert isinstance(info.value, FlowError)


@pytest.mark.parametrize("reason", ["missing email", 42, KeyboardInterrupt()])
def test_unwrap_chains_only_exception_instances(reason: object) -> None:
    """A reason that is not an Exception is shown in the message but not chained."""
    with pytest.raises(UnwrapError, match="called unwrap") as info:
        Err(reason).unwrap()
    assert info.value.__cause__ is None
    assert repr(reason) in str(info.value)


def test_unwrap_err_on_ok_raises() -> None:
    """Ok.unwrap_err() raises UnwrapError naming the Ok."""
    with pytest.raises(UnwrapError, match=r"called unwrap_err\(\) on Ok\(1\)"):
        Ok(1).unwrap_err()


def test_unwrap_message_is_cut_for_huge_reasons() -> None:
    """A huge reason does not flood the message."""
    with pytest.raises(UnwrapError) as info:
        Err("x" * 10_000).unwrap()
    assert len(str(info.value)) < 400


# Short-circuits: spies prove the function is never called.

ERR_SKIPS = ["map", "bind", "tap", "ensure", "map_async", "bind_async", "tap_async"]
ERR_SKIPS += ["ensure_async"]
OK_SKIPS = ["map_error", "or_else", "recover", "tap_error", "unwrap_or_else"]
OK_SKIPS += [name + "_async" for name in OK_SKIPS]


def call_skipped(result: AnyResult, name: str, spy: Spy) -> object:
    fn: Callable[[Any], Any] = asyncify(spy) if name.endswith("_async") else spy
    args = (fn, spy) if name.startswith("ensure") else (fn,)
    outcome = getattr(result, name)(*args)
    return run(outcome) if inspect.isawaitable(outcome) else outcome


@pytest.mark.parametrize("name", ERR_SKIPS)
@given(errs(), spies())
def test_err_short_circuits(name: str, result: Err[object], spy: Spy) -> None:
    """Err passes through map/bind/tap/ensure (and their async forms) without a call."""
    assert result is call_skipped(result, name, spy)
    assert not spy.calls


@pytest.mark.parametrize("name", OK_SKIPS)
@given(oks(), spies())
def test_ok_short_circuits(name: str, result: Ok[object], spy: Spy) -> None:
    """Ok passes through map_error/or_else/recover/tap_error/unwrap_or_else without a call."""
    expected = result.value if name.startswith("unwrap") else result
    assert expected == call_skipped(result, name, spy)
    assert not spy.calls


@given(results(), spies(), spies())
def test_match_calls_only_one_side(result: AnyResult, ok: Spy, err: Spy) -> None:
    """match() calls exactly one of its two functions, once."""
    result.match(ok=ok, err=err)
    run(result.match_async(ok=asyncify(ok), err=asyncify(err)))
    expected = (2, 0) if result.is_ok() else (0, 2)
    assert expected == (len(ok.calls), len(err.calls))


# Async twins agree with their sync forms.


@given(results(), functions(), result_functions(), predicates(), functions(errors()))
def test_async_forms_agree_with_sync(
    result: AnyResult, f: Any, rf: Any, predicate: Any, error: Any
) -> None:
    """Each _async method gives what its sync twin gives, with the function awaited."""
    af, arf = asyncify(f), asyncify(rf)
    pairs: list[tuple[object, Coroutine[Any, Any, object]]] = [
        (result.map(f), result.map_async(af)),
        (result.bind(rf), result.bind_async(arf)),
        (result.map_error(f), result.map_error_async(af)),
        (result.or_else(rf), result.or_else_async(arf)),
        (result.recover(f), result.recover_async(af)),
        (result.tap(f), result.tap_async(af)),
        (result.tap_error(f), result.tap_error_async(af)),
        (result.ensure(predicate, error), result.ensure_async(asyncify(predicate), error)),
        (result.match(ok=f, err=rf), result.match_async(ok=af, err=arf)),
        (result.unwrap_or_else(f), result.unwrap_or_else_async(af)),
    ]

    async def await_all() -> list[object]:
        return [await coroutine for _, coroutine in pairs]

    assert [expected for expected, _ in pairs] == asyncio.run(await_all())


@given(results(), spies())
def test_async_taps_call_once(result: AnyResult, spy: Spy) -> None:
    """tap_async and tap_error_async await their function once, on the matching side."""
    assert result is run(result.tap_async(asyncify(spy)))
    assert result is run(result.tap_error_async(asyncify(spy)))
    expected = [result.value] if isinstance(result, Ok) else [result.error]
    assert expected == spy.calls


# ErrorGroup.


@given(
    st.lists(st.one_of(errors(), st.builds(ErrorGroup, st.lists(errors(), min_size=1))), min_size=1)
)
def test_error_group_is_always_flat(reasons_: list[object]) -> None:
    """An ErrorGroup built from groups holds their reasons, never a group."""
    group = ErrorGroup(reasons_)
    assert not any(isinstance(error, ErrorGroup) for error in group.errors)
    expected = [e for r in reasons_ for e in (r.errors if isinstance(r, ErrorGroup) else [r])]
    assert tuple(expected) == group.errors


def test_error_group_message_lists_reasons() -> None:
    """str() numbers each reason on its own line."""
    group = ErrorGroup([ValueError("amount must be positive"), "email is missing"])
    expected = "2 errors:\n  1. ValueError('amount must be positive')\n  2. 'email is missing'"
    assert expected == str(group)
    expected = "ErrorGroup((ValueError('amount must be positive'), 'email is missing'))"
    assert expected == repr(group)


def test_error_group_is_a_flow_error_compared_by_reasons() -> None:
    """ErrorGroup is a raisable FlowError; equal reasons make equal, equally hashed groups."""
    a, b = ErrorGroup(["x", 1]), ErrorGroup(["x", 1])
    assert isinstance(a, FlowError)
    assert a == b
    assert hash(a) == hash(b)
    assert ErrorGroup(["x"]) != a
    assert a == pickle.loads(pickle.dumps(a))
    with pytest.raises(ErrorGroup):
        raise a


def test_error_group_needs_a_reason() -> None:
    """An empty ErrorGroup is refused."""
    with pytest.raises(ValueError, match="at least one error"):
        ErrorGroup([])


def test_error_group_reasons_are_read_only() -> None:
    """.errors cannot be replaced."""
    with pytest.raises(AttributeError):
        ErrorGroup(["x"]).errors = ("y",)  # type: ignore[misc]


# combine.


@given(st.lists(oks(), max_size=5))
def test_combine_all_ok_keeps_argument_order(results_: list[Ok[object]]) -> None:
    """combine of Oks is Ok of the values' tuple, in argument order."""
    assert Ok(tuple(r.value for r in results_)) == combine(*results_)


@given(st.lists(oks(), max_size=3), errs(), st.lists(oks(), max_size=3))
def test_combine_one_err_is_returned_as_it_is(
    before: list[Ok[object]], err: Err[object], after: list[Ok[object]]
) -> None:
    """combine with exactly one Err returns that Err object."""
    assert err is combine(*before, err, *after)


@given(st.lists(results(), max_size=6))
def test_combine_collects_reasons_flat_in_order(results_: list[AnyResult]) -> None:
    """combine's reasons are every Err's reasons, flat and in argument order."""
    combined = combine(*results_)
    expected = tuple(e for r in results_ for e in reasons(r))
    assert expected == reasons(combined)
    if isinstance(combined, Err) and isinstance(combined.error, ErrorGroup):
        assert not any(isinstance(e, ErrorGroup) for e in combined.error.errors)


@given(results(), results(), results())
def test_combine_is_associative(a: AnyResult, b: AnyResult, c: AnyResult) -> None:
    """combine(combine(a, b), c) == combine(a, combine(b, c)) == combine(a, b, c), up to nesting."""
    left = combine(combine(a, b), c).map(lambda t: (*t[0], t[1]))
    right = combine(a, combine(b, c)).map(lambda t: (t[0], *t[1]))
    flat = combine(a, b, c)
    assert flat == left
    assert flat == right


def test_combine_of_nothing_is_ok_of_empty_tuple() -> None:
    """combine() with no arguments is Ok(())."""
    assert Ok(()) == combine()


def test_combine_rejects_plain_values() -> None:
    """A plain value in combine() raises TypeError saying how to wrap it."""
    with pytest.raises(TypeError, match=r"argument 1 is 2, not Ok or Err; wrap plain values"):
        combine(Ok(1), 2)  # type: ignore[call-overload]


def test_combine_rejects_coroutines_and_closes_them() -> None:
    """A coroutine in combine() raises TypeError pointing at gather(), and is closed."""

    async def step() -> AnyResult:
        return Ok(1)

    coroutine = step()
    with pytest.raises(TypeError, match=r"await it first, or pass awaitables to gather\(\)"):
        combine(coroutine)  # type: ignore[call-overload]
    closed = inspect.CORO_CLOSED
    assert closed == inspect.getcoroutinestate(coroutine)


# traverse.


def first_err_prefix(items: Sequence[object], f: Callable[[object], AnyResult]) -> list[object]:
    """The items f sees when traversal stops at the first Err."""
    seen = []
    for item in items:
        seen.append(item)
        if f(item).is_err():
            break
    return seen


@given(st.lists(values(), max_size=6), result_functions())
def test_traverse_stops_at_first_err(items: list[object], f: Any) -> None:
    """traverse is Ok of all values, or the first Err; f is not called after it."""
    spy = Spy(f)
    results_ = [f(item) for item in items]
    first_err = next((r for r in results_ if r.is_err()), None)
    expected = first_err if first_err is not None else Ok(tuple(r.value for r in results_))
    assert expected == traverse(items, spy)
    assert first_err_prefix(items, f) == spy.calls


@given(st.lists(values(), max_size=6), result_functions())
def test_traverse_all_collects_every_error(items: list[object], f: Any) -> None:
    """traverse_all calls f on every item and combines all results."""
    spy = Spy(f)
    assert combine(*[f(item) for item in items]) == traverse_all(items, spy)
    assert items == spy.calls


@given(st.lists(values(), max_size=6), result_functions())
def test_traverse_async_forms_agree_with_sync(items: list[object], f: Any) -> None:
    """traverse_async and traverse_all_async give what their sync twins give, same calls."""
    spy, async_spy = Spy(f), Spy(f)
    assert traverse(items, spy) == run(traverse_async(items, asyncify(async_spy)))
    assert spy.calls == async_spy.calls
    assert traverse_all(items, f) == run(traverse_all_async(items, asyncify(f)))


# gather.


class Harness:
    """Awaitables that finish only when a driver releases them, in a chosen order."""

    def __init__(self, results_: Sequence[AnyResult]) -> None:
        self.results = list(results_)
        self.release = [asyncio.Event() for _ in self.results]
        self.running: set[int] = set()
        self.finished: list[int] = []
        self.max_in_flight = 0
        self.changed = asyncio.Condition()

    async def item(self, i: int) -> AnyResult:
        async with self.changed:
            self.running.add(i)
            self.max_in_flight = max(self.max_in_flight, len(self.running))
            self.changed.notify_all()
        await self.release[i].wait()
        async with self.changed:
            self.running.discard(i)
            self.finished.append(i)
            self.changed.notify_all()
        return self.results[i]

    async def drive(self, limit: int | None, picks: Sequence[int]) -> None:
        """Release one running item at a time, once every item that can run is running."""
        total = len(self.results)
        for step in range(total):
            expected = min(limit or total, total - step)
            async with self.changed:
                await self.changed.wait_for(lambda: len(self.running) >= expected)  # noqa: B023
                chosen = sorted(self.running)[picks[step] % expected]
            self.release[chosen].set()
            async with self.changed:
                await self.changed.wait_for(lambda: chosen in self.finished)  # noqa: B023

    async def gather(self, limit: int | None, picks: Sequence[int]) -> AnyResult:
        async with asyncio.timeout(2), asyncio.TaskGroup() as group:
            group.create_task(self.drive(limit, picks))
            return await gather(*(self.item(i) for i in range(len(self.results))), limit=limit)


@given(
    st.lists(results(), max_size=6),
    st.none() | st.integers(min_value=1, max_value=7),
    st.lists(st.integers(min_value=0, max_value=100), min_size=6, max_size=6),
)
def test_gather_is_combine_whatever_the_finishing_order(
    results_: list[AnyResult], limit: int | None, picks: list[int]
) -> None:
    """gather == combine of the awaited results, in argument order, for any finishing order."""

    async def scenario() -> tuple[AnyResult, Harness]:
        harness = Harness(results_)
        return await harness.gather(limit, picks), harness

    gathered, harness = asyncio.run(scenario())
    assert combine(*results_) == gathered
    assert sorted(harness.finished) == list(range(len(results_)))


@given(
    st.lists(oks(), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=4),
    st.lists(st.integers(min_value=0, max_value=100), min_size=8, max_size=8),
)
def test_gather_limit_bounds_concurrency(
    results_: list[AnyResult], limit: int, picks: list[int]
) -> None:
    """With limit, at most limit awaitables run at once, and that many do run together."""

    async def scenario() -> Harness:
        harness = Harness(results_)
        await harness.gather(limit, picks)
        return harness

    harness = asyncio.run(scenario())
    assert min(limit, len(results_)) == harness.max_in_flight  # reached, and never exceeded


def test_gather_of_nothing_is_ok_of_empty_tuple() -> None:
    """gather() with no awaitables is Ok(())."""
    assert Ok(()) == run(gather())
    assert Ok(()) == run(gather(limit=3))


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "2"])
def test_gather_rejects_bad_limit_and_closes_coroutines(limit: Any) -> None:
    """A limit that is not a positive int raises ValueError; the awaitables are closed."""

    async def step() -> AnyResult:
        return Ok(1)

    coroutine = step()
    with pytest.raises(ValueError, match="limit must be a positive int or None"):
        run(gather(coroutine, limit=limit))
    closed = inspect.CORO_CLOSED
    assert closed == inspect.getcoroutinestate(coroutine)


@pytest.mark.parametrize("limit", [None, 1, 2])
def test_gather_propagates_a_raised_exception_and_leaves_no_task(limit: int | None) -> None:
    """An exception from an awaitable propagates as it is; the rest are cancelled or closed."""
    cancelled: list[int] = []
    started: list[int] = []

    async def blocked(i: int) -> AnyResult:
        started.append(i)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        raise AssertionError("unreachable")

    async def boom() -> AnyResult:
        await asyncio.sleep(0)
        raise KeyError("boom")

    async def scenario() -> list[object]:
        awaitables = [boom(), blocked(1), blocked(2), blocked(3)]
        with pytest.raises(KeyError, match="boom"):
            await gather(*awaitables, limit=limit)
        assert {asyncio.current_task()} == asyncio.all_tasks()
        return [inspect.getcoroutinestate(c) for c in awaitables]

    states = asyncio.run(scenario())
    assert sorted(started) == sorted(cancelled)
    expected = [inspect.CORO_CLOSED] * 4
    assert expected == states


def test_gather_raises_exception_group_when_several_raise_together() -> None:
    """Awaitables that raise in the same loop step propagate together as an ExceptionGroup."""

    async def scenario() -> None:
        go = asyncio.Event()

        async def fail(message: str) -> AnyResult:
            await go.wait()
            raise ValueError(message)

        async def release() -> AnyResult:
            go.set()
            return Ok(None)

        await gather(fail("a"), fail("b"), release())

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(scenario())
    expected = ["a", "b"]
    assert expected == sorted(str(e) for e in info.value.exceptions)


def test_gather_cancellation_cancels_every_awaitable() -> None:
    """Cancelling gather cancels the awaitables it is running and closes the rest."""
    cancelled: list[int] = []

    async def blocked(i: int, started: asyncio.Event) -> AnyResult:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        raise AssertionError("unreachable")

    async def scenario() -> None:
        events = [asyncio.Event() for _ in range(3)]
        task = asyncio.create_task(gather(*(blocked(i, e) for i, e in enumerate(events)), limit=2))
        await events[0].wait()
        await events[1].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert {asyncio.current_task()} == asyncio.all_tasks()

    asyncio.run(scenario())
    expected = [0, 1]
    assert expected == sorted(cancelled)


def test_gather_rejects_awaitables_that_return_plain_values() -> None:
    """An awaitable that returns a non-Result raises TypeError naming its position."""

    async def plain() -> int:
        return 5

    async def ok() -> AnyResult:
        return Ok(1)

    with pytest.raises(TypeError, match=r"gather\(\) awaitable 1 returned 5, not Ok or Err"):
        run(gather(ok(), plain()))  # type: ignore[arg-type]


def test_gather_accepts_tasks() -> None:
    """Tasks and futures are awaited like coroutines."""

    async def step(n: int) -> AnyResult:
        return Ok(n) if n % 2 else Err(n)

    async def scenario() -> AnyResult:
        tasks = [asyncio.create_task(step(n)) for n in range(4)]
        return await gather(*tasks, limit=1)

    assert Err(ErrorGroup([0, 2])) == asyncio.run(scenario())


# try_ and try_async.


@given(values(), functions())
def test_try_wraps_a_return_in_ok(value: object, f: Any) -> None:
    """try_(f, x) is Ok(f(x)) when f returns."""
    assert Ok(f(value)) == try_(f, value)
    assert Ok(f(value)) == run(try_async(asyncify(f), value))


@given(exceptions())
def test_try_turns_an_exception_into_err(error: Exception) -> None:
    """try_ returns Err of the very exception raised."""

    def fail() -> None:
        raise error

    async def fail_async() -> None:
        raise error

    assert error is try_(fail).unwrap_err()
    assert error is run(try_async(fail_async)).unwrap_err()


def test_try_passes_arguments_through() -> None:
    """Positional and keyword arguments reach the function."""
    assert Ok(255) == try_(int, "ff", base=16)
    assert try_(int, "zz", base=10).is_err()

    async def scale(x: int, *, by: int) -> int:
        return x * by

    assert Ok(6) == run(try_async(scale, 2, by=3))


@pytest.mark.parametrize(
    "exc", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1), GeneratorExit()]
)
def test_try_never_catches_base_exceptions(exc: BaseException) -> None:
    """CancelledError, KeyboardInterrupt, SystemExit and GeneratorExit propagate."""

    def fail() -> None:
        raise exc

    async def fail_async() -> None:
        raise exc

    with pytest.raises(type(exc)):
        try_(fail)
    with pytest.raises(type(exc)):
        run(try_async(fail_async))


def test_ok_and_err_holding_nan_equal_themselves() -> None:
    """The same NaN is equal to itself inside Ok/Err, as inside a tuple, so the laws hold."""
    nan = float("nan")
    r: Ok[float] = Ok(nan)
    assert r == r.map(lambda x: x)
    assert r == r.bind(Ok)
    assert Err(nan) == Err(nan).map_error(lambda e: e)


def test_gather_with_a_limit_awaits_the_tasks_it_cancels() -> None:
    """When one awaitable raises, a task passed in is cancelled and awaited before gather raises."""
    log: list[str] = []

    async def boom() -> Ok[int]:
        raise RuntimeError("boom")

    async def slow() -> Ok[int]:
        try:
            await asyncio.Event().wait()
        finally:
            log.append("cleanup started")
            await asyncio.sleep(0)
            log.append("cleanup finished")
        return Ok(1)  # pragma: no cover - cancelled before

    async def main() -> bool:
        task = asyncio.ensure_future(slow())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="boom"):
            await gather(boom(), task, limit=1)
        return task.done()

    assert asyncio.run(main())
    assert ["cleanup started", "cleanup finished"] == log
