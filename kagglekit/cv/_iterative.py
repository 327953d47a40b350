"""Iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011) over weighted units, vectorised.

A *unit* is what may not be split across folds: a row, or a group of rows. ``counts[u, c]`` says how
many rows of unit ``u`` carry column ``c`` (a label, or a one-hot stratum). Columns are processed
rarest first (fewest remaining, not yet placed rows); in column ``c``'s pass its unplaced units go to
the folds holding the fewest of ``c``, ties going to the smallest fold, then at random.

The paper places one sample at a time. Here a pass over units of weight 1 is done at once: the number
of units each fold receives is computed by water-filling (the counts one-at-a-time greedy would
reach), and which unit fills which of those slots is decided chunk by chunk with a linear assignment
that sends units to the folds short of the other columns they carry, the columns with the fewest
rows left to correct them later weighing most (this is what keeps the common labels balanced;
the paper leaves that choice to chance). Passes with heavier units (groups) use the greedy loop,
heaviest unit first. Either way, after column ``c``'s pass every fold that received units of ``c``
holds at most ``w`` more of ``c`` than the fold holding the fewest, ``w`` being the largest unit
weight in the pass (1 without groups).

Memory: a boolean transpose of ``counts``, the current pass's rows of it, and (n_splits, n_columns) totals.
"""

from __future__ import annotations

import numpy as np


def assign_iteratively(
    counts: np.ndarray, sizes: np.ndarray, n_splits: int, rng: np.random.Generator, soft: np.ndarray | None = None
) -> np.ndarray:
    """Return the fold (0..n_splits-1, int64) of each unit.

    counts: (U, C) non-negative integers, the columns stratified pass by pass; sizes: (U,) rows per
    unit; soft: optional (U, S) further counts (e.g. rows of each class per patient) that, like the
    sizes, only steer which unit goes where within a pass, without a guarantee.
    """
    n_units, n_columns = counts.shape
    present_by_column = np.ascontiguousarray(counts.T > 0)
    extra = sizes[:, None] if soft is None else np.column_stack([soft, sizes])
    fold = np.full(n_units, -1, dtype=np.int64)
    unplaced = np.ones(n_units, dtype=bool)
    fold_counts = np.zeros((n_splits, n_columns), dtype=np.int64)
    fold_extra = np.zeros((n_splits, extra.shape[1]), dtype=np.int64)  # last column: fold sizes
    remaining = counts.sum(axis=0, dtype=np.int64)
    remaining_extra = extra.sum(axis=0, dtype=np.int64)
    processed = np.zeros(n_columns, dtype=bool)

    while True:
        candidates = np.where(processed | (remaining == 0), np.iinfo(np.int64).max, remaining)
        column = int(np.argmin(candidates))
        if candidates[column] == np.iinfo(np.int64).max:
            break
        batch = np.flatnonzero(present_by_column[column] & unplaced)
        processed[column] = True
        batch_counts, batch_extra = counts[batch], extra[batch]
        remaining -= batch_counts.sum(axis=0, dtype=np.int64)
        remaining_extra -= batch_extra.sum(axis=0, dtype=np.int64)
        # the fewer rows of a column are left to even it out later, the more its balance matters now
        urgency = np.r_[np.where(processed, 0.0, n_splits / (remaining + n_splits)),
                        n_splits / (remaining_extra + n_splits)]
        chosen = _place(batch_counts[:, column], fold_counts[:, column], fold_extra[:, -1], sizes[batch], rng,
                        (batch_counts, batch_extra), np.hstack([fold_counts, fold_extra]), urgency)
        fold[batch] = chosen
        unplaced[batch] = False
        for j in range(n_splits):  # a loop over the few folds beats np.add.at on row blocks (2x, measured)
            in_j = chosen == j
            fold_counts[j] += batch_counts[in_j].sum(axis=0, dtype=np.int64)
            fold_extra[j] += batch_extra[in_j].sum(axis=0, dtype=np.int64)

    rest = np.flatnonzero(unplaced)
    if rest.size:
        fold[rest] = _place(sizes[rest], fold_extra[:, -1], fold_extra[:, -1], sizes[rest], rng)
    return fold


