"""``radsight train classification``: a 2D chest X-ray classifier, trained from scratch.

Data flow: :mod:`radsight.train.data` (discover, patient-level split, grey values and the
serving pre-processing, decoded once into a .npy cache) -> MONAI augmentation -> a compact
ResNet (:mod:`radsight.train.network`) with a class-weighted BCE loss -> early stopping on
the validation AUC (checkpoints every epoch, ``--resume``) -> calibration
(:mod:`radsight.train.calibration`) and threshold on validation -> ONNX with the CAM in the
graph (:mod:`radsight.train.export`) -> package, validation metrics, plots and model card.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAffine,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleIntensity,
    RandShiftIntensity,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from radsight.ai.package import Code, InputSpec, Label, Normalisation
from radsight.train import DEFAULT_CLASSIFIER_NAME, DEFAULT_VERSION
from radsight.train import data as datalib
from radsight.train import evaluate as evallib
from radsight.train.calibration import fit_calibration
from radsight.train.card import write_model_card
from radsight.train.export import CamClassifier, check_parity, export_onnx, write_package
from radsight.train.network import CompactResNet

PNEUMONIA = Code(value="233604007", scheme="SCT", meaning="Pneumonia")
ABNORMAL_STRUCTURE = Code(value="49755003", scheme="SCT", meaning="Morphologically abnormal structure")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "radsight"
INTENDED_USE = (
    "Research and demonstration: triage ordering of paediatric frontal chest radiographs (CR/DX) "
    "for suspected pneumonia in the RadSight worklist. Not for clinical use."
)


@dataclass
class TrainConfig:
    data: str
    out: Path
    size: int = 160
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.15
    patience: int = 6
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    resume: bool = False
    max_steps: int | None = None
    limit: int | None = None
    positive: str = "PNEUMONIA"
    name: str = DEFAULT_CLASSIFIER_NAME
    version: str = DEFAULT_VERSION
    checkpoints: Path | None = None
    cache_dir: Path | None = field(default_factory=lambda: DEFAULT_CACHE / "cache")
    quiet: bool = False


def input_spec(size: int) -> InputSpec:
    """What serving does to an image before the network: resize to size x size, then per-image min-max
    to [0, 1] (any bit depth, 8 to 16 bits, lands on the same scale)."""
    return InputSpec(
        modality=["CR", "DX"],
        body_part=["CHEST"],
        dimensions=2,
        size=[size, size],
        channels=1,
        channel_order="grey",
        normalisation=Normalisation(mode="minmax", low=0.0, high=1.0),
        input_name="input",
    )


def augmentation(seed: int) -> Compose:
    """Small geometric changes and strong intensity jitter (exposure and detector differences).

    No flips: the heart is on the left, and a mirrored chest is not a radiograph the model will meet;
    rotations within 10 degrees and 90-110 % zoom match patient positioning.
    """
    aug = Compose(
        [
            RandAffine(
                prob=0.8,
                rotate_range=(math.radians(10),),
                scale_range=(0.1, 0.1),
                translate_range=(8, 8),
                padding_mode="border",
                mode="bilinear",
            ),
            RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5)),
            RandScaleIntensity(factors=0.15, prob=0.5),
            RandShiftIntensity(offsets=0.1, prob=0.5),
            RandGaussianSmooth(prob=0.15, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0)),
            RandGaussianNoise(prob=0.2, std=0.02),
        ]
    )
    aug.set_random_state(seed=seed)
    return aug


class _Augmented(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Compose | None) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(self.x[i][None])
        if self.transform is not None:
            img = torch.as_tensor(self.transform(img), dtype=torch.float32)
        return img, torch.tensor([float(self.y[i])])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def predict_logits(net: torch.nn.Module, x: np.ndarray, *, device: str, batch_size: int = 128) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[i : i + batch_size][:, None]).to(device)
            out.append(net(batch)[:, 0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _checkpoint_dir(cfg: TrainConfig) -> Path:
    return cfg.checkpoints or DEFAULT_CACHE / "checkpoints" / cfg.name


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def reproduce_command(cfg: TrainConfig) -> str:
    parts = ["radsight", "train", "classification", cfg.data, "--out", str(cfg.out), "--name", cfg.name]
    parts += ["--version", cfg.version]
    parts += ["--size", str(cfg.size), "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size)]
    parts += ["--lr", str(cfg.lr), "--patience", str(cfg.patience), "--val-fraction", str(cfg.val_fraction)]
    parts += ["--seed", str(cfg.seed), "--device", cfg.device]
    if cfg.threads:
        parts += ["--threads", str(cfg.threads)]
    return shlex.join(parts)


@dataclass
class _Data:
    """The labelled images, their patient-level split and the network inputs (decoded once)."""

    samples: list[datalib.Sample]
    targets: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    x: np.ndarray

    @property
    def x_val(self) -> np.ndarray:
        return self.x[self.val_idx]

    @property
    def y_val(self) -> np.ndarray:
        return self.targets[self.val_idx]


@dataclass
class _Loop:
    """The training loop's state, saved in ``last.pt`` after every epoch."""

    epoch: int = 0
    step: int = 0
    best_auc: float = -1.0
    stale: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    trained_before: float = 0.0  # seconds of training in earlier runs (--resume)


