"""Sliding-window inference: kagglekit against MONAI, pytorch-toolbelt and the floor, in one process.

The floor gathers the same tiles and runs the same model with no stitching at all. Every row is
timed (wall seconds) and its peak RSS measured in this process (see _common.py). Workloads:
  (a) 8192 x 8192 RGB uint8 in memory, 1x1 conv to 1 channel, tile 512, stride 384, batch 8, gaussian
  (b) 16384^2 and 32768^2 read from a zlib-compressed tiled TIFF, strips thresholded into a uint8 mask
  (c) 2048 x 2048 RGB through an smp Unet (resnet18, random weights), tile 256, stride 192, batch 8
Run: make bench (or .venv/bin/python bench/bench_sliding.py [a b c]).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table, measure, record, rss_mb  # noqa: E402

from kagglekit.infer import iter_strips, sliding_window  # noqa: E402
from kagglekit.io import open_image  # noqa: E402
from kagglekit.tiling import TileGrid, blend_window  # noqa: E402

DATA = Path(__file__).parent / "_data"
THRESHOLD = 0.5


def make_image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish synthetic RGB uint8 image (blobs plus noise) of size x size."""
    rng = np.random.default_rng(seed)
    import cv2

    small = rng.integers(0, 256, (size // 256 + 1, size // 256 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    image += rng.integers(0, 16, (1, size, 1), dtype=np.uint8)
    return image


def make_tiff(size: int) -> Path:
    """A zlib-compressed 512x512-tiled RGB TIFF of size x size, written tile by tile (cached in bench/_data)."""
    import tifffile

    path = DATA / f"slide_{size}.tif"
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    patterns = [make_image(512, seed) for seed in range(8)]

    def tiles():
        for i in range(size // 512):
            for j in range(size // 512):
                yield patterns[(i * 7 + j * 3) % 8]

    tmp = path.with_suffix(".tmp")
    tifffile.imwrite(tmp, tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(512, 512), compression="zlib", bigtiff=True, photometric="rgb")
    tmp.replace(path)
    return path


def conv1x1() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 1, 1).eval()


def to_tensor(tiles: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(tiles).permute(0, 3, 1, 2).float().div_(255)


# --- the floor: same tiles, same model, nothing stitched -------------------------------------------------
def floor(model, source, tile, stride, batch):
    source = open_image(source)
    grid = TileGrid(source.shape, tile, stride)
    with torch.inference_mode():
        for start in range(0, len(grid), batch):
            tiles = np.stack([source.read(int(y), int(x), tile, tile) for y, x in grid.positions[start : start + batch]])
            model(to_tensor(tiles)).numpy()
    return None


# --- kagglekit --------------------------------------------------------------------------------------------
def kk_memory(model, image, tile, stride, batch):
    return sliding_window(model, image, tile=tile, stride=stride, batch_size=batch, window="gaussian", progress=False)


def kk_mask(model, path, tile, stride, batch):
    source = open_image(path)
    mask = np.empty(source.shape[:2], np.uint8)
    for row, strip in iter_strips(model, source, tile=tile, stride=stride, batch_size=batch, progress=False):
        np.greater(strip[0], THRESHOLD, out=mask[row : row + strip.shape[1]].view(bool))
    return mask


# --- MONAI --------------------------------------------------------------------------------------------------
def monai(model, image, tile, stride, batch):
    from monai.inferers import sliding_window_inference

    if isinstance(image, Path):
        import tifffile

        image = tifffile.imread(image)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255)
    with torch.inference_mode():
        out = sliding_window_inference(x, (tile, tile), batch, model, overlap=1 - stride / tile, mode="gaussian", sigma_scale=0.125)
    return out[0].numpy()


# --- pytorch-toolbelt ---------------------------------------------------------------------------------------
def toolbelt(model, image, tile, stride, batch):
    from pytorch_toolbelt.inference.tiles import ImageSlicer, TileMerger

    if isinstance(image, Path):
        import tifffile

        image = tifffile.imread(image)
    slicer = ImageSlicer(image.shape, tile_size=tile, tile_step=stride, weight=blend_window("gaussian", tile))
    tiles = slicer.split(image)
    merger = TileMerger(slicer.target_shape, 1, slicer.weight)
    with torch.inference_mode():
        for start in range(0, len(tiles), batch):
            pred = model(to_tensor(np.stack(tiles[start : start + batch])))
            merger.integrate_batch(pred, slicer.crops[start : start + batch])
    return slicer.crop_to_orignal_size(merger.merge_().permute(1, 2, 0).numpy())


def rows_for(workload, runs, repeat=1):
    rows, floor_s = [], None
    for name, fn in runs:
        seconds, peak, _ = measure(fn, repeat=repeat)
        if name == "floor":
            floor_s = seconds
        rows.append([workload, name, seconds, peak])
    for row in rows:
        row.append(row[2] / floor_s)
    return rows


HEADERS = ["workload", "method", "wall s", "peak RSS MB", "x floor"]


def workload_a(rows):
    image, model = make_image(8192), conv1x1()
    args = (512, 384, 8)
    ours = kk_memory(model, image, *args)
    rows += rows_for("(a) 8192² 1x1 conv", [
        ("floor", lambda: floor(model, image, *args)),
        ("kagglekit sliding_window", lambda: kk_memory(model, image, *args)),
        ("MONAI sliding_window_inference", lambda: monai(model, image, *args)),
        ("pytorch-toolbelt ImageSlicer+TileMerger", lambda: toolbelt(model, image, *args)),
    ], repeat=2)
    ref = monai(model, image, *args)[0]
    print(f"(a) max |kagglekit - MONAI| = {np.abs(ours[0] - ref).max():.2e}")


def workload_b(rows, sizes=(16384, 32768)):
    model, args = conv1x1(), (512, 384, 8)
    ram_mb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024
    peers = {"MONAI sliding_window_inference": monai, "pytorch-toolbelt ImageSlicer+TileMerger": toolbelt}
    peak_at: dict[str, tuple[int, float]] = {}
    for size in sizes:
        path = make_tiff(size)
        name = f"(b) {size}² tiled TIFF → mask"
        runs = [("floor", lambda: floor(model, path, *args)), ("kagglekit iter_strips", lambda: kk_mask(model, path, *args))]
        skipped = []
        # The peers hold the decoded slide, its float copy and full-size accumulators, so memory grows
        # with the area: run one only if its peak at the previous size, scaled by the area, fits in
        # half of this machine's RAM.
        for peer, fn in peers.items():
            if peer in peak_at:
                prev_size, prev_peak = peak_at[peer]
                need = prev_peak * (size / prev_size) ** 2
                if need > ram_mb / 2:
                    print(f"{name}: {peer} not run: about {need / 1024:.0f} GB needed, machine has {ram_mb / 1024:.0f} GB")
                    skipped.append([name, f"{peer}: not run (≈{need / 1024:.0f} GB by area from {prev_size}²)", float("nan"), float("nan"), float("nan")])
                    continue
            runs.append((peer, lambda fn=fn: fn(model, path, *args)))
        measured = rows_for(name, runs)
        for row in measured:
            if row[1] in peers:
                peak_at[row[1]] = (size, row[3])
        rows += measured + skipped


def workload_c(rows):
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=1).eval()
    image, args = make_image(2048, seed=1), (256, 192, 8)
    rows += rows_for("(c) 2048² smp Unet-r18", [
        ("floor", lambda: floor(model, image, *args)),
        ("kagglekit sliding_window", lambda: kk_memory(model, image, *args)),
        ("MONAI sliding_window_inference", lambda: monai(model, image, *args)),
        ("pytorch-toolbelt ImageSlicer+TileMerger", lambda: toolbelt(model, image, *args)),
    ])


def main(which):
    rows: list = []
    print(f"start RSS {rss_mb():.0f} MB, torch threads {torch.get_num_threads()}")
    for key, fn in (("a", workload_a), ("b", workload_b), ("c", workload_c)):
        if key in which:
            fn(rows)
            print(markdown_table(HEADERS, rows))
    record(f"Sliding window ({' '.join(which)})", markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main(sys.argv[1:] or ["a", "b", "c"])
