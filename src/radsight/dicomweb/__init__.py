"""DICOMweb (PS3.18) at /dicomweb: STOW-RS, QIDO-RS, WADO-RS; WADO-URI at /wado."""

from fastapi import APIRouter, Depends

from radsight.api.deps import get_current_user_async
from radsight.dicomweb import qido, stow, wado, wado_frames, wado_rendered, wado_uri

router = APIRouter(prefix="/dicomweb", dependencies=[Depends(get_current_user_async)], tags=["dicomweb"])
router.include_router(stow.router)
router.include_router(qido.router)
router.include_router(wado.router)
router.include_router(wado_frames.router)
router.include_router(wado_rendered.router)

wado_uri_router = APIRouter(dependencies=[Depends(get_current_user_async)], tags=["wado-uri"])
wado_uri_router.include_router(wado_uri.router)

__all__ = ["router", "wado_uri_router"]
