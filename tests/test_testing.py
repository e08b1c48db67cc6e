"""flowdsl.testing, used as a user would: fakes, captured events, strategies, reducer checks."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl import (
    END,
    Err,
    Ok,
    Plan,
    Retry,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
    Workflow,
    WorkflowNotFound,
    arun_workflow,
    call_workflow,
    error,
    foreach,
    goto,
    ok,
    parallel,
    run_many,
    run_workflow,
    sequence,
    step,
    stream_workflow,
    workflow,
)
from flowdsl.errors import UsageError
from flowdsl.testing import Events, Fake, capture_events, check_reducer, override_steps
from flowdsl.testing import strategies as fst

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl.testing._model import CallShape, ForeachShape, StepShape, WorkflowShape, make_case

SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- module-level workflows, as a user's application would define them ----------------------


@workflow("toolkit_signup")
def signup() -> None:
    @step
    async def create_user(ctx: Any) -> object:
        return ok({"user_id": 42})

    @step
    def send_email(ctx: Any) -> object:
        return ok({"email_sent": True})

    @step
    async def finish(ctx: Any) -> object:
        return ok({"done": (ctx["user_id"], ctx["email_sent"])})


@workflow("toolkit_other")
def other() -> None:
    @step
    def send_email(ctx: Any) -> object:
        return ok({"email_sent": "real"})


@workflow("toolkit_outcome")
def outcome_flow() -> None:
    @step
    def produce(ctx: Any) -> object:
        return None

    @step
    def after(ctx: Any) -> object:
        return ok({"after": True})


# -- override_steps --------------------------------------------------------------------------


def test_override_steps_swaps_steps_by_name_and_restores_them() -> None:
    """Runs inside the block use the fakes; runs after it use the real steps again."""

    async def fake_create(ctx: Any) -> object:
        return ok({"user_id": 7})

    with override_steps(signup, create_user=fake_create):
        faked = signup.run()
    real = signup.run()
    assert (7, True) == faked.output["done"]
    assert (42, True) == real.output["done"]


def test_override_steps_accepts_a_workflow_name() -> None:
    """The workflow may be given by its registered name."""
    with override_steps("toolkit_signup", send_email=ok({"email_sent": False})):
        run = run_workflow("toolkit_signup")
    assert (42, False) == run.output["done"]


def test_plain_values_become_recording_fakes() -> None:
    """A non-callable fake is the step's outcome; the yielded Fake records each call's context."""
    with override_steps(signup, send_email=ok({"email_sent": "fake"})) as fakes:
        run = signup.run({"name": "Ada"})
    fake = fakes["send_email"]
    assert isinstance(fake, Fake)
    assert (42, "fake") == run.output["done"]
    assert [{"name": "Ada", "user_id": 42}] == fake.calls
    assert (1, True) == (fake.call_count, fake.called)


@pytest.mark.parametrize(
    ("fake", "expected_error"),
    [
        (error("smtp down"), "smtp down"),
        (Err("as a result"), "as a result"),
    ],
)
def test_error_outcome_fakes_fail_the_step(fake: object, expected_error: object) -> None:
    """An error outcome fails the run at the faked step."""
    with override_steps(signup, send_email=fake):
        run = signup.run()
    assert ("failed", "send_email", expected_error) == (run.status, run.failed_step, run.error)


def test_exception_fakes_are_raised() -> None:
    """An exception instance or class given as a fake is raised by the step."""
    boom = ConnectionError("smtp unreachable")
    with override_steps(signup, send_email=boom):
        by_instance = signup.run()
    with override_steps(signup, send_email=TimeoutError):
        by_class = signup.run()
    assert boom is by_instance.error
    assert isinstance(by_class.error, TimeoutError)


def test_fake_returns_its_outcomes_in_turn_for_retries(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """Fake(error(...), ok(...)) fails the first attempt and succeeds on the retry."""

    @workflow("toolkit_retry")
    def retried() -> None:
        @step(retry=Retry(max_attempts=3, base=0))
        def charge(ctx: Any) -> object:
            return ok({"charged": "real"})

    fake = Fake(error("declined"), ok({"charged": "fake"}))
    with override_steps(retried, charge=fake):
        run = retried.run()
    assert {"charged": "fake"} == dict(run.output)
    assert [1, 2] == [record.attempt for record in run.steps]
    assert 2 == fake.call_count
    assert "Fake(Err('declined'), Ok({'charged': 'fake'}), calls=2)" == repr(fake)


def test_empty_fake_returns_ok() -> None:
    """Fake() succeeds without changing the context."""
    with override_steps(signup, send_email=Fake(), finish=Fake()):
        run = signup.run()
    assert {"user_id": 42} == dict(run.output)


def test_fake_functions_may_be_sync_async_or_async_generators(flowdsl_events: Events) -> None:
    """Fake functions are called like steps: plain, async def, or async generators with chunks."""

    def sync_fake(ctx: Any) -> object:
        return ok({"user_id": 1})

    async def gen_fake(ctx: Any) -> Any:
        yield "sending"
        yield ok({"email_sent": "streamed"})

    with override_steps(signup, create_user=sync_fake, send_email=gen_fake):
        run = signup.run()
    assert (1, "streamed") == run.output["done"]
    assert [StepChunk("send_email", "sending", run_id=run.run_id)] == flowdsl_events.of_type(
        StepChunk
    )


def test_unknown_step_is_an_error_naming_the_known_steps() -> None:
    """A fake for a step the workflow does not have fails at once, listing its steps."""
    with (
        pytest.raises(UsageError) as caught,
        override_steps(signup, send_mail=ok()),
    ):
        pass  # pragma: no cover - the block is never entered
    assert (
        "override_steps(): workflow 'toolkit_signup' has no step named 'send_mail'; "
        "known steps: 'create_user', 'send_email', 'finish'"
    ) == str(caught.value)


def test_unknown_workflow_is_an_error() -> None:
    """An unknown workflow name raises WorkflowNotFound."""
    with pytest.raises(WorkflowNotFound, match="no workflow named 'toolkit_nope'"):  # noqa: SIM117
        with override_steps("toolkit_nope", a=ok()):
            pass  # pragma: no cover


def test_step_names_that_are_not_identifiers_go_in_the_mapping(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """A positional mapping takes any step name; a name given twice is an error."""

    @workflow("toolkit_dashed")
    def dashed() -> None:
        @step(name="send-email")
        def send(ctx: Any) -> object:
            return ok({"sent": "real"})

    with override_steps(dashed, {"send-email": ok({"sent": "fake"})}):
        assert {"sent": "fake"} == dict(dashed.run().output)
    with pytest.raises(UsageError, match="'send-email' is given both"):  # noqa: SIM117
        with override_steps(dashed, {"send-email": ok()}, **{"send-email": ok()}):
            pass  # pragma: no cover


def test_overrides_nest_and_the_inner_block_wins() -> None:
    """A nested block adds fakes to the outer one; leaving it restores the outer fakes."""
    with override_steps(signup, create_user=ok({"user_id": 1}), send_email=ok({"email_sent": 1})):
        with override_steps(signup, send_email=ok({"email_sent": 2})) as inner:
            nested = signup.run()
        outer = signup.run()
    assert (1, 2) == nested.output["done"]
    assert (1, 1) == outer.output["done"]
    assert ["create_user", "send_email"] == sorted(inner)


def test_override_applies_only_to_the_named_workflow() -> None:
    """Another workflow with a step of the same name is left alone."""
    with override_steps(signup, send_email=ok({"email_sent": "fake"})):
        run = other.run()
    assert {"email_sent": "real"} == dict(run.output)


def test_override_covers_async_runs_streams_and_run_many() -> None:
    """Every way of starting a run inside the block sees the fakes."""

    async def main() -> list[Any]:
        with override_steps(signup, create_user=ok({"user_id": 5})):
            one = await arun_workflow(signup)
            events = [event async for event in stream_workflow(signup)]
        last = events[-1]
        assert isinstance(last, RunFinished)
        return [one.output["done"], last.run.output["done"]]

    assert [(5, True), (5, True)] == asyncio.run(main())
    with override_steps(signup, create_user=ok({"user_id": 6})):
        many = run_many(signup, [{}, {}], concurrency=2)
    assert [(6, True), (6, True)] == [run.output["done"] for run in many]


def test_override_does_not_leak_into_concurrent_tasks() -> None:
    """A task inside the block and a task outside it, running at once, each see their own steps."""

    async def main() -> list[Any]:
        inside = asyncio.Event()
        outside_done = asyncio.Event()

        async def faked() -> Any:
            with override_steps(signup, create_user=ok({"user_id": 0})):
                inside.set()
                await outside_done.wait()  # the override is in force while the other run happens
                return (await signup.arun()).output["done"]

        async def real() -> Any:
            await inside.wait()
            run = await signup.arun()
            outside_done.set()
            return run.output["done"]

        return list(await asyncio.gather(faked(), real()))

    assert [(0, True), (42, True)] == asyncio.run(main())


def test_override_does_not_leak_into_other_threads() -> None:
    """A run in another thread while the block is open uses the real steps."""
    entered = threading.Event()
    release = threading.Event()
    seen: list[object] = []

    def hold_override() -> None:
        with override_steps(signup, create_user=ok({"user_id": 0})):
            entered.set()
            release.wait(timeout=10)
            seen.append(signup.run().output["done"])

    thread = threading.Thread(target=hold_override)
    thread.start()
    assert entered.wait(timeout=10)
    seen.append(signup.run().output["done"])
    release.set()
    thread.join(timeout=10)
    assert [(42, True), (0, True)] == seen


def test_the_fake_plan_is_built_once_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entering the block swaps the plan once; runs inside it only look the swap up."""
    calls: list[Mapping[str, object]] = []
    swap = Plan.with_steps

    def counting(self: Plan, replacements: Mapping[str, Any], caller: str) -> Plan:
        calls.append(replacements)
        return swap(self, replacements, caller)

    monkeypatch.setattr(Plan, "with_steps", counting)
    with override_steps(signup, send_email=ok()):
        for _ in range(3):
            signup.run()
    assert 1 == len(calls)


