"""The model registry: installed model packages, one active version per name.

Packages live in ``<home>/models/<name>-<version>-<sha8>/`` (copied there atomically: a
temporary folder, then a rename) and are recorded as ``ai_model`` rows. Results keep their
own provenance (model name, version and SHA-256 in ``ai_job`` / ``ai_finding``), so removing
or replacing a model never rewrites what it produced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radsight.ai.package import ModelMetadata, ModelPackage, ModelPackageError, load_package, unpack_package
from radsight.archive import Archive
from radsight.index.models import AIModel
from radsight.index.types import utcnow
from radsight.safe_zip import ZipLimits

log = logging.getLogger(__name__)

_cache: dict[tuple[str, str], ModelPackage] = {}
_cache_lock = threading.Lock()


def models_dir(archive: Archive) -> Path:
    return (archive.settings.home / "models").resolve()


def package_dir_inside(models: Path, path: Path) -> Path:
    """``path`` resolved, if it is a folder directly inside ``models``; ModelPackageError
    otherwise. Every folder the registry creates, replaces or removes passes here first."""
    resolved = path.resolve()
    if resolved.parent != models.resolve() or resolved.name.startswith("."):
        raise ModelPackageError(f"{path}: not a package folder inside the models folder {models}; left alone")
    return resolved


def package_metadata(model: AIModel) -> ModelMetadata:
    """The validated metadata recorded at install (the one reader of ``AIModel.metadata_json``)."""
    return ModelMetadata.model_validate_json(model.metadata_json)


def urgency_thresholds(model: AIModel) -> dict[str, dict[str, float]]:
    """Label name -> {worklist level: probability threshold}; ``{}`` if the recorded metadata is unreadable."""
    try:
        labels = package_metadata(model).labels
    except ValueError:  # pydantic's ValidationError: a row written by another version
        log.warning("model %s: recorded metadata unreadable; no urgency thresholds", model.name)
        return {}
    return {lab.name: {str(k): float(v) for k, v in lab.urgency.items()} for lab in labels}


def list_models(session: Session) -> list[AIModel]:
    return list(session.scalars(select(AIModel).order_by(AIModel.name)))


def _unpack(archive: Archive, source: Path) -> tuple[Path, Path]:
    """(package folder, temporary root to remove afterwards) for a .zip."""
    folder = unpack_package(source, ZipLimits.from_settings(archive.settings))
    tmp_root = Path(tempfile.gettempdir()).resolve()
    root = folder if folder.resolve().parent == tmp_root else folder.parent
    return folder, root


def _seal_tree(root: Path) -> None:
    """Make the copy private (0600 files, 0700 folders: copytree copies the source's modes)
    and durable."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o700)
        for f in files:
            os.chmod(Path(dirpath) / f, 0o600)
            with open(Path(dirpath) / f, "rb") as fh:
                os.fsync(fh.fileno())
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_into_place(archive: Archive, pkg: ModelPackage, dest: Path) -> None:
    """Copy the package to ``dest`` (a folder inside the models folder) atomically; an existing
    ``dest`` with the same weights is kept."""
    dest = package_dir_inside(models_dir(archive), dest)
    if dest.is_dir():
        try:
            existing = load_package(dest, check_onnx=False)
            if existing.metadata == pkg.metadata:
                return
        except ModelPackageError:
            pass
        shutil.rmtree(dest)  # a damaged leftover (e.g. tampered) is replaced by the verified copy
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        shutil.copytree(pkg.path, tmp)
        load_package(tmp, check_onnx=False)  # the copy is what runs: verify its SHA-256 again
        _seal_tree(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            # A concurrent install of the same package renamed its copy first: use that one.
            if not dest.is_dir() or load_package(dest, check_onnx=False).metadata != pkg.metadata:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def install(archive: Archive, source: Path, *, replace: bool = False) -> AIModel:
    """Validate and install the package at ``source`` (folder or .zip).

    Raises ModelPackageError for a broken package and ValueError when another version (or
    other weights under the same version) of the model is installed and ``replace`` is false.
    Installing the same name, version and weights again changes nothing.
    """
    source = Path(source)
    if not source.exists():
        raise ModelPackageError(f"{source}: no such file or folder")
    tmp_root: Path | None = None
    folder = source
    if source.is_file():
        folder, tmp_root = _unpack(archive, source)
    try:
        pkg = load_package(folder)
        return _install_loaded(archive, pkg, replace=replace)
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)


def _install_loaded(archive: Archive, pkg: ModelPackage, *, replace: bool) -> AIModel:
    meta = pkg.metadata
    dest = models_dir(archive) / f"{meta.name}-{meta.version}-{meta.sha256[:8]}"
    with archive.db.session() as s:
        row = s.scalars(select(AIModel).where(AIModel.name == meta.name)).one_or_none()
        if row is not None and row.version == meta.version and row.sha256 == meta.sha256:
            if not Path(row.package_dir).is_dir():  # repair a package folder removed by hand
                _copy_into_place(archive, pkg, Path(row.package_dir))
            return row
        if row is not None and not replace:
            what = (f"version {row.version}" if row.version != meta.version
                    else f"version {row.version} with other weights (SHA-256 {row.sha256[:8]})")
            raise ValueError(
                f"model {meta.name!r} {what} is installed; installing version {meta.version}"
                f" (SHA-256 {meta.sha256[:8]}) needs replace (--replace, or ?replace=true)"
            )
        _copy_into_place(archive, pkg, dest)
        old_dir = Path(row.package_dir) if row is not None else None
        if row is None:
            row = AIModel(name=meta.name)
            s.add(row)
        row.version = meta.version
        row.task = meta.task.value
        row.sha256 = meta.sha256
        row.package_dir = str(dest)
        row.metadata_json = meta.model_dump_json()
        row.enabled = True
        row.added_at = utcnow()
        try:
            s.commit()
        except IntegrityError as exc:  # another request installed the same name meanwhile
            s.rollback()
            other = s.scalars(select(AIModel).where(AIModel.name == meta.name)).one_or_none()
            if other is not None and other.version == meta.version and other.sha256 == meta.sha256:
                return other  # the same package: idempotent (dest is theirs too; keep it)
            raise ValueError(f"model {meta.name!r} was installed concurrently; try again") from exc
    if old_dir is not None and old_dir != dest:
        _remove_package_dir(archive, old_dir)
    log.info("installed model %s %s (%s) in %s", meta.name, meta.version, meta.sha256[:8], dest)
    return row


def _remove_package_dir(archive: Archive, path: Path) -> None:
    """Remove an installed package's folder; only folders inside the models folder are ours."""
    try:
        shutil.rmtree(package_dir_inside(models_dir(archive), path), ignore_errors=True)
    except ModelPackageError as exc:
        log.warning("%s", exc)


def remove(archive: Archive, name: str) -> bool:
    """Uninstall ``name``: its row and package folder. False if it was not installed."""
    with archive.db.session() as s:
        row = s.scalars(select(AIModel).where(AIModel.name == name)).one_or_none()
        if row is None:
            return False
        package_dir = Path(row.package_dir)
        s.delete(row)
        s.commit()
    with _cache_lock:
        for key in [k for k in _cache if k[1] == str(package_dir)]:
            del _cache[key]
    _remove_package_dir(archive, package_dir)
    log.info("removed model %s", name)
    return True


def set_enabled(archive: Archive, name: str, enabled: bool) -> bool:
    """Enable or disable ``name`` (a disabled model is never routed nor run). False if unknown."""
    with archive.db.session() as s:
        row = s.scalars(select(AIModel).where(AIModel.name == name)).one_or_none()
        if row is None:
            return False
        row.enabled = enabled
        s.commit()
    return True


def get_package(archive: Archive, name: str) -> ModelPackage:
    """The installed, enabled package ``name``, validated.

    Loaded once per process and SHA-256 (weights + metadata) and ONNX inputs/outputs checked
    then; later calls come from the cache. LookupError if not installed or disabled,
    ModelPackageError if the files on disk no longer match what was installed.
    """
    with archive.db.session() as s:
        row = s.scalars(select(AIModel).where(AIModel.name == name)).one_or_none()
        if row is None:
            raise LookupError(f"model {name!r} is not installed")
        if not row.enabled:
            raise LookupError(f"model {name!r} is disabled")
        key = (row.sha256, row.package_dir)
        recorded = row.metadata_json
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    pkg = load_package(Path(key[1]))
    if pkg.metadata.sha256 != key[0] or pkg.metadata != ModelMetadata.model_validate_json(recorded):
        raise ModelPackageError(
            f"{pkg.path}: the package on disk differs from the one installed (metadata changed); reinstall it"
        )
    with _cache_lock:
        _cache[key] = pkg
    return pkg


# --- models that ship with RadSight ----------------------------------------------------

BUILTIN_RECORD = "builtin.json"


def builtin_dir() -> Path:
    """The packages shipped inside the radsight distribution (``radsight/models/<name>/``)."""
    return Path(__file__).resolve().parent.parent / "models"


def builtin_packages(source: Path | None = None) -> list[Path]:
    root = builtin_dir() if source is None else source
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "radsight-model.json").is_file())


