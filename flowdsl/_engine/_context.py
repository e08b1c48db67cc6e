"""The immutable context a step receives, without copying it per step.

A run's context grows one write at a time (each step's outcome). Copying a
dict per step would make a chain of n steps cost O(n^2); instead each `Scope`
keeps, for every key, the value it has now and the versions it had before.
A `Context` is a snapshot: a scope plus a version number. Reading a key is a
dict lookup (and, only for a key overwritten since the snapshot, a short scan
of its history), writing one is O(1), and a snapshot never changes after it
is taken. Parallel branches write into child scopes of the block's scope, so
siblings never see each other's writes.

The isolation is deep: every value is frozen as it is written (`freeze`), so a
nested dict, list or set a step receives cannot be changed by it, and mutating
it can never change what another step, a sibling branch, the caller's input or
the journal sees. Freezing copies a container once, when it enters the context
(the cost is in the benchmarks); reading costs nothing extra. Frozen
containers are subclasses of `dict` and `list` (so ``isinstance``, ``==`` and
``json.dumps`` work as before); sets become frozensets; a copy
(``dict(value)``, ``list(value)``, ``copy.deepcopy(value)``) is the step's own,
mutable again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeVar

from ..errors import UsageError
from ..result import Err, Ok

__all__ = [
    "IMMUTABLE",
    "PLAIN",
    "PLAIN_DICTS",
    "PLAIN_HEIGHT",
    "PLAIN_LISTS",
    "Context",
    "FrozenDict",
    "FrozenList",
    "Item",
    "Scope",
    "freeze",
]

_MISSING: Final = object()
_T = TypeVar("_T")


def _read_only(value: object) -> NoReturn:
    kind = "list" if isinstance(value, list) else "dict"
    copy = f"{kind}(value)"
    msg = (
        f"this {kind} is part of the workflow context, which steps share read-only; "
        f"change a copy of it instead: {copy}, or copy.deepcopy(value) for nested data, "
        f"and return what changed"
    )
    raise UsageError(msg)


class FrozenDict(dict[Any, Any]):
    """A dict from the workflow context: reads as a dict, refuses every change.

    ``dict(d)`` or ``copy.deepcopy(d)`` gives a mutable copy; pickling gives a
    plain dict.
    """

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> NoReturn:
        _read_only(self)

    def __delitem__(self, key: Any) -> NoReturn:
        _read_only(self)

    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _read_only(self)

    def clear(self) -> NoReturn:
        _read_only(self)

    def pop(self, *args: Any) -> NoReturn:
        _read_only(self)

    def popitem(self) -> NoReturn:
        _read_only(self)

    def setdefault(self, *args: Any) -> NoReturn:
        _read_only(self)

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only(self)

    def __reduce__(self) -> tuple[type[dict[Any, Any]], tuple[dict[Any, Any]]]:
        return (dict, (dict(self),))

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)

    def __repr__(self) -> str:
        return dict.__repr__(self)


class FrozenList(list[Any]):
    """A list from the workflow context: reads as a list, refuses every change.

    ``list(v)`` or ``copy.deepcopy(v)`` gives a mutable copy; pickling gives a
    plain list.
    """

    __slots__ = ()

    def __setitem__(self, index: Any, value: Any) -> NoReturn:
        _read_only(self)

    def __delitem__(self, index: Any) -> NoReturn:
        _read_only(self)

    def __iadd__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _read_only(self)

    def __imul__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _read_only(self)

    def append(self, value: Any) -> NoReturn:
        _read_only(self)

    def extend(self, values: Any) -> NoReturn:
        _read_only(self)

    def insert(self, index: Any, value: Any) -> NoReturn:
        _read_only(self)

    def pop(self, *args: Any) -> NoReturn:
        _read_only(self)

    def remove(self, value: Any) -> NoReturn:
        _read_only(self)

    def clear(self) -> NoReturn:
        _read_only(self)

    def sort(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only(self)

    def reverse(self) -> NoReturn:
        _read_only(self)

    def __reduce__(self) -> tuple[type[list[Any]], tuple[list[Any]]]:
        return (list, (list(self),))

    def __copy__(self) -> list[Any]:
        return list(self)

    def __repr__(self) -> str:
        return list.__repr__(self)


# A frozen container that the journal has found to be plain JSON (str keys other than "$";
# str, int, finite float, bool, None and such containers inside) is given a subclass that
# says so and says its height (1: only scalars inside), so it is written again without a
# walk. Frozen, it cannot change, so what was found stays true. Heights up to PLAIN_HEIGHT
# are marked; a taller container is not, its parts are.
PLAIN_HEIGHT: Final = 16
SMALL_FLOAT: Final = 1e-4
"""orjson and ``repr`` write a nonzero float of magnitude below this differently (some of
them), so a container holding one is never marked: its text is checked each time."""


def _plain(base: type[_T]) -> tuple[type[_T], ...]:
    """`base`, then its plain subclasses by height (same name, layout and behaviour)."""
    made: list[type[_T]] = []
    for _ in range(PLAIN_HEIGHT):
        kind = type(base.__name__, (base,), {"__slots__": (), "__module__": base.__module__})
        kind.__qualname__ = base.__qualname__
        made.append(kind)
    return (base, *made)


PLAIN_DICTS: Final = _plain(FrozenDict)
"""FrozenDict, then the plain frozen dicts by height: ``PLAIN_DICTS[h]`` has height h."""
PLAIN_LISTS: Final = _plain(FrozenList)
"""FrozenList, then the plain frozen lists by height."""
PLAIN: Final[dict[type, int]] = {
    **{kind: height for height, kind in enumerate(PLAIN_DICTS) if height},
    **{kind: height for height, kind in enumerate(PLAIN_LISTS) if height},
}
"""Each plain frozen container class, with its height."""

# Values that need no freezing: immutable (or frozen already) and holding nothing mutable.
IMMUTABLE: Final = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        complex,
        range,
        frozenset,
        *PLAIN_DICTS,
        *PLAIN_LISTS,
    }
)
_IMMUTABLE = IMMUTABLE
# What `freeze` looks inside (Ok and Err: a parallel block's results are in the context).
_CONTAINERS: Final = frozenset({dict, list, tuple, set, MappingProxyType, Ok, Err})
_PENDING: Final = object()  # an immutable container whose parts are being frozen


def freeze(value: Any) -> Any:
    """`value` with every dict, list and set inside it frozen (a copy; immutable parts reused).

    Other objects are kept as they are: the isolation covers the containers a
    step gets in its context, not the inside of arbitrary objects. A value that
    contains itself is frozen into one that contains itself. Any depth works,
    so freezing never fails: what is too deep for the quick recursive copy is
    done by a walk with a stack of its own. A dict or list that is all plain JSON
    is copied by the compiled module where it was built, and marked as
    `freeze_plain` marks it.
    """
    kind = type(value)
    if kind in _IMMUTABLE or kind not in _CONTAINERS:
        return value
    if _copy_plain is not None and (kind is dict or kind is list):
        copied = _copy_plain(value)  # all plain JSON: copied in C (no memo: nothing shares)
        if copied is not None:
            return copied[0]
    try:
        return _freeze(value, {})
    except RecursionError:  # very deep, or a cycle through a tuple: the walk handles both
        return _freeze_walk(value)


def _freeze(value: Any, memo: dict[int, Any]) -> Any:
    """The recursive copy behind `freeze` (dicts and lists memoized by id: cycles, sharing)."""
    kind = type(value)
    if kind in _IMMUTABLE or kind not in _CONTAINERS:
        return value
    if kind is dict or kind is list or kind is MappingProxyType:
        key = id(value)
        done = memo.get(key)
        if done is not None:
            return done
        if _copy_plain is not None and kind is not MappingProxyType:
            copied = _copy_plain(value, memo)  # plain JSON, copied in C (and told the memo)
            if copied is not None:
                return copied[0]
        # Copied at C speed, then only the parts that need freezing are replaced, so a
        # scalar costs a type check and no call; a list of scalars inside is copied here.
        immutable = _IMMUTABLE
        copy: Any
        if kind is list:
            copy = memo[key] = FrozenList(value)
            parts: Any = enumerate(value)
            replace: Any = list.__setitem__
        else:
            copy = memo[key] = FrozenDict(value)
            parts = value.items()
            replace = dict.__setitem__
        for name, item in parts:
            if type(item) not in immutable:
                if type(item) is list and immutable.issuperset(map(type, item)):
                    frozen = memo.get(id(item))
                    if frozen is None:
                        frozen = memo[id(item)] = FrozenList(item)
                else:
                    frozen = _freeze(item, memo)
                    if frozen is item:
                        continue
                replace(copy, name, frozen)
        return copy
    if kind is tuple:
        parts = [_freeze(item, memo) for item in value]
        if all(a is b for a, b in zip(parts, value, strict=True)):
            return value
        result: Any = tuple(parts)
    elif kind is set:
        result = frozenset([_freeze(item, memo) for item in value])
    else:
        inner = value.value if kind is Ok else value.error
        frozen = _freeze(inner, memo)
        if frozen is inner:
            return value
        result = kind(frozen)
    # A cycle through this value (via a dict or list) built it already: keep that one.
    return memo.setdefault(id(value), result)


def freeze_plain(value: Any) -> tuple[Any, int]:
    """`freeze`, with the containers that are plain JSON marked as the journal would mark them.

    For a value about to be journaled: the check rides on the copy, so the journal writes
    a marked part without walking it. Only what the journal's walk would mark is marked
    (`PLAIN`), nothing inside a cycle; once written, the marks are the walk's. Too deep
    for the quick copy, it is only frozen, and the journal marks it as it goes.

    Returns the frozen value and how many parts a writer meets in it (a dict's keys and
    values, a list's items, at every depth), or -1 when that is not known: nothing was
    copied, or a part is met twice or was marked before (written in full each time, and
    not counted here).

    Each dict or list that is all plain JSON (the common case) is copied by the compiled
    module where it was built (`_cfreeze`), with the same result; the rest in Python.
    """
    kind = type(value)
    if kind in _IMMUTABLE or kind not in _CONTAINERS:
        return value, -1
    if _copy_plain is not None and (kind is dict or kind is list):
        copied = _copy_plain(value)  # all plain JSON: copied in C (no memo: nothing shares)
        if copied is not None:
            return copied
    size = [0]
    try:
        frozen = _freeze_plain(value, {}, size)
    except RecursionError:
        return _freeze_walk(value), -1
    return frozen, size[0] if size[0] >= 0 else -1


_PLAIN_SCALARS: Final = frozenset({str, int, bool, type(None)})
_PLAIN_LEAF_LIST: Final = PLAIN_LISTS[1]  # a list of such scalars (a list of tags, say)
_UNCOUNTED: Final = 1 << 62  # taken off the count for a part it cannot count


def _freeze_plain(value: Any, memo: dict[int, Any], size: list[int]) -> Any:
    """The copy behind `freeze_plain`: `_freeze`'s, for a dict or list also finding its height
    (and adding the parts it copies to ``size[0]``)."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return _freeze(value, memo)  # never plain (tuples, sets, results) or rare (proxies)
    key = id(value)
    done = memo.get(key)
    if done is not None:  # shared, or a cycle (unmarked while it is being copied: never plain)
        size[0] -= _UNCOUNTED
        return done
    if _copy_plain is not None:
        copied = _copy_plain(value, memo)  # plain JSON, copied in C (and told the memo)
        if copied is not None:
            size[0] += copied[1]
            return copied[0]
    scalars = _PLAIN_SCALARS
    immutable = _IMMUTABLE
    heights = PLAIN
    tallest = 0  # the tallest plain part so far; -1 once a part is not plain
    frozen: Any
    if kind is list:
        frozen = memo[key] = FrozenList(value)
        size[0] += len(value)
        parts: Any = enumerate(value)
        replace: Any = list.__setitem__
        keyed = False
    else:
        frozen = memo[key] = FrozenDict(value)
        size[0] += 2 * len(value)
        parts = value.items()
        replace = dict.__setitem__
        keyed = True
        if "$" in value:
            tallest = -1  # a tag's key: the journal writes such a dict as pairs
    for name, item in parts:
        each = type(item)
        if keyed and type(name) is not str:
            tallest = -1  # written as pairs too
        if each in scalars:
            continue
        if each is float:
            if item - item != 0.0 or (-SMALL_FLOAT < item < SMALL_FLOAT and item):
                tallest = -1  # not finite, or written unlike repr by orjson
            continue
        if each not in immutable:
            if each is list and scalars.issuperset(map(type, item)):
                part = memo.get(id(item))
                if part is None:
                    part = memo[id(item)] = _PLAIN_LEAF_LIST(item)
                    size[0] += len(item)
                else:
                    size[0] -= _UNCOUNTED
            else:
                part = _freeze_plain(item, memo, size)
            if part is not item:
                replace(frozen, name, part)
            each = type(part)
        elif each in heights:  # marked before: its parts are not looked at again
            size[0] -= _UNCOUNTED
        if tallest >= 0:
            height = heights.get(each, -1)
            if height < 0 or height > tallest:
                tallest = height
    if 0 <= tallest < PLAIN_HEIGHT:
        frozen.__class__ = (PLAIN_LISTS if keyed is False else PLAIN_DICTS)[tallest + 1]
    return frozen


# The compiled copy of plain data (hatch_build.py builds it where a C compiler is at hand).
# Without it, or with FLOWDSL_NO_CEXT set, the Python copy does everything.
_copy_plain: Callable[..., tuple[Any, int] | None] | None = None
count_parts: Callable[[Any, int], int] | None = None
"""Where the compiled copy is built: ``count_parts(value, limit)``, the parts of a dict or
list as `freeze_plain` counts them (``limit + 1`` once past `limit`), counted in C."""
if not os.environ.get("FLOWDSL_NO_CEXT"):
    try:
        from . import _cfreeze
    except ImportError:
        pass
    else:
        _cfreeze.configure(PLAIN_DICTS, PLAIN_LISTS, SMALL_FLOAT)
        _copy_plain = _cfreeze.copy_plain
        count_parts = _cfreeze.count_parts


def _freeze_walk(root: Any) -> Any:
    """`freeze` of a container: a depth-first walk with an explicit stack.

    A dict or list becomes an empty frozen shell when first seen (so cycles
    resolve to it) and is filled once its parts are done; tuples, sets and
    results are built after their parts. A part still pending when its parent
    is filled (a cycle entered through a tuple) is patched in at the end.
    """
    memo: dict[int, Any] = {}
    seen: list[Any] = []  # keeps every original alive, so no id is reused during the walk
    patches: list[tuple[Any, Any, Any]] = []

    def done(part: Any) -> Any:
        part_kind = type(part)
        if part_kind in _IMMUTABLE or part_kind not in _CONTAINERS:
            return part
        return memo[id(part)]

    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, parts_done = stack.pop()
        key = id(node)
        kind = type(node)
        if not parts_done:
            if key in memo:
                continue
            seen.append(node)
            if kind is dict or kind is MappingProxyType:
                memo[key] = FrozenDict()
                parts: Any = node.values()
            elif kind is list:
                memo[key] = FrozenList()
                parts = node
            elif kind is Ok:
                memo[key] = _PENDING
                parts = (node.value,)
            elif kind is Err:
                memo[key] = _PENDING
                parts = (node.error,)
            else:  # tuple, set
                memo[key] = _PENDING
                parts = node
            stack.append((node, True))
            for part in parts:
                part_kind = type(part)
                if part_kind not in _IMMUTABLE and part_kind in _CONTAINERS:
                    stack.append((part, False))
            continue
        if kind is dict or kind is MappingProxyType:
            shell = memo[key]
            filled = {k: done(v) for k, v in node.items()}
            patches.extend((shell, k, node[k]) for k, v in filled.items() if v is _PENDING)
            dict.update(shell, filled)
        elif kind is list:
            shell = memo[key]
            items = [done(v) for v in node]
            patches.extend((shell, i, node[i]) for i, v in enumerate(items) if v is _PENDING)
            list.extend(shell, items)
        elif kind is tuple:
            items = [done(v) for v in node]
            same = all(a is b for a, b in zip(items, node, strict=True))
            memo[key] = node if same else tuple(items)
        elif kind is set:
            memo[key] = frozenset([done(v) for v in node])
        else:  # Ok, Err
            inner = node.value if kind is Ok else node.error
            frozen = done(inner)
            memo[key] = node if frozen is inner else kind(frozen)
    for shell, where, part in patches:
        (dict if type(shell) is FrozenDict else list).__setitem__(shell, where, memo[id(part)])
    return memo[id(root)]


class Item:
    """The foreach item a scope (and every scope inside it) belongs to.

    `suffix` is what the item adds to the names of the steps run for it:
    ``[i]`` for item i, after the enclosing items' (``[i][j]`` when nested).
    """

    __slots__ = ("index", "item", "suffix")

    def __init__(self, index: int, item: Any, suffix: str) -> None:
        self.index = index
        self.item = item
        self.suffix = suffix


_NO_ITEM_MSG: Final = (
    "ctx.{what} is set only for the steps inside a 'with foreach(...):' body; "
    "this step ({step!r}) is not in one"
)


class Scope:
    """Append-only versioned storage for one sequence of writes.

    Every value written is frozen first (`freeze`). `each` is the foreach
    item the scope runs for (inherited from its parent), else None.
    """

    __slots__ = ("each", "latest", "older", "parent", "parent_version", "version")

    def __init__(
        self,
        parent: Scope | None = None,
        parent_version: int = 0,
        initial: Mapping[str, Any] | None = None,
    ) -> None:
        self.parent = parent
        self.parent_version = parent_version
        self.each: Item | None = None if parent is None else parent.each
        self.version = 0
        self.latest: dict[str, tuple[int, Any]] = (
            {k: (0, freeze(v)) for k, v in initial.items()} if initial else {}
        )
        self.older: dict[str, list[tuple[int, Any]]] = {}

    def write(self, mapping: Mapping[str, Any]) -> None:
        """Merge `mapping` (shallowly) as one new version."""
        self.version = version = self.version + 1
        latest = self.latest
        for key, value in mapping.items():
            if type(value) not in _IMMUTABLE:
                value = freeze(value)
            previous = latest.get(key)
            if previous is not None:
                self.keep(key, previous)
            latest[key] = (version, value)

    def put(self, key: str, value: Any) -> None:
        """Write one value that is frozen already (a block's results) as one new version."""
        self.version = version = self.version + 1
        previous = self.latest.get(key)
        if previous is not None:
            self.keep(key, previous)
        self.latest[key] = (version, value)

    def keep(self, key: str, previous: tuple[int, Any]) -> None:
        """Keep the value `key` had (older snapshots still read it)."""
        history = self.older.get(key)
        if history is None:
            self.older[key] = [previous]
        else:
            history.append(previous)

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
    def item(self) -> Any:
        """Inside a ``foreach`` body: the item this run of the body is for."""
        each = self._scope.each
        if each is None:
            raise UsageError(_NO_ITEM_MSG.format(what="item", step=self.step))
        return each.item

    @property
    def index(self) -> int:
        """Inside a ``foreach`` body: the item's position in the items, from 0."""
        each = self._scope.each
        if each is None:
            raise UsageError(_NO_ITEM_MSG.format(what="index", step=self.step))
        return each.index

    @property
    def idempotency_key(self) -> str:
        """``run_id:step`` (``#n`` added from the second visit of a goto loop on).

        Inside a foreach body `step` carries the item's index (``load[3]``).
        """
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
