"""Tile plans for slides: the slide's kind (TMA on white or WSI on black), its tiles on tissue (all that
are tissue enough, or the top-K), and the reader that turns a plan's tile into model-ready pixels.

    plan = plan_tiles(open_image("slides/10077.png"), tile=224, scale={"tma": 0.5, "wsi": 1.0}, top_k=256)
    read = tile_reader(source, plan, swap=swaps_background("tma", plan.kind), stain=None, batch_size=16)
    read(0)  # (224, 224, 3) uint8

Per slide: the thumbnail (one pass over the slide; a PNG small enough to decode whole is decoded once and its
tiles come from the same decode; a larger PNG is streamed: a first pass of row strips for the thumbnail, a
second that reads only down to the last selected tile's rows, batch by batch, see
:mod:`kagglekit.io.png`) gives the background (white: TMA-like glass, black: WSI-like), the slide's kind, the tissue mask
and the brightness threshold between tissue and background. Tiles of ``tile / scale`` level-0 pixels
whose footprint is at least ``min_tissue`` tissue are kept (the ``top_k`` most filled with ``top_k``),
in row-major order. Used by :func:`kagglekit.mil.extract_bag` (MIL bags) and
:class:`kagglekit.jobs.TileExportJob` (tiles as PNGs), so both read the same tiles the same way.
numpy and OpenCV only; holds the thumbnail and the tissue mask, never a float copy of the slide (and, for a
streamed PNG, never the slide: a strip of its width and a few batches of tiles).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kagglekit._checks import one_of, positive_int
from kagglekit.errors import InvalidArgumentError

__all__ = ["KINDS", "SWAPS", "TilePlan", "plan_tiles", "slide_kind", "swaps_background", "tile_reader"]

KINDS = ("auto", "tma", "wsi")
SWAPS = (False, True, "tma")


def slide_kind(thumbnail: np.ndarray, shape, tma_max_side: int = 8192) -> str:
    """``"tma"`` for a slide on white whose longer level-0 side is at most ``tma_max_side``, else ``"wsi"``.

    UBC-OCEAN's TMAs are about 3k x 3k on white glass; its WSIs are larger (up to 50k px) and were
    exported on black. ``thumbnail``: any small (h, w, C) uint8 view of the slide; ``shape``: the slide's (H, W, ...)."""
    from kagglekit.tiling.masks import detect_background

    return "tma" if detect_background(thumbnail) == "white" and max(shape[:2]) <= tma_max_side else "wsi"


@dataclass(frozen=True)
class TilePlan:
    """Where a slide's tiles are and how to read them: ``coords`` (N, 2) int64 level-0 (y, x);
    ``side``: the level-0 tile side (``tile / scale``); ``kind``, ``background`` and ``threshold`` (the
    tissue/background brightness cut of the thumbnail); ``selection``: the rule, as stored in a bag;
    ``grid``: the kept tiles as a :class:`~kagglekit.tiling.TileGrid` (e.g. for ``draw_grid``)."""

    coords: np.ndarray
    side: int
    tile: int
    scale: float
    kind: str
    background: str
    threshold: int
    selection: dict
    grid: object = None


def per_kind(name: str, value, kind: str) -> float:
    """``value`` (a positive number, or ``{"tma": .., "wsi": ..}``) for a slide of ``kind``, as a float."""
    if isinstance(value, Mapping):
        if kind not in value:
            raise InvalidArgumentError(f"{name} per kind needs a value for {kind!r}, got keys {sorted(value)}")
        value = value[kind]
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"{name} must be a positive number (or {{'tma': .., 'wsi': ..}}), got {value!r}")
    return float(value)


