"""Definition errors: raised at import time, naming workflow, step, file:line and the fix."""

from __future__ import annotations

import sys

import pytest

from flowdsl import (
    END,
    DefinitionError,
    FlowError,
    Retry,
    get_workflow,
    ok,
    parallel,
    sequence,
    step,
    workflow,
    workflows,
)
from flowdsl._plan import AGEN, ASYNC, SYNC, THREAD

HERE = "test_compiler.py"


pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


def line() -> int:
    """The line number of the caller."""
    return sys._getframe(1).f_lineno


async def noop(ctx: object) -> None:
    return None


def test_definition_error_is_a_flow_error_and_a_type_error() -> None:
    """DefinitionError sits under FlowError, with TypeError as a builtin mixin."""
    assert issubclass(DefinitionError, FlowError)
    assert issubclass(DefinitionError, TypeError)


def test_duplicate_step_name_names_both_places() -> None:
    """Two steps with one name fail, naming the workflow, the step, both lines and a fix."""
    with pytest.raises(DefinitionError) as info:

        @workflow
        def dup() -> None:
            step(noop, name="load")
            step(noop, name="load")

    message = str(info.value)
    assert "workflow 'dup', step 'load'" in message
    assert "duplicate step name" in message
    assert f"{HERE}:" in message
    assert "Rename one" in message


def test_error_points_at_the_offending_line() -> None:
    """The file:line in the message is the line of the offending @step."""
    lines: list[int] = []
    with pytest.raises(DefinitionError) as info:

        @workflow
        def pointed() -> None:
            step(noop, name="a")
            lines.append(line())
            step(noop, name="a")

    assert f"{HERE}:{lines[0] + 1}" in str(info.value)


def test_duplicate_result_key() -> None:
    """Two steps storing their value under one key fail."""
    with pytest.raises(DefinitionError, match=r"duplicate result key 'user'.*returns="):

        @workflow
        def keys() -> None:
            step(noop, name="a", returns="user")
            step(noop, name="b", returns="user")


def test_step_returning_into_another_steps_name_is_a_duplicate_key() -> None:
    """A returns= that equals another step's name collides with its key."""
    with pytest.raises(DefinitionError, match="duplicate result key 'a'"):

        @workflow
        def collide() -> None:
            step(noop, name="a")
            step(noop, name="b", returns="a")


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda: step(noop), "'@step'"),
        (lambda: parallel(), "'with parallel():'"),
        (lambda: sequence("s"), "'with sequence():'"),
    ],
)
def test_recording_outside_a_workflow_body(make: object, what: str) -> None:
    """@step, parallel() and sequence() outside a workflow body say where to put them."""
    with pytest.raises(DefinitionError) as info:
        make()  # type: ignore[operator]
    assert f"use {what} inside a @workflow body, not at module level" in str(info.value)
    assert f"{HERE}:" in str(info.value)


def test_empty_workflow() -> None:
    """A workflow with no step fails and says to add one."""
    with pytest.raises(
        DefinitionError, match=r"workflow 'empty' \(.*\) is empty; define at least one @step"
    ):

        @workflow
        def empty() -> None:
            pass


@pytest.mark.parametrize("kind", ["parallel", "sequence"])
def test_empty_block(kind: str) -> None:
    """An empty parallel or sequence block fails."""
    with pytest.raises(DefinitionError, match="the block is empty"):

        @workflow
        def hollow() -> None:
            step(noop, name="first")
            if kind == "parallel":
                with parallel(name="p"):
                    pass
            else:
                with parallel(name="p"), sequence("s"):
                    pass


def test_route_to_missing_step_lists_known_steps() -> None:
    """A declared route to a step that does not exist fails with the known steps."""
    with pytest.raises(DefinitionError) as info:

        @workflow
        def routing() -> None:
            step(noop, name="extract")
            step(noop, name="load", routes=("retry",))

    message = str(info.value)
    assert "workflow 'routing', step 'load'" in message
    assert "declared route 'retry' is not a step of this workflow" in message
    assert "known steps: 'extract', 'load'" in message


