"""The one execute template every pipeline kind runs on (:class:`~kagglekit.pipeline.kind.PipelineKind`).

    guard      the sample's rows written as submission.csv before anything else can fail
    config     read once, checked; its mistakes raise with that file on disk
    prepare    the kind's files (threshold, decision), read once
    budget     ``[budget]`` from now, or a worker's share of the parent's deadline
    workers    ``workers = N | "gpus"``: the ids go to worker processes, the rows come back (workers.py)
    inputs     found per id; ids without one keep the fallback row, counted in one note
    plan       the kind's models loaded and probed once; none usable: "no usable model" rows
    units      each through the budget, degrading TTA views then models, a failure costing its own rows
    report     what happened, returned whatever raised
"""

from __future__ import annotations

import logging
import time

from kagglekit.pipeline.config import kind_of, read_config
from kagglekit.pipeline.kind import get_kind
from kagglekit.pipeline.loop import note_missing, run_items, start_run

__all__ = ["execute"]


def execute(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None, command=None, shard=None,
            kind=None):
    """Run the pipeline kind the config names and return its report.

    ``config``: TOML path, dict, :class:`~kagglekit.pipeline.config.ConfigSource` or checked config;
    relative paths against ``base_dir`` (default: the TOML's folder, or the current folder).
    ``input_dir``: the competition folder (default :func:`kagglekit.kaggle.env.input_dir`);
    ``output_dir``: where the submission goes (default :func:`kagglekit.kaggle.env.working_dir`).
    ``budget``: a :class:`kagglekit.kaggle.Budget` (default: from ``[budget]``, starting now).
    ``command``: the kind (or a variant of it) that the caller runs, e.g. "classify" for
    :func:`~kagglekit.pipeline.classify`; a config of another kind is refused, naming the command to use,
    after the fallback is written. ``kind``: the kind itself, and ``shard`` its share of the ids: what a
    worker process is handed (not for callers).
    """
    start = time.monotonic()
    source = read_config(config, base_dir)
    kind = kind or kind_of(source)
    if command is not None and kind.command != command:
        kind = get_kind(command)  # its config check refuses this config, naming the command to use
    run = start_run(kind, source, input_dir, output_dir, shard)
    report = kind.new_report(run)
    try:
        state = kind.prepare(run, report)
        budget = _budget(run, budget, shard)
        if _splits(run, shard):
            from kagglekit.pipeline.workers import run_on_workers

            return run_on_workers(kind, run, source, budget, report)
        _run_units(kind, run, report, state, budget)
        return report
    finally:
        report.seconds = time.monotonic() - start


def _budget(run, budget, shard):
    from kagglekit.kaggle.budget import Budget

    if shard is not None:
        total, reserve, started_at = shard.budget
        return Budget(total, reserve, started_at=started_at)
    return budget or Budget(run.config.budget.seconds, run.config.budget.reserve)


def _splits(run, shard) -> bool:
    """Whether this run hands its ids to worker processes (not itself a worker, and more than one device)."""
    if shard is not None or run.config.workers == 1:
        return False
    from kagglekit.pipeline.workers import worker_devices

    return len(worker_devices(run.config.workers, run.config.device)) > 1


def _run_units(kind, run, report, state, budget) -> None:
    """Inputs, the kind's plan, its units under the budget; rows without an input or a model fall back."""
    ids = run.ids
    found, where = kind.find_inputs(run.config, run.input_dir, ids, report, run.sample_ids)
    report.inputs = found
    note_missing(report, ids, found, where)
    pending = [(i, found[i]) for i in ids if i in found]
    plan = kind.plan(run, pending, report, state) if pending else None
    if plan is None:
        unusable = [i for i, _ in pending if i not in report.fallback]
        if unusable:
            report.note("no usable model: every image keeps the fallback row", logging.ERROR)
            report.fallback.update({i: "no usable model" for i in unusable})
        return
    run_items(plan.units, plan.cost, plan.degrader, plan.predict, budget, report, unit=plan.unit)
    report.views, report.models = plan.degrader.views, plan.degrader.models
    kind.finish(run, report)
