"""What the CT organ model is: its name, grid, input contract, organs and network."""

from __future__ import annotations

from typing import Any

from radsight.ai.package import Code, InputSpec, Normalisation, Windowing
from radsight.train import synth_ct

MODEL_NAME = "ct-abdomen-organs"
MODEL_VERSION = "1.0.0"
# Model grid and input: 3 mm isotropic (the example CT's spacing); a patch spans the whole
# abdomen in-plane (288 x 384 mm) so left and right are always in view, 96 mm along z.
SPACING = (3.0, 3.0, 3.0)
PATCH = (32, 96, 128)
HU_LOW, HU_HIGH = -200.0, 300.0
CHANNELS = (16, 32, 64, 96, 96)
STRIDES = (2, 2, 2, 2)
N_CLASSES = 1 + len(synth_ct.LABELS)

ANATOMICAL_STRUCTURE = Code(value="123037004", scheme="SCT", meaning="Anatomical Structure")
ORGANS: list[tuple[int, str, Code, list[int]]] = [
    (1, "liver", Code(value="10200004", scheme="SCT", meaning="Liver"), [221, 130, 101]),
    (2, "spleen", Code(value="78961009", scheme="SCT", meaning="Spleen"), [157, 108, 162]),
    (3, "right kidney", Code(value="9846003", scheme="SCT", meaning="Right kidney"), [185, 102, 83]),
    (4, "left kidney", Code(value="18639004", scheme="SCT", meaning="Left kidney"), [128, 174, 128]),
]

# Routing: the abdominal BodyPartExamined values (PS3.16 CID 4031) a scan of these organs carries.
BODY_PARTS = ["ABDOMEN", "ABDOMENPELVIS", "CHESTABDOMEN", "CHESTABDOMENPELVIS", "TORSO"]


def model_spec() -> InputSpec:
    return InputSpec(
        modality=["CT"],
        body_part=list(BODY_PARTS),
        dimensions=3,
        spacing=list(SPACING),
        size=list(PATCH),
        windowing=Windowing(center=(HU_LOW + HU_HIGH) / 2, width=HU_HIGH - HU_LOW),
        normalisation=Normalisation(mode="fixed", low=HU_LOW, high=HU_HIGH),
        input_name="input",
        sliding_window_overlap=0.25,
    )


def network() -> Any:
    """The MONAI 3D U-Net (torch and MONAI are imported here, never at module import)."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=N_CLASSES,
        channels=CHANNELS,
        strides=STRIDES,
        num_res_units=1,
    )
