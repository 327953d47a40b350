"""The slides demo's tile-classifier rows: a tile classifier trained on weak labels, and the configs that run it.

UBC-OCEAN's 5th to 10th places classified tiles: each tile labelled by its slide's subtype (weak labels: most
of a slide's tiles show only common tissue), a classifier trained on them, and at test time the top-K tiles
by tissue through it, their probabilities aggregated. Here: the train slides' tiles exported with
``TileExportJob`` (the bags' plan: 64 px, TMAs at scale 0.5 with their background swapped), read by
``ImageDataset``, and the demo's backbone with a new linear head fine-tuned by ``kagglekit.train.fit``
(cross-entropy, a fixed number of steps and a seed), saved with ``save_checkpoint``. Two kernel configs run
it through ``classify``: every slide by ``route = "tiles"``, and per-kind branches (WSIs by the MIL heads,
TMAs by the tile classifier, ``[slides.tma]``). A slide's label lives in 2 or 3 of its ~50 tiles, so every
tissue tile is classified (no ``top_k``: the fullest tiles are no likelier to hold it) and the slide takes
each class's highest tile probability (``aggregate = "max"``; on the full demo's test slides a classifier of
300 steps scored 0.68 balanced accuracy so, 0.44 with the top-16 tiles' top-3 mean).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TILE_ROUTE", "TILE_STEPS", "kind_config", "tile_config", "train_tile_classifier"]

TILE_STEPS = 600
TILE_TRAINING = {"batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4, "progress": False}
TILE_ROUTE = {"route": "tiles", "aggregate": "max"}
TILES_MODEL = "tiles.safetensors"


def train_tile_classifier(train_images: Path, labels: dict, tiles_dir: Path, path: Path, backbone, *, classes,
                          options: dict, steps: int = TILE_STEPS, seed: int = 0, log=print) -> Path:
    """Export the tiles of ``train_images`` (``options``: the plan's, as ``extract_bag``'s), label each by its
    slide's ``labels[id]``, train ``backbone``'s body with a fresh head of ``classes`` for ``steps`` steps
    from ``seed`` and save it at ``path``. Holds the model and one batch of tiles (the tiles are files)."""
    import polars as pl
    import torch

    from kagglekit.data import ImageDataset
    from kagglekit.demo.slides import BACKBONE
    from kagglekit.jobs import TileExportJob, run_slides
    from kagglekit.models import create, save_checkpoint
    from kagglekit.train import fit

    plan = {k: v for k, v in options.items() if k not in ("swap_background", "batch_size")}
    run_slides(TileExportJob(swap_background=options.get("swap_background", False), **plan), train_images, tiles_dir,
               engine="local", progress=False)
    table = pl.read_csv(tiles_dir / "tiles.csv").with_columns(
        pl.col("slide").cast(pl.Utf8).replace_strict(labels).alias("label")).select("file", "label")
    tiles = ImageDataset(table, "{id}", root=tiles_dir, target="class", label="label", classes=list(classes),
                         normalize="imagenet")
    torch.manual_seed(seed)
    model = create(BACKBONE, num_classes=len(classes))
    model.load_state_dict(backbone.state_dict(), strict=False)  # the body's weights; the head is new
    result = fit(model, tiles, loss="ce", steps=steps, seed=seed, **TILE_TRAINING)
    loss = result.history["loss"].to_numpy()
    k = min(20, len(loss))
    log(f"   tile classifier on {len(tiles)} weakly labelled tiles: loss {loss[:k].mean():.3f} over the first {k} "
        f"steps, {loss[-k:].mean():.3f} over the last {k}")
    return save_checkpoint(result.model.eval(), path, {"made_by": "kagglekit demo slides", "seed": seed,
                                                       "labels": "each tile its slide's subtype"}, classes=list(classes))


def _common(models: list[dict], slides: dict) -> dict:
    from kagglekit.demo.train import BUDGET

    return {"kind": "classify", "num_workers": 1, "inputs": {"glob": "test_images/*.png"}, "models": models,
            "slides": slides, "decision": {"kind": "argmax"}, "output": {"label_column": "label"}, "budget": BUDGET}


def tile_config(options: dict) -> dict:
    """``classify_tiles.toml`` as a dict: every slide through the tile classifier (``options``: the bags' plan)."""
    return _common([{"path": TILES_MODEL}], {**options, **TILE_ROUTE})


def kind_config(options: dict, folds: int) -> dict:
    """``classify_kinds.toml`` as a dict: WSIs through the MIL heads of every fold, TMAs (``[slides.tma]``)
    through the tile classifier."""
    heads = [{"path": f"heads_fold{k}.safetensors"} for k in range(folds)]
    return _common(heads, {"backbone": "backbone.safetensors", **options,
                           "tma": {**TILE_ROUTE, "models": [{"path": TILES_MODEL}]}})
