"""The store's object reader: a pass over the whole object, with or without a streamed GET."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.object_reader import ObjectReader

DATA = bytes(range(256)) * 10


def test_without_a_stream_the_pass_is_made_of_ranged_reads() -> None:
    asked: list[tuple[int, int]] = []

    def fetch(offset: int, length: int) -> bytes:
        asked.append((offset, length))
        return DATA[offset : offset + length]

    reader = ObjectReader(fetch, size=len(DATA))
    reader.seek(100)
    assert b"".join(reader.chunks(1000)) == DATA[100:]
    assert asked == [(100, 1000), (1100, 1000), (2100, 460)]
    assert reader.tell() == len(DATA)


def test_with_a_stream_the_pass_is_one_request_from_the_position() -> None:
    opened: list[int] = []

    def stream(offset: int, piece: int) -> Iterator[bytes]:
        opened.append(offset)
        for start in range(offset, len(DATA), piece):
            yield DATA[start : start + piece]

    reader = ObjectReader(lambda offset, length: b"", size=len(DATA), stream=stream)
    reader.seek(7)
    pieces = list(reader.chunks(512))
    assert b"".join(pieces) == DATA[7:] and len(pieces) == 5
    assert opened == [7] and reader.tell() == len(DATA)
    assert list(reader.chunks(512)) == [] and opened == [7]  # nothing left: no request


def test_a_stream_that_ends_early_fails_instead_of_passing_for_a_shorter_object() -> None:
    reader = ObjectReader(
        lambda offset, length: b"", size=len(DATA), stream=lambda offset, piece: iter([DATA[:100]])
    )
    with pytest.raises(ConnectionError, match="ended after 100 of 2560 bytes"):
        list(reader.chunks(512))
