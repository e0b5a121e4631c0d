"""STOW-RS against a running server: real clients, real files, the stored rows and bytes checked."""

from __future__ import annotations

import io
import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import select
from tests.conftest import RunningServer, verified_for_a_minute
from tests.dicom_factory import make_ct

from radsight.dicomweb.stow import FAILURE_TEXT_CREATOR, FAILURE_TEXT_GROUP
from radsight.index.models import Instance, Study

BOUNDARY = "RadSight-Test-Boundary-7d1"
MULTIPART = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


def encode(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart(parts: list[bytes], *, closing: bool = True, part_type: str = "application/dicom") -> bytes:
    body = b""
    for part in parts:
        body += f"\r\n--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part
    if closing:
        body += f"\r\n--{BOUNDARY}--\r\n".encode()
    return body


def stored_bytes(server: RunningServer, sop_uid: str) -> bytes | None:
    with server.archive.db.session() as s:
        key = s.scalar(select(Instance.storage_key).where(Instance.sop_instance_uid == sop_uid))
    if key is None:
        return None
    path = server.archive.storage.local_path(key)
    assert path is not None
    return path.read_bytes()


def dicomweb_client(server: RunningServer) -> DICOMwebClient:
    session = requests.Session()
    session.auth = (server.username, server.password)
    return DICOMwebClient(url=server.dicomweb, session=session)


def failure_text(item: pydicom.Dataset) -> str:
    return str(item.private_block(FAILURE_TEXT_GROUP, FAILURE_TEXT_CREATOR)[0x01].value)


def test_store_real_files_in_one_request_with_dicomweb_client(server: RunningServer, shared_data: Path) -> None:
    files = [
        shared_data / "dicom/wg04/REF/CT1_UNC",
        shared_data / "dicom/wg04/REF/MR1_UNC",
        shared_data / "dicom/wg04/JPLL/NM1_JPLL",
        shared_data / "dicom/dcmqi/segmentations/ct-3slice/01.dcm",
        shared_data / "dicom/dcmqi/segmentations/ct-3slice/02.dcm",
        shared_data / "dicom/dcmqi/segmentations/liver.dcm",
        shared_data / "dicom/dcmqi/sr-example/sr.dcm",
    ]
    datasets = [pydicom.dcmread(f) for f in files]
    response = dicomweb_client(server).store_instances(datasets)

    assert "FailedSOPSequence" not in response
    refs = {item.ReferencedSOPInstanceUID: item for item in response.ReferencedSOPSequence}
    assert set(refs) == {ds.SOPInstanceUID for ds in datasets}
    for ds in datasets:
        item = refs[ds.SOPInstanceUID]
        assert item.ReferencedSOPClassUID == ds.SOPClassUID
        assert item.RetrieveURL == (  # root-relative: no public_url is configured
            f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        stored = stored_bytes(server, ds.SOPInstanceUID)
        assert stored is not None
        assert pydicom.dcmread(io.BytesIO(stored)).SOPInstanceUID == ds.SOPInstanceUID
    assert "RetrieveURL" not in response  # instances of several studies
    with server.archive.db.session() as s:
        liver_study = s.scalar(select(Study).where(Study.study_instance_uid == datasets[3].StudyInstanceUID))
        assert liver_study is not None
        assert liver_study.number_of_instances == 3
        assert liver_study.modalities_in_study == "CT\\SEG"


def test_one_garbage_part_gives_202_and_the_others_are_stored(server: RunningServer) -> None:
    study, series = generate_uid(), generate_uid()
    good = [make_ct(study_uid=study, series_uid=series, instance_number=i) for i in (1, 2)]
    bodies = [encode(ds) for ds in good]
    garbage = b"this is not a DICOM file" * 10
    with server.client() as c:
        r = c.post("/dicomweb/studies", content=multipart([bodies[0], garbage, bodies[1]]),
                   headers={"Content-Type": MULTIPART})
    assert r.status_code == 202, r.text
    assert r.headers["content-type"] == "application/dicom+json"
    ds = pydicom.Dataset.from_json(r.json())
    assert [i.ReferencedSOPInstanceUID for i in ds.ReferencedSOPSequence] == [d.SOPInstanceUID for d in good]
    assert len(ds.FailedSOPSequence) == 1
    failed = ds.FailedSOPSequence[0]
    assert failed.FailureReason == 0xC000
    assert "not-dicom" in failure_text(failed)
    assert ds.RetrieveURL == f"/dicomweb/studies/{good[0].StudyInstanceUID}"
    for d, body in zip(good, bodies, strict=True):
        assert stored_bytes(server, d.SOPInstanceUID) == body  # stored as received


def test_parts_of_one_request_are_ingested_together_and_answered_in_order(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from radsight.dicomweb.stow import PARTS_IN_FLIGHT

    ingest = server.archive.ingest
    real = ingest.ingest_bytes
    lock = threading.Lock()
    running, most = [0], [0]

    def slow_ingest(data: bytes, **kw: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)  # long enough for the next parts to be handed over meanwhile
            return real(data, **kw)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(ingest, "ingest_bytes", slow_ingest)
    study = generate_uid()
    good = [make_ct(study_uid=study, instance_number=i) for i in range(8)]
    bodies = [encode(ds) for ds in good]
    parts = [*bodies[:2], b"garbage one", *bodies[2:5], b"garbage two", *bodies[5:]]
    with server.client() as c:
        r = c.post("/dicomweb/studies", content=multipart(parts), headers={"Content-Type": MULTIPART})
    assert r.status_code == 202, r.text
    ds = pydicom.Dataset.from_json(r.json())
    assert [i.ReferencedSOPInstanceUID for i in ds.ReferencedSOPSequence] == [d.SOPInstanceUID for d in good]
    assert len(ds.FailedSOPSequence) == 2
    assert 2 <= most[0] <= PARTS_IN_FLIGHT
    for d, body in zip(good, bodies, strict=True):
        assert stored_bytes(server, d.SOPInstanceUID) == body


def test_all_parts_failing_gives_409(server: RunningServer) -> None:
    truncated = encode(make_ct())[:-100]
    with server.client() as c:
        r = c.post("/dicomweb/studies", content=multipart([b"garbage", truncated]), headers={"Content-Type": MULTIPART})
    assert r.status_code == 409, r.text
    ds = pydicom.Dataset.from_json(r.json())
    assert "ReferencedSOPSequence" not in ds
    assert [i.FailureReason for i in ds.FailedSOPSequence] == [0xC000, 0xC000]
    assert "truncated" in failure_text(ds.FailedSOPSequence[1])


def test_store_into_named_study_refuses_instances_of_another_study(server: RunningServer) -> None:
    study = generate_uid()
    inside = make_ct(study_uid=study)
    outside = make_ct()
    with server.client() as c:
        r = c.post(f"/dicomweb/studies/{study}", content=multipart([encode(inside), encode(outside)]),
                   headers={"Content-Type": MULTIPART})
    assert r.status_code == 202, r.text
    ds = pydicom.Dataset.from_json(r.json())
    assert ds.RetrieveURL == f"/dicomweb/studies/{study}"
    assert [i.ReferencedSOPInstanceUID for i in ds.ReferencedSOPSequence] == [inside.SOPInstanceUID]
    failed = ds.FailedSOPSequence[0]
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (outside.SOPInstanceUID, 0xA900)
    assert outside.StudyInstanceUID in failure_text(failed)
    assert stored_bytes(server, inside.SOPInstanceUID) is not None
    assert stored_bytes(server, outside.SOPInstanceUID) is None


def test_duplicate_is_a_success_and_single_part_body(server: RunningServer) -> None:
    body = encode(make_ct())
    with server.client() as c:
        first = c.post("/dicomweb/studies", content=body, headers={"Content-Type": "application/dicom"})
        again = c.post("/dicomweb/studies", content=multipart([body]), headers={"Content-Type": MULTIPART})
    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    assert len(pydicom.Dataset.from_json(again.json()).ReferencedSOPSequence) == 1


def test_type_parameter_may_be_missing(server: RunningServer) -> None:
    ds = make_ct()
    with server.client() as c:
        r = c.post("/dicomweb/studies", content=multipart([encode(ds)]),
                   headers={"Content-Type": f"multipart/related; boundary={BOUNDARY}"})
    assert r.status_code == 200, r.text
    assert stored_bytes(server, ds.SOPInstanceUID) is not None


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "multipart/form-data; boundary=x", f'multipart/related; type="application/dicom+xml"; '
     f"boundary={BOUNDARY}"],
)
def test_unsupported_media_type_is_415(server: RunningServer, content_type: str) -> None:
    with server.client() as c:
        r = c.post("/dicomweb/studies", content=multipart([encode(make_ct())]), headers={"Content-Type": content_type})
    assert r.status_code == 415, r.text


def test_malformed_multipart_is_400(server: RunningServer) -> None:
    complete, cut = make_ct(), make_ct()
    with server.client() as c:
        no_boundary = c.post("/dicomweb/studies", content=multipart([encode(complete)]),
                             headers={"Content-Type": 'multipart/related; type="application/dicom"'})
        unclosed = c.post("/dicomweb/studies", content=multipart([encode(complete), encode(cut)], closing=False),
                          headers={"Content-Type": MULTIPART})
        wrong_boundary = c.post("/dicomweb/studies", content=b"--other\r\n\r\nxx\r\n--other--",
                                headers={"Content-Type": MULTIPART})
        empty = c.post("/dicomweb/studies", content=f"--{BOUNDARY}--\r\n".encode(), headers={"Content-Type": MULTIPART})
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["detail"]
    assert unclosed.status_code == 400 and "closing boundary" in unclosed.json()["detail"]
    assert wrong_boundary.status_code == 400 and "malformed" in wrong_boundary.json()["detail"]
    assert empty.status_code == 400
    # The part completed before the framing error stays stored; the cut one is not stored.
    assert stored_bytes(server, complete.SOPInstanceUID) == encode(complete)
    assert stored_bytes(server, cut.SOPInstanceUID) is None
    assert not list(server.archive.storage.spool_dir().glob("in-*"))  # no spool files left


def test_too_large_is_413(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_ct()
    body = multipart([encode(ds)])
    monkeypatch.setattr(server.archive.settings, "max_upload_bytes", len(body) - 1)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    with server.client() as c:
        declared = c.post("/dicomweb/studies", content=body, headers={"Content-Type": MULTIPART})
        streamed = c.post("/dicomweb/studies", content=chunks(), headers={"Content-Type": MULTIPART})
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert stored_bytes(server, ds.SOPInstanceUID) is None


def test_unauthenticated_is_401(server: RunningServer) -> None:
    r = httpx.post(f"{server.dicomweb}/studies", content=multipart([encode(make_ct())]),
                   headers={"Content-Type": MULTIPART})
    assert r.status_code == 401


def test_large_multiframe_is_streamed_not_buffered(server: RunningServer) -> None:
    frames, rows, cols = 24, 1024, 1024  # 48 MiB of pixel data
    ds = make_ct(rows=rows, columns=cols)
    ds.NumberOfFrames = frames
    ds.PixelData = np.ones((frames, rows, cols), dtype=np.uint16).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    body = multipart([encode(ds)])
    del ds.PixelData

    def chunks() -> Iterator[bytes]:
        view = memoryview(body)
        for i in range(0, len(body), 1 << 20):
            yield bytes(view[i : i + (1 << 20)])

    tracemalloc.start()  # the server runs in this process: its allocations are traced too
    try:
        with server.client() as c:
            r = c.post("/dicomweb/studies", content=chunks(), headers={"Content-Type": MULTIPART})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 200, r.text
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB while storing a {len(body) / 2**20:.0f} MiB body"
    with server.archive.db.session() as s:
        inst = s.scalar(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID))
        assert inst is not None and inst.number_of_frames == frames
        assert inst.file_size == len(body) - len(multipart([b""]))


def test_response_json_is_what_pydicom_writes_for_the_same_dataset() -> None:
    """The response is written as plain dicts (for speed); pydicom's own encoding of the same data set is
    the reference, for stored items, failures with and without UIDs, and the study's RetrieveURL."""
    from radsight.dicomweb.stow import _response_json
    from radsight.ingest.errors import Reason
    from radsight.ingest.service import IngestResult, Outcome

    root = "http://archive.example/dicomweb"
    study = generate_uid()
    ok = IngestResult(Outcome.STORED, sop_instance_uid=generate_uid(), sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                      study_instance_uid=study, series_instance_uid=generate_uid())
    dup = IngestResult(Outcome.DUPLICATE, sop_instance_uid=generate_uid(), sop_class_uid=ok.sop_class_uid,
                       study_instance_uid=study, series_instance_uid=ok.series_instance_uid)
    bad = IngestResult(Outcome.REFUSED, reason=Reason.NOT_DICOM, message="no DICM prefix")
    wrong = IngestResult(Outcome.REFUSED, sop_instance_uid=generate_uid(), sop_class_uid=ok.sop_class_uid,
                         reason=Reason.INVALID_ATTRIBUTE, message="another study")

    def reference(results: list[IngestResult], named: str | None) -> dict[str, object]:
        ds = pydicom.Dataset()
        stored = [r for r in results if r.ok]
        studies = {r.study_instance_uid for r in stored}
        if named is not None or len(studies) == 1:
            ds.RetrieveURL = f"{root}/studies/{named or studies.pop()}"
        if stored:
            ds.ReferencedSOPSequence = []
            for r in stored:
                item = pydicom.Dataset()
                item.ReferencedSOPClassUID = r.sop_class_uid
                item.ReferencedSOPInstanceUID = r.sop_instance_uid
                item.RetrieveURL = (f"{root}/studies/{r.study_instance_uid}/series/{r.series_instance_uid}"
                                    f"/instances/{r.sop_instance_uid}")
                ds.ReferencedSOPSequence.append(item)
        failed = [r for r in results if not r.ok]
        if failed:
            ds.FailedSOPSequence = []
            for r in failed:
                item = pydicom.Dataset()
                item.ReferencedSOPClassUID = r.sop_class_uid or None
                item.ReferencedSOPInstanceUID = r.sop_instance_uid or None
                item.FailureReason = r.dimse_status
                block = item.private_block(FAILURE_TEXT_GROUP, FAILURE_TEXT_CREATOR, create=True)
                block.add_new(0x01, "LT", f"{r.reason}: {r.message}")
                ds.FailedSOPSequence.append(item)
        return ds.to_json_dict()

    for results, named, code in (([ok, dup], None, 200), ([ok, bad, wrong], None, 202), ([bad, wrong], None, 409),
                                 ([bad], study, 409), ([ok], study, 200)):
        body, status_code = _response_json(root, results, named)
        assert status_code == code
        assert body == reference(results, named)
        assert list(body) == sorted(body)  # tag order, as pydicom writes it


def test_concurrent_requests_each_get_their_own_results(server: RunningServer) -> None:
    """Requests in flight at once share group commits; each response still lists exactly its own
    instances (stored or failed) and every acknowledged instance is indexed with its bytes."""
    from concurrent.futures import ThreadPoolExecutor

    study = generate_uid()
    requests_ = [[make_ct(study_uid=study, instance_number=10 * i + j) for j in range(3)] for i in range(8)]
    garbage = b"not DICOM at all" * 20

    def post(i: int) -> httpx.Response:
        parts = [encode(ds) for ds in requests_[i]]
        if i % 2:
            parts.insert(1, garbage)  # odd requests carry one bad part among the good ones
        with server.client() as c:
            return c.post("/dicomweb/studies", content=multipart(parts), headers={"Content-Type": MULTIPART})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    for i, r in enumerate(responses):
        assert r.status_code == (202 if i % 2 else 200), r.text
        ds = pydicom.Dataset.from_json(r.json())
        assert [x.ReferencedSOPInstanceUID for x in ds.ReferencedSOPSequence] == [
            d.SOPInstanceUID for d in requests_[i]]
        assert len(ds.get("FailedSOPSequence", [])) == i % 2
        for d in requests_[i]:
            assert stored_bytes(server, d.SOPInstanceUID) == encode(d)
    with server.archive.db.session() as s:
        assert s.scalar(select(Study.number_of_instances).where(Study.study_instance_uid == study)) == 24


def _normalised(r: httpx.Response, uids: dict[str, str]) -> tuple[int, object, str | None]:
    """Status, body with this request's UIDs named by role, and the WWW-Authenticate header."""
    text = r.text
    for role, uid in uids.items():
        text = text.replace(uid, role)
    json_types = ("application/json", "application/dicom+json")
    body = json.loads(text) if r.headers.get("content-type", "").split(";")[0] in json_types else text
    return r.status_code, body, r.headers.get("www-authenticate")


def test_stow_fast_path_answers_as_the_fastapi_route(server: RunningServer) -> None:
    """radsight serve answers STOW-RS outside FastAPI (DicomWebFastPath); a request with an Origin
    header goes through the FastAPI route (and its CORS middleware). The same requests, sent
    both ways with fresh UIDs, must get the same answers."""
    assert server.asgi is not None

    def case(kind: str) -> tuple[str, bytes, dict[str, str], dict[str, str], tuple[str, str] | None]:
        """(path, body, headers, uids by role, auth) for one request of ``kind``."""
        good, other = make_ct(), make_ct()
        uids = {"STUDY": good.StudyInstanceUID, "SERIES": good.SeriesInstanceUID, "SOP": good.SOPInstanceUID,
                "OTHER_STUDY": other.StudyInstanceUID, "OTHER_SERIES": other.SeriesInstanceUID,
                "OTHER_SOP": other.SOPInstanceUID}
        path, auth = "/dicomweb/studies", None
        headers = {"Content-Type": MULTIPART}
        if kind == "one":
            body = multipart([encode(good)])
        elif kind == "single-body":
            body, headers = encode(good), {"Content-Type": "application/dicom"}
        elif kind == "some-failed":
            body = multipart([encode(good), b"not DICOM at all"])
        elif kind == "none-stored":
            body = multipart([b"not DICOM", encode(good)[:300]])
        elif kind == "wrong-study":
            path, body = f"/dicomweb/studies/{good.StudyInstanceUID}", multipart([encode(good), encode(other)])
        elif kind == "unclosed":
            body = multipart([encode(good)], closing=False)
        elif kind == "media-type":
            body, headers = encode(good), {"Content-Type": "text/plain"}
        elif kind == "part-type":
            body = multipart([encode(good)])
            headers = {"Content-Type": f'multipart/related; type="application/dicom+json"; boundary="{BOUNDARY}"'}
        elif kind == "no-boundary":
            body, headers = multipart([encode(good)]), {"Content-Type": 'multipart/related; type="application/dicom"'}
        elif kind == "wrong-password":
            body, auth = multipart([encode(good)]), (server.username, "not the password")
        else:
            raise AssertionError(kind)
        return path, body, headers, uids, auth

    kinds = ["one", "single-body", "some-failed", "none-stored", "wrong-study", "unclosed", "media-type",
             "part-type", "no-boundary", "wrong-password"]
    with server.client() as c, verified_for_a_minute(server):
        c.get("/dicomweb/studies", params={"limit": 1})  # a verified Basic check, as any client's first call
        for kind in kinds:
            answers = []
            for via_route in (False, True):
                path, body, headers, uids, auth = case(kind)
                if via_route:
                    headers = {**headers, "Origin": server.base_url}  # this site: a change from another is refused
                c.get("/dicomweb/studies", params={"limit": 1})  # credentials verified in the last second
                before = server.asgi.answered
                kw = {"auth": auth} if auth else {}
                r = c.post(path, content=body, headers=headers, **kw)
                took = server.asgi.answered - before
                # Only a verified Basic check may be answered on the fast path.
                assert took == (0 if via_route or kind == "wrong-password" else 1), (kind, via_route)
                answers.append(_normalised(r, uids))
            assert answers[0] == answers[1], kind
            assert answers[0][0] in (200, 202, 400, 401, 409, 415), kind


def test_retrieve_urls_never_name_the_host_the_client_sent_on_either_path(server: RunningServer) -> None:
    """Without a configured public_url, RetrieveURLs are root-relative, whatever the Host header
    says, and the fast path takes a STOW-RS request from the first one on."""
    assert server.asgi is not None
    with server.client() as c, verified_for_a_minute(server):
        answers = []
        for host, via_route in (("evil.example", False), ("evil.example", True), (None, False)):
            ds = make_ct()
            headers = {"Content-Type": MULTIPART, **({"Host": host} if host else {}),
                       **({"Origin": f"http://{host}"} if via_route else {})}
            c.get("/dicomweb/studies", params={"limit": 1})  # credentials verified in the last second
            before = server.asgi.answered
            r = c.post("/dicomweb/studies", content=multipart([encode(ds)]), headers=headers)
            assert r.status_code == 200, r.text
            assert "evil.example" not in r.text
            url = pydicom.Dataset.from_json(r.json()).RetrieveURL
            answers.append((url, server.asgi.answered - before))
            assert url == f"/dicomweb/studies/{ds.StudyInstanceUID}"
    assert [took for _, took in answers] == [1, 0, 1]


def test_a_request_authorize_refuses_is_refused_alike_on_the_fast_path(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path and the routes call the same authorize: a rule added there refuses a STOW-RS
    and a WADO-RS request of a role on both paths, with the same answer, and the fast path does
    answer it (it does not pass it on to the route)."""
    from radsight.api import security
    from radsight.api.auth import add_user

    name = f"viewer-{generate_uid()[-12:]}"
    with server.archive.db.session() as s:
        add_user(s, name, "viewer-password", "viewer")
    ds = make_ct()
    requests_ = {  # kind: (method, path, body, headers)
        "stow": ("POST", "/dicomweb/studies", multipart([encode(ds)]), {"Content-Type": MULTIPART}),
        "wado": ("GET", f"/dicomweb/studies/{ds.StudyInstanceUID}", b"", {"Accept": "multipart/related; "
                 "type=application/dicom; transfer-syntax=*"}),
    }
    with httpx.Client(base_url=server.base_url, auth=(name, "viewer-password"), timeout=60) as c, \
            verified_for_a_minute(server):
        c.get("/dicomweb/studies", params={"limit": 1})  # a verified Basic check

        def send(kind: str, via_route: bool) -> tuple[int, object, int]:
            method, path, body, headers = requests_[kind]
            if via_route:
                headers = {**headers, "Origin": server.base_url}  # this site: a change from another is refused
            c.get("/dicomweb/studies", params={"limit": 1})  # credentials verified in the last second
            before = server.asgi.answered
            r = c.request(method, path, content=body, headers=headers)
            return r.status_code, r.json() if r.status_code != 200 else None, server.asgi.answered - before

        # Allowed today (the control): the viewer stores and retrieves, on the fast path.
        assert [send(kind, False)[::2] for kind in ("stow", "wado")] == [(200, 1), (200, 1)]
        # A rule that keeps viewers from reading and writing: refused on both paths alike.
        monkeypatch.setitem(security.ROLES_ALLOWED, security.Action.WRITE, frozenset({"admin"}))
        monkeypatch.setitem(security.ROLES_ALLOWED, security.Action.READ, frozenset({"admin"}))
        for kind in ("stow", "wado"):
            fast, route = send(kind, False), send(kind, True)
            assert fast[:2] == route[:2], kind
            assert fast[0] == 403 and "viewer role may not" in str(fast[1]), fast
            assert (fast[2], route[2]) == (1, 0), kind
    with server.client() as admin:  # the admin role still may
        assert admin.get(f"/dicomweb/studies/{ds.StudyInstanceUID}").status_code == 200
