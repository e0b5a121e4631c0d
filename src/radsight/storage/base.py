from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable


class StorageError(Exception):
    """The storage backend could not keep or give back an object."""


@runtime_checkable
class Storage(Protocol):
    """The small interface every storage backend implements.

    ``put_file`` must be durable when it returns (the ingest service acknowledges an
    instance only after this and the index commit), and never leave a partly written
    object under a key.
    """

    def put_file(self, source: Path, *, move: bool) -> str:
        """Store the file at ``source`` under a new key and return the key.

        ``move`` allows the backend to take the file over (a rename) instead of copying.
        """
        ...

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` under a new key and return the key (same promises as ``put_file``)."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def local_path(self, key: str) -> Path | None:
        """A path on the local file system where the object can be read, if there is one."""
        ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def keys(self) -> Iterator[str]:
        """Every stored key (for consistency checks)."""
        ...

    def spool_dir(self) -> Path:
        """A directory on the same file system for temporary files that may be moved in."""
        ...

    def clean_spool(self) -> int:
        """Remove temporary files no live process owns (an earlier stop's); how many were removed."""
        ...

    def close(self) -> None: ...
