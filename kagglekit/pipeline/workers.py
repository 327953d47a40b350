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

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["Shard", "run_on_workers", "worker_devices"]

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


def _work(kind, source, input_dir, output_dir, shard: Shard):
    """In the worker process: the pipeline on ``shard``, logging to stderr with the worker's number."""
    if shard.device.startswith("cuda"):  # before CUDA starts in this process: it sees its own GPU as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = shard.device.split(":")[1]
        shard = dataclasses.replace(shard, device="cuda:0")
    log = logging.getLogger("kagglekit")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(levelname)s [worker {shard.index}] %(message)s"))
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.INFO)
    from kagglekit.pipeline.execute import execute

    return execute(source, input_dir, output_dir, shard=shard, kind=kind)


@contextlib.contextmanager
def _main_not_reimported():
    """Start spawned processes without re-running the caller's script: spawn re-imports ``__main__`` in each
    child (to find what the parent defined there), which in a script without an
    ``if __name__ == "__main__":`` guard runs the pipeline again and breaks every worker. The workers
    need nothing from ``__main__``: they get the kind and the config, so the script is hidden from spawn."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _check_importable(kind) -> None:
    if type(kind).__module__ == "__main__":
        raise PipelineConfigError(f"workers: the pipeline kind {kind.name!r} is defined in the script itself, which "
                                  "worker processes cannot import; define it in a module of its own and import it, "
                                  "or run with workers = 1")


def run_on_workers(kind, run, source, budget, report):
    """Split ``run``'s ids over the workers its config's ``workers`` asks for (see the module docstring); fill
    and return ``report``.

    ``kind``: the :class:`~kagglekit.pipeline.kind.PipelineKind`; ``run``: the
    :class:`~kagglekit.pipeline.loop.Started` of the parent (its fallback on disk); ``source``: the
    config as read (:class:`~kagglekit.pipeline.config.Source`), handed to every worker.
    Holds, in the parent, the submission's rows; each worker holds what the pipeline holds."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import polars as pl

    from kagglekit.kaggle import read_csv_strings
    from kagglekit.pipeline.loop import row_store

    _check_importable(kind)
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
        with _main_not_reimported():
            futures = {pool.submit(_work, kind, source, run.input_dir, scratch / f"worker{s.index}", s): s
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
            report.merge(part, prefix)
            logger.info("%s: %d predicted, %d fallback rows merged into %s", prefix, len(part.predicted),
                        len(part.fallback), run.guard.path)
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)
    report.order_ids(ids)
    report.device = ", ".join(devices)
    return report
