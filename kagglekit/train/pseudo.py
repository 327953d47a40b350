"""Pseudo-labels: a label table made from predictions of unlabelled images, and the pseudo rows each fold
of :func:`~kagglekit.train.train_folds` may train on.

    table = pseudo_labels(P, ids=test_ids, classes=classes, hard=(0.1, 0.9), weight=0.3)  # P (folds, N, C)
    pseudo = ImageDataset(table, "test/{id}.jpg", target="columns", classes=classes, weight="weight")
    train_folds(model_fn, labelled, folds, "round1", loss="bce", pseudo=pseudo, pseudo_folds=table["fold"])

Fold k trains on the pseudo rows that fold k's own model predicted (trained without fold k's labels); they
never validate it and never enter the OOF table.
"""

from __future__ import annotations

import numpy as np

from kagglekit._checks import number_in, one_of
from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["PseudoRows", "pseudo_labels"]

RESERVED = ("id", "fold", "label", "weight", "source")


def pseudo_labels(predictions, *, ids=None, classes=None, activation: str = "sigmoid", hard=None, soft: bool = False,
                  other=None, weight: float = 1.0):
    """A label table of ``predictions``, one row per confident prediction, for :class:`~kagglekit.data.ImageDataset`.

    predictions: a polars frame with ``id``, ``prob_<class>`` columns and, for per-fold models, ``fold``
        (an OOF-like table: one row per (id, fold)); or probabilities as an (N, C) array, or (F, N, C) from
        F per-fold models (fold f = axis 0), with ``ids`` (N,) and ``classes`` (default "0".."C-1").
    activation: "sigmoid" (each class its own label: multi-label, or binary with one column) or "softmax"
        (one class per row).
    hard=(low, high): a class is 1 where p >= high, 0 where p <= low, undecided in between. "sigmoid": an
        undecided cell is left empty (null: masked, it adds nothing to fit's loss); a row with no decided
        cell is dropped. "softmax": a row is kept with label c when class c is 1 and every other class 0;
        with ``other`` (a label, e.g. "Other"), a row whose classes are all 0 is kept as ``other``; other
        rows are dropped. soft=True: the kept cells hold the probabilities instead of 0/1 (without ``hard``,
        every row and cell is kept).
    weight: the loss weight of this source (UBC's 9th place: 0.3 against the labels' 1.0).

    Returns a polars frame: ``id``; ``label`` (the class name: "softmax", hard and not soft) or one
    Float32 column per class named by it; ``weight`` (Float32); ``source`` ("pseudo"); ``fold`` (Int64: the
    fold whose model made the row) when the predictions came from per-fold models. Rows keep their order.
    """
    import polars as pl

    P, ids, folds, classes = _as_probabilities(predictions, ids, classes)
    one_of("activation", activation, ("sigmoid", "softmax"))
    keep, values, label = _decide(P, activation, _bounds(hard, soft), soft, other, classes)
    rows = np.flatnonzero(keep)
    columns = {"id": pl.Series("id", [ids[i] for i in rows], pl.Utf8)}
    if label is not None:
        columns["label"] = pl.Series("label", [label[i] for i in rows], pl.Utf8)
    else:
        columns.update({c: pl.Series(c, values[keep, j], pl.Float32, nan_to_null=True) for j, c in enumerate(classes)})
    columns["weight"] = pl.Series("weight", np.full(len(rows), number_in("weight", weight, 0, open_low=True)), pl.Float32)
    columns["source"] = pl.Series("source", ["pseudo"] * len(rows), pl.Utf8)
    if folds is not None:
        columns["fold"] = pl.Series("fold", folds[keep], pl.Int64)
    return pl.DataFrame(columns)