def _place(weights, level, tiebreak, sizes, rng, unit_columns=None, fold_totals=None, urgency=None) -> np.ndarray:
    """Folds for one pass: each unit goes where ``level`` (this column's per-fold total) is lowest."""
    if weights.max() > 1:
        return _greedy(weights, level, tiebreak, sizes, rng)
    slots = _interleave(_water_fill(level, weights.size, tiebreak, rng), rng)
    if unit_columns is None:
        return slots[rng.permutation(slots.size)]
    return _deal(unit_columns, slots, fold_totals, urgency, rng)


def _water_fill(level: np.ndarray, n: int, tiebreak: np.ndarray, rng) -> np.ndarray:
    """How many of ``n`` unit-weight items each fold gets so that the lowest folds are filled first.

    Equal to what placing them one at a time on the currently lowest fold would give.
    """
    lo, hi = int(level.min()), int(level.min()) + n + 1  # sum(max(0, hi - level)) > n always
    while hi - lo > 1:  # largest top with sum(max(0, top - level)) <= n
        mid = (lo + hi) // 2
        if np.maximum(0, mid - level).sum() <= n:
            lo = mid
        else:
            hi = mid
    quotas = np.maximum(0, lo - level)
    left = n - int(quotas.sum())
    if left:
        at_top = np.flatnonzero(level <= lo)
        ranked = at_top[np.lexsort((rng.random(at_top.size), tiebreak[at_top]))]
        quotas[ranked[:left]] += 1
    return quotas


def _deal(unit_columns, slots, fold_totals, urgency, rng) -> np.ndarray:
    """Give unit i the fold slots[k] for a matching of units to slots, chunk by chunk.

    ``unit_columns``: the pass's (units, C) and (units, S) count matrices, ``fold_totals`` the folds'
    (n_splits, C + S) totals so far. Within a chunk the matching (scipy's linear_sum_assignment) sends units to the folds that hold
    too few of the columns they carry, each column weighted by ``urgency``; the fold totals are
    updated between chunks. The multiset of folds, hence this pass's column balance, is ``slots``'.
    """
    from scipy.optimize import linear_sum_assignment

    n_splits = fold_totals.shape[0]
    chunk = int(np.clip(slots.size // 16, n_splits, 64))  # small passes: fine steps; large: few matchings
    totals = fold_totals.astype(np.float64)
    order = rng.permutation(slots.size)
    chosen = np.empty(slots.size, dtype=np.int64)
    eye = np.eye(n_splits)
    for start in range(0, slots.size, chunk):
        units, folds = order[start : start + chunk], slots[start : start + chunk]
        x = np.hstack([part[units] for part in unit_columns], dtype=np.float64)
        excess = (totals - totals.mean(axis=0)) * urgency  # (n_splits, C): how overfull each fold is
        rows, cols = linear_sum_assignment((x @ excess.T)[:, folds])
        chosen[units[rows]] = folds[cols]
        totals += eye[chosen[units]].T @ x
    return chosen


def _interleave(quotas: np.ndarray, rng) -> np.ndarray:
    """A sequence holding fold j ``quotas[j]`` times, each fold's entries spread evenly along it."""
    folds = np.repeat(np.arange(quotas.size), quotas)
    position = np.concatenate([(np.arange(q) + 0.5) / q for q in quotas if q] or [np.zeros(0)])
    fold_rank = rng.permutation(quotas.size)
    return folds[np.lexsort((fold_rank[folds], position))]


def _greedy(weights, level, tiebreak, sizes, rng) -> np.ndarray:
    """One unit at a time, heaviest first, onto the fold with the lowest level (then smallest, then random)."""
    level = level.astype(np.int64).tolist()
    tiebreak = tiebreak.astype(np.int64).tolist()
    fold_rank = rng.permutation(len(level)).tolist()
    folds = range(len(level))
    chosen = np.empty(weights.size, dtype=np.int64)
    for unit in np.lexsort((rng.random(weights.size), -weights.astype(np.int64))):
        j = min(folds, key=lambda f: (level[f], tiebreak[f], fold_rank[f]))
        chosen[unit] = j
        level[j] += int(weights[unit])
        tiebreak[j] += int(sizes[unit])
    return chosen
