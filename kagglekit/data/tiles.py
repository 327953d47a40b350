"""Training tiles of large images or volumes with their masks, as a torch Dataset.

    dataset = TileDataset(["train/1.tif", "train/2.tif"], ["train/1_mask.png", "train/2_mask.png"], tile=256,
                          samples_per_epoch=4000, positive_fraction=0.5, label_scale=32, seed=0)
    loader = DataLoader(dataset, batch_size=16, num_workers=2)  # each worker opens its own sources

Two modes: ``stride`` gives every tile of a regular grid (validation); ``samples_per_epoch`` draws random
tiles, a ``positive_fraction`` of them centred near a positive mask pixel, the others anywhere (or, with
``regions``, near a pixel of the region: a fragment or tissue mask). Item ``i`` is drawn from
``np.random.default_rng([seed, epoch, i])``, so a seed gives the same tiles whatever the worker count;
``set_epoch(e)`` draws anew. Only the tiles are read: a TIFF decodes just the tiles they touch, and
with ``cache_dir`` each source is decoded once to disk and read back as a memory map
(:mod:`kagglekit.data.cache`).
"""

from __future__ import annotations

import os

import numpy as np

from kagglekit._checks import number_in, positive_int
from kagglekit._threads import one_thread
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.io import read_mask

__all__ = ["TileDataset"]


