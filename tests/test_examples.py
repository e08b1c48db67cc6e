"""The examples run as scripts and behave as their docstrings say; the guides' code runs."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from flowdsl import (
    Err,
    Ok,
    Run,
    SQLiteStore,
    StepStarted,
    arun_workflow,
    asend_event,
    parallel_results,
    run_workflow,
)
from flowdsl._define import _registry
from flowdsl.testing import FakeClock, capture_events, fake_clock, override_steps

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GUIDES = (
    "index",
    "steps-and-context",
    "parallel",
    "foreach",
    "goto",
    "retries-and-timeouts",
    "compensation",
    "errors",
    "result",
    "streaming",
    "observability",
    "waits",
    "../README",
)
SCRIPTS = {
    "batch_files": "4 imported, 1 failed; revenue 280.50",
    "checkout": "failed at 'fetch_user'",
    "demo": "same attempts, same durations: True",
    "etl_fanout": "loaded: 6 rows",
    "expense_approval": "exp-3 (5000 EUR): rejected by maria",
    "onboarding": "support_ticket",
    "order_payment": "undo reserve_stock",
    "order_routing": "status: awaiting_payment",
    "parallel_enrichment": "faster",
    "retrying_call": "attempt 4",
    "saga": "undo book_flight",
    "scrape_urls": "'News', 2 links (after 3 attempts)",
}


@pytest.fixture(scope="module", autouse=True)
def _examples_importable() -> Iterator[None]:
    """Import examples by module name, as scripts do (demo.py imports onboarding.py).

    Their workflows live in a registry of this module's own, so their names
    cannot clash with other tests' workflows.
    """
    sys.path.insert(0, str(EXAMPLES))
    try:
        with _registry.isolated():
            yield
    finally:
        sys.path.remove(str(EXAMPLES))
        for name in SCRIPTS:
            sys.modules.pop(name, None)


def load(name: str) -> ModuleType:
    return importlib.import_module(name)


def attempts(run: Run, step: str) -> list[str]:
    """The status of each attempt of `step`, in attempt order."""
    return [record.status for record in run.steps if record.name == step]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_example_runs_as_a_script(name: str) -> None:
    """`python examples/NAME.py` exits 0, prints its summary, and writes nothing to stderr."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (0, "") == (done.returncode, done.stderr)
    assert SCRIPTS[name] in done.stdout


def test_parallel_enrichment_is_faster_than_sequential() -> None:
    """Both workflows give the same summary; the parallel one takes about half the time."""
    example = load("parallel_enrichment")
    sequential, concurrent = example.compare({"user_id": "u-1", "session_id": "s-1"})
    assert ("completed", "completed") == (sequential.status, concurrent.status)
    assert "User: Alice | Topics: async programming, databases" == concurrent.output["summary"]
    assert sequential.output["summary"] == concurrent.output["summary"]
    assert sequential.duration / concurrent.duration > 1.3


def test_parallel_enrichment_keeps_going_without_a_failed_lookup() -> None:
    """The reducer drops a failed lookup; the summary is built from what is left."""
    load("parallel_enrichment")
    run = run_workflow("enrich_parallel", {"user_id": "u-1"})  # no session_id: memory fails
    assert "completed" == run.status
    assert "User: Alice" == run.output["summary"]
    assert ["failed"] == attempts(run, "memory_enrich")


def test_checkout_runs_three_stages() -> None:
    """A known user goes through all three stages and gets a total."""
    load("checkout")
    run = run_workflow(
        "checkout", {"sku": "sku-42", "quantity": 2, "card": "4242", "user_id": "u-1"}
    )
    assert "completed" == run.status
    assert 106.0 == run.output["total"]
    assert {
        "fetch_user",
        "check_inventory",
        "validate_payment",
        "detect_fraud",
        "calculate_shipping",
        "reserve_stock",
        "calculate_tax",
        "confirm",
    } == {record.name for record in run.steps}


