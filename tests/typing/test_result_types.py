"""Static type checks for flowdsl.result, verified by ``mypy --strict``.

Nothing here is a test at run time: pytest imports the module and finds no
``test_*`` functions. The checks are the ``assert_type`` calls, which mypy
verifies and which cost nothing when the functions are not called.
"""

from __future__ import annotations

from typing import Literal, assert_type

from flowdsl.result import (
    Err,
    ErrorGroup,
    Ok,
    Result,
    combine,
    gather,
    traverse,
    traverse_all,
    try_,
    try_async,
)


def parse(text: str) -> Result[int, str]:
    return Ok(int(text)) if text.isdigit() else Err(f"not a number: {text!r}")


def check_constructors() -> None:
    assert_type(Ok(1), Ok[int])
    assert_type(Err("boom"), Err[str])
    assert_type(Ok(1).value, int)
    assert_type(Err(ValueError("x")).error, ValueError)


def check_ok_methods() -> None:
    assert_type(Ok(1).map(str), Ok[str])
    assert_type(Ok(1).map(lambda n: [n]), Ok[list[int]])
    assert_type(Ok("7").bind(parse), Ok[int] | Err[str])
    assert_type(Ok(1).map_error(str), Ok[int])
    assert_type(Ok(1).tap(print), Ok[int])
    assert_type(Ok(1).ensure(lambda n: n > 0, lambda n: f"{n} <= 0"), Ok[int] | Err[str])
    assert_type(Ok(1).unwrap(), int)
    assert_type(Ok(1).unwrap_or("none"), int)
    assert_type(Ok(1).match(ok=str, err=repr), str)
    assert_type(Ok(1).is_ok(), Literal[True])
    assert_type(Err(1).is_err(), Literal[True])


def check_err_methods() -> None:
    assert_type(Err("e").map(str), Err[str])
    assert_type(Err("e").map_error(len), Err[int])
    assert_type(Err("e").recover(len), Ok[int])
    assert_type(Err("e").or_else(parse), Ok[int] | Err[str])
    assert_type(Err("e").unwrap_or(0), int)
    assert_type(Err("e").unwrap_or_else(len), int)
    assert_type(Err("e").unwrap_err(), str)


def check_result_methods(r: Result[int, str]) -> None:
    assert_type(r.map(lambda n: n + 1), Ok[int] | Err[str])
    assert_type(r.map(str), Ok[str] | Err[str])
    assert_type(r.map_error(len), Ok[int] | Err[int])
    assert_type(r.bind(lambda n: Ok(n * 2) if n else Err(0)), Ok[int] | Err[int] | Err[str])
    assert_type(r.recover(len), Ok[int])
    assert_type(r.unwrap(), int)
    assert_type(r.unwrap_or(None), int | None)
    assert_type(r.unwrap_or_else(len), int)
    assert_type(r.match(ok=float, err=len), float | int)
    chained: Result[str, str] = r.map(str)
    assert_type(chained, Ok[str] | Err[str])


async def check_async_methods(r: Result[int, str]) -> None:
    async def double(n: int) -> int:
        return n * 2

    async def length(s: str) -> int:
        return len(s)

    assert_type(await Ok(1).map_async(double), Ok[int])
    assert_type(await r.map_async(double), Ok[int] | Err[str])
    assert_type(await r.map_error_async(length), Ok[int] | Err[int])
    assert_type(await r.recover_async(length), Ok[int])
    assert_type(await r.unwrap_or_else_async(length), int)


def check_match_narrowing(r: Result[int, str]) -> None:
    match r:
        case Ok(value):
            assert_type(value, int)
        case Err(error):
            assert_type(error, str)
    if isinstance(r, Ok):
        assert_type(r, Ok[int])
    else:
        assert_type(r, Err[str])


def check_combine(a: Result[int, str], b: Result[bytes, ValueError]) -> None:
    assert_type(combine(), Ok[tuple[()]])
    assert_type(combine(a), Ok[tuple[int]] | Err[str])
    assert_type(combine(a, b), Ok[tuple[int, bytes]] | Err[str | ValueError | ErrorGroup])
    many = [a, a, a, a, a]
    assert_type(combine(*many), Ok[tuple[int, ...]] | Err[str | ErrorGroup])
    assert_type(traverse(["1", "2"], parse), Ok[tuple[int, ...]] | Err[str])
    assert_type(traverse_all(["1", "2"], parse), Ok[tuple[int, ...]] | Err[str | ErrorGroup])


async def check_gather_and_try() -> None:
    async def fetch(n: int) -> Result[int, str]:
        return Ok(n)

    assert_type(
        await gather(fetch(1), fetch(2), limit=1),
        Ok[tuple[int, ...]] | Err[str | ErrorGroup],
    )
    assert_type(try_(int, "3"), Ok[int] | Err[Exception])

    async def read(path: str) -> bytes:
        return path.encode()

    assert_type(await try_async(read, "x"), Ok[bytes] | Err[Exception])


def check_misuse_is_rejected(r: Result[int, str]) -> None:
    # Each ignore must be needed: mypy --strict reports an unused one.
    r.map(len)  # type: ignore[arg-type]
    r.map_error(lambda n: n + 1)  # type: ignore[operator]
    Ok(1).bind(str)  # type: ignore[arg-type]
    combine(1)  # type: ignore[call-overload]
