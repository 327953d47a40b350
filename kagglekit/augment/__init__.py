"""Augmentation: albumentations presets, volume transforms, batch mixers, stain tools.

Importing this package is cheap; albumentations, OpenCV and torch load with the submodule that uses
them, on first attribute access:

    preset(name, size=None, ...)             presets.py   d4 / light / heavy / histology Compose
    PerImageNormalize, normalize_per_image   normalize.py
    RGBOnly, StainJitter                     colour.py
    DepthShift, SliceShuffle, RandomSliceWindow, shift_depth, shuffle_slices, slice_window   volume.py
    mixup, cutmix, Mixed                     mix.py       (torch)
    MacenkoNormalizer, ReinhardNormalizer, StainAugmenter, macenko_stains   stain.py (numpy)
"""

from __future__ import annotations

import os

from kagglekit._lazy import lazy_exports

# albumentations asks PyPI for a newer version when imported unless this is set; a Kaggle kernel has
# no internet and tests must not touch the network. Set before any submodule imports albumentations.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_WHERE = {
    "preset": "presets",
    "PRESETS": "presets",
    "PerImageNormalize": "normalize",
    "normalize_per_image": "normalize",
    "RGBOnly": "colour",
    "StainJitter": "colour",
    "ColourSkippedWarning": "colour",
    "DepthShift": "volume",
    "SliceShuffle": "volume",
    "RandomSliceWindow": "volume",
    "shift_depth": "volume",
    "shuffle_slices": "volume",
    "slice_window": "volume",
    "mixup": "mix",
    "cutmix": "mix",
    "Mixed": "mix",
    "MacenkoNormalizer": "stain",
    "ReinhardNormalizer": "stain",
    "StainAugmenter": "stain",
    "macenko_stains": "stain",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
