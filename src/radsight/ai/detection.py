"""Detection models: boxes (2D) or cuboids (3D) with a label and a score per object.

Placeholder: the engine dispatches ``Task.DETECTION`` here; the implementation lands next.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from radsight.ai.package import ModelPackage
from radsight.ai.pipeline import PipelineError, PipelineResult
from radsight.ai.results import ResultUIDs
from radsight.ai.volume import Volume


def detect(volume: Volume, package: ModelPackage, uids: ResultUIDs) -> tuple[PipelineResult, list[Dataset]]:
    raise PipelineError(f"{package.metadata.name}: detection is not supported by this engine yet")
