"""A compact ResNet for 2D classification, small enough to train from scratch on CPU.

Stem (3x3, stride 2) then basic residual blocks to 1/16 of the input size, global average
pooling and one linear layer: the GAP + linear head is what makes the class activation map
(CAM, Zhou et al. 2016) exact: ``heatmap = ReLU(sum_k w_k * feature_k)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if cin != cout or stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class CompactResNet(nn.Module):
    """Input (N, C, S, S) -> logits (N, outputs); ``features`` gives the (N, K, S/16, S/16) map."""

    def __init__(
        self, *, in_channels: int = 1, outputs: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128, 128),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.widths = widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        blocks: list[nn.Module] = []
        cin, stride_so_far = widths[0], 2
        for w in widths[1:]:
            stride = 2 if stride_so_far < 16 else 1  # stop at 1/16: a CAM of 10x10 for 160 px
            blocks.append(BasicBlock(cin, w, stride))
            cin, stride_so_far = w, stride_so_far * stride
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cin, outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return self.head(self.dropout(pooled))
