"""The workers benchmark's report (benchmarks/bench_workers.py): its plumbing, not its timings."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("bench_workers")


def test_sqlite_is_measured_and_a_missing_postgresql_is_reported_not_measured(
    bench: ModuleType,
) -> None:
    """Real worker processes on a SQLite file; no server for PostgreSQL: said so, and why."""

    def no_server() -> tuple[None, str, object]:
        return None, "no PostgreSQL could be had (nothing on 127.0.0.1:5432)", lambda: None

    report = bench.measure(sys.executable, runs=10, samples=2, postgres=no_server)

    sqlite = report.figures["sqlite"]
    for count in bench.WORKERS:
        assert sqlite[f"runs_per_s_{count}_workers"] > 0
    assert 0 < sqlite["dispatch_p50_ms"] <= sqlite["dispatch_p99_ms"]
    assert "postgresql" not in report.figures
    assert report.skipped == {
        "postgresql": "no PostgreSQL could be had (nothing on 127.0.0.1:5432)"
    }
    rows = report.rows()
    assert [row[0] for row in rows[:3]] == ["1 worker", "2 workers", "4 workers"]
    assert all(row[2] == "not measured" for row in rows)
    assert rows[0][1].endswith(" runs/s")
    text, markdown = report.text(), report.markdown()
    assert "postgresql: not measured: no PostgreSQL could be had" in text
    assert markdown.startswith("## Workers")
    assert "| 4 workers | " in markdown


def test_a_measurement_that_fails_is_reported_and_what_was_started_is_stopped(
    bench: ModuleType,
) -> None:
    """A database that does not answer: the script fails, the report says how, the server the
    benchmark was given is stopped all the same, and nothing raises."""
    stopped: list[bool] = []

    def dead_server() -> tuple[str, str, object]:
        return "postgresql://postgres@127.0.0.1:1/none", "", lambda: stopped.append(True)

    report = bench.measure(
        sys.executable, runs=2, samples=1, postgres=dead_server, stores=("postgresql",)
    )

    assert report.figures == {}
    assert report.skipped["postgresql"].startswith("failed (exit ")
    assert stopped == [True]
    assert report.raw() == {"runs": 2, "figures": {}, "skipped": report.skipped}
