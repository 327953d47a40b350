"""Batch mixers on torch batches: MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019).

Each pairs sample i with sample ``index[i]`` of the same batch (a random permutation) and returns
the mixed inputs, targets ``lam * y + (1 - lam) * y[index]`` (so row sums are kept), the weight
``lam`` and the pairing. Randomness comes only from ``generator`` (a CPU ``torch.Generator``), so a
seeded generator gives the same result every time. One mixed copy of the batch is allocated.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from kagglekit.errors import InvalidArgumentError, ShapeError


class Mixed(NamedTuple):
    """inputs: like the input batch; targets: float, like the targets; lam: weight of the original
    sample; index: (N,) int64 partner of each sample; masks: mixed masks (CutMix only, else None);
    box: (y0, y1, x0, x1) pasted region (CutMix only, else None)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    lam: float
    index: torch.Tensor
    masks: torch.Tensor | None = None
    box: tuple[int, int, int, int] | None = None


def mixup(inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.4, generator: torch.Generator | None = None) -> Mixed:
    """``lam * x + (1 - lam) * x[index]`` with ``lam ~ Beta(alpha, alpha)``.

    inputs: (N, ...) float; targets: (N,) or (N, K) float (one-hot, soft or multi-label).
    """
    _check(inputs, targets, alpha)
    lam, index = _draw(inputs.shape[0], alpha, generator, inputs.device)
    mixed = inputs[index].mul_(1 - lam).add_(inputs, alpha=lam)  # one new batch (the gathered copy, mixed in place)
    return Mixed(mixed, _mix_targets(targets, lam, index), lam, index)


def cutmix(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 1.0,
    masks: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Mixed:
    """Paste a box of ``x[index]`` into ``x`` (and of ``masks[index]`` into ``masks``).

    inputs: (N, C, H, W) float; targets: (N,) or (N, K) float; masks: (N, H, W) or (N, C', H, W), any
    dtype. The box covers about ``1 - lam`` of the image for ``lam ~ Beta(alpha, alpha)``; the returned
    ``lam`` is recomputed from the clipped box, 1 - box area / (H * W), and weights the targets.
    """
    _check(inputs, targets, alpha)
    if inputs.ndim != 4:
        raise ShapeError(f"cutmix inputs must be (N, C, H, W), got {tuple(inputs.shape)}")
    height, width = inputs.shape[-2:]
    if masks is not None and (masks.shape[0] != inputs.shape[0] or masks.shape[-2:] != inputs.shape[-2:]):
        raise ShapeError(f"masks {tuple(masks.shape)} must be (N, H, W) or (N, C, H, W) matching inputs {tuple(inputs.shape)}")
    lam, index = _draw(inputs.shape[0], alpha, generator, inputs.device)
    side = np.sqrt(1 - lam)
    centre = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    cy, cx = int(centre[0] * height), int(centre[1] * width)
    half_h, half_w = int(height * side) // 2, int(width * side) // 2
    y0, y1 = max(cy - half_h, 0), min(cy + half_h, height)
    x0, x1 = max(cx - half_w, 0), min(cx + half_w, width)
    lam = 1 - (y1 - y0) * (x1 - x0) / (height * width)
    mixed = inputs.clone()
    mixed[..., y0:y1, x0:x1] = inputs[..., y0:y1, x0:x1][index]  # shuffle only the pasted box
    mixed_masks = None
    if masks is not None:
        mixed_masks = masks.clone()
        mixed_masks[..., y0:y1, x0:x1] = masks[..., y0:y1, x0:x1][index.to(masks.device)]
    return Mixed(mixed, _mix_targets(targets, lam, index), lam, index, mixed_masks, (y0, y1, x0, x1))


def _draw(n: int, alpha: float, generator, device) -> tuple[float, torch.Tensor]:
    """lam ~ Beta(alpha, alpha) and a permutation, both from ``generator`` (torch has no seeded Beta
    sampler, so one integer from the generator seeds numpy's)."""
    seed = int(torch.randint(2**62, (1,), generator=generator).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    index = torch.randperm(n, generator=generator).to(device)
    return lam, index


def _mix_targets(targets: torch.Tensor, lam: float, index: torch.Tensor) -> torch.Tensor:
    return targets * lam + targets[index.to(targets.device)] * (1 - lam)


def _check(inputs: torch.Tensor, targets: torch.Tensor, alpha: float) -> None:
    if not (isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)):
        raise InvalidArgumentError("inputs and targets must be torch tensors")
    if not inputs.is_floating_point():
        raise InvalidArgumentError(f"inputs must be a float tensor, got {inputs.dtype}; convert with .float()")
    if not targets.is_floating_point():
        raise InvalidArgumentError(
            f"targets must be float (one-hot, soft or multi-label), got {targets.dtype}; "
            "for class indices use torch.nn.functional.one_hot(targets, n_classes).float()"
        )
    if targets.ndim not in (1, 2) or targets.shape[0] != inputs.shape[0]:
        raise ShapeError(f"targets must be (N,) or (N, K) with N={inputs.shape[0]}, got {tuple(targets.shape)}")
    if inputs.shape[0] < 2:
        raise ShapeError("mixing needs a batch of at least 2 samples")
    if not 0 < alpha < math.inf:
        raise InvalidArgumentError(f"alpha must be a finite number > 0, got {alpha}")
