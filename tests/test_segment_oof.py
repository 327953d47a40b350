"""Segmentation folds whose OOF predictions are the kernel's: ``train_folds`` with a ``SegmentKernel``,
then ``kagglekit segment`` run here with a fold's checkpoint on its held-out images writes the same
probability maps (to 1e-5) and masks (the maps thresholded, as RLE)."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from kagglekit.cli import main
from kagglekit.data import ImageDataset
from kagglekit.kaggle.rle import rle_encode
from kagglekit.models import create, load_checkpoint, register_model
from kagglekit.train import SegmentKernel, train_folds
from kagglekit.train.toml_writer import dumps

from competitions import read_csv, write_png
from helpers import plain_rle_decode

SIDE, N = 40, 8


class TinySegmenter(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


register_model("test_oof_segmenter", TinySegmenter)


def segmenter():
    return create("kagglekit/test_oof_segmenter")


KERNEL = {"inputs": {"glob": "train/*.png"}, "tiling": {"tile": 32, "stride": 16, "margin": 4},
          "threshold": {"kind": "fixed", "value": 0.5}, "batch_size": 4}


def test_a_folds_oof_maps_are_what_segment_writes_for_its_held_out_images(tmp_path, capsys):
    rng = np.random.default_rng(3)
    (tmp_path / "train").mkdir()
    rows = []
    for k in range(N):
        image = rng.integers(0, 256, (SIDE, SIDE, 3), np.uint8)
        write_png(tmp_path / "train" / f"img{k}.png", image)
        rows.append((f"img{k}", rle_encode(image[..., 0] > 128)))
    (tmp_path / "train.csv").write_text("id,rle\n" + "".join(f"{i},{r}\n" for i, r in rows))
    data = ImageDataset(tmp_path / "train.csv", "train/{id}.png", target="mask", label="rle")
    out = tmp_path / "folds"
    result = train_folds(segmenter, data, np.arange(N) % 2, out, loss=nn.BCEWithLogitsLoss(), steps=3, batch_size=2,
                         lr=0.05, kernel=SegmentKernel(KERNEL, tmp_path), progress=False)
    assert result.oof["id"].to_list() == [i for i, _ in rows] and result.oof["fold"].to_list() == [k % 2 for k in range(N)]
    held = result.oof.filter(pl.col("fold") == 0)
    (tmp_path / "sample.csv").write_text("id,rle\n" + "".join(f"{i},\n" for i in held["id"]))
    config = tmp_path / "segment.toml"
    config.write_text(dumps({**KERNEL, "models": [{"path": str(out / "fold0" / "model.safetensors")}],
                             "output": {"sample_submission": "sample.csv", "probabilities": "maps"}}))
    assert main(["segment", str(config), "--input", str(tmp_path), "--output", str(tmp_path / "kernel")]) == 0
    written = {r["id"]: r["rle"] for r in read_csv(tmp_path / "kernel" / "submission.csv")}
    for image_id, oof_map, oof_rle in held.select(["id", "map", "rle"]).iter_rows():
        ours = np.load(out / oof_map)
        kernel = np.load(tmp_path / "kernel" / "maps" / f"{image_id}.npy")
        assert ours.shape == (SIDE, SIDE) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, kernel, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(plain_rle_decode(written[image_id], (SIDE, SIDE)), kernel >= 0.5)
        assert oof_rle == written[image_id]
    model = load_checkpoint(out / "fold0" / "model.safetensors").eval()
    for image_id, oof_map in held.select(["id", "map"]).iter_rows():  # and a plain oracle: with a margin wider than
        image = torch.from_numpy(data.image(int(image_id[3:]))).permute(2, 0, 1)[None].float() / 255  # the 3x3 kernel's
        with torch.no_grad():  # reach, the tiles' blend is the whole image's convolution
            expected = torch.sigmoid(model(image))[0, 0].numpy()
        np.testing.assert_allclose(np.load(out / oof_map), expected, rtol=0, atol=1e-5)
