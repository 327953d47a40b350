"""A bag: one slide's tile features with what made them, saved as one safetensors file.

A bag carries the name of the backbone that extracted its features, its feature size, the tile size
and scale, and how its tiles were selected, so that features from different backbones or settings are
never mixed: :func:`load_bag` with ``backbone=`` refuses a bag extracted by another.

    bag = Bag(features, coords, tile=256, scale=1.0, backbone="timm/resnet18", slide="10077")
    save_bag(bag, "bags/10077.safetensors")           # atomic: the file is the old one or the whole new one
    bag = load_bag("bags/10077.safetensors", backbone="timm/resnet18")
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kagglekit._atomic import atomic_path
from kagglekit.errors import KagglekitError, ShapeError, WeightsNotFoundError

__all__ = ["Bag", "BagError", "load_bag", "save_bag"]

_META_KEY = "kagglekit_bag"
FORMAT_VERSION = 1


class BagError(KagglekitError, ValueError):
    """A bag file is unreadable, not a kagglekit bag, or was made by another backbone than asked for."""


@dataclass
class Bag:
    """One slide's tiles as a bag of features.

    ``features``: (N, D) float16, one row per selected tile; ``coords``: (N, 2) int64 (y, x) of each
    tile's top-left corner at level 0 (full resolution); ``tile``: the tile side in level-0 pixels;
    ``scale``: the factor the tiles were resized by before the backbone (0.5: a 512 px tile seen at 256);
    ``backbone``: the extractor's name (e.g. ``"timm/resnet18"`` or a checkpoint's); ``slide``: its id;
    ``selection``: how the tiles were chosen (e.g. ``{"rule": "top_k", "k": 256, "min_tissue": 0.25,
    "candidates": 9120}``), JSON values only. Holds the features (2 * N * D bytes) and coordinates.
    """

    features: np.ndarray
    coords: np.ndarray
    tile: int
    scale: float
    backbone: str
    slide: str
    selection: dict = field(default_factory=dict)

    def __post_init__(self):
        self.features = np.asarray(self.features)
        self.coords = np.asarray(self.coords)
        if self.features.ndim != 2 or self.features.dtype.kind != "f":
            raise ShapeError(f"bag features must be an (N, D) float array, got {self.features.shape} {self.features.dtype}")
        if not np.isfinite(self.features).all():
            raise ShapeError(f"bag {self.slide!r}: features hold NaN or inf; check the backbone's outputs")
        self.features = self.features.astype(np.float16, copy=False)
        if self.coords.shape != (len(self.features), 2) or self.coords.dtype.kind not in "iu":
            raise ShapeError(f"bag coords must be ({len(self.features)}, 2) integers (y, x), one per feature row, "
                             f"got {self.coords.shape} {self.coords.dtype}")
        self.coords = self.coords.astype(np.int64, copy=False)
        if not (isinstance(self.tile, int) and self.tile > 0 and isinstance(self.scale, (int, float))
                and math.isfinite(self.scale) and self.scale > 0):
            raise ShapeError(f"bag tile must be a positive integer and scale a positive number, got {self.tile!r}, {self.scale!r}")
        if not self.backbone or not isinstance(self.backbone, str):
            raise ShapeError("a bag needs the backbone's name (backbone=...), so that bags of two extractors are never mixed")

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    def __len__(self) -> int:
        return len(self.features)


def save_bag(bag: Bag, path) -> Path:
    """Write ``bag`` at ``path`` as safetensors (tensors ``features``, ``coords``; the rest in the header),
    through a temporary file renamed over ``path``."""
    from safetensors.numpy import save_file

    header = {"format": FORMAT_VERSION, "tile": bag.tile, "scale": float(bag.scale), "backbone": bag.backbone,
              "feature_dim": bag.feature_dim, "slide": bag.slide, "selection": bag.selection}
    try:
        text = json.dumps(header)
    except TypeError as exc:
        raise BagError(f"bag {bag.slide!r}: selection must hold JSON values (numbers, strings, lists, dicts): {exc}") from None
    path = Path(os.fspath(path))
    with atomic_path(path) as tmp:
        save_file({"features": np.ascontiguousarray(bag.features), "coords": np.ascontiguousarray(bag.coords)},
                  str(tmp), metadata={_META_KEY: text})
    return path


def load_bag(path, backbone: str | None = None) -> Bag:
    """The :class:`Bag` saved at ``path``; with ``backbone``, a bag extracted by another is refused (BagError)."""
    from safetensors import safe_open

    path = Path(os.fspath(path))
    if not path.is_file():
        raise WeightsNotFoundError(f"bag not found: {path}; extract it first (or fix the path)")
    try:
        with safe_open(str(path), framework="np") as f:
            header = json.loads((f.metadata() or {})[_META_KEY])
            features, coords = f.get_tensor("features"), f.get_tensor("coords")
    except KeyError as exc:
        raise BagError(f"{path} is not a kagglekit bag (no {exc.args[0]!r} in it); write bags with save_bag") from None
    except Exception as exc:  # safetensors' own error on a truncated or foreign file
        raise BagError(f"could not read bag {path}: {exc}; the file may be truncated: extract the slide again") from None
    if header.get("format", 0) > FORMAT_VERSION:
        raise BagError(f"{path} uses bag format {header['format']}; upgrade kagglekit to read it")
    if backbone is not None and header["backbone"] != backbone:
        raise BagError(f"{path} holds features of {header['backbone']!r}, not {backbone!r}; bags of different backbones "
                       "cannot be mixed: extract this slide again with the same backbone")
    return Bag(features, coords, header["tile"], header["scale"], header["backbone"], header["slide"], header["selection"])
