"""``radsight train classification``: a 2D chest X-ray classifier, trained from scratch.

Data flow: :mod:`radsight.train.data` (discover, patient-level split, grey values and the
serving pre-processing, decoded once into a .npy cache) -> MONAI augmentation -> a compact
ResNet (:mod:`radsight.train.network`) with a class-weighted BCE loss -> early stopping on
the validation AUC (checkpoints every epoch, ``--resume``) -> calibration and threshold on
validation -> ONNX with the CAM in the graph (:mod:`radsight.train.export`) -> package,
validation metrics, plots and model card.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shlex
import time
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
from radsight.train import data as datalib
from radsight.train import evaluate as evallib
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
    name: str = "cxr-pneumonia"
    version: str = "1.0.0"
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


def fit_calibration(logits: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Temperature T and bias c minimising the validation NLL of sigmoid(z / T + c).

    The bias undoes the prior shift that the class-weighted loss introduces; T alone
    (temperature scaling, Guo et al. 2017) cannot move the curve sideways. T is kept in
    [0.05, 20] and c in [-10, 10]: on a separable validation set the NLL has no minimum.
    """
    z = torch.from_numpy(logits.astype(np.float64))
    y = torch.from_numpy(targets.astype(np.float64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, c], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z / _temperature(log_t) + _bias(c), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(_temperature(log_t).item()), float(_bias(c).item())


def _temperature(log_t: torch.Tensor) -> torch.Tensor:
    return log_t.clamp(math.log(0.05), math.log(20.0)).exp()


def _bias(c: torch.Tensor) -> torch.Tensor:
    return c.clamp(-10.0, 10.0)


def _checkpoint_dir(cfg: TrainConfig) -> Path:
    return cfg.checkpoints or DEFAULT_CACHE / "checkpoints" / cfg.name


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def reproduce_command(cfg: TrainConfig) -> str:
    parts = ["radsight", "train", "classification", cfg.data, "--out", str(cfg.out)]
    parts += ["--size", str(cfg.size), "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size)]
    parts += ["--lr", str(cfg.lr), "--patience", str(cfg.patience), "--val-fraction", str(cfg.val_fraction)]
    parts += ["--seed", str(cfg.seed), "--device", cfg.device]
    if cfg.threads:
        parts += ["--threads", str(cfg.threads)]
    return shlex.join(parts)


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
    x_train, y_train, x_val, y_val = x[train_idx], targets[train_idx], x[val_idx], targets[val_idx]

    device = cfg.device
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
    steps_per_epoch = max(1, len(loader))
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total_steps, 2), pct_start=0.15)
    ckpt_dir = _checkpoint_dir(cfg)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    epoch, step, best_auc, stale = 0, 0, -1.0, 0
    trained_before = 0.0  # seconds of training in earlier runs (--resume)
    history: list[dict[str, float]] = []
    if cfg.resume and last.is_file():
        state = torch.load(last, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch, step, best_auc, stale = state["epoch"], state["step"], state["best_auc"], state["stale"]
        history = state["history"]
        trained_before = float(state.get("train_seconds", 0.0))
        torch.set_rng_state(state["torch_rng"])
        console.print(f"resumed from {last} at epoch {epoch}, step {step}, best validation AUC {best_auc:.4f}")

    columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  val AUC {task.fields[auc]}"), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=cfg.quiet) as bar:
        task = bar.add_task("train", total=total_steps, completed=step, epoch=epoch + 1, loss=float("nan"),
                            auc=f"{best_auc:.4f}" if best_auc >= 0 else "-")
        while epoch < cfg.epochs and step < total_steps and stale < cfg.patience:
            net.train()
            running, seen = 0.0, 0
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                loss = F.binary_cross_entropy_with_logits(net(xb), yb, pos_weight=pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                running += float(loss.item()) * len(xb)
                seen += len(xb)
                bar.update(task, completed=step, loss=running / seen)
                if step >= total_steps:
                    break
            epoch += 1
            val_logits = predict_logits(net, x_val, device=device)
            auc = evallib.roc_auc(y_val, val_logits)
            history.append({"epoch": epoch, "step": step, "train_loss": running / max(seen, 1), "val_auc": auc})
            if auc > best_auc:
                best_auc, stale = auc, 0
                _save(best_path, {"model": net.state_dict(), "epoch": epoch, "val_auc": auc})
            else:
                stale += 1
            _save(last, {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "epoch": epoch, "step": step, "best_auc": best_auc, "stale": stale, "history": history,
                         "torch_rng": torch.get_rng_state(),
                         "train_seconds": trained_before + time.time() - started})
            bar.update(task, epoch=epoch + 1, auc=f"{auc:.4f} (best {best_auc:.4f})")
            console.log(f"epoch {epoch}: train loss {running / max(seen, 1):.4f}, validation AUC {auc:.4f}")
    stopped = "early stopping" if stale >= cfg.patience else ("max steps" if step >= total_steps else "epochs")
    net.load_state_dict(torch.load(best_path, map_location=device, weights_only=False)["model"])
    net = net.to("cpu").eval()
    val_logits = predict_logits(net, x_val, device="cpu")
    temperature, bias = fit_calibration(val_logits, y_val)
    val_prob = evallib.sigmoid(val_logits / temperature + bias)
    threshold = evallib.youden_threshold(y_val, val_prob)

    model = CamClassifier(net, temperature=temperature, bias=bias).eval()
    cfg.out.mkdir(parents=True, exist_ok=True)
    onnx_tmp = cfg.out / "model.onnx.tmp"
    export_onnx(model, onnx_tmp, channels=1, size=spec.size)
    parity = check_parity(model, onnx_tmp, x_val[: min(16, len(x_val)), None].astype(np.float32))
    label = Label(
        index=0, name="Pneumonia", category=ABNORMAL_STRUCTURE, type=PNEUMONIA, threshold=round(threshold, 4),
        urgency={"critical": max(0.9, round(threshold, 4)), "urgent": round(threshold, 4)}, color=[255, 96, 0],
    )
    package = write_package(
        cfg.out, onnx_tmp, name=cfg.name, version=cfg.version,
        description="Pneumonia on paediatric chest radiographs (compact ResNet, from scratch) with a CAM heatmap.",
        intended_use=INTENDED_USE, spec=spec, labels=[label],
    )
    # Validation metrics through ONNX Runtime: exactly what serving computes.
    report = evallib.evaluate_package(package.path, [samples[i] for i in val_idx], out_dir=cfg.out / "plots",
                                      inputs=x_val, split="validation", plot_prefix="validation-")
    duration = trained_before + time.time() - started
    card: dict[str, Any] = {
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
            "counts": {"total": len(samples), "positive": int(targets.sum()),
                       "negative": int(len(targets) - targets.sum())},
            "splits": {"train": len(train_idx), "validation": len(val_idx),
                       "method": f"stratified by class, grouped by patient, seed {cfg.seed}, "
                                 f"validation fraction {cfg.val_fraction}"},
            "input": f"grey, resized to {cfg.size}x{cfg.size} (order-1 zoom), per-image min-max to [0, 1]",
        },
        "training": {
            "command": reproduce_command(cfg),
            "hyper_parameters": {"batch_size": cfg.batch_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                                 "schedule": "one-cycle", "optimizer": "AdamW",
                                 "pos_weight": round(n_neg / max(n_pos, 1), 4),
                                 "patience": cfg.patience},
            "augmentation": "MONAI RandAffine (10 deg, 90-110 % zoom, 8 px shift), contrast/scale/shift "
                            "intensity, Gaussian smoothing and noise; no flips",
            "epochs": epoch,
            "best_epoch": max(history, key=lambda h: h["val_auc"])["epoch"] if history else 0,
            "stopped_by": stopped,
            "steps": step,
            "seed": cfg.seed,
            "device": f"{cfg.device} ({platform.processor() or platform.machine()}, "
                      f"threads: {torch.get_num_threads()})",
            "duration_s": round(duration, 1),
            "torch": torch.__version__,
            "onnx_parity_max_abs_diff": parity,
        },
        "reproduce": reproduce_command(cfg) + "\n" + f"radsight evaluate {cfg.out} DATA --out eval/",
        "metrics": report["metrics_card"],
        "calibration": {"method": "temperature scaling + bias, fitted on validation (NLL)",
                        "temperature": round(temperature, 4), "bias": round(bias, 4),
                        "ece_15_bins": report["metrics"]["ece"]["value"],
                        "threshold": f"{threshold:.4f} (Youden's J on validation; prior-independent)"},
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
        "history": history,
    }
    write_model_card(package.path, card)
    (ckpt_dir / "config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2) + "\n", encoding="utf-8")
    console.print(f"package written to {package.path} (validation AUC {report['metrics']['auc']['value']:.4f})")
    return package.path
