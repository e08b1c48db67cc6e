"""The dashboard and the run viewer as a person uses them: headless Chromium, clicking.

Playwright's Python package drives the system's Chromium (Debian's
``chromium`` package, which ``make system-deps`` installs; ``playwright
install`` is never needed). Without a Chromium these tests skip on a
developer's machine and fail in CI (``CI`` set), where they must run.
Every page is loaded with the network cut off except the dashboard itself:
a request anywhere else fails the test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from dashboard import Dashboard, running_dashboard
from polling import serving, wait_for
from stores import StoreKit

from flowdsl import (
    Store,
    error,
    foreach,
    ok,
    run_workflow,
    start_workflow,
    step,
    wait_for_event,
    workflow,
)

pytestmark = pytest.mark.usefixtures("flowdsl_registry")

CHROMIUM = os.environ.get("FLOWDSL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def _has_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: make system-deps installs Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium. Playwright's sync API runs an event loop in this thread while it
    is open, so the test starts its runs (run_workflow refuses a running loop) before."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Offline:
    """A browser page that may reach only `allowed` (URL prefixes); it records the rest."""

    def __init__(self, browser: Any, allowed: tuple[str, ...]) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.elsewhere: list[str] = []
        self.context.route("**/*", self._route)
        self.allowed = allowed
        self.page = self.context.new_page()

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.allowed):
            route.continue_()
        else:
            self.elsewhere.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def store(store_kit: StoreKit) -> Iterator[Store]:
    with store_kit.open() as opened:
        yield opened


def _open(browser: Any, board: Dashboard) -> Offline:
    return Offline(browser, (board.url + "/",))


def test_filter_open_a_running_run_and_cancel_it(store: Store) -> None:
    release = threading.Event()

    @workflow
    def report() -> None:
        @step
        async def build(ctx: Any) -> Any:
            await asyncio.to_thread(release.wait, 60)  # the test releases it
            return ok()

    @workflow
    def quick() -> None:
        step(lambda ctx: ok({"n": 1}), name="one")
        step(lambda ctx: error("nope") if ctx["fail"] else ok(), name="two")

    run_workflow("quick", {"fail": False}, run_id="q-ok", store=store)
    run_workflow("quick", {"fail": True}, run_id="q-bad", store=store)
    start_workflow("report", run_id="r-1", store=store)
    try:
        with (
            ExitStack() as stack,
            serving(store, park_after=0, poll=0.02),
            running_dashboard(store) as board,
        ):
            wait_for(lambda: store.get_run("r-1").status == "running", "the report to run")  # type: ignore[union-attr]
            browser = stack.enter_context(chromium())
            tab = _open(browser, board)
            page = tab.page
            page.goto(board.url + "/")
            assert 3 == page.locator("tr.run").count()
            page.select_option("#filter-status", "running")
            page.click("#apply")
            page.wait_for_url("**/?status=running**")
            assert ["r-1"] == page.locator("tr.run").evaluate_all(
                "rows => rows.map(r => r.dataset.runId)"
            )
            page.click("tr.run a")
            page.wait_for_selector("#cancel")
            assert "running" == page.text_content("#status")
            page.click("#cancel")
            page.wait_for_function(
                "document.querySelector('#status')?.textContent === 'cancelled'", timeout=30_000
            )
            assert "cancelled" == store.get_run("r-1").status  # type: ignore[union-attr]
            release.set()  # the cancelled attempt's thread ends, and the worker can stop
            assert [] == tab.elsewhere
            tab.close()
    finally:
        release.set()


def test_send_an_event_to_a_waiting_run_and_see_it_finish(store: Store) -> None:
    @workflow
    def expense() -> None:
        wait_for_event("approved", returns="decision")

        @step
        def pay(ctx: Any) -> Any:
            return ok({"paid_by": ctx["decision"]["by"]})

    start_workflow("expense", run_id="exp-17", store=store)
    with (
        serving(store, park_after=0, poll=0.02),
        running_dashboard(store) as board,
        chromium() as browser,
    ):
        wait_for(lambda: store.get_run("exp-17").status == "waiting", "the run to park")  # type: ignore[union-attr]
        tab = _open(browser, board)
        page = tab.page
        page.goto(board.url + "/runs/exp-17")
        assert "approved" == page.input_value("#event-name")
        page.fill("#event-data", '{"by": "ana"}')
        page.click("#send-event button")
        page.wait_for_function(
            "document.querySelector('#status')?.textContent === 'completed'", timeout=30_000
        )
        assert [] == tab.elsewhere
        tab.close()
    assert "ana" == store.get_run("exp-17").output["paid_by"]  # type: ignore[union-attr]


def test_the_viewer_page_opens_from_a_file_with_no_network(store: Store, tmp_path: Any) -> None:
    """`runs view`'s file, opened from disk with every other load refused: it loads nothing,
    and its graph and every attempt are there."""
    from flowdsl.views import run_page

    @workflow
    def batch() -> None:
        @step
        def list_items(ctx: Any) -> Any:
            return ok({"items": [1, 2, 3]})

        with foreach("items"):

            @step
            def work(ctx: Any) -> Any:
                return error("odd") if ctx.item == 3 else ok({"double": ctx.item * 2})

    run = run_workflow("batch", run_id="b-1", store=store)
    page = tmp_path / "b-1.html"
    page.write_text(run_page(store, "b-1"))
    with chromium() as browser:
        tab = Offline(browser, (page.as_uri(),))
        tab.page.goto(page.as_uri())
        assert tab.page.locator("#graph svg").count() == 1
        assert tab.page.locator("#timeline .attempt").count() == len(run.steps)
        assert "failed" == tab.page.get_attribute("#run-header", "data-status")
        assert [] == tab.elsewhere
        tab.close()
