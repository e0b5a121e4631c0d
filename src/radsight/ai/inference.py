"""ONNX Runtime sessions and sliding-window inference.

The sliding window follows MONAI's ``SlidingWindowInferer`` (patches at ``patch * (1 - overlap)``
steps, the last patch flush with the edge, Gaussian importance weights with sigma = 0.125 x patch,
or constant weights), written with numpy because MONAI's implementation needs torch, and
serving must run without PyTorch (see radsight.ai).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np
import onnxruntime as ort

from radsight.ai.package import ModelPackage

_sessions: dict[str, ort.InferenceSession] = {}
_lock = threading.Lock()
_intra_op_threads = 0  # 0: ONNX Runtime's default, one per core


def configure(*, intra_op_threads: int) -> None:
    """Threads each new session computes with (the worker pool sets cores / workers)."""
    global _intra_op_threads
    _intra_op_threads = max(0, intra_op_threads)


def session_for(package: ModelPackage) -> ort.InferenceSession:
    """One session per weights SHA-256 (cached: loading a graph costs more than small inferences)."""
    sha = package.metadata.sha256
    with _lock:
        sess = _sessions.get(sha)
        if sess is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = _intra_op_threads
            sess = ort.InferenceSession(str(package.weights), options, providers=["CPUExecutionProvider"])
            _sessions[sha] = sess
        return sess


def run(session: ort.InferenceSession, input_name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, {input_name: batch.astype(np.float32, copy=False)})
    return {n: np.asarray(v) for n, v in zip(names, outputs, strict=True)}


def _starts(size: int, patch: int, overlap: float) -> list[int]:
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def importance_map(patch: Sequence[int], mode: Literal["gaussian", "constant"]) -> np.ndarray:
    if mode == "constant":
        return np.ones(tuple(patch), dtype=np.float32)
    weights = np.ones((), dtype=np.float32)
    for n in patch:
        centre = (n - 1) / 2.0
        sigma = max(0.125 * n, 1e-3)
        axis = np.exp(-0.5 * ((np.arange(n) - centre) / sigma) ** 2).astype(np.float32)
        weights = np.multiply.outer(weights, axis)
    weights = weights / weights.max()
    # Like MONAI: no zero weights at the patch border, so every voxel gets a defined average.
    return np.maximum(weights, np.float32(max(float(weights[weights > 0].min()), 1e-3)))


def sliding_window(
    session: ort.InferenceSession,
    input_name: str,
    output_name: str,
    volume: np.ndarray,
    patch: Sequence[int],
    *,
    overlap: float = 0.25,
    mode: Literal["gaussian", "constant"] = "gaussian",
) -> np.ndarray:
    """Run a 3D model over ``volume`` (z, y, x) in patches; returns (channels, z, y, x) float32.

    A volume smaller than the patch is padded (edge values) and the result cropped back.
    """
    shape = volume.shape
    pads = [(0, max(p - s, 0)) for p, s in zip(patch, shape, strict=True)]
    padded = np.pad(volume, pads, mode="edge") if any(p[1] for p in pads) else volume
    weights = importance_map(patch, mode)
    pz, py, px = patch
    acc: np.ndarray | None = None
    norm = np.zeros(padded.shape, dtype=np.float32)
    for z in _starts(padded.shape[0], pz, overlap):
        for y in _starts(padded.shape[1], py, overlap):
            for x in _starts(padded.shape[2], px, overlap):
                window = (slice(z, z + pz), slice(y, y + py), slice(x, x + px))
                out = run(session, input_name, padded[window][None, None])[output_name][0]
                if acc is None:
                    acc = np.zeros((out.shape[0], *padded.shape), dtype=np.float32)
                acc[(slice(None), *window)] += out * weights
                norm[window] += weights
    assert acc is not None
    acc /= norm
    return acc[:, : shape[0], : shape[1], : shape[2]]
