"""What writing the journal costs: encode + dumps of a run's output and of a step's outcome.

    python benchmarks/bench_codec.py            # a few seconds
    python benchmarks/bench_codec.py --quick    # CI: fewer repetitions; never fails on a timing

Two values, the kinds a durable run journals, both frozen as the engine freezes what a step
returns before the journal writes it:

* ``context``: a run's final output, about 6.5 KB of JSON: the frozen context of an order
  workflow (nested dicts and lists of str, int, float, bool and None, a few datetimes, a
  tuple, an Ok and an Err), written with ``encode_lenient`` as the journal writes it;
* ``outcome``: one step's outcome of about 100 KB, ``Ok`` of 800 records (plus a datetime
  and a tuple beside them), written with ``encode``.

Timed in the same process, interleaved round by round (best of the rounds, microseconds
per call):

* ``before``: the codec as it was before the journal could be written with orjson
  (flowdsl/stores/_codec.py at commit BEFORE, read from git; skipped without git);
* ``after, first``: the codec now (``encode_text``) on a value never written before, with
  orjson when the flowdsl[fast] extra is installed;
* ``after, again``: the same value written a second time. Writing a frozen container finds
  out whether it is plain JSON and marks it so; a marked one is written without a walk.
  This is the run's output: its values are what its steps returned, journaled (and so
  marked) when each step finished;
* ``after, json only``: "again" without orjson;
* for scale, writers that do not keep the journal's types: ``json.dumps``, and
  ``orjson.dumps`` and ``msgspec.json.encode`` when installed (datetimes as ``str()``,
  a tuple as a list, an Ok as whatever ``default`` makes of it).

Each codec's text is checked: "after" (first and again, with and without orjson) must be
exactly "before"'s text and read back the same; a difference is an error (exit status 1).
Timings are only reported.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flowdsl import Err, Ok  # noqa: E402
from flowdsl._engine import _context  # noqa: E402
from flowdsl._engine._context import freeze  # noqa: E402
from flowdsl.stores import _codec  # noqa: E402

BEFORE = "5c7adbe"
"""The last commit whose codec walked and wrote the journal with the json module only."""


def load_before() -> ModuleType | None:
    """The codec of commit BEFORE, as a module of its own (its own registries)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{BEFORE}:flowdsl/stores/_codec.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("flowdsl.stores._codec_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "flowdsl.stores"
    try:
        exec(compile(source, f"<flowdsl {BEFORE} _codec.py>", "exec"), module.__dict__)
    except Exception as exc:  # what it imports from flowdsl moved since
        print(f"note: the codec of {BEFORE} cannot be loaded here ({exc!r})", file=sys.stderr)
        return None
    return module


def context() -> Any:
    """A run's output: what the steps of an order workflow left in the context, frozen."""
    t0 = _dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=_dt.UTC)
    items = [
        {
            "sku": f"SKU-{i:05d}",
            "name": f"Widget number {i}",
            "qty": i % 4 + 1,
            "price": 9.99 + i,
            "discount": None if i % 3 else 0.15,
            "taxable": i % 2 == 0,
            "tags": ["blue", "large", f"batch-{i}"],
            "dims": {"w": 10.5, "h": 3, "d": 7.25},
        }
        for i in range(10)
    ]
    customer = {
        "id": 4711,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "vip": True,
        "address": {"street": "12 Analytical Way", "city": "London", "zip": "NW1 2DB"},
    }
    data = {
        "input": {"order_id": "ord_8f3a2c", "customer": customer, "items": items, "at": t0},
        "validated": True,
        "quote": {
            "subtotal": 199.75,
            "tax": 39.95,
            "currency": "EUR",
            "lines": [{"sku": it["sku"], "amount": it["price"] * it["qty"]} for it in items],
        },
        "inventory": {
            "reserved": [it["sku"] for it in items],
            "warehouse": "LHR-2",
            "at": t0 + _dt.timedelta(seconds=3),
        },
        "payment": Ok({"charge": "ch_3NQ", "amount": 239.7, "at": t0 + _dt.timedelta(seconds=5)}),
        "fraud": Err("score above threshold: 0.91"),
        "shipping": {
            "carrier": "DHL",
            "window": (t0 + _dt.timedelta(days=1), t0 + _dt.timedelta(days=3)),
            "cost": 4.99,
        },
        "audit": [
            {"step": f"step_{i}", "ms": 12 + i, "ok": True, "msg": "done without retries"}
            for i in range(50)
        ],
        "counters": {"retries": 0, "attempts": 1, "events": 7},
    }
    return MappingProxyType({key: freeze(value) for key, value in data.items()})


