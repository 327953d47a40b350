"""Fold columns for polars tables: ``make_folds`` picks the splitter, ``fold_report`` shows the balance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from kagglekit.cv.splitters import MultilabelStratifiedKFold, PatientBalancedKFold, StratifiedGroupKFold
from kagglekit.errors import InvalidArgumentError


def make_folds(
    df: pl.DataFrame,
    n_splits: int = 5,
    *,
    target: str | None = None,
    groups: str | None = None,
    stratify: Sequence[str] = (),
    labels: str | Sequence[str] | None = None,
    balance_group_sizes: bool = False,
    seed: int = 0,
    fold_column: str = "fold",
) -> pl.DataFrame:
    """Return ``df`` with an int32 ``fold_column`` (0..n_splits-1); the input is not modified.

    - ``labels`` (0/1 columns, or one column holding lists of label ids): :class:`MultilabelStratifiedKFold`;
    - ``balance_group_sizes=True`` (needs ``target`` and ``groups``): :class:`PatientBalancedKFold`;
    - otherwise :class:`StratifiedGroupKFold` over ``target`` and the ``stratify`` keys together
      (no keys: folds of even size). ``groups`` keeps each group in one fold in every case.
    Each splitter's docstring states the balance it guarantees.
    """
    if not isinstance(df, pl.DataFrame):
        raise InvalidArgumentError(f"make_folds takes a polars DataFrame, got {type(df).__name__}")
    keys = ([target] if target is not None else []) + ([stratify] if isinstance(stratify, str) else list(stratify))
    _require_columns(df, keys + ([groups] if groups else []) + _label_columns(labels), "make_folds")
    if fold_column in df.columns:
        raise InvalidArgumentError(f"df already has a {fold_column!r} column; drop it or pass another fold_column")
    group_ids = _column(df, groups) if groups else None
    if labels is not None:
        if keys or balance_group_sizes:
            raise InvalidArgumentError("give either labels (multi-label) or target/stratify, not both")
        splitter = MultilabelStratifiedKFold(n_splits, shuffle=True, random_state=seed)
        folds = splitter.assign(None, label_matrix(df, labels)[0], group_ids)
    elif balance_group_sizes:
        if target is None or groups is None or stratify:
            raise InvalidArgumentError("balance_group_sizes=True needs target and groups (and no stratify keys)")
        folds = PatientBalancedKFold(n_splits, shuffle=True, random_state=seed).assign(None, _column(df, target), group_ids)
    else:
        y = np.stack([_key_column(df, k) for k in keys], axis=1) if keys else None
        folds = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).assign(np.empty(df.height), y, group_ids)
    return df.with_columns(pl.Series(fold_column, folds, dtype=pl.Int32))


def fold_report(
    df: pl.DataFrame,
    fold: str = "fold",
    *,
    target: str | None = None,
    groups: str | None = None,
    labels: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """One row per fold: ``rows``, ``groups`` (distinct ids) and a count column per class
    (``"<target>=<value>"``) or per label, sorted by fold."""
    _require_columns(df, [fold] + [c for c in (target, groups) if c] + _label_columns(labels), "fold_report")
    aggregations = [pl.len().alias("rows")]
    if groups:
        aggregations.append(pl.col(groups).n_unique().alias("groups"))
    if target:
        for value in df.get_column(target).unique().sort().to_list():
            aggregations.append((pl.col(target) == value).sum().alias(f"{target}={value}"))
    report = df.group_by(fold).agg(aggregations)
    if labels is not None:
        matrix, names = label_matrix(df, labels)
        per_label = pl.DataFrame(matrix.astype(np.int64), schema=names).with_columns(df.get_column(fold))
        report = report.join(per_label.group_by(fold).agg(pl.all().sum()), on=fold)
    return report.sort(fold)


def label_matrix(df: pl.DataFrame, labels: str | Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(n_rows, n_labels) indicators and the label names, from 0/1 columns (their names) or from one
    column of label-id lists (uint8 matrix; names ``"<column>=<id>"`` in sorted id order)."""
    if isinstance(labels, str):
        column = df.get_column(labels)
        if not isinstance(column.dtype, pl.List):
            raise InvalidArgumentError(
                f"labels={labels!r} must be a list column of label ids (e.g. from .str.split(' ')) "
                "or pass a list of 0/1 column names"
            )
        if column.null_count() or column.list.eval(pl.element().is_null()).list.any().any():
            raise InvalidArgumentError(f"labels column {labels!r} has missing values; fill or drop those rows")
        lengths = column.list.len().to_numpy()
        ids = column.explode().drop_nulls()  # an empty list explodes to null (or to nothing); null labels were refused
        values, codes = np.unique(ids.to_numpy(), return_inverse=True)
        row = np.repeat(np.arange(df.height), lengths)
        matrix = np.zeros((df.height, values.size), dtype=np.uint8)
        matrix[row, codes.ravel()] = 1
        return matrix, [f"{labels}={v}" for v in values]
    return np.stack([_column(df, name) for name in labels], axis=1), list(labels)


def _column(df: pl.DataFrame, name: str) -> np.ndarray:
    column = df.get_column(name)
    if column.null_count() or (column.dtype.is_float() and column.is_nan().any()):
        raise InvalidArgumentError(f"column {name!r} has missing (null/NaN) values; fill or drop those rows first")
    return column.to_numpy()


def _key_column(df: pl.DataFrame, name: str) -> np.ndarray:
    """A stratification key; dates, datetimes and durations as text, which numpy can stack with other
    keys (numbers, strings) into one array, keeping the values readable in stratum names."""
    values = _column(df, name)
    return values.astype(str) if values.dtype.kind in "mM" else values


def _label_columns(labels) -> list[str]:
    if labels is None:
        return []
    return [labels] if isinstance(labels, str) else list(labels)


def _require_columns(df: pl.DataFrame, names: list[str], caller: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise InvalidArgumentError(f"{caller}: column(s) {missing} not in the DataFrame; it has {df.columns}")
