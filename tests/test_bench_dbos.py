"""The durable-runs benchmark against DBOS (benchmarks/bench_dbos.py): its plumbing, not its timings."""

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
    return importlib.import_module("bench_dbos")


def tiny(bench: ModuleType) -> object:
    plan = {"chain": 1, "fanout": 1, "payload": 1, "concurrent": 1}
    return bench.Mode("test", rounds=1, plan=plan, budget=0.0, timeout=120.0)


def test_a_dbos_environment_that_cannot_be_made_is_reported_as_skipped(bench: ModuleType) -> None:
    """No venv for DBOS (no package index, say): the report says skipped and why, nothing runs."""

    def no_venv(name: str, requirement: str, python: str) -> tuple[str | None, str]:
        assert (name, requirement) == ("dbos", bench.DBOS_REQUIREMENT)
        return None, "setup failed (-m pip install): no network"

    report = bench.measure(tiny(bench), sys.executable, no_venv)

    assert report.times == {}
    expected = "the DBOS environment could not be made (setup failed (-m pip install): no network)"
    assert expected == report.skipped
    assert report.text() == f"Durable runs against DBOS: skipped: {expected}"
    assert f"skipped: {expected}" in report.markdown()


def test_flowdsl_side_runs_every_workload_and_recovers_the_killed_run(bench: ModuleType) -> None:
    """flowdsl's config measures the five workloads; the killed run resumes without rerunning steps."""

    def fake_venv(name: str, requirement: str, python: str) -> tuple[str | None, str]:
        return sys.executable, "cached"  # never started: only flowdsl's config runs

    report = bench.measure(tiny(bench), sys.executable, fake_venv, configs=("flowdsl",))

    assert {} == report.errors
    assert set(bench.WORKLOADS) == set(report.times["flowdsl"])
    assert all(len(values) >= 1 for values in report.times["flowdsl"].values())
    assert 1 == len(report.resume["flowdsl"])
    assert {"journal_mode": "wal", "synchronous": "normal"} == report.settings["flowdsl"]


def test_the_detail_table_gives_each_configs_mean_beside_its_median(bench: ModuleType) -> None:
    """One slow run (a checkpoint waited for) moves the mean, not the median: both are shown."""
    report = bench.Report(mode=tiny(bench), configs=("flowdsl",))
    report.add("flowdsl", "payload", [0.006, 0.006, 0.006, 0.030])  # seconds per 10-step run
    report.add("flowdsl", "concurrent", [0.1, 0.1, 0.4])  # seconds per 200 runs
    rows = {row[0]: row for row in report.detail_rows()}
    header = bench.Report.DETAIL_HEADER
    payload = dict(zip(header, rows[bench.WORKLOAD_LABELS["payload"]], strict=True))
    assert ("0.60 ms/step", "1.20 ms/step") == (payload["median"], payload["mean"])
    assert ("0.60 ms/step", "3.00 ms/step") == (payload["min"], payload["max"])
    concurrent = dict(zip(header, rows[bench.WORKLOAD_LABELS["concurrent"]], strict=True))
    assert ("2,000 runs/s", "1,000 runs/s") == (concurrent["median"], concurrent["mean"])
