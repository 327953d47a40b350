"""Pictures of a run's predictions: :func:`save_preview` draws what the run's kind draws (segment: the first image's
thumbnail with its RLE mask tinted on top; classify and others: a grid of inputs with their values)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["labelled_grid", "overlay_prediction", "save_preview", "written_values"]


def save_preview(report, output_dir) -> Path | None:
    """Save the picture of ``report``'s predictions that its pipeline kind draws (a PNG in ``output_dir``) and
    return its path; None when nothing was predicted."""
    from kagglekit.pipeline.kind import get_kind

    if not report.predicted:
        return None
    return get_kind(report.kind).preview(report, Path(output_dir))


def written_values(report, ids) -> dict[str, str]:
    """What the submission of ``report`` holds for ``ids``: the first column after the id (strings)."""
    import polars as pl

    from kagglekit.kaggle import read_csv_strings

    submission = read_csv_strings(report.submission, "submission")
    column = next(c for c in submission.columns if c != report.id_column)
    rows = dict(submission.select(report.id_column, column).iter_rows())
    return {i: rows[i] for i in ids}


def overlay_prediction(source, rle: str, order: str = "C", max_side: int = 1024, size=None) -> np.ndarray:
    """(h, w, 3) uint8 RGB thumbnail (longer side ``max_side``) of ``source`` (path, array or Source)
    with the mask ``rle`` (Kaggle RLE at the image's full size, or at ``size`` (height, width): the
    original's, when ``source`` is a smaller file of it) drawn over it.

    Holds the full-size mask as float32 (5 bytes per pixel at the peak: decoded as uint8, then cast,
    so that the thumbnail shows fractional coverage) and the thumbnail."""
    import cv2

    from kagglekit.io import open_image
    from kagglekit.kaggle.rle import rle_decode
    from kagglekit.tiling import overlay_mask

    source = open_image(source)
    thumb = source.thumbnail(max_side)
    mask = rle_decode(rle, tuple(size or source.shape[:2]), order=order, dtype=np.float32)
    small = cv2.resize(mask, (thumb.shape[1], thumb.shape[0]), interpolation=cv2.INTER_AREA)
    return overlay_mask(thumb, small)


def labelled_grid(items, tile: int = 192, columns: int = 4) -> np.ndarray:
    """(h, w, 3) uint8 RGB contact sheet of ``items``, ``(image, label)`` pairs (a path, a tuple of channel
    paths or an HWC array, as :func:`kagglekit.io.load_image` takes; a label string), each image fitted
    into a ``tile`` square (aspect kept) with its label written under it. Holds one image at a time and
    the sheet."""
    import cv2

    from kagglekit.io import load_image

    items = list(items)
    rows = max(1, -(-len(items) // columns))
    band = 28
    sheet = np.full((rows * (tile + band), columns * tile, 3), 255, np.uint8)
    for k, (image, label) in enumerate(items):
        picture = load_image(image, tile, "pad")
        if picture.dtype != np.uint8:
            picture = (picture.astype(np.float32) * (255.0 / max(float(picture.max()), 1.0))).astype(np.uint8)
        if picture.shape[2] != 3:  # gray: replicated; RGBA or more channels: the first three
            picture = np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture[:, :, :3]
        y, x = (k // columns) * (tile + band), (k % columns) * tile
        sheet[y : y + tile, x : x + tile] = picture
        text = str(label) if len(str(label)) <= 24 else str(label)[:23] + "~"
        cv2.putText(sheet, text, (x + 4, y + tile + 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet
