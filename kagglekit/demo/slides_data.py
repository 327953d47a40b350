"""A UBC-OCEAN-like whole-slide competition made from scikit-image's IHC image (no download).

Tissue comes from ``skimage.data.immunohistochemistry()`` and its colour-deconvolved stains
(``rgb2hed``): three "common" tissues (the image, haematoxylin only, less DAB, both stains
x 1.6, a 2x zoom) and one marker tissue per
subtype (DAB x 2.5, haematoxylin x 2.5, pale "clear" cells, a 2.5x zoom), plus one for the unseen
"Other" subtype: the pixel mean of the first two markers (a tumour with features of two subtypes, which
the heads should find ambiguous). A slide is a grid of 64 px cells; its
tissue covers an ellipse of cells filled with the common tissues in a mixture of its own, and **a few
cells (2 or 3 of about 50) hold its subtype's marker**: the label lives in a minority
of the tiles, as in a real MIL problem.

Two kinds, as in the competition: WSI-like slides on black, and TMA-like ones on white, smaller, at
twice the magnification (each cell drawn at 128 px). The train set is 5 % TMA, the test set 40 %, and
"Other" appears only in the test.

    <root>/input/kagglekit-slides/train_images/<id>.png   train.csv (image_id, label, is_tma)
    <root>/input/kagglekit-slides/test_images/<id>.png    sample_submission.csv; solution.csv (hidden labels)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CELL", "OTHER", "SUBTYPES", "SlideCompetition", "build_slide_competition", "read_labels"]

SUBTYPES = ("HGSC", "EC", "CC", "LGSC")
OTHER = "Other"
CELL = 64  # a WSI cell; a TMA cell is drawn at 2 x CELL
COMPETITION = "kagglekit-slides"


def _tissues() -> dict[str, np.ndarray]:
    """Name -> (512, 512, 3) uint8 tissue image: the common ones, one marker per subtype and Other's."""
    import cv2
    from skimage import data
    from skimage.color import hed2rgb, rgb2hed

    ihc = data.immunohistochemistry()
    hed = rgb2hed(ihc)

    def stains(h=1.0, e=1.0, d=1.0) -> np.ndarray:
        rgb = hed2rgb(hed * np.array([h, e, d]))
        return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)

    zoom = cv2.resize(ihc[:205, :205], (512, 512), interpolation=cv2.INTER_CUBIC)
    return {"common:ihc": ihc, "common:hematoxylin": stains(d=0.0), "common:light_dab": stains(d=0.5),
            "common:dark": stains(h=1.6, d=1.6), "common:coarse": cv2.resize(ihc[200:456, 200:456], (512, 512)),
            "HGSC": stains(d=2.5), "EC": stains(h=2.5), "CC": stains(h=0.4, d=0.4), "LGSC": zoom,
            OTHER: ((stains(d=2.5).astype(np.uint16) + stains(h=2.5)) // 2).astype(np.uint8)}


def _patch(rng: np.random.Generator, tissue: np.ndarray) -> np.ndarray:
    """A random CELL x CELL crop of ``tissue`` under a random element of D4."""
    y, x = rng.integers(0, tissue.shape[0] - CELL, 2)
    patch = tissue[y : y + CELL, x : x + CELL]
    patch = np.rot90(patch[:, ::-1] if rng.random() < 0.5 else patch, int(rng.integers(4)))
    return np.ascontiguousarray(patch)


def _cells(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) bool: an ellipse of tissue cells, at least 20 of them."""
    yy, xx = np.mgrid[:rows, :cols]
    while True:
        cy, cx = rng.uniform(0.35, 0.65) * rows, rng.uniform(0.35, 0.65) * cols
        ry, rx = rng.uniform(0.35, 0.55) * rows, rng.uniform(0.35, 0.55) * cols
        cells = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if cells.sum() >= 20:
            return cells


def make_slide(rng: np.random.Generator, tissues: dict, label: str, tma: bool) -> np.ndarray:
    """One slide of subtype ``label`` (or Other): (H, W, 3) uint8, TMA-like (white, 2x) or WSI-like (black)."""
    import cv2

    rows, cols = (6, 6) if tma else (9, 11)
    cells = _cells(rng, rows, cols)
    common = [k for k in tissues if k.startswith("common:")]
    mixture = rng.dirichlet(np.full(len(common), 0.3))
    where = np.argwhere(cells)
    markers = set(rng.choice(len(where), int(rng.integers(2, 4)), replace=False).tolist())
    side = 2 * CELL if tma else CELL
    slide = np.full((rows * side, cols * side, 3), 255 if tma else 0, np.uint8)
    for k, (r, c) in enumerate(where):
        tissue = tissues[label] if k in markers else tissues[common[rng.choice(len(common), p=mixture)]]
        patch = _patch(rng, tissue)
        if tma:
            patch = cv2.resize(patch, (side, side), interpolation=cv2.INTER_NEAREST)  # twice the magnification
        slide[r * side : (r + 1) * side, c * side : (c + 1) * side] = patch
    return slide


@dataclass(frozen=True)
class SlideCompetition:
    folder: Path
    solution: Path


def _write(path: Path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def build_slide_competition(root, *, n_train: int = 96, n_test: int = 48, seed: int = 0) -> SlideCompetition:
    """Write the competition under ``root/input/kagglekit-slides`` (see the module docstring): train
    slides evenly over the subtypes, 5 % TMA; test slides a sixth Other, 40 % TMA. Seeded: the same
    ``seed`` writes the same files."""
    import cv2

    rng = np.random.default_rng(seed)
    tissues = _tissues()
    folder = Path(root) / "input" / COMPETITION
    for sub in ("train_images", "test_images"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    train_labels = [SUBTYPES[k % len(SUBTYPES)] for k in range(n_train)]
    n_other = n_test // 6
    test_labels = [SUBTYPES[k % len(SUBTYPES)] for k in range(n_test - n_other)] + [OTHER] * n_other
    rng.shuffle(test_labels)
    written = {}
    for split, labels, tma_share in (("train", train_labels, 0.05), ("test", test_labels, 0.4)):
        tma = np.zeros(len(labels), bool)
        tma[rng.choice(len(labels), round(tma_share * len(labels)), replace=False)] = True
        rows = []
        for k, (label, is_tma) in enumerate(zip(labels, tma)):
            image_id = f"{split}{k:03d}"
            slide = make_slide(rng, tissues, label, bool(is_tma))
            cv2.imwrite(str(folder / f"{split}_images" / f"{image_id}.png"), slide[:, :, ::-1])
            rows.append((image_id, label, int(is_tma)))
        written[split] = rows
    _write(folder / "train.csv", ("image_id", "label", "is_tma"), written["train"])
    _write(folder / "sample_submission.csv", ("image_id", "label"), [(i, SUBTYPES[0]) for i, _, _ in written["test"]])
    solution = Path(root) / "solution.csv"  # outside the competition folder: the kernel never sees it
    _write(solution, ("image_id", "label", "is_tma"), written["test"])
    return SlideCompetition(folder, solution)


def read_labels(path) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, labels, is_tma) of train.csv or the solution."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["image_id"] for r in rows], [r["label"] for r in rows], np.array([r["is_tma"] == "1" for r in rows])
