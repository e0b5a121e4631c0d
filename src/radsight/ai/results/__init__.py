"""AI results as standard DICOM, made with highdicom: SEG (seg.py), SR TID 1500 (sr.py), parametric map (pmap.py).

Every result belongs to the source study in a new series, says it is AI generated in its
SeriesDescription, and names the model (ManufacturerModelName) and its version (SoftwareVersions).
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radsight.ai.package import Code, ModelMetadata
from radsight.ai.result_types import AI_LABEL

MANUFACTURER = "RadSight"
CONTENT_CREATOR = "RadSight AI"
SERIES_NUMBERS = {"seg": 9001, "pmap": 9002, "sr": 9003}


@dataclass(frozen=True)
class ResultUIDs:
    """Series and SOP Instance UIDs of one job's results, the same on every retry of the job."""

    seg_series: str
    seg_sop: str
    pmap_series: str
    pmap_sop: str
    sr_series: str
    sr_sop: str
    # The seed the UIDs above were made from: per-label parametric maps derive theirs from it too.
    seed: tuple[str, ...] = ()

    def pmap_sop_for(self, label_index: int, *, first: bool) -> str:
        """SOP Instance UID of one label's parametric map (a segmentation's maps share the map series).

        The first label's map keeps ``pmap_sop`` (the UID every result had before there was one
        map per label), so results stored by earlier versions and retried jobs stay duplicates.
        """
        if first or not self.seed:
            return self.pmap_sop
        return str(generate_uid(entropy_srcs=[*self.seed, f"pmap-sop-label-{label_index}"]))

    @classmethod
    def for_job(cls, job_id: int, series_instance_uid: str, meta: ModelMetadata) -> ResultUIDs:
        # The source series and the model are in the seed as well, so that two archives (each with
        # its own job 1) never mint the same UIDs.
        seed = ["radsight-ai", str(job_id), series_instance_uid, meta.name, meta.version, meta.sha256]

        def uid(kind: str) -> str:
            return str(generate_uid(entropy_srcs=[*seed, kind]))

        return cls(
            seg_series=uid("seg-series"),
            seg_sop=uid("seg-sop"),
            pmap_series=uid("pmap-series"),
            pmap_sop=uid("pmap-sop"),
            sr_series=uid("sr-series"),
            sr_sop=uid("sr-sop"),
            seed=tuple(seed),
        )


def coded(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def algorithm_identification(meta: ModelMetadata) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=meta.name, family=codes.DCM.ArtificialIntelligence, version=meta.version, source=meta.manufacturer
    )


def label_result(ds: Dataset, meta: ModelMetadata, what: str) -> Dataset:
    """The visible AI label and provenance every result carries."""
    ds.SeriesDescription = f"{AI_LABEL}: {what}"[:64]
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = meta.name
    ds.SoftwareVersions = meta.version
    return ds
