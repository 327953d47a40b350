"""The demo's training: a small U-Net on CPU for a fixed number of steps, the threshold picked on the held-out fold.

Tiles of the training slides form a polars table (slide, position, tissue and DAB fractions);
``kagglekit.cv.make_folds`` splits it by slide, stratified on "has DAB". Fold 0's slides are held
out; the model trains through ``kagglekit.train.fit`` (AdamW, the learning rate on a cosine over a
fixed number of steps, a seed: two runs give the same figures however busy the machine is) on random
crops centred on the other folds' tissue, drawn by ``kagglekit.data.TileDataset`` through
``kagglekit.augment.preset("histology")``; then the held-out slides go through
``kagglekit.infer.sliding_window`` exactly as the pipeline will run them, and
``kagglekit.thresholds.best_fbeta_threshold`` (beta 0.5) picks the threshold on those predictions.
The model dataset gets the checkpoint, ``threshold.json`` and the pipeline's ``segment.toml``, written
from a dict by :func:`write_kernel_config` and read back by ``kagglekit.pipeline.load_config``.

``fit_tiles`` and ``write_kernel_config`` serve the volume and slides demos too (the multilabel demo
trains through ``kagglekit train`` itself).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL = "smp/unet/tu-lcnet_050"
MODEL_KWARGS = {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}
BETA = 0.5
BUDGET = {"seconds": 1800, "reserve": 60}  # every demo kernel's [budget]
# kagglekit.train.fit's options for the demos' tile models, besides steps, batch size, learning rate and seed
FIT = {"loss": "bce", "weight_decay": 1e-4, "progress": False}


@dataclass(frozen=True)
class InferenceSettings:
    """How the pipeline will run the model; the held-out fold is predicted the same way."""

    tile: int = 256
    stride: int = 192
    views: str = "d4"  # cycled per window (kagglekit.tta.ViewCycle): no extra cost

    def kernel_config(self, threshold_file: str) -> dict:
        """``segment.toml`` as a dict: these settings, the model and its threshold file."""
        return {"kind": "segment", "batch_size": 8, "inputs": {"glob": "test/*.png"},
                "tiling": {"tile": self.tile, "stride": self.stride, "window": "gaussian", "tissue_only": True,
                           "thumbnail": 512, "min_tissue": 0.02},
                "models": [{"path": "model.safetensors", "weight": 1.0}], "tta": {"views": self.views, "mode": "cycle"},
                "threshold": {"kind": "file", "file": threshold_file}, "output": {"fallback": ""}, "budget": BUDGET}


@dataclass(frozen=True)
class TrainResult:
    models_dir: Path
    steps: int
    seconds: float
    held_out: tuple[str, ...]
    threshold: float
    held_out_fbeta: float


def tile_table(images: dict, masks: dict, tile: int):
    """polars frame of every tile with tissue: slide, y, x, tissue (fraction), dab (fraction), has_dab."""
    import polars as pl

    from kagglekit.tiling import TileGrid, tissue_mask

    rows = []
    for slide, image in images.items():
        grid = TileGrid(image.shape, tile)
        tissue = grid.mask_fraction(tissue_mask(image[::8, ::8]))
        dab = grid.mask_fraction(masks[slide][::4, ::4])
        for (y, x), t, d in zip(grid.positions, tissue, dab):
            if t > 0:
                rows.append({"slide": slide, "y": int(y), "x": int(x), "tissue": float(t), "dab": float(d)})
    frame = pl.DataFrame(rows)
    return frame.with_columns((pl.col("dab") > 0.05).cast(pl.Int8).alias("has_dab"))


def tissue_regions(images: dict) -> dict:
    """Full-resolution (H, W) bool tissue masks of the slides (found on 1/8 thumbnails)."""
    from kagglekit.tiling import tissue_mask

    return {i: np.repeat(np.repeat(tissue_mask(image[::8, ::8]), 8, axis=0), 8, axis=1)[: image.shape[0], : image.shape[1]]
            for i, image in images.items()}


def fit_tiles(model, tiles, steps: int, *, batch_size: int, lr: float, seed: int, log):
    """Train ``model`` on ``tiles`` (a map-style dataset of (x, y) tiles, e.g. a TileDataset of ``steps x
    batch_size`` random tiles: one epoch) for ``steps`` steps with ``kagglekit.train.fit`` and :data:`FIT`;
    log the mean loss of the first and last 20 steps. Returns the model in eval mode. Holds the model, its
    AdamW state and one batch of tiles."""
    from kagglekit.train import fit as train_fit

    result = train_fit(model, tiles, steps=steps, batch_size=batch_size, lr=lr, seed=seed, **FIT)
    loss = result.history["loss"].to_numpy()
    k = min(20, len(loss))
    log(f"  loss {loss[:k].mean():.3f} over the first {k} steps, {loss[-k:].mean():.3f} over the last {k}")
    return result.model


def write_kernel_config(path, config: dict) -> Path:
    """Write ``config`` (a kernel config as a dict) to ``path`` as TOML (``kagglekit.train.toml_writer``) and
    read it back with ``kagglekit.pipeline.load_config``, so a config the kernel could not run stops the demo here."""
    from kagglekit.pipeline import load_config
    from kagglekit.train.toml_writer import dumps

    path = Path(path)
    path.write_text(dumps(config))
    load_config(path)
    return path


def predict_logits(model, image: np.ndarray, settings: InferenceSettings) -> np.ndarray:
    """(H, W) float32 logits of an RGB uint8 slide, run as the pipeline runs it (window views cycled)."""
    from kagglekit.infer import sliding_window
    from kagglekit.tta import ViewCycle

    return sliding_window(model, image, tile=settings.tile, stride=settings.stride, normalize="scale",
                          tta=ViewCycle(settings.views), progress=False)[0]


STEPS = 250  # about 80 s on the 2-core CI machine (0.3 s a step)


def train(competition_dir, models_dir, steps: int = STEPS, *, size: int = 192, batch_size: int = 8,
          n_folds: int = 4, seed: int = 0, settings: InferenceSettings = InferenceSettings(), log=print) -> TrainResult:
    """Train on ``competition_dir``'s train slides for ``steps`` steps of ``batch_size`` tiles; write the model
    dataset to ``models_dir``.

    Holds every training slide, mask and tissue mask in memory (the demo's slides are small) and the
    held-out slides' logits.
    """
    import polars as pl
    import torch

    from kagglekit.augment import preset
    from kagglekit.cv import make_folds
    from kagglekit.data import TileDataset
    from kagglekit.demo.data import read_masks
    from kagglekit.io import open_image
    from kagglekit.models import create, save_checkpoint
    from kagglekit.thresholds import best_fbeta_threshold

    start = time.monotonic()
    competition_dir, models_dir = Path(competition_dir), Path(models_dir)
    masks = read_masks(competition_dir / "train.csv")
    images = {i: open_image(competition_dir / "train" / f"{i}.png").read(0, 0, *m.shape) for i, m in masks.items()}
    tiles = make_folds(tile_table(images, masks, settings.tile), n_splits=min(n_folds, len(images)),
                       target="has_dab", groups="slide", seed=seed)
    held_out = tuple(sorted(tiles.filter(pl.col("fold") == 0).get_column("slide").unique().to_list()))
    train_tiles = tiles.filter(pl.col("fold") != 0)
    log(f"{len(tiles)} tissue tiles in {len(images)} slides; holding out {', '.join(held_out)}; "
        f"training on {len(train_tiles)} tiles for {steps} steps")

    torch.manual_seed(seed)
    model = create(MODEL, in_channels=3, num_classes=1, **MODEL_KWARGS)
    train_slides = sorted(train_tiles.get_column("slide").unique().to_list())
    regions = tissue_regions({i: images[i] for i in train_slides})
    crops = TileDataset([images[i] for i in train_slides], [masks[i] for i in train_slides], tile=size * 3 // 2,
                        samples_per_epoch=steps * batch_size, regions=[regions[i] for i in train_slides],
                        transform=preset("histology", size=size), seed=seed)  # crops of 1.5 x size, cropped to size
    model = fit_tiles(model, crops, steps, batch_size=batch_size, lr=3e-3, seed=seed, log=log)

    logits = np.concatenate([predict_logits(model, images[i], settings).ravel() for i in held_out])
    truth = np.concatenate([masks[i].ravel() for i in held_out])
    best = best_fbeta_threshold(truth, 1.0 / (1.0 + np.exp(-logits)), beta=BETA)
    log(f"held-out F{BETA:g} {best.fbeta:.3f} at threshold {best.threshold:.3f}")

    models_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, models_dir / "model.safetensors",
                    metadata={"steps": steps, "held_out": list(held_out), "fbeta": best.fbeta, "beta": BETA})
    (models_dir / "threshold.json").write_text(json.dumps({"threshold": best.threshold, "fbeta": best.fbeta, "beta": BETA}) + "\n")
    write_kernel_config(models_dir / "segment.toml", settings.kernel_config("threshold.json"))
    return TrainResult(models_dir, steps, time.monotonic() - start, held_out, best.threshold, best.fbeta)