def test_checkout_stage_1_failure_skips_later_stages() -> None:
    """An unknown user fails stage 1 fast: its siblings are cancelled, stages 2 and 3 never run."""
    load("checkout")
    run = run_workflow(
        "checkout", {"sku": "sku-42", "quantity": 2, "card": "4242", "user_id": "u-404"}
    )
    assert ("failed", "fetch_user") == (run.status, run.failed_step)
    assert isinstance(run.error, LookupError)
    assert [("fetch_user", "failed")] == [(record.name, record.status) for record in run.steps]
    assert "total" not in run.output


def test_etl_fanout_extracts_three_sources_then_loads() -> None:
    """Every source's rows are gathered, transformed once, and loaded."""
    example = load("etl_fanout")
    run = run_workflow("etl")
    assert "completed" == run.status
    assert {"orders_db": 2, "crm_api": 2, "csv_export": 2} == run.output["extracted"]
    assert 6 == run.output["loaded"]
    assert [1, 2, 3, 4, 5, 6] == [row["id"] for row in run.output["rows"]]
    assert {"FR", "DE", "IT", "ES"} == {row["country"] for row in example.WAREHOUSE.values()}
    assert ["transform", "load"] == [record.name for record in run.steps[-2:]]


def test_etl_fanout_fails_naming_the_source_that_failed() -> None:
    """A failed source makes the extract reducer fail the run; nothing is transformed or loaded."""
    load("etl_fanout")
    with override_steps("etl", csv_export=OSError("export.csv: no such file")):
        run = run_workflow("etl")
    assert ("failed", "extract") == (run.status, run.failed_step)
    assert run.error.startswith("extract failed for ['csv_export']")
    assert {"transform", "load"}.isdisjoint(record.name for record in run.steps)


def test_onboarding_retries_the_flaky_email() -> None:
    """Two outages: the third attempt sends the email and support is not told."""
    load("onboarding")
    run = run_workflow("onboard_user", {"name": "Ada", "mail_outages": 2})
    assert "completed" == run.status
    assert ["failed", "failed", "succeeded"] == attempts(run, "send_welcome_email")
    assert run.output["onboarded"] is True
    assert "support_ticket" not in run.output
    assert [] == attempts(run, "notify_support")


def test_onboarding_notifies_support_when_the_email_branch_failed() -> None:
    """complete_all keeps the other branches; the failed email routes to notify_support."""
    load("onboarding")
    run = run_workflow("onboard_user", {"name": "Grace", "mail_outages": 99})
    assert "completed" == run.status
    assert ["failed"] * 4 == attempts(run, "send_welcome_email")
    results = parallel_results(run.output)
    assert isinstance(results["send_welcome_email"], Err)
    assert Ok({"id": 7, "owner": 42}) == results["workspace"]
    assert Ok({"customer_id": "cus_1", "plan": "cus_1:free"}) == results["billing"]
    assert ["succeeded"] == attempts(run, "notify_support")
    assert run.output["support_ticket"].startswith("welcome email failed: 421")


def test_order_routing_takes_each_path() -> None:
    """The reducer ships, backorders or routes to payment_issue; runs come back in input order."""
    example = load("order_routing")
    runs = example.process_all()
    assert ["o-1", "o-2", "o-3"] == [run.output["order_id"] for run in runs]
    assert ["shipped", "backordered", "awaiting_payment"] == [run.output["status"] for run in runs]
    assert ["completed"] * 3 == [run.status for run in runs]
    last_steps = [run.steps[-1].name for run in runs]
    assert ["ship", "backorder", "payment_issue"] == last_steps
    assert "lamp" == runs[1].output["restock_request"]
    assert "pay-o-2" == runs[1].output["payment"]


