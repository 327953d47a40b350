"""``run_slides``: a job over many slides, in this process or on Ray, resumable from its manifest.

    report = run_slides(BagJob("timm/resnet18", weights="r18.safetensors", tile=224), "train/*.png", "bags/")
    report = run_slides(job, "train/", "bags/", engine="ray", workers=2, gpus_per_worker=1)
    print(report.summary()); report.table()   # polars: slide, status, attempts, seconds, error, ...

Each slide's output is ``out_dir/<slide id><job.suffix>``, whole or absent. A rerun skips the slides
whose output exists and whose manifest row has the job's settings hash, and redoes the others: after
a crash or a kill, run the same call again. A slide that fails (raises, or kills its worker) is tried
``retries`` more times, then reported with its error; it never stops the other slides. A slide whose
error is kagglekit's own (bad input: a truncated file, a wrong shape) is reported at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from kagglekit._checks import one_of, positive_int
from kagglekit.errors import InvalidArgumentError
from kagglekit.jobs.contract import Job, JobSetupError, settings_hash
from kagglekit.jobs.manifest import Manifest
from kagglekit.jobs.slides import slide_paths
from kagglekit.jobs.worker import Task, attempt, remove_partials, set_up

__all__ = ["ENGINES", "JobReport", "output_path", "run_slides"]

log = logging.getLogger("kagglekit.jobs")

ENGINES = ("auto", "local", "ray")


@dataclass
class JobReport:
    """What a run did. ``rows``: one dict per slide of the run (slide, path, output, status, attempts,
    error, seconds, worker, and the job's own values), ``status`` being ``"done"`` (made now),
    ``"skipped"`` (kept from an earlier run), ``"empty"`` (nothing to write, e.g. no tissue) or
    ``"failed"``. ``seconds``: the whole run; ``startup_seconds``: until the workers were ready."""

    job: str
    out_dir: Path
    engine: str
    workers: int
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    startup_seconds: float = 0.0

    def _with(self, status: str) -> list[dict]:
        return [r for r in self.rows if r["status"] == status]

    @property
    def done(self) -> list[str]:
        return [r["slide"] for r in self._with("done")]

    @property
    def skipped(self) -> list[str]:
        return [r["slide"] for r in self._with("skipped")]

    @property
    def empty(self) -> list[str]:
        return [r["slide"] for r in self._with("empty")]

    @property
    def failed(self) -> dict[str, str]:
        return {r["slide"]: r["error"] for r in self._with("failed")}

    def table(self):
        """The rows as a polars DataFrame."""
        import polars as pl

        base = {"slide": pl.Utf8, "path": pl.Utf8, "output": pl.Utf8, "status": pl.Utf8, "attempts": pl.Int64,
                "seconds": pl.Float64, "error": pl.Utf8, "worker": pl.Utf8}
        extra = sorted({k for r in self.rows for k in r} - set(base) - {"hash", "traceback"})
        return pl.DataFrame([{k: r.get(k) for k in [*base, *extra]} for r in self.rows],
                            schema_overrides=base, infer_schema_length=None)

    def summary(self) -> str:
        made = [r["seconds"] for r in self._with("done")]
        per = f", {sum(made) / len(made):.2f} s per slide made" if made else ""
        lines = [f"{self.job} -> {self.out_dir}: {len(self.done)} done, {len(self.skipped)} skipped, "
                 f"{len(self.empty)} empty, {len(self.failed)} failed; {self.engine} engine, {self.workers} "
                 f"worker(s), {self.seconds:.1f} s (start-up {self.startup_seconds:.1f} s){per}"]
        lines += [f"  failed {s}: {e}" for s, e in self.failed.items()]
        return "\n".join(lines)


def output_path(out_dir, slide: str, job: Job) -> Path:
    """Where :func:`run_slides` puts ``job``'s output for ``slide``."""
    return Path(out_dir) / f"{slide}{job.suffix}"


def _engine(engine: str, address, workers: int | None) -> str:
    one_of("engine", engine, ENGINES)
    if engine != "auto":
        return engine
    if address is None and (workers or 1) <= 1:
        return "local"
    import importlib.util

    return "ray" if importlib.util.find_spec("ray") is not None else "local"


def _run_local(job: Job, tasks: list[Task], record, retries: int) -> float:
    start = time.perf_counter()
    error = set_up(job)
    if error is not None:
        raise JobSetupError(f"{job.name}: setup failed, so no slide can run: {error}")
    startup = time.perf_counter() - start
    for task in tasks:
        while task is not None:
            result = attempt(job, task)
            task = task.retry(result, retries)
        record(result)
    return startup


def _positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgumentError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return value


def run_slides(job: Job, slides, out_dir, *, engine: str = "auto", address: str | None = None,
               workers: int | None = None, cpus_per_worker: float = 1, gpus_per_worker: float = 0,
               retries: int = 3, skip_existing: bool = True, progress: bool = True) -> JobReport:
    """Run ``job`` on every slide; return a :class:`JobReport` (see the module docstring).

    slides: a folder, a glob pattern, a list of paths or ``{id: path}`` (:func:`slide_paths`).
    engine: ``"local"`` (this process, one slide after another), ``"ray"`` (``workers`` actors), or
        ``"auto"``: Ray when it is installed and more than one worker or an ``address`` is asked for.
    address: None (Ray: a private local cluster, started and stopped by this call; never one that
        ``RAY_ADDRESS`` names), or a running cluster's (``"ray://head:10001"``, ``"auto"``).
    workers: Ray actors (default: one per ``cpus_per_worker`` CPUs of the cluster, or per GPU when
        ``gpus_per_worker`` is set); each actor sees its own GPU when ``gpus_per_worker=1``.
    retries: further attempts for a slide that raised or killed its worker.
    skip_existing: False redoes every slide.

    Holds, in this process, the manifest rows and (local engine) what the job holds for one slide.
    On a cluster, ``out_dir`` and the slides must be paths every node can read and write (a shared disk).
    """
    from tqdm.auto import tqdm

    if not isinstance(job, Job):
        raise InvalidArgumentError(f"job must be a kagglekit.jobs.Job (setup(), run(slide, out_path)), got {type(job).__name__}")
    retries = positive_int("retries", retries, minimum=0)
    cpus_per_worker = _positive("cpus_per_worker", cpus_per_worker)
    gpus_per_worker = _positive("gpus_per_worker", gpus_per_worker, allow_zero=True)
    if workers is not None:
        workers = positive_int("workers", workers)
    paths = slide_paths(slides)
    engine = _engine(engine, address, workers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_partials(out_dir)
    manifest, key = Manifest(out_dir), settings_hash(job)
    report = JobReport(job.name, out_dir, engine, 1 if engine == "local" else 0)
    tasks = []
    for slide, path in paths.items():
        out, before = output_path(out_dir, slide, job), manifest.get(slide)
        if (skip_existing and before is not None and before.get("hash") == key
                and (before["status"] == "empty" or (before["status"] == "done" and job.complete(out)))):
            report.rows.append({**before, "status": "skipped", "seconds": 0.0, "kept": before["status"]})
        else:
            tasks.append(Task(slide, str(path), str(out)))
    start = time.perf_counter()
    bar = tqdm(total=len(paths), initial=len(paths) - len(tasks), unit="slide", desc=job.name, disable=not progress)

    def record(result: dict) -> None:
        task_path = paths[result["slide"]]
        row = {"slide": result["slide"], "path": str(task_path), "output": str(output_path(out_dir, result["slide"], job)),
               "hash": key, **{k: v for k, v in result.items() if k not in ("slide", "info", "retry")}, **result.get("info", {})}
        if row["status"] != "done":
            row["output"] = None
        if row["status"] == "failed":
            log.warning("slide %s failed after %d attempt(s): %s", row["slide"], row["attempts"], row["error"])
        manifest.add(row)
        report.rows.append(row)
        bar.update(1)

    try:
        if engine == "local":
            report.startup_seconds = _run_local(job, tasks, record, retries)
        elif tasks:
            from kagglekit.jobs.ray_engine import run_on_ray

            report.startup_seconds, report.workers = run_on_ray(job, tasks, record, retries=retries, workers=workers,
                                                cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                                                address=address)
    finally:
        bar.close()
        report.seconds = round(time.perf_counter() - start, 3)
    order = {s: k for k, s in enumerate(paths)}
    report.rows.sort(key=lambda r: order[r["slide"]])
    job.finish(out_dir, {r["slide"]: Path(r["output"]) for r in report.rows if r.get("output")})
    return report
