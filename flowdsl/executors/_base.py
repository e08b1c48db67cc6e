"""What every executor shares: the `Executor` lifecycle, and packing an attempt for a worker.

`pack` turns a step and its context into the blobs `flowdsl.executors._trampoline`
runs (`_pickler` keeps the file names and source lines of the code they
carry); `unpack` turns the trampoline's reply back into the step's outcome,
or raises what the step raised (with the worker's traceback attached as the
exception's cause). Anything that cannot travel fails here with an
`ExecutorError` naming the step and the object, never a raw pickling error.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import functools
import os
import site
import sys
import sysconfig
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType, TracebackType
from typing import Any, Final, NamedTuple, Self

from .._engine._context import Context
from .._engine._tracing import carrier
from .._plan import StepNode
from ..errors import ExecutorError
from ._trampoline import RAISED, UNLOADABLE, UNPICKLABLE, VALUE, short_repr

__all__ = ["Executor", "Packed", "RemoteTraceback", "pack", "unpack"]


class Executor(abc.ABC):
    """Where a step's attempts run: an invoker with a lifecycle.

    Call it as ``await executor(node, ctx)`` to run one attempt (the engine
    does). It starts lazily on first use; ``close()`` (or leaving a ``with`` /
    ``async with`` block) releases what it holds. An executor passed to a run
    call in ``executors=`` belongs to the caller: flowdsl never closes it.
    """

    @abc.abstractmethod
    async def __call__(self, node: StepNode, ctx: Context) -> object:
        """Run one attempt of `node` with `ctx`; returns its raw outcome or raises."""

    def start(self) -> None:  # noqa: B027 - optional hook, nothing to start by default
        """Start now rather than on first use (connect, spawn workers)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the executor holds; attempts still running are abandoned."""

    async def aclose(self) -> None:
        """`close()` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def closed_under(future: concurrent.futures.Future[Any]) -> bool:
    """Whether an attempt's pool future was cancelled by the executor's ``close()``.

    That cancels queued work; the awaiting task then sees CancelledError although
    nobody cancelled it (its ``cancelling()`` is 0). It must fail the attempt, not
    pass for a cancellation of the run.
    """
    task = asyncio.current_task()
    return future.cancelled() and (task is None or task.cancelling() == 0)


