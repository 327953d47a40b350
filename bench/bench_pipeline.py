"""The segmentation pipeline end to end against a hand-written loop and MONAI, in one process.

Workload: the demo's 2 test slides (2048 x 2048 RGB PNG, kagglekit.demo.data, seed 0) through the
demo's model architecture (smp U-Net, lcnet_050 encoder, depth 3; random weights: the time does not
depend on them), tile 256, stride 192, gaussian window, batch 8, fixed threshold 0.5, RLE output.
Rows:
  pipeline (tissue only, views cycled)  kagglekit.pipeline.segment with the demo's settings
  pipeline (tissue only, no TTA)        the same with the identity view only
  pipeline (all tiles, no TTA)          without the tissue mask either
  hand loop                             kagglekit iter_strips + threshold + rle_encode, no guard or config
  MONAI                                 monai sliding_window_inference (overlap 0.25, gaussian) + threshold + rle_encode
Each row decodes every PNG itself. torch runs with its default thread count (2 on this machine).
Run: make bench (or .venv/bin/python bench/bench_pipeline.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, markdown_table, record

from kagglekit.demo.data import build_competition
from kagglekit.demo.train import MODEL, MODEL_KWARGS
from kagglekit.io import open_image
from kagglekit.kaggle.rle import rle_decode, rle_encode
from kagglekit.models import create, save_checkpoint
from kagglekit.pipeline import segment

TILE, STRIDE, BATCH = 256, 192, 8
ROUNDS = 3


def config(model_path: Path, tissue_only: bool, cycle: bool) -> dict:
    return {"models": [{"path": str(model_path)}], "inputs": {"glob": "test/*.png"},
            "tiling": {"tile": TILE, "stride": STRIDE, "batch_size": BATCH, "tissue_only": tissue_only,
                       "thumbnail": 512, "min_tissue": 0.02},
            "tta": {"views": "d4" if cycle else "identity", "mode": "cycle"},
            "threshold": {"kind": "fixed", "value": 0.5}}


def run_pipeline(cfg: dict, comp_dir: Path, out: Path) -> dict:
    segment(cfg, comp_dir, out)
    import polars as pl

    return dict(pl.read_csv(out / "submission.csv", infer_schema_length=0).fill_null("").iter_rows())


def hand_loop(model, paths: list[Path]) -> dict:
    from kagglekit.infer import iter_strips

    rows = {}
    for path in paths:
        source = open_image(path)
        mask = np.empty(source.shape[:2], bool)
        for row, strip in iter_strips(model, source, tile=TILE, stride=STRIDE, batch_size=BATCH, progress=False):
            mask[row : row + strip.shape[1]] = strip[0] >= 0.0  # sigmoid >= 0.5
        rows[path.stem] = rle_encode(mask)
    return rows


def monai_loop(model, paths: list[Path]) -> dict:
    from monai.inferers import sliding_window_inference

    rows = {}
    for path in paths:
        source = open_image(path)
        image = source.read(0, 0, *source.shape[:2])
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255)
        with torch.inference_mode():
            logits = sliding_window_inference(x, (TILE, TILE), BATCH, model, overlap=0.25, mode="gaussian")
        rows[path.stem] = rle_encode(logits[0, 0].numpy() >= 0.0)
    return rows


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        comp = build_competition(tmp, n_train=1, n_test=2, side=2048, seed=0)
        model = create(MODEL, in_channels=3, num_classes=1, **MODEL_KWARGS).eval()
        model_path = save_checkpoint(model, tmp / "model.safetensors")
        paths = sorted((comp.folder / "test").glob("*.png"))
        rows, masks = [], {}
        cases = [
            ("kagglekit pipeline (tissue only, d4 views cycled)", lambda: run_pipeline(config(model_path, True, True), comp.folder, tmp / "a")),
            ("kagglekit pipeline (tissue only, no TTA)", lambda: run_pipeline(config(model_path, True, False), comp.folder, tmp / "c")),
            ("kagglekit pipeline (all tiles, no TTA)", lambda: run_pipeline(config(model_path, False, False), comp.folder, tmp / "b")),
            ("hand loop: iter_strips + threshold + rle_encode", lambda: hand_loop(model, paths)),
            ("MONAI sliding_window_inference + threshold + rle_encode", lambda: monai_loop(model, paths)),
        ]
        best = interleaved(dict(cases), ROUNDS, keep_results=True)
        for name, (seconds, peak, result) in best.items():
            masks[name] = np.concatenate([rle_decode(result[p.stem], (2048, 2048)).ravel() for p in paths])
            rows.append([name, seconds, peak])
        reference = masks[cases[3][0]]
        base = rows[3][1]
        table = markdown_table(["method", "seconds", "peak RSS MB", "time / hand loop", "pixels equal to hand loop"],
                               [[n, s, p, s / base, f"{np.mean(masks[n] == reference):.5f}"] for n, s, p in rows])
        import os

        body = (f"2 slides of 2048 x 2048 RGB (the demo's test set), smp U-Net lcnet_050 depth 3, tile {TILE}, "
                f"stride {STRIDE}, batch {BATCH}, threshold 0.5, RLE; load average {os.getloadavg()[0]:.1f} "
                f"at the end; best of {ROUNDS} interleaved rounds, same process (a shared machine: single runs varied by up to 50 %).\n\n{table}")
        record("pipeline: segment end to end (bench_pipeline.py)", body)


if __name__ == "__main__":
    main()
