"""The compiled, immutable plan the executor runs.

Everything the hot path needs is precomputed here by `_compiler`: how each
step is called (`mode`), its retry policy and timeout, each block's branch
keys and reducer, and the goto target table of the top-level sequence. The
executor never looks at the spec tree again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

import attrs

from ._spec import End, Retry, Where

__all__ = [
    "AGEN",
    "ASYNC",
    "REMOTE",
    "SYNC",
    "THREAD",
    "Node",
    "ParallelNode",
    "Plan",
    "SequenceNode",
    "StepNode",
]

# How a step's body is called (StepNode.mode): small ints compared with `is`.
ASYNC: Final = 0
SYNC: Final = 1
THREAD: Final = 2
AGEN: Final = 3
REMOTE: Final = 4

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


Node: TypeAlias = StepNode | SequenceNode | ParallelNode


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
    timeout: float | None
    max_transitions: int
    shape: tuple[str, ...]
    """One line per node, in order (kind, path, key): what a journal's fingerprint covers."""
    fingerprint: str

    def with_steps(
        self, replacements: Mapping[str, Callable[..., Any]], caller: str = "with_steps()"
    ) -> Plan:
        """A copy of this plan with some steps' bodies swapped (names must exist)."""
        from ._compiler import replace_steps

        return replace_steps(self, replacements, caller)
