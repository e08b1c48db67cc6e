"""`override_steps` and `Fake`: run workflows with some steps swapped for fakes.

The swap is a `ContextVar` that `arun_workflow` reads once per run (original
plan -> plan with the fakes), so it covers exactly the runs started inside the
``with`` block, in this thread or task and in the tasks it creates, and never
a run started elsewhere at the same time. The swapped plan is built once when
the block is entered; nothing is added to the per-step path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Final

from .._engine._options import PLAN_OVERRIDES
from .._plan import Plan
from .._running import resolve
from .._workflow import Workflow
from ..errors import UsageError
from ..result import Ok

__all__ = ["Fake", "override_steps"]

_NONE: Final[Mapping[Plan, Mapping[str, Callable[..., Any]]]] = MappingProxyType({})

# The fakes in force for each original plan, so that a nested block adds to the outer one.
_FAKES: ContextVar[Mapping[Plan, Mapping[str, Callable[..., Any]]]] = ContextVar(
    "flowdsl_fakes", default=_NONE
)


def _is_exception(value: object) -> bool:
    return isinstance(value, BaseException) or (
        isinstance(value, type) and issubclass(value, BaseException)
    )


class Fake:
    """A stand-in for a step: returns `outcomes` in turn and records every call.

    ``Fake(ok({"id": 7}))`` returns that outcome on every call;
    ``Fake(error("down"), ok())`` fails the first attempt and succeeds after
    (the last outcome repeats); ``Fake()`` returns ``ok()``. An outcome that
    is an exception instance or class is raised instead of returned.

    ``calls`` holds a plain-dict copy of the context each call received, in
    order. A `Fake` is an async callable: it always runs on the event loop,
    whatever ``blocking=`` or ``executor=`` the step it replaces has.
    """

    __slots__ = ("_lock", "_outcomes", "calls")

    def __init__(self, *outcomes: object) -> None:
        self._outcomes: tuple[object, ...] = outcomes if outcomes else (Ok(None),)
        self._lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, ctx: Mapping[str, Any]) -> object:
        with self._lock:
            index = len(self.calls)
            self.calls.append(dict(ctx))
        outcome = self._outcomes[min(index, len(self._outcomes) - 1)]
        if _is_exception(outcome):
            raise outcome  # type: ignore[misc]
        return outcome

    @property
    def call_count(self) -> int:
        """How many times the fake was called (attempts included)."""
        return len(self.calls)

    @property
    def called(self) -> bool:
        """True once the fake has been called."""
        return bool(self.calls)

    def __repr__(self) -> str:
        shown = ", ".join(repr(outcome) for outcome in self._outcomes)
        return f"Fake({shown}, calls={len(self.calls)})"


def _as_step(fake: object) -> Callable[..., Any]:
    """A function stays as it is (an exception class is not one); anything else becomes a `Fake`."""
    if callable(fake) and not _is_exception(fake):
        return fake
    return Fake(fake)


@contextmanager
def override_steps(
    workflow: str | Workflow,
    replacements: Mapping[str, object] | None = None,
    /,
    **fakes: object,
) -> Iterator[Mapping[str, Any]]:
    """Swap steps of `workflow` (by step name) for every run started inside the block.

    A fake is a function called like the step (sync, ``async def`` or an async
    generator), or any other value: a `Fake` that returns it as the step's
    outcome (an exception is raised instead)::

        with override_steps("onboard_user", send_welcome_email=ok({"email_sent": False}),
                            create_user=error("db down")) as fakes:
            run = run_workflow("onboard_user", {"name": "Ada"})
        fakes["create_user"].calls  # the context of each call

    Step names that are not Python identifiers go in the positional mapping:
    ``override_steps(wf, {"send-email": fake})``. Blocks nest: an inner block
    adds to (and for the same step, wins over) the outer one. The steps are
    restored when the block exits. Yields the fakes in force, by step name.
    """
    wf = resolve(workflow)
    chosen: dict[str, object] = dict(replacements) if replacements is not None else {}
    both = sorted(set(chosen) & set(fakes))
    if both:
        msg = (
            f"override_steps(): step {', '.join(map(repr, both))} is given both in the "
            f"mapping and as a keyword argument; give each step one fake"
        )
        raise UsageError(msg)
    chosen.update(fakes)
    plan = wf.plan
    merged = {**_FAKES.get().get(plan, {}), **{n: _as_step(f) for n, f in chosen.items()}}
    swapped = plan.with_steps(merged, "override_steps()")  # unknown names raise UsageError
    fakes_token = _FAKES.set(MappingProxyType({**_FAKES.get(), plan: MappingProxyType(merged)}))
    plan_token = PLAN_OVERRIDES.set(MappingProxyType({**PLAN_OVERRIDES.get(), plan: swapped}))
    try:
        yield MappingProxyType(merged)
    finally:
        PLAN_OVERRIDES.reset(plan_token)
        _FAKES.reset(fakes_token)
