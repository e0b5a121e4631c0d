"""The training loop: random crops, DiceCE on the MONAI U-Net, validation Dice, checkpoints, then
the package, its held-out evaluation and its card.

torch and MONAI are imported inside the functions (serving never installs them).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radsight.train import DEFAULT_SEGMENTER_NAME, DEFAULT_VERSION, synth_ct
from radsight.train.segmentation.card import write_card
from radsight.train.segmentation.cases import Prepared, count_cases, model_grid_cases, parse_data, work_dirs
from radsight.train.segmentation.evaluation import dice_per_label, evaluate
from radsight.train.segmentation.export import export_package
from radsight.train.segmentation.model import N_CLASSES, PATCH, model_spec, network

# Validations without a better mean Dice before training stops.
PATIENCE = 4
BATCH = 2


@dataclass
class _Run:
    """What one training run carries from step to step."""

    net: Any
    loss_fn: Any
    optimiser: Any
    scheduler: Any
    device: str
    ckpt_dir: Path
    epochs: int
    total_steps: int
    started: float
    state: dict[str, Any]


def train(
    data: str,
    out: Path,
    *,
    epochs: int,
    device: str = "cpu",
    seed: int = 0,
    resume: bool = False,
    max_steps: int | None = None,
    name: str = DEFAULT_SEGMENTER_NAME,
    version: str = DEFAULT_VERSION,
) -> Path:
    """Train on ``data``; write the package ``name`` ``version`` (ONNX, metadata, model card) into
    ``out``; returns ``out``.

    One epoch = one random crop per training volume (two thirds centred on an organ). Validation
    (sliding window, Dice on the 3 mm grid) every ``val_every`` epochs; early stopping after 4
    validations without improvement of the mean Dice; checkpoints ``last.pt`` and ``best.pt`` in
    :func:`work_dirs` (with ``history.json`` and the held-out evaluation); ``resume`` continues
    from ``last.pt``. ``RADSIGHT_TRAIN_THREADS`` sets torch's
    CPU threads (default 1: the machine is shared).
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the train extra is installed in the tests
        from radsight.train import TRAIN_EXTRA_HINT, TrainExtraMissing

        raise TrainExtraMissing(TRAIN_EXTRA_HINT) from exc

    torch.set_num_threads(int(os.environ.get("RADSIGHT_TRAIN_THREADS", "1")))
    torch.manual_seed(seed)
    out = Path(out)
    ckpt_dir, cache_dir = work_dirs(out)
    source = parse_data(data)
    started = time.monotonic()
    prepared = _prepare(source, cache_dir)
    n_val = max(1, len(prepared) // 8) if len(prepared) > 1 else 0
    train_set = prepared[: len(prepared) - n_val] or prepared
    val_set = prepared[len(prepared) - n_val :]

    run = _start(ckpt_dir, device, epochs, len(train_set), max_steps, resume, started)
    _fit(run, train_set, val_set, np.random.default_rng([seed, run.state["step"]]))
    if (ckpt_dir / "best.pt").is_file():
        run.net.load_state_dict(torch.load(ckpt_dir / "best.pt", map_location=device, weights_only=False)["model"])
    (ckpt_dir / "history.json").write_text(json.dumps(run.state["history"], indent=2) + "\n", encoding="utf-8")

    export_package(run.net.cpu().eval(), out, name=name, version=version)
    # Held-out synthetic volumes (seeds never trained on) through the serving path, for the card.
    n_eval = 20 if not isinstance(source, Path) and source[1] >= 20 else 2
    metrics = evaluate(out, f"synthetic:{n_eval}", ckpt_dir / "eval", by="phase")
    write_card(
        out,
        ckpt_dir,
        name=name,
        version=version,
        data=data,
        epochs=epochs,
        seed=seed,
        state=run.state,
        metrics=metrics,
        train_cases=len(train_set),
        val_cases=len(val_set),
        wall_s=time.monotonic() - started,
    )
    return out


def _prepare(source: tuple[str, int, int] | Path, cache_dir: Path) -> list[Prepared]:
    """Every case on the model grid, with a progress bar."""
    with _progress() as progress:
        task = progress.add_task("preparing volumes", total=count_cases(source), loss="", dice="")
        prepared = []
        for item in model_grid_cases(source, model_spec(), cache_dir):
            prepared.append(item)
            progress.advance(task)
    return prepared


def _start(
    ckpt_dir: Path, device: str, epochs: int, n_train: int, max_steps: int | None, resume: bool, started: float
) -> _Run:
    """Network, DiceCE loss, AdamW with poly decay; the state of ``last.pt`` when resuming."""
    import torch
    from monai.losses import DiceCELoss

    net = network().to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=True)
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-5)
    steps_per_epoch = max(1, math.ceil(n_train / BATCH))
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
    return _Run(net, loss_fn, optimiser, scheduler, device, ckpt_dir, epochs, total_steps, started, state)


