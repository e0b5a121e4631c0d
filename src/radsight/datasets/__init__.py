"""Demo data made from the real shared images: chest X-rays as DICOM DX, a NIfTI CT as a CT series.

``radsight demo-data OUT_DIR`` writes both (see :func:`write_demo_data`).
"""

from radsight.datasets.ct import nifti_to_ct_series
from radsight.datasets.cxr import cxr_to_dicom, pick_chest_xrays
from radsight.datasets.demo import DemoData, write_demo_data

__all__ = ["DemoData", "cxr_to_dicom", "nifti_to_ct_series", "pick_chest_xrays", "write_demo_data"]
