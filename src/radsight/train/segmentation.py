"""3D CT organ segmentation: train a MONAI U-Net, export a RadSight model package, evaluate it.

``train`` and ``evaluate`` import torch / MONAI / matplotlib inside themselves (serving never
installs them). Evaluation runs the package exactly as the engine does (``radsight.ai.preprocess``
+ ``radsight.ai.inference.sliding_window`` on ONNX Runtime, as ``ai/pipeline.py`` ``_segment``),
so the metrics are those of the shipped weights on the serving path.

Data (``data`` argument):

- ``synthetic:N`` - N volumes from :mod:`radsight.train.synth_ct`. Training uses seeds 0..N-1;
  the last ``max(1, N // 8)`` are the validation split (early stopping). ``synthetic:N@S``
  starts at seed S; :func:`evaluate` defaults to seeds from :data:`EVAL_SEED` (never trained on).
- a folder in the nnU-Net / MSD layout: ``imagesTr/*.nii.gz`` and ``labelsTr/*.nii.gz`` (same
  file names; labels 0 background, 1 liver, 2 spleen, 3 right kidney, 4 left kidney). Volumes
  are turned to the serving layout (z inferior->superior, rows anterior->posterior, columns
  patient right->left) with the same geometry as :mod:`radsight.datasets.ct`.

Array layout everywhere: (z, y, x) as :mod:`radsight.ai.volume` loads an axial series.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radsight.ai import inference, preprocess
from radsight.ai.package import (
    CARD_FILE,
    METADATA_FILE,
    WEIGHTS_FILE,
    Code,
    InputSpec,
    Label,
    ModelMetadata,
    ModelPackage,
    Normalisation,
    Output,
    Task,
    Windowing,
    load_package,
    sha256_file,
)
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
EVAL_SEED = 1_000_000
N_CLASSES = 1 + len(synth_ct.LABELS)

ANATOMICAL_STRUCTURE = Code(value="123037004", scheme="SCT", meaning="Anatomical Structure")
ORGANS: list[tuple[int, str, Code, list[int]]] = [
    (1, "liver", Code(value="10200004", scheme="SCT", meaning="Liver"), [221, 130, 101]),
    (2, "spleen", Code(value="78961009", scheme="SCT", meaning="Spleen"), [157, 108, 162]),
    (3, "right kidney", Code(value="9846003", scheme="SCT", meaning="Right kidney"), [185, 102, 83]),
    (4, "left kidney", Code(value="18639004", scheme="SCT", meaning="Left kidney"), [128, 174, 128]),
]


@dataclass
class Case:
    """A labelled volume on its source grid."""

    name: str
    image: np.ndarray  # HU (z, y, x) float32
    labels: np.ndarray  # uint8 (z, y, x)
    spacing: tuple[float, float, float]
    params: dict[str, Any]


# ----------------------------------------------------------------------------------------- data


def parse_data(data: str) -> tuple[str, int, int] | Path:
    """``synthetic:N[@S]`` -> ("synthetic", N, S or -1); else the NIfTI folder."""
    if data.startswith("synthetic:"):
        spec = data.split(":", 1)[1]
        count, _, start = spec.partition("@")
        if not count.isdigit() or int(count) < 1 or (start and not start.isdigit()):
            raise ValueError(f"{data!r}: expected synthetic:N or synthetic:N@SEED with N >= 1")
        return "synthetic", int(count), int(start) if start else -1
    folder = Path(data)
    if not (folder / "imagesTr").is_dir() or not (folder / "labelsTr").is_dir():
        raise ValueError(f"{data!r}: not synthetic:N and not a folder with imagesTr/ and labelsTr/")
    return folder


def synthetic_case(seed: int) -> Case:
    s = synth_ct.generate(seed)
    return Case(f"synthetic-{seed}", s.image, s.labels, s.spacing, s.params.as_dict())


def load_nifti_zyx(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A NIfTI volume in the serving layout (z, rows, columns) and its (z, y, x) spacing in mm."""
    import nibabel as nib

    from radsight.datasets.ct import lps_geometry

    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)  # type: ignore[attr-defined]
    lps, flipped = lps_geometry(img.affine, data.shape[:3])  # type: ignore[attr-defined]
    for axis, flip in enumerate(flipped):
        if flip:
            data = np.flip(data, axis=axis)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return np.ascontiguousarray(data.transpose(2, 1, 0)), (float(spacing[2]), float(spacing[1]), float(spacing[0]))


