"""Training data: images with image-level labels or masks, tiles of large images and volumes with their masks.

    ImageDataset(table, images, target=, label=, classes=, size=, resize=, normalize=, transform=, cache_dir=)  images.py
    TileDataset(sources, masks, tile=, stride= | samples_per_epoch=, label_scale=, positive_fraction=)   tiles.py
    ImageDataset(..., weight=) / TileDataset(..., weights=): items (x, y, w), w the row's or source's loss weight
    read_targets(table, target=, label=): (ids, classes, targets) of a labels table, as ImageDataset reads them

Importing this package is cheap: each name is loaded from its submodule on first use.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {"ImageDataset": "images", "TileDataset": "tiles", "read_targets": "images"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