def test_route_into_a_parallel_block() -> None:
    """A declared route to a step inside a parallel block fails: goto targets are top-level."""
    with pytest.raises(DefinitionError, match="declared route 'inner' is inside a parallel block"):

        @workflow
        def into_block() -> None:
            step(noop, name="start", routes=["inner"])
            with parallel():
                step(noop, name="inner")
                step(noop, name="other")


def test_routes_to_end_and_forward_steps_compile() -> None:
    """Routes may name END and steps declared later."""

    @workflow
    def forward() -> None:
        step(noop, name="a", routes=("c", END))
        step(noop, name="b")
        step(noop, name="c", routes="a")

    assert ("c", END) == forward.plan.steps["a"].routes


def test_unknown_on_error() -> None:
    """An unknown on_error value fails and lists the valid ones."""
    with pytest.raises(
        DefinitionError, match="unknown on_error='ignore'; use 'fail_fast' or 'complete_all'"
    ):

        @workflow
        def policy() -> None:
            with parallel(on_error="ignore"):  # type: ignore[arg-type]
                step(noop, name="a")


def test_non_callable_into() -> None:
    """A non-callable into= fails."""
    with pytest.raises(DefinitionError, match=r"into= must be a function fn\(ctx, results\)"):

        @workflow
        def reducer() -> None:
            with parallel(into="nope"):  # type: ignore[arg-type]
                step(noop, name="a")


def test_non_callable_compensate() -> None:
    """A non-callable compensate= fails."""
    with pytest.raises(DefinitionError, match=r"compensate= must be a function undo\(ctx\)"):

        @workflow
        def undo() -> None:
            step(noop, name="a", compensate=42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("retry", "problem"),
    [
        (Retry(max_attempts=0), "max_attempts must be at least 1"),
        (Retry(max_attempts=2.5), "max_attempts must be an int"),  # type: ignore[arg-type]
        (Retry(backoff="fibonacci"), "backoff must be one of"),  # type: ignore[arg-type]
        (Retry(base=-1), "base must be a number >= 0"),
        (Retry(max_delay=float("nan")), "max_delay must be a number >= 0"),
        (Retry(jitter=2), "jitter must be a fraction between 0 and 1"),
        (Retry(retry_on=(int,)), "retry_on must be a non-empty tuple of exception types"),
        (Retry(retry_on=()), "retry_on must be a non-empty tuple of exception types"),
    ],
)
def test_bad_retry_values(retry: Retry, problem: str) -> None:
    """Each bad Retry value fails at import, naming the step and the problem."""
    with pytest.raises(DefinitionError) as info:

        @workflow
        def retrying() -> None:
            step(noop, name="call", retry=retry)

    assert "workflow 'retrying', step 'call'" in str(info.value)
    assert problem in str(info.value)


def test_retry_must_be_a_retry() -> None:
    """retry= given something else says how to write it."""
    with pytest.raises(DefinitionError, match=r"write retry=Retry\(max_attempts=3\)"):

        @workflow
        def wrong() -> None:
            step(noop, name="call", retry=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, "5", True])
def test_bad_step_timeout(timeout: object) -> None:
    """A step timeout must be a positive number."""
    with pytest.raises(DefinitionError, match="timeout= must be a number of seconds > 0"):

        @workflow
        def slow() -> None:
            step(noop, name="call", timeout=timeout)  # type: ignore[arg-type]


def test_bad_workflow_options() -> None:
    """Workflow timeout and max_transitions are checked."""
    with pytest.raises(DefinitionError, match="timeout must be a number of seconds > 0"):

        @workflow("t", timeout=-1)
        def t() -> None:
            step(noop)

    with pytest.raises(DefinitionError, match="max_transitions must be an int >= 1"):

        @workflow("m", max_transitions=0)
        def m() -> None:
            step(noop)


