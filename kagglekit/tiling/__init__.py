"""Tiling: where tiles go (TileGrid), what counts (masks, windows, inner crop) and how they join (Stitcher).

    TileGrid, tile_starts                                   grid.py     tile positions, edge snapping, select, top_k
    tissue_mask, detect_background, swap_background, ...    masks.py    tissue and background on (h, w[, C]) uint8
    plan_tiles, TilePlan, slide_kind, tile_reader           slides.py   a slide's tiles on tissue (TMA/WSI, per-kind
                                                                        scale, top-K) and the reader of one tile
    blend_window, window_1d, TileWeights                    windows.py, weights.py   blending and inner crop
    Stitcher                                                stitcher.py  tiles back into one (C, H, W) map
    draw_grid, overlay_mask, save_png                       overlay.py  pictures

numpy and OpenCV only; no torch.
"""

from kagglekit.tiling.grid import TileGrid, tile_starts
from kagglekit.tiling.masks import block_mean, detect_background, swap_background, tissue_mask, to_gray_uint8
from kagglekit.tiling.overlay import draw_grid, overlay_mask, save_png
from kagglekit.tiling.slides import TilePlan, plan_tiles, slide_kind, swaps_background, tile_reader
from kagglekit.tiling.stitcher import Stitcher
from kagglekit.tiling.weights import TileWeights
from kagglekit.tiling.windows import WINDOWS, blend_window, window_1d

__all__ = [
    "WINDOWS", "Stitcher", "TileGrid", "TilePlan", "TileWeights", "blend_window", "block_mean", "detect_background",
    "draw_grid", "overlay_mask", "plan_tiles", "save_png", "slide_kind", "swap_background", "swaps_background",
    "tile_reader", "tile_starts", "tissue_mask", "to_gray_uint8", "window_1d",
]
