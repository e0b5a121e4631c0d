"""WADO-RS against a running server, with the real WG04, dcmqi, Siemens CT and pydicom files."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, get_frame
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import select
from tests.conftest import verified_for_a_minute

from dicom_factory import make_ct
from radsight.imaging.decode import decompressed_copy
from radsight.index.models import Instance
from radsight.ingest.importer import import_paths
from radsight.ingest.service import IngestResult, Outcome

AS_STORED = {"Accept": "multipart/related; type=application/dicom; transfer-syntax=*"}

if TYPE_CHECKING:
    from conftest import RunningServer

SHARED_DATA = Path(os.environ.get("RADSIGHT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
WG04 = SHARED_DATA / "dicom" / "wg04"
CT_SERIES = SHARED_DATA / "ct" / "totalsegmentator" / "example_ct_dicom"
PYDICOM_FILES = [
    "emri_small_jpeg_2k_lossless.dcm",  # 10 frames, JPEG 2000 lossless
    "emri_small_RLE.dcm",  # 10 frames, RLE
    "emri_small.dcm",  # 10 frames, native
    "color3d_jpeg_baseline.dcm",  # 120 frames, JPEG baseline YBR_FULL_422
    "examples_palette.dcm",  # PALETTE COLOR
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
]
LOSSLESS = ("REF", "RLE", "JPLL", "JLSL", "J2KR")


@dataclass(frozen=True)
class Loaded:
    source: Path
    study: str
    series: str
    sop: str
    ts: str

    @property
    def path(self) -> str:
        return f"/dicomweb/studies/{self.study}/series/{self.series}/instances/{self.sop}"


def _load(server: RunningServer, path: Path) -> Loaded:
    result = server.archive.ingest.ingest_file(path)
    assert result.outcome is Outcome.STORED, (path, result.message)
    ts = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    return Loaded(path, result.study_instance_uid, result.series_instance_uid, result.sop_instance_uid, ts)


def unique_copy(source: Path, dest: Path) -> Path:
    """pydicom's test files share UIDs with each other and with WG04: give the copy its own."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.save_as(dest)
    return dest


