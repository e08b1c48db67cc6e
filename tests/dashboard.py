"""The dashboard served for a test: uvicorn in a thread on a free 127.0.0.1 port.

`running_dashboard` starts `flowdsl.ui.create_app` over a store and stops it
after the block (the server's thread never outlives it); `call` is a small
HTTP client (urllib) that returns the status and the decoded JSON or text.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import uvicorn
from polling import wait_for

from flowdsl.ui import create_app

__all__ = ["TOKEN", "Answer", "Dashboard", "call", "running_dashboard"]

TOKEN = "test-token-0123456789"


class Dashboard(NamedTuple):
    url: str
    port: int


class Answer(NamedTuple):
    status: int
    body: Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_dashboard(store: object) -> Iterator[Dashboard]:
    port = _free_port()
    app = create_app(store, token=TOKEN, port=port)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    failures: list[BaseException] = []

    def main() -> None:
        try:
            server.run()
        except BaseException as exc:  # raised in the test, not lost in the thread
            failures.append(exc)

    thread = threading.Thread(target=main, name="test dashboard")
    thread.start()
    try:
        wait_for(lambda: server.started or failures or not thread.is_alive(), "the dashboard")
        if failures:
            raise failures[0]
        yield Dashboard(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive(), "the dashboard did not stop"
    if failures:
        raise failures[0]


def call(
    board: Dashboard,
    path: str,
    *,
    data: object = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> Answer:
    """One request to the dashboard; a POST when `data` is given (as JSON)."""
    sent = {} if headers is None else dict(headers)
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        sent["Content-Type"] = "application/json"
        if token is not None:
            sent["X-Flowdsl-Token"] = token
    request = urllib.request.Request(board.url + path, data=body, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, kind = response.status, response.read(), response.headers["content-type"]
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers["content-type"]
    text = raw.decode()
    return Answer(status, json.loads(text) if kind.startswith("application/json") else text)
