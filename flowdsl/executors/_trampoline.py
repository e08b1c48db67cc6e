"""The worker side of remote executors: the one function every remote attempt runs.

A remote attempt travels as blobs built by `flowdsl.executors`: the step's
body and its context (cloudpickle), and the source lines of the code sent by
value (read only to format a traceback). `run_step` loads them in the worker
process, rebuilds a read-only context (`RemoteContext`), calls the body (an
``async def`` body, or an awaitable a plain function returns, runs to
completion with ``asyncio.run``) under the attempt's trace context when the
run is traced (a non-recording span: `flowdsl._engine._tracing.remote`), and
returns one blob saying what happened. It never raises
for anything the step does: an exception comes back as data with its traceback
as text, so a failure is always reported, never a hung or undecodable task.

It calls the body with `flowdsl._engine._blocking.call_blocking`, which
worker threads use too (without pickling).
cloudpickle is imported only when a blob is made or read: importing this
module costs nothing on the default (inline) path.
"""

from __future__ import annotations

import linecache
import reprlib
import traceback
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final

from .._engine._blocking import call_blocking
from .._engine._tracing import remote, unattach
from ..errors import UsageError

__all__ = ["RemoteContext", "run_step"]

# The first item of a reply says what happened; the rest depends on it:
#   (VALUE, outcome)              the step returned ok(...), error(...), goto(...) or a value
#   (RAISED, blob, text, type, message)  it raised; blob is the pickled exception or None
#   (UNLOADABLE, what, error)     its body or context could not be unpickled here
#   (UNPICKLABLE, what, error)    its outcome cannot be pickled to send back
VALUE: Final = "value"
RAISED: Final = "raised"
UNLOADABLE: Final = "unloadable"
UNPICKLABLE: Final = "unpicklable"

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


def short_repr(obj: object) -> str:
    """A one-line repr of at most about 60 characters, for error messages."""
    return _short.repr(obj)


class RemoteContext(Mapping[str, Any]):
    """The read-only context a step receives on a worker.

    The same mapping the step would see inline, with the same attributes:
    ``run_id``, ``step``, ``attempt`` and ``idempotency_key`` (and, inside a
    foreach body, ``item`` and ``index``).
    """

    __slots__ = ("_data", "_each", "attempt", "idempotency_key", "run_id", "step")

    def __init__(
        self,
        data: dict[str, Any],
        run_id: str,
        step: str,
        attempt: int,
        idempotency_key: str,
        each: tuple[int, Any] | None = None,
    ) -> None:
        self._data = data
        self._each = each
        self.run_id = run_id
        self.step = step
        self.attempt = attempt
        self.idempotency_key = idempotency_key

    @property
    def item(self) -> Any:
        """Inside a ``foreach`` body: the item this run of the body is for."""
        return self._foreach("item")[1]

    @property
    def index(self) -> int:
        """Inside a ``foreach`` body: the item's position in the items, from 0."""
        return int(self._foreach("index")[0])

    def _foreach(self, what: str) -> tuple[int, Any]:
        if self._each is None:
            msg = (
                f"ctx.{what} is set only for the steps inside a 'with foreach(...):' body; "
                f"this step ({self.step!r}) is not in one"
            )
            raise UsageError(msg)
        return self._each

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy of the mapping."""
        return dict(self._data)

    def __repr__(self) -> str:
        return f"RemoteContext({self._data!r}, step={self.step!r}, attempt={self.attempt})"


def run_step(fn_blob: bytes, ctx_blob: bytes, lines_blob: bytes = b"") -> bytes:
    """Run one attempt of a step in this (worker) process; returns the reply blob.

    `lines_blob` holds the source lines of the code sent by value; it is read
    only if the step raises, so its traceback shows them on a worker that has
    no copy of the step's files.
    """
    import cloudpickle  # type: ignore[import-untyped]

    dumps: Callable[[object], bytes] = cloudpickle.dumps
    loads: Callable[[bytes], Any] = cloudpickle.loads
    try:
        fn = loads(fn_blob)
    except BaseException as exc:  # the body's own module or a class it needs is missing here
        return dumps((UNLOADABLE, "its body", _one_line(exc)))
    try:
        data, meta = loads(ctx_blob)
    except BaseException as exc:
        return dumps((UNLOADABLE, "its context", _one_line(exc)))
    token = remote(meta[5]) if len(meta) > 5 else None
    try:
        outcome = call_blocking(fn, RemoteContext(data, *meta[:5]))
    except BaseException as exc:  # every failure goes back as data; the parent re-raises it
        _learn_lines(lines_blob)
        return dumps(_raised(dumps, loads, exc))
    finally:
        unattach(token)
    try:
        return dumps((VALUE, outcome))
    except Exception as exc:
        what = short_repr(outcome)
        return dumps((UNPICKLABLE, what, _one_line(exc)))


def _learn_lines(blob: bytes) -> None:
    """Put the source lines the attempt brought into `linecache`, where tracebacks read lines.

    Lines this worker reads from its own copy of a file stay where the blob has
    nothing; where it has, the blob wins: it holds the code that ran. A file
    whose lines on disk already match is left alone, so `linecache` keeps
    checking it as usual.
    """
    if not blob:
        return
    import pickle

    try:
        sources: dict[str, tuple[tuple[int, tuple[str, ...]], ...]] = pickle.loads(blob)
    except Exception:  # a traceback without lines is better than none
        return
    for filename, chunks in sources.items():
        linecache.checkcache(filename)  # what the file holds now (a profiler may have cached it)
        known = linecache.getlines(filename)
        lines = list(known)
        for first, text in chunks:
            last = first - 1 + len(text)
            if len(lines) < last:
                lines.extend([""] * (last - len(lines)))
            lines[first - 1 : last] = text
        if lines != known:  # no modification time: checkcache() keeps the entry
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Skip this module's own frames at the top of a traceback."""
    while tb is not None and tb.tb_frame.f_globals.get("__name__") == __name__:
        tb = tb.tb_next
    return tb


def _without_frames(exc: BaseException) -> BaseException:
    """`exc` without its traceback, cause and context (and so its group's members): the text has them.

    A plain pickle of an exception leaves them out anyway; but distributed
    installs tblib's pickling of tracebacks, which would send the worker's
    frames along, and the caller would print them a second time with the
    lines of its own copy of the files, which may differ.
    """
    exc.__traceback__ = None
    exc.__cause__ = None
    exc.__context__ = None
    if isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            _without_frames(member)
    return exc


def _raised(
    dumps: Callable[[object], bytes], loads: Callable[[bytes], Any], exc: BaseException
) -> tuple[object, ...]:
    text = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
    blob: bytes | None
    try:
        blob = dumps(_without_frames(exc))
        loads(blob)  # an exception whose __init__ takes other arguments cannot be rebuilt
    except Exception:
        blob = None
    kind = type(exc)
    return (RAISED, blob, text, f"{kind.__module__}.{kind.__qualname__}", str(exc))