def test_saga_undoes_bookings_in_reverse_order() -> None:
    """The car fails: the hotel, then the flight, are cancelled, and nothing stays booked."""
    example = load("saga")
    run = run_workflow("book_trip", {"traveller": "Grace", "car_class": "convertible"})
    assert ("failed", "book_car") == (run.status, run.failed_step)
    assert [("book_hotel", "succeeded"), ("book_flight", "succeeded")] == [
        (undo.step, undo.status) for undo in run.compensations
    ]
    live = example.AIRLINE.live | example.HOTELS.live | example.CARS.live
    assert not {run.output["flight"], run.output["hotel"]} & live


def test_saga_success_compensates_nothing() -> None:
    """A completed trip keeps its bookings."""
    example = load("saga")
    run = run_workflow("book_trip", {"traveller": "Ada", "car_class": "compact"})
    assert "completed" == run.status
    assert () == run.compensations
    assert run.output["car"] in example.CARS.live


def test_retrying_call_backs_off_until_the_service_answers() -> None:
    """Timeout, reset and 503 are failed attempts; the fourth succeeds after growing waits."""
    load("retrying_call")
    run = run_workflow("convert", {"currency": "EUR", "amount": 100})
    assert "completed" == run.status
    assert 108.0 == run.output["converted"]
    tries = [record for record in run.steps if record.name == "fetch_rate"]
    assert [1, 2, 3, 4] == [record.attempt for record in tries]
    assert isinstance(tries[0].error, TimeoutError)
    assert isinstance(tries[1].error, ConnectionResetError)
    assert "HTTP 503: service unavailable" == tries[2].error
    assert tries[3].error is None
    waits = [b.started - (a.started + a.duration) for a, b in itertools.pairwise(tries)]
    for wait, planned in zip(waits, (0.02, 0.04, 0.08), strict=True):
        assert wait > planned * 0.8


def test_retrying_call_does_not_retry_a_404() -> None:
    """LookupError is not in retry_on: one attempt, and the run fails."""
    load("retrying_call")
    run = run_workflow("convert", {"currency": "XYZ", "amount": 100})
    assert ("failed", "fetch_rate") == (run.status, run.failed_step)
    assert isinstance(run.error, LookupError)
    assert ["failed"] == attempts(run, "fetch_rate")


def test_batch_files_fail_safe_summarises_every_file_in_file_order(tmp_path: Path) -> None:
    """complete_all + into=: four files imported, the malformed one reported; at most 3 at once."""
    example = load("batch_files")
    example.write_sample(tmp_path)
    example.LOADING.reset()
    run = run_workflow("import_all", {"folder": str(tmp_path)})
    assert "completed" == run.status, run.error
    assert {
        "sales-1.csv": 135.0,
        "sales-2.csv": 62.5,
        "sales-4.csv": 44.0,
        "sales-5.csv": 39.0,
    } == run.output["imported"]
    assert ["sales-1.csv", "sales-2.csv", "sales-4.csv", "sales-5.csv"] == list(
        run.output["imported"]
    )
    assert {
        "sales-3.csv": "ValueError: sales-3.csv line 3: qty 'two' is not a number"
    } == run.output["failed"]
    assert 280.5 == run.output["revenue"]
    assert "foreach#1" not in run.output, "with into= the reducer's mapping is all the block adds"
    assert ["failed"] == attempts(run, "load[2]")
    assert [] == attempts(run, "transform[2]")
    assert {f"load[{i}]" for i in range(5)} | {f"transform[{i}]" for i in (0, 1, 3, 4)} == {
        record.name for record in run.steps if record.name != "list_files"
    }
    assert 3 == example.LOADING.peak == example.LIMIT


def test_batch_files_fail_fast_fails_the_run_at_the_bad_file(tmp_path: Path) -> None:
    """The default policy: the malformed file fails the run as 'load[2]'; nothing is summarised."""
    example = load("batch_files")
    example.write_sample(tmp_path)
    example.LOADING.reset()
    run = run_workflow("import_strict", {"folder": str(tmp_path)})
    assert ("failed", "load[2]") == (run.status, run.failed_step)
    assert isinstance(run.error, ValueError)
    assert "sales-3.csv line 3: qty 'two' is not a number" == str(run.error)
    assert "totals" not in run.output
    assert [] == attempts(run, "transform[2]")
    assert all(record.status == "succeeded" for record in run.steps if record.name != "load[2]")
    assert example.LOADING.peak <= example.LIMIT


