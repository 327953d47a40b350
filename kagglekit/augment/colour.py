"""Colour-only transforms for channel-agnostic pipelines: a gate that applies a transform to RGB images
only, and H&E stain jitter as an albumentations transform."""

from __future__ import annotations

import warnings

import albumentations as A
import numpy as np

from kagglekit.augment._albu import transform_rng
from kagglekit.augment.stain import StainAugmenter


class ColourSkippedWarning(UserWarning):
    """A colour transform met a non-RGB image (e.g. a volume's slices as channels) and left it unchanged."""


class RGBOnly(A.ImageOnlyTransform):
    """Apply ``transform`` to HWC images with exactly 3 channels; pass any other image through.

    The first skip warns (:class:`ColourSkippedWarning`, naming the transform and channel count);
    ``skipped`` counts them. Randomness: the wrapped transform follows the wrapper's seeding.
    """

    def __init__(self, transform, p: float = 1.0):
        super().__init__(p=p)
        self.transform = transform
        self.skipped = 0

    def apply(self, img, **params):
        if img.ndim == 3 and img.shape[2] == 3:
            return self.transform(image=img)["image"]
        if not self.skipped:
            channels = img.shape[2] if img.ndim == 3 else 1
            warnings.warn(
                f"{type(self.transform).__name__} is colour-only and was skipped for a {channels}-channel image",
                ColourSkippedWarning,
                stacklevel=2,
            )
        self.skipped += 1
        return img

    def set_random_state(self, random_generator, py_random) -> None:
        super().set_random_state(random_generator, py_random)
        self.transform.set_random_state(random_generator, py_random)

    def set_random_seed(self, seed) -> None:
        super().set_random_seed(seed)
        if hasattr(self, "transform"):  # the base __init__ seeds before the wrapped transform is set
            self.transform.set_random_seed(seed)

    def get_transform_init_args_names(self):
        return ("transform",)


class StainJitter(A.ImageOnlyTransform):
    """H&E concentration jitter (:class:`StainAugmenter`) on RGB uint8 or float32-in-[0, 1] images.

    Tiles with too little tissue come back unchanged. Non-RGB input raises; wrap in :class:`RGBOnly`
    for channel-agnostic pipelines.
    """

    def __init__(self, sigma_scale: float = 0.2, sigma_shift: float = 0.05, stains=None, p: float = 0.5):
        super().__init__(p=p)
        self.augmenter = StainAugmenter(sigma_scale, sigma_shift, stains)

    def get_params(self):
        scale, shift = self.augmenter.draw(transform_rng(self))
        return {"scale": scale, "shift": shift}

    def apply(self, img, scale=(1.0, 1.0), shift=(0.0, 0.0), **params):
        if img.dtype == np.uint8:
            return self.augmenter.apply(img, scale, shift)
        jittered = self.augmenter.apply(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8), scale, shift)
        return img if self.augmenter.last_skipped else (jittered / np.float32(255)).astype(img.dtype)

    def get_transform_init_args_names(self):
        return ("augmenter",)
