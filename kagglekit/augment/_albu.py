"""The one place that knows albumentations 1.4.x from 2.x (the Kaggle image may carry either)."""

from __future__ import annotations

import albumentations as A
import numpy as np

ALBUMENTATIONS_2 = int(A.__version__.split(".")[0]) >= 2


def transform_rng(transform) -> np.random.Generator:
    """A generator for one draw of ``transform``'s parameters: the transform's own generator where
    albumentations gives it one (1.4.21 on: ``Compose(seed=...)`` seeds it), else one derived from
    numpy's global state (what older releases draw from)."""
    own = getattr(transform, "random_generator", None)
    return own if own is not None else np.random.default_rng(np.random.randint(2**31))


def seed_transform(transform, key) -> None:
    """Seed ``transform``'s draws from ``key`` (a list of ints, e.g. [seed, epoch, index]), so that one item's
    augmentation depends on the key only, in whichever process or DataLoader worker it runs: albumentations'
    own ``set_random_seed`` (1.4.21 on), else the global generators older releases draw from."""
    seed = int(np.random.default_rng(key).integers(2**31))
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)
    else:
        import random

        random.seed(seed)
        np.random.seed(seed)


def gauss_noise(std_fraction: tuple[float, float], p: float):
    """Gaussian noise whose standard deviation is a fraction of the dtype's range (255 or 1.0)."""
    if ALBUMENTATIONS_2:
        return A.GaussNoise(std_range=std_fraction, p=p)
    return A.GaussNoise(var_limit=tuple((s * 255) ** 2 for s in std_fraction), p=p)


def coarse_dropout(max_holes: int, max_size_fraction: float, p: float):
    """Up to ``max_holes`` rectangles of up to ``max_size_fraction`` of each side, zero-filled; masks untouched."""
    if ALBUMENTATIONS_2:
        return A.CoarseDropout(
            num_holes_range=(1, max_holes),
            hole_height_range=(max_size_fraction / 4, max_size_fraction),
            hole_width_range=(max_size_fraction / 4, max_size_fraction),
            p=p,
        )
    return A.CoarseDropout(
        max_holes=max_holes,
        max_height=max_size_fraction,
        max_width=max_size_fraction,
        min_holes=1,
        min_height=max_size_fraction / 4,
        min_width=max_size_fraction / 4,
        p=p,
    )
