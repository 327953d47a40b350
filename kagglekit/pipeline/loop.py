"""The run loop every pipeline shares: the fallback submission first, then each unit of work in turn
under the time budget, a failure costing its rows only, and a report with the exit code.

    run = start_run(kind, source, input_dir, output_dir)       # fallback written, config checked
    run_items(units, cost, degrader, predict, budget, report)  # predict(ids, payload) -> (failed, detail)
    report.exit_code(strict)                                   # 0, or 3 when nothing was predicted

:func:`kagglekit.pipeline.execute.execute` composes them for every kind. A unit is one image for
``segment``, a chunk of images for ``classify``, one slide for ``slides``. Per unit the log gets one
line, ``[n/N] id: predicted (...)``, and each failed id one line with its reason; the traceback of a
failure only at DEBUG level (``kagglekit -v``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from kagglekit.errors import InvalidArgumentError, KagglekitError, SubmissionError

__all__ = ["RunReport", "Started", "match_inputs", "read_sample", "resolve_dirs", "row_store",
           "run_items", "start_run", "write_fallback"]

logger = logging.getLogger("kagglekit.pipeline")

EXIT_PREDICTED, EXIT_ALL_FALLBACK = 0, 3
SHOWN_FALLBACKS = 20  # fallback rows listed one by one in a summary; the reasons are counted for all


def _default(f):
    """The default value of dataclass field ``f``."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


@dataclass
class RunReport:
    """What a run did: the submission's path and id column, the input file of each id, ``predicted`` ids,
    ``fallback`` ids with the reason, the ``events`` worth reading (skipped models, adapted inputs,
    dropped views/models, failures), the ``device``, the number of TTA ``views`` and ``models`` in
    use at the end, the seconds it took, the pipeline ``kind`` that ran, and the original's (height,
    width) of each id read from a smaller file (``inputs.files`` with a scale: a thumbnail)."""

    submission: Path
    id_column: str = "id"
    inputs: dict[str, Path] = field(default_factory=dict)
    predicted: list[str] = field(default_factory=list)
    fallback: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    device: str = ""
    views: int = 0
    models: int = 0
    seconds: float = 0.0
    kind: str = ""
    original_size: dict[str, tuple[int, int]] = field(default_factory=dict)

    def note(self, message: str, level: int = logging.WARNING) -> None:
        """Log ``message`` and keep it among the events."""
        logger.log(level, message)
        self.events.append(message)

    def note_once(self, message: str, level: int = logging.WARNING) -> None:
        """:meth:`note`, unless the same message was noted before (a per-image fact said once per run)."""
        if message not in self.events:
            self.note(message, level)

    def exit_code(self, strict: bool = False) -> int:
        """0 when at least one row was predicted (``strict``: and none fell back), else 3; the file is valid either way."""
        if not self.predicted or (strict and self.fallback):
            return EXIT_ALL_FALLBACK
        return EXIT_PREDICTED

    RUN_FIELDS: ClassVar[frozenset] = frozenset({"submission", "id_column", "device", "seconds", "events"})
    """Fields that describe the run itself, which :meth:`merge` leaves to the parent."""

    def merge(self, part: RunReport, prefix: str) -> None:
        """Add a worker's report of a disjoint share of the ids: lists and dicts of ids joined, its events
        prefixed, the fewest views and models in use, and any other field the worker set (its default
        here) taken as the worker says. A report type with fields of another nature overrides this."""
        self.events += [f"{prefix}: {e}" for e in part.events]
        for f in fields(self):
            ours, theirs = getattr(self, f.name), getattr(part, f.name)
            if f.name in self.RUN_FIELDS:
                continue
            if isinstance(ours, list):
                ours += theirs
            elif isinstance(ours, dict):
                ours.update(theirs)
            elif f.name in ("views", "models"):
                setattr(self, f.name, min(ours, theirs) if ours and theirs else ours or theirs)
            elif ours == _default(f) and theirs != ours:
                setattr(self, f.name, theirs)

    def order_ids(self, ids: list[str]) -> None:
        """Put every list of ids in the order of ``ids`` (the sample's), whichever worker finished first."""
        order = {i: k for k, i in enumerate(ids)}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in self.RUN_FIELDS and isinstance(value, list) and all(i in order for i in value):
                value.sort(key=order.__getitem__)

    def fallback_reasons(self) -> list[tuple[str, int]]:
        """Why rows fell back, grouped (the text before a reason's first ": ", so that one reason with
        different files is one group) with their counts, most frequent first."""
        counts: dict[str, int] = {}
        for why in self.fallback.values():
            counts[why.split(": ", 1)[0]] = counts.get(why.split(": ", 1)[0], 0) + 1
        return sorted(counts.items(), key=lambda item: -item[1])

    def summary(self) -> str:
        """What the run did, in lines: the counts, the first fallback rows with their reasons, the reasons
        grouped, the events; when most rows fell back for one reason, the last line says so."""
        shown = list(self.fallback.items())[:SHOWN_FALLBACKS]
        lines = [(f"{self.submission}: {len(self.predicted)} predicted, {len(self.fallback)} fallback rows, "
                  f"{self.views} TTA view(s) x {self.models} model(s) at the end"
                  f"{f' on {self.device}' if self.device else ''}, {self.seconds:.1f} s")]
        lines += [f"  fallback {i}: {why}" for i, why in shown]
        if len(self.fallback) > len(shown):
            lines.append(f"  ... and {len(self.fallback) - len(shown)} more fallback rows")
        reasons = self.fallback_reasons()
        lines += [f"  fallback reason ({n} rows): {why}" for why, n in reasons]
        lines += [f"  event: {e}" for e in self.events]
        if reasons and reasons[0][1] > len(self.predicted):
            why, n = reasons[0]
            lines.append(f"MOST ROWS FELL BACK: {n} of {len(self.predicted) + len(self.fallback)} rows keep the "
                         f"fallback because of: {why} (see the rows above)")
        return "\n".join(lines)


