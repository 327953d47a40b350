"""``curves.png``: each fold's training loss per step and its validation loss where it was evaluated.

Drawn with OpenCV (already a dependency) rather than adding matplotlib to the offline wheel set for one
picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["save_curves"]

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # RGB, one per fold


def save_curves(path: Path, histories: list[Path], size: tuple[int, int] = (480, 800)) -> Path:
    """Draw the histories (fit's ``history.parquet``, one per fold) on one chart: the training loss as a line,
    the validation loss as dots, each fold its colour, the steps across and the loss (log scale) up."""
    import cv2
    import polars as pl

    from kagglekit.tiling import save_png

    frames = [pl.read_parquet(h) for h in histories]
    h, w = size
    image = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 70, w - 20, 30, h - 40
    steps = max(int(f["step"].max()) for f in frames)
    values = np.concatenate([np.concatenate([f["loss"].to_numpy(), f["val_loss"].drop_nulls().to_numpy()]) for f in frames])
    low, high = np.log10(max(values.min(), 1e-6)), np.log10(max(values.max(), 1e-6)) + 1e-9

    def point(step, loss):
        x = left + (right - left) * (step - 1) / max(steps - 1, 1)
        y = bottom - (bottom - top) * (np.log10(max(loss, 1e-6)) - low) / (high - low)
        return int(round(x)), int(round(y))

    cv2.rectangle(image, (left, top), (right, bottom), (0, 0, 0), 1)
    for k, frame in enumerate(frames):
        colour = COLOURS[k % len(COLOURS)]
        line = np.array([point(s, v) for s, v in zip(frame["step"], frame["loss"])], np.int32)
        cv2.polylines(image, [line], False, colour, 1, cv2.LINE_AA)
        for s, v in frame.select(["step", "val_loss"]).drop_nulls().iter_rows():
            cv2.circle(image, point(s, v), 4, colour, -1, cv2.LINE_AA)
        cv2.putText(image, f"fold {k}", (left + 10 + 80 * k, top - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    for value in (10**low, 10**high):
        cv2.putText(image, f"{value:.3g}", (5, point(1, value)[1] + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(image, f"step 1 .. {steps}   line: training loss   dots: validation loss", (left, h - 12),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    save_png(path, image)
    return path
