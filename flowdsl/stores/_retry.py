"""Which journal entries a retried run starts with (`retry_run`), read off the store alone.

A retry is a new run whose journal holds some entries of the original's, so
those steps are replayed, not run again. What a run's definition looks like
is read from the shape the store recorded (one line per node, in order:
``step path/name -> key``, ``parallel path/name/ ...``), so a retry needs
no workflow imported. Names inside a foreach item carry its index
(``load[3]``); `base` takes it off to find the node.

The rules (`pick`):

* An entry of a step whose compensation ran (an ``undo`` entry names its
  step and visit) is never kept: that step is run again.
* ``from_step=None``: every finished step that succeeded is kept, with the
  item lists of foreach blocks and the deadlines of finished waits; a failed
  step (or branch, or item) runs again with a fresh retry budget.
* ``from_step=NAME``: the original's history up to the first time it reached
  NAME (a top-level node) or a node after it is kept, each entry's final
  outcome as it was (a failure a block settled, say); NAME and the nodes
  after it run again. A NAME after the node where the run failed is a
  `UsageError` (that failure would be kept).
* A block's reducer outcome is kept only when every entry inside the block
  is: when one of them runs again, so does the reducer.
* Attempts that were retried (not final) are never kept: only outcomes, so a
  step that runs again has its whole retry budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs

from .._engine._seams import DUE, ITEMS, REDUCE, STEP, UNDO
from ..errors import UsageError
from ._protocol import Attempt, Pick

__all__ = ["Outline", "base", "kept", "outline", "picker"]

_CONTAINERS: Final = ("parallel", "foreach", "sequence")
_INDEX: Final = re.compile(r"(?:\[\d+\])+$")


def base(name: str) -> str:
    """A journaled name without its foreach indices: ``load[3][0]`` -> ``load``."""
    return _INDEX.sub("", name)


@attrs.frozen
class Outline:
    """A workflow's nodes as its recorded shape tells them."""

    top: tuple[str, ...]
    """The top-level nodes' names, in order (steps, waits, calls and blocks)."""
    owner: Mapping[str, str]
    """Every node's name -> the name of the top-level node it is (or is inside)."""
    inside: Mapping[str, frozenset[str]]
    """Every block's (and branch sequence's) name -> the names of every node inside it."""


def outline(shape: Sequence[str]) -> Outline:
    """The `Outline` of a recorded shape (the lines the compiler writes, in pre-order).

    A node inside a block has the block's path (``name/``) before its name;
    the open blocks are a stack, left when a line does not start with the
    innermost one's path.
    """
    top: list[str] = []
    owner: dict[str, str] = {}
    inside: dict[str, set[str]] = {}
    stack: list[tuple[str, str]] = []  # (path of a block's children, its name)
    for line in shape:
        kind, _, rest = line.partition(" ")
        while stack and not rest.startswith(stack[-1][0]):
            stack.pop()
        prefix = stack[-1][0] if stack else ""
        if kind in _CONTAINERS:
            path = rest if kind == "sequence" else rest.rsplit(" ", 2)[0]
            name = path[len(prefix) : -1]
        else:
            head = rest[len(prefix) :].rsplit(" -> ", 1)[0]
            name = head if kind == "step" else head.rsplit(" ", 1)[0]
        if not stack:
            top.append(name)
        owner[name] = stack[0][1] if stack else name
        for _, block in stack:
            inside[block].add(name)
        if kind in _CONTAINERS:
            inside[name] = set()
            stack.append((path, name))
    return Outline(tuple(top), owner, {name: frozenset(names) for name, names in inside.items()})


def picker(run_id: str, from_step: str | None) -> Pick:
    """The `Store.retry` ``pick`` of a retry of `run_id` (from `from_step`, or by default)."""

    def pick(
        status: str, failed_step: str | None, shape: tuple[str, ...], journal: tuple[Attempt, ...]
    ) -> tuple[Attempt, ...]:
        plan = outline(shape)
        if from_step is not None:
            _check_from(run_id, plan, from_step, status, failed_step)
        return kept(plan, journal, from_step)

    return pick


def kept(plan: Outline, journal: Sequence[Attempt], from_step: str | None) -> tuple[Attempt, ...]:
    """The entries of `journal` (in commit order) a retry starts with (see the module
    docstring); `from_step` a top-level node of `plan`, or None."""
    undone = {(a.step, a.visit) for a in journal if a.kind == UNDO}
    if from_step is None:
        history = list(journal)
        wanted: Callable[[Attempt], bool] = lambda a: a.final and a.succeeded  # noqa: E731
    else:
        history = list(journal[: _cut(plan, journal, from_step)])
        wanted = lambda a: a.final  # noqa: E731
    keep = [
        a
        for a in history
        if a.kind in (STEP, ITEMS, REDUCE, DUE) and wanted(a) and (a.step, a.visit) not in undone
    ]
    finished = {(a.step, a.visit) for a in keep if a.kind == STEP}
    keep = [a for a in keep if a.kind != DUE or (a.step, a.visit) in finished]
    # A block's reducer only when nothing inside it runs again (nested blocks: to a fixpoint).
    while True:
        outcomes = {(a.kind, a.step, a.visit) for a in keep}
        again = {  # the nodes whose outcome is not kept: they run again
            base(a.step)
            for a in journal
            if a.kind in (STEP, ITEMS, REDUCE) and (a.kind, a.step, a.visit) not in outcomes
        }
        stale = [
            a
            for a in keep
            if a.kind == REDUCE and again & plan.inside.get(base(a.step), frozenset())
        ]
        if not stale:
            return tuple(keep)
        keep = [a for a in keep if a not in stale]


def _position(plan: Outline, name: str) -> int | None:
    """Where the top-level node holding the node `name` (journaled name) is; None: unknown."""
    top = plan.owner.get(base(name))
    return None if top is None else plan.top.index(top)


def _cut(plan: Outline, journal: Sequence[Attempt], from_step: str) -> int:
    """Where the history a retry ``from_step`` keeps ends: at the first entry of that node or
    of one after it (an entry of a node the shape does not tell: there too)."""
    start = plan.top.index(from_step)
    for index, entry in enumerate(journal):
        if entry.kind == UNDO:
            continue
        found = _position(plan, entry.step)
        if found is None or found >= start:
            return index
    return len(journal)


def _check_from(
    run_id: str, plan: Outline, from_step: str, status: str, failed_step: str | None
) -> None:
    """`from_step` names a top-level node, not after the one where the run failed."""
    if from_step not in plan.top:
        names = ", ".join(repr(name) for name in plan.top)
        msg = (
            f"from_step= takes a top-level step (or block, wait, call) of the workflow of run "
            f"{run_id!r}, got {from_step!r}; its top-level nodes are: {names}"
        )
        raise UsageError(msg)
    if status != "failed" or failed_step is None:
        return
    failed_at = _position(plan, failed_step)
    if failed_at is not None and failed_at < plan.top.index(from_step):
        top = plan.top[failed_at]
        msg = (
            f"run {run_id!r} failed at {failed_step!r}, before {from_step!r}: a retry from "
            f"{from_step!r} would keep that failure and fail the same way; retry from "
            f"{top!r} or a step before it, or without from_step= to run again every step "
            f"that did not succeed"
        )
        raise UsageError(msg)