def nifti_cases(folder: Path) -> Iterator[Case]:
    for image_path in sorted((folder / "imagesTr").glob("*.nii.gz")):
        label_path = folder / "labelsTr" / image_path.name.replace("_0000.nii.gz", ".nii.gz")
        if not label_path.is_file():
            label_path = folder / "labelsTr" / image_path.name
        if not label_path.is_file():
            raise ValueError(f"{image_path.name}: no label map in labelsTr/")
        image, spacing = load_nifti_zyx(image_path)
        labels, _ = load_nifti_zyx(label_path)
        yield Case(image_path.name.removesuffix(".nii.gz"), image, np.rint(labels).astype(np.uint8), spacing, {})


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


def to_model_grid(case: Case, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """The case resampled to the model grid with the serving path's own functions."""
    factors = preprocess.spacing_factors(case.spacing, spec.spacing)
    x = preprocess.intensity(preprocess.resample(case.image, factors, order=1), spec)
    y = preprocess.to_shape(case.labels, x.shape, order=0).astype(np.uint8)
    return x.astype(np.float16), y


# ------------------------------------------------------------------------------------ training


def _crop(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, foreground: bool) -> tuple[np.ndarray, np.ndarray]:
    """A PATCH-sized crop, centred on an organ voxel when ``foreground``; edge padding like serving."""
    pads = [(0, max(p - s, 0)) for p, s in zip(PATCH, x.shape, strict=True)]
    if any(p[1] for p in pads):
        x, y = np.pad(x, pads, mode="edge"), np.pad(y, pads, mode="constant")
    starts = []
    centre = None
    if foreground and y.any():
        organ = int(rng.integers(1, N_CLASSES))
        idx = np.flatnonzero(y == organ) if (y == organ).any() else np.flatnonzero(y)
        centre = np.unravel_index(int(idx[rng.integers(idx.size)]), y.shape)
    for axis, (p, s) in enumerate(zip(PATCH, x.shape, strict=True)):
        if centre is not None:
            lo = int(np.clip(centre[axis] - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, s - p))
        else:
            lo = int(rng.integers(0, s - p + 1))
        starts.append(lo)
    window = tuple(slice(a, a + p) for a, p in zip(starts, PATCH, strict=True))
    return x[window], y[window]


def _network() -> Any:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=N_CLASSES,
        channels=CHANNELS,
        strides=STRIDES,
        num_res_units=1,
    )


def _dice_per_label(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice per organ (NaN where the organ is absent from both)."""
    out: dict[str, float] = {}
    for index, name in synth_ct.LABELS.items():
        p, t = pred == index, truth == index
        denom = int(p.sum()) + int(t.sum())
        out[name] = float(2.0 * np.logical_and(p, t).sum() / denom) if denom else float("nan")
    return out


def _torch_predict(net: Any, x: np.ndarray, device: str) -> np.ndarray:
    import torch
    from monai.inferers import sliding_window_inference

    with torch.no_grad():
        t = torch.from_numpy(x.astype(np.float32))[None, None].to(device)
        logits: Any = sliding_window_inference(
            t, PATCH, 1, net, overlap=0.25, mode="gaussian", padding_mode="replicate"
        )
    return np.asarray(logits.argmax(dim=1)[0].cpu().numpy(), dtype=np.uint8)


def work_dirs(out: Path) -> tuple[Path, Path]:
    """Checkpoints (per package folder) and the prepared-volume cache (per generator version).

    Under ``$XDG_CACHE_HOME/radsight`` (``~/.cache/radsight``), never in the package: a package
    holds no pickles. The cache key covers the generator's source and the model grid, so a
    changed generator never serves stale volumes.
    """
    import hashlib

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "radsight"
    run = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:8]
    sources = b"".join(f.read_bytes() for f in sorted(Path(synth_ct.__file__).parent.glob("*.py")))
    generator = hashlib.sha256(sources + repr((SPACING, HU_LOW, HU_HIGH)).encode())
    ckpt_dir = root / "checkpoints" / f"{MODEL_NAME}-{run}"
    cache_dir = root / "cache" / f"synth-ct-{generator.hexdigest()[:8]}"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return ckpt_dir, cache_dir


def train(
    data: str,
    out: Path,
    *,
    epochs: int,
    device: str = "cpu",
    seed: int = 0,
    resume: bool = False,
    max_steps: int | None = None,
) -> Path:
    """Train on ``data``; write the package (ONNX, metadata, model card) into ``out``; returns ``out``.

    One epoch = one random crop per training volume (two thirds centred on an organ). Validation
    (sliding window, Dice on the 3 mm grid) every ``val_every`` epochs; early stopping after 4
    validations without improvement of the mean Dice; checkpoints ``last.pt`` and ``best.pt`` in
    :func:`work_dirs` (with ``history.json`` and the held-out evaluation); ``resume`` continues
    from ``last.pt``. ``RADSIGHT_TRAIN_THREADS`` sets torch's
    CPU threads (default 1: the machine is shared).
    """
    try:
        import torch
        from monai.losses import DiceCELoss
    except ImportError as exc:  # pragma: no cover - the train extra is installed in the tests
        from radsight.train import TRAIN_EXTRA_HINT, TrainExtraMissing

        raise TrainExtraMissing(TRAIN_EXTRA_HINT) from exc

    torch.set_num_threads(int(os.environ.get("RADSIGHT_TRAIN_THREADS", "1")))
    torch.manual_seed(seed)
    out = Path(out)
    ckpt_dir, cache_dir = work_dirs(out)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    spec = model_spec()
    source = parse_data(data)
    started = time.monotonic()

    # Cases on the model grid, cached as .npz (a resumed run does not regenerate them).
    def cases() -> Iterator[tuple[str, dict[str, Any], np.ndarray, np.ndarray]]:
        if isinstance(source, Path):
            for c in nifti_cases(source):
                yield (c.name, c.params, *to_model_grid(c, spec))
            return
        _, count, start = source
        first = max(start, 0)
        for s in range(first, first + count):
            cached = cache_dir / f"synthetic-{s}.npz"
            if cached.is_file():
                z = np.load(cached, allow_pickle=False)
                yield f"synthetic-{s}", json.loads(str(z["params"])), z["x"], z["y"]
                continue
            c = synthetic_case(s)
            x, y = to_model_grid(c, spec)
            partial = cached.with_suffix(".part.npz")  # renamed when complete: a killed run leaves no torn file
            np.savez(partial, x=x, y=y, params=json.dumps(c.params))
            partial.replace(cached)
            yield c.name, c.params, x, y

    with _progress() as progress:
        total = source[1] if not isinstance(source, Path) else len(list((source / "imagesTr").glob("*.nii.gz")))
        task = progress.add_task("preparing volumes", total=total, loss="", dice="")
        prepared = []
        for item in cases():
            prepared.append(item)
            progress.advance(task)
    n_val = max(1, len(prepared) // 8) if len(prepared) > 1 else 0
    train_set = prepared[: len(prepared) - n_val] or prepared
    val_set = prepared[len(prepared) - n_val :]

    net = _network().to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=True)
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-5)
    steps_per_epoch = max(1, math.ceil(len(train_set) / 2))
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: max(0.02, (1 - step / max(total_steps, 1)) ** 0.9)
    )
    state: dict[str, Any] = {"step": 0, "epoch": 0, "best_dice": -1.0, "best_epoch": -1, "stale": 0, "history": []}
    if resume and (ckpt_dir / "last.pt").is_file():
        saved = torch.load(ckpt_dir / "last.pt", map_location=device, weights_only=False)
        net.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
    rng = np.random.default_rng([seed, state["step"]])
    val_every = max(1, epochs // 6)
    patience = 4
    last_val: dict[str, float] = {}

    with _progress() as progress:
        task = progress.add_task("training", total=total_steps, completed=state["step"], loss="", dice="")
        while state["step"] < total_steps and state["epoch"] < epochs and state["stale"] < patience:
            net.train()
            order = rng.permutation(len(train_set))
            for b in range(0, len(order), 2):
                if state["step"] >= total_steps:
                    break
                batch = [_crop(train_set[i][2], train_set[i][3], rng, rng.uniform() < 2 / 3) for i in order[b : b + 2]]
                xb = torch.from_numpy(np.stack([c[0] for c in batch]).astype(np.float32))[:, None]
                # Small intensity jitter: scanners and reconstruction kernels differ.
                xb = xb * float(rng.uniform(0.95, 1.05)) + float(rng.uniform(-0.03, 0.03))
                yb = torch.from_numpy(np.stack([c[1] for c in batch]).astype(np.int64))[:, None]
                loss = loss_fn(net(xb.to(device)), yb.to(device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                scheduler.step()
                state["step"] += 1
                progress.update(task, advance=1, loss=f"loss {loss.item():.3f}")
                if not progress.console.is_terminal and state["step"] % 50 == 0:  # a log file: plain lines
                    progress.console.log(f"step {state['step']}/{total_steps} loss {loss.item():.3f}")
            state["epoch"] += 1
            is_last = state["step"] >= total_steps or state["epoch"] >= epochs
            if val_set and (state["epoch"] % val_every == 0 or is_last):
                net.eval()
                scores = [_dice_per_label(_torch_predict(net, v[2], device), v[3]) for v in val_set]
                last_val = {k: float(np.nanmean([s[k] for s in scores])) for k in synth_ct.LABELS.values()}
                mean = float(np.nanmean(list(last_val.values())))
                state["history"].append(
                    {
                        "epoch": state["epoch"],
                        "step": state["step"],
                        "dice": last_val,
                        "mean": mean,
                        "loss": float(loss.item()),
                        "elapsed_s": time.monotonic() - started,
                    }
                )
                if mean > state["best_dice"]:
                    state.update(best_dice=mean, best_epoch=state["epoch"], stale=0)
                    torch.save({"model": net.state_dict(), "state": state}, ckpt_dir / "best.pt")
                else:
                    state["stale"] += 1
                progress.update(
                    task,
                    dice="dice "
                    + " ".join(f"{v:.2f}" for v in last_val.values())
                    + f" (best {state['best_dice']:.3f})",
                )
                if not progress.console.is_terminal:
                    progress.console.log(f"epoch {state['epoch']} validation Dice {json.dumps(last_val)}")
            torch.save(
                {
                    "model": net.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "state": state,
                },
                ckpt_dir / "last.pt",
            )
    if (ckpt_dir / "best.pt").is_file():
        net.load_state_dict(torch.load(ckpt_dir / "best.pt", map_location=device, weights_only=False)["model"])
    (ckpt_dir / "history.json").write_text(json.dumps(state["history"], indent=2) + "\n", encoding="utf-8")

    package_dir = out
    export_package(net.cpu().eval(), package_dir)
    # Held-out synthetic volumes (seeds never trained on) through the serving path, for the card.
    n_eval = 20 if not isinstance(source, Path) and source[1] >= 20 else 2
    metrics = evaluate(package_dir, f"synthetic:{n_eval}", ckpt_dir / "eval", by="phase")
    write_card(
        package_dir,
        ckpt_dir,
        data=data,
        epochs=epochs,
        seed=seed,
        state=state,
        metrics=metrics,
        train_cases=len(train_set),
        val_cases=len(val_set),
        wall_s=time.monotonic() - started,
    )
    return package_dir


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[loss]}"),
        TextColumn("{task.fields[dice]}"),
    )


def export_package(net: Any, package_dir: Path, *, atol: float = 1e-3) -> ModelPackage:
    """ONNX (input ``input``, output ``logits``) checked against PyTorch, then radsight-model.json."""
    import onnxruntime as ort
    import torch

    package_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = package_dir / WEIGHTS_FILE
    example = torch.rand(1, 1, *PATCH)
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False: no onnxscript needed) warns that it is legacy, and
        # that InstanceNorm exports with per-instance statistics, which is what it computes in eval too.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*instance_norm.*")
        torch.onnx.export(
            net,
            (example,),
            str(onnx_path),
            input_names=["input"],
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    with torch.no_grad():
        expected = net(example).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": example.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if diff > atol:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.2e} (> {atol})")
    labels = [
        # Each organ is one connected structure: stray islands of a label are dropped at serving.
        Label(
            index=index, name=name, category=ANATOMICAL_STRUCTURE, type=code, color=color, largest_component_only=True
        )
        for index, name, code, color in ORGANS
    ]
    meta = ModelMetadata(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        task=Task.SEGMENTATION,
        description=(
            "Liver, spleen and kidneys on abdominal CT (any phase), a 3D MONAI U-Net trained only on "
            "procedurally generated CT (radsight.train.synth_ct). Research demonstration."
        ),
        intended_use=(
            "Demonstration of automatic abdominal organ outlines and volumes on adult abdominal CT. "
            "Not for clinical use."
        ),
        input=model_spec(),
        outputs=[Output(name="logits", kind="logits", activation="softmax")],
        labels=labels,
        sha256=sha256_file(onnx_path),
    )
    (package_dir / METADATA_FILE).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return load_package(package_dir)


# ---------------------------------------------------------------------------------- evaluation


def segment(package: ModelPackage, image: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Label map on the source grid, by the engine's own steps (``radsight.ai.pipeline.predict_labelmap``)."""
    from radsight.ai.pipeline import predict_labelmap

    return predict_labelmap(package, image, spacing)[1]


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """95th percentile symmetric surface distance in mm (numpy/scipy; NaN if either mask is empty)."""
    from scipy import ndimage

    if not pred.any() or not truth.any():
        return float("nan")
    surf_p = pred & ~ndimage.binary_erosion(pred)
    surf_t = truth & ~ndimage.binary_erosion(truth)
    dist_to_t = ndimage.distance_transform_edt(~surf_t, sampling=spacing)
    dist_to_p = ndimage.distance_transform_edt(~surf_p, sampling=spacing)
    distances = np.concatenate([np.asarray(dist_to_t)[surf_p], np.asarray(dist_to_p)[surf_t]])
    return float(np.percentile(distances, 95))


def bootstrap_ci(values: list[float], *, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean over cases (NaNs dropped)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return (float("nan"), float("nan"))
    if v.size == 1:
        return (float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n, v.size))].mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def _group(params: dict[str, Any], by: str) -> str:
    if by in ("slice_thickness", "thickness"):
        t = float(params.get("slice_thickness", 0))
        return "<2 mm" if t < 2 else ("2-3.5 mm" if t < 3.5 else ">=3.5 mm")
    if by == "habitus":
        f = float(params.get("fat_mm", 0))
        return "lean (fat <15 mm)" if f < 15 else ("average (15-30 mm)" if f < 30 else "obese (fat >=30 mm)")
    return str(params.get(by, "unknown"))


