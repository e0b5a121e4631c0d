"""Size limits on request bodies and lists (issue 16, F9 and F13), against a running server on
SQLite and PostgreSQL: a body over its route's cap is refused with 413 before it is read (by its
Content-Length) or while it streams (chunked), STOW-RS and model uploads keep their own large
cap, and oversized lists (QIDO multi-values, frame lists, sign-off decisions, offsets, multipart
boundaries) get a 400/413/422 with the reason instead of a 500 or an answer out of proportion."""

from __future__ import annotations

import io
import json
import socket
import uuid

import httpx
import pydicom
import pytest
from sqlalchemy import select
from tests.conftest import RunningServer, verified_for_a_minute
from tests.dicom_factory import make_ct

from radsight.api.schemas import MAX_DECISIONS
from radsight.dicomweb.wado_frames import MAX_FRAME_NUMBERS
from radsight.index.models import Instance
from radsight.index.query import MAX_LIST_VALUES, MAX_UID_LIST_VALUES, QueryError, QueryLevel, search

BOUNDARY = "RadSight-Limits-Boundary"


def encode(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart(parts: list[bytes], boundary: str = BOUNDARY) -> tuple[bytes, str]:
    body = b"".join(f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p for p in parts)
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return body + f"\r\n--{boundary}--\r\n".encode(), content_type


def stow(server: RunningServer, ds: pydicom.Dataset) -> None:
    body, content_type = multipart([encode(ds)])
    with server.client() as c:
        r = c.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text


def raw_request(server: RunningServer, head: str, body: bytes = b"", *, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``head`` (request line and headers) and ``body`` on a plain socket and read the answer:
    (status, body); the socket times out if the server waits for more of the body."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        head_bytes, _, rest = answer.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head_bytes.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(head_bytes.split(b" ", 2)[1]), rest


# -- F9: bodies -------------------------------------------------------------------------------------


def test_an_unauthenticated_token_request_over_its_cap_is_refused_before_its_body_is_read(
    server: RunningServer,
) -> None:
    """100 MB announced, a few bytes sent: the 413 comes at once (the server waited for the
    whole body before)."""
    cap = server.archive.settings.max_login_body_bytes
    status, body = raw_request(
        server,
        "POST /api/auth/token HTTP/1.1\r\nHost: radsight\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 * 1024 * 1024}\r\n",
        b'{"username": "admin", "password": "',
    )
    assert status == 413
    detail = json.loads(body)["detail"]
    assert str(cap) in detail and "max_login_body_bytes" in detail


def test_a_chunked_body_over_its_cap_is_refused_while_it_streams(server: RunningServer) -> None:
    """No Content-Length: the cap is counted as the chunks arrive (a valid JSON of twice the cap)."""
    cap = server.archive.settings.max_login_body_bytes
    payload = json.dumps({"username": "admin", "password": "x" * (2 * cap)}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 4096]), payload[i:i + 4096])
                       for i in range(0, len(payload), 4096)) + b"0\r\n\r\n"
    status, body = raw_request(
        server,
        "POST /api/auth/token HTTP/1.1\r\nHost: radsight\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n",
        chunked,
    )
    assert status == 413, body
    assert str(cap) in json.loads(body)["detail"]
    # Under the cap the same route answers as before.
    assert httpx.post(f"{server.base_url}/api/auth/token",
                      json={"username": "admin", "password": "wrong"}).status_code == 401


def test_the_login_form_and_authenticated_json_routes_have_caps(server: RunningServer) -> None:
    settings = server.archive.settings
    form = httpx.post(f"{server.base_url}/login",
                      data={"username": "admin", "password": "x" * (settings.max_login_body_bytes + 1)})
    assert form.status_code == 413 and "max_login_body_bytes" in form.json()["detail"]
    rules = {"rules": [{"model": "m", "series_description_regex": "x" * settings.max_request_body_bytes}]}
    with server.client() as c:
        r = c.put("/api/ai/rules", json=rules)
        assert r.status_code == 413 and "max_request_body_bytes" in r.json()["detail"]
        assert c.get("/api/ai/rules").json()["rules"] == []  # nothing of it was stored
        assert c.put("/api/ai/rules", json={"rules": []}).status_code == 200


def test_stow_and_model_uploads_keep_their_own_large_cap(server: RunningServer) -> None:
    """A STOW-RS body far over the JSON cap is stored, through the FastAPI route (an Origin header
    keeps it off the fast path) as through the fast path; a model upload over the JSON cap reaches
    the package check (422 broken package), not the body cap."""
    big = make_ct(rows=1024, columns=1024)  # 2 MiB of pixels
    body, content_type = multipart([encode(big)])
    assert len(body) > 2 * server.archive.settings.max_request_body_bytes
    with server.client() as c:
        r = c.post("/dicomweb/studies", content=body,
                   headers={"Content-Type": content_type, "Origin": server.base_url})
        assert r.status_code == 200, r.text
        upload = c.post("/api/models", content=b"PK" + b"\0" * (2 * 1024 * 1024),
                        headers={"Content-Type": "application/zip"})
        assert upload.status_code == 422, upload.text
    with server.archive.db.session() as s:
        assert s.scalar(select(Instance.id).where(Instance.sop_instance_uid == big.SOPInstanceUID)) is not None


# -- F9 and F13: lists ------------------------------------------------------------------------------


