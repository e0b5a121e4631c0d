"""REST API: AI findings."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from radsight.api.deps import get_current_user

router = APIRouter(prefix="/api", dependencies=[Depends(get_current_user)], tags=["ai"])
