"""scikit-learn splitters: multi-key stratified group folds, multi-label iterative folds, patient-balanced folds.

All three are built on scikit-learn's public ``BaseCrossValidator`` and share one engine
(:func:`kagglekit.cv._iterative.assign_iteratively`). ``split(X, y, groups)`` yields
``(train_index, test_index)`` int64 arrays; ``assign(X, y, groups)`` returns each row's fold.
They take ``n_splits``, ``shuffle`` and ``random_state`` as scikit-learn's and iterative-stratification's
splitters do (``MultilabelStratifiedKFold(n_splits=5, shuffle=True, random_state=42)`` works unchanged;
``random_state`` without ``shuffle`` is refused, as there). Every splitter is deterministic without
``shuffle`` or with an integer ``random_state``, never puts one group in two folds,
and raises :class:`InvalidArgumentError` when ``n_splits`` is more than a class, label or group
count allows (a fold would miss it).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import BaseCrossValidator

from kagglekit._checks import as_binary, positive_int
from kagglekit.cv._iterative import assign_iteratively
from kagglekit.errors import InvalidArgumentError, ShapeError


class _IterativeSplitter(BaseCrossValidator):
    """Shared ``split`` / ``get_n_splits`` / ``assign`` over a per-unit count matrix."""

    def __init__(self, n_splits: int = 5, shuffle: bool = False, random_state: int | None = None):
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return positive_int("n_splits", self.n_splits, minimum=2)

    def split(self, X, y=None, groups=None):
        folds = self.assign(X, y, groups)
        rows = np.arange(folds.size)
        for j in range(self.get_n_splits()):
            yield rows[folds != j], rows[folds == j]

    def assign(self, X, y=None, groups=None) -> np.ndarray:
        """Fold number (int64, 0..n_splits-1) of each row."""
        n_splits = self.get_n_splits()
        unit, unit_counts, sizes, soft = self._unit_counts(_n_rows(X, y), y, groups, n_splits)
        rng = np.random.default_rng(self._seed())
        return assign_iteratively(unit_counts, sizes, n_splits, rng, soft)[unit]

    def _seed(self):
        """The seed of the generator that breaks ties: a fixed one without ``shuffle`` (the same folds every
        call), ``random_state`` with it (None: new folds every call), as scikit-learn's KFold treats them."""
        if not isinstance(self.shuffle, (bool, np.bool_)):
            raise InvalidArgumentError(f"shuffle must be True or False, got {self.shuffle!r}")
        if not self.shuffle:
            if self.random_state is not None:
                raise InvalidArgumentError(
                    f"{type(self).__name__}: setting random_state has no effect since shuffle is False (as in "
                    "scikit-learn); pass shuffle=True, random_state=... for seeded folds, or leave random_state=None")
            return 0
        return self.random_state

    def _unit_counts(self, n_rows: int, y, groups, n_splits: int):
        """Row -> unit index, (n_units, C) counts of the columns to stratify, (n_units,) rows per unit,
        and optional (n_units, S) counts to even out without a guarantee."""
        counts, names = self._column_counts(y, n_rows)
        _check_rows(len(counts), n_rows)
        unit, n_units = _units(groups, n_rows)
        unit_counts = _sum_by_unit(counts, unit, n_units)
        _check_enough(unit_counts, names, n_splits, grouped=groups is not None)
        return unit, unit_counts, np.bincount(unit, minlength=n_units), None

    def _column_counts(self, y, n_rows: int) -> tuple[np.ndarray, list[str]]:
        """(n_rows, C) non-negative integer matrix of the columns to balance, and their names."""
        raise NotImplementedError


class StratifiedGroupKFold(_IterativeSplitter):
    """K folds stratified on one or several keys at once (e.g. class x TMA/WSI), groups kept whole.

    ``y``: (n,) one key, or (n, m) m keys; each distinct row of keys is a stratum. ``y=None``
    balances fold sizes only. ``groups``: (n,) optional; no group is split.

    Promise: a stratum's rows in each fold differ from n_c / n_splits by less than 1 without groups,
    and by at most the largest group's row count in that stratum when every group lies in one
    stratum. (Strata are placed rarest first, each on the folds holding the fewest of it.)
    Memory: an (n_rows, n_strata) int64 one-hot matrix and its per-group sums.
    """

    def _column_counts(self, y, n_rows):
        if y is None:
            return np.ones((n_rows, 1), dtype=np.int64), ["all rows"]
        stratum, names = _strata_codes(y, "y")
        return np.eye(len(names), dtype=np.int64)[stratum], names


