"""The dashboard's Starlette application: pages, the JSON API, and what guards them.

Reading the store happens in a worker thread (`asyncio.to_thread`): a store's
reads are synchronous, and the server's event loop must stay free for other
requests. Live updates are polling: each page asks the JSON API again every
second and redraws what changed. That works the same on every store, holds no
connection open per browser tab, and a second of latency is what a person
watching runs needs.

Guard: the server binds to 127.0.0.1 unless told otherwise. Every request must
carry a ``Host`` the server answers to (so a rebinding DNS name cannot reach
it), and every request that changes anything must carry the token printed at
start (the pages carry it) in the ``X-Flowdsl-Token`` header, and an
``Origin``, when the browser sends one, of the server itself: another site
open in the same browser cannot drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from .._sending import asend_event
from ..cli._output import jsonable, run_record, run_summary
from ..errors import FlowError, RunNotFound, UsageError
from ..stores import open_store
from ._pages import list_page, run_page

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from ..stores import Store

__all__ = ["DEFAULT_PORT", "create_app", "serve"]

DEFAULT_PORT: Final = 8321
PAGE_SIZE: Final = 50
_STATUSES: Final = ("queued", "running", "waiting", "completed", "failed", "cancelled")


def _problem(status: int, message: str) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


class _Guard:
    """Who may talk to the server: the right Host always; the token and Origin to change."""

    def __init__(self, token: str, host: str, port: int) -> None:
        self.token = token
        names = {host}
        if host in ("127.0.0.1", "localhost", "::1"):
            names |= {"127.0.0.1", "localhost", "[::1]"}
        self.hosts = {f"{name}:{port}" for name in names}
        if port == 80:
            self.hosts |= names

    def refuse(self, request: Request, *, changes: bool) -> Response | None:
        host = request.headers.get("host", "")
        if host not in self.hosts:
            return _problem(421, f"this server does not answer to host {host!r}")
        if not changes:
            return None
        given = request.headers.get("x-flowdsl-token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return _problem(403, "missing or wrong X-Flowdsl-Token (the server printed it)")
        origin = request.headers.get("origin")
        if origin is not None and origin.removeprefix("http://") not in self.hosts:
            return _problem(403, f"requests from {origin!r} may not change runs")
        return None


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        msg = f"since={text!r} is not an ISO date and time, e.g. 2026-12-01T09:00+00:00"
        raise UsageError(msg) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a browser's datetime-local field: the viewer's own zone
    return when


def _before(text: str | None) -> tuple[float, str] | None:
    """The paging cursor ``STARTED|RUN_ID`` (the last run of the previous page)."""
    if not text:
        return None
    started, bar, run_id = text.partition("|")
    try:
        return (float(started), run_id) if bar else None
    except ValueError:
        return None


def cursor_of(started: float, run_id: str) -> str:
    return f"{started!r}|{run_id}"


class _Dashboard:
    """The application's state: its store, its guard, the runs it resumes itself."""

    def __init__(self, store: Store, guard: _Guard, owned: bool) -> None:
        self.store = store
        self.guard = guard
        self.owned = owned
        self.resuming: set[asyncio.Task[Any]] = set()

    # -- reading ---------------------------------------------------------------------------

    async def runs(self, query: Mapping[str, str]) -> tuple[list[Any], dict[str, str], str | None]:
        """The page of runs the query asks for, the filters it used, the next page's cursor."""
        status = query.get("status") or None
        if status is not None and status not in _STATUSES:
            msg = f"status={status!r} is not a run status; one of {', '.join(_STATUSES)}"
            raise UsageError(msg)
        workflow = query.get("workflow") or None
        since = _since(query.get("since"))
        before = _before(query.get("before"))
        found = await asyncio.to_thread(
            self.store.list_runs,
            status,  # type: ignore[arg-type]
            workflow,
            since,
            PAGE_SIZE + 1,
            before=before,
        )
        filters = {k: v for k, v in (("status", status), ("workflow", workflow)) if v}
        if query.get("since"):
            filters["since"] = query["since"]
        more = None
        if len(found) > PAGE_SIZE:
            found = found[:PAGE_SIZE]
            more = cursor_of(found[-1].started, found[-1].run_id)
        return found, filters, more

    async def run(self, run_id: str) -> Any:
        run = await asyncio.to_thread(self.store.get_run, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r} in this store")
        return run

    # -- pages -----------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        from starlette.responses import HTMLResponse

        refused = self.guard.refuse(request, changes=False)
        if refused is not None:
            return refused
        try:
            runs, filters, more = await self.runs(request.query_params)
        except UsageError as exc:
            return _problem(400, str(exc))
        older = None if more is None else "/?" + urlencode({**filters, "before": more})
        return HTMLResponse(list_page(runs, filters, older, self.guard.token))

    async def run_page(self, request: Request) -> Response:
        from starlette.responses import HTMLResponse

        from ..views import run_page as viewer_page

        refused = self.guard.refuse(request, changes=False)
        if refused is not None:
            return refused
        run_id = request.path_params["run_id"]
        try:
            run = await self.run(run_id)
            viewer = await asyncio.to_thread(viewer_page, self.store, run_id, link=run_url)
            definition = await asyncio.to_thread(self.store.get_definition, run_id)
            final = run.status == "cancelled" and await self.store.cancel_requested(run_id)
        except RunNotFound as exc:
            return _problem(404, str(exc))
        steps = () if definition is None else top_steps(definition.shape)
        return HTMLResponse(run_page(run, steps, viewer, self.guard.token, resumable=not final))

    # -- the JSON API ----------------------------------------------------------------------

    async def api_runs(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        refused = self.guard.refuse(request, changes=False)
        if refused is not None:
            return refused
        try:
            runs, _, more = await self.runs(request.query_params)
        except UsageError as exc:
            return _problem(400, str(exc))
        return JSONResponse({"runs": [jsonable(run_summary(run)) for run in runs], "next": more})

    async def api_run(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        refused = self.guard.refuse(request, changes=False)
        if refused is not None:
            return refused
        try:
            run = await self.run(request.path_params["run_id"])
        except RunNotFound as exc:
            return _problem(404, str(exc))
        return JSONResponse(jsonable(run_record(run)))

    async def act(self, request: Request) -> Response:
        """``POST /api/runs/{id}/{action}``: cancel, resume, retry, events."""
        from starlette.responses import JSONResponse

        refused = self.guard.refuse(request, changes=True)
        if refused is not None:
            return refused
        run_id = request.path_params["run_id"]
        action = request.path_params["action"]
        import flowdsl  # the package is whole by the time a request comes

        try:
            body = await _body(request)
            if action == "cancel":
                await flowdsl.acancel_run(run_id, self.store)
                return JSONResponse({"run_id": run_id, "cancelled": True})
            if action == "retry":
                new_id = await flowdsl.aretry_run(
                    run_id, self.store, from_step=body.get("from_step") or None
                )
                return JSONResponse({"run_id": new_id, "retry_of": run_id})
            if action == "events":
                event = body.get("event")
                if not isinstance(event, str) or not event:
                    raise UsageError('send an event as {"event": NAME, "data": ...}')
                await asend_event(run_id, event, body.get("data"), store=self.store)
                return JSONResponse({"run_id": run_id, "sent": event})
            if action == "resume":
                await self.resume(run_id)
                return JSONResponse({"run_id": run_id, "resuming": True})
        except RunNotFound as exc:
            return _problem(404, str(exc))
        except FlowError as exc:
            return _problem(409 if not isinstance(exc, UsageError) else 400, str(exc))
        return _problem(404, f"no action {action!r}: cancel, resume, retry or events")

    async def resume(self, run_id: str) -> None:
        """Resume `run_id` in this process, in the background (its workflow must be imported)."""
        from .._define._registry import get_workflow
        from .._running import arun_workflow

        run = await self.run(run_id)
        if run.status in ("completed", "failed"):
            raise UsageError(f"run {run_id!r} has {run.status}: there is nothing to resume")
        if run.status == "cancelled" and await self.store.cancel_requested(run_id):
            msg = f"run {run_id!r} was cancelled for good (cancel_run): retry it instead"
            raise UsageError(msg)
        get_workflow(run.workflow)  # WorkflowNotFound names how to fix it
        task = asyncio.create_task(arun_workflow(run.workflow, run_id=run_id, store=self.store))
        self.resuming.add(task)
        task.add_done_callback(self.resuming.discard)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for task in list(self.resuming):
                task.cancel()
            await asyncio.gather(*self.resuming, return_exceptions=True)
            if self.owned:
                self.store.close()


async def _body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        data = await request.json()
        if not isinstance(data, dict):
            raise UsageError("the request body must be a JSON object")
        return data
    return {}


def top_steps(shape: tuple[str, ...]) -> tuple[str, ...]:
    """The top-level steps of a definition's shape (``step NAME -> KEY`` lines): retry points."""
    found = []
    for line in shape:
        kind, _, rest = line.partition(" ")
        name = rest.split(" -> ")[0]
        if kind == "step" and "/" not in name:
            found.append(name)
    return tuple(found)


def create_app(
    store: object,
    *,
    token: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> Starlette:
    """The dashboard over `store` (a `Store` or a store URL) as a Starlette application.

    `token` guards every request that changes a run (a random one by default:
    read it from ``app.state.token``); `host` and `port` are where it is
    served, which requests must name in their ``Host`` header.
    """
    from starlette.applications import Starlette
    from starlette.routing import Route

    opened, owned = open_store(store)
    guard = _Guard(token or secrets.token_urlsafe(24), host, port)
    board = _Dashboard(opened, guard, owned)
    app = Starlette(
        routes=[
            Route("/", board.index),
            Route("/runs/{run_id:path}", board.run_page),
            Route("/api/runs", board.api_runs),
            Route("/api/runs/{run_id:path}/{action}", board.act, methods=["POST"]),
            Route("/api/runs/{run_id:path}", board.api_run),
        ],
        lifespan=board.lifespan,
    )
    app.state.token = guard.token
    app.state.store = opened
    return app


def run_url(run_id: str) -> str:
    """The path of a run's page (its id percent-encoded whole: ``/`` and ``#`` included)."""
    return "/runs/" + quote(run_id, safe="")


def serve(
    store: object,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the dashboard until interrupted (what ``flowdsl ui`` runs)."""
    import uvicorn

    app = create_app(store, token=token, host=host, port=port)
    shown = f"[{host}]" if ":" in host else host
    announce(f"flowdsl dashboard on http://{shown}:{port}/  (token {app.state.token})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
