from __future__ import annotations

import fcntl
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


def _rename_into(source: Path, dest: Path) -> None:
    """Rename, creating the two-level key folder on first use (not checked before every rename:
    of 65,536 folders almost all exist after a while)."""
    try:
        os.replace(source, dest)
    except FileNotFoundError:
        if not os.path.exists(source):
            raise
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, dest)


class FileSystemStorage:
    """Objects as files under ``root/aa/bb/<uuid>.dcm`` (Orthanc's layout).

    Writes go to a spool folder under ``root/tmp`` first, are fsynced, then renamed into
    place and the directory fsynced: a crash leaves either a complete object or only a
    temporary file, which :meth:`clean_spool` removes at the next start.

    Each opened storage has its own spool folder, locked (``flock``) for as long as it is
    open, because several processes may open one archive at once (``radsight serve`` and a
    ``radsight import`` or ``check``): cleaning removes only folders whose owner is gone,
    never the files a running server is receiving. The kernel releases the lock when its
    process dies, even by SIGKILL.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp_root = self.root / "tmp"
        self._tmp = self._tmp_root / f"proc-{uuid.uuid4().hex}"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._tmp_resolved = self._tmp.resolve()
        self._lock_fd: int | None = os.open(self._tmp.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def spool_dir(self) -> Path:
        return self._tmp

    def clean_spool(self) -> int:
        """Remove temporary files left by processes that stopped; returns how many were removed."""
        removed = 0
        for p in self._tmp_root.iterdir():
            if p == self._tmp or p.suffix == ".lock":
                continue
            if p.is_file():  # the layout before per-process spool folders
                p.unlink(missing_ok=True)
                removed += 1
                continue
            lock = p.with_suffix(".lock")
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                fd = None
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue  # its owner is still running
                os.close(fd)
            removed += sum(1 for _ in p.iterdir())
            shutil.rmtree(p, ignore_errors=True)
            lock.unlink(missing_ok=True)
        return removed

    def spool_leftovers(self) -> list[Path]:
        """This storage's temporary files and every other process's spool folder (for checks run
        while no other process has the archive open, e.g. right after a restart)."""
        found = [f for f in self._tmp.iterdir()]
        for p in self._tmp_root.iterdir():
            if p != self._tmp and p.suffix != ".lock":
                found.append(p)
        return found

    def close(self) -> None:
        """Release this storage's spool folder (nothing in it is needed after a clean stop)."""
        if self._lock_fd is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp.with_suffix(".lock").unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _path(self, key: str) -> Path:
        if ".." in key or key.startswith("/"):
            raise StorageError(f"invalid storage key {key!r}")
        return self.root / key

    def put_file(self, source: Path, *, move: bool) -> str:
        name = uuid.uuid4().hex
        key = f"{name[:2]}/{name[2:4]}/{name}{_SUFFIX}"
        dest = self._path(key)
        source = Path(source)
        if move and self._is_spool(source):
            # Our own spool file: already complete; make it durable, then rename.
            fd = os.open(source, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _rename_into(source, dest)
        else:
            tmp = self._tmp / f"{name}.part"
            try:
                with open(source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                    dst.flush()
                    os.fsync(dst.fileno())
                _rename_into(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if move:
                source.unlink(missing_ok=True)
        _fsync_dir(dest.parent)
        return key

    def _is_spool(self, path: Path) -> bool:
        # The ingest service's spool paths are built from self._tmp, so the plain comparison
        # decides almost always; resolve() (a few system calls) only for other spellings.
        return path.parent == self._tmp or path.parent.resolve() == self._tmp_resolved

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
        for dirpath, dirs, files in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            if not rel.parts and "tmp" in dirs:
                dirs.remove("tmp")
            for f in files:
                if f.endswith(_SUFFIX):
                    yield str(rel / f)
