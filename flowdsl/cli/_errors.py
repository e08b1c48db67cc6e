"""The command line's one error: a problem the user can fix, shown without a traceback."""

from __future__ import annotations

from ..errors import FlowError

__all__ = ["CliError"]


class CliError(FlowError):
    """A problem the user can fix: shown as one line on stderr, exits with `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
