"""The executors every run has: the caller's, and the built-in process pool.

``@step(executor="process")`` needs nothing passed to the run call: the
shared `ProcessExecutor` is made on first use (and closed at exit). A name
the caller gives in ``executors=`` wins over the built-in one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .._engine._seams import Invoker
from ._process import shared_process_executor

__all__ = ["with_builtins"]


class _WithBuiltins(Mapping[str, Invoker]):
    """``executors=`` plus ``"process"`` (the shared pool, created when first asked for)."""

    __slots__ = ("given",)

    def __init__(self, given: Mapping[str, Invoker]) -> None:
        self.given = given

    def __getitem__(self, name: str) -> Invoker:
        found = self.given.get(name)
        if found is not None:
            return found
        if name == "process":
            return shared_process_executor()
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        if "process" not in self.given:
            yield "process"
        yield from self.given

    def __len__(self) -> int:
        return len(self.given) + ("process" not in self.given)


def with_builtins(executors: Mapping[str, Invoker] | None) -> Mapping[str, Invoker]:
    """What a run's steps can be sent to: `executors` and the built-in ones."""
    return _WithBuiltins(executors or {})