def test_batch_files_an_empty_folder_imports_nothing(tmp_path: Path) -> None:
    """No files: the reducer gets an empty tuple and the summary is empty."""
    load("batch_files")
    run = run_workflow("import_all", {"folder": str(tmp_path)})
    assert "completed" == run.status, run.error
    assert ({}, {}, 0) == (run.output["imported"], run.output["failed"], run.output["revenue"])
    assert ["list_files"] == [record.name for record in run.steps]


def test_scrape_urls_reports_every_url_in_url_order_whatever_order_pages_arrived() -> None:
    """The report follows the URL list; the pages arrived about, home, news (latency, retries)."""
    example = load("scrape_urls")
    before = len(example.WEB.arrived)
    run = run_workflow("scrape", {"urls": example.URLS}, run_id="scrape-order")
    assert "completed" == run.status, run.error
    site = example.SITE
    assert [
        {
            "url": f"{site}/",
            "title": "Home",
            "links": [f"{site}/news", f"{site}/about"],
            "attempts": 1,
        },
        {
            "url": f"{site}/news",
            "title": "News",
            "links": [f"{site}/news/1", f"{site}/news/2"],
            "attempts": 3,
        },
        {"url": f"{site}/about", "title": "About us", "links": [f"{site}/"], "attempts": 1},
        {"url": f"{site}/gone", "error": f"LookupError: {site}/gone: 404 not found"},
    ] == run.output["report"]
    assert [f"{site}/about", f"{site}/", f"{site}/news"] == example.WEB.arrived[before:]
    assert [Ok, Ok, Ok, Err] == [type(page) for page in run.output["pages"]]


def test_scrape_urls_retries_the_flaky_fetch_and_not_the_missing_page() -> None:
    """fetch[1]: a reset and a 503 are failed attempts, the third succeeds; the 404 is tried once."""
    example = load("scrape_urls")
    run = run_workflow("scrape", {"urls": example.URLS}, run_id="scrape-retry")
    tries = [record for record in run.steps if record.name == "fetch[1]"]
    assert [(1, "failed"), (2, "failed"), (3, "succeeded")] == [
        (record.attempt, record.status) for record in tries
    ]
    assert isinstance(tries[0].error, ConnectionResetError)
    assert f"{example.SITE}/news: HTTP 503 service unavailable" == tries[1].error
    assert 3 == example.WEB.calls["scrape-retry:fetch[1]"], "one idempotency key per item"
    assert ["failed"] == attempts(run, "fetch[3]")
    assert isinstance(run.steps[[r.name for r in run.steps].index("fetch[3]")].error, LookupError)
    assert [] == attempts(run, "parse[3]")
    assert ["succeeded"] == attempts(run, "fetch[0]") == attempts(run, "fetch[2]")


def order(example: ModuleType, number: str, card: str) -> dict[str, object]:
    """One of the example's orders, under an order number of this test's own."""
    return {**example.ORDERS[0], "order": number, "card": card}


def test_order_payment_stores_the_childs_output_under_returns(tmp_path: Path) -> None:
    """The payment is a child run '{parent}/payment#1' of the store; its output is ctx['payment']."""
    example = load("order_payment")
    with SQLiteStore(tmp_path / "orders.db") as store:
        run = run_workflow(
            "place_order", order(example, "t1", "tok_visa"), run_id="order-t1", store=store
        )
        child = store.get_run("order-t1/payment#1")
        stored = sorted((r.run_id, r.workflow, r.status) for r in store.list_runs())
    assert "completed" == run.status, run.error
    assert ["reserve_stock", "create_invoice", "payment", "ship"] == [r.name for r in run.steps]
    paid = run.output["payment"]
    authorization = paid["authorization"]
    assert {
        "order": "t1",
        "amount": 51.5,
        "card": "tok_visa",
        "authorization": authorization,
        "capture": authorization.replace("AUTH", "CAP"),
        "paid": 51.5,
        "payment_run": "order-t1/payment#1",
    } == paid
    assert paid["capture"] == run.output["receipt"]
    assert child is not None
    assert ("payment", "completed") == (child.workflow, child.status)
    assert dict(child.output) == paid
    assert ["authorize", "capture"] == [r.name for r in child.steps]
    assert [
        ("order-t1", "place_order", "completed"),
        ("order-t1/payment#1", "payment", "completed"),
    ] == stored


