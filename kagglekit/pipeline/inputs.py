"""Each id's input: files a glob matches (the id from the file's stem or folder), or patterns with ``{id}``
tried in order, and for files smaller than the original (a thumbnail) the original's size.

    [inputs]
    files = [{ pattern = "test_thumbnails/{id}_thumbnail.png", scale = "table" },  # the thumbnail if there is one,
             "test_images/{id}.png"]                                              # else the image itself
    [inputs.table]            # the competition's table of the originals (UBC-OCEAN's test.csv)
    path = "test.csv"
    id = "image_id"
    width = "image_width"
    height = "image_height"

A pattern's ``scale`` is its files' size over the original's: a number (``0.25``), or ``"table"`` (the
file's width over the table's). A run records the original's (height, width) of every id read from such
a file in ``report.original_size``: segment writes its mask at that size, slides read their tiles at
``[slides] scale`` of the original and tell TMAs from WSIs by the original's side. The table's other
columns can say more per id (``[slides] tma_when = "image_width < 6000"``: see :func:`table_values`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from kagglekit.pipeline.schema import Check, Invalid, PipelineConfigError, String, Table, option, section
from kagglekit.pipeline.sections import Relative

__all__ = ["FilePattern", "FilePatterns", "PatternInputs", "TableConfig", "find_by_patterns", "locate", "table_values"]

TABLE_SCALE = "table"


@dataclass(frozen=True)
class FilePattern:
    """One entry of ``inputs.files``: a pattern with ``{id}`` relative to the input folder, and the scale of
    its files relative to the original (None: they are the originals; a number; or ``"table"``)."""

    pattern: str
    scale: float | str | None = None

    def path(self, input_dir: Path, image_id: str) -> Path:
        return input_dir / self.pattern.format(id=image_id)


class FilePatterns(Check):
    """``inputs.files``: patterns with ``{id}``, each a string or ``{ pattern = "...", scale = 0.25 | "table" }``."""

    doc = '[pattern | { pattern, scale }]'
    EXAMPLE = '["test_thumbnails/{id}_thumbnail.png", "test_images/{id}.png"]'

    def convert(self, value, table):
        if not isinstance(value, list) or not value:
            raise Invalid(f"must be a list of patterns with {{id}}, tried in order, e.g. {self.EXAMPLE}")
        return tuple(self._entry(item) for item in value)

    def _entry(self, item) -> FilePattern:
        entry = dict(item) if isinstance(item, dict) else {"pattern": item}
        unknown = set(entry) - {"pattern", "scale"}
        if unknown:
            raise Invalid(f"holds unknown key(s) {sorted(unknown)} in {item!r}; an entry is a pattern or "
                          '{ pattern = "...", scale = 0.25 | "table" }')
        pattern, scale = entry.get("pattern"), entry.get("scale")
        try:
            ok = isinstance(pattern, str) and "{id}" in pattern and not Path(pattern).is_absolute()
            ok = ok and bool(pattern.format(id="x"))
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise Invalid(f"holds {pattern!r}: each pattern is relative to the input folder with the placeholder "
                          f"{{id}} only, e.g. {self.EXAMPLE}")
        numeric = isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale <= 1
        if scale is not None and scale != TABLE_SCALE and not numeric:
            raise Invalid(f"holds scale {scale!r} for {pattern!r}: a scale is the files' size over the original's, "
                          'a number in (0, 1] or "table" (from [inputs.table] width and height)')
        return FilePattern(pattern, float(scale) if numeric else scale)


@dataclass(frozen=True, kw_only=True)
class TableConfig:
    """``[inputs.table]``: the competition's CSV with a row per id (e.g. UBC-OCEAN's ``test.csv``)."""

    path: str = option(check=Relative("test.csv"), help="the table, relative to the input folder")
    id: str | None = option(None, check=String(), help="its id column (default: the first)")
    width: str | None = option(None, check=String(), help="the column of the originals' widths (for scale = \"table\")")
    height: str | None = option(None, check=String(), help="the column of the originals' heights (for scale = \"table\")")


@dataclass(frozen=True, kw_only=True)
class PatternInputs:
    """The ``[inputs]`` keys of every kind: ``files`` (patterns with ``{id}``) and ``[inputs.table]``; a kind's
    section adds its own (``glob``, ``id_from``, ...) and calls :meth:`check_files` from its ``validate``."""

    files: tuple[FilePattern, ...] | None = option(None, check=FilePatterns(),
                                                   help="patterns with {id}, the first file that exists per id "
                                                        "(instead of glob); each may carry its files' scale")
    table: TableConfig | None = section(TableConfig, optional=True, help="the competition's table of the test images")

    def check_files(self, t: Table) -> None:
        """Refuse ``files`` with the keys of a glob, which it replaces, and ``scale = "table"`` without the
        table's sizes."""
        for key in ("glob", "id_from"):
            if self.files is not None and key in t.data:
                t.fail(key, "goes with files found by a glob, but files = [...] names each id's file itself; give one "
                            "of them")
        sized = self.table is not None and self.table.width is not None and self.table.height is not None
        if any(f.scale == TABLE_SCALE for f in self.files or ()) and not sized:
            t.fail("files", 'has scale = "table", which reads the originals\' sizes from [inputs.table] width and '
                            'height; add them (UBC-OCEAN: path = "test.csv", width = "image_width", height = "image_height")')