class TileDataset:
    """Tiles of ``sources`` (image paths, opened once per process, or :class:`~kagglekit.io.Source` objects such
    as ``open_volume(...)``: their TIFF reads are fork-safe) with the same windows of ``masks`` ((H, W) arrays
    or image paths, nonzero = positive). Item: ``(x, y)``, x (C, tile, tile) float32 (integers scaled to [0, 1]), y (1, tile /
    label_scale, tile / label_scale) float32, the mask's area mean. ``transform(image=, mask=)`` (an
    albumentations transform) is applied to the uint8 tile and its mask first, seeded per item. ``regions``: one (H, W)
    array or image path per source, where random tiles may be centred (None: anywhere). ``cache_dir``: a
    folder for the tile cache, written here, in the main process, before any worker starts.
    ``normalize="volume"``: each source standardised by its own mean and std inside its region (or
    everywhere), as ``segment``'s ``[preprocess] normalize = "volume"`` does at inference. ``weights``: None,
    or one loss weight per source (labelled 1.0, pseudo-labelled 0.3): items are then ``(x, y, w)``, w a ()
    float32 tensor, for :func:`kagglekit.train.fit`'s weighted loss. Holds each
    worker's open sources, the masks (1 byte per pixel), and for random tiles the coordinates of positive
    and region pixels on a grid of ``tile // 4``."""

    def __init__(self, sources, masks, *, tile: int, stride: int | None = None, samples_per_epoch: int | None = None,
                 label_scale: int = 1, positive_fraction: float | None = None, transform=None, seed: int = 0,
                 regions=None, cache_dir=None, normalize: str | None = None, weights=None):
        if len(sources) != len(masks) or not sources:
            raise InvalidArgumentError(f"give one mask per source (got {len(sources)} sources, {len(masks)} masks)")
        if weights is not None and len(weights) != len(sources):
            raise InvalidArgumentError(f"give one loss weight per source (got {len(weights)} for {len(sources)} sources)")
        self.weights = None if weights is None else [number_in(f"weights[{k}]", w, 0) for k, w in enumerate(weights)]
        if (stride is None) == (samples_per_epoch is None):
            raise InvalidArgumentError("give stride (every tile of a grid) or samples_per_epoch (random tiles), one of them")
        self.tile, self.label_scale = positive_int("tile", tile), positive_int("label_scale", label_scale)
        if self.tile % self.label_scale:
            raise InvalidArgumentError(f"label_scale {label_scale} must divide the tile {tile}")
        if positive_fraction is not None and stride is not None:
            raise InvalidArgumentError("positive_fraction goes with random tiles (samples_per_epoch); a grid (stride) has every tile")
        if positive_fraction is not None and not 0 <= positive_fraction <= 1:
            raise InvalidArgumentError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.sources, self.transform, self.seed, self.epoch = list(sources), transform, seed, 0
        self.positive_fraction, self.samples = positive_fraction, samples_per_epoch
        self.masks = [read_mask(m) for m in masks]
        self._opened: dict = {}
        self._cached = None if cache_dir is None else self._write_cache(cache_dir)
        shapes = [self._source(k).shape[:2] for k in range(len(self.sources))]
        for k, (shape, mask) in enumerate(zip(shapes, self.masks)):
            if mask.shape != tuple(shape):
                raise ShapeError(f"mask {k} is {mask.shape} but its source is {tuple(shape)}; masks are at full resolution")
        if regions is not None and (stride is not None or len(regions) != len(self.sources)):
            raise InvalidArgumentError("regions go with random tiles (samples_per_epoch), one per source "
                                       f"(got {len(regions)} for {len(self.sources)} sources)")
        region_masks = [None] * len(shapes) if regions is None else [read_mask(r, shape) for r, shape in zip(regions, shapes)]
        if normalize not in (None, "volume"):
            raise InvalidArgumentError(f"normalize must be None or 'volume' (each source by its own mean and std), got {normalize!r}")
        self.stats = None if normalize is None else [self._stats(k, region_masks[k]) for k in range(len(shapes))]
        if stride is not None:
            from kagglekit.tiling import TileGrid

            self.windows = [(k, int(y), int(x)) for k, shape in enumerate(shapes)
                            for y, x in TileGrid(shape, self.tile, positive_int("stride", stride)).positions]
        else:
            self.step = step = max(1, self.tile // 4)
            self.positives = [np.argwhere(m[::step, ::step]) * step for m in self.masks]
            if positive_fraction and not any(len(p) for p in self.positives):
                raise InvalidArgumentError("positive_fraction is set but no mask has a positive pixel")
            self.regions = None if regions is None else [np.argwhere(r[::step, ::step]) * step for r in region_masks]
            if self.regions is not None and not any(len(r) for r in self.regions):
                raise InvalidArgumentError("every region is empty: there is nowhere to draw a tile")
            counts = [h * w for h, w in shapes] if regions is None else [len(r) for r in self.regions]
            self.areas = np.array(counts, np.float64)

    def _write_cache(self, cache_dir) -> list:
        """The cache file of each source (None for an in-memory array: it is read as it is)."""
        from tqdm.auto import tqdm

        from kagglekit.data.cache import cached_source
        from kagglekit.io import ArraySource, open_image

        files = []
        for source in tqdm(self.sources, desc="tile cache", unit="source", leave=False):
            source = open_image(source)
            files.append(None if isinstance(source, ArraySource) else cached_source(source, cache_dir))
        return files

    def _source(self, k: int):
        """Source ``k``, opened once per process (a forked DataLoader worker opens its own)."""
        from kagglekit.io import ArraySource, open_image

        key = (os.getpid(), k)
        if key not in self._opened:
            self._opened = {kk: v for kk, v in self._opened.items() if kk[0] == os.getpid()}
            cached = self._cached[k] if self._cached else None
            self._opened[key] = (ArraySource(np.load(cached, mmap_mode="r"), str(cached)) if cached is not None
                                 else open_image(self.sources[k]))
        return self._opened[key]

    def _stats(self, k: int, region) -> tuple[float, float]:
        """(mean, std) of source ``k`` inside ``region``, in the [0, 1] scale of the tiles."""
        from kagglekit.io import standardization

        mean, std, top = standardization(self._source(k), region)
        return mean / top, std / top

    def set_epoch(self, epoch: int) -> None:
        """Random tiles: draw those of ``epoch`` (the same seed and epoch give the same tiles)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.windows) if self.samples is None else self.samples

    def window(self, i: int) -> tuple[int, int, int]:
        """(source, y, x) of item ``i``'s tile."""
        if self.samples is None:
            return self.windows[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.positive_fraction and rng.random() < self.positive_fraction:
            k = int(rng.choice([j for j, p in enumerate(self.positives) if len(p)]))
            y, x = self._near(self.positives[k], rng)
        else:
            k = int(rng.choice(len(self.areas), p=self.areas / self.areas.sum()))
            h, w = self.masks[k].shape
            if self.regions is None:
                y, x = int(rng.integers(0, max(1, h - self.tile + 1))), int(rng.integers(0, max(1, w - self.tile + 1)))
            else:
                y, x = self._near(self.regions[k], rng)
        h, w = self.masks[k].shape
        return k, min(max(y, 0), max(0, h - self.tile)), min(max(x, 0), max(0, w - self.tile))

    def _near(self, cells: np.ndarray, rng) -> tuple[int, int]:
        """The corner of a tile centred at a random one of ``cells`` (grid points) plus a jitter of up to a grid step."""
        cy, cx = cells[rng.integers(len(cells))] + rng.integers(0, self.step, 2)
        return int(cy) - self.tile // 2, int(cx) - self.tile // 2

    def __getitem__(self, i: int):
        import torch

        from kagglekit.tiling import block_mean

        if not 0 <= i < len(self):
            raise IndexError(i)
        k, y, x = self.window(i)
        source = self._source(k)
        image = np.ascontiguousarray(source.read(y, x, self.tile, self.tile))
        mask = np.zeros((self.tile, self.tile), np.uint8)
        part = self.masks[k][y : y + self.tile, x : x + self.tile]
        mask[: part.shape[0], : part.shape[1]] = part
        if self.transform is not None:
            from kagglekit.augment._albu import seed_transform

            seed_transform(self.transform, [self.seed, self.epoch, i, 1])
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        with one_thread():  # per-item ops: see kagglekit._threads
            x_ = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
            if np.issubdtype(image.dtype, np.integer):
                x_ /= float(np.iinfo(image.dtype).max)
            if self.stats is not None:
                mean, std = self.stats[k]
                x_.sub_(mean).div_(std)
        y = torch.from_numpy(block_mean(mask, self.label_scale))[None]
        return (x_, y) if self.weights is None else (x_, y, torch.tensor(self.weights[k], dtype=torch.float32))
