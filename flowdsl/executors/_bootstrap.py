"""The first code a Dask worker runs for a flowdsl step: sent by value, it needs nothing installed.

A Dask worker that cannot unpickle a task's function (its module is missing)
logs "Failed to deserialize" and the task stays pending forever (dask/distributed
issue 5419). So a step's task function is ``pickle.loads``, which every worker
has, and its one argument is a pickle of ``run(trampoline, *packed)``: loading
it calls `run`, whose code travels by value (this module is registered with
cloudpickle as pickled by value). `run` imports flowdsl's trampoline; on a
worker without flowdsl that import fails, and the step fails with a message
instead of hanging.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Call", "run"]

TRAMPOLINE = "flowdsl.executors._trampoline"


def run(trampoline: str, *packed: bytes) -> bytes:
    """Run the attempt with `trampoline`'s ``run_step``, or report why it cannot be imported."""
    import importlib

    try:
        run_step = importlib.import_module(trampoline).run_step
    except Exception as exc:
        import cloudpickle  # type: ignore[import-untyped]  # Dask's own dependency

        reply = ("unloadable", f"flowdsl itself ({trampoline})", f"{type(exc).__name__}: {exc}")
        return cloudpickle.dumps(reply)  # type: ignore[no-any-return]
    return run_step(*packed)  # type: ignore[no-any-return]


class Call:
    """Pickles as a call of `run`: unpickling it runs the attempt and gives its reply."""

    __slots__ = ("args",)

    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[object, ...]]:
        return run, self.args
