"""The prediction job: a segmentation model slid over each slide, its probability map (or mask) saved as
an 8-bit PNG at a chosen fraction of the slide's size.

    run_slides(PredictionJob("unet.safetensors", tile=512, stride=384, downsample=8), "train/*.tif", "maps/")

Each output pixel is the mean sigmoid probability of channel ``channel`` over a ``downsample`` x
``downsample`` block of the model's output (a partial block at the right or bottom edge: over the
pixels it has), stored as round(255 p); with ``threshold``, 255 where that mean is at least the
threshold and 0 elsewhere. The slide is read tile by tile (:func:`kagglekit.infer.iter_strips`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError
from kagglekit.jobs.contract import Job, Slide, check_options
from kagglekit.jobs.models import ModelRef

__all__ = ["PredictionJob"]

SPEED_ONLY = ("batch_size", "device", "progress", "threads")


class PredictionJob(Job):
    """Write each slide's probability map or mask (``<slide>.png``, uint8, (ceil(H_out / downsample), ...)).

    model: a checkpoint path, or a module taking (N, C, tile, tile) float and returning (N, C_out, tile /
        out_scale, tile / out_scale) logits (a plain callable needs ``name``).
    downsample: output pixels per side averaged into one (1: the model's own resolution).
    channel, threshold: which output channel; None for the probability, or a cut in (0, 1) for a mask.
    options: :func:`~kagglekit.infer.iter_strips`'s keywords (tile, stride, out_scale, window, margin,
        normalize, batch_size, device, amp, ...). Holds one tile row of output and the finished map.
    """

    name, suffix = "predictions", ".png"

    def __init__(self, model, *, name: str | None = None, downsample: int = 1, channel: int = 0,
                 threshold: float | None = None, **options):
        from kagglekit.infer import iter_strips

        check_options("PredictionJob", iter_strips, options, 2)
        if threshold is not None and not 0 < threshold < 1:
            raise InvalidArgumentError(f"threshold must be in (0, 1) or None (a probability map), got {threshold!r}")
        if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
            raise InvalidArgumentError(f"channel must be a non-negative int, got {channel!r}")
        self.model = ModelRef(model, name=name)
        self.downsample, self.channel, self.threshold = positive_int("downsample", downsample), channel, threshold
        self.options = options
        self._model = None

    def settings(self) -> dict:
        kept = {k: v for k, v in self.options.items() if k not in SPEED_ONLY}
        return {"model": self.model.name, "downsample": self.downsample, "channel": self.channel,
                "threshold": self.threshold, **kept}

    def setup(self) -> None:
        self._model = self.model.build(self.options.get("device"))

    def run(self, slide: Slide, out_path: Path) -> dict:
        import cv2

        from kagglekit.infer import iter_strips
        from kagglekit.io import open_image
        from kagglekit.tiling import block_mean

        source = open_image(slide)
        try:
            rows = self.downsample * max(1, 256 // self.downsample)  # strips of whole blocks
            parts = []
            for _, strip in iter_strips(self._model, source, progress=False, strip_rows=rows, **self.options):
                if self.channel >= len(strip):
                    raise InvalidArgumentError(f"channel {self.channel} asked, but the model returns {len(strip)} channel(s)")
                probability = 1.0 / (1.0 + np.exp(-strip[self.channel].astype(np.float64)))
                parts.append(block_mean(probability, self.downsample))
        finally:
            if hasattr(source, "close"):
                source.close()
        mean = np.concatenate(parts)
        image = ((mean >= self.threshold) * 255 if self.threshold is not None else np.rint(mean * 255)).astype(np.uint8)
        if not cv2.imwrite(str(out_path), image):
            raise OSError(f"cannot write {out_path}")
        return {"height": int(image.shape[0]), "width": int(image.shape[1]), "mean": round(float(mean.mean()), 6)}
