"""Tiling: where tiles go (TileGrid), what counts (masks, windows, inner crop) and how they join (Stitcher).

numpy and OpenCV only; no torch.
"""

from kagglekit.tiling.grid import TileGrid, tile_starts
from kagglekit.tiling.masks import block_mean, detect_background, swap_background, tissue_mask, to_gray_uint8
from kagglekit.tiling.overlay import draw_grid, overlay_mask, save_png
from kagglekit.tiling.stitcher import Stitcher
from kagglekit.tiling.weights import TileWeights
from kagglekit.tiling.windows import WINDOWS, blend_window, window_1d

__all__ = [
    "WINDOWS", "Stitcher", "TileGrid", "TileWeights", "blend_window", "block_mean", "detect_background", "draw_grid",
    "overlay_mask", "save_png", "swap_background", "tile_starts", "tissue_mask", "to_gray_uint8", "window_1d",
]
