"""REST API: AI models and routing rules (reads: any user; writes: admins)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from radsight.ai.package import CARD_FILE, ModelPackageError
from radsight.ai.registry import install, list_models, package_metadata, remove
from radsight.ai.routing import replace_stored_rules, settings_rules, stored_rules
from radsight.api.deps import AdminUser, ArchiveDep, SessionDep, get_current_user
from radsight.api.schemas import ModelDetail, ModelOut, RulesIn, RulesOut
from radsight.index.models import AIModel

router = APIRouter(prefix="/api", dependencies=[Depends(get_current_user)], tags=["ai"])

ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/octet-stream"}
# The upload is read from the request stream (``_receive_zip``), so its body is declared by hand.
_ZIP_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}


def _out(m: AIModel) -> ModelOut:
    return ModelOut(name=m.name, version=m.version, task=m.task, sha256=m.sha256, enabled=m.enabled,
                    added_at=m.added_at, metadata=package_metadata(m))


@router.get("/models")
def models_list(session: SessionDep) -> list[ModelOut]:
    return [_out(m) for m in list_models(session)]


@router.get("/models/{name}")
def models_get(name: str, session: SessionDep) -> ModelDetail:
    m = next((m for m in list_models(session) if m.name == name), None)
    if m is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {name!r} is installed")
    card = Path(m.package_dir) / CARD_FILE
    text = card.read_text(encoding="utf-8") if card.is_file() else None
    return ModelDetail(**dict(_out(m)), model_card=text)


async def _receive_zip(request: Request, dest: Path, limit: int) -> None:
    """The package .zip from an application/zip body or a multipart/form-data file field."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body of {length} bytes exceeds {limit}")
    if media_type in ZIP_TYPES:
        received = 0
        with open(dest, "wb") as fh:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
                fh.write(chunk)
        return
    if media_type == "multipart/form-data":
        form = await request.form()
        try:
            files = [v for v in form.values() if isinstance(v, UploadFile)]
            if len(files) != 1:
                raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                    f"send exactly one file (the package .zip); got {len(files)}")
            with open(dest, "wb") as fh:
                await run_in_threadpool(shutil.copyfileobj, files[0].file, fh, 1024 * 1024)
        finally:
            await form.close()
        return
    raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                        "send the model package as application/zip or as a multipart/form-data file")


@router.post("/models", status_code=status.HTTP_201_CREATED, openapi_extra=_ZIP_BODY)
async def models_add(request: Request, archive: ArchiveDep, _: AdminUser, replace: bool = False) -> ModelOut:
    """Install a model package uploaded as a .zip (``?replace=true`` replaces another version)."""
    workdir = Path(tempfile.mkdtemp(prefix="radsight-upload-"))
    try:
        upload = workdir / "package.zip"
        await _receive_zip(request, upload, archive.settings.max_upload_bytes)
        try:
            model = await run_in_threadpool(install, archive, upload, replace=replace)
        except ModelPackageError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"broken model package: {exc}") from exc
        except ValueError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _out(model)


@router.delete("/models/{name}", status_code=status.HTTP_204_NO_CONTENT)
def models_delete(name: str, archive: ArchiveDep, _: AdminUser) -> None:
    if not remove(archive, name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {name!r} is installed")


def _rules_out(archive: ArchiveDep, session: SessionDep) -> RulesOut:
    try:
        from_settings = settings_rules(archive.settings)
    except ValueError as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, f"invalid routing rules in the settings: {exc}") \
            from exc
    return RulesOut(rules=stored_rules(session), settings_rules=from_settings)


@router.get("/ai/rules")
def rules_get(archive: ArchiveDep, session: SessionDep) -> RulesOut:
    return _rules_out(archive, session)


@router.put("/ai/rules")
def rules_put(body: RulesIn, archive: ArchiveDep, session: SessionDep, _: AdminUser) -> RulesOut:
    """Replace the stored routing rules (the settings' rules stay as they are)."""
    try:
        replace_stored_rules(session, body.rules)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _rules_out(archive, session)