class MultilabelStratifiedKFold(_IterativeSplitter):
    """Iterative stratification for multi-label targets (Sechidis et al. 2011), rarest label first.

    ``y``: (n, L) binary (0/1 or bool) indicator matrix; ``groups``: (n,) optional, no group split.

    Promise: labels are placed rarest first; in its own pass a label's not yet placed rows go to the
    folds holding the fewest of that label, so afterwards every fold that received some holds at most
    one more of it (with groups: at most the largest group's count of it more) than the fold holding
    the fewest. Rows placed earlier with a rarer label are not moved; for single-label (one-hot) ``y``
    this means every fold holds floor or ceil of n_l / n_splits of label l. Rows of a pass are dealt
    to their folds so as to even out the labels still to come.
    Memory: the (n_units, L) count matrix plus a boolean copy.
    """

    def _column_counts(self, y, n_rows):
        if y is None:
            raise InvalidArgumentError("MultilabelStratifiedKFold needs y: an (n_rows, n_labels) 0/1 matrix")
        labels = np.asarray(y)
        if labels.ndim != 2 or labels.shape[0] != n_rows:
            raise ShapeError(f"y must be an (n_rows, n_labels) 0/1 matrix with n_rows={n_rows}, got shape {labels.shape}")
        return as_binary("y", labels), [f"label {i}" for i in range(labels.shape[1])]


