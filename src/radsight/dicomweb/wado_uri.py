"""WADO-URI (PS3.18 chapter 9): ``/wado?requestType=WADO&...``, for older viewers."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
