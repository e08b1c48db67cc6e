"""The compiled copy of plain JSON data behind `freeze_plain` (see _cfreeze.c)."""

from typing import Any

def configure(
    plain_dicts: tuple[type, ...], plain_lists: tuple[type, ...], small_float: float, /
) -> None: ...
def copy_plain(value: Any, memo: dict[int, Any] = ..., /) -> tuple[Any, int] | None: ...
