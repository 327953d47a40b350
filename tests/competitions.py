"""A tiny segmentation competition and closed-form checkpoints, shared by the pipeline tests.

The checkpoints are of registered pointwise models, e.g. ``logit = gain * (channel0 - offset)`` on the
image scaled to [0, 1], so the expected mask of every configuration has a closed form that the tests
compute plainly from the pixels.
"""

from __future__ import annotations

import csv
import weakref

import cv2
import numpy as np
import torch
from torch import nn

from kagglekit.models import create, register_model, save_checkpoint

RNG = np.random.default_rng(7)


class FakeClock:
    """A clock that only moves when a model runs (``Channel0Logit.cost`` seconds per forward)."""

    now = 0.0

    def __call__(self):
        return FakeClock.now


class Channel0Logit(nn.Module):
    def __init__(self, gain: float = 10.0, offset: float = 0.5, cost: float = 0.0):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(gain)))
        self.offset, self.cost = offset, cost

    def forward(self, x):
        if x.any():  # the pipeline's probe, one zero tile per model before any image, is not timed
            FakeClock.now += self.cost
        return self.gain * (x[:, :1] - self.offset)


register_model("test_pipeline_channel0", Channel0Logit)


class BlockMeanLogit(nn.Module):
    """A 2.5D stand-in at 1/``scale``: ``gain * (mean over slices and each scale x scale block - offset)``, so
    that a tile's output equals the whole (zero-padded) volume's output in the tile's blocks."""

    def __init__(self, scale: int = 32, gain: float = 10.0, offset: float = 0.5):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(gain)))
        self.scale, self.offset = scale, offset

    def forward(self, x):
        return self.gain * (nn.functional.avg_pool2d(x.mean(dim=1, keepdim=True), self.scale) - self.offset)


register_model("test_pipeline_block_mean", BlockMeanLogit)


class TrackedChannel0Logit(Channel0Logit):
    """Channel0Logit that counts its live instances: ``most`` is the largest count seen while one of them ran."""

    alive: weakref.WeakSet = weakref.WeakSet()
    most = 0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        TrackedChannel0Logit.alive.add(self)

    def forward(self, x):
        TrackedChannel0Logit.most = max(TrackedChannel0Logit.most, len(TrackedChannel0Logit.alive))
        return super().forward(x)


register_model("test_pipeline_tracked", TrackedChannel0Logit)


def checkpoint(path, name: str = "test_pipeline_channel0", **kwargs):
    return save_checkpoint(create(f"kagglekit/{name}", **kwargs), path)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_png(path, image):
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def competition(tmp_path, shapes, columns=("id", "rle")):
    """test/<id>.png of random colours and sample_submission.csv; returns {id: image}."""
    (tmp_path / "test").mkdir(parents=True)
    images = {}
    for k, shape in enumerate(shapes):
        image = RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)
        images[f"img{k}"] = image
        write_png(tmp_path / "test" / f"img{k}.png", image)
    with open(tmp_path / "sample_submission.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i, image in images.items():
            w.writerow([i, "1 1", *(str(image.shape[1]) for _ in columns[2:])])
    return images


def config(models, **sections):
    base = {"models": [{"path": str(p), "weight": w} for p, w in models], "batch_size": 4,
            "tiling": {"tile": 64, "stride": 48, "margin": 8}}
    base.update(sections)
    return base


class MeanLogit(nn.Module):
    """``logit = gain * (mean over the in_channels channels - 0.5)``: a 1x1 convolution that refuses any
    other channel count (as a real RGB model does)."""

    def __init__(self, in_channels: int = 3, gain: float = 10.0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(gain / in_channels)
            self.conv.bias.fill_(-0.5 * gain)

    def forward(self, x):
        return self.conv(x)


register_model("test_pipeline_mean", MeanLogit)


class TileRecorder(nn.Module):
    """Channel 0 as the logit; every tile it is given is kept in ``TileRecorder.seen`` (uint8 HWC)."""

    seen: list = []

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        if x.any():  # not the pipeline's zero-tile probe
            TileRecorder.seen.extend((t.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy() for t in x)
        return x[:, :1] - 0.5


register_model("test_pipeline_recorder", TileRecorder)


class ColourLogits(nn.Module):
    """``logit_k = gain * (mean of channel k % in_channels - 0.5)`` on the image scaled to [0, 1]: for a
    solid-colour image the logits, and so every decision, have a closed form (and D4 views change nothing)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3, gain: float = 8.0):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(gain)))
        self.in_channels, self.num_classes = in_channels, num_classes

    def forward(self, x):
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got {x.shape[1]}")
        means = x.mean(dim=(2, 3))
        return self.gain * (means[:, [k % self.in_channels for k in range(self.num_classes)]] - 0.5)


register_model("test_pipeline_colour", ColourLogits)


def colour_logits(colour, num_classes: int = 3, gain: float = 8.0) -> np.ndarray:
    """What ColourLogits returns for a solid image of ``colour`` (0..255 per channel), computed plainly."""
    c = np.asarray(colour, np.float64) / 255.0
    return np.array([gain * (c[k % len(c)] - 0.5) for k in range(num_classes)])
