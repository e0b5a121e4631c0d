"""multipart/related responses (PS3.18 8.7.3, RFC 2387), written as a stream.

Parts come from stored files (streamed in large reads, several small files batched into
one write), from bytes, or from a function called only when the stream reaches the part
(transcoding one instance at a time, never a whole study in memory). Also the parsing of
Accept header values with their ``type`` and ``transfer-syntax`` parameters, and the check of
a received body's boundary.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: exactly one of ``storage_key`` (with ``size``), ``data`` or ``produce``."""

    content_type: str
    location: str = ""
    storage_key: str | None = None
    size: int = 0
    data: bytes | None = None
    produce: Callable[[], bytes] | None = None


class MultipartWriter:
    def __init__(self, part_type: str) -> None:
        self.part_type = part_type
        self.boundary = uuid.uuid4().hex

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="{self.part_type}"; boundary={self.boundary}'

    def head(self, part: Part, length: int | None = None) -> bytes:
        lines = [f"--{self.boundary}", f"Content-Type: {part.content_type}"]
        if part.location:
            lines.append(f"Content-Location: {part.location}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    @property
    def tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")

    def total_length(self, parts: Iterable[Part]) -> int | None:
        """The body length if every part's length is known up front (no ``produce``)."""
        total = len(self.tail)
        for part in parts:
            if part.produce is not None:
                return None
            size = len(part.data) if part.data is not None else part.size
            total += len(self.head(part, size)) + size + 2
        return total

    def stream(self, parts: Iterable[Part], open_key: Callable[[str], BinaryIO]) -> Iterator[bytes | memoryview]:
        """The body, in writes of up to about CHUNK_BYTES.

        Consecutive small files are read (readinto) into one fresh buffer with their part
        headers, so a series of 500 KiB CT slices goes out in few large writes; a large file
        goes out in CHUNK_BYTES reads.
        """
        batch: list[tuple[Part, bytes]] = []
        batch_size = 0
        for part in parts:
            if part.storage_key is not None and part.size <= CHUNK_BYTES:
                head = self.head(part, part.size)
                framed = len(head) + part.size + 2
                if batch and batch_size + framed > CHUNK_BYTES:
                    yield self._fill(batch, open_key)
                    batch, batch_size = [], 0
                batch.append((part, head))
                batch_size += framed
                continue
            if batch:
                yield self._fill(batch, open_key)
                batch, batch_size = [], 0
            if part.storage_key is None:
                body = part.data if part.data is not None else part.produce()  # type: ignore[misc]
                yield b"".join((self.head(part, len(body)), body, b"\r\n"))
                continue
            yield self.head(part, part.size)
            with open_key(part.storage_key) as fh:
                remaining = part.size
                while remaining > 0:
                    chunk = bytearray(min(CHUNK_BYTES, remaining))
                    _read_exactly(fh, memoryview(chunk), part.storage_key)
                    remaining -= len(chunk)
                    yield memoryview(chunk)
            yield b"\r\n"
        yield self._fill(batch, open_key, self.tail) if batch else self.tail

    @staticmethod
    def _fill(batch: list[tuple[Part, bytes]], open_key: Callable[[str], BinaryIO], tail: bytes = b"") -> memoryview:
        total = sum(len(head) + part.size + 2 for part, head in batch) + len(tail)
        view = memoryview(bytearray(total))
        pos = 0
        for part, head in batch:
            view[pos : pos + len(head)] = head
            pos += len(head)
            with open_key(part.storage_key) as fh:  # type: ignore[arg-type]
                _read_exactly(fh, view[pos : pos + part.size], part.storage_key)  # type: ignore[arg-type]
            pos += part.size
            view[pos : pos + 2] = b"\r\n"
            pos += 2
        view[pos:] = tail
        return view


def _read_exactly(fh: BinaryIO, view: memoryview, key: str) -> None:
    pos = 0
    while pos < len(view):
        n = fh.readinto(view[pos:])  # type: ignore[attr-defined]
        if not n:
            raise OSError(f"stored object {key} is shorter than indexed")
        pos += n


MAX_BOUNDARY_LENGTH = 70
"""RFC 2046 5.1.1: a boundary is 1 to 70 characters."""


def boundary_error(boundary: str) -> str | None:
    """Why a received multipart body's boundary is refused, None if it is acceptable."""
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        return (
            f"the multipart boundary has {len(boundary)} characters; RFC 2046 allows at most {MAX_BOUNDARY_LENGTH}"
        )
    return None


# -- Accept header ---------------------------------------------------------------

# Ranges that leave the media type of the parts open.
ANY_TYPE = frozenset({"*/*", "application/*"})
_ALIASES = {"image/x-jls": "image/jls", "image/x-dicom-rle": "image/dicom-rle"}


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One entry of an Accept header: a media type with its parameters."""

    media_type: str
    params: dict[str, str]
    q: float = 1.0

    @property
    def type_param(self) -> str | None:
        value = self.params.get("type")
        return value.lower() if value else None

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")

    @property
    def part_type(self) -> str:
        """The media type of the parts this range asks for ("*/*" where it leaves that open)."""
        if self.media_type == "multipart/related":
            return _ALIASES.get(self.type_param or "*/*", self.type_param or "*/*")
        if self.media_type in ("multipart/*", "*/*"):
            return "*/*"
        return _ALIASES.get(self.media_type, self.media_type)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


def parse_accept(value: str | None) -> list[MediaRange]:
    """Media ranges, most preferred first (q=0 left out); ``*/*`` when no header is given.

    Hand-written because the HTTP libraries at hand parse only plain media types, not the
    DICOM ``type`` and ``transfer-syntax`` parameters inside ``multipart/related``.
    """
    if not value or not value.strip():
        return [MediaRange("*/*", {})]
    ranges: list[MediaRange] = []
    for entry in _split_outside_quotes(value, ","):
        pieces = [p.strip() for p in _split_outside_quotes(entry, ";")]
        if not pieces or not pieces[0]:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for piece in pieces[1:]:
            name, _, val = piece.partition("=")
            name, val = name.strip().lower(), val.strip().strip('"').strip()
            if name == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
            elif name:
                params[name] = val
        if q > 0:
            ranges.append(MediaRange(pieces[0].lower(), params, q))
    ranges.sort(key=lambda r: -r.q)
    return ranges
