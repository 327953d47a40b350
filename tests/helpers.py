"""Plain helpers shared by several test modules: brute-force oracles and a fresh-interpreter probe."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

README = Path(__file__).parents[1] / "README.md"


def readme_section(title: str, level: int = 2) -> str:
    """The README's text under the heading ``title`` of ``level`` (## = 2), up to the next heading of that
    level or above."""
    hashes = "#" * level
    found = re.search(rf"\n{hashes} {re.escape(title)}\n(.*?)(?=\n#{{1,{level}}} |\Z)", README.read_text(), re.S)
    assert found, f"the README has no section {hashes} {title}"
    return found.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in ``text``, in order."""
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def plain_starts(length, tile, stride):
    """Tile starts along one axis written plainly: every stride, then one snapped to the far edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile] if starts[-1] != length - tile else starts


def plain_rle_decode(rle: str, shape, order: str = "C") -> np.ndarray:
    """Kaggle RLE (1-indexed start/length pairs) to a 0/1 uint8 mask, one run at a time."""
    flat = np.zeros(shape[0] * shape[1], np.uint8)
    numbers = [int(v) for v in rle.split()]
    for start, length in zip(numbers[0::2], numbers[1::2]):
        flat[start - 1 : start - 1 + length] = 1
    return flat.reshape(shape, order=order)


def modules_loaded_by(import_line: str, candidates) -> list[str]:
    """Which of ``candidates`` are in ``sys.modules`` after running ``import_line`` in a fresh interpreter."""
    code = f"import sys; {import_line}; print(','.join(m for m in {tuple(candidates)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return out.split(",") if out else []


def seeded_compose(transforms, seed: int):
    """``A.Compose(transforms, seed=seed)`` on any albumentations release.

    From 1.4.21 on, Compose seeds each transform's own generators. Older releases draw from the global
    ``random`` and numpy states, so this gives the compose its own pair of those states, seeded once,
    swapped in for each call and out again afterwards: calls draw a seeded sequence, as with 1.4.21+.
    """
    import random

    import albumentations as A

    try:
        return A.Compose(transforms, seed=seed)
    except TypeError:  # albumentations < 1.4.21: Compose takes no seed
        compose = A.Compose(transforms)
        own = [random.Random(seed).getstate(), np.random.RandomState(seed).get_state()]

        def call(**data):
            outer = random.getstate(), np.random.get_state()
            random.setstate(own[0])
            np.random.set_state(own[1])
            try:
                return compose(**data)
            finally:
                own[:] = random.getstate(), np.random.get_state()
                random.setstate(outer[0])
                np.random.set_state(outer[1])

        return call


def plain_tile(image, y, x, side):
    """The (side, side) window at (y, x), zero beyond the image, read plainly."""
    out = np.zeros((side, side, image.shape[2]), image.dtype)
    part = image[y : y + side, x : x + side]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def plain_selection(image, side, min_tissue, top_k=None):
    """The expected tile origins: the mask (Otsu on the thumbnail) brought to full size by nearest rows
    and columns (pixel r in mask row floor(r * h / H)), the tissue share of every tile's part inside
    the image, kept when >= min_tissue and > 0; the top_k largest (ties: earlier) in row-major order."""
    from kagglekit.io import open_image
    from kagglekit.tiling import tissue_mask

    thumb = open_image(image).thumbnail(1024)
    mask = tissue_mask(thumb)
    H, W = image.shape[:2]
    full = mask[np.arange(H) * mask.shape[0] // H][:, np.arange(W) * mask.shape[1] // W]
    origins, shares = [], []
    for y in sorted({*range(0, H - side, side), H - side} if H > side else {0}):
        for x in sorted({*range(0, W - side, side), W - side} if W > side else {0}):
            origins.append((y, x))
            shares.append(full[y : y + side, x : x + side].mean())
    shares = np.array(shares)
    keep = [i for i in range(len(origins)) if shares[i] >= min_tissue and shares[i] > 0]
    if top_k is not None:
        keep = sorted(sorted(keep, key=lambda i: -shares[i])[:top_k])
    return np.array([origins[i] for i in keep], np.int64).reshape(-1, 2)


def tissue_slide(h=700, w=900, background=255, seed=0):
    """An RGB slide: ``background`` with textured tissue blobs (random ellipses) of mid brightness."""
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), background, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(5):
        centre = (int(rng.integers(100, w - 100)), int(rng.integers(100, h - 100)))
        axes = (int(rng.integers(40, 140)), int(rng.integers(40, 140)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    texture = rng.integers(60, 190, (h, w, 3), dtype=np.uint8)
    image[mask > 0] = texture[mask > 0]
    return image




def assert_same_report(one, two) -> None:
    """Every field of a ``workers = 2`` pipeline report equals the one-process report's, except those that
    describe the run itself (its time, device list, submission path) or the process (peak memory, whose
    ids must still agree); the events equal once the workers' prefixes are taken off, the split noted."""
    for name in type(one).__dataclass_fields__:
        if name not in ("seconds", "device", "submission", "events", "peak_memory"):
            assert getattr(two, name) == getattr(one, name), name
    assert set(getattr(two, "peak_memory", {})) == set(getattr(one, "peak_memory", {}))
    assert {e.split(": ", 1)[1] for e in two.events if e.startswith("worker ")} == set(one.events)
    assert any("split over 2 workers" in e for e in two.events)


def same_safetensors(a, b) -> bool:
    """Two safetensors files hold the same metadata and the same tensors, bit for bit (safetensors writes
    the metadata keys in no fixed order, so equal files need not be equal bytes)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        return (fa.metadata() == fb.metadata() and sorted(fa.keys()) == sorted(fb.keys())
                and all(torch.equal(fa.get_tensor(k), fb.get_tensor(k)) for k in fa.keys()))
