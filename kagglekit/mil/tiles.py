"""Slides through a tile classifier: the slide's tiles (all tissue tiles, or the top-K by tissue fill), a
classifier's probabilities per tile, and those aggregated into the slide's (UBC-OCEAN's 5th, 8th, 9th and
10th places).

    votes = classify_tiles("tiles_fold0.safetensors", "slides/10077.png", tile=256, top_k=16, aggregate="topk_mean", k=4)
    votes.probabilities  # (C,) float64: the slide's
    votes.tiles          # (N, C) float32: each tile's, row i for votes.plan.coords[i]

The tiles are planned and read as for a bag (:func:`kagglekit.mil.extract.run_tiles`, the same plan and
reader as :func:`~kagglekit.mil.extract_bag`), and batched through the classifiers with their views by
:func:`kagglekit.infer.iter_predictions`, the activated outputs merged over views and models per tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kagglekit._checks import one_of, positive_int
from kagglekit.errors import InvalidArgumentError

__all__ = ["AGGREGATES", "TileVotes", "aggregate_tiles", "check_aggregate", "classify_tiles"]

AGGREGATES = ("mean", "max", "topk_mean")


def check_aggregate(how: str, k: int | None) -> None:
    """Refuse an unknown aggregation, ``k`` without ``"topk_mean"`` or ``"topk_mean"`` without ``k``."""
    one_of("aggregate", how, AGGREGATES)
    if (how == "topk_mean") != (k is not None):
        raise InvalidArgumentError("k goes with aggregate='topk_mean' (that many tiles averaged per class), and only "
                                   f"with it; got aggregate={how!r}, k={k!r}")
    if k is not None:
        positive_int("k", k)


def aggregate_tiles(probabilities: np.ndarray, how: str = "mean", k: int | None = None) -> np.ndarray:
    """A slide's (C,) float64 probabilities from its tiles' (N, C): per class, the ``"mean"`` over the tiles,
    their ``"max"``, or ``"topk_mean"``, the mean of that class's ``k`` highest (all N when fewer). max and
    topk_mean rows are not renormalised (a softmax's may sum to more than 1)."""
    check_aggregate(how, k)
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or not len(p):
        raise InvalidArgumentError(f"aggregate_tiles needs (N, C) tile probabilities with N >= 1, got shape {p.shape}")
    if how == "mean":
        return p.mean(axis=0)
    if how == "max":
        return p.max(axis=0)
    k = min(k, len(p))
    return np.sort(p, axis=0)[-k:].mean(axis=0)


@dataclass(frozen=True)
class TileVotes:
    """:func:`classify_tiles`' result: the slide's ``probabilities`` (C,) float64, its ``tiles`` (N, C) float32,
    the :class:`~kagglekit.tiling.TilePlan` they came from, the slide id and whether its background was swapped."""

    probabilities: np.ndarray
    tiles: np.ndarray
    plan: object
    slide: str
    swap: bool


def classify_tiles(models, source, *, aggregate: str = "mean", k: int | None = None, activation="softmax",
                   tta=None, merge: str = "mean", weights=None, normalize="imagenet", batch_size: int | None = None,
                   num_workers: int = 1, device=None, amp=False, channels_last: bool = True, threads=None,
                   **plan) -> TileVotes:
    """One slide's :class:`TileVotes` from tile classifiers.

    models: a module or checkpoint path, or a list of them (folds), each (B, 3, tile, tile) float -> (B, C).
    source: a path or a :class:`~kagglekit.io.Source`, as :func:`~kagglekit.mil.extract_bag`.
    aggregate, k: :func:`aggregate_tiles`.
    activation, tta, merge, weights, normalize, batch_size, num_workers, device, amp, channels_last,
        threads: as :func:`kagglekit.infer.predict` (each tile is an image; ``batch_size`` None: 64 on
        CUDA, 16 on a CPU).
    plan: ``slide``, ``tile``, ``scale``, ``tissue``, ``threshold``, ``min_tissue``, ``top_k``, ``kind``,
        ``tma_max_side``, ``swap_background``, ``stain``, ``thumbnail_side``: which tiles and how they are
        read, as :func:`~kagglekit.mil.extract_bag`.

    Raises :class:`~kagglekit.mil.NoTissueError` when no tile qualifies. Holds what ``extract_bag`` holds,
    with (N, C) float32 tile probabilities in place of the features."""
    from kagglekit.mil.extract import run_tiles

    check_aggregate(aggregate, k)  # before any work
    ran = run_tiles(models, source, **plan, infer=dict(
        activation=activation, tta=tta, merge=merge, weights=weights, normalize=normalize, batch_size=batch_size,
        num_workers=num_workers, device=device, amp=amp, channels_last=channels_last, threads=threads))
    return TileVotes(aggregate_tiles(ran.outputs, aggregate, k), ran.outputs, ran.plan, ran.slide, ran.swap)
