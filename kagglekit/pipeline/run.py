"""The run loop every pipeline shares: the fallback submission first, then each item in turn under the
time budget, a failure costing one fallback row, and a report with the exit code.

    report = RunReport(submission, id_column)
    guard = write_fallback(report.submission, sample, fill, id_column)   # a valid file from here on
    run_items(pending, cost, degrader, predict, budget, report)          # predict(id, path) -> detail
    report.exit_code(strict)                                             # 0, or 3 when nothing was predicted

Per item the log gets one line, ``[n/N] id: predicted (...)`` or ``[n/N] id: <reason>``; the traceback
of a failure only at DEBUG level (``kagglekit -v``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kagglekit.errors import InvalidArgumentError, SubmissionError

__all__ = ["RunReport", "read_sample", "resolve_device", "resolve_dirs", "run_items", "write_fallback"]

logger = logging.getLogger("kagglekit.pipeline")

EXIT_PREDICTED, EXIT_ALL_FALLBACK = 0, 3


@dataclass
class RunReport:
    """What a run did: the submission's path and id column, the input file of each id, ``predicted`` ids,
    ``fallback`` ids with the reason, the ``events`` worth reading (skipped models, adapted inputs,
    dropped views/models, failures), the ``device``, and the number of TTA ``views`` and ``models`` in
    use at the end."""

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

    def summary(self) -> str:
        lines = [(f"{self.submission}: {len(self.predicted)} predicted, {len(self.fallback)} fallback rows, "
                  f"{self.views} TTA view(s) x {self.models} model(s) at the end"
                  f"{f' on {self.device}' if self.device else ''}, {self.seconds:.1f} s")]
        lines += [f"  fallback {i}: {why}" for i, why in self.fallback.items()]
        lines += [f"  event: {e}" for e in self.events]
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


def write_fallback(path: Path, reference, fill: dict, id_column: str):
    """A :class:`~kagglekit.kaggle.submission.SubmissionGuard` whose fallback (the sample's rows with
    ``fill``) is already on disk; an output folder that cannot be written is a SubmissionError naming it."""
    from kagglekit.kaggle.submission import SubmissionGuard

    guard = SubmissionGuard(path, reference, fill=fill, id_column=id_column)
    try:
        guard.write_fallback()
    except OSError as exc:
        raise SubmissionError(f"cannot write {path} ({exc.strerror or exc}); pass an output folder you can write "
                              "to (--output, or /kaggle/working in a kernel)") from None
    logger.info("fallback submission written: %s (%d rows); each prediction replaces its row", path, len(reference))
    return guard


def resolve_device(name: str):
    """The torch device of a checked config value: ``"auto"`` is CUDA when there is a GPU, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_items(pending: list[tuple[str, Path]], cost: dict[str, float], degrader, predict: Callable[[str, Path], str],
              budget, report: RunReport, unit: str = "image") -> None:
    """Call ``predict(id, path)`` for each of ``pending`` in turn; it stores its row and returns a short detail.

    A failure (any exception) keeps the item's fallback row with the reason. ``cost`` (e.g. pixels) per id
    is the unit of work the ``budget`` projects from; when the projected finish passes the budget,
    ``degrader.step()`` gives up TTA views, then models, and items left when the budget is spent keep
    their fallback rows.
    """
    total, done, cheapest = sum(cost.values()), 0, False
    budget.projected_finish(0, max(total, 1), degrader.key)
    for n, (i, path) in enumerate(pending):
        where = f"[{n + 1}/{len(pending)}] {i}"
        if budget.remaining <= 0:
            left = [j for j, _ in pending[n:]]
            report.fallback.update({j: "time budget exhausted" for j in left})
            report.note(f"time budget exhausted after {budget.elapsed:.0f} s: {len(left)} {unit}(s) keep the fallback row")
            break
        try:
            with budget.step(unit):
                detail = predict(i, path)
            report.predicted.append(i)
            logger.info("%s: predicted (%s)", where, detail)
        except Exception as exc:  # noqa: BLE001 - whatever goes wrong with one item costs that item's row only
            report.fallback[i] = f"{type(exc).__name__}: {exc}"
            logger.warning("%s: %s (fallback row)", where, report.fallback[i])
            logger.debug("%s: traceback", i, exc_info=True)
        done += cost[i]
        if done < total and budget.will_overrun(done, total, degrader.key):
            finish = budget.projected_finish(done, total, degrader.key)
            step = degrader.step()
            if step or not cheapest:
                report.note(f"{step or 'nothing left to drop'}: projected finish {finish:.0f} s passes the "
                            f"budget ({budget.total - budget.reserve:.0f} s)")
            cheapest = step is None
            budget.projected_finish(done, total, degrader.key)  # measure the new setting's rate from here
