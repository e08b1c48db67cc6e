"""The flowdsl command line, driven as users drive it: the real console script in a subprocess.

The workflows it runs live in tests/cli_fixtures/ (see the README there).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

FIXTURES = Path(__file__).parent / "cli_fixtures"
SCRIPT = Path(sys.executable).parent / ("flowdsl.exe" if os.name == "nt" else "flowdsl")
# The environment of a user's shell, minus what would make rich treat a pipe as a terminal.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "COLUMNS", "PYTHONPATH")
}


def flowdsl(
    *args: str, stdin: str | None = None, cwd: Path = FIXTURES, module: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `flowdsl ARGS` (or `python -m flowdsl ARGS`) and capture what it prints."""
    assert SCRIPT.exists(), f"the console script is not installed at {SCRIPT}: pip install -e ."
    command = [sys.executable, "-m", "flowdsl"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        check=False,
    )


def assert_clean_error(done: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    """Exit `code`, nothing on stdout, one message on stderr naming `parts`, no traceback."""
    assert code == done.returncode, done.stderr
    assert "" == done.stdout
    assert "Traceback" not in done.stderr
    for part in parts:
        assert part in done.stderr


# -- run ---------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [False, True], ids=["flowdsl", "python -m flowdsl"])
def test_run_prints_the_output_as_json_and_exits_0(module: bool) -> None:
    """A completed run: its output as JSON on stdout, exit 0, from either entry point."""
    done = flowdsl("run", "hello.py:greet", "--input", '{"name": "Ada"}', module=module)
    assert 0 == done.returncode, done.stderr
    assert {"name": "Ada", "greeting": "hello Ada"} == json.loads(done.stdout)


def test_progress_is_plain_lines_on_stderr_when_not_a_terminal() -> None:
    """Off a terminal each event is one plain line: start, steps, chunks, the end."""
    done = flowdsl("run", "flows.py:chunks", "--input", '{"upto": 2}')
    assert 0 == done.returncode, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("run ")
    assert lines[0].endswith(" started: workflow chunks")
    assert [
        "step count: started (attempt 1)",
        'step count: chunk {"done": 1}',
        'step count: chunk {"done": 2}',
    ] == lines[1:4]
    assert lines[4].startswith("step count: succeeded in ")
    assert lines[5].startswith("run ")
    assert " completed in " in lines[5]
    assert 6 == len(lines)
    assert "\x1b[" not in done.stderr  # no terminal control codes
    assert {"upto": 2, "counted": 2} == json.loads(done.stdout)


def test_retries_are_shown_with_their_delay() -> None:
    """A failed attempt that will be retried says so; the run then completes."""
    done = flowdsl("run", "flows.py:flaky")
    assert 0 == done.returncode, done.stderr
    assert "step call: failed in " in done.stderr
    assert '(attempt 1): "busy (attempt 1)"; retrying in 0.0 ms' in done.stderr
    assert "step call: succeeded in " in done.stderr
    assert {"answer": 42} == json.loads(done.stdout)


def test_module_target_from_the_current_directory() -> None:
    """pkg.module:NAME imports from the current directory, as python -m does."""
    done = flowdsl("run", "pkg.flows:pkg-greet", "--input", '{"name": "Bo"}')
    assert 0 == done.returncode, done.stderr
    assert "hi Bo" == json.loads(done.stdout)["greeting"]
    by_attribute = flowdsl("run", "pkg.flows:greet", "--input", '{"name": "Bo"}')
    assert done.stdout == by_attribute.stdout


def test_target_may_leave_out_the_name_when_the_module_has_one_workflow() -> None:
    """A file with a single workflow needs no :NAME; one with several must be told."""
    done = flowdsl("run", str(FIXTURES / "hello.py"), cwd=FIXTURES.parent)
    assert 0 == done.returncode, done.stderr
    assert "hello world" == json.loads(done.stdout)["greeting"]
    several = flowdsl("run", "flows.py")
    assert_clean_error(several, 2, "defines several workflows", "pick one: flows.py:chunks")


def test_input_from_a_file_and_from_standard_input(tmp_path: Path) -> None:
    """--input @file.json reads a file; --input @- reads standard input."""
    data = tmp_path / "input.json"
    data.write_text('{"name": "Cy"}', encoding="utf-8")
    from_file = flowdsl("run", "hello.py:greet", "--input", f"@{data}")
    from_stdin = flowdsl("run", "hello.py:greet", "--input", "@-", stdin='{"name": "Cy"}')
    for done in (from_file, from_stdin):
        assert 0 == done.returncode, done.stderr
        assert "hello Cy" == json.loads(done.stdout)["greeting"]


def test_a_failed_run_exits_1_with_the_reason_on_stderr() -> None:
    """Exit 1; stderr says which step failed and why (with its traceback) and what was undone."""
    done = flowdsl("run", "failing.py:checkout", "--input", '{"name": "Ada"}')
    assert 1 == done.returncode
    assert "" == done.stdout  # no output: the run did not complete
    assert "step charge: failed in " in done.stderr
    assert "undo book: succeeded in " in done.stderr
    assert "cancelled B-1" in done.stderr  # what steps print goes to stderr, not stdout
    assert "failed at step 'charge': Declined: card of Ada declined" in done.stderr
    assert 'failing.py", line ' in done.stderr  # the step's own traceback


def test_output_run_prints_the_whole_run_record() -> None:
    """--output run: the run record as JSON, failed or not, with --run-id as its id."""
    done = flowdsl("run", "failing.py:checkout", "--output", "run", "--run-id", "r-42")
    assert 1 == done.returncode
    record = json.loads(done.stdout)
    assert ("r-42", "checkout", "failed", "charge") == (
        record["run_id"],
        record["workflow"],
        record["status"],
        record["failed_step"],
    )
    assert {"type": "failing.Declined", "message": "card of nobody declined"} == record["error"]
    assert [("book", "succeeded"), ("charge", "failed")] == [
        (s["name"], s["status"]) for s in record["steps"]
    ]
    assert [{"step": "book", "status": "succeeded"}] == [
        {"step": c["step"], "status": c["status"]} for c in record["compensations"]
    ]


def test_quiet_shows_no_progress() -> None:
    """-q: nothing on stderr for a completed run; the output still on stdout."""
    done = flowdsl("run", "hello.py:greet", "-q")
    assert (0, "") == (done.returncode, done.stderr)
    assert "hello world" == json.loads(done.stdout)["greeting"]


def test_log_format_json_writes_one_json_event_per_line() -> None:
    """--log-format json: stderr is JSON lines (flowdsl's lifecycle and the steps' own logs)."""
    done = flowdsl("run", "flows.py:logs", "--input", '{"name": "Ada"}', "--log-format", "json")
    assert 0 == done.returncode, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert ["workflow.started", "step.started", "greeting.made", "step.succeeded"] == [
        e["event"] for e in events[:4]
    ]
    assert "workflow.finished" == events[-1]["event"]
    run_ids = {e["run_id"] for e in events if e["event"] != "greeting.made"}
    assert 1 == len(run_ids)
    assert {"step": "greet", "attempt": 1, "workflow": "logs"}.items() <= events[3].items()
    assert "duration_ms" in events[3]
    assert "Ada" == events[2]["name"]
    assert {"name": "Ada", "greeting": "hello Ada"} == json.loads(done.stdout)


def test_console_logs_show_the_steps_own_events_once() -> None:
    """Default logs: the steps' structlog events as readable lines; lifecycle only as progress."""
    done = flowdsl("run", "flows.py:logs", "--input", '{"name": "Ada"}')
    assert 0 == done.returncode, done.stderr
    greeting = [line for line in done.stderr.splitlines() if "greeting.made" in line]
    assert 1 == len(greeting)
    assert "name=Ada" in greeting[0]
    assert "step.succeeded" not in done.stderr  # shown by the progress lines instead


def on_a_terminal(
    *args: str, tty: str = "stderr", columns: int = 100, cwd: Path = FIXTURES
) -> tuple[int, str, bytes]:
    """Run `flowdsl ARGS` with its stderr (or stdout) on a pseudo-terminal `columns` wide.

    Returns the exit status, what the terminal showed, and what went to the other stream.
    """
    import pty

    main, secondary = pty.openpty()
    env = {**ENV, "TERM": "xterm-256color", "COLUMNS": str(columns)}
    env.pop("NO_COLOR", None)
    streams = {"stdout": subprocess.PIPE, "stderr": secondary}
    if tty == "stdout":
        streams = {"stdout": secondary, "stderr": subprocess.PIPE}
    with subprocess.Popen([str(SCRIPT), *args], cwd=cwd, env=env, **streams) as proc:
        os.close(secondary)
        screen = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            screen += chunk
        other = proc.stdout if tty == "stderr" else proc.stderr
        rest = other.read() if other else b""
    os.close(main)
    return proc.returncode, screen.decode("utf-8", "replace"), rest


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_on_a_terminal_progress_is_a_live_table() -> None:
    """With stderr on a terminal, rich draws a table of steps; stdout is still just the JSON."""
    code, text, stdout = on_a_terminal("run", "failing.py:checkout", "--input", '{"name": "Ada"}')
    assert 1 == code
    assert b"" == stdout
    assert "\x1b[" in text  # drawn with terminal control codes
    for part in ("checkout", "book", "charge", "Declined: card of Ada declined", "undo book"):
        assert part in text
    assert "1 succeeded, 1 failed, 1 undone" in text  # the counts under the table
    assert "failed at step 'charge'" in text


def _finish(progress: Any, steps: int, failing: str | None = None) -> None:
    """Feed `progress` the events of `steps` steps s0, s1, ... that each start and finish."""
    from flowdsl import RunStarted, StepFinished, StepStarted

    progress(RunStarted("chain", run_id="r-1"))
    for index in range(steps):
        name = f"s{index}"
        progress(StepStarted(name, 1))
        if name == failing:
            progress(StepFinished(name, "failed", 0.001, error=RuntimeError("boom")))
        else:
            progress(StepFinished(name, "succeeded", 0.001))


def _rendered(table: Any) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def test_the_live_table_stays_small_however_many_steps_run() -> None:
    """400 steps: a bounded number of rows, the counts, and an early failure still shown."""
    from rich.console import Console

    from flowdsl.cli import Progress

    progress = Progress("chain", Console(file=io.StringIO(), width=100))
    _finish(progress, 400, failing="s3")
    table = progress.table()
    assert Progress.FAILED + Progress.RECENT + Progress.RUNNING + 1 >= len(table.rows)
    text = _rendered(table)
    assert "399 succeeded, 1 failed" in text
    assert "s3" in text  # it scrolled out of the recent rows, and is still shown
    assert "RuntimeError: boom" in text
    assert "s399" in text
    assert "s200" not in text


def test_the_live_table_shows_a_bounded_number_of_running_steps() -> None:
    """Many steps running at once (a wide parallel block): the first few, then how many more."""
    from rich.console import Console

    from flowdsl import StepStarted
    from flowdsl.cli import Progress

    progress = Progress("wide", Console(file=io.StringIO(), width=100))
    for index in range(50):
        progress(StepStarted(f"b{index}", 1))
    table = progress.table()
    assert Progress.RUNNING + 1 == len(table.rows)
    text = _rendered(table)
    assert f"… {50 - Progress.RUNNING} more running" in text
    assert "50 running" in text


def test_steps_still_running_when_the_run_ends_are_shown_cancelled() -> None:
    """A sibling cancelled by fail_fast (or Ctrl-C) is not left as running in the last frame."""
    from rich.console import Console

    from flowdsl import Run, RunFinished, StepFinished, StepStarted
    from flowdsl.cli import Progress

    progress = Progress("pf", Console(file=io.StringIO(), width=100))
    for name in ("slow", "slower", "bad"):
        progress(StepStarted(name, 1))
    progress(StepFinished("bad", "failed", 0.2, error=RuntimeError("bad")))
    progress(RunFinished(Run("r-1", "pf", "failed", failed_step="bad")))
    text = _rendered(progress.table())
    assert "1 failed, 2 cancelled" in text
    assert "running" not in text
    rows = {line.split()[1]: line.split()[-1] for line in text.splitlines()[2:-1]}
    assert {"bad": "bad", "slow": "cancelled", "slower": "cancelled"} == rows


def test_events_only_update_the_display_s_state() -> None:
    """An event never builds the table: rich's refresh draws it at its own rate."""
    from rich.console import Console

    from flowdsl.cli import Progress

    built: list[int] = []

    class Counting(Progress):
        auto_refresh = False  # no refresh thread: only the events could draw the table

        def table(self) -> Any:
            built.append(1)
            return super().table()

    progress = Counting("chain", Console(file=io.StringIO(), width=100, force_terminal=True))
    with progress:
        first = len(built)  # rich takes a first frame as the display starts
        _finish(progress, 400)
        assert first == len(built)
    assert first + 1 == len(built)  # and the last one as it stops
    assert "400 succeeded" in progress.console.file.getvalue()  # type: ignore[union-attr]


# -- bad input: a clear message, exit 2, never a traceback -----------------------------------


def test_a_definition_error_exits_2_with_its_file_and_line() -> None:
    """The DefinitionError's message, naming broken.py and the line, without a traceback."""
    done = flowdsl("run", "broken.py:broken")
    assert_clean_error(
        done, 2, "definition error: workflow 'broken', step 'load'", "broken.py:12", "duplicate"
    )


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (["run", "nowhere.py:flow"], ["no such file: 'nowhere.py'"]),
        (["run", "no_such_module:flow"], ["no module named 'no_such_module'"]),
        (["run", "pkg.nothing:flow"], ["no module named 'pkg.nothing'"]),
        (
            ["run", "hello.py:nope"],
            ["'hello.py' has no workflow 'nope'; workflows defined there: 'greet'"],
        ),
        (["run", ":greet"], ["names no module or file"]),
        (["run", "hello.py", "--input", "{name: Ada}"], ["--input is not valid JSON"]),
        (["run", "hello.py", "--input", "[1, 2]"], ["must be a JSON object", "got list"]),
        (
            ["run", "hello.py", "--input", "@missing.json"],
            ["cannot read input file 'missing.json'"],
        ),
        (["run", "crashes.py"], ["importing 'crashes.py' failed: KeyError", "crashes.py:5"]),
        (["graph", "hello.py:nope"], ["has no workflow 'nope'"]),
        (["graph", "broken.py"], ["definition error", "broken.py:12"]),
        (["run", "pkg"], ["'pkg' defines no workflow"]),
        (["run", "hello.py", "--store", "/nonexistent/dir/runs.db"], ["could not open the store"]),
    ],
)
def test_bad_input_gets_a_message_and_exit_2(args: list[str], parts: list[str]) -> None:
    """Missing file, module or workflow, input that is not a JSON object, unreadable @file."""
    assert_clean_error(flowdsl(*args), 2, *parts)


