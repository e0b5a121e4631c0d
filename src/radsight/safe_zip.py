"""Reading untrusted ZIP archives (``radsight import``, model packages) without ZIP bombs.

Sizes are checked from the central directory before anything is extracted: the archive's
total, each member's size and each member's compression ratio. Python's ``zipfile`` stops
reading a member at the size its header declares (and then fails the CRC), so a header that
lies cannot make a member write more; the copy below counts the bytes written all the same.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from radsight.config import Settings

# A member smaller than this cannot be a bomb worth refusing, whatever its ratio.
RATIO_FLOOR_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024


class ZipLimitError(Exception):
    """A ZIP archive or member refused by a limit, with the reason."""


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int
    max_member_bytes: int
    max_ratio: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ZipLimits:
        return cls(settings.zip_max_total_bytes, settings.zip_max_member_bytes, settings.zip_max_ratio)

    def check_archive(self, zf: zipfile.ZipFile) -> None:
        """Refuse the whole archive if its members together unpack to more than the limit."""
        total = sum(i.file_size for i in zf.infolist())
        if total > self.max_total_bytes:
            raise ZipLimitError(
                f"the archive unpacks to {total} bytes, more than the limit of {self.max_total_bytes}"
                " (zip_max_total_bytes)"
            )

    def check_member(self, info: zipfile.ZipInfo) -> None:
        """Refuse a member that is too large or compressed suspiciously well (a ZIP bomb)."""
        if info.file_size > self.max_member_bytes:
            raise ZipLimitError(
                f"member unpacks to {info.file_size} bytes, more than the limit of {self.max_member_bytes}"
                " (zip_max_member_bytes)"
            )
        if info.file_size > RATIO_FLOOR_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > self.max_ratio:
                raise ZipLimitError(
                    f"member is compressed {ratio:.0f}:1 ({info.compress_size} bytes to {info.file_size}),"
                    f" more than the limit of {self.max_ratio:.0f}:1 (zip_max_ratio): a ZIP bomb?"
                )

    def copy_member(self, src: IO[bytes], info: zipfile.ZipInfo, dest: Path, head: bytes = b"") -> int:
        """Write ``head`` (bytes already read from ``src``) and the rest of ``src`` to ``dest``
        (created 0600), refusing once more than the member's declared size arrives; ``dest``
        is removed on any failure. Returns the bytes written."""
        limit = min(info.file_size, self.max_member_bytes)
        written = 0
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as dst:
                chunk = head or src.read(_CHUNK)
                while chunk:
                    written += len(chunk)
                    if written > limit:
                        raise ZipLimitError(f"member gives more than the {limit} bytes its header declares")
                    dst.write(chunk)
                    chunk = src.read(_CHUNK)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return written