def test_order_payment_declined_card_compensates_the_orders_steps(tmp_path: Path) -> None:
    """The child fails at authorize; the order fails at 'payment' and undoes invoice, then stock."""
    example = load("order_payment")
    stock = dict(example.WAREHOUSE.stock)
    with SQLiteStore(tmp_path / "orders.db") as store:
        run = run_workflow(
            "place_order", order(example, "t2", "tok_declined"), run_id="order-t2", store=store
        )
        child = store.get_run("order-t2/payment#1")
    assert ("failed", "payment") == (run.status, run.failed_step)
    assert "card tok_declined declined for 51.50" == run.error
    assert [("create_invoice", "succeeded"), ("reserve_stock", "succeeded")] == [
        (undo.step, undo.status) for undo in run.compensations
    ]
    assert "void" == example.INVOICES["INV-t2"]
    assert stock == example.WAREHOUSE.stock
    assert run.output["reservation"] not in example.WAREHOUSE.reservations
    assert [] == attempts(run, "ship")
    assert child is not None
    assert ("failed", "authorize", run.error) == (child.status, child.failed_step, child.error)


def test_order_payment_asked_again_starts_no_second_child(tmp_path: Path) -> None:
    """A finished order's run_id returns the recorded run: no child runs, nothing is captured."""
    example = load("order_payment")
    with SQLiteStore(tmp_path / "orders.db") as store:
        first = run_workflow(
            "place_order", order(example, "t3", "tok_visa"), run_id="order-t3", store=store
        )
        captured = list(example.GATEWAY.captured)
        with capture_events() as events:
            again = run_workflow(
                "place_order", order(example, "t3", "tok_visa"), run_id="order-t3", store=store
            )
        runs = [r.run_id for r in store.list_runs()]
    assert first.output == again.output
    assert [] == events.of_type(StepStarted)
    assert captured == example.GATEWAY.captured
    assert ["order-t3", "order-t3/payment#1"] == runs


def test_order_payment_child_read_back_names_its_parent(tmp_path: Path) -> None:
    """The stored payment run's parent_id is the order's run id."""
    example = load("order_payment")
    with SQLiteStore(tmp_path / "orders.db") as store:
        run_workflow(
            "place_order", order(example, "t4", "tok_visa"), run_id="order-t4", store=store
        )
        child = store.get_run("order-t4/payment#1")
    assert child is not None
    assert "order-t4" == child.parent_id