def test_modules_that_fail_to_import_are_one_line_with_file_and_line(tmp_path: Path) -> None:
    """A syntax error, or a dependency that is missing, in the user's module: exit 2, no traceback."""
    (tmp_path / "typo.py").write_text("def broken(:\n    pass\n", encoding="utf-8")
    (tmp_path / "needs.py").write_text("import not_installed_dep\n", encoding="utf-8")
    assert_clean_error(
        flowdsl("run", "typo.py", cwd=tmp_path),
        2,
        "importing 'typo.py' failed: SyntaxError",
        "typo.py:1",
    )
    for target in ("needs.py:flow", "needs:flow"):  # as a file, and as a module
        assert_clean_error(
            flowdsl("run", target, cwd=tmp_path),
            2,
            "failed: ModuleNotFoundError: No module named 'not_installed_dep'",
            "needs.py:1",
        )


def test_a_file_named_like_a_loaded_module_still_runs(tmp_path: Path) -> None:
    """A workflow file called json.py does not clash with the json module already imported."""
    (tmp_path / "json.py").write_text(
        "from flowdsl import ok, step, workflow\n\n"
        "@workflow\ndef clash():\n    @step\n    def one(ctx):\n        return ok({'ran': True})\n",
        encoding="utf-8",
    )
    done = flowdsl("run", "json.py", cwd=tmp_path)
    assert 0 == done.returncode, done.stderr
    assert {"ran": True} == json.loads(done.stdout)


