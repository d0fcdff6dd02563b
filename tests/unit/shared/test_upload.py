"""Upload part sizes: a few parts side by side for a small file, at most 16 MiB each for a large one."""

from __future__ import annotations

import math

import pytest

from shared.clients.upload import MIN_PART_SIZE, PARALLEL_PARTS, PART_SIZE, part_size

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("length", "parts"),
    [(1, 1), (MIN_PART_SIZE, 1), (12 * MIB, 3), (62 * MIB, PARALLEL_PARTS), (1024 * MIB, 64)],
)
def test_parts_of_a_file(length: int, parts: int) -> None:
    size = part_size(length)
    assert MIN_PART_SIZE <= size <= PART_SIZE
    assert math.ceil(length / size) == parts
