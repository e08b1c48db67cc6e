"""The dashboard over HTTP: pages, the JSON API, its guard and its actions, on both stores.

A real server (uvicorn in a thread, tests/dashboard.py) over a real store;
runs are made by the API as a user makes them (run_workflow, start_workflow
and a worker). The browser tests are in tests/test_browser.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from dashboard import TOKEN, call, running_dashboard
from polling import serving, wait_for
from stores import StoreKit

from flowdsl import (
    Store,
    arun_workflow,
    call_workflow,
    cancel_run,
    error,
    ok,
    run_workflow,
    start_workflow,
    step,
    wait_for_event,
    workflow,
)

pytestmark = pytest.mark.usefixtures("flowdsl_registry")


@pytest.fixture
def store(store_kit: StoreKit) -> Iterator[Store]:
    with store_kit.open() as opened:
        yield opened


def _shop() -> None:
    @workflow
    def pay() -> None:
        @step
        def charge(ctx: Any) -> Any:
            return ok({"charged": ctx["amount"]}) if ctx["amount"] > 0 else error("declined")

    @workflow
    def order() -> None:
        @step
        def total(ctx: Any) -> Any:
            return ok({"amount": ctx["amount"]})

        call_workflow("pay", input=lambda ctx: {"amount": ctx["amount"]}, returns="paid")


def test_the_runs_list_shows_every_run_newest_first_and_filters(store: Store) -> None:
    _shop()
    run_workflow("order", {"amount": 5}, run_id="o-1", store=store)
    run_workflow("order", {"amount": -1}, run_id="o-2", store=store)
    with running_dashboard(store) as board:
        page = call(board, "/")
        assert 200 == page.status
        rows = [r["run_id"] for r in call(board, "/api/runs").body["runs"]]
        failed = call(board, "/api/runs?status=failed").body["runs"]
        orders = call(board, "/api/runs?workflow=order").body["runs"]
        bad = call(board, "/api/runs?status=nope")
    assert ["o-2/pay#1", "o-2", "o-1/pay#1", "o-1"] == rows, "newest first"
    for run_id in rows:
        assert f'data-run-id="{run_id}"' in page.body
    assert {"o-2", "o-2/pay#1"} == {r["run_id"] for r in failed}
    assert ["o-2", "o-1"] == [r["run_id"] for r in orders]
    assert next(r for r in failed if r["run_id"] == "o-2/pay#1")["parent_id"] == "o-2"
    assert 400 == bad.status
    assert bad.body["error"].startswith("status='nope' is not a run status")
    assert f'<meta name="flowdsl-token" content="{TOKEN}">' in page.body


def test_pages_of_runs_hold_each_run_once(store: Store) -> None:
    @workflow
    def tick() -> None:
        step(lambda ctx: ok(), name="t")

    made = [f"t-{i:03}" for i in range(57)]
    for run_id in made:
        run_workflow("tick", run_id=run_id, store=store)
    seen: list[str] = []
    with running_dashboard(store) as board:
        path = "/api/runs"
        while True:
            page = call(board, path).body
            seen += [r["run_id"] for r in page["runs"]]
            if page["next"] is None:
                break
            path = "/api/runs?before=" + quote(page["next"])
        html = call(board, "/").body
    assert sorted(made) == sorted(seen)
    assert len(seen) == len(set(seen))
    assert 'id=older href="/?before=' in html, "the first page links to older runs"


def test_a_runs_page_and_record_are_found_by_their_encoded_id(store: Store) -> None:
    _shop()
    run_workflow("order", {"amount": 5}, run_id="o-1", store=store)
    with running_dashboard(store) as board:
        page = call(board, "/runs/" + quote("o-1/pay#1", safe=""))
        record = call(board, "/api/runs/" + quote("o-1/pay#1", safe=""))
        missing = call(board, "/runs/nope")
    assert 200 == page.status
    assert "o-1/pay#1" in page.body
    assert ("completed", "o-1", 5) == (
        record.body["status"],
        record.body["parent_id"],
        record.body["output"]["charged"],
    )
    assert 404 == missing.status


def test_values_from_the_store_are_escaped(store: Store) -> None:
    @workflow("<b>bold</b>")
    def bold() -> None:
        step(lambda ctx: error("<script>alert(1)</script>"), name="s")

    run_workflow("<b>bold</b>", run_id="<script>x</script>", store=store)
    with running_dashboard(store) as board:
        listed = call(board, "/").body
        page = call(board, "/runs/" + quote("<script>x</script>", safe="")).body
    for html in (listed, page):
        assert "<script>x</script>" not in html
        assert "<b>bold</b>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page


def test_a_run_whose_output_is_not_finite_is_served_as_strict_json(store: Store) -> None:
    """NaN and infinities in a run's output: its record is JSON a browser parses (was a 500)."""

    @workflow
    def odd() -> None:
        step(lambda ctx: ok({"ratio": float("nan"), "top": float("-inf")}), name="measure")

    run_workflow("odd", run_id="n-1", store=store)
    with running_dashboard(store) as board:
        record = call(board, "/api/runs/n-1")
        listed = call(board, "/api/runs")
    assert (200, 200) == (record.status, listed.status)
    assert {"ratio": "nan", "top": "-inf"} == record.body["output"]


