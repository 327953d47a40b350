"""Transforms along the depth of a volume stored as HWC (slices as channels), as functions and
albumentations image-only transforms (masks, being 2-D, are left alone)."""

from __future__ import annotations

import albumentations as A
import numpy as np

from kagglekit._checks import one_of, positive_int
from kagglekit.augment._albu import transform_rng
from kagglekit.errors import InvalidArgumentError, ShapeError


def shift_depth(volume: np.ndarray, shift: int, fill: str = "edge") -> np.ndarray:
    """Slices moved by ``shift`` along depth: ``out[..., z] = volume[..., z - shift]``.

    Slices shifted in from outside are copies of the edge slice (``fill="edge"``) or zeros
    (``fill="zero"``). (H, W, D) in, (H, W, D) out, same dtype; one output copy.
    """
    _check_volume(volume)
    one_of("fill", fill, {"edge", "zero"})
    depth = volume.shape[2]
    source = np.arange(depth) - int(shift)
    out = volume[..., np.clip(source, 0, depth - 1)]
    if fill == "zero":
        out[..., (source < 0) | (source >= depth)] = 0
    return out


def shuffle_slices(volume: np.ndarray, group: int, rng: np.random.Generator) -> np.ndarray:
    """Slices permuted at random within consecutive groups of ``group`` (the last group may be shorter).

    (H, W, D) in, (H, W, D) out; one output copy.
    """
    _check_volume(volume)
    group = positive_int("group", group)
    depth = volume.shape[2]
    order = np.concatenate([start + rng.permutation(min(group, depth - start)) for start in range(0, depth, group)])
    return volume[..., order]


def slice_window(volume: np.ndarray, depth: int, start: int) -> np.ndarray:
    """The ``depth`` consecutive slices from ``start``: (H, W, D) in, (H, W, depth) view out."""
    _check_volume(volume)
    depth, start = positive_int("depth", depth), positive_int("start", start, minimum=0)
    if start > volume.shape[2] - depth:
        raise InvalidArgumentError(f"a window of {depth} slices from {start} does not fit in {volume.shape[2]} slices")
    return volume[..., start : start + depth]


class DepthShift(A.ImageOnlyTransform):
    """Shift the slices by a uniform random integer in [-max_shift, max_shift] (:func:`shift_depth`)."""

    def __init__(self, max_shift: int = 2, fill: str = "edge", p: float = 0.5):
        super().__init__(p=p)
        self.max_shift = positive_int("max_shift", max_shift, minimum=0)
        self.fill = one_of("fill", fill, {"edge", "zero"})

    def get_params(self):
        return {"shift": int(transform_rng(self).integers(-self.max_shift, self.max_shift + 1))}

    def apply(self, img, shift=0, **params):
        return shift_depth(img, shift, self.fill)

    def get_transform_init_args_names(self):
        return ("max_shift", "fill")


class SliceShuffle(A.ImageOnlyTransform):
    """Shuffle slices within consecutive groups of ``group`` (:func:`shuffle_slices`)."""

    def __init__(self, group: int = 4, p: float = 0.5):
        super().__init__(p=p)
        self.group = positive_int("group", group)

    def get_params(self):
        return {"seed": int(transform_rng(self).integers(2**31))}

    def apply(self, img, seed=0, **params):
        return shuffle_slices(img, self.group, np.random.default_rng(seed))

    def get_transform_init_args_names(self):
        return ("group",)


class RandomSliceWindow(A.ImageOnlyTransform):
    """Keep a random window of ``depth`` consecutive slices (:func:`slice_window`); the start is uniform."""

    def __init__(self, depth: int, p: float = 1.0):
        super().__init__(p=p)
        self.depth = positive_int("depth", depth)

    def get_params(self):
        return {"position": float(transform_rng(self).random())}

    def apply(self, img, position=0.0, **params):
        _check_volume(img)
        if img.shape[2] < self.depth:
            raise ShapeError(f"RandomSliceWindow needs at least {self.depth} slices, the image has {img.shape[2]}")
        start = min(int(position * (img.shape[2] - self.depth + 1)), img.shape[2] - self.depth)
        return slice_window(img, self.depth, start)

    def get_transform_init_args_names(self):
        return ("depth",)


def _check_volume(volume: np.ndarray) -> None:
    if not isinstance(volume, np.ndarray) or volume.ndim != 3:
        raise ShapeError(f"a volume is an (H, W, D) array with slices as channels, got {getattr(volume, 'shape', type(volume))}")
