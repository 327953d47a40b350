"""``kagglekit blend``: blend weights or a stacker fitted on out-of-fold tables, applied to test tables.

    kagglekit blend a/oof.parquet b/oof.parquet --labels train.csv --label tags --target multi_hot \
        --test a/test.csv b/test.csv --method hill_climb --metric auc --out blend/

    <out>/blend.json | stacker.json   the fitted weights (kagglekit.thresholds.write_blend) or stacker (Stacker.save)
    <out>/scores.csv                  each model and the blend: the metric on all OOF rows and its honest estimate
    <out>/test.csv                    the blended test predictions: the id column, one column per class

A table is a parquet or CSV file with an id column and one column per class: ``train_folds``' ``oof.parquet``
(``prob_<class>`` columns, a ``fold`` column), or what ``classify`` writes with ``[output] format = "columns"``.
Rows and columns are matched by id and class name to the first OOF table's order. The folds of the nested
estimate are the first OOF table's ``fold`` column, else ``folds`` shuffled folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kagglekit.errors import InvalidArgumentError

__all__ = ["BLEND_METHODS", "BlendReport", "PredictionTable", "read_prediction_table", "run_blend"]

BLEND_METHODS = ("hill_climb", "nelder_mead", "nnls", "stack")


@dataclass(frozen=True)
class PredictionTable:
    """One model's predictions: ``ids`` (N,), ``classes`` (C,), ``values`` (N, C) float64, ``folds`` (N,) or None."""

    path: Path
    ids: list[str]
    classes: list[str]
    values: np.ndarray
    folds: np.ndarray | None

    def aligned(self, ids: list[str], classes: list[str]) -> np.ndarray:
        """The (len(ids), len(classes)) values in that row and column order; a missing id or class is named."""
        row = {i: k for k, i in enumerate(self.ids)}
        column = {c: k for k, c in enumerate(self.classes)}
        lost_ids, lost_classes = [i for i in ids if i not in row], [c for c in classes if c not in column]
        if lost_ids or lost_classes:
            what = f"ids {lost_ids[:3]} ({len(lost_ids)} in all)" if lost_ids else f"classes {lost_classes}"
            raise InvalidArgumentError(f"{self.path} has no {what}; every table must hold the first table's rows and classes")
        return self.values[np.ix_([row[i] for i in ids], [column[c] for c in classes])]


def read_prediction_table(path, id_column: str = "id") -> PredictionTable:
    """A parquet or CSV prediction table (see the module docstring)."""
    import polars as pl

    from kagglekit.kaggle import read_csv_strings

    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"prediction table {path} not found; pass an oof.parquet or a classify output CSV")
    frame = pl.read_parquet(path) if path.suffix == ".parquet" else read_csv_strings(path, "prediction table")
    if id_column not in frame.columns:
        raise InvalidArgumentError(f"{path} has no id column {id_column!r} (its columns: {frame.columns[:8]}); pass --id-column")
    probs = [c for c in frame.columns if c.startswith("prob_")]
    columns = probs or [c for c in frame.columns if c not in (id_column, "fold") and not c.startswith("logit_")]
    try:
        values = frame.select(pl.col(columns).cast(pl.Float64)).to_numpy()
    except pl.exceptions.PolarsError as exc:
        raise InvalidArgumentError(f"{path}: the class columns {columns[:8]} must hold numbers ({str(exc).splitlines()[0]})") from None
    folds = frame.get_column("fold").cast(pl.Int64).to_numpy() if "fold" in frame.columns else None
    return PredictionTable(path, frame.get_column(id_column).cast(pl.Utf8).to_list(),
                           [c.removeprefix("prob_") for c in columns], values, folds)


@dataclass(frozen=True)
class BlendReport:
    """What ``kagglekit blend`` wrote: the fitted file, the score table (a polars frame) and the test predictions."""

    fitted: Path
    scores: object
    test: Path | None

    def summary(self) -> str:
        rows = ["| | on the OOF rows | honest estimate |", "| --- | ---: | ---: |"]
        rows += [f"| {r['what']} | {r['in_sample']:.4f} | {r['estimate']:.4f} |" for r in self.scores.iter_rows(named=True)]
        return "\n".join([*rows, f"fitted: {self.fitted}", f"test predictions: {self.test or '-'}"])


