"""The pytest plugin: registered through the pytest11 entry point, fixtures usable in user tests."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowdsl.testing.pytest_plugin

USER_TESTS = '''
"""A user's tests of their own workflows, using the flowdsl plugin's fixtures."""

import pytest
from hypothesis import given, settings

from flowdsl import Err, Ok, StepFinished, error, goto, ok, parallel, step, workflow
from flowdsl.testing import check_reducer, override_steps
from flowdsl.testing import strategies as fst


def checkout_body():
    @step
    async def reserve(ctx):
        return ok({"reserved": ctx["qty"]})

    @step
    def charge(ctx):
        raise ConnectionError("would call the payment provider")

    @step
    def confirm(ctx):
        return ok({"confirmed": True})


def test_checkout_with_a_fake_payment(flowdsl_registry, flowdsl_events):
    checkout = workflow("checkout")(checkout_body)
    with override_steps(checkout, charge=ok({"charged": 10})) as fakes:
        run = checkout.run({"qty": 2})
    assert run.status == "completed"
    assert run.output["charged"] == 10
    assert fakes["charge"].calls == [{"qty": 2, "reserved": 2}]
    assert flowdsl_events.steps() == ["reserve", "charge", "confirm"]
    assert "checkout" in flowdsl_registry


def test_checkout_when_payment_fails(flowdsl_registry, flowdsl_events):
    checkout = workflow("checkout")(checkout_body)  # same name again: no clash
    with override_steps("checkout", charge=error("card declined")):
        run = checkout.run({"qty": 1})
    assert (run.status, run.failed_step, run.error) == ("failed", "charge", "card declined")
    assert [e.step for e in flowdsl_events.of_type(StepFinished)] == ["reserve", "charge"]


def test_a_different_checkout_under_the_same_name(flowdsl_registry):
    @workflow("checkout")
    def checkout():
        @step
        def only(ctx):
            return ok({"only": True})

    assert checkout.run().output["only"] is True


def test_throwaway_workflows_are_gone():
    from flowdsl import workflows

    assert "checkout" not in workflows()


def merge(ctx, results):
    if all(type(r) is Ok for r in results.values()):
        return ok({"provisioned": True})
    return goto("support")


def test_the_reducer_handles_every_mix_of_results(flowdsl_registry):
    @workflow("provision")
    def provision():
        with parallel(into=merge, name="setup"):
            @step
            def mailbox(ctx):
                return ok()

            @step
            def workspace(ctx):
                return ok()

        @step
        def support(ctx):
            return ok()

    check_reducer(provision, "setup")


@settings(max_examples=25, deadline=None)
@given(fst.workflows())
def test_engine_runs_generated_workflows(case):
    case.check(case.run())
'''


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    """pip-installing flowdsl registers the plugin; pytest loads it as "flowdsl"."""
    points = importlib.metadata.entry_points(group="pytest11")
    assert "flowdsl.testing.pytest_plugin" == points["flowdsl"].value


def test_the_plugin_is_loaded_in_this_session(pytestconfig: pytest.Config) -> None:
    """The running pytest has loaded the plugin module."""
    assert flowdsl.testing.pytest_plugin is pytestconfig.pluginmanager.get_plugin("flowdsl")


def test_a_user_test_file_passes_with_the_plugins_fixtures(tmp_path: Path) -> None:
    """pytest, run in a fresh process on a user's test file, finds the fixtures and passes."""
    (tmp_path / "test_user_flows.py").write_text(textwrap.dedent(USER_TESTS))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "--strict-markers",
            "test_user_flows.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "6 passed" in done.stdout


def test_the_fixtures_are_listed_with_their_docs(tmp_path: Path) -> None:
    """`pytest --fixtures` shows both fixtures and what they do."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "flowdsl_events" in done.stdout
    assert "A registry of the test's own" in done.stdout


def test_the_examples_in_docs_testing_md_pass(tmp_path: Path) -> None:
    """The python blocks of docs/testing.md, as one test module, pass under pytest."""
    doc = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    (tmp_path / "test_docs_testing.py").write_text("\n\n".join(blocks))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    assert f"{len(re.findall(r'^def test_', ''.join(blocks), flags=re.M))} passed" in done.stdout
