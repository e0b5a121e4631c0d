from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from radsight.storage.base import StorageError

_SUFFIX = ".dcm"
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs_durable(path: Path) -> None:
    """Create ``path`` and its missing parents, fsyncing the parent of each: a folder's entry is
    data of its parent, and POSIX does not promise that fsyncing the new folder (or a file in
    it) makes that entry survive a crash."""
    missing = []
    p = path
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another thread made it meanwhile
            d.mkdir(mode=0o700)
        _fsync_dir(d.parent)


def _rename_into(source: str | Path, dest: str | Path) -> None:
    """Rename, creating the key folder on first use (not checked before every rename: after
    the first instances of a day its 256 folders exist)."""
    try:
        os.replace(source, dest)
    except FileNotFoundError:
        if not os.path.exists(source):
            raise
        _make_dirs_durable(Path(dest).parent)
        os.replace(source, dest)


class FileSystemStorage:
    """Objects as files under ``root/YYYYMMDD/ab/<uuid>.dcm`` (UTC date of storage, then the
    first two hex digits of the random name; keys are recorded in the index, so objects stored
    under Orthanc's ``ab/cd/<uuid>`` layout by earlier versions stay where they are).

    Why this layout: a new folder is the dearest file-system operation of ingest (an inode
    allocated by ext4's directory allocator, and its parent fsynced), and the two-level random
    layout created one for most instances until its 65,536 folders existed; per day there are
    now at most 256. A day's objects are in one folder, which incremental backups and
    retention like. Measured: 0.37 -> 0.29 ms CPU per stored file (create, write 180 KB, fsync
    file and folder; docs/benchmarks.md).

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
        # Patient data: the folders 0700 and every object 0600, whatever the process umask.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self._tmp_root.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self._tmp_root, 0o700)
        self._tmp.mkdir(mode=0o700)
        self._tmp_resolved = self._tmp.resolve()
        self._root_str, self._tmp_str = str(self.root), str(self._tmp)
        self._today = (-1, "")
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

    def _new_key(self) -> tuple[str, str, Path]:
        """A new object's (name, key, final path)."""
        name = uuid.uuid4().hex
        key = f"{self._day()}/{name[:2]}/{name}{_SUFFIX}"
        return name, key, self._path(key)

    def put_file(self, source: Path, *, move: bool) -> str:
        name, key, dest = self._new_key()
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
                with open(source, "rb") as src, open(os.open(tmp, _NEW_FILE, 0o600), "wb") as dst:
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

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` (a whole object received into memory) under a new key, durably.

        Paths as plain strings (os.path), not Path objects: this runs once per STOW-RS
        instance (the cost is in docs/benchmarks.md).
        """
        name = uuid.uuid4().hex
        folder = f"{self._root_str}/{self._day()}/{name[:2]}"
        key = f"{folder[len(self._root_str) + 1:]}/{name}{_SUFFIX}"
        dest = f"{folder}/{name}{_SUFFIX}"
        tmp = f"{self._tmp_str}/{name}.part"
        try:
            fd = os.open(tmp, _NEW_FILE, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            _rename_into(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(folder)
        return key

    def _day(self) -> str:
        """Today's folder name (UTC), formatted again only when the second changes."""
        now = int(time.time())
        at, name = self._today  # one tuple: threads never see one's second with another's name
        if now != at:
            name = time.strftime("%Y%m%d", time.gmtime(now))
            self._today = (now, name)
        return name

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