@dataclass
class _Calibrated:
    """The calibration fitted on validation, the threshold chosen there, and the export's parity."""

    temperature: float
    bias: float
    threshold: float
    parity: float


def train(cfg: TrainConfig) -> Path:
    """Train, calibrate, export and package; returns the package folder."""
    console = Console(quiet=cfg.quiet)
    started = time.time()
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available to PyTorch")
    spec = input_spec(cfg.size)
    data = _load_data(cfg, spec, console)
    net, loop, total_steps, pos_weight = _fit(cfg, data, console, started)
    stopped = "max steps" if loop.step >= total_steps else "epochs"
    stopped = "early stopping" if loop.stale >= cfg.patience else stopped
    net = net.to("cpu").eval()
    cal, onnx_tmp = _calibrate_and_export(cfg, net, data, spec)
    label = Label(
        index=0, name="Pneumonia", category=ABNORMAL_STRUCTURE, type=PNEUMONIA, threshold=round(cal.threshold, 4),
        urgency={"critical": max(0.9, round(cal.threshold, 4)), "urgent": round(cal.threshold, 4)},
        color=[255, 96, 0],
    )
    package = write_package(
        cfg.out, onnx_tmp, name=cfg.name, version=cfg.version,
        description="Pneumonia on paediatric chest radiographs (compact ResNet, from scratch) with a CAM heatmap.",
        intended_use=INTENDED_USE, spec=spec, labels=[label],
    )
    # Validation metrics through ONNX Runtime: exactly what serving computes.
    report = evallib.evaluate_package(package.path, [data.samples[i] for i in data.val_idx],
                                      out_dir=cfg.out / "plots", inputs=data.x_val, split="validation",
                                      plot_prefix="validation-")
    duration = loop.trained_before + time.time() - started
    card = _card(cfg, net, data, loop, cal, report, stopped=stopped, pos_weight=pos_weight, duration=duration)
    write_model_card(package.path, card)
    ckpt_dir = _checkpoint_dir(cfg)
    (ckpt_dir / "config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2) + "\n", encoding="utf-8")
    console.print(f"package written to {package.path} (validation AUC {report['metrics']['auc']['value']:.4f})")
    return package.path


def _load_data(cfg: TrainConfig, spec: InputSpec, console: Console) -> _Data:
    """Discover, optionally subsample (balanced), split by patient and decode the images."""
    samples = datalib.discover(cfg.data)
    targets = datalib.binary_targets(samples, cfg.positive)
    if cfg.limit is not None and cfg.limit < len(samples):
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(targets == c), size=max(2, cfg.limit // 2), replace=False) for c in (0, 1)
        ]))
        samples = [samples[i] for i in keep]
        targets = targets[keep]
    train_idx, val_idx = datalib.split_by_group(samples, targets, val_fraction=cfg.val_fraction, seed=cfg.seed)
    if len(val_idx) == 0 or len(set(targets[val_idx].tolist())) < 2:
        raise datalib.DataError("the validation split needs both classes: give more images")
    console.print(f"{len(samples)} images: {len(train_idx)} train, {len(val_idx)} validation (split by patient)")
    with Progress(TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), console=console,
                  disable=cfg.quiet) as bar:
        task = bar.add_task("decode", total=len(samples))
        x = datalib.load_inputs(samples, spec, cache_dir=cfg.cache_dir,
                                progress=lambda n: bar.update(task, completed=n))
    return _Data(samples=samples, targets=targets, train_idx=train_idx, val_idx=val_idx, x=x)