def _fit(run: _Run, train_set: list[Prepared], val_set: list[Prepared], rng: np.random.Generator) -> None:
    """Epochs until the step or epoch budget is spent or validation stops improving; ``last.pt`` after each."""
    import torch

    state = run.state
    val_every = max(1, run.epochs // 6)
    with _progress() as progress:
        task = progress.add_task("training", total=run.total_steps, completed=state["step"], loss="", dice="")
        while state["step"] < run.total_steps and state["epoch"] < run.epochs and state["stale"] < PATIENCE:
            loss = _train_epoch(run, train_set, rng, progress, task)
            state["epoch"] += 1
            is_last = state["step"] >= run.total_steps or state["epoch"] >= run.epochs
            if val_set and (state["epoch"] % val_every == 0 or is_last):
                _validate(run, val_set, loss, progress, task)
            torch.save(
                {
                    "model": run.net.state_dict(),
                    "optimiser": run.optimiser.state_dict(),
                    "scheduler": run.scheduler.state_dict(),
                    "state": state,
                },
                run.ckpt_dir / "last.pt",
            )


def _train_epoch(run: _Run, train_set: list[Prepared], rng: np.random.Generator, progress: Any, task: Any) -> float:
    """One crop per training volume, in batches of :data:`BATCH`; returns the last batch's loss."""
    import torch

    state = run.state
    run.net.train()
    order = rng.permutation(len(train_set))
    loss_value = math.nan
    for b in range(0, len(order), BATCH):
        if state["step"] >= run.total_steps:
            break
        batch = [_crop(train_set[i][2], train_set[i][3], rng, rng.uniform() < 2 / 3) for i in order[b : b + BATCH]]
        xb = torch.from_numpy(np.stack([c[0] for c in batch]).astype(np.float32))[:, None]
        # Small intensity jitter: scanners and reconstruction kernels differ.
        xb = xb * float(rng.uniform(0.95, 1.05)) + float(rng.uniform(-0.03, 0.03))
        yb = torch.from_numpy(np.stack([c[1] for c in batch]).astype(np.int64))[:, None]
        loss = run.loss_fn(run.net(xb.to(run.device)), yb.to(run.device))
        run.optimiser.zero_grad()
        loss.backward()
        run.optimiser.step()
        run.scheduler.step()
        state["step"] += 1
        loss_value = float(loss.item())
        progress.update(task, advance=1, loss=f"loss {loss_value:.3f}")
        if not progress.console.is_terminal and state["step"] % 50 == 0:  # a log file: plain lines
            progress.console.log(f"step {state['step']}/{run.total_steps} loss {loss_value:.3f}")
    return loss_value


def _validate(run: _Run, val_set: list[Prepared], loss: float, progress: Any, task: Any) -> None:
    """Validation Dice per organ on the model grid; ``best.pt`` when the mean improves."""
    import torch

    state = run.state
    run.net.eval()
    scores = [dice_per_label(_torch_predict(run.net, v[2], run.device), v[3]) for v in val_set]
    last_val = {k: float(np.nanmean([s[k] for s in scores])) for k in synth_ct.LABELS.values()}
    mean = float(np.nanmean(list(last_val.values())))
    state["history"].append(
        {
            "epoch": state["epoch"],
            "step": state["step"],
            "dice": last_val,
            "mean": mean,
            "loss": loss,
            "elapsed_s": time.monotonic() - run.started,
        }
    )
    if mean > state["best_dice"]:
        state.update(best_dice=mean, best_epoch=state["epoch"], stale=0)
        torch.save({"model": run.net.state_dict(), "state": state}, run.ckpt_dir / "best.pt")
    else:
        state["stale"] += 1
    progress.update(
        task,
        dice="dice " + " ".join(f"{v:.2f}" for v in last_val.values()) + f" (best {state['best_dice']:.3f})",
    )
    if not progress.console.is_terminal:
        progress.console.log(f"epoch {state['epoch']} validation Dice {json.dumps(last_val)}")


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


def _torch_predict(net: Any, x: np.ndarray, device: str) -> np.ndarray:
    """Label map of a model-grid volume by MONAI's sliding window (Gaussian weights, 25 % overlap)."""
    import torch
    from monai.inferers import sliding_window_inference

    with torch.no_grad():
        t = torch.from_numpy(x.astype(np.float32))[None, None].to(device)
        logits: Any = sliding_window_inference(
            t, PATCH, 1, net, overlap=0.25, mode="gaussian", padding_mode="replicate"
        )
    return np.asarray(logits.argmax(dim=1)[0].cpu().numpy(), dtype=np.uint8)


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
