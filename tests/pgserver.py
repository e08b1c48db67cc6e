"""A PostgreSQL server for the tests, found or started, and gone when they end.

`start` takes the first of these that works:

1. ``FLOWDSL_TEST_POSTGRES``, the URL (or key=value DSN) of a server to use
   as it is: the tests only make and drop schemas of their own in it.
2. A server answering on 127.0.0.1:5432 as user ``postgres`` without a
   password (trust auth): a throwaway database ``flowdsl_test_<random>`` is
   made on it and dropped (``WITH (FORCE)``) by `Server.stop`.
3. A private cluster made with this machine's PostgreSQL binaries (found by
   ``pg_config --bindir``, in ``/usr/lib/postgresql/*/bin`` or on the PATH) in
   a temporary folder, listening on a free port of 127.0.0.1 only (no Unix
   socket), trust auth. As root it runs as user ``postgres`` (or ``nobody``),
   since ``initdb`` refuses root. `Server.stop` stops it and removes the folder;
   it also dies with the thread that started it, should that process be killed.

``FLOWDSL_TEST_POSTGRES=private`` skips 1 and 2, to use (or test) the private
cluster on a machine that has a server. The test session shares one server
(`shared`, stopped by `stop_shared` when the session ends). Run as a script,
``python tests/pgserver.py`` prints the URL of a server and keeps it until
Ctrl-C; ``--check`` only checks that one can be had.
"""

from __future__ import annotations

import abc
import argparse
import atexit
import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

__all__ = [
    "ENV",
    "LOCAL_URL",
    "PRIVATE",
    "PrivateCluster",
    "Server",
    "ServerUnavailable",
    "find_bindir",
    "given",
    "private_cluster",
    "shared",
    "start",
    "stop_shared",
    "throwaway_database",
    "with_search_path",
]

ENV: Final = "FLOWDSL_TEST_POSTGRES"
PRIVATE: Final = "private"
"""The value of `ENV` that goes straight to a private cluster."""
LOCAL_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
"""Where a machine's own server answers, if it has one (trust auth)."""

_START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 30.0


class ServerUnavailable(Exception):
    """No PostgreSQL server could be had; the message says what was tried."""


class Server(abc.ABC):
    """A server the tests may use: `url` names a database of theirs on it."""

    url: str
    """``postgresql://user@host:port/database``."""
    how: str
    """Which of the ways in the module docstring gave it, for messages."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Give back what was made for the tests (idempotent)."""