def _fit(
    cfg: TrainConfig, data: _Data, console: Console, started: float
) -> tuple[CompactResNet, _Loop, int, float]:
    """Train with early stopping on the validation AUC; returns the best network, the loop state,
    the step budget and the positive-class weight."""
    device = cfg.device
    x_train, y_train = data.x[data.train_idx], data.targets[data.train_idx]
    net = CompactResNet(in_channels=1, outputs=1).to(device)
    n_pos, n_neg = int(y_train.sum()), int(len(y_train) - y_train.sum())
    # Class imbalance (Kermany: ~3 pneumonia per normal): weight positives by n_neg / n_pos.
    pos_weight = torch.tensor([n_neg / max(n_pos, 1)], device=device)
    loader = torch.utils.data.DataLoader(
        _Augmented(x_train, y_train, augmentation(cfg.seed)),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(x_train) > cfg.batch_size,
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=0,
    )
    total_steps = max(1, len(loader)) * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total_steps, 2), pct_start=0.15)
    ckpt_dir = _checkpoint_dir(cfg)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    loop = _Loop()
    if cfg.resume and last.is_file():
        loop = _resume(last, net, opt, sched, device)
        console.print(f"resumed from {last} at epoch {loop.epoch}, step {loop.step}, "
                      f"best validation AUC {loop.best_auc:.4f}")

    columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  val AUC {task.fields[auc]}"), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=cfg.quiet) as bar:
        task = bar.add_task("train", total=total_steps, completed=loop.step, epoch=loop.epoch + 1,
                            loss=float("nan"), auc=f"{loop.best_auc:.4f}" if loop.best_auc >= 0 else "-")
        while loop.epoch < cfg.epochs and loop.step < total_steps and loop.stale < cfg.patience:
            train_loss = _train_epoch(net, loader, opt, sched, pos_weight, loop, total_steps,
                                      progress=lambda loss: bar.update(task, completed=loop.step, loss=loss))
            loop.epoch += 1
            auc = _end_epoch(net, opt, sched, loop, data, train_loss=train_loss, ckpt_dir=ckpt_dir, device=device,
                             started=started)
            bar.update(task, epoch=loop.epoch + 1, auc=f"{auc:.4f} (best {loop.best_auc:.4f})")
            console.log(f"epoch {loop.epoch}: train loss {train_loss:.4f}, validation AUC {auc:.4f}")
    net.load_state_dict(torch.load(best_path, map_location=device, weights_only=False)["model"])
    return net, loop, total_steps, round(n_neg / max(n_pos, 1), 4)