def run_blend(oof, labels, out_dir, *, label: str | None = None, target: str = "multi_hot", test=(),
              id_column: str = "id", labels_id_column: str | None = None, method: str = "hill_climb",
              metric: str = "auc", mode: str = "mean", estimator: str = "logistic", folds: int = 5,
              repeats: int = 1, seed: int = 0) -> BlendReport:
    """Fit on the M ``oof`` tables against ``labels`` (a labels table read by :func:`kagglekit.data.read_targets`
    with ``label``, ``target``), write the fitted file and the scores under ``out_dir``, and blend the M ``test``
    tables (the same models, in the same order) into ``test.csv``. ``method``: a
    :func:`~kagglekit.thresholds.fit_blend` method (``mode``, ``metric``), or ``"stack"``
    (:func:`~kagglekit.thresholds.fit_stacker` with ``estimator`` and ``repeats``). Holds every table."""
    import polars as pl

    from kagglekit._checks import one_of
    from kagglekit.kaggle.submission import write_csv_atomic
    from kagglekit.thresholds.fitted_blends import METRICS

    one_of("method", method, BLEND_METHODS)
    one_of("metric", metric, tuple(METRICS))
    tables = [read_prediction_table(p, id_column) for p in oof]
    if not tables or len(test) not in (0, len(tables)):
        raise InvalidArgumentError(f"{len(tables)} OOF table(s) and {len(test)} test table(s): give at least one OOF "
                                   "table, and a test table per OOF table (the same models, in the same order), or none")
    ids, classes = tables[0].ids, tables[0].classes
    y = _labels(labels, ids, classes, label, target, labels_id_column)
    arrays = [t.aligned(ids, classes) for t in tables]
    fold = tables[0].folds if tables[0].folds is not None else folds
    names = [str(p) for p in oof]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if method == "stack":
        fitted, row, apply, single = _stack(arrays, y, fold, estimator, repeats, seed, classes, out_dir, METRICS[metric])
    else:
        fitted, row, apply, single = _blend(arrays, y, fold, method, mode, metric, seed, names, out_dir)
    rows = [(name, s, s) for name, s in zip(names, single)]  # a model's OOF score is its own honest estimate
    scores = pl.DataFrame(rows + [row], schema=["what", "in_sample", "estimate"], orient="row")
    write_csv_atomic(scores, out_dir / "scores.csv")
    test_path = None
    if test:
        test_tables = [read_prediction_table(p, id_column) for p in test]
        test_ids = test_tables[0].ids
        blended = apply([t.aligned(test_ids, classes) for t in test_tables])
        test_path = out_dir / "test.csv"
        write_csv_atomic(pl.DataFrame({id_column: test_ids, **{c: blended[:, k] for k, c in enumerate(classes)}}), test_path)
    return BlendReport(fitted, scores, test_path)


def _labels(labels, ids, classes, label, target, id_column) -> np.ndarray:
    """The OOF rows' labels in their order: (N, C) 0/1 over ``classes``, or (N,) class indices."""
    from kagglekit.data import read_targets

    label_ids, _, targets = read_targets(labels, target=target, label=label, classes=classes, id_column=id_column)
    row = {i: k for k, i in enumerate(label_ids)}
    lost = [i for i in ids if i not in row]
    if lost:
        raise InvalidArgumentError(f"the labels table has no row for ids {lost[:3]} ({len(lost)} in all) of the OOF tables")
    return targets[[row[i] for i in ids]]


def _blend(arrays, y, folds, method, mode, metric, seed, names, out_dir: Path):
    from kagglekit.thresholds import fit_blend, write_blend

    fit = fit_blend(arrays, y, metric, method=method, mode=mode, folds=folds, seed=seed, models=names)
    path = write_blend(fit, out_dir / "blend.json")
    return path, (f"blend ({method}, {mode})", fit.in_sample, fit.nested), fit.apply, fit.single


def _stack(arrays, y, folds, estimator, repeats, seed, classes, out_dir: Path, score):
    from kagglekit.thresholds import fit_stacker

    stacker = fit_stacker(arrays, y, folds, estimator, repeats=repeats, seed=seed, classes=classes)
    path = stacker.save(out_dir / "stacker.json")
    row = (f"stacker ({estimator})", score(y, stacker.predict(arrays)), score(y, stacker.oof))
    return path, row, stacker.predict, [score(y, a) for a in arrays]