def _connect(url: str, timeout: float = 3.0) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True, connect_timeout=max(1, round(timeout)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- 1. a server named by the environment ------------------------------------------------------


class _Given(Server):
    def __init__(self, url: str) -> None:
        self.url = url
        self.how = f"{ENV}={url}"

    def stop(self) -> None:
        pass  # not ours: only the kits' schemas were made on it, and they drop them


def _as_url(dsn: str) -> str:
    """`dsn` as a ``postgresql://`` URL (a key=value DSN is rewritten)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return dsn
    params = conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "")), safe="")
    password = params.pop("password", None)
    if password is not None:
        user += ":" + quote(str(password), safe="")
    host = str(params.pop("host", ""))
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = params.pop("port", None)
    netloc = (f"{user}@" if user else "") + host + (f":{port}" if port else "")
    database = quote(str(params.pop("dbname", "")), safe="")
    query = urlencode({k: str(v) for k, v in params.items()}, quote_via=quote)
    return urlunsplit(("postgresql", netloc, f"/{database}", query, ""))


def given(dsn: str) -> Server:
    """The server `dsn` names, once it answers ``select 1``."""
    url = _as_url(dsn)
    try:
        with _connect(url, timeout=10) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        raise ServerUnavailable(
            f"{ENV}={dsn!r} does not answer: {_first_line(exc)}; fix the URL, or unset {ENV}"
        ) from exc
    return _Given(url)


# -- 2. a throwaway database on the machine's server -------------------------------------------


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


class _ThrowawayDatabase(Server):
    def __init__(self, admin_url: str, database: str) -> None:
        self.admin_url = admin_url
        self.database = database
        self.url = _with_database(admin_url, database)
        self.how = f"database {database} on {admin_url}"
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        with _connect(self.admin_url) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )
        self._stopped = True


def throwaway_database(admin_url: str = LOCAL_URL) -> Server:
    """A new database ``flowdsl_test_<random>`` on the server at `admin_url` (dropped by stop)."""
    database = f"flowdsl_test_{secrets.token_hex(6)}"
    try:
        with _connect(admin_url) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            # As in the private cluster: the tests kill flowdsl's processes, never the
            # server, and a commit that waits for no disk flush keeps them fast.
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                    sql.Identifier(database)
                )
            )
    except psycopg.Error as exc:
        raise ServerUnavailable(
            f"no trust-auth server for user postgres at {admin_url}: {_first_line(exc)}"
        ) from exc
    return _ThrowawayDatabase(admin_url, database)


# -- 3. a private cluster ----------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


def find_bindir() -> Path | None:
    """The folder of this machine's ``initdb`` and ``postgres`` binaries, newest first."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(done.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def _cluster_user() -> pwd.struct_passwd | None:
    """Who runs the cluster: None for ourselves; as root, ``postgres`` or else ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerUnavailable(
        "initdb refuses to run as root, and there is neither a 'postgres' nor a 'nobody' user "
        "to run it as; create one, or run the tests as another user"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function: the child gets SIGQUIT (immediate shutdown) when we die (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    pr_set_pdeathsig, sigquit = 1, int(signal.SIGQUIT)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigquit)  # after the switch of user, which clears it

    return preexec


def _child_env() -> dict[str, str]:
    """Our environment without libpq's and the server's PG* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}


class PrivateCluster(Server):
    """A cluster of our own in `directory`, its postmaster our child `process`."""

    def __init__(self, directory: Path, process: subprocess.Popen[bytes], port: int) -> None:
        self.directory = directory
        self.process = process
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.how = f"a private cluster in {directory} on 127.0.0.1:{port}"

    @property
    def log(self) -> str:
        """The server's log so far."""
        try:
            return (self.directory / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: backends are ended
            try:
                self.process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


_PREFIX: Final = "flowdsl-pg-"
_OWNER: Final = "owner.pid"
"""The file in a cluster's folder naming the process that made it."""


def _sweep() -> None:
    """Remove the folders of clusters whose process was killed before it could (their
    postmaster died with it)."""
    for folder in Path(tempfile.gettempdir()).glob(_PREFIX + "*"):
        try:
            owner = int((folder / _OWNER).read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue  # being made right now, or not ours


def _initdb(bindir: Path, data: Path, user: pwd.struct_passwd | None) -> None:
    command = [
        str(bindir / "initdb"),
        *("-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"),
        "--no-sync",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=_child_env(),
        check=False,
        timeout=_START_TIMEOUT,
        **_as_user(user),
    )
    if done.returncode != 0:
        raise ServerUnavailable(
            f"{' '.join(command)} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
        )


def _as_user(user: pwd.struct_passwd | None) -> dict[str, object]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _postmaster(
    bindir: Path, data: Path, port: int, log: Path, user: pwd.struct_passwd | None
) -> subprocess.Popen[bytes]:
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",  # TCP on 127.0.0.1 only
        "max_connections": "300",
        "fsync": "off",  # a throwaway cluster: a crash of the machine may lose it
        "full_page_writes": "off",
        "synchronous_commit": "off",
    }
    command = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
    for name, value in settings.items():
        command += ["-c", f"{name}={value}"]
    with log.open("wb") as out:  # this attempt's log only
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it in order
            preexec_fn=_die_with_parent(),  # only a prctl call, safe with threads
            **_as_user(user),
        )


