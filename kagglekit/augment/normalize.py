"""Per-image normalisation (each image scaled by its own statistics), as a function and an albumentations transform."""

from __future__ import annotations

import albumentations as A
import numpy as np

from kagglekit.errors import InvalidArgumentError, ShapeError


def normalize_per_image(
    image: np.ndarray, per_channel: bool = True, percentiles: tuple[float, float] | None = None, eps: float = 1e-6
) -> np.ndarray:
    """Return ``image`` (HW or HWC, any dtype) as float32 scaled by its own statistics.

    ``percentiles=None``: zero mean, unit standard deviation. ``percentiles=(lo, hi)``: clipped to those
    percentiles and mapped to [0, 1] (the ink-detection volumes' per-fragment normalisation).
    Statistics are per channel when ``per_channel`` (a volume's slices each scaled alone), else over
    the whole array. Holds one float32 copy of the image.
    """
    if image.ndim not in (2, 3):
        raise ShapeError(f"image must be HW or HWC, got shape {image.shape}")
    x = image.astype(np.float32)
    axes = (0, 1) if per_channel and x.ndim == 3 else None
    if percentiles is None:
        mean = x.mean(axis=axes, keepdims=True)
        std = x.std(axis=axes, keepdims=True)
        x -= mean
        x /= std + eps
        return x
    lo_q, hi_q = percentiles
    if not 0 <= lo_q < hi_q <= 100:
        raise InvalidArgumentError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {percentiles}")
    lo, hi = np.percentile(x, [lo_q, hi_q], axis=axes, keepdims=True).astype(np.float32)  # one partition
    np.clip(x, lo, hi, out=x)
    x -= lo
    x /= hi - lo + eps
    return x


class PerImageNormalize(A.ImageOnlyTransform):
    """albumentations transform wrapping :func:`normalize_per_image`; outputs float32, masks untouched."""

    def __init__(self, per_channel: bool = True, percentiles: tuple[float, float] | None = None, eps: float = 1e-6, p: float = 1.0):
        super().__init__(p=p)
        self.per_channel = per_channel
        self.percentiles = percentiles
        self.eps = eps

    def apply(self, img, **params):
        return normalize_per_image(img, self.per_channel, self.percentiles, self.eps)

    def get_transform_init_args_names(self):
        return ("per_channel", "percentiles", "eps")
