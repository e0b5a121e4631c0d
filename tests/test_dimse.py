"""The DIMSE side against real peers: DCMTK's echoscu, storescu, findscu, movescu, getscu and
storescp, and pynetdicom where a request must be crafted. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE, _config, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select
from tests.conftest import SHARED_DATA, RunningServer, free_port
from tests.dicom_factory import make_ct
from tests.dimse_helpers import dataset_bytes, dcmtk, dcmtk_storescp

from radsight.archive import Archive
from radsight.dimse.peers import add_peer, remove_peer
from radsight.dimse.scp import DicomServer
from radsight.dimse.scu import MAX_CONTEXTS, Peer, find, move, send_study, storage_contexts
from radsight.index.models import Instance, Study

WG04 = SHARED_DATA / "dicom" / "wg04"

# (folder, file, storescu option proposing the file's own transfer syntax)
WG04_CASES = [
    ("REF", "CT1_UNC", "-xe"),
    ("JPLL", "CT2_JPLL", "-xs"),
    ("J2KR", "MR1_J2KR", "-xv"),
    ("RLE", "MR2_RLE", "-xr"),
    ("JLSL", "NM1_JLSL", "-xt"),
    ("JLSN", "CT1_JLSN", "-xu"),
    ("J2KI", "US1_J2KI", "-xw"),
]


def _tag() -> str:
    return uuid.uuid4().hex[:8].upper()


def _stored(archive: Archive, sop_instance_uid: str) -> Instance | None:
    with archive.db.session() as s:
        return s.scalar(select(Instance).where(Instance.sop_instance_uid == sop_instance_uid))


def _stored_path(archive: Archive, sop_instance_uid: str) -> Path:
    inst = _stored(archive, sop_instance_uid)
    assert inst is not None, f"{sop_instance_uid} is not in the index"
    path = archive.storage.local_path(inst.storage_key)
    assert path is not None
    return path


def _ingest_study(archive: Archive, tmp: Path, n: int, **kw: Any) -> list[Dataset]:
    """n CT instances of one new study (2 series when n > 1), ingested directly."""
    study_uid, series = generate_uid(), [generate_uid(), generate_uid()]
    tmp.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = tmp / f"{uuid.uuid4().hex}.dcm"
        ds = make_ct(path, study_uid=study_uid, series_uid=series[i % 2], instance_number=i + 1, **kw)
        assert archive.ingest.ingest_file(path).ok
        out.append(ds)
    return out


# -- association ------------------------------------------------------------------------------------


def test_echoscu(server: RunningServer) -> None:
    r = dcmtk("echoscu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port))
    assert r.returncode == 0, r.stdout


def test_unregistered_calling_ae_is_rejected_until_registered(server: RunningServer) -> None:
    settings = server.archive.settings
    title = f"SCU{_tag()}"
    echo = ["echoscu", "-aet", title, "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port)]
    settings.allow_any_calling_ae = False
    try:
        r = dcmtk(*echo)
        assert r.returncode != 0
        assert "Calling AE Title Not Recognized" in r.stdout, r.stdout

        with server.archive.db.session() as s:
            add_peer(s, title, "127.0.0.1", 104)
        r = dcmtk(*echo)
        assert r.returncode == 0, r.stdout

        # Peers change at run time: removing it refuses the next association.
        with server.archive.db.session() as s:
            assert remove_peer(s, title)
        r = dcmtk(*echo)
        assert r.returncode != 0 and "Calling AE Title Not Recognized" in r.stdout, r.stdout
    finally:
        settings.allow_any_calling_ae = True


def test_server_stops_and_starts_cleanly(archive: Archive) -> None:
    archive.settings.allow_any_calling_ae = True
    port = free_port()
    dicom = DicomServer(archive)
    dicom.start("127.0.0.1", port)
    try:
        assert dcmtk("echoscu", "-aec", "RADSIGHT", "127.0.0.1", str(port)).returncode == 0
    finally:
        dicom.stop()
    assert dcmtk("echoscu", "-to", "2", "-aec", "RADSIGHT", "127.0.0.1", str(port)).returncode != 0
    dicom.stop()  # a second stop does nothing
    dicom.start("127.0.0.1", port)
    try:
        assert dcmtk("echoscu", "-aec", "RADSIGHT", "127.0.0.1", str(port)).returncode == 0
    finally:
        dicom.stop()


def test_stop_aborts_associations_still_open_after_the_grace_period(archive: Archive) -> None:
    archive.settings.allow_any_calling_ae = True
    port = free_port()
    dicom = DicomServer(archive)
    dicom.start("127.0.0.1", port)
    assoc = AE(ae_title="IDLE").associate("127.0.0.1", port, [build_context(Verification)], ae_title="RADSIGHT")
    assert assoc.is_established
    started = time.monotonic()
    dicom.stop(timeout=0.5)
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted


def test_radsight_serve_stops_on_sigterm(tmp_path: Path) -> None:
    http_port, dicom_port = free_port(), free_port()
    env = {**os.environ, "RADSIGHT_ALLOW_ANY_CALLING_AE": "true"}
    radsight = Path(sys.executable).with_name("radsight")
    proc = subprocess.Popen(
        [str(radsight), "serve", "--home", str(tmp_path / "home"), "--http-port", str(http_port),
         "--dicom-port", str(dicom_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # (A bare TCP probe would count as an open association and delay the stop.)
        deadline = time.monotonic() + 60  # the machine may be busy
        while dcmtk("echoscu", "-aec", "RADSIGHT", "127.0.0.1", str(dicom_port)).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, "radsight serve did not start"
            time.sleep(0.2)
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - stopping < 15  # no association open: no 10 s grace period
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert dcmtk("echoscu", "-to", "2", "-aec", "RADSIGHT", "127.0.0.1", str(dicom_port)).returncode != 0


# -- C-STORE ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("folder", "name", "option"), WG04_CASES, ids=[c[0] for c in WG04_CASES])
def test_storescu_keeps_each_transfer_syntax_and_bytes(
    server: RunningServer, tmp_path: Path, folder: str, name: str, option: str
) -> None:
    source = WG04 / folder / name
    sent = pydicom.dcmread(source)
    storescu = ["storescu", option, "-aec", server.ae_title, "127.0.0.1"]
    r = dcmtk(*storescu, str(server.dicom_port), str(source))
    assert r.returncode == 0, r.stdout

    inst = _stored(server.archive, sent.SOPInstanceUID)
    assert inst is not None
    assert inst.transfer_syntax_uid == sent.file_meta.TransferSyntaxUID
    assert inst.sop_class_uid == sent.SOPClassUID
    assert inst.received_via == "dimse" and inst.calling_ae_title == "STORESCU"
    stored = _stored_path(server.archive, sent.SOPInstanceUID)

    # storescu re-encodes a little as it sends (sequence lengths, no trailing padding): the
    # bytes it sends are what DCMTK's storescp in bit-preserving mode writes.
    with dcmtk_storescp(tmp_path / "dcmtk", "REFERENCE") as reference:
        r = dcmtk(*storescu[:3], reference.ae_title, "127.0.0.1", str(reference.port), str(source))
        assert r.returncode == 0, r.stdout
        (as_sent,) = reference.files()
    assert dataset_bytes(stored) == dataset_bytes(as_sent)

    # ... and they are the source's data set, element for element.
    again = pydicom.dcmread(stored)
    assert again.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    if 0xFFFCFFFC in sent:
        del sent[0xFFFCFFFC]
    assert again == sent
    with server.archive.db.session() as s:
        study = s.scalar(select(Study).where(Study.study_instance_uid == sent.StudyInstanceUID))
        assert study is not None and study.patient_name == str(sent.PatientName)


def test_store_keeps_sender_bytes_exactly(server: RunningServer) -> None:
    """A sender that sends a file's data set unchanged (pynetdicom, chunked) gets it stored unchanged."""
    for source in (WG04 / "REF" / "MR4_UNC", WG04 / "JPLL" / "MR3_JPLL", WG04 / "RLE" / "NM1_RLE"):
        meta = pydicom.dcmread(source, stop_before_pixels=True)
        status = _pynetdicom_store(server, source, meta.SOPClassUID, meta.file_meta.TransferSyntaxUID)
        assert status.Status == 0x0000
        assert dataset_bytes(_stored_path(server.archive, meta.SOPInstanceUID)) == dataset_bytes(source)


