"""``workers`` in ``segment`` and ``classify``: the test images split over worker processes, one per GPU
(``workers = "gpus"``: the two T4s of a Kaggle kernel) or N on the CPU, merged into the one submission.

The parent writes the fallback submission first, as every run does. Each worker is a fresh process
(spawn) that sees only its own GPU and runs the same pipeline on its share of the ids (every n-th id,
so big and small images spread evenly), into a submission of its own in a temporary folder. As each
worker finishes, the parent copies its predicted rows into the one submission through the same guard
(an atomic replace per worker); the ids of a worker that dies keep their fallback rows, with the reason.
The workers share the run's time budget (the same deadline) and degrade on their own.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["Shard", "run_on_workers", "shard_budget", "splits", "worker_devices"]

logger = logging.getLogger("kagglekit.pipeline")


@dataclasses.dataclass(frozen=True)
class Shard:
    """What one worker runs: its ids, its device, and the budget's (total, reserve, started_at)."""

    index: int
    ids: tuple[str, ...]
    device: str
    budget: tuple[float, float, float]


def worker_devices(workers, device: str) -> list[str]:
    """The device of each worker: ``"gpus"``: one per CUDA device (one ``"cpu"`` worker when there is none);
    N: N workers, on the CUDA devices in turn when ``device`` is CUDA, else all on the CPU."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if workers == "gpus":
        return [f"cuda:{k}" for k in range(gpus)] or ["cpu"]
    on_cuda = device.startswith("cuda") or (device == "auto" and gpus > 0)
    return [f"cuda:{k % gpus}" if on_cuda and gpus else "cpu" for k in range(workers)]


def splits(run, shard: Shard | None) -> bool:
    """Whether this run hands its ids to worker processes (not itself a worker, and more than one device)."""
    workers = run.config.workers
    return shard is None and workers != 1 and len(worker_devices(workers, run.config.device)) > 1


def shard_budget(shard: Shard):
    """The run's budget as a worker sees it: the parent's, with the parent's start (one deadline for all)."""
    from kagglekit.kaggle import Budget

    total, reserve, started_at = shard.budget
    return Budget(total, reserve, started_at=started_at)


def _work(kind: str, config, input_dir, output_dir, base_dir, shard: Shard):
    """In the worker process: the pipeline on ``shard``, logging to stderr with the worker's number."""
    if shard.device.startswith("cuda"):  # before CUDA starts in this process: it sees its own GPU as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = shard.device.split(":")[1]
        shard = dataclasses.replace(shard, device="cuda:0")
    log = logging.getLogger("kagglekit")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(levelname)s [worker {shard.index}] %(message)s"))
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.INFO)
    import kagglekit.pipeline as pipeline

    return getattr(pipeline, kind)(config, input_dir, output_dir, base_dir=base_dir, shard=shard)


def _merge(report, part, prefix: str) -> None:
    """Add a worker's report to the run's: ids and per-id values, its events (prefixed), the fewest views/models."""
    for f in dataclasses.fields(report):
        ours, theirs = getattr(report, f.name), getattr(part, f.name)
        if f.name == "events":
            ours += [f"{prefix}: {e}" for e in theirs]
        elif isinstance(ours, list):  # ids of disjoint shards
            ours += theirs
        elif isinstance(ours, dict):
            ours.update(theirs)
        elif f.name in ("views", "models") and theirs:
            setattr(report, f.name, min(ours, theirs) if ours else theirs)
        elif f.name == "classes" and theirs:
            report.classes = theirs


def run_on_workers(kind: str, run, config, base_dir, budget, report):
    """Split ``run``'s ids over the workers its config's ``workers`` asks for (see the module docstring); fill
    and return ``report``.

    ``run``: the :class:`~kagglekit.pipeline.loop.Started` of the parent (its fallback on disk).
    Holds, in the parent, the submission's rows; each worker holds what the pipeline holds."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import polars as pl

    from kagglekit.kaggle import read_csv_strings
    from kagglekit.pipeline.loop import row_store

    devices = worker_devices(run.config.workers, run.config.device)
    ids = run.ids
    shards = [Shard(k, tuple(ids[k :: len(devices)]), d, (budget.total, budget.reserve, budget.started_at))
              for k, d in enumerate(devices) if ids[k :: len(devices)]]
    columns = [c for c in run.guard.fallback.columns if c != run.id_column]
    store = row_store(run.guard, columns)
    report.note(f"{len(ids)} ids split over {len(devices)} workers ({', '.join(devices)})", logging.INFO)
    scratch = Path(tempfile.mkdtemp(prefix=".kagglekit-workers-", dir=run.output_dir))
    # One single-process pool per worker: a worker that dies breaks its own pool only, not the others'.
    context = multiprocessing.get_context("spawn")  # never fork: the parent may have started CUDA
    pools = [ProcessPoolExecutor(1, mp_context=context) for _ in shards]
    try:
        futures = {pool.submit(_work, kind, config, run.input_dir, scratch / f"worker{s.index}", base_dir, s): s
                   for pool, s in zip(pools, shards)}
        for future in as_completed(futures):
            shard = futures[future]
            prefix = f"worker {shard.index} ({shard.device})"
            try:
                part = future.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker costs its own rows only
                why = f"{prefix} failed: {type(exc).__name__}: {exc}"
                report.fallback.update({i: why for i in shard.ids})
                report.note(f"{why}; its {len(shard.ids)} id(s) keep the fallback row", logging.ERROR)
                continue
            rows = read_csv_strings(part.submission, "worker submission")
            predicted = rows.filter(pl.col(run.id_column).is_in(part.predicted))
            if len(predicted):
                store(predicted[run.id_column].to_list(), {c: predicted[c].to_list() for c in columns})
            _merge(report, part, prefix)
            logger.info("%s: %d predicted, %d fallback rows merged into %s", prefix, len(part.predicted),
                        len(part.fallback), run.guard.path)
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)
    order = {i: k for k, i in enumerate(ids)}
    report.predicted.sort(key=order.__getitem__)  # the sample's order, whichever worker finished first
    report.device = ", ".join(devices)
    return report
