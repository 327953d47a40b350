"""MIL heads trained as seed ensembles, fold by fold, with out-of-fold probabilities.

    trained = train_heads(bags, y, head="chowder", folds=5, n_seeds=50, epochs=30, out_dir="heads/")
    trained.oof, trained.fold_scores        # (n, C) out-of-fold probabilities; balanced accuracy per fold
    train_heads(bags, y, n_seeds=100, bag_size=200, select_top=65)  # 200 tiles a bag, new each epoch; best 65 heads
    probs = predict_bags(trained, test_bags)  # or predict_bags(["heads/fold0.safetensors", ...], test_bags)
    unseen = leave_class_out(bags, y, n_seeds=50)  # rows to fit an entropy cut for "Other" on

The ``n_seeds`` heads of a fold are one :class:`~kagglekit.models.HeadEnsemble` (stacked weights, one
forward for all): they see the same batches in the same order and differ by their initial weights only,
and each step of head ``i`` is the step that head takes alone, to float rounding (AdamW is element-wise;
there is no gradient clipping across heads). Over hundreds of steps Chowder's top-r choice of tiles can
grow rounding into different, equally good heads, as it does between two runs of one head on inputs
that differ by rounding (bench_mil.py (a)). Bags of different sizes go through padded batches with masks.

With ``bag_size``, each epoch trains on a new draw of ``bag_size`` tiles of each bag (:func:`draw_tiles`),
the same draw for every head of the ensemble (the heads still differ by their initial weights only;
for heads that see different draws, train ensembles with different ``seed``); validation and
:func:`predict_bags` see every tile. No per-head temperature is fitted: heads are averaged as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kagglekit._checks import one_of, positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["TrainedHeads", "draw_tiles", "epoch_batches", "fit_heads", "head_seeds", "leave_class_out", "pad_bags",
           "predict_bags", "train_heads"]

MAX_SEEDS = 1000


def _features(bags) -> tuple[list[np.ndarray], str | None]:
    """(N_i, D) float16/float32 arrays from Bags, arrays or bag paths (one feature size for all), and the name
    of the backbone the Bags came from (None for plain arrays); Bags of two backbones are refused."""
    from kagglekit.mil.bags import Bag, BagError, load_bag

    bags = [load_bag(b) if isinstance(b, (str, os.PathLike)) else b for b in bags]
    backbones = {b.backbone for b in bags if isinstance(b, Bag)}
    out = []
    for b in bags:
        f = b.features if isinstance(b, Bag) else np.asarray(b)
        if f.ndim != 2 or f.dtype.kind != "f":
            raise ShapeError(f"bag {len(out)}: features must be (N, D) floats, got {f.shape} {f.dtype}")
        out.append(f)
    if not out:
        raise InvalidArgumentError("no bags given")
    if len(backbones) > 1:
        raise BagError(f"the bags come from several backbones {sorted(backbones)}; features of different backbones "
                       "cannot be mixed: extract every slide with one backbone")
    dims = {f.shape[1] for f in out}
    if len(dims) > 1:
        raise ShapeError(f"bags have feature sizes {sorted(dims)}; bags of one backbone share one size")
    return out, next(iter(backbones), None)


def pad_bags(features: Sequence[np.ndarray], index, device=None):
    """Bags ``index`` of ``features`` as one padded batch: x (B, N_max, D) float32 (zeros after each bag's
    tiles) and mask (B, N_max) bool, True for real tiles."""
    import torch

    chosen = [features[i] for i in index]
    longest = max(len(f) for f in chosen)
    x = np.zeros((len(chosen), longest, chosen[0].shape[1]), np.float32)
    mask = np.zeros((len(chosen), longest), bool)
    for k, f in enumerate(chosen):
        x[k, : len(f)], mask[k, : len(f)] = f, True
    return torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device)


def epoch_batches(n: int, batch_size: int, epochs: int, seed) -> list[np.ndarray]:
    """The training batches, in order: for each epoch a permutation of ``range(n)`` drawn from
    ``np.random.default_rng(seed)``, cut into batches of ``batch_size`` (the last may be smaller)."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(epochs):
        order = rng.permutation(n)
        batches += [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return batches


def draw_tiles(n_tiles: int, bag_size: int, seed, epoch: int, bag: int, replace: bool | None = None) -> np.ndarray:
    """Bag ``bag``'s tiles in epoch ``epoch``: (bag_size,) int64 indices into its ``n_tiles`` rows, drawn
    from ``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch, bag)))``, so a bag's draw
    depends on the seed, the epoch and its index only. ``replace``: None draws without replacement unless
    the bag has fewer than ``bag_size`` tiles, True always with replacement, False never (a shorter bag
    gives all its n_tiles indices, shuffled)."""
    with_replacement = n_tiles < bag_size if replace is None else replace
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch, bag)))
    return rng.choice(n_tiles, bag_size if with_replacement else min(bag_size, n_tiles), replace=with_replacement)