def _wait_ready(cluster: PrivateCluster, deadline: float) -> bool:
    """Whether the postmaster accepts connections before `deadline` (False: it exited)."""
    while time.monotonic() < deadline:
        if cluster.process.poll() is not None:
            return False
        try:
            with _connect(cluster.url, timeout=2) as conn:
                conn.execute("select 1")
            return True
        except psycopg.OperationalError:
            time.sleep(0.02)
    cluster.stop()
    raise ServerUnavailable(
        f"{cluster.how} did not accept connections within {_START_TIMEOUT:.0f} s; "
        f"its log:\n{cluster.log[-2000:]}"
    )


def private_cluster(bindir: Path | None = None) -> PrivateCluster:
    """A new cluster from the binaries in `bindir` (default: `find_bindir`), ready for use."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise ServerUnavailable(
            "no PostgreSQL binaries (initdb and postgres) in pg_config --bindir, "
            "/usr/lib/postgresql/*/bin or on the PATH; install PostgreSQL "
            "(as root, `make system-deps` does)"
        )
    user = _cluster_user()
    _sweep()
    directory = Path(tempfile.mkdtemp(prefix=_PREFIX))
    try:
        (directory / _OWNER).write_text(str(os.getpid()))
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
        data = directory / "data"
        _initdb(bindir, data, user)
        deadline = time.monotonic() + _START_TIMEOUT
        for _ in range(3):  # another process may take the free port before the postmaster
            port = _free_port()
            process = _postmaster(bindir, data, port, directory / "postgres.log", user)
            cluster = PrivateCluster(directory, process, port)
            if _wait_ready(cluster, deadline):
                return cluster
            if "could not bind" not in cluster.log:
                break
        raise ServerUnavailable(
            f"the postmaster of {cluster.how} exited ({process.returncode}); its log:\n"
            f"{cluster.log[-2000:]}"
        )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


# -- the choice, and the session's server ------------------------------------------------------


def start() -> Server:
    """The first server of the module docstring's three that can be had."""
    wanted = os.environ.get(ENV, "").strip()
    tried: list[str] = []
    if wanted and wanted != PRIVATE:
        return given(wanted)
    if wanted == PRIVATE:
        tried.append(f"{ENV}={PRIVATE}: skipped {ENV} and 127.0.0.1:5432")
    else:
        tried.append(f"{ENV} is not set")
        try:
            return throwaway_database()
        except ServerUnavailable as exc:
            tried.append(str(exc))
    try:
        return private_cluster()
    except ServerUnavailable as exc:
        tried.append(str(exc))
    raise ServerUnavailable(
        "no PostgreSQL server for the tests; tried: " + "; ".join(tried) + f". Set {ENV} to "
        "a server's URL, run one on 127.0.0.1:5432 (user postgres, trust auth), or install "
        "PostgreSQL"
    )


_shared: Server | ServerUnavailable | None = None
_shared_lock = threading.Lock()


def shared() -> Server:
    """The session's server, started by the first call (a failure is kept, not retried)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            try:
                _shared = start()
            except ServerUnavailable as exc:
                _shared = exc
            else:
                atexit.register(stop_shared)  # should the session end without stop_shared
        if isinstance(_shared, ServerUnavailable):
            raise _shared
        return _shared


def stop_shared() -> None:
    """Stop the session's server, if `shared` started one."""
    global _shared
    with _shared_lock:
        server, _shared = _shared, None
    if isinstance(server, Server):
        server.stop()


def with_search_path(url: str, schema: str) -> str:
    """`url` with ``options=-csearch_path=<schema>`` added to its query."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    option = f"-csearch_path={schema}"
    query["options"] = f"{query['options']} {option}" if query.get("options") else option
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that a server can be had, then stop it"
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    try:
        server = start()
    except ServerUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        took = time.monotonic() - began
        with _connect(server.url) as conn:
            conn.execute("select 1")
        if args.check:
            print(f"ok: {server.how} ({took:.2f} s)")
            return 0
        print(server.url, flush=True)
        print(f"({server.how}, ready in {took:.2f} s; Ctrl-C stops it)", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with &
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