def _summary(rows: list[dict[str, Any]], split: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in synth_ct.LABELS.values():
        for metric in ("dice", "hd95_mm"):
            vals = [r[metric][name] for r in rows]
            finite = [v for v in vals if not math.isnan(v)]
            lo, hi = bootstrap_ci(vals)
            out[f"{metric} {name}"] = {
                "value": float(np.mean(finite)) if finite else float("nan"),
                "ci95": [lo, hi],
                "split": split,
                "n": len(finite),
            }
    return out


def evaluate(package_dir: Path, data: str, out_dir: Path, *, by: str | None = None) -> dict[str, Any]:
    """Dice and HD95 per organ (bootstrap 95% CIs over cases) through the serving path.

    Writes ``metrics.json`` and ``metrics.png`` into ``out_dir``; returns the metrics dict
    (``metrics``, ``cases``, ``subgroups`` when ``by`` is given: ``phase``, ``slice_thickness``,
    ``habitus`` or any generator parameter; a group more than 0.05 Dice below overall is flagged).
    Dice and HD95 are computed with numpy/scipy on the source grid (HD95 in mm).
    """
    package = load_package(Path(package_dir))
    source = parse_data(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path):
        case_iter: Iterator[Case] = nifti_cases(source)
        split = f"folder {source.name}"
    else:
        _, count, start = source
        first = EVAL_SEED if start < 0 else start
        case_iter = (synthetic_case(s) for s in range(first, first + count))
        split = f"synthetic seeds {first}-{first + count - 1} (held out)"
    rows: list[dict[str, Any]] = []
    for case in case_iter:
        t0 = time.perf_counter()
        pred = segment(package, case.image, case.spacing)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "case": case.name,
                "seconds": seconds,
                "dice": _dice_per_label(pred, case.labels),
                "hd95_mm": {
                    name: hd95(pred == i, case.labels == i, case.spacing) for i, name in synth_ct.LABELS.items()
                },
                "params": {k: v for k, v in case.params.items() if k in ("phase", "slice_thickness", "fat_mm", "seed")},
                "group": _group(case.params, by) if by else None,
            }
        )
    metrics = _summary(rows, split)
    result: dict[str, Any] = {
        "n": len(rows),
        "model": f"{package.metadata.name} {package.metadata.version}",
        "data": data,
        "split": split,
        "metrics": metrics,
        "cases": rows,
        "seconds_per_case": float(np.mean([r["seconds"] for r in rows])) if rows else None,
    }
    if by:
        groups: dict[str, Any] = {}
        for g in sorted({r["group"] for r in rows}):
            members = [r for r in rows if r["group"] == g]
            summary = _summary(members, split)
            entry: dict[str, Any] = {"n": len(members), "flagged": []}
            for name in synth_ct.LABELS.values():
                key = f"dice {name}"
                entry[key] = summary[key]
                if summary[key]["value"] < metrics[key]["value"] - 0.05:
                    entry["flagged"].append(key)
            groups[g] = entry
        result["subgroups"] = {by: groups}
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    _plot_metrics(rows, out_dir / "metrics.png")
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _plot_metrics(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(synth_ct.LABELS.values())
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    for ax, metric, title in ((axes[0], "dice", "Dice"), (axes[1], "hd95_mm", "HD95 (mm)")):
        data = [[r[metric][n] for r in rows if not math.isnan(r[metric][n])] for n in names]
        ax.boxplot(data, tick_labels=names)
        ax.set_title(f"{title}, {len(rows)} cases")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- card


def write_card(
    package_dir: Path,
    work_dir: Path,
    *,
    data: str,
    epochs: int,
    seed: int,
    state: dict[str, Any],
    metrics: dict[str, Any],
    train_cases: int,
    val_cases: int,
    wall_s: float,
) -> None:
    """The model card (radsight.train.card) with held-out metrics, subgroups and plots (from ``work_dir/eval``)."""
    import shutil

    from radsight.train.card import write_model_card

    plots = []
    if (work_dir / "eval" / "metrics.png").is_file():
        shutil.copy(work_dir / "eval" / "metrics.png", package_dir / "metrics.png")
        plots.append("metrics.png")
    card = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "task": "segmentation (3D CT: liver, spleen, right kidney, left kidney)",
        "summary": (
            "A 3D MONAI U-Net trained only on procedurally generated abdominal CT "
            "(radsight.train.synth_ct). Metrics below are on held-out generated volumes; on real CT it "
            "has been checked on one example only (docs/models/ct-abdomen-organs.md)."
        ),
        "intended_use": "Demonstration of organ outlines and volumes on adult abdominal CT. Not for clinical use.",
        "data": {
            "training": data,
            "train volumes": train_cases,
            "validation volumes (early stopping)": val_cases,
            "generator": "radsight.train.synth_ct (phases non-contrast / arterial / portal venous, 1-5 mm slices)",
            "test": metrics.get("split", ""),
        },
        "training": {
            "network": f"monai UNet channels {list(CHANNELS)} strides {list(STRIDES)} 1 residual unit",
            "loss": "DiceCE (softmax, one-hot)",
            "optimiser": "AdamW lr 2e-3, poly decay",
            "spacing mm (z, y, x)": list(SPACING),
            "patch (z, y, x)": list(PATCH),
            "intensity": f"HU clipped to [{HU_LOW:g}, {HU_HIGH:g}], scaled to [0, 1]",
            "epochs run": state.get("epoch"),
            "steps": state.get("step"),
            "best epoch": state.get("best_epoch"),
            "best validation mean Dice": state.get("best_dice"),
            "seed": seed,
            "wall clock s": round(wall_s),
        },
        "metrics": {
            k: {"value": v["value"], "ci95": v["ci95"], "split": v["split"]} for k, v in metrics["metrics"].items()
        },
        "calibration": "Not assessed (softmax outputs; only the argmax label map is used).",
        "subgroups": metrics.get("subgroups"),
        "limitations": [
            "Trained on generated volumes only: real anatomy, pathology (tumours, cysts, cirrhosis), "
            "post-operative changes and artefacts are not represented.",
            "Checked on a single real CT (non-contrast, TotalSegmentator example); transfer to real CT "
            "is not validated.",
            "Organs cut by the scan range are segmented only where imaged; volumes are then partial.",
            "Model grid 3 mm: thin structures and small organs lose detail.",
        ],
        "plots": plots,
        "reproduce": (
            f"RADSIGHT_TRAIN_THREADS=1 radsight train segmentation {data} --out {MODEL_NAME} --epochs {epochs} "
            f"--seed {seed}\nradsight evaluate {MODEL_NAME} synthetic:20 --by phase --out evaluation"
        ),
    }
    write_model_card(package_dir, card)
    assert (package_dir / CARD_FILE).is_file()


