"""WADO-URI (PS3.18 chapter 9) against a running server."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian

from radsight.ingest.service import Outcome

if TYPE_CHECKING:
    from conftest import RunningServer

SHARED_DATA = Path(os.environ.get("RADSIGHT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
WG04 = SHARED_DATA / "dicom" / "wg04"
FILES = ["REF/CT1_UNC", "J2KR/CT1_J2KR", "JPLY/MR1_JPLY", "REF/US1_UNC", "RLE/XA1_RLE"]


@dataclass(frozen=True)
class Loaded:
    source: Path
    params: dict[str, str]


@pytest.fixture(scope="module")
def data(server: RunningServer) -> dict[str, Loaded]:
    out = {}
    for name in FILES:
        path = WG04 / name
        r = server.archive.ingest.ingest_file(path)
        assert r.outcome is Outcome.STORED, r.message
        params = {
            "requestType": "WADO",
            "studyUID": r.study_instance_uid,
            "seriesUID": r.series_instance_uid,
            "objectUID": r.sop_instance_uid,
        }
        out[path.name] = Loaded(path, params)
    return out


@pytest.fixture(scope="module")
def http(server: RunningServer) -> httpx.Client:
    return server.client()


def _image(r: httpx.Response, media_type: str = "image/jpeg") -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_default_is_a_jpeg_of_the_image(data: dict[str, Loaded], http: httpx.Client):
    for name, d in data.items():
        img = _image(http.get("/wado", params=d.params))
        ds = pydicom.dcmread(d.source, stop_before_pixels=True)
        assert img.shape[:2] == (ds.Rows, ds.Columns), name
        assert img.std() > 5, name


def test_dicom_as_stored_and_explicit_little_endian(data: dict[str, Loaded], http: httpx.Client):
    ref = data["CT1_UNC"]
    r = http.get("/wado", params={**ref.params, "contentType": "application/dicom"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    assert r.content == ref.source.read_bytes()  # stored as Explicit VR LE already: the file itself
    j2k = data["CT1_J2KR"]
    stored = http.get("/wado", params={**j2k.params, "contentType": "application/dicom", "transferSyntax": "*"})
    assert stored.content == j2k.source.read_bytes()
    # No transferSyntax: Explicit VR Little Endian (PS3.18 9.1.2.1.6), the same pixels.
    r = http.get("/wado", params={**j2k.params, "contentType": "application/dicom"})
    ds = pydicom.dcmread(io.BytesIO(r.content))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, pixel_array(WG04 / "REF" / "CT1_UNC"))
    jply = data["MR1_JPLY"]  # decodes only through DCMTK
    r = http.get("/wado", params={**jply.params, "contentType": "application/dicom"})
    assert r.status_code == 200
    assert pydicom.dcmread(io.BytesIO(r.content)).pixel_array.std() > 0
    bad = http.get(
        "/wado", params={**j2k.params, "contentType": "application/dicom", "transferSyntax": "1.2.840.10008.1.2.4.50"}
    )
    assert bad.status_code == 406


def test_png_window_size_and_frame(data: dict[str, Loaded], http: httpx.Client):
    d = data["CT1_J2KR"]
    narrow = _image(
        http.get("/wado", params={**d.params, "contentType": "image/png", "windowCenter": "40", "windowWidth": "80"}),
        "image/png",
    )
    wide = _image(
        http.get("/wado", params={**d.params, "contentType": "image/png", "windowCenter": "40", "windowWidth": "2000"}),
        "image/png",
    )
    assert narrow.shape == wide.shape == (512, 512)
    assert not np.array_equal(narrow, wide)
    # A narrow soft-tissue window saturates more pixels than a wide one.
    assert np.count_nonzero((narrow == 0) | (narrow == 255)) > np.count_nonzero((wide == 0) | (wide == 255))
    small = _image(http.get("/wado", params={**d.params, "rows": "100", "columns": "200"}))
    assert small.shape == (100, 100)
    xa = data["XA1_RLE"]
    assert _image(http.get("/wado", params={**xa.params, "frameNumber": "1"})).std() > 0
    assert http.get("/wado", params={**xa.params, "frameNumber": "2"}).status_code == 404
    region = _image(http.get("/wado", params={**d.params, "region": "0,0,0.5,0.5"}))
    assert region.shape == (256, 256)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"requestType": "WADX"}, 400),
        ({"objectUID": ""}, 400),
        ({"studyUID": "not-a-uid"}, 400),
        ({"windowCenter": "40"}, 400),
        ({"windowCenter": "a", "windowWidth": "1"}, 400),
        ({"rows": "0"}, 400),
        ({"rows": "x"}, 400),
        ({"region": "0.5,0,0.2,1"}, 400),
        ({"frameNumber": "-1"}, 400),
        ({"anonymize": "yes"}, 400),
        ({"contentType": "application/pdf"}, 406),
        ({"objectUID": "1.2.3.4"}, 404),
        ({"seriesUID": "1.2.3.4"}, 404),
    ],
)
def test_bad_requests_say_why(data: dict[str, Loaded], http: httpx.Client, change: dict[str, str], status: int):
    params = {**data["CT1_UNC"].params, **change}
    r = http.get("/wado", params={k: v for k, v in params.items() if v != ""})
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_needs_authentication(server: RunningServer, data: dict[str, Loaded]):
    assert httpx.get(server.base_url + "/wado", params=data["CT1_UNC"].params).status_code == 401