def table_values(input_dir: Path, table: TableConfig, expressions: dict[str, str], ids: list[str]) -> dict[str, dict]:
    """``{name: {id: value}}``: each SQL expression of ``expressions`` (a column name, or e.g.
    ``"image_width < 6000"``; polars' ``sql_expr``) over the rows of ``table`` whose id is in ``ids``.
    A missing table, column or id, or an expression that does not parse, is a PipelineConfigError."""
    import polars as pl

    path = input_dir / table.path
    if not path.is_file():
        raise PipelineConfigError(f"inputs.table.path: {path} not found; it is the competition's table of the test "
                                  "images (UBC-OCEAN: test.csv), relative to the input folder")
    frame = pl.read_csv(path, infer_schema_length=None)
    id_column = table.id or frame.columns[0]
    if id_column not in frame.columns:
        raise PipelineConfigError(f"inputs.table.id: {id_column!r} is not a column of {path} ({frame.columns})")
    frame = frame.with_columns(pl.col(id_column).cast(pl.Utf8)).filter(pl.col(id_column).is_in(ids))
    values = {}
    for name, expression in expressions.items():
        try:
            column = frame.select(pl.sql_expr(expression)).to_series().to_list()
        except pl.exceptions.PolarsError as exc:
            raise PipelineConfigError(f"{name}: {expression!r} cannot be read from {path} (columns {frame.columns}): "
                                      f"{str(exc).splitlines()[0]}") from None
        values[name] = dict(zip(frame.get_column(id_column).to_list(), column))
    return values


def find_by_patterns(input_dir: Path, ids: list[str], files: tuple[FilePattern, ...], table: TableConfig | None,
                     report) -> dict[str, Path]:
    """The first existing file (or folder) of ``files`` per id of ``ids``; ids with none get a fallback
    reason. Ids read from a pattern with a scale get their original's (height, width) in
    ``report.original_size``; one that cannot get it (no table row, an unreadable header) falls back."""
    found, chosen = {}, {}
    for i in ids:
        for entry in files:
            if entry.path(input_dir, i).exists():
                found[i], chosen[i] = entry.path(input_dir, i), entry
                break
        else:
            report.fallback[i] = f"none of {[f.pattern for f in files]} exists under {input_dir}"
    counts = {f.pattern: sum(c is f for c in chosen.values()) for f in files}
    report.note(f"inputs: {', '.join(f'{n} from {p!r}' for p, n in counts.items())}", logging.INFO)
    scaled = [i for i in found if chosen[i].scale is not None]
    for i, size in _original_sizes(input_dir, scaled, chosen, table, report).items():
        report.original_size[i] = size
    for i in scaled:
        if i not in report.original_size:
            del found[i]
    return found


def _original_sizes(input_dir, ids, chosen, table, report) -> dict[str, tuple[int, int]]:
    """(height, width) of each id's original: from the table for ``scale = "table"``, else the file's size
    over its scale; the ids it cannot tell get a fallback reason."""
    from kagglekit.errors import KagglekitError
    from kagglekit.io import open_image

    from_table = [i for i in ids if chosen[i].scale == TABLE_SCALE]
    sizes = {}
    if from_table:  # the config's check made sure the table has width and height
        values = table_values(input_dir, table, {"inputs.table.height": table.height, "inputs.table.width": table.width},
                              from_table)
        heights, widths = values["inputs.table.height"], values["inputs.table.width"]
        for i in from_table:
            if i in widths and heights[i] and widths[i]:
                sizes[i] = (int(heights[i]), int(widths[i]))
            else:
                report.fallback[i] = f"{table.path} has no size of {i!r}, which inputs.files scales by the table"
    for i in ids:
        if chosen[i].scale != TABLE_SCALE:
            try:
                h, w = open_image(chosen[i].path(input_dir, i)).shape[:2]
            except KagglekitError as exc:
                report.fallback[i] = f"{type(exc).__name__}: {exc}"
                continue
            sizes[i] = (round(h / chosen[i].scale), round(w / chosen[i].scale))
    return sizes


def locate(inputs, input_dir: Path, ids: list[str], report, sample=None) -> tuple[dict, str]:
    """(input per id, where they were looked for) of an ``[inputs]`` section with ``files`` (patterns) or
    ``glob`` and ``id_from``; ``sample`` as :func:`~kagglekit.pipeline.loop.match_inputs`."""
    from kagglekit.pipeline.loop import match_inputs

    if getattr(inputs, "files", None) is not None:  # a registered kind's [inputs] may have no files
        found = find_by_patterns(input_dir, ids, inputs.files, inputs.table, report)
        return found, f"from {[f.pattern for f in inputs.files]} under {input_dir}"
    found = match_inputs(input_dir, ids, inputs.glob, inputs.id_from, report, sample)
    return found, f"matching {inputs.glob!r} under {input_dir}"