# ------------------------------------------------------------------------------- real CT check


def check_on_nifti(package_dir: Path, nifti: Path, png: Path | None = None) -> dict[str, Any]:
    """Run the package on an unlabelled NIfTI CT through the serving path: organ volumes, time, overlay.

    Returns ``{"seconds", "shape", "spacing", "volumes_ml": {organ: mL}, "centroid_column_fraction":
    {organ: 0..1 (0 = image left = patient right)}}``; ``png`` gets axial and coronal slices with
    the label map drawn over them.
    """
    package = load_package(Path(package_dir))
    image, spacing = load_nifti_zyx(Path(nifti))
    inference.session_for(package)  # session creation is a one-off cost, not the per-study time
    t0 = time.perf_counter()
    pred = segment(package, image, spacing)
    seconds = time.perf_counter() - t0
    voxel_ml = float(np.prod(spacing)) / 1000.0
    report: dict[str, Any] = {
        "seconds": seconds,
        "shape": list(image.shape),
        "spacing": list(spacing),
        "volumes_ml": {name: float((pred == i).sum()) * voxel_ml for i, name in synth_ct.LABELS.items()},
        "centroid_column_fraction": {
            name: float(np.argwhere(pred == i)[:, 2].mean() / image.shape[2]) if (pred == i).any() else None
            for i, name in synth_ct.LABELS.items()
        },
    }
    if png is not None:
        _overlay_png(image, pred, spacing, png)
    return report


