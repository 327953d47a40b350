"""Bags in HDF5 as TRIDENT and CLAM write them: theirs read into a :class:`~kagglekit.mil.Bag`, ours written alike.

The layout (mahmoodlab/TRIDENT ``OpenSlideWSI.extract_patch_features`` through ``IO.save_h5``; CLAM
``extract_features_fp.py`` and ``WholeSlideImage.process_contour``), one file per slide:

    features  (N, D) float32 (some tools keep a batch axis: (1, N, D)); TRIDENT's attributes: name, savetodir
    coords    (N, 2) int64 (TRIDENT) or int32 (CLAM): (x, y) of each patch's top-left corner at level 0.
              TRIDENT's attributes: patch_size (at the target magnification), patch_size_level0,
              level0_magnification, target_magnification, overlap, name, savetodir, level0_width, level0_height.
              CLAM's patch files: patch_size (at patch_level), patch_level, downsample (dx, dy),
              downsampled_level_dim, level_dim, name, save_path; its feature files (h5_files/) carry none.

Neither names the patch encoder, so the caller does (``load_bag(path, backbone="uni_v1")``). A Bag's
coords are (y, x): the columns are swapped on the way in and out. The Bag's ``tile`` (level-0 pixels) is
``patch_size_level0`` (TRIDENT) or ``patch_size * downsample`` (CLAM), its ``scale`` ``patch_size / tile``
(an encoder's own resize after reading is not recorded); a file without them needs ``tile=`` and ``scale=``.
Both attribute sets are kept in ``bag.selection`` (``coords_attrs``, ``features_attrs``, JSON values).

``save_bag(bag, path, format="h5")`` writes the same two datasets (features float32, holding the Bag's float16
values; coords (x, y) int64)
with those attributes (``patch_size_level0``, ``patch_size`` and ``name`` from the Bag) and kagglekit's own
header as the file attribute ``kagglekit_bag``, from which :func:`load_bag` rebuilds the same Bag.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kagglekit.mil.bags import META_KEY, Bag, BagError, bag_from_header

__all__ = ["HDF5_SIGNATURE", "is_h5", "read_h5_bag", "write_h5_bag"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise BagError("reading or writing .h5 bags needs h5py: pip install 'kagglekit[h5]'") from None
    return h5py


def is_h5(path: Path) -> bool:
    """Whether the file at ``path`` starts with the HDF5 signature."""
    with open(path, "rb") as f:
        return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _plain(value):
    """An HDF5 attribute value as JSON values: numpy scalars and arrays as numbers and lists, bytes as str."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _level0_tile(attrs: dict) -> int | None:
    """The patch side in level-0 pixels from TRIDENT's or CLAM's coords attributes, or None."""
    if "patch_size_level0" in attrs:
        return int(attrs["patch_size_level0"])
    if "patch_size" in attrs and "downsample" in attrs:
        return int(round(attrs["patch_size"] * np.ravel(attrs["downsample"])[0]))
    return None


def _dataset(f, name: str, path: Path) -> np.ndarray:
    if name not in f:
        raise BagError(f"{path} has no {name!r} dataset (it holds {sorted(f)}); a bag .h5 holds 'features' (N, D) "
                       "and 'coords' (N, 2) (x, y), as TRIDENT and CLAM write them")
    return f[name][()]


def read_h5_bag(path: Path, backbone: str | None, tile: int | None = None, scale: float | None = None) -> Bag:
    """The Bag in the .h5 at ``path``: kagglekit's own (checked against ``backbone``), or TRIDENT's / CLAM's
    (named ``backbone``; ``tile`` and ``scale`` where the file lacks them). Holds the features and coords."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            features, coords = _dataset(f, "features", path), _dataset(f, "coords", path)
            header = f.attrs.get(META_KEY)
            attrs = {name: {k: _plain(v) for k, v in f[name].attrs.items()} for name in ("coords", "features")}
    except OSError as exc:
        raise BagError(f"could not read bag {path}: {exc}; the file may be truncated: write it again") from None
    if features.ndim == 3 and features.shape[0] == 1:
        features = features[0]
    if features.ndim != 2 or coords.shape != (len(features), 2):
        raise BagError(f"{path}: features must be (N, D) or (1, N, D) and coords (N, 2), got {features.shape} and "
                       f"{coords.shape}; is this a slide embedding or another tool's file?")
    coords = coords[:, ::-1]  # (x, y) -> (y, x)
    if header is not None:
        return bag_from_header(json.loads(_plain(header)), features, coords, path, backbone, tile, scale)
    if backbone is None:
        raise BagError(f"{path} does not record the patch encoder that made it (TRIDENT and CLAM do not): name it, "
                       "e.g. load_bag(path, backbone='uni_v1')")
    found = _level0_tile(attrs["coords"])
    size = attrs["coords"].get("patch_size")
    header = {"tile": found, "scale": size / found if found and size else None, "backbone": backbone,
              "slide": str(attrs["features"].get("name", attrs["coords"].get("name", path.stem))),
              "selection": {"coords_attrs": attrs["coords"], "features_attrs": attrs["features"]}}
    return bag_from_header(header, features, coords, path, backbone, tile, scale)


def write_h5_bag(bag: Bag, path: Path, header: str) -> None:
    """Write ``bag`` at ``path`` in TRIDENT's layout (module docstring) with ``header`` (JSON) as ``kagglekit_bag``."""
    h5py = _h5py()
    coords_attrs = {**bag.selection.get("coords_attrs", {}), "patch_size_level0": bag.tile,
                    "patch_size": int(round(bag.tile * bag.scale)), "name": bag.slide}
    features_attrs = {**bag.selection.get("features_attrs", {}), "name": bag.slide}
    with h5py.File(path, "w") as f:
        f.attrs[META_KEY] = header
        for name, data, attrs in (("features", bag.features.astype(np.float32), features_attrs),
                                  ("coords", np.ascontiguousarray(bag.coords[:, ::-1]), coords_attrs)):
            dataset = f.create_dataset(name, data=data)
            for key, value in attrs.items():
                try:
                    dataset.attrs[key] = value
                except (TypeError, ValueError) as exc:
                    raise BagError(f"bag {bag.slide!r}: attribute {key}={value!r} of {name!r} cannot be stored in "
                                   f"HDF5 ({exc}); keep numbers, strings and lists of them in bag.selection") from None