def test_bad_max_concurrency() -> None:
    """max_concurrency must be a positive int."""
    with pytest.raises(DefinitionError, match="max_concurrency= must be an int >= 1"):

        @workflow
        def limited() -> None:
            with parallel(max_concurrency=0):
                step(noop, name="a")


def test_duplicate_branch_keys_and_block_names() -> None:
    """Block names are unique and do not collide with step names."""
    with pytest.raises(DefinitionError, match="duplicate block name"):

        @workflow
        def blocks() -> None:
            with parallel(name="fan"):
                step(noop, name="a")
            with parallel(name="fan"):
                step(noop, name="b")

    with pytest.raises(DefinitionError, match="a step is already named 'a'"):

        @workflow
        def clash() -> None:
            step(noop, name="a")
            with parallel(), sequence("a"):
                step(noop, name="b")


def test_blocking_async_step_is_rejected() -> None:
    """blocking=True is for sync functions."""
    with pytest.raises(DefinitionError, match="blocking=True is for plain"):

        @workflow
        def blocking() -> None:
            step(noop, name="a", blocking=True)


def test_two_workflows_under_one_name() -> None:
    """Registering a different workflow under a taken name fails and suggests another."""

    @workflow("shared")
    def first() -> None:
        step(noop)

    with pytest.raises(
        DefinitionError, match=r"workflow 'shared' .* is already registered by .*first"
    ):

        @workflow("shared")
        def second() -> None:
            step(noop)

    assert first is get_workflow("shared")


def test_nested_workflow_is_rejected() -> None:
    """@workflow inside a workflow body fails."""
    with pytest.raises(DefinitionError, match="cannot be nested"):

        @workflow
        def outer() -> None:
            step(noop)

            @workflow
            def inner() -> None:
                step(noop)


def test_recording_runs_no_user_step() -> None:
    """Defining a workflow calls no step, reducer or compensation."""
    calls: list[str] = []

    def spy(ctx: object) -> None:
        calls.append("called")

    @workflow
    def quiet() -> None:
        step(spy, name="a", compensate=spy)
        with parallel(into=lambda ctx, results: calls.append("into")):
            step(spy, name="b")

    assert [] == calls
    assert "quiet" in workflows()


def test_plan_precomputes_modes_targets_and_keys() -> None:
    """The plan knows how to call each step, the goto table and each block's keys."""

    def sync_step(ctx: object) -> None:
        return None

    async def agen_step(ctx: object):  # type: ignore[no-untyped-def]
        yield ok()

    @workflow
    def modes() -> None:
        step(noop, name="a")
        step(sync_step, name="b")
        step(sync_step, name="c", blocking=True)
        with parallel(name="fan"):
            step(agen_step, name="d", returns="dee")
            with sequence("seq"):
                step(noop, name="e")

    plan = modes.plan
    assert {"a": ASYNC, "b": SYNC, "c": THREAD, "d": AGEN, "e": ASYNC} == {
        name: node.mode for name, node in plan.steps.items()
    }
    assert {"a": 0, "b": 1, "c": 2} == dict(plan.targets)
    assert ("dee", "seq") == plan.nodes[3].keys  # type: ignore[union-attr]


def test_top_level_sequence_is_flattened_into_goto_targets() -> None:
    """A sequence at the top level groups steps that stay goto targets."""

    @workflow
    def grouped() -> None:
        step(noop, name="a")
        with sequence("group"):
            step(noop, name="b")
            step(noop, name="c")

    assert {"a": 0, "b": 1, "c": 2} == dict(grouped.plan.targets)


def test_fingerprint_changes_with_the_shape() -> None:
    """Renaming a step changes the plan fingerprint; the same shape keeps it."""

    def build(name: str, second: str) -> str:
        @workflow(name)
        def wf() -> None:
            step(noop, name="a")
            step(noop, name=second)

        return wf.plan.fingerprint

    assert build("f1", "b") == build("f2", "b")
    assert build("f3", "b") != build("f4", "c")


