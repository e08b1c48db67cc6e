"""Every scalar check, written once: seconds, counts, names, callables and their arguments.

Each check returns the problem as a phrase (``"timeout= must be a number of
seconds > 0, got nan"``), or None when the value is fine. The caller decides
what to raise and what to put in front (the workflow, the step, its line):
the compiler collects every problem of one step and raises them together;
run calls, executors and stores raise the first one as a `UsageError`.

The rules are the same everywhere: a bool is never a number, NaN and the
infinities are never a number of seconds, and counts are ints.
"""

from __future__ import annotations

import inspect
import math
from types import FunctionType
from typing import Final

from ._plan import BACKOFFS, Retry
from .errors import UsageError

__all__ = [
    "arity_problem",
    "count_problem",
    "hook_problem",
    "name_problem",
    "require",
    "retry_problems",
    "seconds_problem",
]


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds_problem(
    value: object, name: str, *, optional: bool = True, zero: bool = False
) -> str | None:
    """A duration in seconds: a finite number > 0 (>= 0 with `zero`), or None if `optional`."""
    if value is None and optional:
        return None
    fine = _is_real(value) and math.isfinite(value) and (value >= 0 if zero else value > 0)  # type: ignore[arg-type, operator]
    if fine:
        return None
    bound = ">= 0" if zero else "> 0"
    none = " or None" if optional else ""
    return f"{name} must be a number of seconds {bound}{none}, got {value!r}"


INT32_MAX: Final = 2**31 - 1
"""The largest count a store keeps in an integer column (PostgreSQL ``integer``)."""


def count_problem(
    value: object,
    name: str,
    *,
    minimum: int = 1,
    optional: bool = False,
    maximum: int | None = None,
) -> str | None:
    """A whole number of things: an int >= `minimum` (and <= `maximum`), or None if `optional`."""
    if value is None and optional:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        if maximum is None or value <= maximum:
            return None
        return f"{name} must be at most {maximum}, got {value!r}"
    none = " or None" if optional else ""
    return f"{name} must be an int >= {minimum}{none}, got {value!r}"


def name_problem(value: object, name: str, *, optional: bool = False) -> str | None:
    """A name: a non-empty str, or None if `optional`."""
    if value is None and optional:
        return None
    if isinstance(value, str) and value:
        return None
    return f"{name} must be a non-empty string, got {value!r}"


def require(problem: str | None, error: type[Exception] = UsageError) -> None:
    """Raise `error(problem)` when there is a problem (for the checks outside the compiler)."""
    if problem is not None:
        raise error(problem)


def _plain_arity_fits(fn: FunctionType, args: int) -> bool:
    """Whether a plain function takes `args` positional arguments (read off its code)."""
    code = fn.__code__
    positional = code.co_argcount
    required = positional - len(fn.__defaults__ or ())
    kw_required = code.co_kwonlyargcount - len(fn.__kwdefaults__ or {})
    takes_more = bool(code.co_flags & inspect.CO_VARARGS)
    return kw_required == 0 and required <= args and (args <= positional or takes_more)


def arity_problem(fn: object, args: int, call: str) -> str | None:
    """Why `fn` cannot be called with `args` positional arguments, or None when it can.

    A callable whose signature Python cannot read (some builtins) is given the
    benefit of the doubt.
    """
    if type(fn) is FunctionType and _plain_arity_fits(fn, args):
        return None  # the common case, without building a Signature (10,000-step workflows)
    try:
        signature = inspect.signature(fn)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(args))
    except TypeError as exc:
        return f"it cannot be called as {call}: its signature is {signature} ({exc})"
    return None


def hook_problem(fn: object, args: int, call: str) -> str | None:
    """Why `fn` cannot be a hook called as `call` (a compensation, a reducer), or None."""
    if not callable(fn):
        return f"got {fn!r}"
    return arity_problem(fn, args, call)


def retry_problems(retry: Retry) -> list[str]:
    """What is wrong with a `Retry`, as phrases; empty when it is valid.

    `Retry` does not raise on construction: the compiler calls this and raises
    a `DefinitionError` that also names the workflow, the step and its line.
    ``max_delay`` may be infinite (no cap); ``base`` may not.
    """
    problems: list[str] = []
    attempts = retry.max_attempts
    if not isinstance(attempts, int) or isinstance(attempts, bool):
        problems.append(f"max_attempts must be an int, got {attempts!r}")
    elif attempts < 1:
        problems.append(f"max_attempts must be at least 1, got {attempts}")
    if retry.backoff not in BACKOFFS:
        problems.append(
            f"backoff must be one of {', '.join(map(repr, BACKOFFS))}, got {retry.backoff!r}"
        )
    for field, infinite in (("base", False), ("max_delay", True)):
        value = getattr(retry, field)
        if not _is_real(value) or not value >= 0 or (not infinite and math.isinf(value)):
            problems.append(f"{field} must be a number >= 0, got {value!r}")
    if not _is_real(retry.jitter) or not 0 <= retry.jitter <= 1:
        problems.append(f"jitter must be a fraction between 0 and 1, got {retry.jitter!r}")
    retry_on = retry.retry_on
    if not retry_on or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
    ):
        problems.append(f"retry_on must be a non-empty tuple of exception types, got {retry_on!r}")
    return problems
