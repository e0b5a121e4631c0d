"""The web viewer and worklist: built front-end assets served at ``/``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