@pytest.fixture(scope="module")
def data(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Loaded]:
    """Every WG04 file, the pydicom multi-frame and colour files, the CT series (UIDs filled)."""
    loaded: dict[str, Loaded] = {}
    for f in sorted(WG04.glob("*/*")):
        if f.is_file() and not f.suffix:
            loaded[f.name] = _load(server, f)
    tmp = tmp_path_factory.mktemp("pydicom-files")
    for name in PYDICOM_FILES:
        loaded[name] = _load(server, unique_copy(Path(get_testdata_file(name)), tmp / name))
    # A series mixing small instances and one over the 4 MiB streaming chunk (2400 x 1200 x 16 bit).
    study, series = generate_uid(), generate_uid()
    for i, (rows, columns) in enumerate([(64, 64), (2400, 1200), (64, 64)]):
        path = tmp / f"mixed{i}.dcm"
        make_ct(path, study_uid=study, series_uid=series, rows=rows, columns=columns, instance_number=i + 1)
        loaded[f"mixed{i}"] = _load(server, path)

    def on_result(name: str, result: IngestResult) -> None:
        ts = str(pydicom.dcmread(name, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        loaded["ct/" + Path(name).name] = Loaded(
            Path(name), result.study_instance_uid, result.series_instance_uid, result.sop_instance_uid, ts
        )

    summary = import_paths(server.archive.ingest, [CT_SERIES], fill_missing_uids=True, on_result=on_result)
    assert summary.counts["stored"] == 20, summary
    return loaded


@pytest.fixture(scope="module")
def http(server: RunningServer) -> httpx.Client:
    return server.client()


@pytest.fixture(scope="module")
def dwc(server: RunningServer) -> DICOMwebClient:
    session = requests.Session()
    session.auth = (server.username, server.password)
    return DICOMwebClient(server.dicomweb, session=session)


def parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related body (written here so the server's framing is checked)."""
    ctype = response.headers["content-type"]
    assert ctype.startswith("multipart/related"), ctype
    match = re.search(r"boundary=\"?([^\";]+)\"?", ctype)
    assert match
    boundary = match.group(1).encode()
    body = response.content
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"--" + boundary + b"--\r\n")
    out = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        assert content.endswith(b"\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        out.append(({k.lower(): v for k, v in headers.items()}, content[:-2]))
    return out


def ct_series(data: dict[str, Loaded]) -> tuple[str, str, list[str]]:
    """The Siemens CT series (20 slices, JPEG 2000 lossless, UIDs filled on import)."""
    ct = [d for name, d in data.items() if name.startswith("ct/")]
    assert len(ct) == 20 and len({(d.study, d.series) for d in ct}) == 1
    return ct[0].study, ct[0].series, [d.sop for d in ct]


def stored_path(server: RunningServer, sop: str) -> Path:
    with server.archive.db.session() as s:
        key = s.scalar(select(Instance.storage_key).where(Instance.sop_instance_uid == sop))
    path = server.archive.storage.local_path(key)
    assert path is not None
    return path


# -- retrieve --------------------------------------------------------------------------------


def test_every_instance_round_trips_byte_identical(server: RunningServer, data: dict[str, Loaded], http: httpx.Client):
    # What was received, or for the CT series (a changed copy stored on the operator's
    # request: its UIDs were filled) what was stored.
    expected = {
        d.sop: stored_path(server, d.sop).read_bytes() if name.startswith("ct/") else d.source.read_bytes()
        for name, d in data.items()
    }
    seen: list[str] = []
    for study in sorted({d.study for d in data.values()}):
        r = http.get(f"/dicomweb/studies/{study}")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
        assert int(r.headers["content-length"]) == len(r.content)
        for headers, body in parts(r):
            ds = pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True)
            sop = str(ds.file_meta.MediaStorageSOPInstanceUID)
            assert headers["content-type"] == f"application/dicom; transfer-syntax={ds.file_meta.TransferSyntaxUID}"
            assert (
                headers["content-location"]
                == f"{server.base_url}/dicomweb/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{sop}"
            )
            assert body == expected[sop], sop
            seen.append(sop)
    assert sorted(seen) == sorted(expected)


def test_retrieve_with_dicomweb_client(data: dict[str, Loaded], dwc: DICOMwebClient):
    d = data["CT1_J2KR"]
    ds = dwc.retrieve_instance(d.study, d.series, d.sop)
    assert ds.SOPInstanceUID == d.sop
    assert np.array_equal(ds.pixel_array, pixel_array(d.source))
    series = dwc.retrieve_series(d.study, d.series)
    assert sorted(s.SOPInstanceUID for s in series) == sorted(x.sop for x in data.values() if x.series == d.series)


@pytest.mark.parametrize("syntax", ["RLE", "JPLL", "JLSL", "J2KR", "J2KI", "JLSN"])
def test_transcoded_instance_has_the_original_pixels(data: dict[str, Loaded], http: httpx.Client, syntax: str):
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={ExplicitVRLittleEndian}'
    for name, d in data.items():
        if not name.endswith(f"_{syntax}") or not name.startswith(("CT1", "MR2", "NM1", "US1", "VL1", "XA1")):
            continue  # one of each kind; test_imaging decodes every WG04 file
        r = http.get(d.path, headers={"Accept": accept})
        assert r.status_code == 200, (name, r.text)
        [(headers, body)] = parts(r)
        assert headers["content-type"] == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
        ds = pydicom.dcmread(io.BytesIO(body))
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPInstanceUID == d.sop
        got = ds.pixel_array
        assert np.array_equal(got, pixel_array(d.source)), name
        if syntax in LOSSLESS:
            # Lossless: exactly the uncompressed reference image of the WG04 set.
            ref = WG04 / "REF" / name.replace(f"_{syntax}", "_UNC")
            if ref.exists():
                assert np.array_equal(got, pixel_array(ref)), name


def test_lossy_jpeg_transcodes_through_dcmtk(data: dict[str, Loaded], http: httpx.Client):
    d = data["MR1_JPLY"]
    r = http.get(
        d.path,
        headers={"Accept": f"multipart/related; type=application/dicom; transfer-syntax={ExplicitVRLittleEndian}"},
    )
    assert r.status_code == 200, r.text
    ds = pydicom.dcmread(io.BytesIO(parts(r)[0][1]))
    with decompressed_copy(d.source, d.ts) as copy:
        expected = pixel_array(copy)
    assert np.array_equal(ds.pixel_array, expected)
    assert ds.pixel_array.std() > 0
    assert ds.SOPInstanceUID == d.sop  # DCMTK keeps the UID


def test_series_transcode_streams_every_instance(server: RunningServer, data: dict[str, Loaded], http: httpx.Client):
    study, series, _sops = ct_series(data)
    accept = f"multipart/related; type=application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
    r = http.get(f"/dicomweb/studies/{study}/series/{series}", headers={"Accept": accept})
    assert r.status_code == 200
    got = parts(r)
    assert len(got) == 20
    for _, body in got:
        ds = pydicom.dcmread(io.BytesIO(body))
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.pixel_array.shape == (512, 512)


def test_retrieve_negotiation_and_errors(data: dict[str, Loaded], http: httpx.Client):
    d = data["CT1_UNC"]
    jpeg = "multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"
    assert http.get(d.path, headers={"Accept": jpeg}).status_code == 406
    # A list where one entry is acceptable: that one is used.
    r = http.get(d.path, headers={"Accept": f"{jpeg}, multipart/related; type=application/dicom; q=0.5"})
    assert r.status_code == 200
    assert parts(r)[0][1] == d.source.read_bytes()
    assert (
        http.get(d.path, headers=AS_STORED).status_code
        == 200
    )
    assert http.get(d.path, headers={"Accept": "image/png"}).status_code == 406
    other = data["CT2_UNC"]
    assert http.get(f"/dicomweb/studies/{d.study}/series/{other.series}").status_code == 404
    assert http.get(f"/dicomweb/studies/{other.study}/series/{d.series}/instances/{d.sop}").status_code == 404
    assert http.get("/dicomweb/studies/1.2.3.4.5").status_code == 404
    assert http.get(f"/dicomweb/studies/{d.study}/series/{d.series}/instances/1.2.3").status_code == 404


# -- metadata --------------------------------------------------------------------------------


def test_series_metadata_for_a_viewer_and_cache(server: RunningServer, data: dict[str, Loaded], http: httpx.Client):
    study, series, sops = ct_series(data)
    r = http.get(f"/dicomweb/studies/{study}/series/{series}/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom+json")
    objects = r.json()
    assert len(objects) == 20
    for obj in objects:
        for tag in ("00280010", "00280011", "00280030", "00200032", "00200037", "00280100", "00281052", "00080016"):
            assert obj[tag].get("Value"), tag
        assert obj["00280010"]["Value"] == [512]
        assert obj["00083002"]["Value"] == ["1.2.840.10008.1.2.4.90"]
        # SOP Class UID is empty in these files; the metadata gives the file meta value.
        assert obj["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]
        uri = obj["7FE00010"]["BulkDataURI"]
        assert uri.startswith(server.base_url + "/dicomweb/studies/")
    with server.archive.db.session() as s:
        cached = s.scalars(select(Instance.metadata_json).where(Instance.sop_instance_uid.in_(sops))).all()
    assert len(cached) == 20 and all(cached)
    again = http.get(f"/dicomweb/studies/{study}/series/{series}/metadata")
    assert again.content == r.content
    # The pixel data URI works and gives the stored compressed frame when accepted as is.
    uri = objects[0]["7FE00010"]["BulkDataURI"]
    sop = objects[0]["00080018"]["Value"][0]
    b = http.get(uri, headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"})
    assert b.status_code == 200
    [(headers, frame)] = parts(b)
    assert "transfer-syntax=1.2.840.10008.1.2.4.90" in headers["content-type"]
    src = pydicom.dcmread(stored_path(server, sop))
    assert frame == get_frame(src.PixelData, 0)
    decoded = http.get(uri, headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert parts(decoded)[0][1] == src.pixel_array.astype("<u2").tobytes()


def test_instance_metadata_fills_the_series_and_bulk_data_uris_work(
    server: RunningServer, data: dict[str, Loaded], http: httpx.Client, dwc: DICOMwebClient
):
    d = data["examples_palette.dcm"]
    ds = pydicom.Dataset.from_json(
        dwc.retrieve_instance_metadata(d.study, d.series, d.sop), bulk_data_uri_handler=lambda _tag, _vr, _uri: b""
    )
    assert ds.Rows == 350 and ds.PhotometricInterpretation == "PALETTE COLOR"
    # dicomweb-client sends a Host header without the port, so its URIs lack it: ask with httpx.
    meta = http.get(f"{d.path}/metadata").json()[0]
    uris = [v["BulkDataURI"] for v in meta.values() if "BulkDataURI" in v]
    assert uris == [f"{server.base_url}{d.path}/bulkdata/7FE00010"]
    # The 512-byte palette LUTs are inline; the bulk data resource gives them too.
    assert meta["00281201"]["InlineBinary"]
    original = pydicom.dcmread(d.source)
    for uri in [*uris, f"{server.base_url}{d.path}/bulkdata/00281201"]:
        tag = uri.rsplit("/", 1)[1]
        r = httpx.get(
            uri,
            auth=(server.username, server.password),
            headers={"Accept": "multipart/related; type=application/octet-stream"},
        )
        assert r.status_code == 200, uri
        [(_, value)] = parts(r)
        assert value == original[int(tag, 16)].value, tag
    single = http.get(f"{d.path}/bulkdata/00281201", headers={"Accept": "application/octet-stream"})
    assert single.headers["content-type"] == "application/octet-stream"
    assert single.content == original.RedPaletteColorLookupTableData
    default = http.get(f"{d.path}/bulkdata/00281201")
    assert parts(default)[0][1] == original.RedPaletteColorLookupTableData
    with server.archive.db.session() as s:
        assert s.scalar(select(Instance.metadata_json).where(Instance.sop_instance_uid == d.sop))
    assert http.get(f"{d.path}/bulkdata/00100010").status_code == 404  # not binary
    assert http.get(f"{d.path}/metadata", headers={"Accept": "application/dicom+xml"}).status_code == 406


def test_nested_bulk_data_uri(server: RunningServer, data: dict[str, Loaded], http: httpx.Client):
    seg = _load(server, SHARED_DATA / "dicom" / "dcmqi" / "segmentations" / "liver.dcm")
    meta = http.get(f"{seg.path}/metadata").json()[0]
    assert meta["7FE00010"]["vr"] == "OB"
    r = http.get(
        meta["7FE00010"]["BulkDataURI"].replace(server.base_url, ""),
        headers={"Accept": "multipart/related; type=application/octet-stream"},
    )
    assert r.status_code == 200
    original = pydicom.dcmread(seg.source)
    assert parts(r)[0][1] == original.PixelData


# -- frames ----------------------------------------------------------------------------------


def test_frames_as_stored_and_decoded(data: dict[str, Loaded], http: httpx.Client, dwc: DICOMwebClient):
    d = data["emri_small_jpeg_2k_lossless.dcm"]
    original = pydicom.dcmread(d.source)
    stored = "multipart/related; type=application/octet-stream; transfer-syntax=*"
    r = http.get(f"{d.path}/frames/1,3,10", headers={"Accept": stored})
    assert r.status_code == 200
    got = parts(r)
    assert [h["content-type"] for h, _ in got] == [
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.90"
    ] * 3
    for (_, body), i in zip(got, (0, 2, 9), strict=True):
        assert body == get_frame(original.PixelData, i, number_of_frames=10)
    j2k = http.get(f"{d.path}/frames/2", headers={"Accept": 'multipart/related; type="image/jp2"'})
    assert parts(j2k)[0][0]["content-type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"
    assert parts(j2k)[0][1] == get_frame(original.PixelData, 1, number_of_frames=10)
    decoded = http.get(
        f"{d.path}/frames/4",
        headers={
            "Accept": f"multipart/related; type=application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
        },
    )
    assert parts(decoded)[0][1] == original.pixel_array[3].astype("<u2").tobytes()
    frames = dwc.retrieve_instance_frames(
        d.study, d.series, d.sop, frame_numbers=[5], media_types=(("application/octet-stream", "*"),)
    )
    assert frames == [get_frame(original.PixelData, 4, number_of_frames=10)]
    assert http.get(f"{d.path}/frames/1", headers={"Accept": 'multipart/related; type="image/jpeg"'}).status_code == 406


@pytest.mark.parametrize(
    "name",
    ["emri_small.dcm", "emri_small_RLE.dcm", "color3d_jpeg_baseline.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm"],
)
def test_frames_equal_the_original_frames(data: dict[str, Loaded], dwc: DICOMwebClient, name: str):
    d = data[name]
    n = int(pydicom.dcmread(d.source, stop_before_pixels=True).get("NumberOfFrames", 1))
    wanted = [1, n] if n > 1 else [1]
    frames = dwc.retrieve_instance_frames(
        d.study,
        d.series,
        d.sop,
        frame_numbers=wanted,
        media_types=(("application/octet-stream", ExplicitVRLittleEndian),),
    )
    original = pydicom.dcmread(d.source)  # (pixel_array from a path does not inflate deflated files)
    for got, number in zip(frames, wanted, strict=True):
        expected = pixel_array(original, index=number - 1)
        assert got == np.ascontiguousarray(expected, dtype=expected.dtype.newbyteorder("<")).tobytes(), number


def test_frame_errors(data: dict[str, Loaded], http: httpx.Client):
    d = data["emri_small.dcm"]
    assert http.get(f"{d.path}/frames/11").status_code == 404
    assert http.get(f"{d.path}/frames/0").status_code == 400
    assert http.get(f"{d.path}/frames/1,x").status_code == 400
    assert http.get(f"{d.path}/frames/").status_code in (400, 404)
    sr = data["CT1_UNC"]
    assert http.get(f"/dicomweb/studies/{sr.study}/series/{sr.series}/instances/1.2.3/frames/1").status_code == 404


# -- rendered --------------------------------------------------------------------------------


def _image(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_rendered_instance_window_viewport_and_png(data: dict[str, Loaded], http: httpx.Client, dwc: DICOMwebClient):
    d = data["CT1_J2KR"]
    default = _image(http.get(f"{d.path}/rendered"))
    assert default.shape == (512, 512) and default.std() > 0
    bone = _image(http.get(f"{d.path}/rendered", params={"window": "400,1800"}))
    lung = _image(http.get(f"{d.path}/rendered", params={"window": "-600,1500,LINEAR"}))
    assert np.abs(bone.astype(int) - lung.astype(int)).mean() > 5
    png = http.get(f"{d.path}/rendered", headers={"Accept": "image/png"}, params={"viewport": "128,64"})
    assert png.headers["content-type"] == "image/png"
    assert _image(png).shape == (64, 64)
    jpeg = dwc.retrieve_instance_rendered(d.study, d.series, d.sop, media_types=("image/jpeg",))
    assert Image.open(io.BytesIO(jpeg)).size == (512, 512)
    assert http.get(f"{d.path}/rendered", params={"window": "1,0"}).status_code == 400
    assert http.get(f"{d.path}/rendered", params={"viewport": "a,b"}).status_code == 400
    assert http.get(f"{d.path}/rendered", headers={"Accept": "application/pdf"}).status_code == 406


def test_monochrome1_is_inverted(data: dict[str, Loaded], http: httpx.Client):
    d = data["RG3_UNC"]  # MONOCHROME1
    ds = pydicom.dcmread(d.source)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    center, width = 500.0, 600.0
    got = _image(
        http.get(
            f"{d.path}/rendered", params={"window": f"{center},{width},LINEAR_EXACT"}, headers={"Accept": "image/png"}
        )
    )
    values = ds.pixel_array.astype(float) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    linear = np.clip((values - (center - width / 2)) / width, 0, 1) * 255
    assert np.abs(got.astype(float) - (255 - linear)).max() <= 1


@pytest.mark.parametrize(
    "name",
    [
        "MR1_JPLY",
        "XA1_JPLY",
        "NM1_JLSN",
        "US1_RLE",
        "VL2_J2KI",
        "examples_palette.dcm",
        "color3d_jpeg_baseline.dcm",
        "image_dfl.dcm",
    ],
)
def test_rendered_every_kind_is_not_blank(data: dict[str, Loaded], http: httpx.Client, name: str):
    d = data[name]
    ds = pydicom.dcmread(d.source, stop_before_pixels=True)
    img = _image(http.get(f"{d.path}/rendered"))
    assert img.shape[:2] == (ds.Rows, ds.Columns)
    assert img.std() > 5
    if ds.SamplesPerPixel == 3 or ds.PhotometricInterpretation == "PALETTE COLOR":
        assert img.ndim == 3


def test_rendered_frame_and_thumbnails(server: RunningServer, data: dict[str, Loaded], http: httpx.Client):
    d = data["color3d_jpeg_baseline.dcm"]
    first = _image(http.get(f"{d.path}/frames/1/rendered", headers={"Accept": "image/png"}))
    last = _image(http.get(f"{d.path}/frames/120/rendered", headers={"Accept": "image/png"}))
    assert first.shape == (480, 640, 3) and not np.array_equal(first, last)
    assert http.get(f"{d.path}/frames/121/rendered").status_code == 404
    assert http.get(f"{d.path}/frames/1,2/rendered").status_code == 400
    thumb = _image(http.get(f"{d.path}/thumbnail"))
    assert max(thumb.shape[:2]) == 128
    study, series, _ = ct_series(data)
    for url in (f"/dicomweb/studies/{study}/thumbnail", f"/dicomweb/studies/{study}/series/{series}/thumbnail"):
        img = _image(http.get(url))
        assert img.shape == (128, 128) and img.std() > 0
    assert http.get("/dicomweb/studies/1.2.3/thumbnail").status_code == 404


@pytest.mark.parametrize("name", ["CT1_UNC", "US1_UNC", "NM1_UNC", "CT1_J2KR", "VL1_RLE", "SC1_JLSL"])
def test_single_frame_as_stored(data: dict[str, Loaded], http: httpx.Client, name: str):
    d = data[name]
    r = http.get(
        f"{d.path}/frames/1", headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    )
    [(headers, body)] = parts(r)
    original = pydicom.dcmread(d.source)
    if original.file_meta.TransferSyntaxUID.is_compressed:
        assert headers["content-type"] == f"application/octet-stream; transfer-syntax={d.ts}"
        assert body == get_frame(original.PixelData, 0, number_of_frames=1)
    else:
        assert headers["content-type"] == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
        assert body == original.pixel_array.tobytes()


def test_series_rendered_is_one_image_per_instance(data: dict[str, Loaded], http: httpx.Client):
    study, series, sops = ct_series(data)
    r = http.get(f"/dicomweb/studies/{study}/series/{series}/rendered", params={"viewport": "64,64"})
    assert r.status_code == 200
    got = parts(r)
    assert len(got) == 20
    assert {h["content-location"].split("/instances/")[1].split("/")[0] for h, _ in got} == set(sops)
    for headers, body in got:
        assert headers["content-type"] == "image/jpeg"
        img = np.asarray(Image.open(io.BytesIO(body)))
        assert img.shape == (64, 64) and img.std() > 0


def test_undecodable_instance_is_a_clear_4xx_never_a_blank_image(
    server: RunningServer, http: httpx.Client, tmp_path: Path
):
    ds = pydicom.dcmread(WG04 / "J2KR" / "CT2_J2KR")
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([frame[:40]])  # a cut JPEG 2000 codestream, structurally valid DICOM
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.save_as(tmp_path / "broken.dcm")
    d = _load(server, tmp_path / "broken.dcm")
    for url, accept in [
        (f"{d.path}/rendered", "image/jpeg"),
        (f"{d.path}/thumbnail", "image/jpeg"),
        (
            f"{d.path}/frames/1",
            f"multipart/related; type=application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}",
        ),
        (d.path, f"multipart/related; type=application/dicom; transfer-syntax={ExplicitVRLittleEndian}"),
    ]:
        r = http.get(url, headers={"Accept": accept})
        assert r.status_code == 422, (url, r.status_code)
        assert "cannot decode JPEG 2000" in r.json()["detail"]
    # What is stored can still go out as stored.
    stored = http.get(
        f"{d.path}/frames/1", headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    )
    assert parts(stored)[0][1] == frame[:40]
    assert parts(http.get(d.path))[0][1] == (tmp_path / "broken.dcm").read_bytes()


def test_per_instance_negotiation_in_a_mixed_series(data: dict[str, Loaded], http: httpx.Client):
    """The WG04 CT1 series holds the same image in six transfer syntaxes."""
    d = data["CT1_J2KR"]
    members = {x.sop: x for x in data.values() if x.series == d.series}
    assert len({x.ts for x in members.values()}) == 6
    url = f"/dicomweb/studies/{d.study}/series/{d.series}"
    j2k = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'
    assert http.get(url, headers={"Accept": j2k}).status_code == 406
    explicit = f'multipart/related; type="application/dicom"; transfer-syntax={ExplicitVRLittleEndian}; q=0.5'
    r = http.get(url, headers={"Accept": f"{j2k}, {explicit}"})
    assert r.status_code == 200
    got = parts(r)
    assert len(got) == len(members)
    for headers, body in got:
        ds = pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True)
        src = members[ds.SOPInstanceUID]
        if src.ts == "1.2.840.10008.1.2.4.90":
            assert body == src.source.read_bytes()  # accepted as stored
        else:
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert headers["content-type"] == f"application/dicom; transfer-syntax={ds.file_meta.TransferSyntaxUID}"


def test_bad_input_is_never_a_server_error(server: RunningServer, data: dict[str, Loaded], http: httpx.Client):
    sr = _load(server, SHARED_DATA / "dicom" / "dcmqi" / "sr-example" / "sr.dcm")
    ct = data["CT1_J2KR"]
    cases = [
        (f"{sr.path}/frames/1", {}, 404),
        (f"{sr.path}/rendered", {}, 404),
        (f"{sr.path}/thumbnail", {}, 404),
        (f"{sr.path}/bulkdata/7FE00010", {}, 404),
        (f"{ct.path}/bulkdata/zzzz", {}, 404),
        (f"{ct.path}/bulkdata/00081140/0/00081155", {}, 404),
        (f"{ct.path}/frames/1,,2", {}, 400),
        (f"{ct.path}/frames/99999999999999999999", {}, 404),
        (f"{ct.path}/rendered?quality=500", {}, 400),
        (f"{ct.path}/rendered?window=1,2,FOO", {}, 400),
        (f"{ct.path}/rendered?viewport=99999,10", {}, 400),
        (f"{ct.path}/metadata", {"Accept": "text/html"}, 406),
        (ct.path, {"Accept": "foo"}, 406),
        (ct.path, {"Accept": 'multipart/related; type="application/dicom"; q=abc'}, 406),
        (f"{ct.path}/frames/1", {"Accept": "image/jls"}, 406),
    ]
    for url, headers, expected in cases:
        r = http.get(url, headers=headers)
        assert r.status_code == expected, (url, headers, r.status_code, r.text[:200])
        assert r.json()["detail"]
    # A deflated image has no plain pixel data offset; its metadata still points to its pixels.
    dfl = data["image_dfl.dcm"]
    uri = http.get(f"{dfl.path}/metadata").json()[0]["7FE00010"]["BulkDataURI"]
    pixels = http.get(uri, headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert parts(pixels)[0][1] == pydicom.dcmread(dfl.source).PixelData
    # A report has metadata, without pixel data.
    meta = http.get(f"{sr.path}/metadata").json()[0]
    assert "7FE00010" not in meta and meta["00080060"]["Value"] == ["SR"]
    assert pydicom.dcmread(io.BytesIO(parts(http.get(sr.path))[0][1])).Modality == "SR"


@pytest.mark.parametrize("whole", [True, False], ids=["answered-whole", "streamed"])
def test_a_missing_stored_object_is_a_404_naming_its_instance(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole: bool
) -> None:
    if not whole:  # every body streams
        import radsight.dicomweb.wado as wado

        monkeypatch.setattr(wado, "CHUNK_BYTES", 0)
    study, series = generate_uid(), generate_uid()
    stored = []
    for i in (1, 2):
        ds = make_ct(study_uid=study, series_uid=series, instance_number=i)
        path = tmp_path / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert server.archive.ingest.ingest_file(path).ok
        stored.append(str(ds.SOPInstanceUID))
    with server.client() as http:
        ok = http.get(f"/dicomweb/studies/{study}/series/{series}", headers=AS_STORED)
        assert ok.status_code == 200 and ok.content.count(b"Content-Type: application/dicom") == 2
        with server.archive.db.session() as s:
            key = s.scalar(select(Instance.storage_key).where(Instance.sop_instance_uid == stored[1]))
        assert key is not None
        server.archive.storage.delete(key)
        r = http.get(f"/dicomweb/studies/{study}/series/{series}", headers=AS_STORED)
    assert r.status_code == 404
    assert stored[1] in r.json()["detail"]


def test_wado_fast_path_answers_as_the_fastapi_route(
    server: RunningServer, http: httpx.Client, data: dict[str, Loaded]
) -> None:
    """radsight serve answers WADO-RS retrievals outside FastAPI (DicomWebFastPath); a request with an
    Origin header goes through the FastAPI route. The same requests must get the same answers."""
    assert server.asgi is not None
    ct = data["ct/" + sorted(p.name for p in CT_SERIES.iterdir())[0]]
    mixed = data["mixed0"]
    explicit = f"multipart/related; type=application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
    baseline = "multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"
    cases = {  # kind: (path, Accept, answered on the fast path)
        "series as stored": (f"/dicomweb/studies/{ct.study}/series/{ct.series}", AS_STORED["Accept"], True),
        "series, default": (f"/dicomweb/studies/{ct.study}/series/{ct.series}", "multipart/related; "
                            "type=application/dicom", True),
        "study": (f"/dicomweb/studies/{ct.study}", AS_STORED["Accept"], True),
        "instance": (ct.path, AS_STORED["Accept"], True),
        "streamed (over 4 MB)": (f"/dicomweb/studies/{mixed.study}/series/{mixed.series}", AS_STORED["Accept"], True),
        "transcoded": (f"/dicomweb/studies/{ct.study}/series/{ct.series}", explicit, True),
        "not acceptable": (ct.path, baseline, False),
        "unknown study": ("/dicomweb/studies/1.2.3.4.404", AS_STORED["Accept"], False),
        "series of another study": (f"/dicomweb/studies/{mixed.study}/series/{ct.series}", AS_STORED["Accept"], False),
        "query string": (f"/dicomweb/studies/{ct.study}/series/{ct.series}?x=1", AS_STORED["Accept"], False),
    }
    with verified_for_a_minute(server):
        _compare_fast_path_and_route(server, http, cases)


def _compare_fast_path_and_route(
    server: RunningServer, http: httpx.Client, cases: dict[str, tuple[str, str, bool]]
) -> None:
    http.get("/dicomweb/studies", params={"limit": 1})  # a verified Basic check, as any client's first call
    for kind, (path, accept, fast) in cases.items():
        answers = []
        for via_route in (False, True):
            headers = {"Accept": accept, **({"Origin": "http://viewer.example"} if via_route else {})}
            http.get("/dicomweb/studies", params={"limit": 1})  # credentials verified in the last second
            before = server.asgi.answered
            r = http.get(path, headers=headers)
            assert server.asgi.answered - before == (fast and not via_route), (kind, via_route)
            ctype = re.sub(r"boundary=\S+", "", r.headers["content-type"])
            body = [p for _, p in parts(r)] if r.status_code == 200 else r.json()
            answers.append((r.status_code, ctype, body))
        assert answers[0] == answers[1], kind
        assert answers[0][0] == (200 if fast else 406 if kind == "not acceptable" else 404 if kind != "query string"
                                 else 200), kind


def test_render_query_gives_the_rendering_asked_for_and_thumbnails_their_own() -> None:
    from fastapi import HTTPException
    from starlette.requests import Request

    from radsight.dicomweb.wado_rendered import THUMBNAIL_SIZE, RenderQuery, ThumbnailQuery
    from radsight.imaging.render import RenderOptions, Window

    request = Request({"type": "http", "headers": [(b"accept", b"image/png")]})
    asked = RenderQuery(viewport="64,32", accept="image/jpeg", window="40,400", quality=70).options(request)
    assert asked == RenderOptions("image/jpeg", Window(40.0, 400.0, "LINEAR"), (64, 32), 70)
    assert RenderQuery().options(request) == RenderOptions("image/png", None, None, 90)  # the Accept header
    thumb = ThumbnailQuery().options(request)
    assert thumb == RenderOptions("image/png", None, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), 85)
    refused = [(RenderQuery(quality=0), 400), (RenderQuery(window="1"), 400), (RenderQuery(accept="text/html"), 406)]
    for bad, code in refused:
        with pytest.raises(HTTPException) as info:
            bad.options(request)
        assert info.value.status_code == code, bad
