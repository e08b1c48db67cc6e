"""How a step's final failure is settled: raised in a sequence, kept or fatal in a block.

A step run in a sequence gets `IN_SEQUENCE`: its failure is raised (`Failed`)
and unwinds to the top-level loop. A parallel branch gets its block's policy,
an object that owns what a failure does there: `COMPLETE_ALL` keeps it as the
branch's ``Err``; a `FailFast` (one per block run) records the first failure
and cancels the siblings. The step itself calls ``policy.settle``, so a
branch's task needs no wrapper.
"""

from __future__ import annotations

import asyncio
from typing import Final

from ..result import Err

__all__ = [
    "COMPLETE_ALL",
    "IN_SEQUENCE",
    "CompleteAll",
    "FailFast",
    "Failed",
    "InSequence",
    "Policy",
]


class Failed(Exception):
    """A step (or reducer) failed for good: unwinds to the top-level loop."""

    def __init__(self, step: str, reason: object) -> None:
        super().__init__(step, reason)
        self.step = step
        self.reason = reason


class InSequence:
    """A step in a sequence: its failure fails the sequence (raised)."""

    __slots__ = ()
    branch: Final = False

    @staticmethod
    def settle(failure: Failed) -> object:
        raise failure


class CompleteAll:
    """A branch of a ``complete_all`` block: a failure is the branch's ``Err``."""

    __slots__ = ()
    branch: Final = True

    @staticmethod
    def settle(failure: Failed) -> object:
        return Err(failure.reason)


class FailFast:
    """A ``fail_fast`` block in progress: its first failure, and the sibling tasks to cancel.

    The branches abort the block themselves rather than raising into the TaskGroup:
    CPython 3.11's TaskGroup then cancels the parent task and swallows a cancellation
    that comes from outside while it waits for the siblings. Here the group only ever
    sees cancelled or finished tasks, so a caller's cancel always propagates.
    """

    __slots__ = ("failure", "tasks")
    branch: Final = True

    def __init__(self) -> None:
        self.failure: Failed | None = None
        self.tasks: list[asyncio.Task[object]] = []

    def settle(self, failure: Failed) -> object:
        if self.failure is None:
            self.failure = failure
            current = asyncio.current_task()
            for task in self.tasks:
                if task is not current:
                    task.cancel()
        return None


Policy = InSequence | CompleteAll | FailFast

IN_SEQUENCE: Final = InSequence()
COMPLETE_ALL: Final = CompleteAll()
