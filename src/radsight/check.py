"""``radsight check``: do storage and index agree?"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import select

from radsight.archive import Archive
from radsight.index.models import Instance


@dataclass
class CheckReport:
    instances: int = 0
    files: int = 0
    missing_files: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID, key)
    size_mismatches: list[tuple[str, str, int, int]] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    removed_orphans: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing_files or self.size_mismatches or self.orphan_files)


REPAIR_MIN_AGE_SECONDS = 3600.0


def check_archive(
    archive: Archive, *, repair: bool = False, repair_min_age_seconds: float = REPAIR_MIN_AGE_SECONDS
) -> CheckReport:
    """Compare every index row with storage. ``repair`` removes orphan files (never rows).

    Only orphans older than ``repair_min_age_seconds`` are removed: a running server renames a
    file into place just before it commits the row, so a young orphan may be an instance about
    to be acknowledged (and the rows were read before the files were listed).
    """
    report = CheckReport()
    indexed: set[str] = set()
    with archive.db.session() as s:
        rows = s.execute(select(Instance.sop_instance_uid, Instance.storage_key, Instance.file_size))
        for uid, key, size in rows:
            report.instances += 1
            indexed.add(key)
            if not archive.storage.exists(key):
                report.missing_files.append((uid, key))
                continue
            actual = archive.storage.size(key)
            if actual != size:
                report.size_mismatches.append((uid, key, size, actual))
    for key in archive.storage.keys():  # noqa: SIM118 (Storage is not a dict)
        report.files += 1
        if key not in indexed:
            report.orphan_files.append(key)
            if repair and _age_seconds(archive, key) >= repair_min_age_seconds:
                # An old unindexed file was never acknowledged to its sender: safe to remove.
                archive.storage.delete(key)
                report.removed_orphans.append(key)
    return report


def _age_seconds(archive: Archive, key: str) -> float:
    path = archive.storage.local_path(key)
    if path is None:
        return 0.0
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