class PatientBalancedKFold(_IterativeSplitter):
    """Patient folds: no patient in two folds, target stratified, images-per-patient balanced.

    The melanoma write-ups' "triple stratification": each patient gets a stratum made of its target
    (the largest ``y`` among its images, i.e. "has a positive image" for a binary target) and the
    quantile bin of its image count (``n_bins`` bins, fewer when a target-by-bin cell would have
    fewer than ``n_splits`` patients); patients are then stratified over those strata, the folds'
    image totals breaking ties. ``y``: (n,) numeric target; ``groups``: (n,) patient ids (required).

    Promise: for every (target, size-bin) stratum, each fold holds floor or ceil of
    n_stratum / n_splits of its patients. :meth:`patient_strata` returns the strata used. Within
    that, patients are dealt so that image totals and images per class even out (no guarantee).
    """

    def __init__(self, n_splits: int = 5, n_bins: int = 4, shuffle: bool = False, random_state: int | None = None):
        super().__init__(n_splits, shuffle, random_state)
        self.n_bins = n_bins

    def _unit_counts(self, n_rows, y, groups, n_splits):
        unit, target, size_bin = self.patient_strata(y, groups)
        _check_rows(len(unit), n_rows)
        stratum = np.unique(np.stack([target, size_bin], axis=1), axis=0, return_inverse=True)[1].ravel()
        row_class = np.unique(_numeric_vector(y, "y"), return_inverse=True)[1].ravel()
        rows_per_class = _sum_by_unit(np.eye(row_class.max() + 1, dtype=np.int64)[row_class], unit, target.size)
        return unit, np.eye(stratum.max() + 1, dtype=np.int64)[stratum], np.bincount(unit), rows_per_class

    def patient_strata(self, y, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row -> patient index, per-patient target, per-patient image-count bin), all int64 / float64.

        Bins are quantiles of the image counts (a patient with more images is never in a lower bin);
        their number drops from ``n_bins`` until every (target, bin) cell has at least n_splits patients.
        """
        n_splits = self.get_n_splits()
        n_bins = positive_int("n_bins", self.n_bins)
        if groups is None:
            raise InvalidArgumentError("PatientBalancedKFold needs groups: one patient id per row")
        if y is None:
            raise InvalidArgumentError("PatientBalancedKFold needs y: one numeric target per row")
        target = _numeric_vector(y, "y")
        unit, n_units = _units(groups, target.size)
        patient_target = np.full(n_units, -np.inf)
        np.maximum.at(patient_target, unit, target)
        n_images = np.bincount(unit, minlength=n_units)
        _, per_target = np.unique(patient_target, return_counts=True)
        if per_target.min() < n_splits:
            raise InvalidArgumentError(
                f"a target value is held by only {per_target.min()} patients, fewer than n_splits={n_splits}; "
                "lower n_splits or merge that target value with another"
            )
        for bins in range(n_bins, 1, -1):
            edges = np.unique(np.quantile(n_images, np.linspace(0, 1, bins + 1)[1:-1]))
            size_bin = np.searchsorted(edges, n_images, side="right").astype(np.int64)
            _, cells = np.unique(np.stack([patient_target, size_bin], axis=1), axis=0, return_counts=True)
            if cells.min() >= n_splits:
                return unit, patient_target, size_bin
        return unit, patient_target, np.zeros(n_units, dtype=np.int64)


def _strata_codes(y, name: str) -> tuple[np.ndarray, list[str]]:
    """Stratum index (int64, (n,)) of each row of one key (n,) or several keys (n, m), and stratum names."""
    keys = np.asarray(y)
    if keys.ndim == 1:
        keys = keys[:, None]
    if keys.ndim != 2 or keys.shape[1] == 0:
        raise ShapeError(f"{name} must be (n_rows,) or (n_rows, n_keys), got shape {np.shape(y)}")
    codes, uniques = [], []
    for k in range(keys.shape[1]):
        column = keys[:, k]
        _check_no_missing(column, f"{name} key {k}")
        values, code = np.unique(column, return_inverse=True)
        codes.append(code.ravel())
        uniques.append(values)
    combos, stratum = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    names = [" x ".join(str(uniques[k][c]) for k, c in enumerate(row)) for row in combos]
    return stratum.ravel().astype(np.int64), names


def _n_rows(X, y) -> int:
    if X is not None:
        return len(X)
    if y is not None:
        return len(y)
    raise InvalidArgumentError("pass X (or y) so the number of rows is known")


def _check_rows(n_labelled: int, n_rows: int) -> None:
    if n_labelled != n_rows:
        raise ShapeError(f"X has {n_rows} rows but y has {n_labelled}; pass one target per row")


def _units(groups, n_rows: int) -> tuple[np.ndarray, int]:
    """Row -> unit index (rows themselves without groups) and the number of units."""
    if groups is None:
        return np.arange(n_rows), n_rows
    groups = np.asarray(groups)
    if groups.shape != (n_rows,):
        raise ShapeError(f"groups must have shape ({n_rows},), one id per row, got {groups.shape}")
    _check_no_missing(groups, "groups")
    _, unit = np.unique(groups, return_inverse=True)
    unit = unit.ravel()
    return unit, int(unit.max()) + 1 if unit.size else 0


def _sum_by_unit(counts: np.ndarray, unit: np.ndarray, n_units: int) -> np.ndarray:
    """(n_units, C) sums of ``counts`` rows per unit (the rows themselves when units are rows)."""
    if n_units == unit.size and np.array_equal(unit, np.arange(unit.size)):
        return counts
    order = np.argsort(unit, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(unit[order]) != 0])
    return np.add.reduceat(counts[order].astype(np.int64), starts, axis=0)


def _check_enough(unit_counts: np.ndarray, names: list[str], n_splits: int, grouped: bool) -> None:
    what = "groups" if grouped else "rows"
    if unit_counts.shape[0] < n_splits:
        raise InvalidArgumentError(f"only {unit_counts.shape[0]} {what} for n_splits={n_splits}; lower n_splits")
    holders = (unit_counts > 0).sum(axis=0)
    short = np.flatnonzero(holders < n_splits)
    if short.size:
        listed = ", ".join(f"{names[c]!r} ({holders[c]} {what})" for c in short[:5])
        raise InvalidArgumentError(
            f"n_splits={n_splits} is more than these classes/labels can fill, each fold needs one of their "
            f"{what}: {listed}{' ...' if short.size > 5 else ''}; lower n_splits, or merge or drop them"
        )


def _numeric_vector(y, name: str) -> np.ndarray:
    values = np.asarray(y)
    if values.ndim != 1:
        raise ShapeError(f"{name} must be one value per row, shape (n_rows,), got {values.shape}")
    try:
        values = values.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} must be numeric (e.g. 0/1); encode it as numbers first") from exc
    if np.isnan(values).any():
        raise InvalidArgumentError(f"{name} has NaN values; fill or drop those rows before making folds")
    return values


def _check_no_missing(values: np.ndarray, name: str) -> None:
    if values.dtype.kind == "f":
        missing = np.isnan(values)
    elif values.dtype.kind == "O":
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in values], dtype=bool)
    else:
        return
    if missing.any():
        raise InvalidArgumentError(
            f"{name} has {int(missing.sum())} missing (None/NaN) values, e.g. row {int(np.argmax(missing))}; "
            "fill or drop them before making folds"
        )