def test_input_null_means_no_input() -> None:
    """--input null is the same as no --input."""
    done = flowdsl("run", "hello.py", "--input", "null")
    assert 0 == done.returncode, done.stderr
    assert {"greeting": "hello world"} == json.loads(done.stdout)


def test_what_steps_print_never_reaches_stdout_even_from_worker_processes() -> None:
    """stdout holds only the output JSON; prints (also a process step's, fd 1) go to stderr."""
    done = flowdsl("run", "chatty.py:chatty")
    assert 0 == done.returncode, done.stderr
    assert {"loop": True, "process": True} == json.loads(done.stdout)
    for line in (
        "loud on the loop",
        "loud in a worker process",
        "written straight to descriptor 1",
    ):
        assert line in done.stderr


def test_input_file_that_is_not_json(tmp_path: Path) -> None:
    """An @file whose text is not JSON names the file."""
    data = tmp_path / "input.json"
    data.write_text("name=Ada", encoding="utf-8")
    assert_clean_error(
        flowdsl("run", "hello.py", "--input", f"@{data}"),
        2,
        f"input file '{data}' is not valid JSON",
    )


@pytest.mark.parametrize(
    ("content", "part"),
    [
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "is nested too deeply to read"),
    ],
)
def test_input_file_that_cannot_be_read_as_json_text(
    tmp_path: Path, content: bytes, part: str
) -> None:
    """A UTF-16 file (as PowerShell writes) or absurdly nested JSON is a message and exit 2."""
    data = tmp_path / "input.json"
    data.write_bytes(content)
    assert_clean_error(flowdsl("run", "hello.py", "--input", f"@{data}"), 2, part)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["run"],
        ["run", "hello.py", "--log-format", "xml"],
        ["graph", "hello.py", "--format", "png"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    """No command, an unknown one, a missing argument or a bad choice: click's usage, exit 2."""
    done = flowdsl(*args)
    assert 2 == done.returncode
    assert "Usage:" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_and_version() -> None:
    """--help lists the commands; --version prints the version; both exit 0."""
    helped = flowdsl("--help")
    assert 0 == helped.returncode
    for command in ("run", "check", "graph", "runs"):
        assert command in helped.stdout
    version = flowdsl("--version", module=True)
    assert 0 == version.returncode
    assert version.stdout.startswith("flowdsl, version ")


def test_without_click_or_rich_it_says_what_to_install() -> None:
    """If click cannot be imported, the message says how to install it and the exit status is 2."""
    hide = "import sys; sys.modules['click'] = None; from flowdsl.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", hide, "run", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        check=False,
    )
    assert 2 == done.returncode
    assert "pip install click rich" in done.stderr
    assert "Traceback" not in done.stderr


