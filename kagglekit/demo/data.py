"""The demo's mini-competition, built from the IHC image scikit-image ships (no download).

``skimage.data.immunohistochemistry()`` is a 512 x 512 RGB crop of colon tissue stained with
hematoxylin (blue nuclei) and DAB (brown, the antibody). Colour deconvolution
(``skimage.color.rgb2hed``, Ruifrok and Johnston 2001) separates the DAB optical density; smoothed
and thresholded it is the label: "DAB-positive tissue". Slides are mosaics of random crops of the
image on a glass-white background, each crop turned by a random element of D4 and its stain
concentrations jittered (``kagglekit.augment.StainAugmenter`` with the H and DAB vectors); the
label moves with the crop but is never jittered, so the task is to find DAB whatever its shade.

    <root>/input/kagglekit-demo/   train/*.png, test/*.png, train.csv (id, rle, height, width),
                                   sample_submission.csv (id, rle)
    <root>/solution.csv            the test masks (what Kaggle would keep hidden)
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kagglekit._checks import positive_int

COMPETITION = "kagglekit-demo"
DAB_SIGMA = 2.0  # pixels of Gaussian smoothing of the DAB density before thresholding
DAB_THRESHOLD = 0.09  # optical density; about a quarter of the source image is above it
BACKGROUND = 238  # glass


@dataclass(frozen=True)
class Competition:
    """Paths of a built competition."""

    root: Path
    folder: Path
    solution: Path
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]


@functools.cache
def source_and_label() -> tuple[np.ndarray, np.ndarray]:
    """The (512, 512, 3) uint8 IHC image and its (512, 512) bool DAB-positive label (cached, read-only)."""
    from skimage import data
    from skimage.color import rgb2hed
    from skimage.filters import gaussian

    image = data.immunohistochemistry()
    dab = gaussian(rgb2hed(image)[:, :, 2], sigma=DAB_SIGMA)
    label = dab > DAB_THRESHOLD
    image.flags.writeable = label.flags.writeable = False
    return image, label


@functools.cache
def _stain_vectors() -> np.ndarray:
    """(3, 2) unit optical-density vectors of hematoxylin and DAB (skimage's deconvolution matrix)."""
    from skimage.color import rgb_from_hed

    vectors = rgb_from_hed[[0, 2]].T.astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=0)
    vectors.flags.writeable = False
    return vectors


def mosaic(side: int, rng: np.random.Generator, piece=(160, 400), cell: int = 448) -> tuple[np.ndarray, np.ndarray]:
    """One slide: (side, side, 3) uint8 RGB and its (side, side) bool label.

    Crops of ``piece`` sides, one per cell of a grid of cells of at least ``cell`` pixels spanning the
    slide (a few cells left empty), each at a random place in its cell, D4-turned and stain-jittered.
    Holds the slide, its label and one crop.
    """
    from kagglekit.augment.stain import StainAugmenter

    image, label = source_and_label()
    jitter = StainAugmenter(sigma_scale=0.25, sigma_shift=0.05, stains=_stain_vectors())
    slide = np.clip(rng.normal(BACKGROUND, 3, (side, side, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((side, side), bool)
    cells = side // cell
    cell = side // cells
    for gy in range(cells):
        for gx in range(cells):
            if rng.random() < 0.15:
                continue
            h, w = rng.integers(piece[0], piece[1] + 1, 2)
            y, x = rng.integers(0, image.shape[0] - h + 1), rng.integers(0, image.shape[1] - w + 1)
            crop, crop_label = image[y : y + h, x : x + w], label[y : y + h, x : x + w]
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            crop, crop_label = np.rot90(crop, k), np.rot90(crop_label, k)
            if flip:
                crop, crop_label = crop[:, ::-1], crop_label[:, ::-1]
            crop = jitter(np.ascontiguousarray(crop), rng)
            h, w = crop_label.shape
            oy = gy * cell + int(rng.integers(0, cell - h + 1))
            ox = gx * cell + int(rng.integers(0, cell - w + 1))
            slide[oy : oy + h, ox : ox + w] = crop
            truth[oy : oy + h, ox : ox + w] = crop_label
    return slide, truth


def build_competition(root, n_train: int = 4, n_test: int = 2, side: int = 2048, seed: int = 0) -> Competition:
    """Write the competition folder and the solution under ``root``; return their paths.

    Slides are ``side`` x ``side`` PNGs; masks are RLE (row-major, as the sample submission says).
    Rebuilding with the same arguments writes the same files. Holds one slide at a time.
    """
    from kagglekit.kaggle.rle import rle_encode
    from kagglekit.tiling import save_png

    n_train, n_test = positive_int("n_train", n_train), positive_int("n_test", n_test)
    side = positive_int("side", side, minimum=448)
    root = Path(root)
    folder = root / "input" / COMPETITION
    for sub in ("train", "test"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_ids = tuple(f"train_{k}" for k in range(n_train))
    test_ids = tuple(f"test_{k}" for k in range(n_test))
    rows = {"train": [], "test": []}
    for split, ids in (("train", train_ids), ("test", test_ids)):
        for i in ids:
            slide, truth = mosaic(side, rng)
            save_png(folder / split / f"{i}.png", slide)
            rows[split].append([i, rle_encode(truth), side, side])
    _write_csv(folder / "train.csv", ["id", "rle", "height", "width"], rows["train"])
    _write_csv(root / "solution.csv", ["id", "rle", "height", "width"], rows["test"])
    _write_csv(folder / "sample_submission.csv", ["id", "rle"], [[i, ""] for i in test_ids])
    return Competition(root, folder, root / "solution.csv", train_ids, test_ids)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_masks(csv_path) -> dict[str, np.ndarray]:
    """{id: (H, W) uint8 mask} from a CSV with columns id, rle, height, width (train.csv, solution.csv)."""
    from kagglekit.kaggle import read_csv_strings
    from kagglekit.kaggle.rle import rle_decode

    frame = read_csv_strings(csv_path, "mask CSV")
    return {r["id"]: rle_decode(r["rle"], (int(r["height"]), int(r["width"]))) for r in frame.iter_rows(named=True)}
