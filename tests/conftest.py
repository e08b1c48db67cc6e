"""Fixtures shared by the test modules: a Dask cluster, and the stores of every kind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
from hypothesis import settings
from stores import KITS, KitUnavailable, StoreKit

from flowdsl import Store

# Hypothesis's per-example deadline times examples, and a loaded CI machine makes it
# fail at random; speed is measured in benchmarks/, never in a unit test.
settings.register_profile("flowdsl", deadline=None)
settings.load_profile("flowdsl")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the PostgreSQL server the first `stores.PostgresKit` found or started."""
    pgserver.stop_shared()


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """A real Dask cluster: 2 worker processes, no dashboard, started once per session.

    Started lazily by the first test that asks for it. Its workers are spawned
    processes that re-import the main module: a script doing this needs the
    ``if __name__ == "__main__":`` guard (pytest's own entry point has one).
    ``allowed_failures=0`` makes a worker death fail the task at once, as
    docs/executors.md recommends, so flowdsl's retry policy decides what
    happens next. The scheduler's HTTP endpoint takes a free localhost port,
    not 8787, which another cluster on the machine may hold.
    """
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"allowed_failures": 0, "dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dask_client(dask_cluster: Any) -> Iterator[Any]:
    """A synchronous client of `dask_cluster` (never the default client)."""
    from distributed import Client

    with Client(dask_cluster, set_as_default=False) as client:
        yield client


def _kit(kind: str, tmp_path: Path) -> Iterator[StoreKit]:
    try:
        kit = KITS[kind](tmp_path)
    except KitUnavailable as exc:
        if os.environ.get("CI"):  # CI runs every kind: a missing server is an error there
            pytest.fail(f"the {kind} store kit: {exc}", pytrace=False)
        pytest.skip(f"the {kind} store kit: {exc}")
    try:
        yield kit
    finally:
        kit.close()


@pytest.fixture(params=list(KITS), ids=list(KITS))
def store_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    """A fresh database of each kind of store in `stores.KITS` (the test runs once per kind).

    Whatever the test left open through the kit (stores, write locks) is
    closed after it. A kind that cannot run here (`stores.KitUnavailable`: no
    PostgreSQL server) is skipped, and an error in CI (``CI`` set).
    """
    yield from _kit(request.param, tmp_path)


@pytest.fixture
def pg_kit(tmp_path: Path) -> Iterator[StoreKit]:
    """The PostgreSQL kit alone, for the tests of what only `PostgresStore` does."""
    yield from _kit("postgresql", tmp_path)


@pytest.fixture
def store(store_kit: StoreKit) -> Store:
    """A store opened on `store_kit`'s database with default options.

    The kit closes it after the test, once it gave back any write lock the
    test still holds (closing first would wait for that lock).
    """
    return store_kit.open()
