"""structlog events: emitted with the documented keys once structlog is configured, silent otherwise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from flowdsl import Retry, error, ok, run_workflow, step, workflow

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
