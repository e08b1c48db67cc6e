"""`DaskExecutor`: steps run as tasks on a Dask cluster (``pip install 'flowdsl[dask]'``).

Dask is imported when the executor first connects, never when flowdsl (or
this module) is imported. Each attempt is one task submitted with
``pure=False`` (steps have side effects): ``pickle.loads`` of one byte
string that, loaded, runs the step through `_bootstrap` (which explains why).
Every exchange with the cluster other than running the step itself
(connecting, sending a large context, fetching the result) is bounded by
``io_timeout``; the step itself is bounded by its own ``timeout=``.

Waiting does not depend on which event loop the Dask client runs on: a done
callback wakes the awaiting loop, and blocking client calls run in a thread.
So one executor serves any number of ``run_workflow`` calls (each with an
event loop of its own), with a client that is synchronous or asynchronous.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import pickle
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Final, TypeVar

from .._checks import require, seconds_problem
from .._engine._context import Context
from .._plan import StepNode
from ..errors import ExecutorConfigError, ExecutorError, UsageError, WorkerLost
from . import _bootstrap
from ._base import Executor, pack, unpack

__all__ = ["DaskExecutor"]

T = TypeVar("T")

_SCATTER_THRESHOLD: Final = 1_000_000


def _within(
    seconds: float, what: str, fn: Callable[[], T], late: Callable[[T], None] | None = None
) -> T:
    """Call blocking `fn` in a daemon thread; give up on it after `seconds`.

    What `fn` returns after the caller gave up is handed to `late` (a client that
    connected too late is closed there, not left open with nobody to close it).
    """
    box: concurrent.futures.Future[T] = concurrent.futures.Future()
    settled = threading.Lock()
    gave_up = False

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:
            box.set_exception(exc)
            return
        with settled:
            if not gave_up:
                box.set_result(result)
                return
        if late is not None:
            late(result)

    threading.Thread(target=target, name="flowdsl-dask-start", daemon=True).start()
    try:
        try:
            return box.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            with settled:
                if not box.done():
                    gave_up = True
            if gave_up:
                msg = f"{what} did not finish within io_timeout={seconds:g}s"
                raise ExecutorError(msg) from None
            return box.result()  # it finished as the wait ended
    except ExecutorError:
        raise
    except Exception as exc:
        msg = f"{what} failed: {type(exc).__name__}: {exc}"
        raise ExecutorError(msg) from exc


def _close_client(client: Any, timeout: float) -> None:
    with contextlib.suppress(Exception):  # closing at exit: the cluster may already be gone
        client.close(timeout=timeout)


def _wake(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> Callable[[Any], None]:
    def done(_: Any) -> None:  # runs in Dask's callback thread
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the task
            loop.call_soon_threadsafe(_set_done, waiter)

    return done


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _register_bootstrap() -> None:
    import cloudpickle  # type: ignore[import-untyped]

    if _bootstrap.__name__ not in cloudpickle.list_registry_pickle_by_value():
        cloudpickle.register_pickle_by_value(_bootstrap)


def _cloudpickle_dumps(obj: object) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(obj)  # type: ignore[no-any-return]


class DaskExecutor(Executor):
    """Runs steps on a Dask cluster.

    `client_or_address` is a scheduler address (``"tcp://scheduler:8786"``), a
    cluster object with a ``scheduler_address`` (``LocalCluster``), or a
    ``distributed.Client``. Given an address or a cluster, the executor
    connects on first use with a client of its own, closed by ``close()`` or
    at interpreter exit; a client you pass stays yours, never closed here.

    The workers need flowdsl and cloudpickle (the step's own module travels
    with it); on a worker without them the step fails with an
    `ExecutorError`, it never hangs. A context larger than `scatter_threshold`
    bytes is scattered to the cluster instead of travelling in the task. A worker that dies while
    running a step fails that attempt with `WorkerLost`; set the scheduler's
    ``distributed.scheduler.allowed-failures`` to 0 so that Dask does not
    re-run it on another worker before flowdsl's retry policy decides.
    """

    def __init__(
        self,
        client_or_address: object,
        *,
        io_timeout: float = 60.0,
        scatter_threshold: int = _SCATTER_THRESHOLD,
    ) -> None:
        require(
            seconds_problem(io_timeout, "DaskExecutor(io_timeout=...)", optional=False),
            ExecutorConfigError,
        )
        if (
            not isinstance(scatter_threshold, int | float)
            or isinstance(scatter_threshold, bool)
            or not scatter_threshold >= 0  # NaN too
        ):
            msg = (
                f"DaskExecutor(scatter_threshold=...) takes a number of bytes >= 0, got "
                f"{scatter_threshold!r}; an attempt whose pickle is larger is scattered to the "
                f"cluster instead of travelling inside its task"
            )
            raise ExecutorConfigError(msg)
        self.io_timeout = float(io_timeout)
        self.scatter_threshold = scatter_threshold
        self._client: Any = None
        self._address: str | None = None
        self._finalizer: weakref.finalize[Any, DaskExecutor] | None = None
        self._ready = False
        self._closed = False
        self._lock = threading.Lock()
        if isinstance(client_or_address, str):
            self._address = client_or_address
        elif isinstance(getattr(client_or_address, "scheduler_address", None), str):
            self._address = client_or_address.scheduler_address  # type: ignore[attr-defined]
        elif callable(getattr(client_or_address, "submit", None)):
            self._client = client_or_address
        else:
            msg = (
                f"DaskExecutor() takes a scheduler address ('tcp://host:8786'), a cluster, or a "
                f"distributed.Client, got {client_or_address!r}"
            )
            raise UsageError(msg)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect now rather than on first use, when given an address (this blocks)."""
        if self._ready:
            return
        with self._lock:
            if self._closed:
                msg = "this DaskExecutor is closed; create a new one"
                raise ExecutorError(msg)
            if self._ready:
                return
            _register_bootstrap()
            if self._client is None:
                self._client = _within(
                    self.io_timeout,
                    self._describe("connecting"),
                    self._connect,
                    late=functools.partial(_close_client, timeout=self.io_timeout),
                )
                self._finalizer = weakref.finalize(
                    self, _close_client, self._client, self.io_timeout
                )
            self._ready = True

    def _connect(self) -> Any:
        try:
            from distributed import Client
        except ImportError:
            msg = (
                "DaskExecutor needs dask.distributed; install it with: pip install 'flowdsl[dask]'"
            )
            raise ExecutorError(msg) from None
        return Client(  # type: ignore[no-untyped-call]
            self._address, set_as_default=False, timeout=self.io_timeout
        )

    def _describe(self, what: str) -> str:
        where = self._address if self._address is not None else repr(self._client)
        return f"DaskExecutor: {what} ({where})"

    def close(self) -> None:
        """Close the client this executor opened (a client you passed in is left open)."""
        with self._lock:
            self._closed = True
            finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()

    # -- one attempt -----------------------------------------------------------------------

    async def __call__(self, node: StepNode, ctx: Context) -> object:
        if not self._ready:
            await asyncio.to_thread(self.start)
        client = self._client
        if client.status != "running":
            msg = (
                f"step {node.name!r} ({node.where}): the Dask client of executor "
                f"{node.executor!r} is {client.status}; pass a running client or an address"
            )
            raise ExecutorError(msg)
        call = _bootstrap.Call(_bootstrap.TRAMPOLINE, *pack(node, ctx))
        call_blob = _cloudpickle_dumps(call)
        timeout = self.io_timeout
        argument: Any = call_blob
        if len(call_blob) > self.scatter_threshold:
            argument = await asyncio.to_thread(
                client.scatter, call_blob, hash=False, timeout=timeout
            )
        future = client.submit(
            pickle.loads, argument, key=f"{node.name}-{uuid.uuid4().hex}", pure=False
        )
        try:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            future.add_done_callback(_wake(loop, waiter))
            await waiter
            status = future.status
            if status == "finished":
                blob = await asyncio.to_thread(future.result, timeout)
            elif status == "error":
                raise self._failed(node, ctx, await asyncio.to_thread(future.exception, timeout))
            else:
                msg = (
                    f"step {node.name!r} ({node.where}), attempt {ctx.attempt}: the Dask "
                    f"cluster of executor {node.executor!r} dropped its task ({status}); the "
                    f"scheduler restarted or the client closed"
                )
                raise WorkerLost(msg)
        except TimeoutError:
            msg = (
                f"step {node.name!r} ({node.where}) finished on executor {node.executor!r}, but "
                f"fetching its outcome took more than io_timeout={timeout:g}s"
            )
            raise ExecutorError(msg) from None
        finally:  # done with the task, or abandoning it: the scheduler may forget it now
            future.release()
            if argument is not call_blob:
                argument.release()
        return unpack(node, blob)

    @staticmethod
    def _failed(node: StepNode, ctx: Context, error: BaseException) -> ExecutorError:
        from distributed import KilledWorker

        if isinstance(error, KilledWorker):
            return WorkerLost(
                f"step {node.name!r} ({node.where}), attempt {ctx.attempt}: the Dask worker "
                f"running it on executor {node.executor!r} died before reporting an outcome "
                f"(KilledWorker; {error.allowed_failures} re-runs allowed by the scheduler)"
            )
        failure = ExecutorError(
            f"step {node.name!r} ({node.where}): Dask could not run it on executor "
            f"{node.executor!r}: {type(error).__name__}: {error}"
        )
        failure.__cause__ = error
        return failure

    def __repr__(self) -> str:
        target = self._address if self._address is not None else self._client
        return f"DaskExecutor({target!r})"
