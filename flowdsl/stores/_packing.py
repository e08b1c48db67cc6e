"""Large journal values kept compressed (Zstandard) in the SQLite store.

A value of `PACK_FROM` characters or more (a step's outcome, a run's input
or output) is written as a Zstandard frame of its UTF-8 text, in a BLOB; a
shorter one stays text. A row is read back by its type: SQLite returns a
BLOB as bytes and text as str, so rows written before compression read as
they always did, and no row says twice what it is.

What this buys is disk writes, which is most of what a large value costs
SQLite: 94 KB of JSON (800 flat records) becomes 5.4 KB in 0.07 ms, and
each page not written saves its write to the log and its copy into the
database file at the next checkpoint (13-17 us a page, two fsyncs). Below
a page of text there is nothing to save.

Zstandard is in the standard library from Python 3.14 (`compression.zstd`);
before that, the `backports.zstd` package is the same module.
"""

from __future__ import annotations

import sys
from typing import Final

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = ["PACK_FROM", "Unpackable", "packed", "unpacked"]

PACK_FROM: Final = 4096
"""The length (in characters) from which a value is written compressed: one page."""
_LEVEL: Final = 1
"""Zstandard's fastest standard level: on JSON it keeps most of what level 3 gains."""
_END: Final = zstd.ZstdCompressor.FLUSH_FRAME

_compressor = zstd.ZstdCompressor(level=_LEVEL)
"""Made once: its context costs more to set up than compressing a few KB does.
It holds a lock of its own, so threads writing to different stores take turns."""


def packed(text: str) -> str | bytes:
    """`text` as it is written: itself when short, else a Zstandard frame of its UTF-8."""
    if len(text) < PACK_FROM:
        return text
    return _compressor.compress(text.encode(), _END)


class Unpackable(ValueError):
    """A BLOB that is not a Zstandard frame of UTF-8 text (a damaged row)."""


def unpacked(value: str | bytes) -> str:
    """The text of a value as `packed` wrote it (a str is returned as it is)."""
    if isinstance(value, str):
        return value
    try:
        return zstd.decompress(value).decode()
    except (zstd.ZstdError, UnicodeDecodeError) as exc:
        msg = f"{len(value)} bytes that are not a Zstandard frame of UTF-8 text ({exc})"
        raise Unpackable(msg) from None
