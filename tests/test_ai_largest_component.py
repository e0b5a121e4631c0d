"""Organs are one structure: ``largest_component_only`` labels lose their stray pieces."""

from __future__ import annotations

import numpy as np

from radsight.ai import postprocess
from radsight.ai.package import Code, Label
from radsight.ai.result_types import LabelStatistics

_CAT = Code(value="123037004", scheme="SCT", meaning="Anatomical Structure")


def _label(index: int, name: str, largest: bool) -> Label:
    return Label(index=index, name=name, category=_CAT, type=Code(value=str(index), scheme="99T", meaning=name),
                 largest_component_only=largest)


def test_only_flagged_labels_keep_their_largest_component() -> None:
    labelmap = np.zeros((6, 20, 20), dtype=np.uint8)
    labelmap[1:5, 2:10, 2:10] = 1  # the organ: 256 voxels
    labelmap[1:2, 15:17, 15:17] = 1  # a stray piece of it: 4 voxels
    labelmap[2:4, 12:14, 2:4] = 2  # a lesion label with two pieces, not flagged
    labelmap[4:5, 17:19, 17:19] = 2
    labels = [_label(1, "liver", True), _label(2, "nodule", False)]
    out = postprocess.keep_largest_components(labelmap, labels)
    assert np.count_nonzero(out == 1) == 256 and out[1, 15, 15] == 0
    assert np.array_equal(out == 2, labelmap == 2)
    assert np.count_nonzero(labelmap == 1) == 260, "the input is not modified"


def test_organ_measurements_have_no_lesion_count() -> None:
    stats = LabelStatistics(_label(1, "liver", True), 10, 1.0, 1, 50.0, 80.0, 0, [0, 0, 1, 1], 1.0)
    names = [m["name"] for m in postprocess.measurements(stats)]
    assert "Lesion count" not in names and "Volume" in names
    stats.label = _label(2, "nodule", False)
    assert "Lesion count" in [m["name"] for m in postprocess.measurements(stats)]