def test_storescu_directory_of_small_ct(server: RunningServer, tmp_path: Path) -> None:
    study = generate_uid()
    for i in range(5):
        make_ct(tmp_path / f"{i}.dcm", study_uid=study, instance_number=i + 1)
    r = dcmtk("storescu", "+sd", "+r", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), str(tmp_path))
    assert r.returncode == 0, r.stdout
    with server.archive.db.session() as s:
        row = s.scalar(select(Study).where(Study.study_instance_uid == study))
        assert row is not None and row.number_of_instances == 5


def test_concurrent_senders(server: RunningServer, tmp_path: Path) -> None:
    """Four storescu processes at once, one association each: every instance is stored."""
    study = generate_uid()
    folders = []
    for n in range(4):
        folder = tmp_path / str(n)
        folder.mkdir()
        for i in range(5):
            make_ct(folder / f"{i}.dcm", study_uid=study, instance_number=n * 5 + i + 1)
        folders.append(folder)
    procs = [
        subprocess.Popen(["storescu", "+sd", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), str(f)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for f in folders
    ]
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out
    with server.archive.db.session() as s:
        row = s.scalar(select(Study).where(Study.study_instance_uid == study))
        assert row is not None and row.number_of_instances == 20


def _pynetdicom_store(
    server: RunningServer, path: Path, sop_class: str = CTImageStorage, syntax: str = ExplicitVRLittleEndian
) -> Dataset:
    """C-STORE the data set of a Part 10 file as it is (the command takes its UIDs from the file meta)."""
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's data set bytes unchanged
    ae = AE(ae_title="CRAFTER")
    assoc = ae.associate("127.0.0.1", server.dicom_port, [build_context(sop_class, syntax)], ae_title=server.ae_title)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
    finally:
        assoc.release()
    assert "Status" in status
    return status


def _part10(path: Path, meta_class: str, meta_instance: str, body: bytes) -> None:
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = meta_class
    meta.MediaStorageSOPInstanceUID = meta_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with open(path, "wb") as fh:
        fh.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fh, meta)  # type: ignore[arg-type]
        fh.write(body)