def resolve_dirs(input_dir, output_dir) -> tuple[Path, Path]:
    """The competition and output folders (defaults: :mod:`kagglekit.kaggle.env`); an output that is a file is refused."""
    from kagglekit.kaggle.env import input_dir as default_input
    from kagglekit.kaggle.env import working_dir

    input_dir = Path(input_dir) if input_dir is not None else default_input()
    output_dir = Path(output_dir) if output_dir is not None else working_dir()
    if output_dir.exists() and not output_dir.is_dir():
        raise InvalidArgumentError(f"the output {output_dir} is a file; pass the folder submission.csv goes to")
    return input_dir, output_dir


def read_sample(sample: Path):
    """The sample submission as strings (polars), or SubmissionError naming the path and the fix."""
    from kagglekit.kaggle import read_csv_strings

    if not sample.is_file():
        raise SubmissionError(f"sample submission {sample} not found; check output.sample_submission and the input "
                              "folder (--input), or attach the competition's data")
    return read_csv_strings(sample, "sample submission")


def write_fallback(path: Path, reference, fill: dict, id_column: str, sample: Path | None = None):
    """A :class:`~kagglekit.kaggle.submission.SubmissionGuard` whose fallback (the sample's rows with
    ``fill``) is already on disk; a sample with repeated ids, or an output folder that cannot be written,
    is a SubmissionError naming it."""
    from kagglekit.kaggle.submission import SubmissionGuard

    try:
        guard = SubmissionGuard(path, reference, fill=fill, id_column=id_column)
    except SubmissionError as exc:
        raise SubmissionError(f"{sample}: {exc}" if sample is not None else str(exc)) from None
    try:
        guard.write_fallback()
    except OSError as exc:
        raise SubmissionError(f"cannot write {path} ({exc.strerror or exc}); pass an output folder you can write "
                              "to (--output, or /kaggle/working in a kernel)") from None
    logger.info("fallback submission written: %s (%d rows); each prediction replaces its row", path, len(reference))
    return guard