# -- check ---------------------------------------------------------------------------------


def test_check_lists_the_workflows_of_each_module() -> None:
    """check imports and compiles, then lists each module's workflows; exit 0."""
    done = flowdsl("check", "hello.py", "pkg.flows", "flows.py")
    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    assert "hello.py: ok, 1 workflow" == lines[0]
    assert lines[1].startswith("  greet  1 step  ")
    assert lines[1].endswith("hello.py:6")
    assert "pkg.flows: ok, 1 workflow" == lines[2]
    assert "flows.py: ok, 4 workflows" == lines[4]
    assert ["chunks", "flaky", "logs", "shapes"] == [line.split()[0] for line in lines[5:]]


def test_check_exits_1_on_a_definition_error_and_checks_the_rest() -> None:
    """A broken module: its message with file:line on stderr, exit 1; others still listed."""
    done = flowdsl("check", "broken.py", "crashes.py", "hello.py")
    assert 1 == done.returncode
    assert "Traceback" not in done.stderr
    assert "broken.py: definition error: workflow 'broken'" in done.stderr
    assert "broken.py:12" in done.stderr
    assert "crashes.py: importing 'crashes.py' failed: KeyError" in done.stderr
    assert "hello.py: ok, 1 workflow" in done.stdout


def test_check_exits_2_when_a_module_does_not_exist() -> None:
    """A module or file that is not there is a usage error; the others are still checked."""
    done = flowdsl("check", "gone.py", "no_such_module", "broken.py", "hello.py")
    assert 2 == done.returncode
    assert "Traceback" not in done.stderr
    assert "gone.py: no such file: 'gone.py'" in done.stderr
    assert "no_such_module: no module named 'no_such_module'" in done.stderr
    assert "broken.py: definition error" in done.stderr
    assert "hello.py: ok, 1 workflow" in done.stdout


# -- graph ---------------------------------------------------------------------------------


def test_graph_prints_mermaid_by_default() -> None:
    """The default format is a Mermaid flowchart, made without running the workflow."""
    done = flowdsl("graph", "flows.py:shapes")
    assert 0 == done.returncode, done.stderr
    assert done.stdout.startswith("%% flowdsl workflow shapes\nflowchart TD\n")
    assert '[/"into pick_best"/]' in done.stdout
    assert "" == done.stderr


def test_graph_json_parses_and_shows_every_part() -> None:
    """--format json: nodes for steps, fork/join, the reducer, the undo; goto edges."""
    done = flowdsl("graph", "flows.py:shapes", "--format", "json", module=True)
    assert 0 == done.returncode, done.stderr
    graph = json.loads(done.stdout)
    assert "shapes" == graph["workflow"]
    kinds = {n["kind"] for n in graph["nodes"]}
    assert {"start", "end", "step", "fork", "join", "reducer", "compensation"} == kinds
    assert {"next", "route", "compensate"} == {e["kind"] for e in graph["edges"]}


def test_graph_dot_renders_with_graphviz() -> None:
    """--format dot is a digraph; where Graphviz is installed, `dot -Tsvg` accepts it."""
    done = flowdsl("graph", "flows.py:shapes", "--format", "dot")
    assert 0 == done.returncode, done.stderr
    assert done.stdout.startswith('digraph "shapes" {')
    assert done.stdout.rstrip().endswith("}")
    dot = shutil.which("dot")
    if dot is not None:
        svg = subprocess.run(
            [dot, "-Tsvg"], input=done.stdout, capture_output=True, text=True, check=False
        )
        assert ("", 0) == (svg.stderr, svg.returncode)
        assert "<svg" in svg.stdout


# -- runs ----------------------------------------------------------------------------------


def test_runs_list_and_show_read_the_store(tmp_path: Path) -> None:
    """Durable runs made with --store are listed (JSON or a table) and shown by id."""
    store = str(tmp_path / "runs.db")
    assert 0 == flowdsl("run", "hello.py", "--store", store, "--run-id", "ok-1").returncode
    assert 1 == flowdsl("run", "failing.py", "--store", store, "--run-id", "bad-1").returncode
    listed = flowdsl("runs", "list", "--store", store)
    assert 0 == listed.returncode, listed.stderr
    assert [("ok-1", "greet", "completed"), ("bad-1", "checkout", "failed")] == [
        (r["run_id"], r["workflow"], r["status"]) for r in json.loads(listed.stdout)
    ]
    failed = flowdsl("runs", "list", "--store", store, "--status", "failed")
    assert ["bad-1"] == [r["run_id"] for r in json.loads(failed.stdout)]
    table = flowdsl("runs", "list", "--store", f"sqlite:///{store}", "--format", "table")
    assert 0 == table.returncode, table.stderr
    assert "ok-1" in table.stdout
    assert "bad-1" in table.stdout
    shown = flowdsl("runs", "show", "bad-1", "--store", store, module=True)
    assert 0 == shown.returncode, shown.stderr
    record = json.loads(shown.stdout)
    assert ("failed", "charge") == (record["status"], record["failed_step"])
    assert "Declined" in record["error"]["type"]
    assert {"booking": "B-1"} == record["output"]


def test_run_with_a_known_run_id_returns_the_recorded_run(tmp_path: Path) -> None:
    """Running again with the id of a completed durable run prints it without running again."""
    store = str(tmp_path / "runs.db")
    first = flowdsl("run", "flows.py:chunks", "--store", store, "--run-id", "c-1")
    again = flowdsl("run", "flows.py:chunks", "--store", store, "--run-id", "c-1")
    assert (0, 0) == (first.returncode, again.returncode)
    assert first.stdout == again.stdout
    assert "chunk" in first.stderr
    assert "chunk" not in again.stderr  # nothing ran


