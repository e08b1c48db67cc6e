"""The frozen step tree that recording produces and compiling consumes.

Specs are plain data: they hold the user's callables and options exactly as
given, plus where each was written (`Where`) for error messages. They run
nothing and validate nothing; `_compiler` does all checking.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from typing import Literal, TypeAlias

import attrs

__all__ = [
    "END",
    "Backoff",
    "BlockSpec",
    "End",
    "ParallelSpec",
    "Retry",
    "SequenceSpec",
    "StepSpec",
    "Where",
    "WorkflowSpec",
    "retry_problems",
]


class End(enum.Enum):
    """The type of `END`, the goto target that finishes a run successfully."""

    END = "END"

    def __repr__(self) -> str:
        return "END"


END = End.END
"""``goto(END)`` finishes the run successfully now."""


@attrs.frozen
class Where:
    """Where a recorded object was written: used in every definition error."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


Backoff: TypeAlias = Literal["exponential", "linear", "constant"]
_BACKOFFS = ("exponential", "linear", "constant")


def retry_problems(inst: Retry) -> list[str]:
    """What is wrong with a `Retry`, as phrases; empty when it is valid.

    `Retry` does not raise on construction: the compiler calls this and raises
    a `DefinitionError` that also names the workflow, the step and its line.
    """
    problems: list[str] = []
    if not isinstance(inst.max_attempts, int) or isinstance(inst.max_attempts, bool):
        problems.append(f"max_attempts must be an int, got {inst.max_attempts!r}")
    elif inst.max_attempts < 1:
        problems.append(f"max_attempts must be at least 1, got {inst.max_attempts}")
    if inst.backoff not in _BACKOFFS:
        problems.append(
            f"backoff must be one of {', '.join(map(repr, _BACKOFFS))}, got {inst.backoff!r}"
        )
    for field in ("base", "max_delay"):
        value = getattr(inst, field)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or value < 0
            or math.isnan(value)
        ):
            problems.append(f"{field} must be a number >= 0, got {value!r}")
    if (
        not isinstance(inst.jitter, int | float)
        or isinstance(inst.jitter, bool)
        or not 0 <= inst.jitter <= 1
    ):
        problems.append(f"jitter must be a fraction between 0 and 1, got {inst.jitter!r}")
    retry_on = inst.retry_on
    if not retry_on or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
    ):
        problems.append(f"retry_on must be a non-empty tuple of exception types, got {retry_on!r}")
    return problems


def _to_tuple(value: object) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        return (value,)
    try:
        return tuple(value)  # type: ignore[arg-type]
    except TypeError:
        return (value,)  # type: ignore[return-value]  # reported by retry_problems


@attrs.frozen
class Retry:
    """How often a failing step is attempted, and how long to wait in between.

    Exactly ``max_attempts`` attempts are made. The delay before attempt
    ``n + 1`` (after ``n`` failures) is ``base * 2**(n-1)`` (exponential),
    ``base * n`` (linear) or ``base`` (constant), capped at ``max_delay``; with
    ``jitter`` (a fraction in [0, 1]) it is drawn from
    ``[delay * (1 - jitter), delay]``.

    An ``error()`` outcome is a failed attempt, retried while attempts remain.
    A raised exception is retried when it is an instance of one of
    ``retry_on``; any other exception fails the step at once. A timed-out
    attempt raises `TimeoutError`, so it is retried under the default
    ``retry_on=(Exception,)`` and not under, say, ``retry_on=(ConnectionError,)``.
    """

    max_attempts: int = 3
    """Attempts in all, the first included (at least 1)."""
    backoff: Backoff = "exponential"
    """How the delay grows: ``"exponential"``, ``"linear"`` or ``"constant"``."""
    base: float = 0.1
    """Seconds: the first delay, and the unit of the later ones."""
    max_delay: float = 30.0
    """Seconds: no delay is longer than this."""
    jitter: float = 0.0
    """A fraction in [0, 1]: how much of each delay may be taken off at random."""
    retry_on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_to_tuple
    )
    """The exception types worth another attempt (one type or a tuple)."""

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts (``failures >= 1``)."""
        if self.backoff == "exponential":
            # 2.0 ** 1024 overflows; past 2 ** 1000 the cap has long applied anyway.
            raw = self.base * 2.0 ** min(failures - 1, 1000)
        elif self.backoff == "linear":
            raw = self.base * failures
        else:
            raw = self.base
        delay = min(raw, self.max_delay)
        if self.jitter:
            draw = (rng or random).random()
            delay *= 1.0 - self.jitter * draw
        return delay


@attrs.frozen(eq=False)
class StepSpec:
    """One recorded step: the user's callable and its options, as given."""

    fn: Callable[..., object]
    name: str
    returns: str | None
    retry: Retry | None
    timeout: float | None
    compensate: object
    routes: tuple[str | End, ...]
    blocking: bool
    executor: str | None
    where: Where

    @property
    def key(self) -> str:
        """The context key of the step's value: ``returns=`` or its name."""
        return self.returns if self.returns is not None else self.name


@attrs.frozen(eq=False)
class SequenceSpec:
    """``with sequence(name):`` a branch of several steps, run in order."""

    name: str
    children: tuple[NodeSpec, ...]
    where: Where

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(eq=False)
class ParallelSpec:
    """``with parallel(...):`` branches started at once, joined at the end."""

    name: str | None
    children: tuple[NodeSpec, ...]
    on_error: object
    into: object
    max_concurrency: object
    where: Where


NodeSpec: TypeAlias = StepSpec | SequenceSpec | ParallelSpec
BlockSpec: TypeAlias = SequenceSpec | ParallelSpec


@attrs.frozen(eq=False)
class WorkflowSpec:
    """A whole recorded workflow: its top-level sequence and its options."""

    name: str
    children: tuple[NodeSpec, ...]
    timeout: object
    max_transitions: object
    qualname: str
    where: Where
    executor: object = None
    """Where steps without an ``executor=`` of their own run (``@workflow(executor=...)``)."""