def _train_epoch(
    net: CompactResNet, loader: torch.utils.data.DataLoader[tuple[torch.Tensor, torch.Tensor]],
    opt: torch.optim.Optimizer, sched: Any, pos_weight: torch.Tensor, loop: _Loop, total_steps: int, *,
    progress: Callable[[float], None],
) -> float:
    """One pass over the training loader (or up to the step budget); returns the mean training loss."""
    net.train()
    running, seen = 0.0, 0
    for xb, yb in loader:
        xb, yb = xb.to(pos_weight.device), yb.to(pos_weight.device)
        loss = F.binary_cross_entropy_with_logits(net(xb), yb, pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loop.step += 1
        running += float(loss.item()) * len(xb)
        seen += len(xb)
        progress(running / seen)
        if loop.step >= total_steps:
            break
    return running / max(seen, 1)


def _resume(last: Path, net: CompactResNet, opt: torch.optim.Optimizer, sched: Any, device: str) -> _Loop:
    """The network, optimiser, schedule, loop state and torch RNG of ``last.pt``."""
    state = torch.load(last, map_location=device, weights_only=False)
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return _Loop(epoch=state["epoch"], step=state["step"], best_auc=state["best_auc"], stale=state["stale"],
                 history=state["history"], trained_before=float(state.get("train_seconds", 0.0)))


def _end_epoch(
    net: CompactResNet, opt: torch.optim.Optimizer, sched: Any, loop: _Loop, data: _Data, *, train_loss: float,
    ckpt_dir: Path, device: str, started: float,
) -> float:
    """Validation AUC, ``best.pt`` when it improves, ``last.pt`` always; returns the AUC."""
    val_logits = predict_logits(net, data.x_val, device=device)
    auc = evallib.roc_auc(data.y_val, val_logits)
    loop.history.append({"epoch": loop.epoch, "step": loop.step, "train_loss": train_loss, "val_auc": auc})
    if auc > loop.best_auc:
        loop.best_auc, loop.stale = auc, 0
        _save(ckpt_dir / "best.pt", {"model": net.state_dict(), "epoch": loop.epoch, "val_auc": auc})
    else:
        loop.stale += 1
    _save(ckpt_dir / "last.pt", {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "epoch": loop.epoch, "step": loop.step,
                                 "best_auc": loop.best_auc, "stale": loop.stale, "history": loop.history,
                                 "torch_rng": torch.get_rng_state(),
                                 "train_seconds": loop.trained_before + time.time() - started})
    return auc


def _calibrate_and_export(
    cfg: TrainConfig, net: CompactResNet, data: _Data, spec: InputSpec
) -> tuple[_Calibrated, Path]:
    """Calibration and Youden threshold on validation, then the ONNX graph checked against PyTorch."""
    val_logits = predict_logits(net, data.x_val, device="cpu")
    temperature, bias = fit_calibration(val_logits, data.y_val)
    val_prob = evallib.sigmoid(val_logits / temperature + bias)
    threshold = evallib.youden_threshold(data.y_val, val_prob)
    model = CamClassifier(net, temperature=temperature, bias=bias).eval()
    cfg.out.mkdir(parents=True, exist_ok=True)
    onnx_tmp = cfg.out / "model.onnx.tmp"
    export_onnx(model, onnx_tmp, channels=1, size=spec.size)
    parity = check_parity(model, onnx_tmp, data.x_val[: min(16, len(data.x_val)), None].astype(np.float32))
    return _Calibrated(temperature, bias, threshold, parity), onnx_tmp


def _card(
    cfg: TrainConfig, net: CompactResNet, data: _Data, loop: _Loop, cal: _Calibrated, report: dict[str, Any], *,
    stopped: str, pos_weight: float, duration: float,
) -> dict[str, Any]:
    """The model card: data, training, calibration, validation metrics, limitations."""
    targets = data.targets
    return {
        "name": cfg.name,
        "version": cfg.version,
        "task": "classification (binary: pneumonia vs normal), with a class activation map",
        "summary": f"A compact ResNet (stem + {len(net.blocks)} residual blocks, "
                   f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters) trained from scratch on the "
                   "Kermany et al. paediatric chest X-ray set; outputs a calibrated pneumonia probability and a "
                   "class activation map (CAM) heatmap.",
        "intended_use": INTENDED_USE,
        "data": {
            "source": f"{cfg.data} (Kermany, Zhang, Goldbaum 2018, CC BY 4.0)",
            "counts": {"total": len(data.samples), "positive": int(targets.sum()),
                       "negative": int(len(targets) - targets.sum())},
            "splits": {"train": len(data.train_idx), "validation": len(data.val_idx),
                       "method": f"stratified by class, grouped by patient, seed {cfg.seed}, "
                                 f"validation fraction {cfg.val_fraction}"},
            "input": f"grey, resized to {cfg.size}x{cfg.size} (order-1 zoom), per-image min-max to [0, 1]",
        },
        "training": {
            "command": reproduce_command(cfg),
            "hyper_parameters": {"batch_size": cfg.batch_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                                 "schedule": "one-cycle", "optimizer": "AdamW", "pos_weight": pos_weight,
                                 "patience": cfg.patience},
            "augmentation": "MONAI RandAffine (10 deg, 90-110 % zoom, 8 px shift), contrast/scale/shift "
                            "intensity, Gaussian smoothing and noise; no flips",
            "epochs": loop.epoch,
            "best_epoch": max(loop.history, key=lambda h: h["val_auc"])["epoch"] if loop.history else 0,
            "stopped_by": stopped,
            "steps": loop.step,
            "seed": cfg.seed,
            "device": f"{cfg.device} ({platform.processor() or platform.machine()}, "
                      f"threads: {torch.get_num_threads()})",
            "duration_s": round(duration, 1),
            "torch": torch.__version__,
            "onnx_parity_max_abs_diff": cal.parity,
        },
        "reproduce": reproduce_command(cfg) + "\n" + f"radsight evaluate {cfg.out} DATA --out eval/",
        "metrics": report["metrics_card"],
        "calibration": {"method": "temperature scaling + bias, fitted on validation (NLL)",
                        "temperature": round(cal.temperature, 4), "bias": round(cal.bias, 4),
                        "ece_15_bins": report["metrics"]["ece"]["value"],
                        "threshold": f"{cal.threshold:.4f} (Youden's J on validation; prior-independent)"},
        "limitations": [
            "Trained on one centre's paediatric (1-5 years) anterior-posterior radiographs (Guangzhou); "
            "adult, portable or other-vendor images are out of distribution.",
            "The Kermany test split differs from its training split (more pneumonia-looking normals); "
            "validation figures here are from a patient-level split of the training data and are optimistic.",
            "Early stopping, calibration and the threshold all use the same validation split.",
            "Bacterial and viral pneumonia are one class; no other findings are detected.",
            "The heatmap is a class activation map (1/16 resolution): where the evidence is, not a segmentation.",
        ],
        "plots": [f"plots/{p}" for p in report["plots"]],
        "history": loop.history,
    }
