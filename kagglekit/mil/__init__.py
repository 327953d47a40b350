"""Whole-slide MIL, training side: bags of tile features, and what extracted them.

    Bag, save_bag(bag, path), load_bag(path, backbone=)   bags.py     a slide's tile features (N, D) float16 with their
                                                                     coordinates and the backbone that made them
    load_bag("x.h5", backbone=), save_bag(format="h5")    h5.py       TRIDENT's / CLAM's feature files (pip install 'kagglekit[h5]')
    extract_bag(backbone, slide, tile=, scale=, top_k=)   extract.py  tissue tiles of one slide -> a Bag
    backbone_name, model_name                             extract.py  the name a bag stores for its backbone
    classify_tiles(models, slide, top_k=, aggregate=)     tiles.py    a tile classifier over the tissue tiles, the
                                                                     probabilities aggregated (mean, max, top-k mean)
    train_heads(bags, y, folds=, n_seeds=) -> TrainedHeads train.py    seed ensembles per fold, trained at once; OOF probabilities;
                                                                     bag_size= draws new tiles each epoch, select_top= keeps the best
    draw_tiles(n_tiles, bag_size, seed, epoch, bag)       train.py    the tiles a bag trains on in one epoch
    predict_bags(heads, bags)                             train.py    the mean of every head's probabilities
    leave_class_out(bags, y, n_seeds=)                    train.py    each bag seen by heads never shown its class ("Other")

A folder of slides (one bag file each, resumable, in this process or on Ray): :func:`kagglekit.jobs.extract_bags`.
Which tiles a slide gives (``plan_tiles``, ``slide_kind``, ``TilePlan``, ``tile_reader``) is :mod:`kagglekit.tiling`;
the heads' architectures are :mod:`kagglekit.models` (``MIL_HEADS``). ``kagglekit.mil.plan_tiles`` and the other
moved names still work, with a DeprecationWarning, until the next release.

Importing this package is cheap: each name is loaded from its submodule on first use.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {"Bag": "bags", "BagError": "bags", "save_bag": "bags", "load_bag": "bags",
            "extract_bag": "extract", "backbone_name": "extract", "model_name": "extract", "NoTissueError": "extract",
            "train_heads": "train", "predict_bags": "train", "leave_class_out": "train", "TrainedHeads": "train", "fit_heads": "train",
            "pad_bags": "train", "epoch_batches": "train", "head_seeds": "train", "draw_tiles": "train",
            "classify_tiles": "tiles", "aggregate_tiles": "tiles", "TileVotes": "tiles", "run_tiles": "extract"}

__all__ = sorted(_EXPORTS)

_MOVED = {"plan_tiles": "kagglekit.tiling", "slide_kind": "kagglekit.tiling",
          "TilePlan": "kagglekit.tiling", "tile_reader": "kagglekit.tiling"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, moved=_MOVED)
