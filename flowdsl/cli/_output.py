"""What the commands print on stdout: JSON that never fails to print, and the runs table.

A run's output can hold anything a step returned: results, exceptions,
mappings with any keys, sets, values that contain themselves, reprs that
raise. `jsonable` turns all of it into plain JSON data and `print_json`
writes it whatever stdout can encode.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence

from .._engine._run import Run
from ..result import Err, Ok

__all__ = [
    "MAX_DEPTH",
    "format_duration",
    "jsonable",
    "print_json",
    "print_runs_table",
    "recorded_error",
    "run_record",
    "run_summary",
    "to_json_text",
]

# Deeper values are shown as a placeholder: printing never runs out of stack.
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


def format_duration(seconds: float) -> str:
    """``12.3 ms`` under ten seconds, ``12.34 s`` from there."""
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def recorded_error(exc: BaseException) -> tuple[str, str, str | None] | None:
    """(type, message, traceback) of an error read back from a store, else None."""
    kind, message = getattr(exc, "type", None), getattr(exc, "message", None)
    if isinstance(kind, str) and isinstance(message, str):
        trace = getattr(exc, "traceback", None)
        return kind, message, trace if isinstance(trace, str) else None
    return None


def _exception_json(exc: BaseException) -> dict[str, object]:
    recorded = recorded_error(exc)
    if recorded is not None:
        return {"type": recorded[0], "message": recorded[1]}
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    return {"type": name, "message": str(exc)}


def _key(key: object, depth: int) -> str:
    return key if isinstance(key, str) else json.dumps(jsonable(key, _depth=depth))


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ (or one that recursed too deep) must not stop printing
        return f"<{type(value).__name__} object: repr() failed>"


def jsonable(value: object, *, _depth: int = 0) -> object:
    """`value` as plain JSON data: results, errors, mappings with any keys and sets included.

    ``Ok(v)`` -> ``{"ok": v}``, ``Err(e)`` -> ``{"error": e}``, an exception ->
    ``{"type", "message"}``, a mapping -> an object (keys that are not strings
    as their JSON text), a tuple or set -> a list; anything else JSON cannot
    hold -> its ``repr()``, a float that is not finite included (``"nan"``,
    ``"inf"``, ``"-inf"``: strict JSON has no such number). A container nested
    deeper than `MAX_DEPTH` levels (or one that contains itself) is cut there,
    shown as a placeholder string.
    """
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(float(value))
    if isinstance(value, int):
        return value if value.bit_length() < 10_000 else f"<int of {value.bit_length()} bits>"
    if _depth >= MAX_DEPTH:
        kind = "list" if isinstance(value, list) else "dict" if isinstance(value, dict) else ""
        kind = kind or type(value).__name__  # a context's frozen dict or list reads as one
        return f"<{kind} nested deeper than {MAX_DEPTH} levels: not shown>"
    inner = _depth + 1
    if isinstance(value, Mapping):
        return {_key(k, inner): jsonable(v, _depth=inner) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, _depth=inner) for v in value]
    if isinstance(value, Ok):
        return {"ok": jsonable(value.value, _depth=inner)}
    if isinstance(value, Err):
        return {"error": jsonable(value.error, _depth=inner)}
    if isinstance(value, BaseException):
        return _exception_json(value)
    if isinstance(value, set | frozenset):
        return [jsonable(v, _depth=inner) for v in sorted(value, key=_repr)]
    return _repr(value)


def to_json_text(value: object, *, indent: int | None = 2, ascii: bool = False) -> str:
    """`value` as JSON text (`jsonable`); lone surrogates are written as ``\\uXXXX`` escapes.

    Python strings can hold lone surrogates (from ``surrogateescape`` decoding,
    say), which no UTF-8 stream can carry: as escapes the text stays valid JSON
    that reads back to the same string.
    """
    text = json.dumps(jsonable(value), indent=indent, ensure_ascii=ascii, allow_nan=False)
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def print_json(value: object) -> None:
    """Print `value` as JSON on stdout; all non-ASCII escaped if stdout cannot encode it."""
    text = to_json_text(value) + "\n"
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:  # e.g. PYTHONIOENCODING=ascii: nothing was written yet
        sys.stdout.write(to_json_text(value, ascii=True) + "\n")
    sys.stdout.flush()


def run_summary(run: Run) -> dict[str, object]:
    """One line of ``runs list``: ``waiting`` is what a parked run waits for, else None;
    ``parent_id`` the run that started a child run, else None."""
    waiting = run.waiting
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status,
        "parent_id": run.parent_id,
        "failed_step": run.failed_step,
        "started": run.started,
        "duration": run.duration,
        "waiting": None
        if waiting is None
        else {"waits": list(waiting.waits), "events": list(waiting.events), "until": waiting.until},
    }


def _local_time(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def run_record(run: Run) -> dict[str, object]:
    """A `Run` as plain data, for ``--output run`` and ``runs show``."""
    return {
        **run_summary(run),
        "output": run.output,
        "error": run.error,
        "steps": [record._asdict() for record in run.steps],
        "compensations": [record._asdict() for record in run.compensations],
    }


def print_runs_table(runs: Sequence[Run]) -> None:
    """``runs list --format table``: every cell whole, run ids never cut or wrapped.

    Off a terminal (a pipe, a file) each run is one line as wide as it needs;
    on a terminal the table fits the width when it can, wrapping only the
    workflow, step and wait names, and is drawn wider than the terminal when
    even that cannot fit. When a listed run is a child run, a ``parent``
    column names the run that started it. When a listed run is parked, three
    more columns say what it waits for: its waits, their events, and until
    when (local time; empty when only an event wakes it).
    """
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    headers: tuple[str, ...] = ("run_id", "workflow", "status", "started", "duration")
    headers += ("failed_step",)
    rows: list[tuple[str, ...]] = [
        (
            run.run_id,
            run.workflow,
            run.status,
            _local_time(run.started),
            format_duration(run.duration),
            run.failed_step or "",
        )
        for run in runs
    ]
    if any(run.parent_id is not None for run in runs):
        headers += ("parent",)
        rows = [(*row, run.parent_id or "") for row, run in zip(rows, runs, strict=True)]
    if any(run.waiting is not None for run in runs):
        headers += ("waits", "events", "until")
        rows = [row + _waiting_cells(run) for row, run in zip(rows, runs, strict=True)]
    table = Table()
    for index, header in enumerate(headers):
        # Names may wrap (never be cut); every other cell keeps one line, headers too.
        wraps = header in ("workflow", "failed_step", "waits", "events")
        widest = max([len(header), *(len(row[index]) for row in rows)]) if not wraps else 0
        table.add_column(
            header, no_wrap=not wraps, overflow="fold", min_width=max(len(header), widest)
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = Console()
    needs = Measurement.get(console, console.options.update(max_width=1 << 20), table)
    console.width = max(console.width, needs.minimum) if console.is_terminal else needs.maximum
    console.print(table)


def _waiting_cells(run: Run) -> tuple[str, str, str]:
    """The waits, events and deadline cells of a run in the table; empty when it does not wait."""
    waiting = run.waiting
    if waiting is None:
        return ("", "", "")
    until = "" if waiting.until is None else _local_time(waiting.until)
    return (", ".join(waiting.waits), ", ".join(waiting.events), until)