def _overlay_png(image: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    colours = ListedColormap([(0, 0, 0, 0)] + [(*(c / 255 for c in o[3]), 0.45) for o in ORGANS])
    organ_slices = np.flatnonzero(pred.any(axis=(1, 2)))
    zs = np.linspace(organ_slices.min(), organ_slices.max(), 5)[1:4].astype(int) if organ_slices.size else [0]
    row = int(np.argwhere(pred == 3)[:, 1].mean()) if (pred == 3).any() else image.shape[1] // 2
    fig, axes = plt.subplots(1, len(zs) + 1, figsize=(3.0 * (len(zs) + 1), 3.0), dpi=72)
    shown = np.clip((image + 160.0) / 400.0, 0, 1)
    for ax, z in zip(axes, zs, strict=False):
        ax.imshow(shown[z], cmap="gray")
        ax.imshow(pred[z], cmap=colours, vmin=0, vmax=len(ORGANS), interpolation="nearest")
        ax.set_title(f"axial {z + 1}/{image.shape[0]}", fontsize=8)
    ax = axes[-1]
    ax.imshow(shown[::-1, row, :], cmap="gray", aspect=spacing[0] / spacing[2])
    ax.imshow(
        pred[::-1, row, :],
        cmap=colours,
        vmin=0,
        vmax=len(ORGANS),
        interpolation="nearest",
        aspect=spacing[0] / spacing[2],
    )
    ax.set_title(f"coronal row {row}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.text(
        0.01, 0.01, "image left = patient right; liver orange, spleen purple, R kidney red, L kidney green", fontsize=7
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