def test_store_refuses_missing_uid_garbage_and_wrong_sop_class(server: RunningServer, tmp_path: Path) -> None:
    good = tmp_path / "good.dcm"
    make_ct(good)

    # No SOP Instance UID (0008,0018) in the data set (the command names one).
    ds = pydicom.dcmread(good)
    uid = generate_uid()
    del ds.SOPInstanceUID
    missing = tmp_path / "missing.dcm"
    _part10(missing, CTImageStorage, uid, _encode(ds))
    status = _pynetdicom_store(server, missing)
    assert status.Status == 0xA900, status
    assert "SOP Instance UID" in str(status.get("ErrorComment", ""))
    assert _stored(server.archive, uid) is None

    # Garbage where the data set should be.
    uid = generate_uid()
    garbage = tmp_path / "garbage.dcm"
    _part10(garbage, CTImageStorage, uid, b"\x08\x00\x16\x00UI\xff\x7f" + b"\x13" * 501)
    status = _pynetdicom_store(server, garbage)
    assert status.Status & 0xF000 in (0xA000, 0xC000), status
    assert _stored(server.archive, uid) is None

    # The data set is an MR image, the request says CT.
    mr = pydicom.dcmread(good)
    mr.SOPClassUID = MRImageStorage
    mr.SOPInstanceUID = uid = generate_uid()
    wrong = tmp_path / "wrong.dcm"
    _part10(wrong, CTImageStorage, uid, _encode(mr))
    status = _pynetdicom_store(server, wrong)
    assert status.Status == 0xA900, status
    assert "SOP Class" in str(status.get("ErrorComment", ""))
    assert _stored(server.archive, uid) is None

    # The same sender's well-formed instance on the same path is stored.
    status = _pynetdicom_store(server, good)
    assert status.Status == 0x0000
    assert _stored(server.archive, pydicom.dcmread(good).SOPInstanceUID) is not None