# -- capture_events and the flowdsl_events fixture -------------------------------------------------


def test_capture_events_records_a_run_in_order() -> None:
    """Every event of the run, from RunStarted to RunFinished, in order."""
    with capture_events() as events:
        run = signup.run()
    kinds = [type(event) for event in events]
    assert [RunStarted, *[StepStarted, StepFinished] * 3, RunFinished] == kinds
    assert [run] == events.runs


def test_event_filters() -> None:
    """of_type, for_step, for_run, steps() and runs pick events out of the list."""
    with capture_events() as events, override_steps(signup, send_email=error("down")):
        failed = signup.run()
    with capture_events() as more:
        completed = signup.run()
    events.extend(more)
    assert ["create_user", "send_email", "create_user", "send_email", "finish"] == events.steps()
    assert ["send_email"] == events.steps("failed")
    assert [failed, completed] == events.runs
    finished = events.of_type(StepFinished)
    assert 5 == len(finished)
    assert ["succeeded", "failed"] == [
        e.status for e in events.for_run(failed.run_id).of_type(StepFinished)
    ]
    assert [StepStarted, StepFinished, StepStarted, StepFinished] == [
        type(e) for e in events.for_step("send_email")
    ]
    assert isinstance(events.for_step("finish"), Events)
    assert RunFinished(completed) == events.for_run(completed.run_id)[-1]