def _sampled_batch(features, index, bag_size: int, seed, epoch: int, replace) -> list[np.ndarray]:
    """Bags ``index`` of ``features`` cut to their :func:`draw_tiles` of epoch ``epoch``: (bag_size, D) arrays."""
    return [features[k][draw_tiles(len(features[k]), bag_size, seed, epoch, int(k), replace)] for k in index]


def _check_sampling(bag_size, sample, replace) -> None:
    if bag_size is not None:
        positive_int("bag_size", bag_size)
    one_of("sample", sample, ("random",))
    if replace not in (None, True, False):
        raise InvalidArgumentError(f"replace must be None (only for bags shorter than bag_size), True or False, "
                                   f"got {replace!r}")


def head_seeds(seed: int, fold: int, n_seeds: int) -> list[int]:
    """The initial-weight seeds of fold ``fold``'s heads: ``seed * 1_000_000 + fold * 1000 + i``."""
    if not 1 <= n_seeds <= MAX_SEEDS:
        raise InvalidArgumentError(f"n_seeds must be in 1..{MAX_SEEDS}, got {n_seeds}")
    return [seed * 1_000_000 + fold * MAX_SEEDS + i for i in range(n_seeds)]


def class_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Cross-entropy weights ``n / (C * count)`` per class (balanced accuracy's view: every class counts alike)."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, len(y) / (num_classes * np.maximum(counts, 1)), 0.0).astype(np.float32)


def fit_heads(features, y, train_index, *, head: str = "chowder", seeds=(0,), epochs: int = 30, lr: float = 1e-3,
              weight_decay: float = 1e-4, batch_size: int = 16, data_seed=0, num_classes: int | None = None,
              bag_size: int | None = None, sample: str = "random", replace: bool | None = None,
              device=None, head_kwargs: dict | None = None, progress: bool = False):
    """Train ``len(seeds)`` heads at once on bags ``train_index`` of ``features`` (a list of (N_i, D) arrays)
    with labels ``y`` (class indices); return the :class:`~kagglekit.models.HeadEnsemble` in eval mode.

    Batches come from :func:`epoch_batches` (``data_seed``); with ``bag_size``, each bag of a batch in epoch
    e is cut to :func:`draw_tiles` ``(len, bag_size, data_seed, e, its index in features, replace)``
    (``sample="random"``, the only rule), every head seeing the same draw. The loss is each head's class-weighted
    (:func:`class_weights`) cross-entropy, summed over heads; AdamW with ``lr`` and ``weight_decay``.
    Holds the heads, their optimiser state and one padded batch."""
    import torch
    from tqdm.auto import tqdm

    from kagglekit.infer.batching import resolve_device
    from kagglekit.models import create

    _check_sampling(bag_size, sample, replace)
    device = resolve_device(device)
    y = np.asarray(y)
    train_index = np.asarray(train_index)
    num_classes = int(num_classes or y.max() + 1)
    kwargs = {"in_dim": int(features[0].shape[1]), "num_classes": num_classes, **(head_kwargs or {})}
    ensemble = create("kagglekit/head_ensemble", head=head, seeds=list(seeds), **kwargs).to(device).train()
    optimiser = torch.optim.AdamW(ensemble.parameters(), lr=lr, weight_decay=weight_decay)
    weight = torch.from_numpy(class_weights(y[train_index], num_classes)).to(device)
    batches = epoch_batches(len(train_index), positive_int("batch_size", batch_size), positive_int("epochs", epochs), data_seed)
    per_epoch = -(-len(train_index) // batch_size)
    for step, batch in enumerate(tqdm(batches, unit="step", desc=f"{len(seeds)} x {head}", disable=not progress, leave=False)):
        if bag_size is None:
            x, mask = pad_bags(features, train_index[batch], device)
        else:
            drawn = _sampled_batch(features, train_index[batch], bag_size, data_seed, step // per_epoch, replace)
            x, mask = pad_bags(drawn, range(len(drawn)), device)
        target = torch.from_numpy(y[train_index[batch]]).to(device)
        logits = ensemble(x, mask)  # (S, B, C)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.repeat(len(logits)), weight=weight,
                                                 reduction="none").view(len(logits), -1)
        loss = (loss.sum(dim=1) / weight[target].sum()).sum()  # each head's weighted mean, summed over heads
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return ensemble.eval()


def head_probabilities(ensemble, features, index=None, batch_size: int = 64, device=None) -> np.ndarray:
    """(len(index), S, C) float32 softmax probabilities of every head of ``ensemble`` for bags ``index``."""
    import torch

    index = np.arange(len(features)) if index is None else np.asarray(index)
    device = next(ensemble.parameters()).device if device is None else device
    out = []
    with torch.inference_mode():
        for k in range(0, len(index), batch_size):
            x, mask = pad_bags(features, index[k : k + batch_size], device)
            out.append(torch.softmax(ensemble(x, mask).float(), dim=-1).permute(1, 0, 2).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, ensemble.num_heads, 0), np.float32)


@dataclass
class TrainedHeads:
    """What :func:`train_heads` returns: one ensemble per fold (``heads``; their checkpoint ``paths`` when
    saved), ``oof`` (n, C) float32: each bag's probabilities averaged over its validation fold's heads
    (NaN for a bag in no validation fold), ``fold_scores`` (balanced accuracy of each fold's averaged
    heads on its validation bags), ``score`` (balanced accuracy of all out-of-fold rows), ``classes`` and
    ``head_scores``: per fold, (n_seeds,) float64 balanced accuracy of each head trained (seed order, before
    ``select_top``) on the fold's validation bags."""

    heads: list
    oof: np.ndarray
    fold_scores: list[float]
    score: float
    classes: list[str] | None = None
    paths: list[Path] = field(default_factory=list)
    head_scores: list[np.ndarray] = field(default_factory=list)


def _labels(y, classes):
    """Class indices (n,) int64 and the class names (or None) from indices or names."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return y.astype(np.int64), list(classes) if classes is not None else None
    names = list(classes) if classes is not None else sorted(set(y.tolist()))
    lookup = {c: i for i, c in enumerate(names)}
    unknown = sorted(set(y.tolist()) - set(lookup))
    if unknown:
        raise InvalidArgumentError(f"labels {unknown[:5]} are not among classes {names}")
    return np.array([lookup[v] for v in y.tolist()], np.int64), names


def _head_ranking(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each head's balanced accuracy on bags with labels ``y`` from probs (n, S, C), and the heads best
    first: higher balanced accuracy, then lower mean cross-entropy, then the lower index."""
    from kagglekit.metrics import balanced_accuracy

    scores = np.array([balanced_accuracy(y, probs[:, s].argmax(axis=1)) for s in range(probs.shape[1])])
    nll = -np.log(np.maximum(probs[np.arange(len(y)), :, y], 1e-12)).mean(axis=0)
    return scores, np.lexsort((np.arange(len(scores)), nll, -scores))


def _keep_heads(ensemble, index):
    """A new HeadEnsemble of ``ensemble``'s heads ``index`` (their seeds and weights), in eval mode."""
    from kagglekit.models import create

    config = ensemble.kagglekit_config
    kept = create(config["name"], **{**config["kwargs"], "seeds": [ensemble.seeds[i] for i in index]})
    kept.load_state_dict({name: value[index] for name, value in ensemble.state_dict().items()})
    return kept.to(next(ensemble.parameters()).device).eval()


def train_heads(bags, y, *, head: str = "chowder", folds=5, n_seeds: int = 10, epochs: int = 30, lr: float = 1e-3,
                weight_decay: float = 1e-4, batch_size: int = 16, seed: int = 0, classes=None,
                bag_size: int | None = None, sample: str = "random", replace: bool | None = None,
                select_top: int | None = None, head_kwargs: dict | None = None, out_dir=None, device=None,
                progress: bool = True) -> TrainedHeads:
    """Train ``n_seeds`` heads per fold, all of a fold at once, and collect out-of-fold probabilities.

    bags: Bags, (N_i, D) arrays or bag paths; y: (n,) class indices or names (``classes`` fixes their
        order; else sorted). head: ``"chowder"`` or ``"gated_attention"``, built with ``head_kwargs``
        (e.g. ``{"r": 5, "hidden": [200, 100]}``).
    folds: a number (stratified, shuffled with ``seed``), an (n,) array of fold numbers or (train, val) pairs.
    n_seeds, seed: heads per fold; their initial weights come from :func:`head_seeds`, the batch order of
        fold f from ``np.random.default_rng([seed, f])``.
    epochs, lr, weight_decay, batch_size: see :func:`fit_heads`.
    bag_size, sample, replace: train on a new draw of ``bag_size`` tiles of each bag every epoch
        (:func:`draw_tiles` with seed ``[seed, f]``; with replacement only for bags shorter than ``bag_size``
        unless ``replace``); None trains on whole bags.
    select_top: keep fold f's ``select_top`` best heads on its validation bags (higher balanced accuracy,
        then lower mean cross-entropy, then the lower seed; every head's score is in ``head_scores``).
        Those bags both choose the heads and score them, so ``oof``, ``fold_scores`` and ``score`` after a
        selection are optimistic: compare settings without it.
    out_dir: if given, fold f's heads are saved as ``out_dir/heads_fold{f}.safetensors`` (a self-describing
        checkpoint: ``load_checkpoint`` rebuilds it; metadata: fold, seeds, balanced accuracy of the kept
        heads averaged and of each, backbone).

    Holds every bag's features (as given), one fold's heads and a padded batch.
    """
    from kagglekit.cv import fold_pairs
    from kagglekit.metrics import balanced_accuracy

    features, backbone = _features(bags)
    y, classes = _labels(y, classes)
    if y.shape != (len(features),):
        raise ShapeError(f"y must have one label per bag ({len(features)}), got shape {y.shape}")
    r = (head_kwargs or {}).get("r", 5) if head == "chowder" else 1
    small = [k for k, f in enumerate(features) if len(f) < r]
    if small:
        raise ShapeError(f"{len(small)} bag(s) (e.g. {small[:5]}) have fewer tiles than Chowder's r={r}; "
                         "lower r (head_kwargs={'r': ...}) or extract those slides with smaller tiles")
    _check_sampling(bag_size, sample, replace)
    if bag_size is not None and bag_size < r:
        raise ShapeError(f"bag_size={bag_size} draws fewer tiles than Chowder's r={r}: draw at least r tiles a bag")
    if select_top is not None and not 1 <= positive_int("select_top", select_top) <= n_seeds:
        raise InvalidArgumentError(f"select_top keeps that many of a fold's n_seeds={n_seeds} heads: "
                                   f"give 1..{n_seeds}, got {select_top}")
    num_classes = len(classes) if classes is not None else int(y.max()) + 1
    oof = np.full((len(features), num_classes), np.nan, np.float32)
    heads, scores, paths, head_scores = [], [], [], []
    for fold, (train, val) in enumerate(fold_pairs(folds, y, seed)):
        ensemble = fit_heads(features, y, train, head=head, seeds=head_seeds(seed, fold, n_seeds), epochs=epochs, lr=lr,
                             weight_decay=weight_decay, batch_size=batch_size, data_seed=[seed, fold],
                             num_classes=num_classes, bag_size=bag_size, sample=sample, replace=replace, device=device,
                             head_kwargs=head_kwargs, progress=progress)
        probs = head_probabilities(ensemble, features, val)
        fold_head_scores, ranking = _head_ranking(probs, y[val])
        kept = np.sort(ranking[:select_top])  # every head when select_top is None
        if select_top is not None:
            ensemble = _keep_heads(ensemble, kept)
        oof[val] = probs[:, kept].mean(axis=1)
        scores.append(balanced_accuracy(y[val], oof[val].argmax(axis=1)))
        heads.append(ensemble)
        head_scores.append(fold_head_scores)
        if out_dir is not None:
            from kagglekit.models import save_checkpoint

            meta = {"fold": fold, "seeds": ensemble.seeds, "balanced_accuracy": scores[-1],
                    "head_balanced_accuracy": fold_head_scores[kept].tolist(), "backbone": backbone}
            paths.append(save_checkpoint(ensemble, Path(out_dir) / f"heads_fold{fold}.safetensors", meta, classes=classes))
    seen = ~np.isnan(oof[:, 0])
    return TrainedHeads(heads, oof, scores, balanced_accuracy(y[seen], oof[seen].argmax(axis=1)), classes, paths,
                        head_scores)


def predict_bags(heads, bags, *, batch_size: int = 64, device=None) -> np.ndarray:
    """(n, C) float32 probabilities: the mean over every head of every fold of its softmax.

    ``heads``: a :class:`TrainedHeads`, HeadEnsembles, or their checkpoint paths; ``bags`` as :func:`train_heads`."""
    from kagglekit.infer.batching import resolve_device
    from kagglekit.models import HeadEnsemble, as_module

    heads = heads.heads if isinstance(heads, TrainedHeads) else [heads] if isinstance(heads, (str, os.PathLike, HeadEnsemble)) else heads
    device = resolve_device(device)
    ensembles = [as_module(h, what="heads", callables=False) for h in heads]
    if not ensembles:
        raise InvalidArgumentError("predict_bags needs at least one fold's heads")
    features, _ = _features(bags)
    total = sum(head_probabilities(e.to(device).eval(), features, batch_size=batch_size).sum(axis=1) for e in ensembles)
    return (total / sum(e.num_heads for e in ensembles)).astype(np.float32)


def leave_class_out(bags, y, *, head: str = "chowder", n_seeds: int = 10, seed: int = 0, classes=None, epochs: int = 30,
                    lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 16, bag_size: int | None = None,
                    sample: str = "random", replace: bool | None = None, head_kwargs: dict | None = None,
                    device=None, progress: bool = True) -> np.ndarray:
    """(n, C) float32: each bag's probabilities from ``n_seeds`` heads trained on every bag **not of its class**.

    How the heads see a subtype they were never shown: with the out-of-fold rows of :func:`train_heads`,
    the rows to fit an entropy cut for an "Other" that the train set lacks, e.g.
    ``fit_entropy_cut(np.r_[oof, held_out], np.r_[y, np.full(n, -1)])``. One ensemble per class (its
    ``n_seeds`` heads at once); arguments as :func:`train_heads`."""
    from tqdm.auto import tqdm

    features, _ = _features(bags)
    y, classes = _labels(y, classes)
    num_classes = len(classes) if classes is not None else int(y.max()) + 1
    out = np.full((len(features), num_classes), np.nan, np.float32)
    for k in tqdm(range(num_classes), unit="class", desc="leave class out", disable=not progress):
        held_out = np.flatnonzero(y == k)
        if not len(held_out):
            continue
        ensemble = fit_heads(features, y, np.flatnonzero(y != k), head=head,
                             seeds=head_seeds(seed, MAX_SEEDS - 1 - k, n_seeds), epochs=epochs, lr=lr,
                             weight_decay=weight_decay, batch_size=batch_size, data_seed=[seed, MAX_SEEDS - 1 - k],
                             num_classes=num_classes, bag_size=bag_size, sample=sample, replace=replace, device=device,
                             head_kwargs=head_kwargs)
        out[held_out] = head_probabilities(ensemble, features, held_out).mean(axis=1)
    return out
