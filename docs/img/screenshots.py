"""Make the README's screenshots: the dashboard's runs list, and a run's viewer page.

Runs a few of the examples' workflows on a fresh SQLite store, serves the
dashboard over it, and photographs it with headless Chromium (Debian's
package, through Playwright). Run it from the project's root:

    .venv/bin/python docs/img/screenshots.py

It writes docs/img/dashboard.png and docs/img/run-viewer.png.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples"), str(ROOT)]

from dashboard import running_dashboard  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from polling import serving, wait_for  # noqa: E402

from flowdsl import (  # noqa: E402
    Retry,
    SQLiteStore,
    error,
    foreach,
    ok,
    parallel,
    run_workflow,
    start_workflow,
    step,
    wait_for_event,
    workflow,
)

CHROMIUM = os.environ.get("FLOWDSL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def define() -> None:
    @workflow
    def import_files() -> None:
        @step
        def list_files(ctx: object) -> object:
            return ok({"files": [f"part-{i}.csv" for i in range(6)]})

        with foreach("files", max_concurrency=3, on_error="complete_all", name="loaded"):

            @step(retry=Retry(max_attempts=2, base=0.01))
            def load(ctx: object) -> object:
                index = ctx.index  # type: ignore[attr-defined]
                if index == 4:
                    return error(f"{ctx.item}: bad header")  # type: ignore[attr-defined]
                if index == 2 and ctx.attempt == 1:  # type: ignore[attr-defined]
                    raise ConnectionError("storage timed out")
                return ok({"rows": 100 + index})

        with parallel():

            @step
            def summarise(ctx: object) -> object:
                return ok({"summary": len(ctx["loaded"])})  # type: ignore[index]

            @step
            def notify(ctx: object) -> object:
                return ok({"notified": True})

    @workflow
    def approval() -> None:
        @step
        def submit(ctx: object) -> object:
            return ok({"amount": 120})

        wait_for_event("approved", returns="decision")

        @step
        def pay(ctx: object) -> object:
            return ok()


def main() -> None:
    define()
    out = ROOT / "docs" / "img"
    with tempfile.TemporaryDirectory() as tmp, SQLiteStore(Path(tmp) / "runs.db") as store:
        for n in range(3):
            run_workflow("import_files", run_id=f"import-{n}", store=store)
        start_workflow("approval", run_id="expense-17", store=store)
        with serving(store, park_after=0, poll=0.02), running_dashboard(store) as board:
            wait_for(lambda: store.get_run("expense-17").status == "waiting", "the parked run")  # type: ignore[union-attr]
            with sync_playwright() as driver:
                browser = driver.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 640})
                page.goto(board.url + "/")
                page.screenshot(path=str(out / "dashboard.png"))
                page.set_viewport_size({"width": 1280, "height": 900})
                page.goto(board.url + "/runs/import-0")
                page.wait_for_timeout(300)  # the frame's height is set once it loaded
                page.screenshot(path=str(out / "run-viewer.png"), full_page=True)
                browser.close()
    print(f"wrote {out / 'dashboard.png'} and {out / 'run-viewer.png'}")


if __name__ == "__main__":
    main()
