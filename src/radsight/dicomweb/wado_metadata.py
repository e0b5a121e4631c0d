"""DICOM JSON metadata (PS3.18 F.2) for WADO-RS, cached per instance in the index.

Each instance's JSON is built once from its stored header (pydicom's ``to_json_dict``) and
kept in ``Instance.metadata_json``; responses join the cached strings, so a viewer loading
a series again costs one query and no parsing. Bulk data (Pixel Data and binary values
over the threshold, at any depth) get a BulkDataURI; the cached JSON holds a placeholder
for the server's base URL, replaced when the response is written, so the same cache
serves any host name or proxy prefix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from radsight.archive import Archive
from radsight.imaging.decode import read_header
from radsight.imaging.frames import pixel_element
from radsight.index.models import Instance

log = logging.getLogger(__name__)

BASE_PLACEHOLDER = "{{RADSIGHT_DICOMWEB}}"
# pydicom compares the threshold with the base64 length: values over 768 bytes go as bulk data.
BULK_DATA_THRESHOLD = 1024
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


def bulk_data_path(path: str) -> list[int | tuple[int, int]]:
    """Parse ``TAG[/ITEM/TAG]*`` (hex tags, 0-based item numbers) into tags and (item, tag) steps."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts or len(parts) % 2 == 0:
        raise ValueError("a bulk data path is a tag, optionally preceded by tag/item pairs")
    steps: list[int | tuple[int, int]] = []
    for i, part in enumerate(parts):
        if i % 2 == 1:
            continue
        if len(part) != 8:
            raise ValueError(f"{part!r} is not an 8-digit hexadecimal tag")
        tag = int(part, 16)
        steps.append(tag if i == 0 else (int(parts[i - 1]), tag))
    return steps


def find_bulk_element(ds: Dataset, path: str) -> DataElement | None:
    """The binary element a bulk data path names, or None."""
    try:
        steps = bulk_data_path(path)
    except ValueError:
        return None
    current: Dataset = ds
    elem: DataElement | None = None
    for step in steps:
        if isinstance(step, tuple):
            item, tag = step
            if elem is None or elem.VR != "SQ" or not 0 <= item < len(elem.value):
                return None
            current = elem.value[item]
        else:
            tag = step
        if tag not in current:
            return None
        elem = current[tag]
    if elem is None or elem.VR not in _BINARY_VRS:
        return None
    return elem


def _bulk_paths(ds: Dataset, prefix: str = "") -> dict[int, str]:
    """id(element) -> bulk data path for every binary element, at any depth."""
    paths: dict[int, str] = {}
    for elem in ds:
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                paths.update(_bulk_paths(item, f"{prefix}{elem.tag:08X}/{i}/"))
        elif elem.VR in _BINARY_VRS:
            paths[id(elem)] = f"{prefix}{elem.tag:08X}"
    return paths


def dataset_json(
    ds: Dataset,
    *,
    study_uid: str,
    series_uid: str,
    sop_instance_uid: str,
    sop_class_uid: str,
    transfer_syntax_uid: str,
    pixel_data: tuple[int, str] | None,
) -> str:
    """The cacheable DICOM JSON of a header data set (read without its pixel data).

    ``pixel_data`` is the (tag, VR) of its pixel data element, which gets a BulkDataURI.
    Usable wherever a header is already in memory (ingest could fill the cache with it).
    """
    uri = f"{BASE_PLACEHOLDER}/studies/{study_uid}/series/{series_uid}/instances/{sop_instance_uid}/bulkdata/"
    paths = _bulk_paths(ds)

    def bulk_uri(elem: DataElement) -> str:
        return uri + paths.get(id(elem), f"{elem.tag:08X}")

    obj = ds.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=bulk_uri, suppress_invalid_tags=True
    )
    # The archive indexes files whose SOP Class / Instance UID are empty by their file meta
    # values (see ingest); viewers need them in the metadata to display the instance.
    for key, value in (("00080016", sop_class_uid), ("00080018", sop_instance_uid)):
        if not obj.get(key, {}).get("Value"):
            obj[key] = {"vr": "UI", "Value": [value]}
    # Tells viewers the stored syntax, so they can ask for frames as stored (PS3.18 F.2).
    obj["00083002"] = {"vr": "UI", "Value": [transfer_syntax_uid]}
    if pixel_data is not None:
        tag, vr = pixel_data
        obj[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": uri + f"{tag:08X}"}
    return json.dumps(dict(sorted(obj.items())), ensure_ascii=False, separators=(",", ":"))


def instance_json(
    path: Path,
    *,
    study_uid: str,
    series_uid: str,
    sop_instance_uid: str,
    sop_class_uid: str,
    transfer_syntax_uid: str,
    pixel_data_offset: int | None,
    bits_allocated: int | None,
    has_pixels: bool,
) -> str:
    """The DICOM JSON object of one stored instance (everything but bulk data values)."""
    pixel_data: tuple[int, str] | None = None
    if pixel_data_offset is not None:
        pixel_data = pixel_element(path, pixel_data_offset, transfer_syntax_uid, bits_allocated)
    elif has_pixels:  # a deflated file: no plain offset to read the element header at
        pixel_data = (0x7FE00010, "OW" if (bits_allocated or 16) > 8 else "OB")
    return dataset_json(
        read_header(path),
        study_uid=study_uid,
        series_uid=series_uid,
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        pixel_data=pixel_data,
    )


def ensure_cached(archive: Archive, rows: Sequence[tuple[int, str | None, Mapping[str, Any]]]) -> list[str]:
    """The JSON of each (instance pk, cached JSON or None, builder arguments), filling the cache.

    Missing entries are built in one pass and written in one transaction; a failed cache
    write (a busy database) is logged and the response still served.
    """
    out: list[str] = []
    built: list[dict[str, Any]] = []
    for pk, cached, kwargs in rows:
        if cached is None:
            cached = instance_json(**kwargs)
            built.append({"id": pk, "metadata_json": cached})
        out.append(cached)
    if built:
        try:
            with archive.db.session() as s, s.begin():
                s.execute(update(Instance), built)
        except SQLAlchemyError as exc:
            log.warning("could not cache metadata of %d instance(s): %s", len(built), exc)
    return out


def join_metadata(objects: Sequence[str], dicomweb_base: str) -> str:
    """The response body: a JSON array of the cached objects, bulk data URIs made absolute."""
    return ("[" + ",".join(objects) + "]").replace('"' + BASE_PLACEHOLDER, '"' + dicomweb_base)