@dataclass
class Started:
    """What :func:`start_run` hands the pipeline: the checked config, the guard (its fallback on disk),
    the sample as read, the folders, the id column and the device."""

    config: object
    guard: object
    reference: object
    sample: Path
    input_dir: Path
    output_dir: Path
    id_column: str
    device: object
    only: frozenset | None = None  # a worker's share of the ids (see kagglekit.pipeline.workers)

    @property
    def ids(self) -> list[str]:
        """The ids this process predicts: every id of the sample, or a worker's share."""
        ids = self.sample_ids
        return ids if self.only is None else [i for i in ids if i in self.only]

    @property
    def sample_ids(self) -> list[str]:
        """Every id of the sample submission (a worker's ``ids`` are its share of them)."""
        import polars as pl

        return self.guard.fallback.get_column(self.id_column).cast(pl.Utf8).to_list()

    @property
    def config_notes(self) -> tuple[str, ...]:
        """What reading the config noted (deprecated spellings), for the report's events."""
        return tuple(getattr(self.config, "notes", ()))


def start_run(kind, source, input_dir, output_dir, shard=None) -> Started:
    """Write the fallback submission from the sample and the ``[output]`` section alone, then check the
    whole config (``source``: a :class:`~kagglekit.pipeline.config.Source` of pipeline ``kind``), the
    sample's columns and the device: their mistakes raise with the valid fallback already on disk. Only
    an unreadable sample (a broken config is named first) or an unwritable output folder leave no file.
    A worker's ``shard`` (its ids and device) narrows the run."""
    from kagglekit.infer.batching import resolve_device
    from kagglekit.pipeline.config import early_output, load_config
    from kagglekit.pipeline.sections import check_device

    input_dir, output_dir = resolve_dirs(input_dir, output_dir)
    output = early_output(source, kind)
    sample = input_dir / output.sample_submission
    try:
        reference = read_sample(sample)
    except KagglekitError:
        load_config(source, kind=kind)  # a config that cannot load is the first thing to fix: it raises here
        raise
    id_column = output.columns(reference)[0]
    guard = write_fallback(output_dir / output.submission, reference, output.fill(reference), id_column, sample)
    # From here on the submission file is valid, whatever fails.
    cfg = load_config(source, kind=kind)
    cfg.output.check_columns(reference, sample)
    only = frozenset(shard.ids) if shard is not None else None
    if shard is None:  # a device this machine lacks stops the run here, once (--check only notes it); a worker
        check_device(cfg.device)  # sees its own GPU as cuda:0, so its config's cuda:1 is not checked there
    device = resolve_device(shard.device if shard is not None else cfg.device)
    return Started(cfg, guard, reference, sample, input_dir, output_dir, id_column, device, only)


def match_inputs(input_dir: Path, ids: list[str], pattern: str, id_from: str, report: RunReport,
                 sample=None) -> dict[str, Path]:
    """Input path per id of ``ids``, from the files ``pattern`` matches under ``input_dir`` (the id is the
    file's stem, or its folder's name); ids without a file get a fallback reason. ``sample``: every id of
    the sample submission (default ``ids``); a worker's files of the other workers' ids are passed over
    quietly, only files of no sample id are noted as ignored. DICOM files are passed over with the fix
    (read by content: kagglekit reads no DICOM)."""
    from kagglekit.io.formats import DICOM_HINT, file_format

    found: dict[str, Path] = {}
    wanted, in_sample = set(ids), set(ids if sample is None else sample)
    ignored, dicom = [], {}
    for path in sorted(input_dir.glob(pattern)):
        key = path.stem if id_from == "stem" else path.parent.name
        if key not in wanted:
            if key not in in_sample:
                ignored.append(path.name)
        elif path.is_file() and file_format(path) == "dicom":
            dicom[key] = path.name
        elif key in found:
            report.note(f"{path} and {found[key]} both give id {key!r}; using the first")
        else:
            found[key] = path
    if ignored:
        report.note(f"{len(ignored)} input(s) not in the sample submission ignored, e.g. {ignored[:3]}", logging.INFO)
    if dicom:
        report.note(f"{len(dicom)} DICOM file(s) matching {pattern!r} passed over, e.g. {list(dicom.values())[:3]}: "
                    f"{DICOM_HINT}")
    for i in ids:
        if i not in found:
            report.fallback[i] = (f"only a DICOM file matches {pattern!r}: {DICOM_HINT}" if i in dicom
                                  else f"no input matches {pattern!r} under {input_dir}")
    return found