def test_captures_nest_and_stop_at_the_end_of_the_block() -> None:
    """An outer and an inner capture both see inner runs; nothing is added after the block."""
    with capture_events() as outer:
        signup.run()
        with capture_events() as inner:
            other.run()
    signup.run()
    assert ["toolkit_signup", "toolkit_other"] == [run.workflow for run in outer.runs]
    assert ["toolkit_other"] == [run.workflow for run in inner.runs]


def test_capture_events_covers_async_runs() -> None:
    """Runs started with arun_workflow inside the block are captured."""

    async def main() -> None:
        await asyncio.gather(signup.arun(), other.arun())

    with capture_events() as events:
        asyncio.run(main())
    assert {"toolkit_signup", "toolkit_other"} == {run.workflow for run in events.runs}


def test_flowdsl_events_fixture_captures_the_test(flowdsl_events: Events) -> None:
    """The plugin's fixture is an Events list of the test's runs."""
    run = other.run()
    assert [RunStarted("toolkit_other", run_id=run.run_id)] == flowdsl_events.of_type(RunStarted)
    assert isinstance(flowdsl_events[-1], RunFinished)


# -- the flowdsl_registry fixture -----------------------------------------------------------------


@pytest.mark.parametrize("answer", [1, 2])
def test_flowdsl_registry_lets_tests_reuse_workflow_names(
    flowdsl_registry: Mapping[str, Workflow], answer: int
) -> None:
    """Two tests define different workflows under one name without a clash."""

    def body() -> None:
        @step
        def reply(ctx: Any) -> object:
            return ok({"answer": answer})

    wf = workflow("toolkit_throwaway")(body)
    assert wf is flowdsl_registry["toolkit_throwaway"]
    assert "toolkit_signup" in flowdsl_registry
    assert {"answer": answer} == dict(run_workflow("toolkit_throwaway").output)


def test_flowdsl_registry_restores_the_registry_after_the_test() -> None:
    """Workflows defined under the fixture are gone afterwards."""
    assert "toolkit_throwaway" not in flowdsl.workflows()
    assert "toolkit_signup" in flowdsl.workflows()


# -- strategies -----------------------------------------------------------------------------------------


@given(fst.results(ok=st.integers(), err=st.just("bad")))
def test_results_draw_ok_and_err_from_the_given_strategies(result: Ok[int] | Err[str]) -> None:
    """results(ok=, err=) builds Ok of the ok values and Err of the err values."""
    match result:
        case Ok(value):
            assert isinstance(value, int)
        case Err(reason):
            assert "bad" == reason


@given(fst.results())
def test_results_default_to_small_values_and_errors(result: Ok[object] | Err[object]) -> None:
    """Without arguments, results() still draws both cases."""
    assert type(result) in (Ok, Err)


