"""Per-slide jobs on one machine: the bag job on 1 and 2 workers, the Ray engine's overhead, its start-up.

    (a) BagJob (timm's resnet10t, random weights; 224 px tiles, the 48 most filled per slide) over 24 PNG
        slides of 2048 x 2048: slides per minute with engine="local" (this process, torch on every
        core), Ray with 1 worker (1 CPU; and 1 worker x 2 CPUs) and 2 workers (1 CPU each), against the
        hand-written peer teams use (a spawn multiprocessing.Pool of 2, each process building the model
        once in its initializer). Scaling efficiency: (2-worker rate / 1-worker rate) / 2.
    (b) The per-slide overhead of the Ray engine: a job that copies a 1 kB file, over 100 and 400 slides
        (the difference removes start-up and shutdown), with engine="ray" (2 workers) against engine="local".
    (c) Start-up: `import ray`, then a private local cluster started and its workers ready (the run's
        startup_seconds), and its shutdown.

Slides are made once from scikit-image's IHC image (bench_mil.tissue_slide) and cached under
bench/_data/jobs. Every Ray row starts its own private cluster. Run: .venv/bin/python bench/bench_jobs.py [a|b|c ...]
"""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table, record

from kagglekit.jobs import BagJob, Job, run_slides
from kagglekit.models import create, save_checkpoint

DATA = Path(__file__).with_name("_data") / "jobs"
N_SLIDES, SIDE, TOP_K = 24, 2048, 48
OPTIONS = {"tile": 224, "top_k": TOP_K, "min_tissue": 0.5}


def slides() -> Path:
    from bench_mil import tissue_slide

    folder = DATA / "slides"
    if len(list(folder.glob("*.png"))) != N_SLIDES:
        folder.mkdir(parents=True, exist_ok=True)
        base = tissue_slide(SIDE)
        for k in range(N_SLIDES):
            cv2.imwrite(str(folder / f"s{k:02d}.png"), cv2.rotate(base, k % 3) if k % 4 else base)
    return folder


def backbone() -> Path:
    path = DATA / "resnet10t.safetensors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(create("timm/resnet10t", num_classes=0), path)
    return path


_MODEL = None


def _pool_init(path):
    global _MODEL
    import torch

    torch.set_num_threads(1)
    from kagglekit.models import load_checkpoint

    _MODEL = load_checkpoint(path)


def _pool_slide(args):
    from kagglekit.mil import extract_bag, save_bag

    slide, out = args
    save_bag(extract_bag(_MODEL, slide, name="r10t", **OPTIONS), out)


def pool_of_two(folder: Path, out: Path, model: Path) -> None:
    """What teams hand-write: a pool of processes, the model built once in each, one file per slide."""
    with multiprocessing.get_context("spawn").Pool(2, initializer=_pool_init, initargs=(str(model),)) as pool:
        pool.map(_pool_slide, [(p, out / f"{p.stem}.safetensors") for p in sorted(folder.glob("*.png"))], chunksize=1)


def bench_a() -> str:
    folder, model = slides(), backbone()
    job = BagJob(model, **OPTIONS)
    rows, rates = [], {}
    runs = {
        "engine='local' (torch on 2 threads)": lambda out: run_slides(job, folder, out, engine="local", progress=False),
        "ray, 1 worker x 1 CPU": lambda out: run_slides(job, folder, out, engine="ray", workers=1, progress=False),
        "ray, 1 worker x 2 CPUs": lambda out: run_slides(job, folder, out, engine="ray", workers=1, cpus_per_worker=2,
                                                         progress=False),
        "ray, 2 workers x 1 CPU": lambda out: run_slides(job, folder, out, engine="ray", workers=2, progress=False),
        "peer: multiprocessing.Pool(2), spawn": lambda out: pool_of_two(folder, out, model),
    }
    for name, run in runs.items():
        out = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
        try:
            start = time.perf_counter()
            report = run(out)
            seconds = time.perf_counter() - start
            assert len(list(out.glob("*.safetensors"))) == N_SLIDES
        finally:
            shutil.rmtree(out)
        startup = report.startup_seconds if report is not None else float("nan")
        rates[name] = (N_SLIDES / seconds * 60, N_SLIDES / (seconds - startup) * 60)
        rows.append([name, seconds, startup, *rates[name]])
    local = rates["engine='local' (torch on 2 threads)"][1]
    for row in rows:
        row.append(row[4] / local if row[4] == row[4] else row[3] / rates["engine='local' (torch on 2 threads)"][0])
    one, two = rates["ray, 1 worker x 1 CPU"][1], rates["ray, 2 workers x 1 CPU"][1]
    body = markdown_table([f"run ({N_SLIDES} slides)", "s", "start-up s", "slides/min", "slides/min after start-up",
                           "x local"], rows)
    body += (f"\n\nScaling efficiency of Ray 1 -> 2 workers (1 CPU each), after start-up: {two / one / 2:.2f} "
             f"({two:.1f} vs {one:.1f} slides/min). The pool's start-up is not separable (NaN), so its ratio is of whole runs.")
    return body


class Touch(Job):
    name, suffix = "touch", ".bin"

    def run(self, slide, out_path):
        out_path.write_bytes(Path(slide).read_bytes())


def bench_b() -> str:
    folder = DATA / "small"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(400):
        (folder / f"t{k:03d}.png").write_bytes(bytes(1024))
    paths = sorted(folder.glob("*.png"))
    rows = []
    for engine, workers in (("local", None), ("ray", 2)):
        seconds = {}
        for n in (100, 400):
            out = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
            try:
                seconds[n] = run_slides(Touch(), paths[:n], out, engine=engine, workers=workers, progress=False).seconds
            finally:
                shutil.rmtree(out)
        rows.append([f"engine={engine!r}" + (f", {workers} workers" if workers else ""), seconds[100], seconds[400],
                     (seconds[400] - seconds[100]) / 300 * 1000])
    body = markdown_table(["a 1 kB copy per slide", "100 slides s", "400 slides s", "ms per slide (400 - 100) / 300"], rows)
    return body + (f"\n\nThe Ray engine's overhead: {rows[1][3] - rows[0][3]:.1f} ms per slide (a remote call, and the "
                   "manifest line written and fsynced in the driver, as on the local engine); the fixed start-up and "
                   "shutdown cancel out of the difference.")


def bench_c() -> str:
    code = "import time; t = time.perf_counter(); import ray; print(time.perf_counter() - t)"
    imports = sorted(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout) for _ in range(3))
    folder = DATA / "small"
    rows = [["import ray (fresh process, median of 3)", imports[1]]]
    starts, stops = [], []
    for _ in range(3):
        out = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
        try:
            report = run_slides(Touch(), {"t000": folder / "t000.png"}, out, engine="ray", workers=2, progress=False)
        finally:
            shutil.rmtree(out)
        starts.append(report.startup_seconds)
        stops.append(report.seconds - report.startup_seconds)
    rows.append(["private cluster started + 2 workers placed (median of 3)", sorted(starts)[1]])
    rows.append(["one slide, then the cluster stopped (median of 3)", sorted(stops)[1]])
    return markdown_table(["start-up step", "s"], rows)


if __name__ == "__main__":
    wanted = sys.argv[1:] or ["a", "b", "c"]
    names = {"a": "Jobs (a): the bag job on 1 and 2 workers", "b": "Jobs (b): the Ray engine's per-slide overhead",
             "c": "Jobs (c): the Ray engine's start-up"}
    for key in wanted:
        record(names[key], {"a": bench_a, "b": bench_b, "c": bench_c}[key]())