def outcome() -> Any:
    """A step's outcome of about 100 KB of JSON: a page of records fetched from an API."""
    rows = [
        {
            "id": i,
            "name": f"record {i}",
            "score": i * 0.37,
            "active": i % 2 == 0,
            "tags": ["x", "y", f"t{i % 7}"],
            "meta": {"source": "feed", "rank": i % 13, "note": None},
        }
        for i in range(800)
    ]
    fetched = _dt.datetime(2024, 5, 1, tzinfo=_dt.UTC)
    return Ok(freeze({"rows": rows, "fetched_at": fetched, "page": (1, 20)}))


FRESH = 100
"""Fresh values made per round for "after, first" (each is written once)."""


def unmarked(make: Callable[[], Any]) -> Any:
    """`make()` frozen by the Python copy alone, which marks nothing (the compiled copy marks
    what is plain as it copies): the value as the old codec was given it."""
    copy_plain, _context._copy_plain = _context._copy_plain, None
    try:
        return make()
    finally:
        _context._copy_plain = copy_plain


def timed(fn: Callable[[], object]) -> Callable[[int], float]:
    """Seconds per call of `fn`, over `calls` calls."""

    def run(calls: int) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - started) / calls

    return run


def timed_fresh(encode: Callable[[Any], str], make: Callable[[], Any]) -> Callable[[int], float]:
    """Seconds per call of `encode` on values never written before (made outside the timing)."""

    def run(calls: int) -> float:
        values = [make() for _ in range(calls)]
        started = time.perf_counter()
        for value in values:
            encode(value)
        return (time.perf_counter() - started) / calls

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (CI)")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else 9
    budget = 0.02 if args.quick else 0.1  # seconds of calls per implementation and round

    before = load_before()
    try:
        import orjson
    except ImportError:
        orjson = None
    try:
        import msgspec
    except ImportError:
        msgspec = None
    writer = _codec.orjson

    def json_only(encode: Callable[[Any], str]) -> Callable[[Any], str]:
        def run(value: Any) -> str:
            _codec.orjson = None
            try:
                return encode(value)
            finally:
                _codec.orjson = writer

        return run

    cases: list[tuple[str, Callable[[], Any], bool]] = [
        ("context", context, True),
        ("outcome", outcome, False),
    ]
    errors: list[str] = []
    print(f"journal codec: {platform.python_implementation()} {platform.python_version()},")
    print(
        f"  orjson {getattr(orjson, '__version__', 'not installed')}, "
        f"msgspec {getattr(msgspec, '__version__', 'not installed')}, "
        f"before = {BEFORE if before is not None else 'not available (no git history)'}"
    )
    print(
        f"  {'quick' if args.quick else 'full'}: best of {rounds} interleaved rounds, us per call"
    )
    for name, make, lenient in cases:
        after = _codec.encode_lenient_text if lenient else _codec.encode_text
        value = make()
        text = after(value)  # this value is now found plain where it is (see "again" below)
        timers: dict[str, Callable[[int], float]] = {}
        if before is not None:
            old_encode = before.encode_lenient if lenient else before.encode
            old_value = unmarked(make)  # its own: the old codec does not know the plain classes
            timers["before"] = timed(lambda e=old_encode, v=old_value: before.dumps(e(v)))
        timers["after, first"] = timed_fresh(after, make)
        timers["after, again"] = timed(lambda a=after, v=value: a(v))
        timers["after, json only"] = timed(lambda a=after, v=value: json_only(a)(v))
        native = dict(value) if lenient else value.value
        timers["json.dumps"] = timed(lambda n=native: json.dumps(n, default=str))
        if orjson is not None:
            timers["orjson.dumps"] = timed(lambda n=native: orjson.dumps(n, default=str))
        if msgspec is not None:
            timers["msgspec"] = timed(lambda n=native: msgspec.json.encode(n, enc_hook=str))

        if text != after(make()):
            errors.append(f"{name}: a fresh copy of the value is written differently")
        if text != after(value):
            errors.append(f"{name}: the text written again differs from the first text")
        if text != json_only(after)(value):
            errors.append(f"{name}: the text with orjson differs from the text without it")
        if before is not None and text != before.dumps(old_encode(old_value)):
            errors.append(f"{name}: the text differs from the text written before")
        back = _codec.decode(text, strict=True)
        if (_codec.encode_lenient_text(back) if lenient else _codec.encode_text(back)) != text:
            errors.append(f"{name}: the text does not read back to the same value")

        calls = {
            label: max(1, int(budget / max(timer(1), 1e-7))) for label, timer in timers.items()
        }
        calls["after, first"] = min(calls["after, first"], FRESH)
        times: dict[str, float] = {label: float("inf") for label in timers}
        for _ in range(rounds):
            for label, timer in timers.items():
                times[label] = min(times[label], timer(calls[label]))
        print(f"\n{name}: {len(text):,} bytes of journal JSON")
        reference = times.get("before")
        for label, seconds in times.items():
            ratio = (
                f"  before / this = {reference / seconds:5.2f}"
                if reference and label != "before"
                else ""
            )
            print(f"  {label:<18} {seconds * 1e6:10.1f} us{ratio}")
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
