"""The contract between compiling and executing: the plan, and the values both speak.

`_define` produces a `Plan` (everything the hot path needs precomputed: how
each step is called (`mode`), its retry policy and timeout, each block's
branch keys and reducer, the goto target table of the top-level sequence),
and `_engine` runs it without ever looking at the spec tree again. This module
imports nothing of either: both import it. `END`, `Retry` and `Where` live
here because both sides (and the journal) use them.
"""

from __future__ import annotations

import enum
import inspect
import random
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs

from .errors import UsageError

__all__ = [
    "AGEN",
    "ASYNC",
    "CALL",
    "END",
    "MODE_NAMES",
    "REMOTE",
    "SYNC",
    "THREAD",
    "Backoff",
    "BlockNode",
    "CallNode",
    "End",
    "ForeachNode",
    "Node",
    "ParallelNode",
    "Plan",
    "Retry",
    "Schedule",
    "SequenceNode",
    "StepNode",
    "WaitNode",
    "Where",
    "is_async_callable",
    "replace_steps",
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
BACKOFFS: Final = ("exponential", "linear", "constant")


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


# How a step's body is called (StepNode.mode): small ints compared with `is`.
ASYNC: Final = 0
SYNC: Final = 1
THREAD: Final = 2
AGEN: Final = 3
REMOTE: Final = 4
CALL: Final = 5
"""The mode of a `CallNode`: its attempt runs a child workflow."""

MODE_NAMES: Final = {ASYNC: "async", SYNC: "sync", THREAD: "thread", AGEN: "async generator"}


@attrs.frozen(eq=False)
class StepNode:
    """A compiled step."""

    name: str
    key: str
    fn: Callable[..., Any]
    mode: int
    retry: Retry | None
    timeout: float | None
    compensate: Callable[..., Any] | None
    routes: tuple[str | End, ...]
    executor: str | None
    where: Where
    top_index: int
    """Index in the top-level sequence, or -1 inside a block."""


@attrs.frozen(eq=False)
class SequenceNode:
    """A compiled ``with sequence(name):`` branch."""

    name: str
    key: str
    children: tuple[Node, ...]
    where: Where


@attrs.frozen(eq=False)
class ParallelNode:
    """A compiled ``with parallel():`` block."""

    name: str
    key: str
    children: tuple[Node, ...]
    keys: tuple[str, ...]
    fail_fast: bool
    into: Callable[..., Any] | None
    max_concurrency: int | None
    where: Where
    top_index: int
    named: bool = True
    """False for a block without ``name=`` (named ``parallel#n``: the n-th block)."""


@attrs.frozen(eq=False)
class WaitNode:
    """A compiled wait: ``sleep_for``, ``sleep_until`` or ``wait_for_event``.

    `kind` is ``"sleep"`` or ``"wait"`` (an event). How long: `seconds` (a
    fixed sleep_for), `until` (a fixed sleep_until, epoch seconds), or `fn`
    (``fn(ctx)`` returns the seconds or the aware datetime), for an event its
    `timeout` (None: no timeout). `on_timeout` routes a timed-out event wait
    (None: the run fails, as a failing step does).
    """

    name: str
    key: str
    kind: str
    how: str
    """``"sleep_for"``, ``"sleep_until"`` or ``"event"``."""
    seconds: float | None
    until: float | None
    fn: Callable[..., Any] | None
    event: str | None
    timeout: float | None
    on_timeout: str | End | None
    where: Where
    top_index: int


@attrs.frozen(eq=False)
class ForeachNode:
    """A compiled ``with foreach(items):`` block: its body run once per item."""

    name: str
    key: str
    items: str | Callable[..., Any]
    """The context key holding the items, or ``fn(ctx)`` returning them."""
    children: tuple[Node, ...]
    """The body: a sequence run on the block's snapshot plus the item."""
    fail_fast: bool
    into: Callable[..., Any] | None
    max_concurrency: int | None
    where: Where
    top_index: int
    named: bool = True
    """False for a block without ``name=`` (named ``foreach#n``: the n-th foreach block)."""


@attrs.frozen(eq=False)
class CallNode:
    """A compiled ``call_workflow(...)``: another workflow run as a child run."""

    name: str
    key: str
    """Where the child's output is stored (``returns=``, else the node's name)."""
    workflow: str
    """The child workflow's registered name."""
    resolve: Callable[[], Plan]
    """The child's plan, looked up when the node runs (it may be defined later)."""
    input: Mapping[str, Any] | Callable[..., Any] | None
    queue: str | None
    retry: Retry | None
    where: Where
    top_index: int
    # What the engine's step loop reads of a node (a call's attempts are run by it):
    mode: int = CALL
    timeout: float | None = None
    compensate: Callable[..., Any] | None = None
    executor: str | None = None
    fn: Callable[..., Any] = attrs.field(default=lambda ctx: None, repr=False)
    """Never called: the engine runs a call's attempt as a child run (mode `CALL`)."""


Node: TypeAlias = StepNode | SequenceNode | ParallelNode | WaitNode | ForeachNode | CallNode
BlockNode: TypeAlias = ParallelNode | ForeachNode

CatchUp: TypeAlias = Literal["latest", "all", "none"]
CATCH_UPS: Final = ("latest", "all", "none")


@attrs.frozen
class Schedule:
    """``@workflow(schedule=...)``: when workers start runs of the workflow on their own."""

    cron: str
    """A cron expression (five fields, or six with seconds), checked with croniter."""
    timezone: str
    """The IANA time zone the expression is read in (``"UTC"``, ``"Europe/Paris"``)."""
    catch_up: CatchUp
    """Ticks missed while no worker ran: ``"latest"`` (the most recent once), ``"all"``, ``"none"``."""


@attrs.frozen(eq=False)
class Plan:
    """A validated workflow, ready to run any number of times, concurrently."""

    name: str
    qualname: str
    where: Where
    nodes: tuple[Node, ...]
    """The top-level sequence."""
    targets: Mapping[str, int]
    """goto target table: top-level step name -> index in `nodes`."""
    steps: Mapping[str, StepNode]
    """Every step of the workflow, by name, in declaration order."""
    waits: Mapping[str, WaitNode] = attrs.field(factory=dict, kw_only=True)
    """Every wait of the workflow, by name, in declaration order."""
    calls: Mapping[str, CallNode] = attrs.field(factory=dict, kw_only=True)
    """Every ``call_workflow`` of the workflow, by name, in declaration order."""
    schedule: Schedule | None = attrs.field(default=None, kw_only=True)
    """When workers start runs on their own (``@workflow(schedule=...)``), else None."""
    timeout: float | None
    max_transitions: int
    shape: tuple[str, ...]
    """One line per node, in order (kind, path, key): what a journal's fingerprint covers."""
    fingerprint: str

    def with_steps(
        self, replacements: Mapping[str, Callable[..., Any]], caller: str = "with_steps()"
    ) -> Plan:
        """A copy of this plan with some steps' bodies swapped (names must exist)."""
        return replace_steps(self, replacements, caller)


def is_async_callable(fn: object) -> bool:
    """True for ``async def`` functions, and objects or partials wrapping one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def replace_steps(
    plan: Plan, replacements: Mapping[str, Callable[..., Any]], caller: str = "with_steps()"
) -> Plan:
    """A copy of `plan` whose named steps call other functions (for tests and fakes).

    A name the plan has no step for raises `UsageError`, prefixed with `caller`.
    """
    unknown = [name for name in replacements if name not in plan.steps]
    if unknown:
        known = ", ".join(repr(n) for n in plan.steps)
        msg = (
            f"{caller}: workflow {plan.name!r} has no step named "
            f"{', '.join(map(repr, unknown))}; known steps: {known}"
        )
        raise UsageError(msg)

    def swap(node: Node) -> Node:
        if isinstance(node, StepNode):
            fn = replacements.get(node.name)
            if fn is None:
                return node
            if inspect.isasyncgenfunction(fn):
                mode = AGEN
            elif node.mode in (THREAD, REMOTE) and not is_async_callable(fn):
                mode = node.mode
            else:
                mode = ASYNC if is_async_callable(fn) else SYNC
            return attrs.evolve(node, fn=fn, mode=mode)
        if isinstance(node, WaitNode | CallNode):
            return node
        return attrs.evolve(node, children=tuple(swap(c) for c in node.children))

    nodes = tuple(swap(n) for n in plan.nodes)
    steps: dict[str, StepNode] = {}

    def collect(node: Node) -> None:
        if isinstance(node, StepNode):
            steps[node.name] = node
        elif not isinstance(node, WaitNode | CallNode):
            for child in node.children:
                collect(child)

    for node in nodes:
        collect(node)
    return attrs.evolve(plan, nodes=nodes, steps=steps)