@given(fst.outcomes(targets=("after", END)))
def test_every_outcome_is_applied_as_the_design_says(outcome: object) -> None:
    """A step returning any drawn outcome completes, or fails for an error, with the right output."""
    with override_steps(outcome_flow, produce=lambda ctx: outcome):
        run = outcome_flow.run()
    if type(outcome) is Err:
        assert ("failed", outcome.error) == (run.status, run.error)
        return
    assert "completed" == run.status
    output = dict(run.output)
    if type(outcome) is flowdsl.Goto and outcome.target is END:
        assert dict(outcome.update) == output
        return
    output.pop("after")
    if type(outcome) is flowdsl.Goto:
        assert dict(outcome.update) == output
    elif type(outcome) is Ok and isinstance(outcome.value, Mapping):
        assert dict(outcome.value) == output
    elif type(outcome) is Ok:
        assert ({} if outcome.value is None else {"produce": outcome.value}) == output
    else:
        assert ({} if outcome is None else {"produce": outcome}) == output


@given(fst.outcomes())
def test_outcomes_without_targets_never_goto(outcome: object) -> None:
    """outcomes() draws goto only for the targets it is given."""
    assert type(outcome) is not flowdsl.Goto


@given(fst.branch_results(["email", "workspace", "billing"], ok={"email": st.booleans()}))
def test_branch_results_are_read_only_and_in_declaration_order(
    results: Mapping[str, Ok[object] | Err[object]],
) -> None:
    """The mapping has every key in the given order, per-key strategies, and cannot be changed."""
    assert ["email", "workspace", "billing"] == list(results)
    email = results["email"]
    if type(email) is Ok:
        assert isinstance(email.value, bool)
    with pytest.raises(TypeError):
        results["email"] = Ok(1)  # type: ignore[index]


def test_branch_results_reject_bad_keys() -> None:
    """Duplicate keys, or a per-key strategy for an unknown key, are usage errors."""
    with pytest.raises(UsageError, match="distinct branch keys"):
        fst.branch_results(["a", "a"])
    with pytest.raises(UsageError, match="names 'c', which is not among the keys 'a', 'b'"):
        fst.branch_results(["a", "b"], err={"c": st.just(1)})


@SLOW_OK
@given(fst.workflows())
def test_generated_workflows_run_as_the_reference_says(case: fst.WorkflowCase) -> None:
    """The engine gives every random workflow the status, output, failed step and error expected."""
    case.check(case.run())


@settings(SLOW_OK, max_examples=30)
@given(fst.workflows(modes=("async", "agen"), max_steps=5, max_depth=1, retries=False))
def test_generated_workflows_async_and_with_events(case: fst.WorkflowCase) -> None:
    """Running on a loop gives the same run, and RunFinished is the last captured event."""
    with capture_events() as events:
        run = asyncio.run(case.arun())
    case.check(run)
    assert RunFinished(run) == events[-1]
    assert case.workflow.name not in flowdsl.workflows()


@settings(max_examples=10, deadline=None)
@given(fst.workflows(max_steps=3))
def test_a_wrong_expectation_is_reported_with_the_workflow(case: fst.WorkflowCase) -> None:
    """check() raises AssertionError showing the workflow when the run differs."""
    wrong = attrs.evolve(case, expected=attrs.evolve(case.expected, output={"nope": 1}))
    with pytest.raises(AssertionError) as caught:
        wrong.check(case.run())
    assert str(caught.value).startswith(f"workflow {case.workflow.name!r}, input ")
    assert "output: expected {'nope': 1}" in str(caught.value)


def _walk(nodes: tuple[Any, ...]) -> Iterator[Any]:
    """Every shape in `nodes`, at any depth (a call's child included)."""
    for node in nodes:
        yield node
        for inner in ("branches", "children", "body", "child"):
            yield from _walk(getattr(node, inner, ()))


def test_workflows_draw_foreach_blocks_and_calls_in_every_form() -> None:
    """Over a run of draws: foreach blocks over input items (empty and not, with and without
    into=, both policies, nested), item steps, and calls with each kind of input."""
    seen: set[str] = set()

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(fst.workflows())
    def draw(case: fst.WorkflowCase) -> None:
        for node in _walk(case.shape.nodes):
            if isinstance(node, ForeachShape):
                items = case.input[node.items]
                assert isinstance(items, list)
                assert all(isinstance(item, int) for item in items)
                seen.add("items" if items else "no items")
                seen.add("into" if node.into is not None else "no into")
                seen.add("fail_fast" if node.fail_fast else "complete_all")
                if any(isinstance(n, ForeachShape) for n in _walk(node.body)):
                    seen.add("nested")
                if any(isinstance(n, CallShape) for n in _walk(node.body)):
                    seen.add("call in foreach")
            elif isinstance(node, StepShape) and node.kind in ("item", "fail_odd"):
                seen.add(node.kind)
            elif isinstance(node, CallShape):
                seen.add(f"input {node.input}")

    draw()
    assert {
        "items",
        "no items",
        "into",
        "no into",
        "fail_fast",
        "complete_all",
        "nested",
        "call in foreach",
        "item",
        "fail_odd",
        "input none",
        "input fixed",
        "input pick",
        "input pick_item",
    } == seen


