"""Pixels: decoding every transfer syntax, transcoding and rendering for viewers."""

from radsight.imaging.decode import DecodeError, NoPixelData, decode_frames, decoded_photometric, read_header
from radsight.imaging.render import RenderError, RenderOptions, Window, render
from radsight.imaging.transcode import to_explicit_little

__all__ = [
    "DecodeError",
    "NoPixelData",
    "RenderError",
    "RenderOptions",
    "Window",
    "decode_frames",
    "decoded_photometric",
    "read_header",
    "render",
    "to_explicit_little",
]
