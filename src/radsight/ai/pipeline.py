"""One model run on one series: load -> the package's task (:data:`radsight.ai.tasks.RUNNERS`) -> store.

The worker calls :func:`run_model`. Result UIDs are derived from the job (its id, the source
series and the model), so a retried job writes the same SOP Instance UIDs and the archive keeps
the first copy (DUPLICATE): one job never leaves two result sets.
"""

from __future__ import annotations

import io

from pydicom.dataset import Dataset

from radsight.ai.package import ModelPackage
from radsight.ai.result_types import FindingData, PipelineError, PipelineResult
from radsight.ai.results import ResultUIDs
from radsight.ai.tasks import RUNNERS, TaskOptions
from radsight.ai.tasks.segment import predict_labelmap
from radsight.ai.volume import load_series
from radsight.archive import Archive
from radsight.ingest.events import Outcome

# The names callers of a model run use, where they have always been imported from.
__all__ = ["FindingData", "PipelineError", "PipelineResult", "predict_labelmap", "run_model", "store"]


def store(archive: Archive, ds: Dataset) -> Outcome:
    """Store one result through the ingest service; STORED or DUPLICATE, else PipelineError."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    res = archive.ingest.ingest_bytes(buf.getvalue(), source="ai")
    if res.outcome not in (Outcome.STORED, Outcome.DUPLICATE):
        raise PipelineError(f"result {ds.SOPInstanceUID} was not stored: {res.outcome}: {res.message}")
    return res.outcome


def run_model(
    archive: Archive, package: ModelPackage, *, study_instance_uid: str, series_instance_uid: str, job_id: int
) -> PipelineResult:
    """Run ``package`` on the series and store its SEG / SR / parametric map in the source study."""
    meta = package.metadata
    volume = load_series(archive, series_instance_uid)
    if volume.study_instance_uid != study_instance_uid:
        raise PipelineError(f"series {series_instance_uid} belongs to study {volume.study_instance_uid}")
    if volume.modality not in meta.input.modality:
        raise PipelineError(
            f"{meta.name} takes {meta.input.modality}; series {series_instance_uid} is {volume.modality}"
        )
    runner = RUNNERS.get(meta.task)
    if runner is None:
        raise PipelineError(f"{meta.name}: {meta.task} ({meta.input.dimensions}D) is not supported by this engine yet")
    uids = ResultUIDs.for_job(job_id, series_instance_uid, meta)
    result, datasets = runner(volume, package, uids, TaskOptions(seg_type=archive.settings.ai_seg_type))
    for ds in datasets:
        store(archive, ds)
    return result