def test_the_guard_refuses_other_hosts_tokens_and_origins(store: Store) -> None:
    @workflow
    def waits() -> None:
        wait_for_event("go")

    start_workflow("waits", run_id="w-1", store=store)
    with running_dashboard(store) as board:
        here = f"127.0.0.1:{board.port}"
        rebound = call(board, "/", headers={"Host": f"evil.example:{board.port}"})
        no_token = call(board, "/api/runs/w-1/events", data={"event": "go"}, token=None)
        wrong = call(board, "/api/runs/w-1/events", data={"event": "go"}, token="guess")
        other_site = call(
            board,
            "/api/runs/w-1/events",
            data={"event": "go"},
            headers={"Origin": "http://evil.example"},
        )
        same_site = call(
            board,
            "/api/runs/w-1/events",
            data={"event": "go"},
            headers={"Origin": f"http://{here}"},
        )
    assert 421 == rebound.status
    assert (403, 403, 403) == (no_token.status, wrong.status, other_site.status)
    assert "X-Flowdsl-Token" in no_token.body["error"]
    assert (200, "go") == (same_site.status, same_site.body["sent"])


def test_send_event_wakes_a_waiting_run(store: Store) -> None:
    @workflow
    def approval() -> None:
        wait_for_event("approved", returns="decision")

        @step
        def done(ctx: Any) -> Any:
            return ok({"by": ctx["decision"]["by"]})

    start_workflow("approval", run_id="a-1", store=store)
    with serving(store, park_after=0, poll=0.02), running_dashboard(store) as board:
        wait_for(lambda: store.get_run("a-1").status == "waiting", "the run to park")  # type: ignore[union-attr]
        sent = call(
            board, "/api/runs/a-1/events", data={"event": "approved", "data": {"by": "ana"}}
        )
        empty = call(board, "/api/runs/a-1/events", data={"data": 1})
        wait_for(lambda: store.get_run("a-1").status == "completed", "the run to finish")  # type: ignore[union-attr]
    assert 200 == sent.status
    assert 400 == empty.status
    assert "ana" == store.get_run("a-1").output["by"]  # type: ignore[union-attr]


def test_cancel_stops_a_running_run_and_retry_makes_a_new_one(store: Store) -> None:
    release = threading.Event()
    calls: list[str] = []

    @workflow
    def slow() -> None:
        @step
        def first(ctx: Any) -> Any:
            calls.append("first")
            return ok({"a": 1})

        @step
        async def hold(ctx: Any) -> Any:
            calls.append("hold")
            await asyncio.to_thread(release.wait, 60)  # the test releases it
            return ok()

    start_workflow("slow", run_id="s-1", store=store)
    with serving(store, park_after=0, poll=0.02), running_dashboard(store) as board:
        wait_for(lambda: "hold" in calls, "the run to reach hold")
        cancelled = call(board, "/api/runs/s-1/cancel", data={})
        wait_for(lambda: store.get_run("s-1").status == "cancelled", "the run to stop")  # type: ignore[union-attr]
        again = call(board, "/api/runs/s-1/cancel", data={})
        release.set()
        retried = call(board, "/api/runs/s-1/retry", data={"from_step": "hold"})
        new_id = retried.body["run_id"]
        wait_for(lambda: store.get_run(new_id).status == "completed", "the retry to finish")  # type: ignore[union-attr]
        unknown = call(board, "/api/runs/nope/cancel", data={})
    assert 200 == cancelled.status
    assert 400 == again.status, "a finished run cannot be cancelled"
    assert (200, "s-1") == (retried.status, retried.body["retry_of"])
    assert new_id != "s-1"
    assert ["first", "hold", "hold"] == calls, "the retry reused first's journaled outcome"
    assert 404 == unknown.status


def test_resume_runs_an_interrupted_run_here_and_refuses_one_cancelled_for_good(
    store: Store,
) -> None:
    """Resume continues a run its caller interrupted, in the dashboard's process; a run
    stopped by cancel_run is final: resume says to retry it."""
    release = threading.Event()
    reached: dict[str, asyncio.Event] = {}

    @workflow
    def paused() -> None:
        @step
        async def hold(ctx: Any) -> Any:
            if ctx.run_id in reached:
                reached[ctx.run_id].set()
            await asyncio.to_thread(release.wait, 60)  # the test releases it
            return ok({"done": True})

    async def interrupt() -> None:
        reached["p-1"] = asyncio.Event()
        task = asyncio.ensure_future(arun_workflow("paused", run_id="p-1", store=store))
        await reached["p-1"].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()  # the cancelled attempt's thread ends too

    asyncio.run(interrupt())
    assert "cancelled" == store.get_run("p-1").status  # type: ignore[union-attr]
    start_workflow("paused", run_id="p-2", store=store)
    cancel_run("p-2", store)
    with running_dashboard(store) as board:
        page = call(board, "/runs/p-1").body
        resumed = call(board, "/api/runs/p-1/resume", data={})
        wait_for(lambda: store.get_run("p-1").status == "completed", "the resumed run")  # type: ignore[union-attr]
        done = call(board, "/api/runs/p-1/resume", data={})
        final_page = call(board, "/runs/p-2").body
        final = call(board, "/api/runs/p-2/resume", data={})
    assert "id=resume" in page
    assert 200 == resumed.status
    assert 400 == done.status
    assert "id=resume" not in final_page
    assert (400, True) == (final.status, "retry it instead" in final.body["error"])


def test_flowdsl_ui_refuses_a_store_that_is_not_there(tmp_path: Any) -> None:
    """Exit 2 and a message naming the file; no empty store is made."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import flowdsl

    missing = tmp_path / "nowhere.db"
    env = {**os.environ, "PYTHONPATH": str(Path(flowdsl.__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "flowdsl", "ui", "--store", str(missing)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (2, False) == (done.returncode, missing.exists())
    assert "nowhere.db" in done.stderr