@settings(max_examples=20, deadline=None)
@given(fst.workflows(foreach=False, calls=False))
def test_foreach_and_calls_can_be_left_out(case: fst.WorkflowCase) -> None:
    """workflows(foreach=False, calls=False) draws neither."""
    assert not any(isinstance(n, ForeachShape | CallShape) for n in _walk(case.shape.nodes))


def _items_case(on_error: Any = None) -> fst.WorkflowCase:
    """A foreach over three items whose body uses the item and calls a child workflow."""
    child = (StepShape("s1", "ok_merge", Ok({"a": 1})),)
    each = ForeachShape(
        "f1",
        "f1_items",
        (StepShape("s2", "fail_odd", None), CallShape("c1", child, "pick_item", returns="c1_out")),
        on_error=on_error,
    )
    return make_case(WorkflowShape((each, StepShape("s3", "echo", None)), {"f1_items": [2, 3, 4]}))


def test_a_foreach_with_a_call_runs_as_the_reference_says() -> None:
    """complete_all: the odd item fails alone; the others call the child with their item."""
    case = _items_case("complete_all")
    run = case.run()
    case.check(run)
    first, second, third = run.output["f1"]
    assert Ok({"s2_even": 2, "c1_out": {"item": 2, "a": 1}}) == first
    assert Err("s2 odd 3") == second
    assert Ok({"s2_even": 4, "c1_out": {"item": 4, "a": 1}}) == third
    names = {call.workflow for call in case.workflow.plan.calls.values()}
    assert {f"{case.workflow.name}_c1"} == names
    assert not names & set(flowdsl.workflows())  # the child is not left in the registry
    assert "call c1 [pick_item, returns='c1_out'], a child workflow of:" in repr(case)
    assert "foreach f1 over 'f1_items' (complete_all):" in repr(case)


def test_a_fail_fast_foreach_fails_at_the_items_step() -> None:
    """fail_fast: the run fails at s2[1], the odd item, with its error."""
    case = _items_case()
    run = case.run()
    case.check(run)
    assert ("failed", "s2[1]", "s2 odd 3") == (run.status, run.failed_step, run.error)
    assert "s2[1]" == case.expected.failed_step


def test_the_check_holds_foreach_results_to_item_order() -> None:
    """An expectation with a foreach's results in another order is a failed check."""
    case = _items_case("complete_all")
    output = dict(case.expected.output)
    output["f1"] = tuple(reversed(output["f1"]))
    wrong = attrs.evolve(case, expected=attrs.evolve(case.expected, output=output))
    with pytest.raises(AssertionError, match="output: expected"):
        wrong.check(case.run())


def test_a_failing_child_is_the_calls_failure() -> None:
    """The call fails with the child's error, named by the call (with the item's index)."""
    child = (StepShape("s1", "error", Err("child says no")),)
    each = ForeachShape("f1", "f1_items", (CallShape("c1", child, "none"),))
    case = make_case(WorkflowShape((each,), {"f1_items": [7]}))
    run = case.run()
    case.check(run)
    assert ("failed", "c1[0]", "child says no") == (run.status, run.failed_step, run.error)


def test_workflows_rejects_bad_arguments() -> None:
    """Unknown step modes and empty budgets are usage errors."""
    with pytest.raises(UsageError, match="modes="):
        fst.workflows(modes=("process",))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="max_steps >= 1"):
        fst.workflows(max_steps=0)


def test_testing_imports_without_hypothesis_and_strategies_say_what_is_missing() -> None:
    """flowdsl.testing works without hypothesis; its strategies module names the fix."""
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import flowdsl.testing\n"
        "try:\n"
        "    import flowdsl.testing.strategies\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.startswith("flowdsl.testing.strategies needs hypothesis")
    assert "pip install hypothesis" in done.stdout


# -- check_reducer ------------------------------------------------------------------------------------


def tolerant(ctx: Any, results: Mapping[str, Ok[Any] | Err[Any]]) -> object:
    failed = [key for key, result in results.items() if type(result) is Err]
    if failed:
        return goto("notify", {"failed": failed})
    return ok({"all_ok": True})


def careless(ctx: Any, results: Mapping[str, Any]) -> object:
    return ok({"email": results["email_again"].value})  # crashes on Err: no .value


