"""A submission file that is always valid: a fallback written first, every replacement atomic.

    with SubmissionGuard("/kaggle/working/submission.csv", sample_submission=sample_csv,
                         fill={"rle": ""}) as guard:     # fallback written here
        ...                                              # hours of inference
        guard.commit(frame)                              # validated, then atomically replaced

Every write goes to a temporary file in the same directory, is flushed and fsynced, and then
renamed over the target with ``os.replace`` (atomic on POSIX), so the target always holds the
fallback or the last committed frame, whatever happens in between (exception, kill, time-out).
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from kagglekit._atomic import atomic_open, temp_pattern
from kagglekit.errors import InvalidArgumentError, SubmissionError

__all__ = ["SubmissionGuard"]

_SHOWN = 5  # offenders listed per problem


def read_csv_strings(path, what: str = "CSV file") -> pl.DataFrame:
    """A Kaggle CSV (sample submission, submission, labels) with every column as strings: ids and
    values kept verbatim, empty fields '', blank lines (often one at the end) dropped as Kaggle's
    reader drops them. ``what`` names the file in errors."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{what} {path} does not exist; pass its path (see kagglekit.kaggle.find_input)")
    try:
        frame = pl.read_csv(path, infer_schema_length=0)  # infer_schema=False only from polars 1.0
    except pl.exceptions.NoDataError as exc:
        raise SubmissionError(f"{what} {path} is empty; it needs a header and one row per test id") from exc
    return frame.filter(~pl.all_horizontal(pl.all().is_null())).with_columns(pl.all().fill_null(""))


def _read_reference(source) -> pl.DataFrame:
    """The sample submission as strings (see :func:`read_csv_strings`), or the frame given."""
    return source if isinstance(source, pl.DataFrame) else read_csv_strings(source, "sample submission")


def _as_frame(rows) -> pl.DataFrame:
    if isinstance(rows, pl.DataFrame):
        return rows
    if isinstance(rows, Mapping):
        try:
            return pl.DataFrame(dict(rows))
        except pl.exceptions.ShapeError as exc:
            lengths = ", ".join(f"{name!r}: {len(values)}" for name, values in rows.items())
            raise SubmissionError(f"the submission's columns have different lengths ({lengths}); give one value per id in each") from exc
    raise InvalidArgumentError(
        f"a submission must be a polars DataFrame or a dict of columns, got {type(rows).__name__} "
        "(pl.from_pandas(df) converts a pandas DataFrame)"
    )


def _listed(values) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:_SHOWN])
    return f"{shown}, ... ({len(values)} in all)" if len(values) > _SHOWN else shown