def closed_error(node: StepNode, ctx: Context, executor: object) -> ExecutorError:
    return ExecutorError(
        f"step {node.name!r} ({node.where}), attempt {ctx.attempt}: executor {executor!r} "
        f"was closed while the attempt waited to run; close an executor only after the "
        f"runs that use it"
    )


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker, as text (the exception's cause)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


# -- packing an attempt ---------------------------------------------------------------

_HINT: Final = (
    "Remote steps travel by value with cloudpickle: create locks, sockets, open files "
    "and clients inside the step, or keep the step on the event loop or executor='thread'"
)


def _cloudpickle(node: StepNode) -> Any:
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:
        msg = (
            f"step {node.name!r} ({node.where}) runs on executor {node.executor!r}, which needs "
            f"cloudpickle; install it with: pip install 'flowdsl[process]' (or 'flowdsl[dask]')"
        )
        raise ExecutorError(msg) from None
    return cloudpickle


_PICKLE_LOCK: Final = threading.Lock()
_TRAVELS: dict[str, bool] = {}


@functools.cache
def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


def _travels_by_value(module: str) -> bool:
    """True for the user's own code: a module that is neither flowdsl nor installed.

    Such a module is pickled by value along with the step, so a step written
    in a workflow body can call the helpers and read the constants of its
    module on a worker where that module cannot be imported.
    """
    known = _TRAVELS.get(module)
    if known is not None:
        return known
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    travels = (
        module != "__main__"  # cloudpickle always sends __main__ by value
        and module.partition(".")[0] != "flowdsl"
        and isinstance(path, str)
        and not os.path.realpath(path).startswith(_installed_roots())
    )
    _TRAVELS[module] = travels
    return travels


@contextmanager
def _by_value(cloudpickle: Any, module: object) -> Iterator[None]:
    found = sys.modules.get(module) if isinstance(module, str) else None
    if found is None or not _travels_by_value(found.__name__):
        yield
        return
    with _PICKLE_LOCK:
        registered = found.__name__ in cloudpickle.list_registry_pickle_by_value()
        if not registered:
            cloudpickle.register_pickle_by_value(found)
        try:
            yield
        finally:
            if not registered:
                cloudpickle.unregister_pickle_by_value(found)


def _module_of(fn: object) -> object:
    while isinstance(fn, functools.partial):
        fn = fn.func
    module = getattr(fn, "__module__", None)
    if module is None:
        module = getattr(type(fn), "__module__", None)
    return module


class Packed(NamedTuple):
    """One attempt as a worker receives it: ``flowdsl.executors._trampoline.run_step(*packed)``."""

    body: bytes
    """The step function, pickled with cloudpickle (by value where the worker cannot import it)."""
    context: bytes
    """The context's values and its attributes (run id, step, attempt, idempotency key)."""
    lines: bytes
    """The source lines of the code sent by value, for the worker's tracebacks (`_pickler`)."""


def pack(node: StepNode, ctx: Context) -> Packed:
    """The step's body, its context and their source lines, for `flowdsl.executors._trampoline.run_step`."""
    cloudpickle = _cloudpickle(node)
    from . import _pickler

    fn = node.fn
    data = ctx.to_dict()
    each = ctx._scope.each
    meta = (
        ctx.run_id,
        ctx.step,
        ctx.attempt,
        ctx.idempotency_key,
        None if each is None else (each.index, each.item),
        carrier(),  # the attempt span's trace context, made current there (None: untraced)
    )
    spans: list[_pickler.Span] = []
    with _by_value(cloudpickle, _module_of(fn)):
        try:
            body = _pickler.dumps(fn, spans)
        except Exception as exc:
            problem = _culprit(cloudpickle, _parts(fn), exc)
            msg = f"{_cannot_send(node)}: its body cannot be pickled: {problem}. {_HINT}"
            raise ExecutorError(msg) from None
        try:
            context = _pickler.dumps((data, meta), spans)
        except Exception as exc:
            parts = ((f"context value {key!r}", value) for key, value in data.items())
            problem = _culprit(cloudpickle, parts, exc)
            msg = (
                f"{_cannot_send(node)}: {problem}. A remote step receives a pickled copy of its "
                f"context: keep unpicklable objects out of it, or run this step on the event loop"
            )
            raise ExecutorError(msg) from None
    return Packed(body, context, _pickler.lines_of(frozenset(spans)))


def _cannot_send(node: StepNode) -> str:
    return f"step {node.name!r} ({node.where}) cannot be sent to executor {node.executor!r}"


def _culprit(cloudpickle: Any, parts: Iterator[tuple[str, object]], error: Exception) -> str:
    """Name the first part that cannot be pickled, else describe the error itself."""
    for what, value in parts:
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            return f"{what} is {type(value).__qualname__} {short_repr(value)} ({exc})"
    return f"{type(error).__name__}: {error}"


def _global_names(code: CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _global_names(const)


def _parts(fn: object) -> Iterator[tuple[str, object]]:
    """What pickling a step body pickles: closure cells, globals, defaults, attributes."""
    while isinstance(fn, functools.partial):
        for index, arg in enumerate(fn.args):
            yield f"partial argument {index}", arg
        for key, arg in fn.keywords.items():
            yield f"partial argument {key!r}", arg
        fn = fn.func
    code = getattr(fn, "__code__", None)
    if not isinstance(code, CodeType):
        for key, value in getattr(fn, "__dict__", {}).items():
            yield f"attribute {key!r}", value
        return
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        yield f"closure variable {name!r}", value
    namespace = getattr(fn, "__globals__", {})
    for name in dict.fromkeys(_global_names(code)):
        if name in namespace:
            yield f"global {name!r}", namespace[name]
    for index, value in enumerate(getattr(fn, "__defaults__", None) or ()):
        yield f"default argument {index}", value


# -- reading a reply ------------------------------------------------------------------


def unpack(node: StepNode, blob: bytes) -> object:
    """The outcome a reply blob carries; raises what the step raised on the worker."""
    cloudpickle = _cloudpickle(node)
    try:
        reply = cloudpickle.loads(blob)
    except Exception as exc:
        msg = (
            f"step {node.name!r} ({node.where}) finished on executor {node.executor!r}, but its "
            f"outcome cannot be unpickled here: {type(exc).__name__}: {exc}"
        )
        raise ExecutorError(msg) from None
    tag = reply[0]
    if tag == VALUE:
        return reply[1]
    if tag == RAISED:
        raise _rebuild(node, *reply[1:])
    if tag == UNPICKLABLE:
        msg = (
            f"step {node.name!r} ({node.where}) returned {reply[1]} on executor "
            f"{node.executor!r}, which cannot be pickled to send back ({reply[2]}); "
            f"return plain data (dicts, lists, numbers, strings, dataclasses)"
        )
        raise ExecutorError(msg)
    if tag == UNLOADABLE:
        if reply[1].startswith("flowdsl"):
            fix = "install flowdsl on every worker: pip install 'flowdsl[dask]'"
        else:
            fix = (
                "the module that defines a step travels with it; other modules it imports must "
                "be installed on the workers (or registered with "
                "cloudpickle.register_pickle_by_value)"
            )
        msg = (
            f"step {node.name!r} ({node.where}) could not be loaded on executor "
            f"{node.executor!r}: loading {reply[1]} failed there ({reply[2]}); {fix}"
        )
        raise ExecutorError(msg)
    msg = f"step {node.name!r}: unknown reply {tag!r} from executor {node.executor!r}"
    raise ExecutorError(msg)


def _rebuild(
    node: StepNode, blob: bytes | None, text: str, type_name: str, message: str
) -> BaseException:
    exc: BaseException | None = None
    if blob is not None:
        try:
            loaded = _cloudpickle(node).loads(blob)
        except Exception:
            loaded = None
        if isinstance(loaded, BaseException):
            exc = loaded
    if exc is None:
        exc = ExecutorError(
            f"step {node.name!r} ({node.where}) raised {type_name}: {message} on executor "
            f"{node.executor!r}; the exception itself could not be sent back (make it "
            f"picklable to catch it by type), its traceback is attached"
        )
    exc.__cause__ = RemoteTraceback(text)
    return exc
