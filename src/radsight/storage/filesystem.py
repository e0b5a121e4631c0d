from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from radsight.storage.base import StorageError

_SUFFIX = ".dcm"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSystemStorage:
    """Objects as files under ``root/aa/bb/<uuid>.dcm`` (Orthanc's layout).

    Writes go to ``root/tmp`` first, are fsynced, then renamed into place and the
    directory fsynced: a crash leaves either a complete object or only a temporary
    file, which :meth:`clean_spool` removes at the next start.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def spool_dir(self) -> Path:
        return self._tmp

    def clean_spool(self) -> int:
        """Remove temporary files left by a crash; returns how many were removed."""
        removed = 0
        for p in self._tmp.iterdir():
            if p.is_file():
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def _path(self, key: str) -> Path:
        if ".." in key or key.startswith("/"):
            raise StorageError(f"invalid storage key {key!r}")
        return self.root / key

    def put_file(self, source: Path, *, move: bool) -> str:
        name = uuid.uuid4().hex
        key = f"{name[:2]}/{name[2:4]}/{name}{_SUFFIX}"
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = Path(source)
        if move and source.parent.resolve() == self._tmp.resolve():
            # Our own spool file: already complete; make it durable, then rename.
            with open(source, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(source, dest)
        else:
            tmp = self._tmp / f"{name}.part"
            try:
                with open(source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                    dst.flush()
                    os.fsync(dst.fileno())
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if move:
                source.unlink(missing_ok=True)
        _fsync_dir(dest.parent)
        return key

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise StorageError(f"object {key} is missing from storage") from exc

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self) -> Iterator[str]:
        for dirpath, _dirs, files in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            if rel.parts and rel.parts[0] == "tmp":
                continue
            for f in files:
                if f.endswith(_SUFFIX):
                    yield str(rel / f)
