"""Model tasks, one module each, behind one table: ``RUNNERS[meta.task](volume, package, uids, options)``.

A task module turns a series and a model package into a :class:`~radsight.ai.tasks.common.TaskOutput`:
the findings and result UIDs to record (:mod:`radsight.ai.result_types`) and the DICOM results to
store (made by :mod:`radsight.ai.results`). A new task is a new module with a ``run`` of the
:data:`TaskRunner` shape and one line in :data:`RUNNERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from radsight.ai.package import ModelPackage, Task
from radsight.ai.results import ResultUIDs
from radsight.ai.tasks import classify, detect, segment
from radsight.ai.tasks.common import TaskOptions, TaskOutput
from radsight.ai.volume import Volume

TaskRunner = Callable[[Volume, ModelPackage, ResultUIDs, TaskOptions], TaskOutput]

RUNNERS: Mapping[Task, TaskRunner] = MappingProxyType(
    {
        Task.SEGMENTATION: segment.run,
        Task.CLASSIFICATION: classify.run,
        Task.DETECTION: detect.run,
    }
)

__all__ = ["RUNNERS", "TaskOptions", "TaskOutput", "TaskRunner"]
