"""structlog events: emitted with the documented keys once structlog is configured, silent otherwise."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from flowdsl import (
    LogContextFilter,
    Retry,
    error,
    foreach,
    ok,
    parallel,
    run_workflow,
    step,
    workflow,
)

pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


@pytest.fixture(autouse=True)
def _unconfigure_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_lifecycle_events_carry_run_id_workflow_step_attempt_and_duration() -> None:
    """A configured structlog receives workflow.started, step.*, workflow.finished with context."""

    @workflow
    def logged() -> None:
        @step(retry=Retry(max_attempts=2, base=0))
        async def flaky(ctx: Any) -> Any:
            return error("once") if ctx.attempt == 1 else ok()

    with capture_logs() as logs:
        run = run_workflow(logged, run_id="r-1")

    names = [entry["event"] for entry in logs]
    assert [
        "workflow.started",
        "step.started",
        "step.retrying",
        "step.started",
        "step.succeeded",
        "workflow.finished",
    ] == names
    for entry in logs:
        assert ("r-1", "logged") == (entry["run_id"], entry["workflow"])
    retrying, succeeded = logs[2], logs[4]
    assert ("flaky", 1, "'once'") == (retrying["step"], retrying["attempt"], retrying["error"])
    assert ("flaky", 2) == (succeeded["step"], succeeded["attempt"])
    assert isinstance(succeeded["duration_ms"], float)
    assert "completed" == logs[-1]["status"]
    assert run.status == logs[-1]["status"]


def test_failed_step_is_logged_as_an_error() -> None:
    """A step that fails for good logs step.failed at error level."""

    @workflow
    def failing() -> None:
        step(lambda ctx: error("nope"), name="check")

    with capture_logs() as logs:
        run_workflow(failing)

    failed = next(entry for entry in logs if entry["event"] == "step.failed")
    assert ("error", "check") == (failed["log_level"], failed["step"])


def test_the_library_prints_nothing_by_default() -> None:
    """Without structlog configuration a run writes nothing to stdout or stderr."""
    script = textwrap.dedent(
        """
        from flowdsl import workflow, step, error, run_workflow

        @workflow
        def quiet():
            step(lambda ctx: 1, name="a")
            step(lambda ctx: error("x"), name="b")

        run = run_workflow("quiet")
        assert run.status == "failed"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert ("", "") == (done.stdout, done.stderr)


class Collect(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collect]:
    """A handler on the "flowdsl" logger (and the user's "app" logger), at DEBUG."""
    handler = Collect()
    loggers = [logging.getLogger("flowdsl"), logging.getLogger("app")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_without_structlog_events_are_records_of_the_flowdsl_logger(collected: Collect) -> None:
    """One record per event: the event name as message, its fields as attributes, failures
    at ERROR and retries at WARNING."""

    @workflow
    def plain() -> None:
        @step(retry=Retry(max_attempts=2, base=0))
        async def flaky(ctx: Any) -> Any:
            return error("once") if ctx.attempt == 1 else ok({"x": 1})

        step(lambda ctx: error("bad input"), name="check")

    run = run_workflow(plain, run_id="s-1")
    assert run.status == "failed"
    mine = [r for r in collected.records if r.name == "flowdsl"]
    assert [
        ("workflow.started", logging.INFO),
        ("step.started", logging.DEBUG),
        ("step.retrying", logging.WARNING),
        ("step.started", logging.DEBUG),
        ("step.succeeded", logging.INFO),
        ("step.started", logging.DEBUG),
        ("step.failed", logging.ERROR),
        ("workflow.finished", logging.ERROR),
    ] == [(r.getMessage(), r.levelno) for r in mine]
    for record in mine:
        assert ("s-1", "plain") == (record.run_id, record.workflow)  # type: ignore[attr-defined]
    retrying, failed, finished = mine[2], mine[6], mine[7]
    assert ("flaky", 1, "'once'") == (retrying.step, retrying.attempt, retrying.error)  # type: ignore[attr-defined]
    assert retrying.retry_in_ms == 0  # type: ignore[attr-defined]
    assert ("check", "'bad input'") == (failed.step, failed.error)  # type: ignore[attr-defined]
    assert ("failed", "check") == (finished.status, finished.failed_step)  # type: ignore[attr-defined]


def test_a_logger_set_above_info_gets_only_the_failures(collected: Collect) -> None:
    logging.getLogger("flowdsl").setLevel(logging.WARNING)

    @workflow
    def quiet() -> None:
        step(lambda ctx: ok({"a": 1}), name="a")
        step(lambda ctx: error("nope"), name="b")

    run_workflow(quiet)
    assert ["step.failed", "workflow.finished"] == [r.getMessage() for r in collected.records]


def test_the_users_own_records_carry_the_step_they_came_from(collected: Collect) -> None:
    """LogContextFilter gives records run_id, workflow, step and attempt while a step runs
    (async, plain, thread steps, parallel branches), and None outside one."""
    collected.addFilter(LogContextFilter())
    app = logging.getLogger("app")

    @workflow
    def busy() -> None:
        @step(retry=Retry(max_attempts=2, base=0))
        async def first(ctx: Any) -> Any:
            app.info("in first")
            return error("again") if ctx.attempt == 1 else ok()

        with parallel():

            @step
            def plain(ctx: Any) -> Any:
                app.info("in plain")
                return ok()

            @step(executor="thread")
            def threaded(ctx: Any) -> Any:
                app.info("in threaded")
                return ok()

        with foreach(lambda ctx: ["a", "b"]):

            @step
            async def each(ctx: Any) -> Any:
                await asyncio.sleep(0)
                app.info("in each %s", ctx.item)
                return ok()

    app.info("before")
    run = run_workflow(busy, run_id="b-1")
    app.info("after")
    assert run.status == "completed", run.error
    seen = {
        r.getMessage(): (r.run_id, r.workflow, r.step, r.attempt)  # type: ignore[attr-defined]
        for r in collected.records
        if r.name == "app"
    }
    assert {
        "before": (None, None, None, None),
        "in first": ("b-1", "busy", "first", 2),
        "in plain": ("b-1", "busy", "plain", 1),
        "in threaded": ("b-1", "busy", "threaded", 1),
        "in each a": ("b-1", "busy", "each[0]", 1),
        "in each b": ("b-1", "busy", "each[1]", 1),
        "after": (None, None, None, None),
    } == seen
    started = next(r for r in collected.records if r.getMessage() == "step.started")
    assert ("b-1", "first") == (started.run_id, started.step)  # type: ignore[attr-defined]


def test_structlog_contextvars_hold_the_step_while_it_runs() -> None:
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.testing.LogCapture()]
    )
    capture = structlog.get_config()["processors"][-1]
    log = structlog.get_logger("app")

    @workflow
    def bound() -> None:
        @step
        async def work(ctx: Any) -> Any:
            log.info("working")
            return ok()

    run_workflow(bound, run_id="c-1")
    log.info("done")
    working = next(e for e in capture.entries if e["event"] == "working")
    assert ("c-1", "bound", "work", 1) == tuple(
        working[k] for k in ("run_id", "workflow", "step", "attempt")
    )
    done = next(e for e in capture.entries if e["event"] == "done")
    assert "step" not in done
    assert {} == structlog.contextvars.get_contextvars()
