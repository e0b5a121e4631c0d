"""Rendering a decoded frame for display: JPEG or PNG, 8 bits per sample.

Grayscale: Modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence), then the
VOI transform (the window asked for; else the file's VOI LUT or Window Center/Width;
else the frame's minimum..maximum), then MONOCHROME1 inverted. Colour: palette colour
through its LUTs, YBR already converted to RGB by the decoder. pydicom's processing
functions do each step; Pillow scales and encodes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing

from radsight.imaging.decode import decoded_photometric

MEDIA_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
MAX_VIEWPORT = 8192


class RenderError(ValueError):
    """The render parameters cannot be applied to this image (a 4xx, not a server fault)."""


@dataclass(frozen=True, slots=True)
class Window:
    """A VOI window (PS3.3 C.11.2.1.2): centre, width and the VOI LUT function."""

    center: float
    width: float
    function: str = "LINEAR"

    def __post_init__(self) -> None:
        if self.function not in VOI_FUNCTIONS:
            raise RenderError(f"VOI LUT function must be one of {', '.join(VOI_FUNCTIONS)}")
        if self.function == "LINEAR" and self.width < 1:
            raise RenderError("window width must be at least 1 for the LINEAR function")
        if self.width <= 0:
            raise RenderError("window width must be greater than 0")


@dataclass(frozen=True, slots=True)
class RenderOptions:
    media_type: str = "image/jpeg"
    window: Window | None = None
    # Fit inside (columns, rows), keeping the aspect ratio; None keeps the image size.
    viewport: tuple[int, int] | None = None
    quality: int = 90
    # WADO-URI region: (left, top, right, bottom) as fractions of the image, applied first.
    region: tuple[float, float, float, float] | None = None


def _apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """The window's output on 0..255 (float)."""
    if window.function == "LINEAR":
        # PS3.3 C.11.2.1.2.1, the same result as pydicom's apply_windowing (a test holds them
        # equal): written out because pydicom's boolean-mask version on float64 costs about
        # ten times this clip in the latency path of every rendered frame and thumbnail.
        if window.width == 1:
            return np.where(values > window.center - 0.5, 255.0, 0.0)
        scaled = (values - (window.center - 0.5)) / (window.width - 1) + 0.5
        return np.clip(scaled, 0.0, 1.0) * 255.0
    if window.function == "LINEAR_EXACT":
        return np.clip((values - window.center) / window.width + 0.5, 0.0, 1.0) * 255.0
    # SIGMOID: pydicom's windowing maps onto the output range of the data set it is given:
    # an 8-bit unsigned description (no rescale) makes that range 0..255, the display range.
    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored = 8
    voi.PixelRepresentation = 0
    voi.WindowCenter = window.center
    voi.WindowWidth = window.width
    voi.VOILUTFunction = window.function
    return np.asarray(apply_windowing(values, voi))


def _file_window(header: Dataset) -> Window | None:
    if "WindowCenter" not in header or "WindowWidth" not in header:
        return None
    try:
        center, width = header.WindowCenter, header.WindowWidth
        center = float(center[0] if isinstance(center, list | tuple) or hasattr(center, "__getitem__") else center)
        width = float(width[0] if isinstance(width, list | tuple) or hasattr(width, "__getitem__") else width)
        function = str(header.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        return Window(center, width, function if function in VOI_FUNCTIONS else "LINEAR")
    except (TypeError, ValueError, IndexError):
        return None


def _to_display_gray(arr: np.ndarray, header: Dataset, window: Window | None) -> np.ndarray:
    values = np.asarray(apply_modality_lut(arr, header), dtype=np.float32)
    if window is not None:
        display = _apply_window(values, window)
    elif header.get("VOILUTSequence"):
        item = header.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        display = np.asarray(apply_voi(values, header), dtype=np.float32) * (255.0 / (2**bits - 1))
    elif (file_window := _file_window(header)) is not None:
        display = _apply_window(values, file_window)
    else:
        low, high = float(values.min()), float(values.max())
        display = _apply_window(values, Window((low + high) / 2, max(high - low, 1e-6), "LINEAR_EXACT"))
    out = np.rint(display).astype(np.uint8)  # display is within 0..255
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    inverse = str(header.get("PresentationLUTShape", "")).strip().upper() == "INVERSE"
    if (photometric == "MONOCHROME1") != inverse:
        out = 255 - out
    return out


def _to_display_colour(arr: np.ndarray, header: Dataset) -> np.ndarray:
    photometric = decoded_photometric(header)
    if photometric == "PALETTE COLOR":
        rgb: np.ndarray = np.asarray(apply_color_lut(arr, header))
        return np.right_shift(rgb, 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)
    if arr.dtype.itemsize > 1:
        bits = int(header.get("BitsStored", 16) or 16)
        return np.clip(np.right_shift(arr.astype(np.int64), max(bits - 8, 0)), 0, 255).astype(np.uint8)
    return arr.astype(np.uint8)


def to_display(arr: np.ndarray, header: Dataset, window: Window | None = None) -> np.ndarray:
    """An 8-bit display image: (rows, columns) grayscale or (rows, columns, 3) RGB."""
    if arr.ndim == 3 or decoded_photometric(header) in ("RGB", "PALETTE COLOR"):
        return _to_display_colour(arr, header)
    return _to_display_gray(arr, header, window)


def fit_size(width: int, height: int, viewport: tuple[int, int]) -> tuple[int, int]:
    """The largest size inside ``viewport`` with the aspect ratio of ``width`` x ``height``."""
    vw, vh = viewport
    scale = min(vw / width, vh / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def render(arr: np.ndarray, header: Dataset, options: RenderOptions) -> bytes:
    """Encode a decoded frame as ``options.media_type`` (JPEG or PNG)."""
    if options.media_type not in MEDIA_TYPES:
        raise RenderError(f"cannot render as {options.media_type}; use one of {', '.join(MEDIA_TYPES)}")
    if options.region is not None:
        left, top, right, bottom = options.region
        rows, cols = arr.shape[:2]
        arr = arr[
            int(top * rows) : max(int(bottom * rows), int(top * rows) + 1),
            int(left * cols) : max(int(right * cols), int(left * cols) + 1),
        ]
    if options.viewport is not None:
        # Much smaller output: subsample first (cheap) so windowing and the resampling
        # filter work on at most twice the output size.
        step = int(min(arr.shape[1] / options.viewport[0], arr.shape[0] / options.viewport[1]) // 2)
        if step >= 2:
            arr = arr[::step, ::step]
    image = Image.fromarray(to_display(arr, header, options.window))
    if options.viewport is not None:
        size = fit_size(image.width, image.height, options.viewport)
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS if size[0] < image.width else Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    if MEDIA_TYPES[options.media_type] == "JPEG":
        image.save(buf, "JPEG", quality=options.quality)
    else:
        image.save(buf, "PNG", compress_level=3)
    return buf.getvalue()