def _as_probabilities(predictions, ids, classes):
    """(P (M, C) float64, ids (M,) str, folds (M,) int or None, class names) of any accepted input."""
    import polars as pl

    if isinstance(predictions, pl.DataFrame):
        if ids is not None:
            raise InvalidArgumentError("ids= goes with an array; a table's ids are its 'id' column")
        names = [c.removeprefix("prob_") for c in predictions.columns if c.startswith("prob_")]
        names = names if classes is None else [str(c) for c in classes]
        absent = [n for n in ["id", *(f"prob_{c}" for c in names)] if n not in predictions.columns]
        if absent or not names:
            raise InvalidArgumentError(f"the predictions table needs an 'id' column and prob_<class> columns "
                                       f"(an OOF-like table); missing {absent or 'prob_*'}, its columns: {predictions.columns}")
        P = predictions.select([f"prob_{c}" for c in names]).to_numpy().astype(np.float64)
        folds = predictions.get_column("fold").to_numpy() if "fold" in predictions.columns else None
        ids = predictions.get_column("id").cast(pl.Utf8).to_list()
    else:
        P = np.asarray(predictions, np.float64)
        if P.ndim not in (2, 3) or ids is None or len(ids) != P.shape[-2]:
            raise ShapeError(f"predictions must be (N, C) or (folds, N, C) probabilities with ids= (N,), got shape "
                             f"{P.shape} and {'no ids' if ids is None else f'{len(ids)} ids'}")
        folds = None if P.ndim == 2 else np.repeat(np.arange(P.shape[0]), P.shape[1])
        ids = [str(i) for i in ids] * (1 if P.ndim == 2 else P.shape[0])
        P = P.reshape(-1, P.shape[-1])
        names = [str(c) for c in classes] if classes is not None else [str(c) for c in range(P.shape[1])]
        if len(names) != P.shape[1]:
            raise ShapeError(f"{len(names)} classes for {P.shape[1]} probability columns")
    _check_rows(P, ids, folds, names)
    return P, ids, folds, names


def _check_rows(P, ids, folds, names) -> None:
    if not np.isfinite(P).all() or (P < 0).any() or (P > 1).any():
        raise InvalidArgumentError("the predictions must be probabilities in [0, 1]; pass prob_ columns, not logits")
    clash = [n for n in names if n in RESERVED]
    if clash or len(set(names)) != len(names):
        raise InvalidArgumentError(f"class names must be distinct and none of {list(RESERVED)}, got {names[:30]}")
    keys = list(zip(ids, folds.tolist())) if folds is not None else ids
    if len(set(keys)) != len(keys):
        raise InvalidArgumentError("an id appears twice" + (" for one fold" if folds is not None else "")
                                   + "; give one prediction per id (per fold, with a fold column)")


def _bounds(hard, soft: bool):
    """(low, high) checked, or None."""
    if hard is None:
        if not soft:
            raise InvalidArgumentError("give hard=(low, high) thresholds, soft=True (the probabilities as targets), or both")
        return None
    try:
        low, high = (number_in(name, v, 0, 1) for name, v in zip(("hard's low", "hard's high"), hard))
    except TypeError:
        raise InvalidArgumentError(f"hard must be a (low, high) pair of probabilities, got {hard!r}") from None
    if low > high:
        raise InvalidArgumentError(f"hard=(low, high) needs low <= high, got {hard!r}")
    return low, high


def _decide(P, activation: str, bounds, soft: bool, other, classes):
    """(kept rows (M,) bool, cell values (M, C) with NaN for masked cells, class-name labels or None)."""
    if other is not None and (activation != "softmax" or bounds is None or soft):
        raise InvalidArgumentError("other= labels the rows of hard 'softmax' pseudo-labels whose classes are all 0; "
                                   "it takes activation='softmax', hard=(low, high) and soft=False")
    if bounds is None:
        return np.ones(len(P), bool), P, None
    low, high = bounds
    cells = np.where(P >= high, 1.0, np.where(P <= low, 0.0, np.nan))
    values = np.where(np.isnan(cells), np.nan, P) if soft else cells
    if activation == "sigmoid":
        return ~np.isnan(cells).all(axis=1), values, None
    decided = ~np.isnan(cells).any(axis=1)
    ones = np.nansum(cells, axis=1)
    keep = decided & ((ones == 1) | ((ones == 0) & (other is not None)))
    if soft:
        return keep, values, None
    names = np.array(list(classes) + [str(other)], dtype=object)
    return keep, values, names[np.where(ones == 1, cells.argmax(axis=1), len(classes))].tolist()


