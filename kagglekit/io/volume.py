"""Volumes: a multi-page TIFF or a folder of slice images, read as an image whose channels are slices."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kagglekit.errors import ImageReadError, InvalidArgumentError, ShapeError
from kagglekit.io.source import Source

SLICE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def middle(count: int, n: int) -> slice:
    """The ``n`` middle slices of ``count`` (``"middle:16"`` of 65 slices: 24..39; an odd leftover goes below)."""
    if not 0 < n <= count:
        raise InvalidArgumentError(f"the middle {n} slices of a volume of {count} slices: n must be 1..{count}")
    start = (count - n) // 2
    return slice(start, start + n)


def middle_count(z: str) -> int:
    """N of ``"middle:N"``; anything else raises InvalidArgumentError."""
    head, _, n = z.partition(":")
    if head != "middle" or not n.isdigit() or int(n) < 1:
        raise InvalidArgumentError(f"z={z!r}: a string must be 'middle:N' (the N middle slices), e.g. 'middle:16'")
    return int(n)


def _select(count: int, z, name: str) -> list[int]:
    """Indices picked by ``z`` (None, an int, a slice, a sequence, or ``"middle:N"``) out of ``count`` slices."""
    if z is None:
        z = slice(None)
    if isinstance(z, str):
        z = middle(count, middle_count(z))
    picked = list(range(count))[z] if isinstance(z, slice) else [int(z)] if np.isscalar(z) else [int(i) for i in z]
    bad = [i for i in picked if not -count <= i < count]
    if not picked or bad:
        raise InvalidArgumentError(f"{name} has {count} slices; z={z!r} selects {'none' if not picked else f'out-of-range {bad}'}")
    return [i % count for i in picked]


class VolumeSource(Source):
    """Slices stacked as channels: ``read`` returns (h, w, Z) for the chosen slices, in order.

    Each slice is its own 2D source (a TIFF page read window by window, or a decoded image), so a
    window read touches only that window of each slice.
    """

    def __init__(self, slices: list[Source], name: str):
        first = slices[0]
        for s in slices:
            if s.shape[2] != 1 and len(slices) == 1:
                raise ShapeError(f"{name}: one page of {s.shape[2]} samples ({s.shape}), not a stack of slices; write each "
                                 "slice as its own page, e.g. tifffile.imwrite(path, volume, photometric='minisblack')")
            if s.shape[:2] != first.shape[:2] or s.dtype != first.dtype or s.shape[2] != 1:
                raise ShapeError(f"{name}: slices must be single-channel and share one size and dtype; {s.name} is {s.shape} {s.dtype}, the first is {first.shape} {first.dtype}")
        self.slices, self.name = slices, name
        self.shape = (first.shape[0], first.shape[1], len(slices))
        self.dtype = first.dtype

    def _read_inside(self, y0, x0, y1, x1):
        out = np.empty((y1 - y0, x1 - x0, len(self.slices)), self.dtype)
        for i, s in enumerate(self.slices):
            out[:, :, i : i + 1] = s.read(y0, x0, y1 - y0, x1 - x0)
        return out

    def _prefetch_inside(self, windows) -> None:
        for s in self.slices:
            s._prefetch_inside(windows)


def open_volume(path, z=None, cache_bytes: int = 64 << 20) -> VolumeSource:
    """Open a multi-page TIFF or a folder of slice images as a (H, W, Z) source.

    ``z`` selects slices: ``slice(20, 44)``, an index, a list, ``"middle:16"`` (the 16 middle ones), or None for all. Folder slices are
    sorted in natural order (``2.tif`` before ``10.tif``). Nothing is decoded until ``read``.
    ``cache_bytes`` bounds the decoded tiles held per TIFF slice (a volume of Z slices holds up to
    Z x ``cache_bytes``); a PNG or JPEG slice holds its whole decoded image once read.
    """
    from kagglekit.io.tiff import PageSource, TiffPageReader, tiff_errors

    path = Path(path)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in SLICE_SUFFIXES), key=_natural_key)
        if not files:
            raise ImageReadError(f"{path}: no slice images ({', '.join(SLICE_SUFFIXES)}) in this folder")
        picked = [files[i] for i in _select(len(files), z, str(path))]
        from kagglekit.io import open_image

        return VolumeSource([open_image(p, cache_bytes=cache_bytes) for p in picked], str(path))
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file or folder")
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ImageReadError(f"{path}: a volume is a multi-page TIFF or a folder of slices, not {path.suffix!r}")
    import tifffile

    with tiff_errors(path):
        tif = tifffile.TiffFile(path)
        picked = _select(len(tif.pages), z, str(path))  # only the chosen pages' headers are parsed
        return VolumeSource([PageSource(TiffPageReader(tif, tif.pages[i], f"{path}[{i}]", cache_bytes)) for i in picked], str(path))