def test_runs_resume_finishes_a_run_whose_process_died(tmp_path: Path) -> None:
    """A run killed mid-way is resumed by id: done steps are not run again; exit 0."""
    store = str(tmp_path / "runs.db")
    marker = tmp_path / "died"
    data = json.dumps({"marker": str(marker)})
    died = flowdsl("run", "crashy.py", "--input", data, "--store", store, "--run-id", "c-9")
    assert 3 == died.returncode  # the step killed its process
    running = flowdsl("runs", "list", "--store", store, "--status", "running")
    assert ["c-9"] == [r["run_id"] for r in json.loads(running.stdout)]
    resumed = flowdsl("runs", "resume", "c-9", "--store", store, "--module", "crashy.py")
    assert 0 == resumed.returncode, resumed.stderr
    assert "resumed" in resumed.stderr
    assert "step first" not in resumed.stderr  # completed before the crash: not run again
    assert {"marker": str(marker), "first": True, "second": 1} == json.loads(resumed.stdout)
    shown = json.loads(flowdsl("runs", "show", "c-9", "--store", store).stdout)
    assert "completed" == shown["status"]
    assert ["first", "second"] == [s["name"] for s in shown["steps"]]


def test_runs_errors_are_clear(tmp_path: Path) -> None:
    """Unknown run id, unregistered workflow, missing --store: messages and exit 2."""
    store = str(tmp_path / "runs.db")
    flowdsl("run", "hello.py", "--store", store, "--run-id", "h-1")
    assert_clean_error(
        flowdsl("runs", "show", "nope", "--store", store), 2, "no run 'nope' in", "runs list"
    )
    assert_clean_error(
        flowdsl("runs", "resume", "h-1", "--store", store),
        2,
        "workflow 'greet', which is not registered",
        "--module",
    )
    assert_clean_error(
        flowdsl("runs", "resume", "h-1", "--store", store, "--module", "broken.py"),
        2,
        "definition error",
        "broken.py:12",
    )
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a database\n" * 100, encoding="utf-8")
    assert_clean_error(
        flowdsl("runs", "list", "--store", str(not_a_db)),
        2,
        "is not a flowdsl store, or the file is damaged",
    )
    missing = flowdsl("runs", "list")
    assert 2 == missing.returncode
    assert "Missing option '--store'" in missing.stderr


def test_reading_commands_never_create_a_store(tmp_path: Path) -> None:
    """runs list/show/resume on a store file that is not there: exit 2, and no file appears."""
    typo = tmp_path / "runs.bd"
    for store in (str(typo), f"sqlite:///{typo}"):
        for args in (
            ["runs", "list", "--store", store],
            ["runs", "list", "--store", store, "--format", "table"],
            ["runs", "show", "r-1", "--store", store],
            ["runs", "resume", "r-1", "--store", store, "--module", "hello.py"],
            ["events", "send", "r-1", "approved", "--store", store],
        ):
            assert_clean_error(flowdsl(*args), 2, f"no store at '{typo}': the file does not exist")
            assert not typo.exists(), args
    made = tmp_path / "new.db"  # `run --store` is how a store is made
    assert 0 == flowdsl("run", "hello.py", "--store", str(made), "-q").returncode
    assert made.exists()


@contextmanager
def parking_worker(store: Path) -> Iterator[None]:
    """A worker in a thread of this process that parks runs at once (park_after=0)."""
    from polling import serving

    with serving(str(store), park_after=0, poll=0.02):
        yield


def status_becomes(store: Path, run_id: str, status: str) -> Any:
    """Wait (up to 60 s: the worker is a thread) until run `run_id` has `status`; return it."""
    from flowdsl import SQLiteStore

    deadline = time.monotonic() + 60
    with SQLiteStore(store) as opened:
        while True:
            run = opened.get_run(run_id)
            if run is not None and run.status == status:
                return run
            assert time.monotonic() < deadline, f"run {run_id!r} never became {status}: {run}"
            time.sleep(0.01)


@pytest.mark.usefixtures("flowdsl_registry")
def test_runs_list_shows_parked_runs_and_events_send_wakes_them(tmp_path: Path) -> None:
    """runs list says what a parked run waits for and until when; events send wakes it."""
    from flowdsl import END, ok, start_workflow, step, wait_for_event, workflow

    @workflow
    def expense_cli() -> None:
        wait_for_event("approved", returns="decision", timeout=86_400, on_timeout=END)

        @step
        async def pay(ctx: Any) -> Any:
            return ok({"paid": ctx["decision"]["by"]})

    @workflow
    def open_ended_cli() -> None:
        wait_for_event("note")

    store = tmp_path / "runs.db"
    with parking_worker(store):
        before = time.time()
        start_workflow("expense_cli", {}, store=store, run_id="exp-1")
        start_workflow("open_ended_cli", {}, store=store, run_id="oe-1")
        status_becomes(store, "exp-1", "waiting")
        status_becomes(store, "oe-1", "waiting")

        listed = flowdsl("runs", "list", "--store", str(store), "--status", "waiting")
        assert 0 == listed.returncode, listed.stderr
        waiting = {run["run_id"]: run["waiting"] for run in json.loads(listed.stdout)}
        assert {"exp-1", "oe-1"} == set(waiting)
        assert {"waits": ["note"], "events": ["note"], "until": None} == waiting["oe-1"]
        assert (["approved"], ["approved"]) == (
            waiting["exp-1"]["waits"],
            waiting["exp-1"]["events"],
        )
        assert before + 86_400 <= waiting["exp-1"]["until"] <= time.time() + 86_400
        table = flowdsl("runs", "list", "--store", str(store), "--format", "table")
        assert 0 == table.returncode, table.stderr
        header = next(line for line in table.stdout.splitlines() if "run_id" in line)
        columns = [cell.strip() for cell in header.split("┃") if cell.strip()]
        assert ["failed_step", "waits", "events", "until"] == columns[-4:]
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(waiting["exp-1"]["until"]))
        expense_row = next(line for line in table.stdout.splitlines() if "exp-1" in line)
        assert "approved" in expense_row
        assert until in expense_row
        note_row = next(line for line in table.stdout.splitlines() if "oe-1" in line)
        note_cells = [cell.strip() for cell in note_row.split("│")][1:-1]
        assert ["note", "note", ""] == note_cells[-3:], "only an event wakes it: no until"

        sent = flowdsl(
            "events", "send", "exp-1", "approved", "--data", '{"by": "ana"}', "--store", str(store)
        )
        assert 0 == sent.returncode, sent.stderr
        assert "" == sent.stdout
        assert "event 'approved' sent to run 'exp-1'" in sent.stderr
        payload = tmp_path / "note.json"
        payload.write_text("[1, 2]", encoding="utf-8")
        noted = flowdsl(
            "events", "send", "oe-1", "note", "--data", f"@{payload}", "--store", str(store)
        )
        assert 0 == noted.returncode, noted.stderr
        paid = status_becomes(store, "exp-1", "completed")
        done = status_becomes(store, "oe-1", "completed")
    assert "ana" == paid.output["paid"]
    assert [1, 2] == done.output["note"]
    plain = json.loads(flowdsl("runs", "list", "--store", str(store)).stdout)
    assert [None, None] == [run["waiting"] for run in plain], "finished runs wait for nothing"


def test_events_send_errors_are_clear(tmp_path: Path) -> None:
    """No such run, a finished run, bad --data: one message each, exit 2, nothing sent."""
    store = str(tmp_path / "runs.db")
    assert 0 == flowdsl("run", "hello.py", "--store", store, "--run-id", "h-1", "-q").returncode
    assert_clean_error(
        flowdsl("events", "send", "ghost", "approved", "--store", store),
        2,
        "Error: no run 'ghost' in",
        f"flowdsl runs list --store {store}",
    )
    assert_clean_error(
        flowdsl("events", "send", "h-1", "approved", "--store", store),
        2,
        "Error: run 'h-1' has completed",
        "the event 'approved' is refused",
    )
    assert_clean_error(
        flowdsl("events", "send", "h-1", "approved", "--data", "{by: ana}", "--store", store),
        2,
        "Error: --data is not valid JSON (Expecting property name enclosed in double quotes",
        'pass JSON like --data \'{"name": "Ada"}\' or --data @data.json',
    )
    assert_clean_error(
        flowdsl("events", "send", "h-1", "approved", "--data", "@missing.json", "--store", store),
        2,
        "Error: cannot read data file 'missing.json'",
    )
    missing = flowdsl("events", "send", "h-1", "--store", store)
    assert 2 == missing.returncode
    assert "Missing argument 'EVENT'" in missing.stderr


def test_the_api_refuses_a_missing_store_only_when_asked(tmp_path: Path) -> None:
    """open_store(must_exist=True) is a StoreError that creates nothing; by default it creates."""
    from flowdsl.errors import StoreError
    from flowdsl.stores import open_store

    path = tmp_path / "runs.db"
    with pytest.raises(StoreError, match=r"no store at .*: the file does not exist"):
        open_store(path, must_exist=True)
    assert not path.exists()
    store, owned = open_store(f"sqlite:///{path}")
    store.close()
    assert owned
    assert path.exists()


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("sqlite://runs.db", "write 'sqlite:///runs.db'"),
        ("sqlite://", "a SQLite URL is 'sqlite:///' followed by the path"),
        ("sqlite:///", "a SQLite URL is 'sqlite:///' followed by the path"),
        ("mysql://ada@db/flows", "unknown store 'mysql://ada@db/flows'"),
    ],
)
def test_store_urls_are_refused_alike_by_the_api_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, part: str
) -> None:
    """One parser: the same UsageError message from run_workflow(store=) and from --store."""
    from flowdsl import UsageError, ok, run_workflow, step, workflow

    @workflow
    def store_url_probe() -> None:
        @step
        async def one(ctx: Any) -> Any:
            return ok({"ran": True})

    monkeypatch.chdir(tmp_path)  # where a store named 'runs.db' would be made
    with pytest.raises(UsageError) as refused:
        run_workflow(store_url_probe, store=url)
    assert part in str(refused.value)
    hello = str(FIXTURES / "hello.py")
    for args in (["run", hello, "--store", url], ["runs", "list", "--store", url]):
        assert_clean_error(flowdsl(*args, cwd=tmp_path), 2, f"Error: {refused.value}")
    assert [] == list(tmp_path.iterdir())  # nothing was created, not even runs.db


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_store_that_does_not_answer_is_one_error_in_the_api_and_the_cli(
    tmp_path: Path, scheme: str
) -> None:
    """A PostgreSQL URL opens a PostgresStore; one nobody answers is a StoreError, exit 2."""
    from flowdsl import ok, run_workflow, step, workflow
    from flowdsl.errors import StoreError

    @workflow
    def pg_url_probe() -> None:
        @step
        async def one(ctx: Any) -> Any:
            return ok({"ran": True})

    url = f"{scheme}://ada:secret@127.0.0.1:1/flows"  # nothing listens on port 1
    with pytest.raises(StoreError, match="could not open the store at") as refused:
        run_workflow(pg_url_probe, store=url)
    assert "secret" not in str(refused.value)  # a password is never shown
    for args in (
        ["run", str(FIXTURES / "hello.py"), "--store", url],
        ["runs", "list", "--store", url],
    ):
        done = flowdsl(*args, cwd=tmp_path)
        assert 2 == done.returncode, done.stderr
        assert "could not open the store at" in done.stderr
        assert "Connection refused" in done.stderr
        assert "secret" not in done.stderr
    assert [] == list(tmp_path.iterdir())


def test_store_urls_name_relative_and_absolute_files(tmp_path: Path) -> None:
    """sqlite:///rel.db is relative to the current directory, sqlite:////abs absolute."""
    (tmp_path / "work").mkdir()
    absolute = tmp_path / "abs.db"
    for store in ("sqlite:///rel.db", f"sqlite:///{absolute}", "bare.db"):  # 4 slashes: absolute
        done = flowdsl("run", str(FIXTURES / "hello.py"), "--store", store, cwd=tmp_path / "work")
        assert 0 == done.returncode, done.stderr
    assert {"rel.db", "bare.db"} <= {p.name for p in (tmp_path / "work").iterdir()}
    assert absolute.exists()
    listed = flowdsl("runs", "list", "--store", "sqlite:///work/rel.db", cwd=tmp_path)
    assert ["greet"] == [r["workflow"] for r in json.loads(listed.stdout)]


def test_runs_list_prints_run_ids_whole(tmp_path: Path) -> None:
    """A long run id is never cut or wrapped: JSON, a table on a pipe, a table on a terminal."""
    store = str(tmp_path / "runs.db")
    long_id = "nightly-import-" + "0123456789" * 12
    odd_id = "[bold]not markup[/bold]"
    for run_id in (long_id, odd_id):
        made = flowdsl("run", "hello.py", "--store", store, "--run-id", run_id, "-q")
        assert 0 == made.returncode, made.stderr
    listed = flowdsl("runs", "list", "--store", store)
    assert [long_id, odd_id] == [r["run_id"] for r in json.loads(listed.stdout)]
    table = flowdsl("runs", "list", "--store", store, "--format", "table")
    assert 0 == table.returncode, table.stderr
    assert "…" not in table.stdout
    for run_id in (long_id, odd_id):
        assert 1 == sum(run_id in line for line in table.stdout.splitlines()), table.stdout
    if os.name == "posix":
        code, screen, _ = on_a_terminal(
            "runs", "list", "--store", store, "--format", "table", tty="stdout", columns=60
        )
        assert 0 == code
        assert long_id in screen
        assert "…" not in screen


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
@pytest.mark.parametrize("quiet", [False, True], ids=["progress", "quiet"])
def test_ctrl_c_cancels_the_run_records_it_and_exits_1(tmp_path: Path, quiet: bool) -> None:
    """SIGINT during a step: exit 1, a line saying the run was cancelled, status "cancelled"."""
    from flowdsl import SQLiteStore

    store, marker = tmp_path / "runs.db", tmp_path / "waiting"
    args = ["run", "waits.py", "--input", json.dumps({"marker": str(marker)})]
    args += ["--store", str(store), "--run-id", "w-1", *(["-q"] if quiet else [])]
    with subprocess.Popen(
        [str(SCRIPT), *args],
        cwd=FIXTURES,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            deadline = time.monotonic() + 60  # a safety net, not a timing assertion
            while not marker.exists():
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the step never started"
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert 1 == proc.returncode, stderr
    assert "" == stdout
    assert "Aborted!" not in stderr
    assert "Traceback" not in stderr
    assert "run w-1 cancelled in " in stderr
    assert f"resume it with: flowdsl runs resume w-1 --store {store} --module waits.py" in stderr
    with SQLiteStore(store) as opened:
        recorded = opened.get_run("w-1")
    assert recorded is not None
    assert "cancelled" == recorded.status


def test_a_module_that_exits_while_imported_is_named() -> None:
    """sys.exit(3) at import: exit 2 (run) or 1 (check), with a message naming the module."""
    said = "importing 'exits.py' failed: it called sys.exit(3) at import"
    assert_clean_error(flowdsl("run", "exits.py"), 2, said, "exits.py:5", "__main__")
    assert_clean_error(flowdsl("graph", "exits.py"), 2, said)
    checked = flowdsl("check", "exits.py", "hello.py")
    assert 1 == checked.returncode
    assert said in checked.stderr
    assert "hello.py: ok, 1 workflow" in checked.stdout


def test_what_a_module_prints_while_imported_goes_to_stderr() -> None:
    """print() at import never lands in stdout: run, graph and check keep stdout for themselves."""
    ran = flowdsl("run", "noisy.py")
    assert 0 == ran.returncode, ran.stderr
    assert {"quiet": True} == json.loads(ran.stdout)
    drawn = flowdsl("graph", "noisy.py", "--format", "json")
    assert "noisy" == json.loads(drawn.stdout)["workflow"]
    checked = flowdsl("check", "noisy.py")
    assert checked.stdout.startswith("noisy.py: ok, 1 workflow\n")
    for done in (ran, drawn, checked):
        assert "noisy: imported" in done.stderr
        assert "noisy: imported" not in done.stdout


@pytest.mark.parametrize("encoding", [None, "utf-8", "ascii"], ids=["locale", "utf-8", "ascii"])
def test_an_output_with_a_lone_surrogate_prints_as_json(encoding: str | None) -> None:
    """A lone surrogate is written as an escape: stdout is valid JSON in any encoding."""
    env = dict(ENV) if encoding is None else {**ENV, "PYTHONIOENCODING": encoding}
    done = subprocess.run(
        [str(SCRIPT), "run", "odd_output.py:surrogate", "-q"],
        cwd=FIXTURES,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    assert {"name": "\udcff", "plain": "é"} == json.loads(done.stdout.decode("utf-8"))


def _strict(constant: str) -> object:
    raise AssertionError(f"{constant} is not strict JSON")


def test_an_output_with_floats_that_are_not_finite_prints_as_strict_json() -> None:
    """NaN and the infinities are written as their repr: jq and JSON.parse read the text."""
    done = flowdsl("run", "odd_output.py:not_finite", "-q")
    assert 0 == done.returncode, done.stderr
    value = json.loads(done.stdout, parse_constant=_strict)
    assert {"ratio": "nan", "top": "inf", "bottom": "-inf", "x": 0.5} == value
    record = flowdsl("run", "odd_output.py:not_finite", "--output", "run")
    assert 0 == record.returncode, record.stderr
    assert "inf" == json.loads(record.stdout, parse_constant=_strict)["output"]["top"]


@given(st.floats() | st.lists(st.floats(), max_size=3))
def test_json_text_is_strict_json_whatever_the_floats(value: object) -> None:
    """Every float reads back as itself, or, when it is not finite, as its repr."""
    from flowdsl.cli import to_json_text as dumps

    back = json.loads(dumps({"v": value}), parse_constant=_strict)["v"]
    numbers = value if isinstance(value, list) else [value]
    read = back if isinstance(value, list) else [back]
    assert [x if math.isfinite(x) else repr(x) for x in numbers] == read


def test_an_output_nested_too_deep_prints_with_a_placeholder() -> None:
    """900 levels deep: printed down to a depth limit, then a placeholder; the exit status holds."""
    from flowdsl.cli import MAX_DEPTH

    done = flowdsl("run", "odd_output.py:deep", "-q")
    assert 0 == done.returncode, done.stderr
    value = json.loads(done.stdout)["deep"]
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert f"<list nested deeper than {MAX_DEPTH} levels: not shown>" == value
    failed = flowdsl("run", "odd_output.py:deep_failure", "--output", "run")
    assert 1 == failed.returncode, failed.stderr
    record = json.loads(failed.stdout)
    assert ("failed", "fail") == (record["status"], record["failed_step"])
    assert "Traceback" not in failed.stderr.split("failed at step 'fail'")[0]


def test_json_output_never_fails_to_print() -> None:
    """Values that contain themselves, reprs that raise, huge ints: all become JSON text."""
    from flowdsl.cli import MAX_DEPTH
    from flowdsl.cli import to_json_text as dumps

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    looped: list[object] = []
    looped.append(looped)
    value = json.loads(dumps({"loop": looped, "broken": Broken(), "big": 7**20_000}))
    assert "<Broken object: repr() failed>" == value["broken"]
    assert value["big"].startswith("<int of ")
    inner = value["loop"]
    for _ in range(MAX_DEPTH - 1):
        inner = inner[0]
    assert f"<list nested deeper than {MAX_DEPTH} levels: not shown>" == inner


@pytest.mark.parametrize(
    ("source", "parts"),
    [
        (".", ["'.' is a directory", "flowdsl check ./*.py"]),
        ("pkg/", ["'pkg/' is a directory", "flowdsl check pkg/*.py"]),
        (
            "hello.py:greet",
            [
                "check takes modules or files, not a TARGET like 'hello.py:greet'",
                "flowdsl check hello.py",
            ],
        ),
        ("pkg.flows:greet", ["not a TARGET like 'pkg.flows:greet'", "flowdsl check pkg.flows"]),
    ],
)
def test_check_says_what_it_was_given_and_what_it_takes(source: str, parts: list[str]) -> None:
    """A directory or a TARGET: exit 2 with what was given and what to run instead."""
    done = flowdsl("check", source, "hello.py")
    assert 2 == done.returncode
    assert "Traceback" not in done.stderr
    for part in parts:
        assert part in done.stderr
    assert "no such file" not in done.stderr
    assert "hello.py: ok, 1 workflow" in done.stdout  # the others are still checked


def test_a_directory_is_not_a_target() -> None:
    """`run DIR:NAME` says the directory is one, and what to name instead."""
    assert_clean_error(flowdsl("run", "pkg/:greet"), 2, "'pkg/' is a directory", "pkg/FILE.py")


# -- the docs show what the command prints ----------------------------------------------------

ROOT = Path(__file__).parent.parent


def test_docs_mermaid_example_is_the_command_s_output() -> None:
    """The Mermaid block in docs/graphs.md is exactly what `flowdsl graph orders.py` prints."""
    done = flowdsl("graph", "orders.py")
    assert 0 == done.returncode, done.stderr
    doc = (ROOT / "docs" / "graphs.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{done.stdout}```" in doc


def test_docs_svg_shows_every_step_of_the_onboarding_example() -> None:
    """docs/img/onboarding.svg (made by dot) draws the current examples/onboarding.py."""
    done = flowdsl("graph", str(ROOT / "examples" / "onboarding.py"), "--format", "json")
    assert 0 == done.returncode, done.stderr
    svg = (ROOT / "docs" / "img" / "onboarding.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml")
    for node in json.loads(done.stdout)["nodes"]:
        for line in node["label"].splitlines():
            assert f">{line}</text>" in svg, line


def test_json_output_encodes_what_json_has_no_type_for() -> None:
    """Results, exceptions, read-only mappings, sets and other objects become readable JSON."""
    from types import MappingProxyType

    from flowdsl import Err, Ok, RecordedError
    from flowdsl.cli import to_json_text as dumps

    value = MappingProxyType(
        {
            "results": MappingProxyType({"a": Ok(1), "b": Err(ValueError("bad"))}),
            "recorded": RecordedError("myapp.Declined", "no funds"),
            "tags": {"y", "x"},
            "keys": {1: "one", (2, 3): "pair"},
            "other": range(2),
        }
    )
    assert {
        "results": {"a": {"ok": 1}, "b": {"error": {"type": "ValueError", "message": "bad"}}},
        "recorded": {"type": "myapp.Declined", "message": "no funds"},
        "tags": ["x", "y"],
        "keys": {"1": "one", "[2, 3]": "pair"},
        "other": "range(0, 2)",
    } == json.loads(dumps(value))


def test_a_damaged_run_is_named_and_the_others_still_listed(tmp_path: Path) -> None:
    """runs list prints the healthy runs and names the damaged one (exit 2); show says why."""
    import sqlite3

    store = str(tmp_path / "runs.db")
    for run_id in ("h-1", "h-2"):
        assert 0 == flowdsl("run", "hello.py", "--store", store, "--run-id", run_id).returncode
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("UPDATE flowdsl_runs SET output = '{broken' WHERE run_id = 'h-2'")
    conn.close()
    listed = flowdsl("runs", "list", "--store", store)
    assert 2 == listed.returncode
    assert ["h-1"] == [r["run_id"] for r in json.loads(listed.stdout)]
    assert "run 'h-2' is damaged in the store: its output cannot be read" in listed.stderr
    assert "Traceback" not in listed.stderr
    assert_clean_error(flowdsl("runs", "show", "h-2", "--store", store), 2, "run 'h-2' is damaged")


def test_worker_runs_queued_runs_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    """flowdsl worker executes what start_workflow queued; SIGTERM stops it with exit 0."""
    import signal
    import time

    store = str(tmp_path / "runs.db")
    queue = subprocess.run(
        [
            sys.executable,
            "-c",
            "import hello; from flowdsl import start_workflow\n"
            f"for i in range(3): start_workflow('greet', {{'name': str(i)}}, store={store!r}, "
            "run_id=f'q{i}')",
        ],
        cwd=FIXTURES,
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "PYTHONPATH": str(FIXTURES)},
        check=False,
    )
    assert 0 == queue.returncode, queue.stderr
    worker = subprocess.Popen(
        [str(SCRIPT), "worker", "hello.py", "--store", store, "--concurrency", "2"],
        cwd=FIXTURES,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 60
        listed: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            listed = json.loads(flowdsl("runs", "list", "--store", store).stdout)
            if all(run["status"] == "completed" for run in listed) and len(listed) == 3:
                break
            time.sleep(0.05)
        assert ["completed"] * 3 == [run["status"] for run in listed]
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=60)
    assert 0 == worker.returncode, errors
    assert "serving every queue" in errors
    assert "stopped" in errors
    shown = json.loads(flowdsl("runs", "show", "q1", "--store", store).stdout)
    assert {"name": "1", "greeting": "hello 1"} == shown["output"]
