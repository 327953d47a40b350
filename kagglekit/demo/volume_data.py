"""The volume demo's mini ink-detection competition, built from images scikit-image ships (no download).

A fragment is a (Z, H, W) uint8 stack of papyrus-like layers: scikit-image's ``grass`` texture
fading into its ``gravel`` texture with depth (one random crop of each per fragment, so neighbouring
slices look alike), with fresh sensor noise in every slice, inside an irregular fragment mask (0
outside, like the air around a scroll's fragment). Ink is a few words in OpenCV's Hershey fonts,
written as a faint brightening of the ``INK_SLICES`` middle slices only. Its contrast is below the
texture's, so no single slice shows the words plainly. Comparing the inked slices with the slices
around them, as a 2.5D model can, cancels the texture and shows them.

    <root>/input/kagglekit-ink/   train/<id>/volume.tif, mask.png, inklabels.png;
                                  test/<id>/volume.tif, mask.png; sample_submission.csv (Id, Predicted)
    <root>/ink_solution/<id>.png  the test ink labels (what Kaggle would keep hidden)
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

COMPETITION = "kagglekit-ink"
SLICES = 20
INK_SLICES = (8, 12)  # slices 8..11 carry the ink: the 4 middle ones of 20
INK_CONTRAST = 14.0  # grey levels added to inked voxels; the texture's standard deviation is about 30
NOISE = 16.0  # standard deviation of each slice's own noise
WORDS = ("PAPYRUS", "KAGGLE", "VESUVIUS", "SCROLL", "LETTERS", "INK", "DEPTH", "VOLUME", "FRAGMENT", "GREEK")


@functools.cache
def _texture(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)().astype(np.float32)
    return (image - image.mean()) / image.std()


def _layer(rng: np.random.Generator, name: str, h: int, w: int) -> np.ndarray:
    """A random crop of texture ``name``, stretched to (h, w) and turned by a random flip (zero mean, unit std)."""
    import cv2

    image = _texture(name)
    ch, cw = int(image.shape[0] * rng.uniform(0.5, 0.8)), int(image.shape[1] * rng.uniform(0.5, 0.8))
    y, x = rng.integers(0, image.shape[0] - ch + 1), rng.integers(0, image.shape[1] - cw + 1)
    crop = cv2.resize(image[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_CUBIC)
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def fragment_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) bool: a blob whose radius wanders around an ellipse (a few random harmonics)."""
    y, x = np.mgrid[:h, :w]
    dy, dx = (y - h / 2) / (0.47 * h), (x - w / 2) / (0.47 * w)
    angle, radius = np.arctan2(dy, dx), np.hypot(dy, dx)
    edge = 1.0 + sum(rng.uniform(-0.06, 0.06) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in range(2, 7))
    return radius <= edge


def ink_label(rng: np.random.Generator, inside: np.ndarray) -> np.ndarray:
    """(h, w) bool: two or three lines of random words in a Hershey font, kept inside the fragment."""
    import cv2

    h, w = inside.shape
    canvas = np.zeros((h, w), np.uint8)
    lines = int(rng.integers(2, 4))
    for k in range(lines):
        text = " ".join(rng.choice(WORDS, 2, replace=False)) if rng.random() < 0.4 else str(rng.choice(WORDS))
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX]))
        scale, thickness = 1.0, 12
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
        scale = min(2.6, 0.85 * w / tw)  # letters about 65 px tall at most: 8 logits at 1/8
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
        y = int(h * (k + 1) / (lines + 1) + th / 2)
        x = int((w - tw) / 2 + rng.integers(-w // 20, w // 20 + 1))
        cv2.putText(canvas, text, (x, y), font, scale, 1, thickness, cv2.LINE_AA)
    return (canvas > 0) & inside


def make_fragment(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(volume (Z, h, w) uint8, fragment mask (h, w) bool, ink (h, w) bool)."""
    inside = fragment_mask(rng, h, w)
    ink = ink_label(rng, inside)
    top, bottom = _layer(rng, "grass", h, w), _layer(rng, "gravel", h, w)
    light = 1.0 + 0.15 * _layer(rng, "moon", h, w)  # a slow unevenness of the scan
    volume = np.zeros((SLICES, h, w), np.uint8)
    for z in range(SLICES):
        a = z / (SLICES - 1)
        layer = 128 + 30 * ((1 - a) * top + a * bottom) * light + rng.normal(0, NOISE, (h, w))
        if INK_SLICES[0] <= z < INK_SLICES[1]:
            layer += INK_CONTRAST * ink
        volume[z] = np.where(inside, np.clip(layer, 1, 255), 0).astype(np.uint8)
    return volume, inside, ink


def _png(path: Path, mask: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), mask.astype(np.uint8) * 255):
        raise OSError(f"cannot write {path}")


def build_ink_competition(root, n_train: int = 3, n_test: int = 2, shape: tuple[int, int] = (448, 576),
                          seed: int = 0) -> Competition:
    """Write the competition under ``root`` (see the module docstring); the same seed gives the same files."""
    import tifffile

    from kagglekit.demo.data import Competition

    root = Path(root)
    folder, solution = root / "input" / COMPETITION, root / "ink_solution"
    rng = np.random.default_rng(seed)
    train_ids = tuple(f"frag{k + 1}" for k in range(n_train))
    test_ids = tuple(f"test{k + 1}" for k in range(n_test))
    for split, ids in (("train", train_ids), ("test", test_ids)):
        for i in ids:
            volume, inside, ink = make_fragment(rng, *shape)
            (folder / split / i).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(folder / split / i / "volume.tif", volume, photometric="minisblack")
            _png(folder / split / i / "mask.png", inside)
            _png(folder / split / i / "inklabels.png" if split == "train" else solution / f"{i}.png", ink)
    (folder / "sample_submission.csv").write_text("Id,Predicted\n" + "".join(f"{i},\n" for i in test_ids))
    return Competition(root, folder, solution, train_ids, test_ids)  # solution: a folder of <id>.png
