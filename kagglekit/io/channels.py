"""Matching an image's channels to what a model takes: gray replicated, alpha dropped, anything else refused."""

from __future__ import annotations

import numpy as np

from kagglekit.errors import ShapeError
from kagglekit.io.source import Source, remembered

__all__ = ["ChannelMatchedSource", "match_channels"]

# (image channels, model channels) -> what is done; 1 -> k for any k is handled apart
_DROP_ALPHA = {(4, 3): "RGBA -> RGB (alpha dropped)", (2, 1): "gray + alpha -> gray (alpha dropped)"}


class ChannelMatchedSource(Source):
    """``source`` read with ``channels`` channels: a 1-channel image replicated, RGBA's (or gray + alpha's)
    alpha channel dropped. Holds nothing beyond the windows it hands out (a replicated window is a copy
    of the window, ``channels`` times its size). ``adaptation`` says what is done, e.g. ``"gray -> 3 channels
    (replicated)"``."""

    def __init__(self, source: Source, channels: int, adaptation: str):
        self.inner, self.adaptation = source, adaptation
        self.shape = (*source.shape[:2], channels)
        self.dtype = source.dtype
        self.name = source.name

    def _adapt(self, window: np.ndarray) -> np.ndarray:
        if window.shape[2] == 1:
            return np.repeat(window, self.shape[2], axis=2)
        return window[:, :, : self.shape[2]]

    def _read_inside(self, y0, x0, y1, x1):
        return self._adapt(self.inner._read_inside(y0, x0, y1, x1))

    def _prefetch_inside(self, windows) -> None:
        self.inner._prefetch_inside(windows)

    @remembered
    def thumbnail(self, max_side: int = 1024) -> np.ndarray:
        return self._adapt(self.inner.thumbnail(max_side))


def match_channels(source: Source, channels: int | None) -> Source:
    """``source`` as a source of ``channels`` channels: itself when they already match (or ``channels`` is
    None: unknown), else a :class:`ChannelMatchedSource` (gray -> replicated, RGBA -> RGB, gray + alpha ->
    gray). Any other pair raises :class:`ShapeError` naming both counts."""
    have = source.shape[2]
    if channels is None or have == channels:
        return source
    if have == 1:
        return ChannelMatchedSource(source, channels, f"gray -> {channels} channels (replicated)")
    if (have, channels) in _DROP_ALPHA:
        return ChannelMatchedSource(source, channels, _DROP_ALPHA[(have, channels)])
    raise ShapeError(f"{source.name}: the image has {have} channel(s) but the model takes {channels}; only gray "
                     "(replicated), RGBA (alpha dropped) and gray + alpha are adapted: convert the image, or use a "
                     f"model trained on {have} channel(s)")
