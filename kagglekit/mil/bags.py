"""A bag: one slide's tile features with what made them, saved as one safetensors (or .h5) file.

A bag carries the name of the backbone that extracted its features, its feature size, the tile size
and scale, and how its tiles were selected, so that features from different backbones or settings are
never mixed: :func:`load_bag` with ``backbone=`` refuses a bag extracted by another.

    bag = Bag(features, coords, tile=256, scale=1.0, backbone="timm/resnet18", slide="10077")
    save_bag(bag, "bags/10077.safetensors")           # atomic: the file is the old one or the whole new one
    bag = load_bag("bags/10077.safetensors", backbone="timm/resnet18")
    bag = load_bag("trident/features_uni_v1/10077.h5", backbone="uni_v1")   # TRIDENT's / CLAM's (kagglekit.mil.h5)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kagglekit._atomic import atomic_path
from kagglekit._checks import one_of
from kagglekit.errors import KagglekitError, ShapeError, WeightsNotFoundError

__all__ = ["Bag", "BagError", "load_bag", "save_bag"]

META_KEY = "kagglekit_bag"
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


def _header_text(bag: Bag) -> str:
    """The JSON header a saved bag carries: everything but its features and coords."""
    header = {"format": FORMAT_VERSION, "tile": bag.tile, "scale": float(bag.scale), "backbone": bag.backbone,
              "feature_dim": bag.feature_dim, "slide": bag.slide, "selection": bag.selection}
    try:
        return json.dumps(header)
    except TypeError as exc:
        raise BagError(f"bag {bag.slide!r}: selection must hold JSON values (numbers, strings, lists, dicts): {exc}") from None


def save_bag(bag: Bag, path, format: str = "safetensors") -> Path:
    """Write ``bag`` at ``path`` through a temporary file renamed over ``path``.

    format: ``"safetensors"`` (tensors ``features``, ``coords``; the rest in the header) or ``"h5"``
    (TRIDENT's / CLAM's layout, readable by their tools; needs h5py: :mod:`kagglekit.mil.h5`)."""
    one_of("bag format", format, ("safetensors", "h5"))
    text = _header_text(bag)
    path = Path(os.fspath(path))
    with atomic_path(path) as tmp:
        if format == "h5":
            from kagglekit.mil.h5 import write_h5_bag

            write_h5_bag(bag, tmp, text)
        else:
            from safetensors.numpy import save_file

            save_file({"features": np.ascontiguousarray(bag.features), "coords": np.ascontiguousarray(bag.coords)},
                      str(tmp), metadata={META_KEY: text})
    return path


_MEANING = {"tile": "the tile side in level-0 pixels", "scale": "the factor tiles were resized by, e.g. 0.5"}


def _setting(name: str, given, found, path: Path):
    """``found`` (from the file) or ``given`` (by the caller); both missing, or both there and different: BagError."""
    if found is None and given is None:
        raise BagError(f"{path} does not record its tiles' {name} (CLAM's feature files carry no attributes): "
                       f"pass {name}= ({_MEANING[name]})")
    if found is not None and given is not None and not math.isclose(found, given):
        raise BagError(f"{path} records {name}={found}, not {given}: drop {name}= or load the file you meant")
    return found if found is not None else given


def bag_from_header(header: dict, features, coords, path: Path, backbone: str | None, tile=None, scale=None) -> Bag:
    """The Bag a file's ``header`` (:func:`save_bag`'s) describes; a bag of another ``backbone``, a newer
    format, or a ``tile``/``scale`` that disagrees with the file's is refused (BagError)."""
    if header.get("format", 0) > FORMAT_VERSION:
        raise BagError(f"{path} uses bag format {header['format']}; upgrade kagglekit to read it")
    if backbone is not None and header["backbone"] != backbone:
        raise BagError(f"{path} holds features of {header['backbone']!r}, not {backbone!r}; bags of different backbones "
                       "cannot be mixed: extract this slide again with the same backbone")
    tile, scale = _setting("tile", tile, header["tile"], path), _setting("scale", scale, header["scale"], path)
    return Bag(features, coords, tile, scale, header["backbone"], header["slide"], header["selection"])


def load_bag(path, backbone: str | None = None, *, tile: int | None = None, scale: float | None = None) -> Bag:
    """The :class:`Bag` saved at ``path`` by :func:`save_bag`, or a TRIDENT / CLAM feature ``.h5`` (told by
    content, not suffix; needs h5py: :mod:`kagglekit.mil.h5`).

    backbone: a kagglekit bag of another backbone is refused (BagError); a TRIDENT / CLAM file does not
        record its encoder, so there it is required and names the Bag's backbone (e.g. ``"uni_v1"``).
    tile, scale: only for a file that does not record them (CLAM's feature files); a value that disagrees
        with the file's is refused."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise WeightsNotFoundError(f"bag not found: {path}; extract it first (or fix the path)")
    from kagglekit.mil.h5 import is_h5, read_h5_bag

    if is_h5(path):
        return read_h5_bag(path, backbone, tile, scale)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            header = json.loads((f.metadata() or {})[META_KEY])
            features, coords = f.get_tensor("features"), f.get_tensor("coords")
    except KeyError as exc:
        raise BagError(f"{path} is not a kagglekit bag (no {exc.args[0]!r} in it); write bags with save_bag") from None
    except Exception as exc:  # safetensors' own error on a truncated or foreign file
        raise BagError(f"could not read bag {path}: {exc}; the file may be truncated: extract the slide again") from None
    return bag_from_header(header, features, coords, path, backbone, tile, scale)
