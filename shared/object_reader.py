"""A read-only, seekable file over an object in the store, read by ranged or streamed GETs."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any


class ObjectReader(io.RawIOBase):
    """A read-only, seekable file over an object: each read is one ranged GET.

    Parquet readers jump to the footer and then to the column chunks they need, so a file
    this size never has to be held in memory whole; wrap it in ``io.BufferedReader`` for
    readers that take many small reads (a CSV parser).
    """

    def __init__(
        self,
        fetch: Callable[[int, int], bytes],
        *,
        size: int,
        etag: str | None = None,
        stream: Callable[[int, int], Iterator[bytes]] | None = None,
    ) -> None:
        super().__init__()
        self._fetch = fetch
        self._stream = stream
        self._size = size
        self._position = 0
        self.etag = etag

    @property
    def size(self) -> int:
        """The object's length in bytes."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, start + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position (all the rest when negative)."""
        end = self._size if size is None or size < 0 else min(self._size, self._position + size)
        if end <= self._position:  # a GET of length 0 would mean "to the end"
            return b""
        data = self._fetch(self._position, end - self._position)
        self._position += len(data)
        return data

    def chunks(self, size: int) -> Iterator[bytes]:
        """The bytes from the current position to the end, about ``size`` at a time.

        One streamed GET where the store gives one (a ranged GET per ``read`` otherwise): a pass
        over a large object then costs one request and a piece's memory.
        """
        if self._stream is None:
            while chunk := self.read(size):
                yield chunk
            return
        if self._position >= self._size:
            return
        for chunk in self._stream(self._position, size):
            self._position += len(chunk)
            yield chunk
        if self._position != self._size:  # a cut connection must not pass for a shorter file
            raise ConnectionError(f"the object's stream ended after {self._position} of {self._size} bytes")

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
