"""Classification heads for CNN feature maps."""

from __future__ import annotations

import torch
from torch import nn

from kagglekit.errors import ShapeError


class ConcatPoolHead(nn.Module):
    """(B, C, H, W) float features -> (B, num_classes) logits: adaptive average and max pooling
    concatenated (2C), batch norm, dropout, linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)
        self.norm = nn.BatchNorm1d(2 * in_features)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ShapeError(
                f"ConcatPoolHead needs (B, C, H, W) feature maps, got {tuple(x.shape)}; "
                "use it with CNN backbones (for transformers keep head='default')"
            )
        if self.training and x.shape[0] == 1:
            raise ShapeError("ConcatPoolHead's batch norm cannot train on a batch of 1 (often the last, short "
                             "batch of an epoch): pass drop_last=True to the DataLoader, or call model.eval()")
        pooled = torch.cat([self.avg(x), self.max(x)], dim=1).flatten(1)
        return self.fc(self.drop(self.norm(pooled)))


class BackboneWithHead(nn.Module):
    """A timm backbone without its classifier (``forward_features`` gives NCHW maps) followed by ``head``."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))
