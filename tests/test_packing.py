"""Large journal values, compressed for the SQLite store: what goes in comes out."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl.stores._packing import PACK_FROM, Unpackable, packed, unpacked

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

texts = st.text() | st.builds(
    lambda piece, times: piece * times, st.text(min_size=1, max_size=64), st.integers(0, 400)
)
"""Any text, and long repetitive texts (as JSON is) on both sides of `PACK_FROM`."""


@given(texts)
def test_a_value_reads_back_as_the_text_it_was(text: str) -> None:
    value = packed(text)
    assert text == unpacked(value)
    assert isinstance(value, bytes) == (len(text) >= PACK_FROM)
    if isinstance(value, str):
        assert value is text  # a short text is written as it is, not copied


def test_a_long_text_is_written_smaller() -> None:
    text = '{"id": 1, "sku": "SKU-00001", "tags": ["blue", "large"]}, ' * 200
    value = packed(text)
    assert isinstance(value, bytes)
    assert len(value) < len(text) / 10


@pytest.mark.parametrize(
    "blob",
    [
        b"plain bytes",  # not a frame at all
        b"\x28\xb5\x2f\xfd\x00\x00",  # a frame's magic number, then nothing that follows
        zstd.compress(b"\xff\xfe not UTF-8"),  # a whole frame, of bytes that are not text
    ],
)
def test_bytes_that_are_not_a_frame_of_text_are_unpackable(blob: bytes) -> None:
    with pytest.raises(Unpackable, match=f"{len(blob)} bytes that are not a Zstandard frame"):
        unpacked(blob)