def test_routes_takes_a_single_end_and_rejects_a_non_iterable() -> None:
    """routes=END is one route; routes=None is a definition error with the fix."""

    @workflow
    def single() -> None:
        step(noop, name="a", routes=END)

    assert (END,) == single.plan.steps["a"].routes
    with pytest.raises(DefinitionError, match=r"routes= takes a step name, END, or a tuple"):

        @workflow
        def bad_routes() -> None:
            step(noop, name="a", routes=None)  # type: ignore[arg-type]


def test_a_plain_generator_function_is_not_a_step() -> None:
    """A sync generator would be stored as a value; it is refused with the async fix."""

    def numbers(ctx: object):  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(DefinitionError, match=r"make it an async generator"):

        @workflow
        def gen() -> None:
            step(numbers, name="numbers")


def test_a_workflow_body_with_parameters_names_the_users_line() -> None:
    """A body that takes parameters is refused before it is called, at the user's line."""
    first = line() + 3
    with pytest.raises(DefinitionError) as info:

        @workflow
        def takes_input(data: object) -> None:
            step(noop, name="a")

    message = str(info.value)
    assert f"workflow 'takes_input' ({__file__}:{first})" in message
    assert "a workflow body takes no parameters" in message
    assert "ctx" in message


def test_an_async_workflow_body_is_refused_without_a_coroutine_warning() -> None:
    """An async def body is a DefinitionError; it is never called, so nothing is left unawaited."""
    first = line() + 3
    with pytest.raises(DefinitionError) as info:

        @workflow
        async def later() -> None:
            step(noop, name="a")

    message = str(info.value)
    assert f"({__file__}:{first})" in message
    assert "write it as a plain def" in message


@pytest.mark.parametrize(
    ("fn", "why"),
    [
        (lambda: None, "too many positional arguments"),
        (lambda ctx, extra: None, "missing a required argument: 'extra'"),
        (lambda ctx, *, flag: None, "missing a required argument: 'flag'"),
    ],
)
def test_a_step_that_cannot_take_the_context_is_a_definition_error(fn: object, why: str) -> None:
    """A step must be callable with one argument: checked at import, not at run time."""
    at = line() + 5
    with pytest.raises(DefinitionError) as info:

        @workflow
        def wrong_arity() -> None:
            step(fn, name="bad")  # type: ignore[call-overload]

    message = str(info.value)
    assert f"workflow 'wrong_arity', step 'bad' ({__file__}:{at})" in message
    assert why in message
    assert "def bad(ctx)" in message


def test_steps_with_defaults_varargs_partials_and_callables_compile() -> None:
    """Signatures that accept one argument are fine, whatever their shape."""
    import functools

    class Callable_:
        def __call__(self, ctx: object) -> None:
            return None

    def two(ctx: object, scale: int) -> None:
        return None

    @workflow
    def shapes() -> None:
        step(lambda ctx, scale=2: None, name="defaults")
        step(lambda *args: None, name="varargs")
        step(functools.partial(two, scale=3), name="partial")
        step(Callable_(), name="instance")
        step(len, name="builtin")

    assert 5 == len(shapes.plan.steps)


def test_compensate_and_into_are_checked_for_their_arguments() -> None:
    """undo(ctx) takes one argument and into(ctx, results) two; others fail at import."""
    with pytest.raises(DefinitionError, match=r"compensate= must be a function undo\(ctx\)"):

        @workflow
        def bad_undo() -> None:
            step(noop, name="a", compensate=lambda: None)

    with pytest.raises(DefinitionError, match=r"into= must be a function fn\(ctx, results\)"):

        @workflow
        def bad_into() -> None:
            with parallel(into=lambda ctx: None):
                step(noop, name="b")
