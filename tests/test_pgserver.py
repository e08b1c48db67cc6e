"""tests/pgserver.py: the PostgreSQL servers the store tests run on."""

from __future__ import annotations

import os
from pathlib import Path

import pgserver
import psycopg
import pytest

needs_binaries = pytest.mark.skipif(
    pgserver.find_bindir() is None and not os.environ.get("CI"),
    reason="no PostgreSQL binaries (make system-deps installs them where it can; CI always runs this)",
)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@needs_binaries
def test_a_private_cluster_serves_on_localhost_and_leaves_nothing_behind() -> None:
    """It answers ``select 1`` on 127.0.0.1; stop ends its process and removes its folder."""
    cluster = pgserver.private_cluster()
    try:
        pid, directory = cluster.process.pid, cluster.directory
        assert cluster.url.startswith("postgresql://postgres@127.0.0.1:")
        with psycopg.connect(cluster.url) as conn:
            assert (1,) == conn.execute("select 1").fetchone()
            assert ("127.0.0.1", "") == (
                conn.execute("show listen_addresses").fetchone()[0],  # type: ignore[index]
                conn.execute("show unix_socket_directories").fetchone()[0],  # type: ignore[index]
            )
        uid = Path(f"/proc/{pid}").stat().st_uid
        assert 0 != uid  # never root: initdb and postgres refuse it
    finally:
        cluster.stop()
    assert not directory.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _answers(cluster.url)
    cluster.stop()  # again: nothing left to do


@needs_binaries
def test_private_in_the_environment_skips_the_other_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``FLOWDSL_TEST_POSTGRES=private`` starts a private cluster even beside a local server."""
    monkeypatch.setenv(pgserver.ENV, pgserver.PRIVATE)
    server = pgserver.start()
    try:
        assert isinstance(server, pgserver.PrivateCluster)
    finally:
        server.stop()


@pytest.mark.skipif(
    not _answers(pgserver.LOCAL_URL), reason="no trust-auth server on 127.0.0.1:5432"
)
def test_a_throwaway_database_is_dropped_at_stop() -> None:
    """The local server gets a ``flowdsl_test_*`` database of its own, gone after stop."""
    server = pgserver.throwaway_database()
    conn = psycopg.connect(server.url, autocommit=True)
    try:
        (name,) = conn.execute("select current_database()").fetchone()  # type: ignore[misc]
        assert str(name).startswith("flowdsl_test_")
        server.stop()  # WITH (FORCE): this session, still open, does not stop it
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
    finally:
        conn.close()
    with psycopg.connect(pgserver.LOCAL_URL) as admin:
        assert (
            None
            is admin.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        )
    server.stop()  # again: nothing left to do


def test_a_server_named_by_the_environment_that_does_not_answer_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The message names the variable and the server's answer."""
    monkeypatch.setenv(pgserver.ENV, "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(
        pgserver.ServerUnavailable, match=r"FLOWDSL_TEST_POSTGRES=.* does not answer"
    ):
        pgserver.start()


def test_the_search_path_is_added_to_the_url_as_a_libpq_option() -> None:
    """A key=value DSN becomes a URL; options already there are kept."""
    assert "postgresql://u@h:5/db?options=-csearch_path%3Dt_1" == pgserver.with_search_path(
        "postgresql://u@h:5/db", "t_1"
    )
    assert (
        "postgresql://u@h/db?sslmode=disable&options=-cwork_mem%3D8MB%20-csearch_path%3Dt_1"
        == pgserver.with_search_path(
            "postgresql://u@h/db?sslmode=disable&options=-cwork_mem%3D8MB", "t_1"
        )
    )
    assert "postgresql://u:p%40ss@h:5/db?sslmode=disable" == pgserver._as_url(
        "host=h port=5 user=u password=p@ss dbname=db sslmode=disable"
    )