def test_large_instance_streams_to_disk(server: RunningServer, tmp_path: Path) -> None:
    """A 32 MiB data set is received into a file PDU by PDU, never held whole in memory."""
    path = tmp_path / "large.dcm"
    uid = make_ct(path, rows=4096, columns=4096).SOPInstanceUID  # 4096 x 4096 x 16 bit
    size = path.stat().st_size
    gc.collect()
    tracemalloc.start()
    try:
        # DCMTK sends: only the listener allocates in this process.
        r = dcmtk("storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.returncode == 0, r.stdout
    assert peak < size // 4, f"peak {peak} bytes for a {size}-byte data set"
    assert dataset_bytes(_stored_path(server.archive, uid)) == dataset_bytes(path)


def _encode(ds: Dataset) -> bytes:
    from pynetdicom.dsutils import encode

    data = encode(ds, False, True)
    assert data is not None
    return data


def test_store_accepts_private_sop_class(server: RunningServer, tmp_path: Path) -> None:
    private_class = "1.3.6.1.4.1.99999.1.1"
    path = tmp_path / "private.dcm"
    ds = make_ct()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = private_class
    ds.save_as(path, enforce_file_format=True)
    status = _pynetdicom_store(server, path, private_class)
    assert status.Status == 0x0000
    inst = _stored(server.archive, ds.SOPInstanceUID)
    assert inst is not None and inst.sop_class_uid == private_class
    assert dataset_bytes(_stored_path(server.archive, ds.SOPInstanceUID)) == dataset_bytes(path)


# -- C-FIND ----------------------------------------------------------------------------------------------


def _findscu(server: RunningServer, out: Path, *keys: str, model: str = "-S") -> list[Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    args = ["findscu", model, "-X", "-od", str(out), "-aec", server.ae_title]
    for k in keys:
        args += ["-k", k]
    r = dcmtk(*args, "127.0.0.1", str(server.dicom_port))
    assert r.returncode == 0, r.stdout
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_findscu_study_level_wildcard_and_date_range(server: RunningServer, tmp_path: Path) -> None:
    tag = _tag()
    jan = _ingest_study(server.archive, tmp_path, 3, patient_name=f"FIND{tag}^Anna", study_date="20240115")
    _ingest_study(server.archive, tmp_path, 1, patient_name=f"FIND{tag}^Bert", study_date="20240301")
    _ingest_study(server.archive, tmp_path, 1, patient_name=f"OTHER{tag}^Carl", study_date="20240110")

    found = _findscu(
        server, tmp_path / "rsp",
        "QueryRetrieveLevel=STUDY", f"PatientName=find{tag}*", "StudyDate=20240101-20240131",
        "StudyInstanceUID", "NumberOfStudyRelatedInstances", "ModalitiesInStudy",
        "PatientAge",  # not indexed: returned empty
    )
    assert len(found) == 1
    rsp = found[0]
    assert rsp.StudyInstanceUID == jan[0].StudyInstanceUID
    assert str(rsp.PatientName) == f"FIND{tag}^Anna"
    assert rsp.StudyDate == "20240115"
    assert int(rsp.NumberOfStudyRelatedInstances) == 3
    assert rsp.ModalitiesInStudy == "CT"
    assert "PatientAge" in rsp and not rsp.PatientAge
    assert rsp.QueryRetrieveLevel == "STUDY"
    assert rsp.SpecificCharacterSet == "ISO_IR 192"
    assert "AccessionNumber" not in rsp and "PatientID" not in rsp  # only what was asked

    both = _findscu(server, tmp_path / "rsp2", "QueryRetrieveLevel=STUDY", f"PatientName=FIND{tag}*",
                    "StudyInstanceUID")
    assert len(both) == 2


def test_findscu_series_and_image_levels(server: RunningServer, tmp_path: Path) -> None:
    study = _ingest_study(server.archive, tmp_path, 4)
    study_uid = study[0].StudyInstanceUID
    series = _findscu(server, tmp_path / "s", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study_uid}",
                      "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances")
    assert sorted(str(d.SeriesInstanceUID) for d in series) == sorted({d.SeriesInstanceUID for d in study})
    assert all(d.Modality == "CT" and int(d.NumberOfSeriesRelatedInstances) == 2 for d in series)

    first = study[0].SeriesInstanceUID
    images = _findscu(server, tmp_path / "i", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study_uid}",
                      f"SeriesInstanceUID={first}", "SOPInstanceUID", "InstanceNumber", "SOPClassUID")
    assert sorted(str(d.SOPInstanceUID) for d in images) == sorted(
        d.SOPInstanceUID for d in study if d.SeriesInstanceUID == first
    )
    assert {str(d.SOPClassUID) for d in images} == {CTImageStorage}
    assert sorted(int(d.InstanceNumber) for d in images) == [1, 3]


