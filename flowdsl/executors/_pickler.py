"""How a remote attempt is pickled: cloudpickle, keeping the file names of the code it sends.

cloudpickle sends by value the code of functions a worker cannot import (a
step written in a workflow body, the helpers of the user's module). From
3.1.3 on (its pull request 560, for deterministic pickles) it renames the file
of every such code object ``<dynamic-code>``, so a traceback raised on a worker
named no file and showed no source line. And with any version, a worker on
another machine has no copy of the file to read the line from.

So `dumps` pickles with a `cloudpickle.Pickler` whose reducer for code objects
sends them with `marshal`, the format of ``.pyc`` files: the file name, the
line table and nested code objects arrive as they left, whatever cloudpickle
version either side has (``marshal.loads`` is builtin: the worker needs
nothing of ours to load it). Both sides run the same Python version already,
as code sent by value requires. The reducer also notes the lines each code
object spans; `lines_of` turns those spans into a small blob of source lines
from this process's `linecache`, which the worker reads only when the step
raised, before it formats the traceback (`flowdsl.executors._trampoline`).

Imported on first use (it imports cloudpickle): never on the inline path.
"""

from __future__ import annotations

import functools
import io
import linecache
import marshal
import pickle
import threading
from collections import ChainMap
from types import CodeType
from typing import Any, Final, TypeAlias

import cloudpickle  # type: ignore[import-untyped]

__all__ = ["Span", "dumps", "lines_of"]

Span: TypeAlias = tuple[str, int, int]
"""A file name and the first and last line a code object's instructions come from."""

_CLOUDPICKLE_TABLE: Final = cloudpickle.Pickler.dispatch_table
_RECORDING: Final = threading.local()  # .spans: where the dumps() running in this thread notes them


def _reduce_code(code: CodeType) -> tuple[Any, ...]:
    _RECORDING.spans.extend(_spans(code, code.co_filename))  # only our dumps() reaches here
    try:
        return marshal.loads, (marshal.dumps(code),)
    except ValueError:  # a constant marshal cannot write (code built by hand): cloudpickle's way
        return _CLOUDPICKLE_TABLE[CodeType](code)  # type: ignore[no-any-return]


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle is untyped
    # Set on the class, like cloudpickle's own, so that creating a pickler costs
    # nothing more; one ChainMap over cloudpickle's maps, not one around its
    # ChainMap: pickle looks up the type of almost every object in it.
    dispatch_table: Final = ChainMap({CodeType: _reduce_code}, *_CLOUDPICKLE_TABLE.maps)


def dumps(obj: object, spans: list[Span]) -> bytes:
    """``cloudpickle.dumps(obj)`` that keeps file names; appends the spans of its code to `spans`."""
    outer, _RECORDING.spans = getattr(_RECORDING, "spans", None), spans
    try:
        with io.BytesIO() as file:
            _Pickler(file).dump(obj)
            return file.getvalue()
    finally:
        _RECORDING.spans = outer


@functools.lru_cache(maxsize=1024)
def _spans(code: CodeType, filename: str) -> tuple[Span, ...]:
    """The spans of `code` and of the code objects nested in it (marshal sends those whole).

    Keyed by the file name too: equal code objects from two files compare equal.
    """
    found: list[Span] = []
    todo = [code]
    while todo:
        one = todo.pop()
        last = max((end for _, end, _, _ in one.co_positions() if end is not None), default=0)
        found.append((one.co_filename, one.co_firstlineno, max(last, one.co_firstlineno)))
        todo.extend(const for const in one.co_consts if isinstance(const, CodeType))
    return tuple(found)


@functools.lru_cache(maxsize=256)
def lines_of(spans: frozenset[Span]) -> bytes:
    """The source lines `spans` cover, as this process has them, pickled for the worker.

    ``{file name: ((first line number, (line, ...)), ...)}``, or ``b""`` for
    none; files this process cannot read (``<stdin>``, ``-c`` code) are left out. Read once per set of
    spans: the code of a running process does not change, nor should its lines.
    """
    by_file: dict[str, list[tuple[int, int]]] = {}
    for filename, first, last in spans:
        by_file.setdefault(filename, []).append((first, last))
    sources: dict[str, tuple[tuple[int, tuple[str, ...]], ...]] = {}
    for filename, ranges in by_file.items():
        lines = linecache.getlines(filename)
        if not lines:
            continue
        chunks: list[tuple[int, tuple[str, ...]]] = []
        for first, last in _merged(ranges):
            chunks.append((first, tuple(lines[first - 1 : last])))
        sources[filename] = tuple(chunks)
    if not sources:
        return b""
    return pickle.dumps(sources, protocol=pickle.HIGHEST_PROTOCOL)


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged
