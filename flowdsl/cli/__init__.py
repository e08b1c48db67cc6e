"""The command line: ``flowdsl run | check | graph | runs | worker | events`` (or ``python -m``).

It runs on click and rich, dependencies of flowdsl; where they cannot be imported,
it says how to install them and exits 2. Exit codes: 0 a run completed (or a command
succeeded), 1 a run failed (or ``check`` found a definition error), 2 bad
usage, bad input, or a definition error. Errors the user can fix are one
message on stderr, never a traceback. Progress and logs go to stderr; what a
command produces (a run's output, a graph, run records) goes to stdout.

The modules, in the order a command runs through them: ``_app`` (the click
command tree), ``_commands`` (what each command does, as plain functions),
``_targets`` (loading a TARGET, modules and ``--input``), ``_progress`` (what
stderr shows: the live display, plain lines, logs) and ``_output`` (JSON and
the runs table on stdout).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from ..errors import FlowError
from ._errors import CliError
from ._output import MAX_DEPTH, to_json_text
from ._progress import Progress

__all__ = ["MAX_DEPTH", "Progress", "main", "to_json_text"]

INSTALL_HINT = (
    "flowdsl: the command line needs click and rich (dependencies of flowdsl), "
    "which cannot be imported here; install them: pip install click rich"
)


def main(argv: Sequence[str] | None = None, prog_name: str = "flowdsl") -> NoReturn:
    """The ``flowdsl`` console script."""
    try:
        import click
        import rich  # noqa: F401 - checked here, used by the progress display
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2) from None
    from ._app import cli  # imports click: only after the check above

    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name=prog_name,
            standalone_mode=False,
        )
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        print("Aborted!", file=sys.stderr)
        raise SystemExit(130) from None
    except CliError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    except FlowError as exc:  # a library error the commands did not expect: still no traceback
        print(f"Error: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)