def note_missing(report: RunReport, ids: list[str], found, where: str) -> None:
    """Note once how many ids have no input (each keeps its fallback row)."""
    missing = [i for i in ids if i not in found]
    if missing:
        report.note(f"{len(missing)} id(s) of the sample submission have no input {where}, e.g. {missing[:3]}; "
                    "they keep the fallback row")


def run_items(units: list[tuple[list[str], object]], cost: list[float], degrader,
              predict: Callable[[list[str], object], tuple[dict, str]], budget, report: RunReport,
              unit: str = "image") -> None:
    """Call ``predict(ids, payload)`` for each unit of ``units`` in turn; it stores its rows and returns
    ``(failed, detail)``: ``{id: reason}`` for ids it could not predict, and a short detail for the log.

    An exception fails the whole unit; a failed id keeps its fallback row with the reason. ``cost`` (e.g.
    pixels, or images) per unit is the work the ``budget`` projects from; when the projected finish
    passes the budget, ``degrader.step()`` gives up TTA views, then models, and units left when the
    budget is spent keep their fallback rows.
    """
    total, done, cheapest = sum(cost), 0, False
    budget.projected_finish(0, max(total, 1), degrader.key)
    for n, (ids, payload) in enumerate(units):
        where = f"[{n + 1}/{len(units)}] {ids[0] if len(ids) == 1 else f'{ids[0]}..{ids[-1]} ({len(ids)} {unit}s)'}"
        if budget.remaining <= 0:
            left = [i for ids_left, _ in units[n:] for i in ids_left]
            report.fallback.update({i: "time budget exhausted" for i in left})
            report.note(f"time budget exhausted after {budget.elapsed:.0f} s: {len(left)} {unit}(s) keep the fallback row")
            break
        try:
            with budget.step(unit):
                failed, detail = predict(ids, payload)
        except Exception as exc:  # noqa: BLE001 - whatever goes wrong with one unit costs that unit's rows only
            failed, detail = {i: f"{type(exc).__name__}: {exc}" for i in ids}, None
            logger.debug("%s: traceback", where, exc_info=True)
        report.predicted += [i for i in ids if i not in failed]
        report.fallback.update(failed)
        if len(failed) < len(ids):
            logger.info("%s: predicted (%s)%s", where, detail, f", {len(failed)} fallback row(s)" if failed else "")
        for i, reason in failed.items():
            logger.warning("%s: %s (fallback row)", where if len(ids) == 1 else f"{where}: {i}", reason)
        done += cost[n]
        if done < total and budget.will_overrun(done, total, degrader.key):
            finish = budget.projected_finish(done, total, degrader.key)
            step = degrader.step()
            if step or not cheapest:
                report.note(f"{step or 'nothing left to drop'}: projected finish {finish:.0f} s passes the "
                            f"budget ({budget.total - budget.reserve:.0f} s)")
            cheapest = step is None
            budget.projected_finish(done, total, degrader.key)  # measure the new setting's rate from here


def row_store(guard, columns: list[str]):
    """``store(ids, {column: values})``: put those rows' values (strings) into ``columns`` and commit the whole
    file atomically; when the commit fails, the rows are put back as they were and the error raised."""
    import polars as pl

    ids = guard.fallback.get_column(guard.id_column).cast(pl.Utf8).to_list()
    row_of = {i: k for k, i in enumerate(ids)}
    values = {c: guard.fallback.get_column(c).cast(pl.Utf8).to_list() for c in columns}

    def store(chunk_ids: list[str], new: dict) -> None:
        rows = [row_of[i] for i in chunk_ids]
        before = {c: [values[c][r] for r in rows] for c in new}
        for c, column in new.items():
            for r, v in zip(rows, column):
                values[c][r] = v
        try:
            guard.commit(guard.fallback.with_columns([pl.Series(c, v, dtype=pl.Utf8) for c, v in values.items()]))
        except BaseException:
            for c, old in before.items():
                for r, v in zip(rows, old):
                    values[c][r] = v
            raise

    return store