@workflow("toolkit_reducers")
def reducers() -> None:
    @step
    def start(ctx: Any) -> object:
        return ok()

    with parallel(into=tolerant, name="fan_out"):

        @step
        def email(ctx: Any) -> object:
            return True

        with sequence("billing"):

            @step
            def customer(ctx: Any) -> object:
                return ok({"customer": 1})

        @step
        def workspace(ctx: Any) -> object:
            return ok({"id": 7})

    with parallel(into=careless):

        @step(name="email_again")
        def email2(ctx: Any) -> object:
            return True

    with parallel(name="plain"):

        @step
        def audit(ctx: Any) -> object:
            return ok()

    @step
    def notify(ctx: Any) -> object:
        return ok()


def test_a_reducer_that_handles_every_combination_passes() -> None:
    """A reducer returning ok or a goto to a top-level step passes, by name or index."""
    check_reducer(reducers, "fan_out")
    check_reducer(reducers, 0)


def test_every_combination_of_branch_results_is_tried(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """All 2**n Ok/Err patterns reach the reducer (here 2**3), in declaration order."""
    seen: set[tuple[bool, ...]] = set()
    orders: set[tuple[str, ...]] = set()

    def spy(ctx: Any, results: Mapping[str, Any]) -> object:
        seen.add(tuple(type(r) is Ok for r in results.values()))
        orders.add(tuple(results))
        return ok()

    @workflow("toolkit_spied")
    def spied() -> None:
        with parallel(into=spy):
            for name in ("a", "b", "c"):
                step(lambda ctx: ok(), name=name)

    check_reducer(spied, max_examples=16)
    assert 8 == len(seen)
    assert {("a", "b", "c")} == orders


def test_a_crashing_reducer_fails_with_the_smallest_counterexample() -> None:
    """A reducer that raises on some results fails the check, chained to the exception."""
    with pytest.raises(AssertionError) as caught:
        check_reducer(reducers, 1)
    message = str(caught.value)
    assert message.startswith("the into= reducer careless of parallel block 'parallel#2")
    assert "raised AttributeError(" in message
    assert "results: {'email_again': Err(" in message
    assert "ctx: {}" in message
    assert isinstance(caught.value.__cause__, AttributeError)


@pytest.mark.parametrize(
    ("returned", "problem"),
    [
        (
            goto("nowhere"),
            "'nowhere' is not a step of this workflow; goto targets: 'start', 'notify', END",
        ),
        (goto("email"), "'email' is inside a parallel block"),
        ({"merged": True}, "returned a plain dict {'merged': True}, which the engine stores"),
        (ok({1: "x"}), "keys of a mapping merged into the context must be strings"),
    ],
)
def test_invalid_reducer_outcomes_are_reported(
    flowdsl_registry: Mapping[str, Workflow], returned: object, problem: str
) -> None:
    """Gotos to non-top-level or unknown steps, plain values and bad keys fail the check."""

    @workflow("toolkit_bad_reducer")
    def bad() -> None:
        with parallel(into=lambda ctx, results: returned, name="block"):

            @step
            def email(ctx: Any) -> object:
                return ok()

        @step
        def start(ctx: Any) -> object:
            return ok()

        @step
        def notify(ctx: Any) -> object:
            return ok()

    with pytest.raises(AssertionError) as caught:
        check_reducer(bad, "block", max_examples=4)
    assert problem in str(caught.value)


def test_plain_values_are_accepted_when_allowed(flowdsl_registry: Mapping[str, Workflow]) -> None:
    """allow_plain_values=True accepts a reducer returning a bare value."""

    @workflow("toolkit_plain_reducer")
    def plain() -> None:
        with parallel(into=lambda ctx, results: len(results)):

            @step
            def one(ctx: Any) -> object:
                return ok()

    check_reducer(plain, allow_plain_values=True, max_examples=4)


def test_goto_from_a_block_inside_a_branch_is_reported(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """A nested block's reducer may not goto at all."""

    @workflow("toolkit_nested_reducer")
    def nested() -> None:
        with parallel(name="outer"):
            with parallel(into=lambda ctx, results: goto(END), name="inner"):

                @step
                def one(ctx: Any) -> object:
                    return ok()

            @step
            def two(ctx: Any) -> object:
                return ok()

    with pytest.raises(AssertionError, match="inside a parallel branch, where a goto is an error"):
        check_reducer(nested, "inner", max_examples=2)


def test_async_reducers_context_and_per_branch_strategies(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """An async reducer is awaited; ctx and branch values come from the given strategies."""
    seen: list[tuple[str, int]] = []

    async def total(ctx: Any, results: Mapping[str, Any]) -> object:
        amount = results["pay"].value["amount"] if type(results["pay"]) is Ok else 0
        seen.append((ctx["currency"], amount))
        return ok({"total": amount})

    @workflow("toolkit_async_reducer")
    def priced() -> None:
        with parallel(into=total):

            @step
            def pay(ctx: Any) -> object:
                return ok({"amount": 1})

    check_reducer(
        priced,
        ok={"pay": st.fixed_dictionaries({"amount": st.integers(1, 5)})},
        context=st.fixed_dictionaries({"currency": st.sampled_from(["EUR", "USD"])}),
        max_examples=20,
    )
    check_reducer(priced, ok={"pay": st.just({"amount": 3})}, context={"currency": "CHF"})
    assert {"EUR", "USD", "CHF"} == {currency for currency, _ in seen}
    assert all(0 <= amount <= 5 for _, amount in seen)


def test_many_branches_are_checked_with_random_combinations(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """Beyond six branches, combinations are drawn at random rather than enumerated."""
    patterns: set[tuple[bool, ...]] = set()

    def spy(ctx: Any, results: Mapping[str, Any]) -> object:
        patterns.add(tuple(type(r) is Ok for r in results.values()))
        return None

    @workflow("toolkit_wide")
    def wide() -> None:
        with parallel(into=spy):
            for index in range(7):
                step(lambda ctx: ok(), name=f"b{index}")

    check_reducer(wide, max_examples=30)
    assert len(patterns) > 1


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (None, "has 3 parallel block(s) and several have into= reducers; pass block="),
        (
            "missing",
            "has no parallel block named 'missing'; its blocks: 0: 'fan_out' (into=tolerant)",
        ),
        (7, "has no parallel block at index 7"),
        ("plain", "parallel block 'plain' of workflow 'toolkit_reducers'"),
        (2, "has no into= reducer; it adds '__results__' instead"),
        (True, "block= takes a block name or index, got True"),
    ],
)
def test_choosing_a_block_that_does_not_fit_is_a_usage_error(block: Any, message: str) -> None:
    """Unknown names and indexes, blocks without into=, and ambiguity say what to pass."""
    with pytest.raises(UsageError) as caught:
        check_reducer(reducers, block)
    assert message in str(caught.value)


def test_a_workflow_without_blocks_or_reducers_is_a_usage_error() -> None:
    """check_reducer needs a parallel block with into=."""
    with pytest.raises(UsageError, match="has no parallel block"):
        check_reducer(signup)
    with pytest.raises(UsageError, match="max_examples must be an int >= 1"):
        check_reducer(reducers, 0, max_examples=0)


def test_async_reducers_cannot_be_checked_inside_a_running_loop(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """check_reducer runs async reducers with asyncio.run, so it refuses a running loop."""

    async def reduce(ctx: Any, results: Mapping[str, Any]) -> object:
        return ok()

    @workflow("toolkit_loop_reducer")
    def looped() -> None:
        with parallel(into=reduce):

            @step
            def one(ctx: Any) -> object:
                return ok()

    async def main() -> None:
        check_reducer(looped)

    with pytest.raises(UsageError, match="call it from a plain"):
        asyncio.run(main())


def test_a_foreach_reducer_gets_tuples_of_every_length_and_mix(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """Every Ok/Err pattern of 0..max_items items reaches the reducer, as a tuple."""
    seen: set[tuple[bool, ...]] = set()
    kinds: set[type] = set()

    def spy(ctx: Any, results: Any) -> object:
        kinds.add(type(results))
        seen.add(tuple(type(r) is Ok for r in results))
        return ok()

    @workflow("toolkit_each_spied")
    def spied() -> None:
        with foreach("files", into=spy):
            step(lambda ctx: ok(), name="load")

    check_reducer(spied, max_items=3, max_examples=30)
    assert {tuple} == kinds
    every = {p for n in range(4) for p in itertools.product((True, False), repeat=n)}
    assert every == seen  # 1 + 2 + 4 + 8 patterns


def test_many_items_are_drawn_at_random_up_to_max_items(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """Beyond 64 patterns (max_items > 5), tuples of random length and mix are drawn."""
    lengths: set[int] = set()

    def spy(ctx: Any, results: Any) -> object:
        lengths.add(len(results))
        return ok()

    @workflow("toolkit_each_wide")
    def wide() -> None:
        with foreach("files", into=spy, name="wide"):
            step(lambda ctx: ok(), name="load")

    check_reducer(wide, "wide", max_items=9, max_examples=40)
    assert max(lengths) <= 9
    assert len(lengths) > 2


def sum_rows(ctx: Any, results: Any) -> object:
    return ok({"rows": sum(r.value["rows"] for r in results)})  # crashes on an Err


def test_a_foreach_reducer_that_crashes_shows_the_smallest_tuple(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """A reducer that ignores failed items fails the check on a one-item tuple with an Err."""

    @workflow("toolkit_each_careless")
    def careless() -> None:
        with foreach("files", into=sum_rows, name="loaded"):
            step(lambda ctx: ok({"rows": 1}), name="load")

    with pytest.raises(AssertionError) as caught:
        check_reducer(careless, ok=st.fixed_dictionaries({"rows": st.integers(0, 3)}))
    message = str(caught.value)
    assert message.startswith("the into= reducer sum_rows of foreach block 'loaded' in workflow")
    assert "raised AttributeError(" in message
    assert "results: (Err(" in message
    assert isinstance(caught.value.__cause__, AttributeError)


def test_foreach_blocks_are_chosen_by_name_or_index_among_all_blocks(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """Parallel and foreach blocks share one index; the messages name each kind."""

    def count(ctx: Any, results: Any) -> object:
        return ok({"n": len(results)})

    @workflow("toolkit_each_mixed")
    def mixed() -> None:
        with parallel(into=count, name="fan"):
            step(lambda ctx: ok(), name="a")
        with (
            foreach("files", name="plain_each"),
            foreach(lambda ctx: ctx.item, into=lambda ctx, rs: goto(END)),
        ):
            step(lambda ctx: ok(), name="cell")
        with foreach("files", into=count):
            step(lambda ctx: ok(), name="load")

    check_reducer(mixed, "foreach#3", max_examples=10)
    check_reducer(mixed, 3, max_examples=10)
    check_reducer(mixed, "fan", max_examples=10)
    with pytest.raises(UsageError) as caught:
        check_reducer(mixed)
    message = str(caught.value)
    assert (
        "has 1 parallel and 3 foreach block(s) and several have into= reducers; pass block= "
        "a name or an index: 0: 'fan' (into="
    ) in message
    assert ", 1: foreach 'plain_each' (no into=), 2: foreach 'foreach#2' (into=" in message
    with pytest.raises(UsageError, match="it adds its results tuple under 'plain_each' instead"):
        check_reducer(mixed, "plain_each")
    with pytest.raises(
        UsageError, match=r"no parallel or foreach block named 'nope'.*foreach\(name=\.\.\.\)"
    ):
        check_reducer(mixed, "nope")
    with pytest.raises(AssertionError, match="inside a foreach body, where a goto is an error"):
        check_reducer(mixed, 2, max_examples=4)
    with pytest.raises(UsageError, match="foreach block 'foreach#3' has items, not branches"):
        check_reducer(mixed, 3, ok={"load": st.just({})})
    with pytest.raises(UsageError, match="max_items must be an int >= 0"):
        check_reducer(mixed, 3, max_items=-1)


def test_a_calls_child_is_checked_on_its_own_not_through_the_parent(
    flowdsl_registry: Mapping[str, Workflow],
) -> None:
    """check_reducer skips call_workflow nodes: the child's blocks belong to the child."""

    @workflow("toolkit_child")
    def child() -> None:
        with parallel(into=lambda ctx, results: ok(), name="inner"):
            step(lambda ctx: ok(), name="a")

    @workflow("toolkit_parent")
    def parent() -> None:
        call_workflow("toolkit_child")
        with foreach("files", name="outer"):
            call_workflow(child, name="again")

    with pytest.raises(UsageError) as caught:
        check_reducer(parent, "inner")
    assert "has no foreach block named 'inner'; its blocks: 0: foreach 'outer'" in str(caught.value)
    check_reducer(child, "inner", max_examples=4)

    @workflow("toolkit_only_calls")
    def only_calls() -> None:
        call_workflow("toolkit_child")

    with pytest.raises(UsageError, match=r"check_reducer\(child\)"):
        check_reducer(only_calls)


def test_events_and_fakes_are_exported() -> None:
    """flowdsl.testing's public names."""
    import flowdsl.testing

    assert [
        "Events",
        "Fake",
        "FakeClock",
        "capture_events",
        "check_reducer",
        "fake_clock",
        "override_steps",
    ] == sorted(flowdsl.testing.__all__)
    assert issubclass(Events, list)


def test_fakes_apply_to_runs_resumed_by_resume_runs(tmp_path: Any) -> None:
    """A crash-recovery test must not reach the real service: resumed runs use the fakes."""
    from flowdsl import SQLiteStore, aresume_runs

    real: list[str] = []
    reached = asyncio.Event()

    @workflow("toolkit_resumable")
    def resumable() -> None:
        @step
        async def charge(ctx: Any) -> Any:
            real.append("charge")
            if len(real) > 1:  # reached on resume: the fake was not applied
                return ok({"charged": "real"})
            reached.set()
            await asyncio.Event().wait()

    async def main(store: SQLiteStore) -> list[Any]:
        task = asyncio.ensure_future(resumable.arun(run_id="p1", store=store))
        await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with override_steps(resumable, charge=ok({"charged": "fake"})):
            return await aresume_runs(store, include_cancelled=True)

    with SQLiteStore(tmp_path / "runs.db") as store:
        [run] = asyncio.run(main(store))
    assert ("completed", {"charged": "fake"}) == (run.status, dict(run.output))
    assert ["charge"] == real  # only the first, cancelled attempt reached the real step