def write_csv_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV to ``path`` via a fsynced temporary file and ``os.replace``."""
    with atomic_open(path, "wb") as f:
        frame.write_csv(f)


class SubmissionGuard:
    """Keeps ``path`` a valid submission from the moment the guard is entered.

    ``sample_submission``: path or polars DataFrame; defines the columns (and their order), the id
    column (``id_column``, default: the first) and the set of ids; its rows, with the columns in
    ``fill`` replaced by constants, are the fallback. Without a sample, ``fallback`` (a frame or a
    dict of columns, e.g. the test ids with default predictions) is both the fallback and the
    reference. Values are compared as written: ids are matched as strings.

    On entry the fallback is written atomically (stale temporary files of an earlier killed run are
    removed). :meth:`commit` validates a frame (columns, missing, duplicated and unknown ids; null,
    NaN, infinite and nested values; the error lists the first offenders of each) and then replaces the file
    atomically; it may be called many times (e.g. after each model of an ensemble). An exception in
    the block leaves the last valid file in place and propagates, unless ``suppress_errors=True``:
    then it is printed and swallowed so that the kernel ends normally with that file (a kernel that
    raises has no submission at all).
    """

    def __init__(
        self,
        path="submission.csv",
        sample_submission=None,
        *,
        fill: Mapping | None = None,
        fallback=None,
        id_column: str | None = None,
        suppress_errors: bool = False,
    ):
        if sample_submission is None and fallback is None:
            raise InvalidArgumentError(
                "SubmissionGuard needs sample_submission (path or frame) or fallback (the rows to write "
                "until a real submission is committed)"
            )
        self.path = Path(path)
        self.reference = _read_reference(sample_submission) if sample_submission is not None else _as_frame(fallback)
        self.id_column = id_column or self.reference.columns[0]
        if self.id_column not in self.reference.columns:
            raise InvalidArgumentError(
                f"id_column {self.id_column!r} is not a column of the sample: {self.reference.columns}"
            )
        self._expected_ids = self.reference.get_column(self.id_column).cast(pl.Utf8)  # validate() runs per commit
        repeated = self._expected_ids.filter(self._expected_ids.is_duplicated()).unique(maintain_order=True)
        if repeated.len():
            named = sample_submission if isinstance(sample_submission, (str, Path)) else "the sample submission"
            raise SubmissionError(f"{named} has duplicated ids in {self.id_column!r}: {_listed(repeated.to_list())}; "
                                  "a submission holds each id once: re-download the competition's sample, or drop "
                                  "the repeated rows from it")
        self._expected_list = self._expected_ids.to_list()
        rows = self.reference if fallback is None else _as_frame(fallback)
        if fill:
            unknown = set(fill) - set(rows.columns)
            if unknown:
                raise InvalidArgumentError(
                    f"fill names columns {sorted(unknown)} that the sample does not have: {rows.columns}"
                )
            rows = rows.with_columns([pl.lit(value).alias(name) for name, value in fill.items()])
        self.fallback = rows
        self.suppress_errors = suppress_errors
        self.committed = False

    def validate(self, rows) -> pl.DataFrame:
        """Return ``rows`` as a frame with the sample's column order, or raise SubmissionError."""
        frame = _as_frame(rows)
        columns = self.reference.columns
        problems = []
        missing_cols = [c for c in columns if c not in frame.columns]
        extra_cols = [c for c in frame.columns if c not in columns]
        if missing_cols:
            problems.append(f"missing columns: {_listed(missing_cols)}")
        if extra_cols:
            problems.append(f"unexpected columns: {_listed(extra_cols)}")
        if self.id_column in frame.columns:
            ids = frame.get_column(self.id_column).cast(pl.Utf8)
            expected = self._expected_ids
            duplicated = ids.filter(ids.is_duplicated()).unique(maintain_order=True)
            # is_in takes plain lists alike in every polars version (a Series changed meaning in 1.x)
            missing = expected.filter(~expected.is_in(ids.to_list()))
            unknown = ids.filter(~ids.is_in(self._expected_list))
            if duplicated.len():
                problems.append(f"duplicated ids: {_listed(duplicated.to_list())}")
            if missing.len():
                problems.append(f"missing ids: {_listed(missing.to_list())}")
            if unknown.len():
                problems.append(f"unknown ids (not in the sample submission): {_listed(unknown.to_list())}")
            for column in frame.columns:
                values = frame.get_column(column)
                if values.dtype.is_nested() or values.dtype == pl.Object:
                    problems.append(f"column {column!r} holds {values.dtype} values; a CSV cell needs one number or string "
                                    "(join a list into a string first, e.g. ' '.join(map(str, values)))")
                    continue
                bad = values.is_null()
                if values.dtype.is_float():
                    bad = bad | ~values.is_finite()
                if bad.any():
                    problems.append(f"null, NaN or infinite value in column {column!r} for ids: {_listed(ids.filter(bad).to_list())}")
        if problems:
            raise SubmissionError(
                f"submission for {self.path} does not match the sample submission "
                f"({len(self.reference)} rows, columns {columns}, id column {self.id_column!r}):\n- "
                + "\n- ".join(problems)
                + "\nFix the rows; the file on disk still holds the last valid submission."
            )
        return frame.select(columns)

    def write_fallback(self) -> Path:
        """Write the fallback rows (validated) atomically; remove leftovers of a killed earlier write."""
        frame = self.validate(self.fallback)
        for stale in self.path.parent.glob(temp_pattern(self.path)):
            with contextlib.suppress(OSError):
                stale.unlink()
        write_csv_atomic(frame, self.path)
        return self.path

    def commit(self, rows) -> Path:
        """Validate ``rows`` and atomically replace the submission file with them."""
        frame = self.validate(rows)
        write_csv_atomic(frame, self.path)
        self.committed = True
        return self.path

    def __enter__(self) -> "SubmissionGuard":
        self.write_fallback()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or not issubclass(exc_type, Exception) or not self.suppress_errors:
            return False
        kept = "the last committed submission" if self.committed else "the fallback submission"
        traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        print(f"SubmissionGuard: error suppressed; {self.path} keeps {kept}", file=sys.stderr)
        return True
