"""DICOMweb STOW-RS (PS3.18)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