def plan_tiles(source, *, tile: int = 224, scale=1.0, min_tissue: float = 0.25, top_k: int | None = None,
               tissue=None, threshold=None, kind: str = "auto", tma_max_side: int = 8192,
               thumbnail_side: int = 1024) -> TilePlan:
    """Choose a slide's tiles from its thumbnail.

    source: a :class:`~kagglekit.io.Source` (``.shape`` (H, W, C), ``.thumbnail(max_side)``).
    tile: the side a model sees; the level-0 tile is ``tile / scale`` pixels.
    scale: the resize factor, a number or per kind, e.g. ``{"tma": 0.5, "wsi": 1.0}``.
    tissue, min_tissue, top_k: None (:func:`~kagglekit.tiling.tissue_mask` on the thumbnail) or an (h, w)
        bool mask covering the whole slide at any resolution; the least tissue fraction of a kept tile;
        at most ``top_k`` tiles, the most filled (ties: the earlier).
    threshold: the brightness between background and tissue (0..255), a number or per kind; None: Otsu's.
    kind, tma_max_side: ``"auto"`` (:func:`slide_kind`), ``"tma"`` or ``"wsi"``.
    thumbnail_side: the thumbnail's longer side.

    Holds the thumbnail and the mask; ``source.thumbnail`` is one pass over the slide (a streamed PNG: a
    strip of about 64 MB at a time)."""
    from kagglekit.tiling.grid import TileGrid
    from kagglekit.tiling.masks import background_threshold, tissue_mask

    one_of("kind", kind, KINDS)
    tile = positive_int("tile", tile)
    thumb = source.thumbnail(positive_int("thumbnail_side", thumbnail_side))
    kind = slide_kind(thumb, source.shape, tma_max_side) if kind == "auto" else kind
    if threshold is not None:
        threshold = int(per_kind("threshold", threshold, kind))
    background, threshold = background_threshold(thumb, threshold=threshold)
    scale = per_kind("scale", scale, kind)
    side = max(1, round(tile / scale))
    if tissue is None:
        tissue = tissue_mask(thumb, background=background, threshold=threshold)
    grid = TileGrid(source.shape[:2], side)
    fraction = grid.mask_fraction(np.asarray(tissue).astype(bool))
    selection = {"rule": "min_tissue", "min_tissue": float(min_tissue), "candidates": len(grid), "kind": kind,
                 "background": background, "threshold": threshold}
    if top_k is None:
        kept = grid.select(tissue, min_tissue)
    else:
        kept = grid.top_k(fraction, top_k, min_fraction=min_tissue)
        selection.update(rule="top_k", k=int(top_k))
    return TilePlan(kept.positions, side, tile, scale, kind, background, threshold, selection, kept)


def swaps_background(swap_background, kind: str) -> bool:
    """Whether a slide of ``kind`` gets its background swapped under the option ``swap_background``
    (False, True, or ``"tma"``: only TMAs)."""
    one_of("swap_background", swap_background, SWAPS)
    return swap_background is True or (swap_background == "tma" and kind == "tma")


def tile_reader(source, plan: TilePlan, *, swap: bool, stain, batch_size: int):
    """``read(i) -> (tile, tile, C) uint8`` for tile ``i`` of ``plan``: the level-0 window, stain-normalised
    (``stain``: None, a fitted normaliser with ``.transform(uint8 tile)``, or a callable), background set
    to 0 (``swap``), resized to ``plan.tile``. The first tile read of each batch of
    ``batch_size`` asks the source to read that batch's windows, and those of any earlier batch not yet
    asked for, at once: a TIFF decodes them in parallel; a streamed PNG (:mod:`kagglekit.io.png`) reads
    them in one forward sweep and keeps them until read, so the plan's row-major tiles cost one pass down
    the slide whatever order reader threads take within a batch. Holds one tile at a time (and what the
    source keeps: a streamed PNG's strip of rows and the batch's windows not yet read)."""
    import threading

    import cv2

    from kagglekit.tiling.masks import is_foreground, swap_background

    side, coords = plan.side, plan.coords
    transform = getattr(stain, "transform", stain)
    lock, asked = threading.Lock(), [0]  # asked[0]: the first batch whose windows were not yet prefetched

    def read(i: int) -> np.ndarray:
        batch = i // batch_size
        if batch >= asked[0]:
            with lock:
                if batch >= asked[0]:
                    source.prefetch([(int(y), int(x), side, side)
                                     for y, x in coords[asked[0] * batch_size : (batch + 1) * batch_size]])
                    asked[0] = batch + 1
        y, x = coords[i]
        pixels = source.read(int(y), int(x), side, side)
        if transform is not None:
            pixels = transform(pixels)
        if swap:
            pixels = swap_background(pixels, is_foreground(pixels, plan.background, plan.threshold))
        if side != plan.tile:
            pixels = cv2.resize(pixels, (plan.tile, plan.tile), interpolation=cv2.INTER_AREA if side > plan.tile
                                else cv2.INTER_LINEAR).reshape(plan.tile, plan.tile, -1)
        return pixels

    return read