def _read_record(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): dict(v) for k, v in data.items()} if isinstance(data, dict) else {}


def install_builtin(archive: Archive, source: Path | None = None) -> list[str]:
    """Install (or upgrade) the shipped models; returns the names installed or upgraded.

    An admin's choice wins: a shipped model the admin removed stays removed, and a model of
    the same name that the admin installed (other weights) is left alone. ``builtin.json``
    in the models folder records which shipped version was installed, so an upgrade of
    RadSight replaces only shipped models nobody changed since.
    """
    record_path = models_dir(archive) / BUILTIN_RECORD
    record = _read_record(record_path)
    changed: list[str] = []
    for folder in builtin_packages(source):
        try:
            pkg = load_package(folder)
        except ModelPackageError as exc:  # a broken shipped package must not stop the server
            log.error("shipped model %s cannot be used: %s", folder.name, exc)
            continue
        meta = pkg.metadata
        with archive.db.session() as s:
            row = s.scalars(select(AIModel).where(AIModel.name == meta.name)).one_or_none()
            installed = None if row is None else (row.version, row.sha256)
        seen = record.get(meta.name)
        if seen is None:
            if installed is not None:
                continue  # the admin's own model of that name
        elif installed is None or installed != (seen.get("version"), seen.get("sha256")):
            continue  # removed or replaced by an admin
        elif installed == (meta.version, meta.sha256):
            continue  # up to date
        try:
            _install_loaded(archive, pkg, replace=True)
        except (ModelPackageError, ValueError, OSError) as exc:
            log.error("shipped model %s could not be installed: %s", meta.name, exc)
            continue
        record[meta.name] = {"version": meta.version, "sha256": meta.sha256}
        changed.append(meta.name)
    if changed:
        record_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, record_path)
        log.info("installed shipped models: %s", ", ".join(changed))
    return changed
