"""Who owns a run: the owner token of this process, and whether another owner is alive.

A token is ``host|pidns|pid|start``: the host name, the PID namespace, the
pid, and the process's start time (so a reused pid is not mistaken for it).
An owner can be known dead only on this host, in this PID namespace, with a
readable /proc; anything else is left to its lease (`_protocol`).
"""

from __future__ import annotations

import os
import socket
import sys
import threading

__all__ = [
    "claimable",
    "describe_owner",
    "executing",
    "owner_alive",
    "owner_token",
    "stopped_executing",
]


_HOST = socket.gethostname()
_TOKEN: tuple[int, str] | None = None


def _pid_namespace() -> str:
    """This process's PID namespace (``pid:[4026531836]``), or "" when it cannot be read."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[bytes, bytes] | bool | None:
    """(state, start time in clock ticks) from /proc; False when there is no such process,
    None when it cannot be told (no /proc, or an entry that cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[0], fields[19]
    except (ValueError, IndexError):
        return None


def owner_token() -> str:
    """``host|pidns|pid|start``: names this process, even after its pid is reused."""
    global _TOKEN
    pid = os.getpid()
    if _TOKEN is None or _TOKEN[0] != pid:
        stat = _proc_stat(pid) if sys.platform == "linux" else None
        start = stat[1].decode() if isinstance(stat, tuple) else ""
        _TOKEN = (pid, f"{_HOST}|{_pid_namespace()}|{pid}|{start}")
    return _TOKEN[1]


def describe_owner(owner: str) -> str:
    """``process 7 on host-a`` for an owner token (older tokens had no namespace)."""
    parts = owner.split("|")
    if len(parts) == 4:
        return f"process {parts[2]} on {parts[0]}"
    if len(parts) == 3:
        return f"process {parts[1]} on {parts[0]}"
    return owner


def owner_alive(owner: str) -> bool | None:
    """Whether the process `owner` names is alive; None when that cannot be known here.

    Known only for a process on this host and in this PID namespace, whose
    /proc entry can be read: then True (alive) or False (gone, or a zombie, or
    the pid now names another process). Anything else is None, and only the
    owner's lease tells whether the run can be taken over.
    """
    parts = owner.split("|")
    if len(parts) != 4:
        return None
    host, namespace, pid_text, start = parts
    if host != _HOST or not namespace or namespace != _pid_namespace():
        return None
    try:
        pid = int(pid_text)
    except ValueError:
        return None
    if sys.platform != "linux":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return None
        return True
    stat = _proc_stat(pid)
    if stat is False:
        return False
    if not isinstance(stat, tuple):
        return None
    if stat[0] in (b"Z", b"X"):
        return False
    return not start or stat[1].decode() == start


# Runs executing in this process, by (database, run_id), whatever the store: a run
# this process owns but no longer executes (its call raised) can be claimed again.
_EXECUTING: set[tuple[str, str]] = set()
_EXECUTING_LOCK = threading.Lock()


def executing(database: str, run_id: str) -> None:
    """Note that this process executes `run_id` of `database` now."""
    with _EXECUTING_LOCK:
        _EXECUTING.add((database, run_id))


def stopped_executing(database: str, run_id: str) -> None:
    with _EXECUTING_LOCK:
        _EXECUTING.discard((database, run_id))


def claimable(
    database: str, run_id: str, owner: str | None, expires: float | None, now: float
) -> bool:
    """Whether a run row may be claimed: no owner, this process not executing it any more,
    its lease expired by `now` (the store's clock), or its owner known to be gone."""
    if owner is None:
        return True
    if owner == owner_token():
        with _EXECUTING_LOCK:
            return (database, run_id) not in _EXECUTING
    if expires is None or expires < now:
        return True
    return owner_alive(owner) is False