def test_findscu_patient_root(server: RunningServer, tmp_path: Path) -> None:
    pid = f"PID{_tag()}"
    _ingest_study(server.archive, tmp_path, 1, patient_id=pid, patient_name="Root^Patient")
    _ingest_study(server.archive, tmp_path, 2, patient_id=pid, patient_name="Root^Patient")
    patients = _findscu(server, tmp_path / "p", "QueryRetrieveLevel=PATIENT", f"PatientID={pid}", "PatientName",
                        "NumberOfPatientRelatedStudies", model="-P")
    assert len(patients) == 1
    assert str(patients[0].PatientName) == "Root^Patient"
    assert int(patients[0].NumberOfPatientRelatedStudies) == 2

    studies = _findscu(server, tmp_path / "ps", "QueryRetrieveLevel=STUDY", f"PatientID={pid}", "StudyInstanceUID",
                       model="-P")
    assert len(studies) == 2


def test_findscu_unicode_names(server: RunningServer, tmp_path: Path) -> None:
    tag = _tag()
    study = _ingest_study(server.archive, tmp_path, 1, patient_name=f"Müller{tag}^Jörg")
    found = _findscu(server, tmp_path / "u", "SpecificCharacterSet=ISO_IR 192", "QueryRetrieveLevel=STUDY",
                     f"PatientName=müller{tag}*", "StudyInstanceUID")
    assert [str(d.StudyInstanceUID) for d in found] == [study[0].StudyInstanceUID]
    assert str(found[0].PatientName) == f"Müller{tag}^Jörg"


def test_find_refuses_bad_identifiers(server: RunningServer) -> None:
    from radsight.dimse.scu import DimseError

    peer = Peer(server.ae_title, "127.0.0.1", server.dicom_port)
    with pytest.raises(DimseError) as info:
        find(peer, "PATIENT", {"PatientID": ""})  # no PATIENT level in the study root model
    assert info.value.status == 0xA900
    with pytest.raises(DimseError):
        find(peer, "STUDY", {"StudyDate": "2024-01-01-2024"})
    assert find(peer, "STUDY", {"PatientID": f"NOBODY{_tag()}", "StudyInstanceUID": ""}) == []


# -- C-MOVE, C-GET, send -------------------------------------------------------------------------------


def _assert_received_as_stored(archive: Archive, received: list[Path], uids: set[str]) -> None:
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in received}
    assert set(got) == uids
    for uid, path in got.items():
        assert dataset_bytes(path) == dataset_bytes(_stored_path(archive, uid)), uid


