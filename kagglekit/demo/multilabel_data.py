"""The multi-label demo's mini-competition, Planet-like, built from images scikit-image ships (no download).

Each chip is a small JPEG cut into 1 to 4 regions (a split, then splits of the parts), each region
filled with a random crop (random scale and dihedral turn) of a different source image: the textures
``brick``, ``grass``, ``gravel`` and ``moon`` (grey) and the photographs ``coffee``, ``chelsea``,
``hubble_deep_field`` and ``immunohistochemistry``. Over it lies exactly one weather, as in Planet: ``clear``
(nothing), ``haze`` (a bright veil that halves the contrast), ``partly_cloudy`` (one to three soft white
clouds) or ``cloudy`` (a veil that leaves a trace of the ground; as in Planet, a cloudy chip has no other tag).
A chip's labels are its weather and the sources it shows, written as Planet writes its tags: space-separated names.

    <root>/input/kagglekit-multilabel/   train/*.jpg, test/*.jpg, train.csv (image_name, tags),
                                         sample_submission.csv (image_name, tags)
    <root>/multilabel_solution.csv       the test tags (what Kaggle would keep hidden)
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kagglekit._checks import positive_int

COMPETITION = "kagglekit-multilabel"
SOURCES = ("brick", "grass", "gravel", "moon", "coffee", "chelsea", "hubble_deep_field", "immunohistochemistry")
WEATHER = ("clear", "cloudy", "haze", "partly_cloudy")  # exactly one per chip; "cloudy" goes alone
WEATHER_ODDS = (0.5, 0.12, 0.18, 0.2)
CLASSES = SOURCES + WEATHER
REGIONS = (1, 2, 3, 4)
REGION_ODDS = (0.3, 0.3, 0.25, 0.15)
QUALITY = 92  # JPEG quality of the chips


@dataclass(frozen=True)
class MultilabelCompetition:
    root: Path
    folder: Path
    solution: Path
    classes: tuple[str, ...] = CLASSES


@functools.cache
def _source(name: str) -> np.ndarray:
    """The scikit-image image ``name`` as (H, W, 3) uint8 RGB."""
    from skimage import data

    image = getattr(data, name)()
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]


def _regions(rng: np.random.Generator, side: int, count: int) -> list[tuple[int, int, int, int]]:
    """``count`` rectangles (y0, x0, y1, x1) tiling the chip: split the largest part at 35-65 % until there are enough."""
    parts = [(0, 0, side, side)]
    while len(parts) < count:
        parts.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]))
        y0, x0, y1, x1 = parts.pop()
        cut = rng.uniform(0.35, 0.65)
        if (y1 - y0 >= x1 - x0) if rng.random() < 0.7 else (y1 - y0 < x1 - x0):
            y = y0 + round((y1 - y0) * cut)
            parts += [(y0, x0, y, x1), (y, x0, y1, x1)]
        else:
            x = x0 + round((x1 - x0) * cut)
            parts += [(y0, x0, y1, x), (y0, x, y1, x1)]
    return parts


def _crop(rng: np.random.Generator, name: str, h: int, w: int) -> np.ndarray:
    """A random (h, w, 3) crop of source ``name`` at a random scale (0.6 to 1.4), turned by a random element of D4."""
    import cv2

    image = _source(name)
    scale = rng.uniform(0.6, 1.4)
    ch, cw = min(image.shape[0], max(h, round(h / scale))), min(image.shape[1], max(w, round(w / scale)))
    y, x = rng.integers(0, image.shape[0] - ch + 1), rng.integers(0, image.shape[1] - cw + 1)
    crop = cv2.resize(image[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.rot90(crop, rng.integers(0, 4)) if h == w else (crop[::-1] if rng.random() < 0.5 else crop)


def _clouds(rng: np.random.Generator, side: int, count: int) -> np.ndarray:
    """(side, side, 1) float32 cover in [0, 1]: ``count`` soft round clouds of random place and size."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    cover = np.zeros((side, side), np.float32)
    for _ in range(count):
        cy, cx, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.15, 0.35)
        cover = np.maximum(cover, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)))
    return cover[:, :, None]


def _weather(rng: np.random.Generator, chip: np.ndarray, weather: str) -> np.ndarray:
    """``chip`` under ``weather``: veiled towards a bright grey by haze and clouds (cloudy: 88 %)."""
    cover = {"clear": 0.0, "haze": 0.5, "cloudy": 0.88}.get(weather)
    if cover is None:
        cover = 0.95 * _clouds(rng, chip.shape[0], int(rng.integers(1, 4)))
    veil = 225 + rng.normal(0, 6, chip.shape[:2] + (1,))
    return np.clip(chip * (1 - cover) + veil * cover, 0, 255).astype(np.uint8)


def make_chip(rng: np.random.Generator, side: int = 64) -> tuple[np.ndarray, list[str]]:
    """One (side, side, 3) uint8 chip and its labels (in CLASSES order: the sources shown, then the weather)."""
    count = rng.choice(REGIONS, p=REGION_ODDS)
    names = rng.choice(len(SOURCES), size=count, replace=False)
    chip = np.empty((side, side, 3), np.uint8)
    for (y0, x0, y1, x1), k in zip(_regions(rng, side, count), names):
        chip[y0:y1, x0:x1] = _crop(rng, SOURCES[k], y1 - y0, x1 - x0)
    weather = WEATHER[rng.choice(len(WEATHER), p=WEATHER_ODDS)]
    chip = _weather(rng, chip, weather)
    return chip, [weather] if weather == "cloudy" else [SOURCES[k] for k in sorted(names)] + [weather]


def build_multilabel_competition(root, n_train: int = 1200, n_test: int = 400, side: int = 64,
                                 seed: int = 0) -> MultilabelCompetition:
    """Write the competition under ``root`` (see the module docstring); the same seed writes the same files."""
    import cv2

    n_train, n_test, side = positive_int("n_train", n_train), positive_int("n_test", n_test), positive_int("side", side, 16)
    root = Path(root)
    folder = root / "input" / COMPETITION
    rng = np.random.default_rng(seed)
    tables = {}
    for split, count in (("train", n_train), ("test", n_test)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for k in range(count):
            chip, labels = make_chip(rng, side)
            name = f"{split}_{k}"
            ok = cv2.imwrite(str(folder / split / f"{name}.jpg"), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
            if not ok:
                raise OSError(f"could not write {folder / split / name}.jpg")
            rows.append((name, " ".join(labels)))
        tables[split] = rows
    _write(folder / "train.csv", tables["train"])
    _write(folder / "sample_submission.csv", [(name, " ".join(SOURCES[:1])) for name, _ in tables["test"]])
    solution = root / "multilabel_solution.csv"
    _write(solution, tables["test"])
    return MultilabelCompetition(root, folder, solution)


def _write(path: Path, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_name", "tags"])
        writer.writerows(rows)


def read_tags(path, classes=CLASSES) -> tuple[list[str], np.ndarray]:
    """(ids, (n, C) 0/1 int8 label matrix) of a tags CSV (image_name, tags)."""
    from kagglekit.kaggle import read_csv_strings

    frame = read_csv_strings(path, "tags file")
    index = {c: k for k, c in enumerate(classes)}
    ids = frame.get_column("image_name").to_list()
    labels = np.zeros((len(ids), len(classes)), np.int8)
    for row, tags in enumerate(frame.get_column("tags").to_list()):
        for tag in tags.split():
            labels[row, index[tag]] = 1
    return ids, labels
