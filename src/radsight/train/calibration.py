"""Calibration of a binary classifier's logits on validation: temperature scaling plus a bias."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


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
