"""``radsight check``: do storage and index agree?"""

from __future__ import annotations

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

    @property
    def ok(self) -> bool:
        return not (self.missing_files or self.size_mismatches or self.orphan_files)


def check_archive(archive: Archive, *, repair: bool = False) -> CheckReport:
    """Compare every index row with storage. ``repair`` removes orphan files (never rows)."""
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
            if repair:
                # An unindexed file was never acknowledged to its sender: safe to remove.
                archive.storage.delete(key)
    return report
