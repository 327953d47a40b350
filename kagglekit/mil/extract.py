"""Bags from slides: a tissue mask on the thumbnail, tiles only where there is tissue, backbone features.

    backbone = create("timm/resnet18", num_classes=0, weights="resnet18.safetensors")  # num_classes=0: pooled features
    bag = extract_bag(backbone, "slides/10077.png", tile=224, scale={"tma": 0.5, "wsi": 1.0}, top_k=256)

Which tiles, and how each is read, is :mod:`kagglekit.tiling.slides` (``plan_tiles``, ``tile_reader``;
the same plan and reader as :class:`kagglekit.jobs.TileExportJob`): the thumbnail gives the background,
the slide's kind, the tissue mask and the brightness threshold; tiles of ``tile / scale`` level-0 pixels
that are at least ``min_tissue`` tissue are kept (the ``top_k`` most filled with ``top_k``), in row-major
order. A reader thread reads them in batches ahead of the model (a TIFF decodes only the
tiles it touches, all of a batch at once on a thread per core; a PNG above 512 MB decoded, a UBC-OCEAN WSI
of billions of pixels, is streamed in two passes, the thumbnail's and then the rows down to the last
selected tile, holding a strip of the slide's width, never the slide), stain-normalises, swaps the background,
resizes to ``tile``, and the backbone turns each batch into features. Only uint8 tiles of a few batches
are held besides the source; never a float copy of the slide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from kagglekit._checks import positive_int
from kagglekit._lazy import moved_names
from kagglekit.errors import InvalidArgumentError
from kagglekit.mil.bags import Bag, BagError

__all__ = ["NoTissueError", "backbone_name", "extract_bag", "model_name", "run_tiles"]

# Slide tile planning moved to kagglekit.tiling.slides; the old names answer from there, with a warning, until
# the next release (module __getattr__ below). as_backbone is kagglekit.models.as_module.
_MOVED = {"KINDS": "kagglekit.tiling.slides", "SWAPS": "kagglekit.tiling.slides", "TilePlan": "kagglekit.tiling",
          "plan_tiles": "kagglekit.tiling", "slide_kind": "kagglekit.tiling",
          "tile_reader": "kagglekit.tiling", "as_backbone": "kagglekit.models:as_module"}


__getattr__ = moved_names(__name__, _MOVED)


class NoTissueError(BagError):
    """No tile of a slide has enough tissue to enter a bag."""


def backbone_name(backbone, name: str | None = None) -> str:
    """The name a bag stores for ``backbone``: ``name`` if given, else the ``create`` name of a kagglekit model
    with the name of the weights file it was created or loaded from (``"timm/resnet18@tcga.safetensors"``).
    A plain callable needs ``name``."""
    if name:
        return str(name)
    config = getattr(backbone, "kagglekit_config", None)
    if config is None:
        raise InvalidArgumentError(f"name the backbone (name='...'): a {type(backbone).__name__} not built by "
                                   "kagglekit.models.create carries no name, and bags of two backbones must never mix")
    return model_name(config["name"], getattr(backbone, "kagglekit_weights", None))


def model_name(created_as: str, weights=None) -> str:
    """The bag name of a model created as ``created_as`` from the file ``weights`` (None: random weights)."""
    return f"{created_as}@{os.path.basename(str(weights))}" if weights else str(created_as)


def extract_bag(backbone, source, *, slide: str | None = None, name: str | None = None, tile: int = 224, scale=1.0,
                tissue=None, threshold=None, min_tissue: float = 0.25, top_k: int | None = None, kind: str = "auto",
                tma_max_side: int = 8192, swap_background=False, stain=None, normalize="imagenet",
                batch_size: int | None = None, num_workers: int = 1, device=None, amp=False, channels_last: bool = True,
                thumbnail_side: int = 1024, threads=None) -> Bag:
    """One slide's :class:`~kagglekit.mil.Bag`: features of its tissue tiles.

    backbone: a torch module or callable taking (B, 3, tile, tile) float and returning (B, D) features,
        e.g. ``create("timm/<name>", num_classes=0, weights=<local file>)`` (``num_classes=0`` makes a
        timm model return its pooled features), or a checkpoint path.
    source: a path (TIFF read window by window; a PNG above 512 MB decoded streamed in two passes, a smaller
        PNG or a JPEG decoded once; see :func:`kagglekit.io.open_image`) or a :class:`~kagglekit.io.Source`.
    slide, name: the bag's slide id (default: the file's stem) and backbone name (see :func:`backbone_name`).
    tile: the side the backbone sees; the level-0 tile is ``tile / scale`` pixels.
    scale: the resize factor, a number or per kind, e.g. ``{"tma": 0.5, "wsi": 1.0}`` (UBC's TMAs are at
        about twice the WSIs' magnification).
    tissue, min_tissue, top_k: the mask (None: from the thumbnail), the least tissue fraction of a kept
        tile, and at most ``top_k`` tiles, the most filled (ties: the earlier).
    threshold: the brightness between background and tissue (0..255), a number or per kind, e.g.
        ``{"tma": 240, "wsi": 20}``; None: Otsu's on the thumbnail, which cuts into pale tissue on white
        glass (Otsu splits a broad tissue histogram): give TMAs a threshold near white.
    kind, tma_max_side: ``"auto"`` (:func:`kagglekit.tiling.slide_kind`), ``"tma"`` or ``"wsi"``.
    swap_background: False, True, or ``"tma"`` (only TMAs): background pixels (by the thumbnail's
        threshold) set to black, so that TMAs on white look like WSIs on black.
    stain: None, a fitted normaliser (``.transform(uint8 tile)``, e.g. ``MacenkoNormalizer``) or a callable.
    normalize, batch_size, num_workers, device, amp, channels_last: as :func:`kagglekit.infer.predict`
        (``num_workers`` reader threads ahead of the model; ``batch_size`` None: 64 on CUDA, 16 on a CPU).
        The backbone dominates on a CPU: ``amp="auto"`` (bfloat16 where the CPU has it) extracts 1.7x
        faster, features within about 1e-2 of float32's (bench_mil.py (b)).
    threads: torch threads for the CPU-side work, as :func:`kagglekit.infer.predict`: None / ``"auto"``
        (default) runs the normalisation on the cores that are free (this process's cores less those kept
        busy by other processes and by the reader threads, which decode a batch of TIFF tiles on a thread
        per core) and the backbone's slices of each batch on those other processes leave free, measured
        as it runs; an integer N runs kagglekit's steps on N threads and N slices at once. The caller's ``torch.get_num_threads()`` is
        restored on return. The features are the same bits whatever is chosen: each slice of a batch
        always runs on one thread (:mod:`kagglekit._slices`).

    Raises :class:`NoTissueError` when no tile qualifies. Holds the source's own memory (a small PNG's
    decoded array; a streamed PNG's strip of rows, full width, and the batch of windows it read ahead; a
    TIFF's tile cache), the thumbnail and mask, about three batches of uint8 tiles and the features.
    """
    from kagglekit.models import as_module

    backbone = as_module(backbone, what="backbone")
    name = backbone_name(backbone, name)  # before any work: a plain callable needs a name
    ran = run_tiles(backbone, source, slide=slide, tile=tile, scale=scale, tissue=tissue, threshold=threshold,
                    min_tissue=min_tissue, top_k=top_k, kind=kind, tma_max_side=tma_max_side,
                    swap_background=swap_background, stain=stain, thumbnail_side=thumbnail_side, dtype=np.float16,
                    infer=dict(normalize=normalize, batch_size=batch_size, num_workers=num_workers, device=device,
                               amp=amp, channels_last=channels_last, threads=threads))
    plan = ran.plan
    selection = {**plan.selection, "swap_background": ran.swap, "stain": type(stain).__name__ if stain is not None else None}
    return Bag(ran.outputs, plan.coords, plan.side, plan.scale, name, ran.slide, selection)


@dataclass(frozen=True)
class TileRun:
    """What :func:`run_tiles` gives: the slide's :class:`~kagglekit.tiling.TilePlan`, its id, the models'
    ``outputs`` (N, D), row ``i`` for tile ``plan.coords[i]``, and whether its background was swapped."""

    plan: object
    slide: str
    outputs: np.ndarray
    swap: bool


def run_tiles(models, source, *, slide=None, tile=224, scale=1.0, tissue=None, threshold=None, min_tissue=0.25,
              top_k=None, kind="auto", tma_max_side=8192, swap_background=False, stain=None, thumbnail_side=1024,
              dtype=np.float32, infer=None) -> TileRun:
    """Plan a slide's tiles and run ``models`` over them: a :class:`TileRun` with ``outputs`` (N, D) in ``dtype``
    (:func:`kagglekit.infer.iter_predictions` over :func:`kagglekit.tiling.tile_reader`, ``infer`` its
    keyword arguments: normalisation, activation,
    views, merge, weights, batching, device). ``models``: a module, checkpoint path or a list of them;
    the other arguments as :func:`extract_bag`, which is this with a backbone. Raises
    :class:`NoTissueError` when no tile qualifies. Holds what :func:`extract_bag` says, the outputs in ``dtype``."""
    from pathlib import Path

    from kagglekit.infer.batching import resolve_device
    from kagglekit.infer.images import iter_predictions
    from kagglekit.io import open_image
    from kagglekit.models import as_module
    from kagglekit.tiling.slides import plan_tiles, swaps_background, tile_reader

    swaps_background(swap_background, "auto")  # checked before any work
    infer = dict(infer or {})
    device = infer["device"] = resolve_device(infer.get("device"))
    # bench_mil.py (b): on a CPU, batches of 16 run 1.2x faster than 64 (the activations stay in cache) and hold less
    batch_size = infer["batch_size"] = positive_int("batch_size", infer.get("batch_size") or (64 if device.type == "cuda" else 16))
    models = [as_module(m, what="models") for m in (models if isinstance(models, (list, tuple)) else [models])]
    opened = open_image(source)
    try:
        slide = slide if slide is not None else (Path(source).stem if isinstance(source, (str, os.PathLike)) else opened.name)
        plan = plan_tiles(opened, tile=tile, scale=scale, min_tissue=min_tissue, top_k=top_k, tissue=tissue,
                          threshold=threshold, kind=kind, tma_max_side=tma_max_side, thumbnail_side=thumbnail_side)
        if not len(plan.coords):
            raise NoTissueError(f"slide {slide!r}: no {plan.side} px tile is at least {min_tissue:.0%} tissue "
                                f"({plan.selection['candidates']} candidates, {plan.background} background); "
                                "lower min_tissue or check the slide")
        swap = swaps_background(swap_background, plan.kind)
        read = tile_reader(opened, plan, swap=swap, stain=stain, batch_size=batch_size)
        outputs = None
        for indices, out, _ in iter_predictions(models, range(len(plan.coords)), loader=read, **infer):
            if outputs is None:
                outputs = np.empty((len(plan.coords), out.shape[1]), dtype)
            outputs[indices] = out
        return TileRun(plan, str(slide), outputs, swap)
    finally:
        if opened is not source and hasattr(opened, "close"):  # a TIFF's file handle, a streamed PNG's pass
            opened.close()