class PseudoRows:
    """The pseudo-labelled items of :func:`~kagglekit.train.train_folds` and which fold may train on each.

    pseudo: a dataset of ``(x, y)`` or ``(x, y, weight)`` items (weight 1.0 when it has none); folds: the fold
    whose model predicted each item (:func:`pseudo_labels`' ``fold`` column), or None: predicted by a model
    that saw every fold's labels, refused unless ``accept_leak``. ``labelled_ids``, ``fold_numbers``: the
    labelled items' ids and the folds. A pseudo item whose id is a labelled id is refused."""

    def __init__(self, pseudo, folds, *, labelled_ids, fold_numbers, accept_leak: bool = False):
        self.pseudo, self.fold_numbers = pseudo, [int(k) for k in fold_numbers]
        self.folds = None if folds is None else np.asarray(folds)
        if self.folds is None and not accept_leak:
            raise InvalidArgumentError(
                "pseudo-labels without pseudo_folds= came from a model that saw every fold's labels (the folds' "
                "ensemble, or a model trained on all the data): each fold would train on what its held-out labels "
                "taught that model, and its OOF score would be too good. Predict the unlabelled images with each "
                "fold's model and pass pseudo_folds= (pseudo_labels' fold column), or accept_leaky_pseudo=True "
                "to train every fold on them anyway")
        if self.folds is not None:
            if self.folds.shape != (len(pseudo),) or not np.issubdtype(self.folds.dtype, np.integer):
                raise InvalidArgumentError(f"pseudo_folds must be one fold number per pseudo item ({len(pseudo)}), "
                                           f"got shape {self.folds.shape} of {self.folds.dtype}")
            stray = sorted(set(self.folds.tolist()) - set(self.fold_numbers))
            if stray:
                raise InvalidArgumentError(f"pseudo_folds names folds {stray[:5]} that the labelled folds "
                                           f"{self.fold_numbers} do not have; predict with the same folds' models")
        shared = sorted(set(map(str, getattr(pseudo, "ids", []))) & set(map(str, labelled_ids)))
        if shared:
            raise InvalidArgumentError(f"{len(shared)} pseudo-labelled ids have labels too (e.g. {shared[:3]}); drop "
                                       "them from the pseudo-label table: their labels are better, and a pseudo "
                                       "row of a held-out id would leak its fold")

    def rows(self, fold: int) -> list[int]:
        """The pseudo items fold ``fold`` trains on."""
        return list(range(len(self.pseudo))) if self.folds is None else np.flatnonzero(self.folds == fold).tolist()

    def train_set(self, labelled, fold: int):
        """``labelled`` (the fold's training items) followed by its pseudo items, every item with a weight."""
        from torch.utils.data import ConcatDataset, Subset

        return ConcatDataset([_Weighted(labelled), _Weighted(Subset(self.pseudo, self.rows(fold)))])

    def settings(self, describe) -> dict:
        """What the pseudo rows contribute to the folds' settings (``describe``: the folds' dataset summary)."""
        return {"pseudo": describe(self.pseudo), "pseudo_folds": None if self.folds is None else self.folds.tolist()}


class _Weighted:
    """A dataset whose ``(x, y)`` items become ``(x, y, 1.0)``; ``(x, y, weight)`` items stay as they are."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        import torch

        item = self.dataset[i]
        return item if len(item) == 3 else (*item, torch.tensor(1.0))