def test_demo_runs_durably_and_returns_the_recorded_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo streams a journaled run live; the same run_id again runs nothing."""
    demo = load("demo")
    first, again = demo.demo(tmp_path / "demo.db")
    out = capsys.readouterr().out
    assert "send_welcome_email failed" in out
    assert "< complete succeeded" in out
    assert ("completed", "completed") == (first.status, again.status)
    assert demo.attempts(first) == demo.attempts(again)
    assert first.output == again.output
    with SQLiteStore(tmp_path / "demo.db") as store, capture_events() as events:
        third = run_workflow("onboard_user", demo.INPUT, run_id="onboard-ada", store=store)
    assert [] == events.of_type(StepStarted)
    assert demo.attempts(first) == demo.attempts(third)


DAY = 86_400.0


async def expense(clock: FakeClock, run_id: str, *script: tuple[float, str, object]) -> Run:
    """Run expense_approval here; at each (days later, event, payload) send the event."""
    task = asyncio.create_task(
        arun_workflow("expense_approval", {"expense_id": run_id, "amount": 80.0}, run_id=run_id)
    )
    for days, event, payload in script:
        while clock.sleepers == 0:  # until the run waits (its wait's deadline is a sleeper)
            assert not task.done(), f"the run ended before waiting: {task.result()}"
            await asyncio.sleep(0)
        clock.advance(days * DAY)
        if event:
            await asend_event(run_id, event, payload)
        await asyncio.sleep(0)
    return await task


def test_expense_approved_in_time_is_paid_and_not_escalated() -> None:
    """Approved on day 2 of 3: paid once, approved by the team lead, no escalation."""
    example = load("expense_approval")
    with fake_clock() as clock:
        run = asyncio.run(expense(clock, "x-1", (2, "approved", {"by": "ana"})))
    assert ("completed", "paid", "ana") == (
        run.status,
        run.output["status"],
        run.output["approved_by"],
    )
    assert ["submit", "approved", "pay"] == [record.name for record in run.steps]
    assert "escalated" not in run.output
    assert [("x-1", 80.0)] == [v for v in example.PAYMENTS.values() if v[0] == "x-1"]


def test_expense_not_approved_in_time_is_escalated_then_approved() -> None:
    """Three silent days: escalated; the manager's approval on day 4 pays it."""
    example = load("expense_approval")
    with fake_clock() as clock:
        run = asyncio.run(
            expense(
                clock,
                "x-2",
                (3, "", None),
                (1, "manager_decision", {"approved": True, "by": "maria"}),
            )
        )
    assert ("completed", "paid", "maria") == (
        run.status,
        run.output["status"],
        run.output["approved_by"],
    )
    assert run.output["escalated"] is True
    assert ["submit", "approved", "escalate", "manager_decision", "decide", "pay"] == [
        record.name for record in run.steps
    ]
    assert [("x-2", 80.0)] == [v for v in example.PAYMENTS.values() if v[0] == "x-2"]


def test_expense_escalated_then_rejected_is_not_paid() -> None:
    """The manager rejects: the run completes as rejected and pays nothing."""
    example = load("expense_approval")
    with fake_clock() as clock:
        run = asyncio.run(
            expense(
                clock,
                "x-3",
                (3, "", None),
                (1, "manager_decision", {"approved": False, "by": "maria"}),
            )
        )
    assert ("completed", "rejected", "maria") == (
        run.status,
        run.output["status"],
        run.output["rejected_by"],
    )
    assert "pay" not in [record.name for record in run.steps]
    assert not [v for v in example.PAYMENTS.values() if v[0] == "x-3"]


def test_expense_nobody_decides_fails_the_run_at_the_managers_deadline() -> None:
    """Three days, then two more, without an answer: the run fails with TimeoutError."""
    load("expense_approval")
    with fake_clock() as clock:
        run = asyncio.run(expense(clock, "x-4", (3, "", None), (2, "", None)))
    assert ("failed", "manager_decision") == (run.status, run.failed_step)
    assert isinstance(run.error, TimeoutError)


@pytest.mark.parametrize("page", GUIDES)
@pytest.mark.usefixtures("flowdsl_registry")  # the guides' workflows vanish after each page
def test_guide_code_runs(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every ```python block of a guide page runs, in order, in one namespace (their asserts hold)."""
    path = ROOT / "docs" / f"{page}.md"
    blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.M | re.S)
    assert blocks
    # A real (temporary) module, so dataclasses and pickling in the snippets work.
    module = types.ModuleType(f"docs_{page.strip('./').replace('-', '_')}")
    sys.modules[module.__name__] = module
    try:
        with _registry.isolated() as registry:
            registry.clear()  # a page stands alone: no workflow of another test is visible
            for block in blocks:
                exec(compile(block, str(path), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    capsys.readouterr()
