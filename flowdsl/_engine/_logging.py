"""structlog events for runs: ``workflow.started``, ``step.started``, ``step.succeeded``, ...

The library never configures structlog. A run logs only when structlog has
been configured (by the application, or by the flowdsl CLI); otherwise it
builds no logger and pays nothing. structlog is not even imported here: an
application that configured it has imported it, so a process that never did
need not pay for importing it (about a third of ``import flowdsl``).
"""

from __future__ import annotations

import logging
import sys

from ._events import (
    CompensationFinished,
    Event,
    Listener,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
)

__all__ = ["structlog_listener"]

# A library logs through "flowdsl" and leaves the handlers to the application.
logging.getLogger("flowdsl").addHandler(logging.NullHandler())


def structlog_listener(workflow: str, run_id: str) -> Listener | None:
    """A listener that turns events into structlog events, or None when structlog is unconfigured."""
    structlog = sys.modules.get("structlog")
    if structlog is None or not structlog.is_configured():
        return None
    log = structlog.get_logger("flowdsl").bind(run_id=run_id, workflow=workflow)

    def listen(event: Event) -> None:
        if isinstance(event, StepStarted):
            log.debug("step.started", step=event.step, attempt=event.attempt)
        elif isinstance(event, StepFinished):
            ms = round(event.duration * 1000, 3)
            if event.status == "succeeded":
                log.info("step.succeeded", step=event.step, attempt=event.attempt, duration_ms=ms)
            elif event.retry_in is not None:
                log.warning(
                    "step.retrying",
                    step=event.step,
                    attempt=event.attempt,
                    duration_ms=ms,
                    error=repr(event.error),
                    retry_in_ms=round(event.retry_in * 1000, 3),
                )
            else:
                log.error(
                    "step.failed",
                    step=event.step,
                    attempt=event.attempt,
                    duration_ms=ms,
                    error=repr(event.error),
                )
        elif isinstance(event, StepChunk):
            log.debug("step.chunk", step=event.step)
        elif isinstance(event, CompensationFinished):
            log.info(
                "compensation." + event.status,
                step=event.step,
                duration_ms=round(event.duration * 1000, 3),
                error=None if event.error is None else repr(event.error),
            )
        elif isinstance(event, RunStarted):
            log.info("workflow.resumed" if event.resumed else "workflow.started")
        elif isinstance(event, RunFinished):
            run = event.run
            log.log(
                20 if run.status == "completed" else 40,
                "workflow.finished",
                status=run.status,
                failed_step=run.failed_step,
                duration_ms=round(run.duration * 1000, 3),
            )

    return listen