def test_a_frame_list_asks_for_each_frame_once(server: RunningServer) -> None:
    """``frames/1,1,1,...`` multiplied one frame into a 52 MB answer: duplicates are refused."""
    ds = make_ct()
    stow(server, ds)
    path = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    with server.client() as c:
        assert c.get(f"{path}/frames/1").status_code == 200
        r = c.get(f"{path}/frames/" + ",".join(["1"] * 1000))
        assert r.status_code == 400 and "more than once" in r.json()["detail"], r.status_code
        many = c.get(f"{path}/frames/" + ",".join(str(n) for n in range(1, MAX_FRAME_NUMBERS + 2)))
        assert many.status_code == 400 and f"at most {MAX_FRAME_NUMBERS}" in many.json()["detail"]
        assert c.get(f"{path}/frames/{'9' * 5000}").status_code == 400  # int() refuses over 4300 digits
        assert c.get(f"{path}/frames/\N{SUPERSCRIPT TWO}").status_code == 400  # a digit int() refuses


def _sign(server: RunningServer, study: str, body: bytes) -> httpx.Response:
    with server.client() as c:
        assert c.post(f"/api/worklist/{study}/claim").status_code == 200
        return c.post(f"/api/worklist/{study}/sign", content=body, headers={"Content-Type": "application/json"})


def _decisions(ids: range) -> bytes:
    return b'{"decisions": [' + b",".join(b'{"finding_id": %d, "status": "accepted"}' % i for i in ids) + b"]}"


def test_a_sign_off_with_a_million_decisions_is_413_not_500(server: RunningServer) -> None:
    ds = make_ct()
    stow(server, ds)
    r = _sign(server, ds.StudyInstanceUID, _decisions(range(1, 1_000_001)))
    assert r.status_code == 413 and "max_request_body_bytes" in r.json()["detail"]


def test_a_sign_off_with_more_decisions_than_the_cap_is_refused(server: RunningServer) -> None:
    """Past the cap of decisions (within the body cap) the answer names the cap and nothing is signed."""
    ds = make_ct()
    stow(server, ds)
    study = ds.StudyInstanceUID
    over = _sign(server, study, _decisions(range(1, MAX_DECISIONS + 2)))
    assert over.status_code == 422
    assert f"at most {MAX_DECISIONS}" in json.dumps(over.json()["detail"])
    with server.client() as c:
        item = c.post(f"/api/worklist/{study}/sign", json={"decisions": []})
        assert item.status_code == 200 and item.json()["status"] == "read"


def test_qido_with_thousands_of_values_is_400_naming_the_cap(server: RunningServer) -> None:
    """2,000 ``\\``-separated names made SQLite's expression tree too deep (500)."""
    names = "\\".join(f"Name{i}^Limit" for i in range(2000))
    uids = ",".join(f"1.2.826.0.1.3680043.10.{i}" for i in range(MAX_UID_LIST_VALUES + 1))
    fits = "\\".join(f"Name{i}^Limit" for i in range(MAX_LIST_VALUES))
    with server.client() as c:
        for params, cap in (({"PatientName": names}, MAX_LIST_VALUES),
                            ({"ModalitiesInStudy": "\\".join(["CT"] * 2000)}, MAX_LIST_VALUES),
                            ({"StudyInstanceUID": uids}, MAX_UID_LIST_VALUES)):
            r = c.get("/dicomweb/studies", params=params)
            assert r.status_code == 400, (list(params), r.status_code)
            assert f"at most {cap}" in r.json()["detail"]
        assert c.get("/dicomweb/studies", params={"PatientName": fits}).status_code == 200
        assert c.get("/dicomweb/series", params={"Modality": "\\".join(["CT"] * MAX_LIST_VALUES)}).status_code == 200
    with server.archive.db.session() as s, pytest.raises(QueryError, match=f"at most {MAX_LIST_VALUES}"):
        search(s, QueryLevel.STUDY, {"PatientName": names})  # C-FIND shares the engine


def test_qido_offset_above_int64_is_400(server: RunningServer) -> None:
    with server.client() as c:
        for offset in (2**63, 2**64 + 5):
            r = c.get("/dicomweb/studies", params={"offset": offset})
            assert r.status_code == 400, (offset, r.status_code)
            assert "offset must be at most" in r.json()["detail"]
        for limit in (2**63, 10**30):
            assert c.get("/dicomweb/studies", params={"limit": limit}).status_code == 200
        assert c.get("/dicomweb/studies", params={"offset": 2**31 - 1}).json() == []


def test_a_multipart_boundary_over_70_characters_is_400_on_both_stow_paths(server: RunningServer) -> None:
    """RFC 2046 allows 1 to 70 characters; 300 raised python-multipart's error as a 500."""
    with server.client() as c, verified_for_a_minute(server):
        c.get("/dicomweb/studies", params={"limit": 1})
        for boundary in ("b" * 300, "b" * 71):
            for origin in ({}, {"Origin": server.base_url}):  # the fast path, the route
                ds = make_ct()
                body, content_type = multipart([encode(ds)], boundary)
                r = c.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type, **origin})
                assert r.status_code == 400, (len(boundary), origin, r.status_code)
                assert "70" in r.json()["detail"] and "RFC 2046" in r.json()["detail"]
        ok = make_ct()
        body, content_type = multipart([encode(ok)], "b" * 70)
        assert c.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type}).status_code == 200
        form = c.post("/api/models", content=b"--" + b"b" * 300 + b"--\r\n",
                      headers={"Content-Type": f"multipart/form-data; boundary={'b' * 300}"})
        assert form.status_code == 400, form.status_code  # a model upload's form


def test_a_smaller_cap_from_the_settings_holds(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.archive.settings, "max_request_body_bytes", 100)
    with server.client() as c:
        r = c.put(f"/api/worklist/{uuid.uuid4().int}/order-priority", json={"order_priority": "STAT", "x": "y" * 100})
        assert r.status_code == 413 and "100 bytes" in r.json()["detail"]
