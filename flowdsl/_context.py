"""The immutable context a step receives, without copying it per step.

A run's context grows one write at a time (each step's outcome). Copying a
dict per step would make a chain of n steps cost O(n^2); instead each `Scope`
keeps, for every key, the value it has now and the versions it had before.
A `Context` is a snapshot: a scope plus a version number. Reading a key is a
dict lookup (and, only for a key overwritten since the snapshot, a short scan
of its history), writing one is O(1), and a snapshot never changes after it
is taken. Parallel branches write into child scopes of the block's scope, so
siblings never see each other's writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

__all__ = ["Context", "Scope"]

_MISSING: Final = object()


class Scope:
    """Append-only versioned storage for one sequence of writes."""

    __slots__ = ("latest", "older", "parent", "parent_version", "version")

    def __init__(
        self,
        parent: Scope | None = None,
        parent_version: int = 0,
        initial: Mapping[str, Any] | None = None,
    ) -> None:
        self.parent = parent
        self.parent_version = parent_version
        self.version = 0
        self.latest: dict[str, tuple[int, Any]] = (
            {k: (0, v) for k, v in initial.items()} if initial else {}
        )
        self.older: dict[str, list[tuple[int, Any]]] = {}

    def write(self, mapping: Mapping[str, Any]) -> None:
        """Merge `mapping` (shallowly) as one new version."""
        self.version = version = self.version + 1
        latest = self.latest
        for key, value in mapping.items():
            previous = latest.get(key)
            if previous is not None:
                history = self.older.get(key)
                if history is None:
                    self.older[key] = [previous]
                else:
                    history.append(previous)
            latest[key] = (version, value)

    def added(self) -> dict[str, Any]:
        """What this scope holds now (its own writes, not its parent's)."""
        return {key: entry[1] for key, entry in self.latest.items()}

    def snapshot(self) -> Context:
        """The context as it is now."""
        return Context(self, self.version)


class Context(Mapping[str, Any]):
    """A read-only mapping: the workflow input merged with what earlier steps produced.

    Also carries ``run_id``, ``step`` (the step it was made for), ``attempt``
    (1-based) and ``idempotency_key`` (stable for one visit of one step of one
    run, across retries and resumes).
    """

    __slots__ = ("_scope", "_version", "_visit", "attempt", "run_id", "step")

    def __init__(
        self,
        scope: Scope,
        version: int,
        run_id: str = "",
        step: str = "",
        attempt: int = 1,
        visit: int = 1,
    ) -> None:
        self._scope = scope
        self._version = version
        self._visit = visit
        self.run_id = run_id
        """The id of the run this context belongs to."""
        self.step = step
        """The name of the step it was made for."""
        self.attempt = attempt
        """Which attempt of the step this is, from 1."""

    @property
    def idempotency_key(self) -> str:
        """``run_id:step`` (``#n`` added from the second visit of a goto loop on)."""
        if self._visit == 1:
            return f"{self.run_id}:{self.step}"
        return f"{self.run_id}:{self.step}#{self._visit}"

    def _lookup(self, key: str) -> Any:
        scope: Scope | None = self._scope
        version = self._version
        while scope is not None:
            entry = scope.latest.get(key)
            if entry is not None:
                if entry[0] <= version:
                    return entry[1]
                history = scope.older.get(key)
                if history:
                    for old_version, value in reversed(history):
                        if old_version <= version:
                            return value
            version = scope.parent_version
            scope = scope.parent
        return _MISSING

    def __getitem__(self, key: str) -> Any:
        entry = self._scope.latest.get(key)
        if entry is not None and entry[0] <= self._version:  # the common case, inlined
            return entry[1]
        value = self._lookup(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._scope.latest.get(key)
        if entry is not None and entry[0] <= self._version:
            return entry[1]
        value = self._lookup(key)
        return default if value is _MISSING else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        scope: Scope | None = self._scope
        version = self._version
        chain: list[tuple[Scope, int]] = []
        while scope is not None:
            chain.append((scope, version))
            version = scope.parent_version
            scope = scope.parent
        # Oldest scope first, so keys come out in the order they were first written.
        for scope, version in reversed(chain):
            older = scope.older
            for key, entry in scope.latest.items():
                if key in seen:
                    continue
                history = older.get(key)
                first = history[0][0] if history else entry[0]
                if first <= version:
                    seen.add(key)
                    yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy of the mapping (for sending to another process)."""
        scope = self._scope
        if self._version != scope.version:
            return {key: self[key] for key in self}
        # The snapshot is the scope as it is now: every entry is visible.
        own = {key: entry[1] for key, entry in scope.latest.items()}
        if scope.parent is None:
            return own
        merged = Context(scope.parent, scope.parent_version).to_dict()
        merged.update(own)
        return merged

    def __repr__(self) -> str:
        return f"Context({self.to_dict()!r}, step={self.step!r}, attempt={self.attempt})"