def test_movescu_study_to_dcmtk_storescp(server: RunningServer, tmp_path: Path) -> None:
    study = _ingest_study(server.archive, tmp_path / "in", 4)
    with dcmtk_storescp(tmp_path / "dest", f"DEST{_tag()}"[:16]) as dest:
        with server.archive.db.session() as s:
            add_peer(s, dest.ae_title, "127.0.0.1", dest.port)
        r = dcmtk("movescu", "-S", "-aec", server.ae_title, "-aem", dest.ae_title,
                  "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study[0].StudyInstanceUID}",
                  "127.0.0.1", str(server.dicom_port))
        assert r.returncode == 0, r.stdout
        _assert_received_as_stored(server.archive, dest.files(), {d.SOPInstanceUID for d in study})


def test_move_keeps_compressed_syntax_and_reports_counts(server: RunningServer, tmp_path: Path) -> None:
    source = WG04 / "J2KI" / "CT2_J2KI"
    assert server.archive.ingest.ingest_file(source).ok
    sop_uid = pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID
    peer = Peer(server.ae_title, "127.0.0.1", server.dicom_port)
    with dcmtk_storescp(tmp_path / "dest", f"J2K{_tag()}") as dest:
        with server.archive.db.session() as s:
            add_peer(s, dest.ae_title, "127.0.0.1", dest.port)
        report = move(peer, "IMAGE", {"StudyInstanceUID": "", "SeriesInstanceUID": "", "SOPInstanceUID": sop_uid},
                      dest.ae_title)
        assert report.ok and (report.completed, report.failed) == (1, 0), report
        _assert_received_as_stored(server.archive, dest.files(), {sop_uid})
        assert dataset_bytes(dest.files()[0]) == dataset_bytes(source)
        assert pydicom.dcmread(dest.files()[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"


def test_move_to_unknown_destination_fails_a801(server: RunningServer, tmp_path: Path) -> None:
    study = _ingest_study(server.archive, tmp_path, 1)
    peer = Peer(server.ae_title, "127.0.0.1", server.dicom_port)
    report = move(peer, "STUDY", {"StudyInstanceUID": study[0].StudyInstanceUID}, f"NOWHERE{_tag()}")
    assert report.status == 0xA801

    r = dcmtk("movescu", "-S", "-aec", server.ae_title, "-aem", "NOWHERE",
              "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study[0].StudyInstanceUID}",
              "127.0.0.1", str(server.dicom_port))
    assert r.returncode != 0 and "MoveDestinationUnknown" in r.stdout, r.stdout


def test_move_partial_failure_is_b000(server: RunningServer, tmp_path: Path) -> None:
    study = _ingest_study(server.archive, tmp_path / "in", 3)
    # One stored file vanishes: its sub-operation fails, the others go through.
    _stored_path(server.archive, study[1].SOPInstanceUID).unlink()
    peer = Peer(server.ae_title, "127.0.0.1", server.dicom_port)
    with dcmtk_storescp(tmp_path / "dest", f"PART{_tag()}") as dest:
        with server.archive.db.session() as s:
            add_peer(s, dest.ae_title, "127.0.0.1", dest.port)
        report = move(peer, "STUDY", {"StudyInstanceUID": study[0].StudyInstanceUID}, dest.ae_title)
        assert report.status == 0xB000, report
        assert (report.completed, report.failed) == (2, 1)
        assert report.failed_instances == [study[1].SOPInstanceUID]
        assert len(dest.files()) == 2


def test_getscu_series_byte_identical(server: RunningServer, tmp_path: Path) -> None:
    study = _ingest_study(server.archive, tmp_path / "in", 4)
    series_uid = study[0].SeriesInstanceUID
    out = tmp_path / "got"
    out.mkdir()
    r = dcmtk("getscu", "-S", "+B", "-od", str(out), "-aec", server.ae_title,
              "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study[0].StudyInstanceUID}",
              "-k", f"SeriesInstanceUID={series_uid}", "127.0.0.1", str(server.dicom_port))
    assert r.returncode == 0, r.stdout
    wanted = {d.SOPInstanceUID for d in study if d.SeriesInstanceUID == series_uid}
    files = sorted(p for p in out.iterdir() if p.is_file())
    _assert_received_as_stored(server.archive, files, wanted)
    # ... and the round trip: what came back is what was sent in.
    sent = {d.SOPInstanceUID: d for d in study}
    for p in files:
        back = pydicom.dcmread(p)
        assert back.PixelData == sent[back.SOPInstanceUID].PixelData


def test_empty_sop_uids_are_accepted_and_retrieved_filled_in(server: RunningServer, tmp_path: Path) -> None:
    """Empty SOP Class / Instance UIDs (0008,0016)/(0008,0018), named by the request (like the
    file meta of imported files): accepted and stored unchanged; C-GET sends the instance with
    the indexed values filled in, everything else as stored."""
    path = tmp_path / "empty.dcm"
    ds = make_ct()
    sop_uid = ds.SOPInstanceUID
    ds.SOPClassUID = ds.SOPInstanceUID = ""
    ds.save_as(path, enforce_file_format=True)
    assert _pynetdicom_store(server, path).Status == 0x0000
    assert dataset_bytes(_stored_path(server.archive, sop_uid)) == dataset_bytes(path)
    inst = _stored(server.archive, sop_uid)
    assert inst is not None and inst.sop_class_uid == CTImageStorage

    out = tmp_path / "got"
    out.mkdir()
    r = dcmtk("getscu", "-S", "+B", "-od", str(out), "-aec", server.ae_title,
              "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
              "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}", "-k", f"SOPInstanceUID={sop_uid}",
              "127.0.0.1", str(server.dicom_port))
    assert r.returncode == 0, r.stdout
    (got,) = [p for p in out.iterdir() if p.is_file()]
    back = pydicom.dcmread(got)
    assert (back.SOPClassUID, back.SOPInstanceUID) == (CTImageStorage, sop_uid)
    back.SOPClassUID = back.SOPInstanceUID = ""
    assert back == pydicom.dcmread(path)


def test_siemens_series_without_study_uid_is_refused_with_the_reason(server: RunningServer) -> None:
    """The shared Siemens CT series also lacks Study/Series Instance UIDs: refused over DIMSE,
    as on import, and the sender is told why."""
    source = sorted((SHARED_DATA / "ct" / "totalsegmentator" / "example_ct_dicom").iterdir())[0]
    meta = pydicom.dcmread(source, stop_before_pixels=True).file_meta
    status = _pynetdicom_store(server, source, CTImageStorage, meta.TransferSyntaxUID)
    assert status.Status == 0xA900
    assert "Study Instance UID" in str(status.ErrorComment)
    assert _stored(server.archive, meta.MediaStorageSOPInstanceUID) is None


def test_getscu_refuses_retrieve_without_unique_key(server: RunningServer, tmp_path: Path) -> None:
    r = dcmtk("getscu", "-S", "-od", str(tmp_path), "-aec", server.ae_title,
              "-k", "QueryRetrieveLevel=SERIES", "-k", "SeriesInstanceUID=", "127.0.0.1", str(server.dicom_port))
    assert "DataSetDoesNotMatchSOPClass" in r.stdout, r.stdout  # 0xA900 (getscu exits 0 anyway)
    assert not [p for p in tmp_path.iterdir() if p.is_file()]


def test_send_study_to_dcmtk_storescp(server: RunningServer, tmp_path: Path) -> None:
    study = _ingest_study(server.archive, tmp_path / "in", 5)
    jpll = WG04 / "JPLL" / "CT1_JPLL"  # one compressed instance, same study: sent as stored
    extra = tmp_path / "jpll.dcm"
    ds = pydicom.dcmread(jpll)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study[0].StudyInstanceUID, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(extra, enforce_file_format=True)
    assert server.archive.ingest.ingest_file(extra).ok
    uids = {d.SOPInstanceUID for d in study} | {ds.SOPInstanceUID}

    with dcmtk_storescp(tmp_path / "dest", f"SEND{_tag()}") as dest:
        with server.archive.db.session() as s:
            add_peer(s, dest.ae_title, "127.0.0.1", dest.port)
        report = send_study(server.archive, study[0].StudyInstanceUID, dest.ae_title)
        assert (report.sent, report.failed) == (6, 0)
        _assert_received_as_stored(server.archive, dest.files(), uids)


def test_send_study_converts_uncompressed_and_reports_what_cannot_go(server: RunningServer, tmp_path: Path) -> None:
    """A peer taking Implicit VR Little Endian only: the Explicit VR instances are re-encoded,
    the JPEG 2000 one cannot be (no transcoding) and is reported failed."""
    study = _ingest_study(server.archive, tmp_path / "in", 2)
    j2k = pydicom.dcmread(WG04 / "J2KI" / "CT2_J2KI")
    j2k.StudyInstanceUID, j2k.SeriesInstanceUID = study[0].StudyInstanceUID, generate_uid()
    j2k.SOPInstanceUID = j2k.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    j2k.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    assert server.archive.ingest.ingest_file(tmp_path / "j2k.dcm").ok

    with dcmtk_storescp(tmp_path / "dest", f"IMPL{_tag()}", "+xi") as dest:
        with server.archive.db.session() as s:
            add_peer(s, dest.ae_title, "127.0.0.1", dest.port)
        report = send_study(server.archive, study[0].StudyInstanceUID, dest.ae_title)
        assert (report.sent, report.failed, report.failed_instances) == (2, 1, [j2k.SOPInstanceUID])
        received = {str(d.SOPInstanceUID): d for d in (pydicom.dcmread(p) for p in dest.files())}
    assert set(received) == {d.SOPInstanceUID for d in study}
    for original in study:
        got = received[original.SOPInstanceUID]
        assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
        assert got.PixelData == original.PixelData and got.PatientName == original.PatientName


def test_send_study_errors(server: RunningServer, tmp_path: Path) -> None:
    study = _ingest_study(server.archive, tmp_path, 1)
    with pytest.raises(LookupError):
        send_study(server.archive, study[0].StudyInstanceUID, f"UNKNOWN{_tag()}")
    closed = f"CLOSED{_tag()}"
    with server.archive.db.session() as s:
        add_peer(s, closed, "127.0.0.1", free_port())
    with pytest.raises(LookupError):
        send_study(server.archive, generate_uid(), closed)
    with pytest.raises(ConnectionError):
        send_study(server.archive, study[0].StudyInstanceUID, closed)


def test_scu_find_against_radsight(server: RunningServer, tmp_path: Path) -> None:
    study = _ingest_study(server.archive, tmp_path, 2, accession=f"ACC{_tag()}")
    peer = Peer(server.ae_title, "127.0.0.1", server.dicom_port)
    found = find(peer, "STUDY", {"AccessionNumber": study[0].AccessionNumber, "StudyInstanceUID": ""},
                 calling_ae="TESTSCU")
    assert [d.StudyInstanceUID for d in found] == [study[0].StudyInstanceUID]


def test_storage_contexts_split_over_associations() -> None:
    pairs = [(f"1.2.826.0.1.3680043.10.99.{i}", ts) for i in range(70)
             for ts in (ExplicitVRLittleEndian, "1.2.840.10008.1.2.4.90")]
    groups = storage_contexts(pairs)
    # 4 contexts a SOP class: (Explicit), (Implicit) fallback, (JPEG 2000), (Explicit, Implicit) fallback.
    assert [len(g.contexts) for g in groups] == [128, 128, 24]
    assert set().union(*(g.pairs for g in groups)) == set(pairs)
    for g in groups:
        assert len(g.contexts) <= MAX_CONTEXTS
        offered = {(cx.abstract_syntax, tuple(cx.transfer_syntax)) for cx in g.contexts}
        for sop_class, ts in g.pairs:
            assert (sop_class, (ts,)) in offered  # the stored syntax, alone in its context
