"""Training throughput, part by part (PARTS maps a part's letter to its function).

    (a) ``kagglekit.train.fit`` against a plain loop written here: the same timm resnet10t (10 classes, random
        weights), the same in-memory data (256 synthetic 128 px images, a bright square whose place says the
        class), the same batches of 32 in the same order (``shuffle=False``; the plain loop slices the tensors),
        torch AdamW (lr 1e-3, weight_decay 0 in both: timm's factory puts biases and norms in a no-decay group,
        which at 0 is one group, as in the plain loop), cross-entropy, no schedule, fp32, the same number of steps
        (default 30). Two plain loops: ``zero_grad(set_to_none=True)`` between forward and backward, and after the
        optimiser's step (PyTorch's tutorial order; fit clears them just before the next backward). Then fit with amp="bf16", channels_last=True, and
        both. Each run starts from a copy of the same initial weights; every variant is warmed up first (3 steps),
        then ``--repeats`` rounds run each variant once, the order reversed every other round. Per variant: seconds
        per step of the whole call (fit's set-up and history included; the median over the rounds), the median gap
        between two steps' loss calls (a loss that notes the time: robust to a neighbour's burst), and minor page
        faults per step (getrusage). The loss curves (fit's history, the plain loop's ``loss.item()``) are compared
        with fp32 fit's. The fp32 runs again in a child process (--child-malloc) under glibc malloc settings that
        keep freed memory (GLIBC_TUNABLES, MALLOC_TUNED), since the page faults of re-allocated memory are what
        separates the loops. What fit does itself per step is measured piece by piece (its DataLoader and collate
        against slicing, the tqdm bar when ``progress=True``, float(loss), its optimiser factory, the history).

    (b) ImageDataset on N JPEGs of 3000 x 2000 (default 400: photo-like, quality 90, about the size of a camera's)
        resized to 256, ImageNet normalisation, a class target, through a DataLoader (batch 32) with 0 and 2 forked
        workers, against "the usual Dataset" (cv2.imread full decode, BGR to RGB, cv2.resize INTER_AREA, (x / 255 -
        mean) / std, CHW tensor) and against that Dataset on a pre-resized copy (256 px JPEGs; making the copy is
        not timed). ImageDataset rows: reduced decode (the default: libjpeg at 1/4 scale here), full decode
        (``reduced_decode=False``), and the second epoch over its on-disk cache (the first, untimed, fills it).

        Each (variant, workers) runs in a fresh child process (this script with --child), so that each has its own
        peak: images/s over one epoch (DataLoader start included) and peak RSS (VmHWM) during that epoch, of the
        child and of its largest worker (each worker reads its own VmHWM with every item; a forked worker's RSS
        counts the pages it shares with its parent too). The images are written once under bench/_data/train.

    (c) ``train_folds`` scaling: 4 folds of resnet10t (10 classes) on 256 synthetic 64 px images in memory, a fixed
        number of steps per fold (default 24, batch 32, fit's defaults otherwise: AdamW, cosine, an evaluation of
        the held-out fold each epoch), with engine="local" (the folds one after another, torch on the 2 cores; and
        on 1 thread, set in model_fn) against engine="ray" with 1 worker (torch on 1 thread: Ray gives an actor of
        1 CPU OMP_NUM_THREADS=1), 1 worker whose model_fn sets torch to 2 threads, and 2 workers (1 thread each;
        train_folds has no cpus_per_worker, so each actor holds 1 CPU). Each run in a fresh child
        process (--child-folds), so that each starts equally cold; the Ray runs start and stop a private cluster
        (their start-up, until the workers answer, counted apart: JobReport.startup_seconds). model_fn is
        ``fold_model`` of this file, imported by the workers as ``bench_train`` (the private cluster passes
        sys.path to them as PYTHONPATH); it logs each call's torch threads and the kagglekit it imported. Each Ray
        run's checkpoints are compared, tensor by tensor (safetensors), with those of the local run with torch on as
        many threads, and its OOF table too.

Run: .venv/bin/python bench/bench_train.py [--part a] [--part b] [--part c] [--n 400] [--steps 30] [--repeats 4]
     [--malloc-repeats 3] [--fold-steps 24]   (no --part: every part; make bench runs every part at its default)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table, record

DATA = Path(__file__).with_name("_data") / "train"
SHAPE, SIZE, BATCH = (2000, 3000), 256, 32
VARIANTS = {
    "usual": "usual Dataset: cv2.imread full decode, cv2.resize, normalise",
    "pre-resized": "usual Dataset on a pre-resized copy (256 px JPEGs)",
    "ImageDataset": "ImageDataset (reduced decode)",
    "ImageDataset-full": "ImageDataset, reduced_decode=False",
    "ImageDataset-cache": "ImageDataset, 2nd epoch from cache_dir",
}


def jpegs(n: int) -> Path:
    """DATA/b: ``n`` JPEGs of 3000 x 2000 (bench_classify's photo-like maker), their 256 px copies under small/,
    and train.csv (image_name,target); written once, grown when ``n`` is larger."""
    import cv2
    import polars as pl
    from bench_classify import jpegs as photo_jpegs

    folder = DATA / "b"
    paths = photo_jpegs(n, SHAPE, folder / "full")
    (folder / "small").mkdir(parents=True, exist_ok=True)
    for path in paths:
        small = folder / "small" / path.name
        if not small.is_file():
            image = cv2.resize(cv2.imread(str(path)), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(small), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    targets = np.random.default_rng(0).integers(0, 2, n)
    pl.DataFrame({"image_name": [p.stem for p in paths], "target": targets}).write_csv(folder / f"train_{n}.csv")
    return folder


class UsualDataset:
    """What a typical training notebook writes: decode whole, RGB, resize, normalise, CHW; a class target."""

    def __init__(self, paths, targets, size: int):
        from kagglekit.infer.batching import IMAGENET

        self.paths, self.targets, self.size = paths, targets, size
        self.mean, self.std = (np.array(v, np.float32) for v in IMAGENET)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        import cv2
        import torch

        image = cv2.cvtColor(cv2.imread(str(self.paths[i])), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        x = (image.astype(np.float32) / 255 - self.mean) / self.std
        return torch.from_numpy(x.transpose(2, 0, 1).copy()), torch.tensor(int(self.targets[i]))


class WithPeak:
    """Items of ``dataset`` with the reading process's pid and VmHWM (kB) appended."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        from kagglekit import _memory

        return (*self.dataset[i], os.getpid(), _memory.peak_rss() // 1024)


def dataset(variant: str, folder: Path, n: int, cache_dir: str):
    import polars as pl

    from kagglekit.data import ImageDataset

    csv = folder / f"train_{n}.csv"
    if variant in ("usual", "pre-resized"):
        frame = pl.read_csv(csv)
        sub = "full" if variant == "usual" else "small"
        return UsualDataset([folder / sub / f"{k}.jpg" for k in frame["image_name"]], frame["target"].to_list(), SIZE)
    return ImageDataset(csv, "full/{id}.jpg", target="class", label="target", size=SIZE, normalize="imagenet",
                        reduced_decode=variant != "ImageDataset-full",
                        cache_dir=cache_dir if variant == "ImageDataset-cache" else None)


def epoch(data, workers: int) -> tuple[float, int]:
    """Seconds for one pass of a DataLoader over ``data``, and the largest worker VmHWM (kB) seen."""
    import torch

    loader = torch.utils.data.DataLoader(WithPeak(data), batch_size=BATCH, num_workers=workers)
    start, worker_peak = time.perf_counter(), 0
    for *_, pids, peaks in loader:
        worker_peak = max([worker_peak] + [int(p) for pid, p in zip(pids, peaks) if int(pid) != os.getpid()])
    return time.perf_counter() - start, worker_peak


def child(variant: str, workers: int, n: int) -> dict:
    import torch  # noqa: F401 - imported before the baseline, as by any training script

    from kagglekit import _memory

    with tempfile.TemporaryDirectory(prefix="bench_train_cache_") as cache_dir:
        data = dataset(variant, DATA / "b", n, cache_dir)
        if variant == "ImageDataset-cache":
            epoch(data, workers)  # fills the cache, untimed
        _memory.reset_peak_rss()
        before = _memory.rss()
        seconds, worker_peak = epoch(data, workers)
        return {"images_per_s": n / seconds, "peak_mb": _memory.peak_rss() / 2**20, "worker_peak_mb": worker_peak / 1024,
                "rss_before_mb": before / 2**20}


def run_child(variant: str, workers: int, n: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", variant, str(workers), str(n)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def decode_ms(folder: Path, count: int = 20) -> dict:
    """Milliseconds per decode of the first ``count`` JPEGs from their bytes, by OpenCV at full, 1/4 and 1/8 scale."""
    import cv2

    data = [np.frombuffer(p.read_bytes(), np.uint8) for p in sorted((folder / "full").glob("*.jpg"))[:count]]
    times = {}
    for name, flag in (("full", cv2.IMREAD_COLOR), ("1/4", cv2.IMREAD_REDUCED_COLOR_4), ("1/8", cv2.IMREAD_REDUCED_COLOR_8)):
        start = time.perf_counter()
        for d in data:
            cv2.imdecode(d, flag)
        times[name] = (time.perf_counter() - start) / len(data) * 1000
    return times


def bench_image_dataset(args) -> tuple[str, str]:
    """Part b over ``args.n`` images: (section title, body)."""
    n = args.n
    folder = jpegs(n)
    megabytes = sum(p.stat().st_size for p in (folder / "full").glob("*.jpg")) / 2**20
    rows, rates, baselines = [], {}, []
    for workers in (0, 2):
        for variant, name in VARIANTS.items():
            r = run_child(variant, workers, n)
            rates[variant, workers] = r["images_per_s"]
            baselines.append(r["rss_before_mb"])
            print(variant, workers, r, flush=True)
            rows.append([name, workers, r["images_per_s"], r["images_per_s"] / rates["usual", workers], f"{r['peak_mb']:.0f}",
                         f"{r['worker_peak_mb']:.0f}" if workers else "-"])
    ratios = [rates["ImageDataset", w] / rates["usual", w] for w in (0, 2)]
    verdict = "met" if min(ratios) >= 2 else "NOT met"
    ms = decode_ms(folder)
    command = shlex.join([".venv/bin/python", "bench/bench_train.py", "--part", "b", "--n", str(n)])
    body = (f"`{command}`; load average at the end {os.getloadavg()[0]:.1f} (a shared machine).\n\n"
            f"{n} JPEGs of 3000 x 2000 ({megabytes / n:.1f} MB each on disk), resized to {SIZE}, ImageNet normalisation, "
            f"batch {BATCH}. Each row a fresh child process, one epoch; peak RSS during that epoch (VmHWM; a worker's "
            "counts the pages it shares with the child).\n\n"
            + markdown_table(["dataset", "workers", "images/s", "x usual", "peak RSS MB", "largest worker peak RSS MB"], rows)
            + f"\n\nTarget: ImageDataset at least 2x the usual dataset on the 3000 x 2000 JPEGs: {verdict} "
              f"({ratios[0]:.2f}x with 0 workers, {ratios[1]:.2f}x with 2). The child's RSS before the epoch (imports, "
              f"dataset) is {min(baselines):.0f}-{max(baselines):.0f} MB of each peak. What bounds the reduced decode: "
              f"libjpeg still entropy-decodes every coefficient; OpenCV decodes one of these files in {ms['full']:.1f} ms, "
              f"at 1/4 scale (what 256 allows here) in {ms['1/4']:.1f} ms, at 1/8 in {ms['1/8']:.1f} ms. Later epochs "
              "decode nothing from the cache.")
    return "train (b): ImageDataset against the usual Dataset (bench_train.py)", body


# --- part a: fit against a plain loop ---------------------------------------------------------------------------------

A_SIZE, A_ITEMS, CLASSES, LR = 128, 256, 10, 1e-3
A_VARIANTS = {  # name -> fit's options beyond the shared ones; a string: the plain loop, zero_grad's place
    "plain loop (fp32), zero_grad between forward and backward": "between",
    "plain loop (fp32), zero_grad after the step (PyTorch tutorial order)": "after",
    "fit (fp32)": {},
    "fit, amp='bf16'": {"amp": "bf16"},
    "fit, channels_last": {"channels_last": True},
    "fit, amp='bf16' + channels_last": {"amp": "bf16", "channels_last": True},
}
PLAIN, TUTORIAL, FIT = list(A_VARIANTS)[:3]
# glibc malloc keeps what it frees: no heap trimming, large blocks from the heap (not mmap), 256 MB of top padding
MALLOC_TUNED = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456"


def synthetic_images(n: int, size: int, classes: int = CLASSES, seed: int = 0):
    """(x (n, 3, size, size) float32 NCHW, y (n,) int64): noise, plus a bright square in one channel whose place
    on a 2 x 5 grid (and channel) says the class; a problem resnet10t learns in a few dozen steps."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(n, generator=g) % classes
    x = 0.5 * torch.randn(n, 3, size, size, generator=g)
    side = size // 6
    for i, c in enumerate(y.tolist()):
        r, q = (c // 5) * 2 * side + side // 2, (c % 5) * side + side // 2
        x[i, c % 3, r : r + side, q : q + side] += 1.5
    return x, y


class TimedLoss:
    """Cross-entropy that notes the time of each call: one call per step in both loops, so that the gaps between
    calls are the steps' times (everything a loop does between two losses: backward, the optimiser, its
    bookkeeping, the next batch, forward)."""

    def __init__(self):
        self.times: list[float] = []

    def __call__(self, outputs, targets):
        from torch.nn import functional as F

        self.times.append(time.perf_counter())
        return F.cross_entropy(outputs, targets)


def plain_loop(model, x, y, steps: int, batch: int, loss_fn, zero_grad: str = "between") -> list[float]:
    """The hand-written loop: batches sliced in order (the last incomplete one dropped), AdamW, ``loss_fn``;
    ``zero_grad(set_to_none=True)`` "between" forward and backward, or "after" the optimiser's step (as fit,
    and PyTorch's tutorial)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    per_epoch, losses = len(x) // batch, []
    model.train()
    for step in range(steps):
        k = step % per_epoch
        loss = loss_fn(model(x[k * batch : (k + 1) * batch]), y[k * batch : (k + 1) * batch])
        if zero_grad == "between":
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if zero_grad == "after":
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def fit_loop(model, data, steps: int, batch: int, loss_fn, options: dict) -> list[float]:
    from kagglekit.train import fit

    result = fit(model, data, loss=loss_fn, steps=steps, batch_size=batch, shuffle=False, optimizer="adamw",
                 lr=LR, weight_decay=0.0, scheduler=None, device="cpu", progress=False, **options)
    return result.history["loss"].to_list()


def median_ms(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def fit_costs(base, data, x, y, steps: int) -> dict:
    """Milliseconds of what fit does beyond the plain loop: per batch, its DataLoader (an index list per batch,
    TensorDataset's item by item, default_collate's stack) against slicing; per step, the tqdm bar (update and
    set_postfix, as with progress=True) and float(loss); once, timm's optimiser factory against torch's AdamW
    and the history frame."""
    import copy

    import polars as pl
    import torch
    from tqdm.auto import tqdm

    from kagglekit.train import distributed
    from kagglekit.train.optim import make_optimizer

    batches = distributed.epoch_batches(len(data), BATCH, distributed.Ranks(), 0, 0, False)

    def loader_epoch():
        loader = torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=0,
                                             generator=torch.Generator().manual_seed(0), pin_memory=False)
        for _ in loader:
            pass

    def slice_epoch():
        for k in range(len(batches)):
            _ = x[k * BATCH : (k + 1) * BATCH], y[k * BATCH : (k + 1) * BATCH]

    with open(os.devnull, "w") as sink:
        bar = tqdm(total=10**6, file=sink, desc="fit", unit="step")

        def bar_steps():
            for _ in range(100):
                bar.update(1)
                bar.set_postfix(loss=f"{0.123456:.4g}", lr=f"{1e-3:.3g}")

        bar_ms = median_ms(bar_steps) / 100
        bar.close()
    loss = torch.nn.functional.cross_entropy(torch.randn(BATCH, CLASSES, requires_grad=True), y[:BATCH])
    model = copy.deepcopy(base)
    rows = [{"step": k, "epoch": 0, "lr": LR, "loss": 0.5, "val_loss": None, "score": None} for k in range(steps)]
    schema = {"step": pl.Int64, "epoch": pl.Int64, "lr": pl.Float64, "loss": pl.Float64, "val_loss": pl.Float64,
              "score": pl.Float64}
    return {"loader_batch": median_ms(loader_epoch) / len(batches), "slice_batch": median_ms(slice_epoch) / len(batches),
            "bar_step": bar_ms, "float_loss": median_ms(lambda: [float(loss.detach()) for _ in range(100)]) / 100,
            "timm_optimizer": median_ms(lambda: make_optimizer(model, "adamw", LR, 0.0, 0.9, None)),
            "torch_optimizer": median_ms(lambda: torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)),
            "history": median_ms(lambda: pl.DataFrame(rows, schema=schema))}


def time_variants(names: list[str], steps: int, rounds: int) -> dict:
    """Part a's runs of ``names`` (keys of A_VARIANTS) in this process: each warmed up (3 steps), then ``rounds``
    rounds of one run each, the order reversed every other round, each run from a copy of the same initial weights.
    Returns per name: "whole" (seconds per step of each run's whole call), "gaps" (seconds between the steps'
    loss calls), "faults" (minor page faults per step of each run), "curve" (the first run's losses), "rerun" (the
    largest difference of a later run's curve from it); and "_inputs": (initial model, dataset, x, y)."""
    import copy

    import torch
    from torch.utils.data import TensorDataset

    from kagglekit.models import create

    torch.manual_seed(0)
    base = create("timm/resnet10t", num_classes=CLASSES)
    x, y = synthetic_images(A_ITEMS, A_SIZE)
    data = TensorDataset(x, y)

    def run(name: str, n: int) -> tuple[float, list[float], np.ndarray, int]:
        model, options, loss_fn = copy.deepcopy(base), A_VARIANTS[name], TimedLoss()
        faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        if isinstance(options, str):
            losses = plain_loop(model, x, y, n, BATCH, loss_fn, options)
        else:
            losses = fit_loop(model, data, n, BATCH, loss_fn, options)
        seconds, faults = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        return seconds, losses, np.diff(loss_fn.times), faults

    for name in names:  # warm-up: oneDNN's kernels for each layout and dtype, the allocator
        run(name, 3)
    out = {n: {"whole": [], "gaps": [], "faults": [], "curve": None, "rerun": 0.0} for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds, losses, gaps, faults = run(name, steps)
            o = out[name]
            o["whole"].append(seconds / steps)
            o["gaps"].extend(gaps.tolist())
            o["faults"].append(faults / steps)
            o["curve"] = o["curve"] or losses
            o["rerun"] = max(o["rerun"], float(np.abs(np.subtract(losses, o["curve"])).max()))
            print(f"round {r} {name}: {seconds / steps * 1000:.0f} ms/step, median step {np.median(gaps) * 1000:.0f} ms, "
                  f"{faults / steps / 1000:.1f}k page faults/step, loss {losses[-1]:.4f}, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
    out["_inputs"] = (base, data, x, y)
    return out


def malloc_child(steps: int, rounds: int) -> dict:
    """The fp32 runs of part a in this process, started with MALLOC_TUNED in its environment (--child-malloc)."""
    out = time_variants([PLAIN, TUTORIAL, FIT], steps, rounds)
    del out["_inputs"]
    return out


def bench_fit(args) -> tuple[str, str]:
    """Part a: (section title, body)."""
    import torch

    load_start, steps = os.getloadavg(), args.steps
    names = list(A_VARIANTS)
    timed = time_variants(names, steps, args.repeats)
    base, data, x, y = timed.pop("_inputs")
    per_step = {n: timed[n]["whole"] for n in names}
    gaps = {n: timed[n]["gaps"] for n in names}
    faults = {n: timed[n]["faults"] for n in names}
    curves = {n: timed[n]["curve"] for n in names}
    rerun = {n: timed[n]["rerun"] for n in names}
    env = {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNED}
    done = subprocess.run([sys.executable, __file__, "--child-malloc", str(steps), str(args.malloc_repeats)], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    print(done.stderr, end="")
    tuned = json.loads(done.stdout.strip().splitlines()[-1])
    costs = fit_costs(base, data, x, y, steps)
    load_end = os.getloadavg()
    median = {n: float(np.median(v)) for n, v in per_step.items()}
    step = {n: float(np.median(v)) for n, v in gaps.items()}
    paired = [f / p for f, p in zip(per_step[FIT], per_step[PLAIN])]  # the two ran near each other each round
    fp32 = np.array(curves[FIT])
    per_epoch = A_ITEMS // BATCH
    rows = []
    for name in names:
        curve = np.array(curves[name])
        spread = (max(per_step[name]) - min(per_step[name])) / median[name] * 100
        rows.append([name, median[name] * 1000, f"{spread:.0f}", step[name] * 1000, median[PLAIN] / median[name],
                     step[PLAIN] / step[name], step[FIT] / step[name], f"{np.median(faults[name]) / 1000:.1f}",
                     f"{curve[-1]:.4f}", f"{curve[-per_epoch:].mean():.4f}", f"{np.abs(curve - fp32).max():.2e}"])
    overhead = (median[FIT] / median[PLAIN] - 1) * 100
    overhead_step = (step[FIT] / step[PLAIN] - 1) * 100
    tutorial, tutorial_step = (median[FIT] / median[TUTORIAL] - 1) * 100, (step[FIT] / step[TUTORIAL] - 1) * 100
    placement = (step[TUTORIAL] / step[PLAIN] - 1) * 100
    overhead_paired = (float(np.median(paired)) - 1) * 100
    verdict = "met" if overhead <= 5 else "NOT met"
    plain_ms, plain_step = median[PLAIN] * 1000, step[PLAIN] * 1000
    per_step_extra = costs["loader_batch"] - costs["slice_batch"] + costs["float_loss"]
    once = costs["timm_optimizer"] - costs["torch_optimizer"] + costs["history"]
    command = shlex.join([".venv/bin/python", "bench/bench_train.py", "--part", "a", "--steps", str(steps),
                          "--repeats", str(args.repeats), "--malloc-repeats", str(args.malloc_repeats)])
    t_whole = {n: float(np.median(tuned[n]["whole"])) for n in (PLAIN, TUTORIAL, FIT)}
    t_step = {n: float(np.median(tuned[n]["gaps"])) for n in (PLAIN, TUTORIAL, FIT)}
    tuned_rows = [[n, t_whole[n] * 1000, t_step[n] * 1000, t_step[PLAIN] / t_step[n],
                   f"{np.median(tuned[n]['faults']) / 1000:.2f}", step[n] / t_step[n],
                   f"{np.abs(np.subtract(tuned[n]['curve'], curves[n])).max():.0e}"] for n in (PLAIN, TUTORIAL, FIT)]
    tuned_overhead = (t_whole[FIT] / t_whole[PLAIN] - 1) * 100
    tuned_overhead_step = (t_step[FIT] / t_step[PLAIN] - 1) * 100
    tuned_verdict = "met" if max(tuned_overhead, tuned_overhead_step) <= 5 else "still NOT met"
    body = (f"`{command}`; load average (1, 5, 15 min) {load_start[0]:.1f}, {load_start[1]:.1f}, {load_start[2]:.1f} at "
            f"the start of the part, {load_end[0]:.1f}, {load_end[1]:.1f}, {load_end[2]:.1f} at its end (a shared machine).\n\n"
            f"timm resnet10t (10 classes, random weights), {A_ITEMS} synthetic {A_SIZE} px images in memory (a "
            f"TensorDataset; the plain loop slices its tensors), batch {BATCH} in order, AdamW lr {LR:g} weight_decay 0, "
            f"cross-entropy, no schedule, {steps} steps ({steps / per_epoch:.2g} epochs) from the same initial weights; "
            f"torch on {torch.get_num_threads()} threads. Seconds per step: the median of {args.repeats} runs of the "
            "whole call (the order reversed every other round, after a 3-step warm-up of each); spread: (slowest - "
            "fastest) / median. Median step: the median gap between two steps' loss calls over all {n} gaps of the "
            "runs (robust to a neighbour's burst; set-up excluded). Loss: the training loss of each step's batch (fit's "
            "history; the plain loop's loss.item()); last epoch: the mean over its 8 batches; max abs diff: the largest "
            "difference from fp32 fit's curve over the steps.\n\n".replace("{n}", str(args.repeats * (steps - 1)))
            + markdown_table(["run", "ms/step (whole call)", "spread %", "ms/step (median step)", "x plain loop (whole)",
                              "x plain loop (step)", "x fit fp32 (step)", "page faults per step (thousands)",
                              f"loss step {steps}", "loss last epoch", "max abs diff vs fit fp32"], rows)
            + f"\n\nTarget: fit within 5 % of the plain loop at fp32: **{verdict}** (whole calls: fit {overhead:+.1f} %, "
              f"{median[FIT] * 1000:.0f} against {plain_ms:.0f} ms per step; the median of the {args.repeats} rounds' "
              f"paired ratios: {overhead_paired:+.1f} %; median steps: {overhead_step:+.1f} %, {step[FIT] * 1000:.0f} "
              f"against {step[PLAIN] * 1000:.0f} ms). Against the plain loop in PyTorch's tutorial order, which frees "
              f"the gradients right after the step: {tutorial:+.1f} % (whole calls), {tutorial_step:+.1f} % "
              f"(median steps); that order alone costs the plain loop {placement:+.1f} % (median steps). The loss curves "
              f"of fit and the plain loops differ by at most "
              f"{max(np.abs(np.array(curves[n]) - fp32).max() for n in (PLAIN, TUTORIAL)):.1e}: the same work. Every "
              f"variant's reruns gave the same curve to {max(rerun.values()):.0e}.\n\n"
              f"Why: page faults. Each step here allocates and frees hundreds of MB of activations and gradients; "
              f"glibc's malloc hands large freed blocks back to the kernel (munmap, heap trimming) and the next step "
              f"faults them in again, zeroed. How much it gives back depends on the order of the frees (freeing the "
              f"gradients right after the step, as the tutorial loop does, costs most) and on a freshly collated batch "
              f"per step (fit): fit makes "
              f"{np.median(faults[FIT]) / 1000:.0f}k faults per step against {np.median(faults[PLAIN]) / 1000:.0f}k. "
              f"The same {len(tuned_rows)} fp32 runs in a child process whose glibc keeps what it frees "
              f"(`GLIBC_TUNABLES={MALLOC_TUNED}`; {args.malloc_repeats} rounds, the same protocol):\n\n"
            + markdown_table(["run (tuned malloc)", "ms/step (whole call)", "ms/step (median step)", "x plain loop (step)",
                              "page faults per step (thousands)", "x default malloc (step)",
                              "max abs loss diff vs default malloc"], tuned_rows)
            + f"\n\nWith that malloc, fit against the plain loop: {tuned_overhead:+.1f} % (whole calls), "
              f"{tuned_overhead_step:+.1f} % (median steps): target **{tuned_verdict}**. What fit does itself beyond the "
              "plain loop, measured apart (ms; % of the plain loop's median step; a batch includes its share of the "
              "DataLoader that fit makes each epoch):\n\n"
            + markdown_table(["what", "fit", "plain loop", "extra, % of a plain step"], [
                ["a batch: DataLoader (batch_sampler, item by item, default_collate) vs slicing",
                 f"{costs['loader_batch']:.3f}", f"{costs['slice_batch']:.4f}",
                 f"{(costs['loader_batch'] - costs['slice_batch']) / plain_step * 100:.2f}"],
                ["a step: float(loss) (the history row; no sync on a CPU)", f"{costs['float_loss']:.4f}", "-",
                 f"{costs['float_loss'] / plain_step * 100:.3f}"],
                ["a step: tqdm update + set_postfix (progress=True only)", f"{costs['bar_step']:.3f}", "-",
                 f"{costs['bar_step'] / plain_step * 100:.3f}"],
                ["once: timm create_optimizer_v2 vs torch.optim.AdamW", f"{costs['timm_optimizer']:.2f}",
                 f"{costs['torch_optimizer']:.2f}",
                 f"{(costs['timm_optimizer'] - costs['torch_optimizer']) / plain_step / steps * 100:.3f} (over {steps} steps)"],
                ["once: the history as a polars frame", f"{costs['history']:.2f}", "-",
                 f"{costs['history'] / plain_step / steps * 100:.3f} (over {steps} steps)"]])
            + f"\n\nTogether they account for {(per_step_extra + once / steps) / plain_step * 100:.2f} % of a plain step "
              f"(with the bar: {(per_step_extra + costs['bar_step'] + once / steps) / plain_step * 100:.2f} %).")
    return "train (a): fit against a plain loop; bf16 and channels-last (bench_train.py)", body


# --- part c: train_folds, local against Ray ---------------------------------------------------------------------------

C_SIZE, C_ITEMS, C_FOLDS = 64, 256, 4
C_VARIANTS = {  # name -> (row, run_slides engine options, torch threads set in model_fn (None: as the process has))
    "local": ("engine='local' (folds one after another)", {"engine": "local"}, None),
    "local-1": ("engine='local', torch.set_num_threads(1) in model_fn", {"engine": "local"}, 1),
    "ray-1": ("engine='ray', 1 worker (Ray's default threads)", {"engine": "ray", "workers": 1}, None),
    "ray-1x2": ("engine='ray', 1 worker, torch.set_num_threads(2) in model_fn", {"engine": "ray", "workers": 1}, 2),
    "ray-2": ("engine='ray', 2 workers (Ray's default threads)", {"engine": "ray", "workers": 2}, None),
}


def fold_model(threads: int | None = None, log: str | None = None):
    """A fresh resnet10t of 10 classes, seeded (module level: Ray's workers import it as bench_train.fold_model).
    ``threads``: torch.set_num_threads first; ``log``: a file to which each call appends its process, torch's
    threads and the kagglekit it imported."""
    import torch

    import kagglekit
    from kagglekit.models import create

    if threads is not None:
        torch.set_num_threads(threads)
    if log is not None:
        with open(log, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "threads": torch.get_num_threads(), "kagglekit": kagglekit.__file__,
                                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}) + "\n")
    torch.manual_seed(0)
    return create("timm/resnet10t", num_classes=CLASSES)


def folds_child(variant: str, out: Path, steps: int) -> None:
    """One train_folds run (fresh process), its figures written to out/result.json."""
    from torch import nn
    from torch.utils.data import TensorDataset

    import bench_train  # this file as a module, so that Ray's workers unpickle bench_train.fold_model by name
    from kagglekit.train import train_folds

    _, engine, threads = C_VARIANTS[variant]
    x, y = synthetic_images(C_ITEMS, C_SIZE)
    log = out / "threads.jsonl"
    model_fn = functools.partial(bench_train.fold_model, threads=threads, log=str(log))
    start = time.perf_counter()
    result = train_folds(model_fn, TensorDataset(x, y), np.arange(C_ITEMS) % C_FOLDS, out / "folds",
                         loss=nn.CrossEntropyLoss(), activation="softmax", steps=steps, batch_size=BATCH, lr=LR,
                         progress=False, **engine)
    seconds = time.perf_counter() - start
    report = result.report
    (out / "result.json").write_text(json.dumps({
        "seconds": seconds, "startup": report.startup_seconds, "workers": report.workers, "done": report.done,
        "fold_seconds": [row["seconds"] for row in report.rows],
        "threads": [json.loads(line) for line in log.read_text().splitlines()]}))


def run_folds_child(variant: str, out: Path, steps: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, __file__, "--child-folds", variant, str(out), str(steps)],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads((out / "result.json").read_text())


def same_files(a: Path, b: Path) -> tuple[bool, bool]:
    """(every fold's checkpoint tensors bit for bit equal, the OOF tables equal) between two train_folds folders."""
    import polars as pl
    import torch
    from safetensors.torch import load_file

    weights = True
    for k in range(C_FOLDS):
        ta, tb = load_file(a / f"fold{k}" / "model.safetensors"), load_file(b / f"fold{k}" / "model.safetensors")
        weights &= ta.keys() == tb.keys() and all(torch.equal(ta[name], tb[name]) for name in ta)
    return weights, pl.read_parquet(a / "oof.parquet").equals(pl.read_parquet(b / "oof.parquet"))


def bench_folds(args) -> tuple[str, str]:
    """Part c: (section title, body)."""
    load_start, steps = os.getloadavg(), args.fold_steps
    results, rows, same = {}, [], {}
    with tempfile.TemporaryDirectory(prefix="bench_train_folds_") as tmp:
        for variant in C_VARIANTS:
            results[variant] = r = run_folds_child(variant, Path(tmp) / variant, steps)
            print(variant, {k: v for k, v in r.items() if k != "threads"}, flush=True)
        local = results["local"]
        after_local = local["seconds"] - local["startup"]
        for variant, (name, engine, _) in C_VARIANTS.items():
            r = results[variant]
            threads = sorted({t["threads"] for t in r["threads"]})
            omp = sorted({str(t["OMP_NUM_THREADS"]) for t in r["threads"]})
            kk = {t["kagglekit"] for t in r["threads"]}
            assert all(str(Path(__file__).resolve().parents[1]) in k for k in kk), f"workers imported another kagglekit: {kk}"
            reference = "local" if threads == [2] else "local-1"  # the local run with torch on as many threads
            weights, oof = same_files(Path(tmp) / reference / "folds", Path(tmp) / variant / "folds")
            same[variant] = (reference, weights and oof)
            rows.append([name, r["workers"], "/".join(map(str, threads)), "/".join(o if o != "None" else "unset" for o in omp),
                         r["seconds"], round(r["startup"], 2), r["seconds"] - r["startup"],
                         sum(r["fold_seconds"]) / len(r["fold_seconds"]), local["seconds"] / r["seconds"],
                         after_local / (r["seconds"] - r["startup"]),
                         "-" if variant == reference else f"{'yes' if weights else 'NO'} ({reference})",
                         "-" if variant == reference else f"{'yes' if oof else 'NO'} ({reference})"])
        cross = same_files(Path(tmp) / "local" / "folds", Path(tmp) / "local-1" / "folds")
    load_end = os.getloadavg()
    command = shlex.join([".venv/bin/python", "bench/bench_train.py", "--part", "c", "--fold-steps", str(steps)])
    one, two = (results[v]["seconds"] - results[v]["startup"] for v in ("ray-1", "ray-2"))
    body = (f"`{command}`; load average (1, 5, 15 min) {load_start[0]:.1f}, {load_start[1]:.1f}, {load_start[2]:.1f} at "
            f"the start of the part, {load_end[0]:.1f}, {load_end[1]:.1f}, {load_end[2]:.1f} at its end (a shared machine).\n\n"
            f"{C_FOLDS} folds of timm resnet10t (10 classes) on {C_ITEMS} synthetic {C_SIZE} px images in memory, "
            f"{steps} steps of batch {BATCH} per fold ({steps // ((C_ITEMS - C_ITEMS // C_FOLDS) // BATCH)} epochs, the "
            "held-out fold evaluated after each), fit's defaults otherwise (AdamW, cosine). Each run a fresh child "
            "process; seconds: the whole train_folds call (a Ray run starts and stops its private cluster); start-up: "
            "JobReport.startup_seconds (until every worker answered: the cluster, the workers' imports, the job "
            "unpickled); per fold: the job's seconds on its worker; threads: torch.get_num_threads() in model_fn, "
            "per call; bit for bit: every tensor of the 4 checkpoints equal to those of the local run with torch on as "
            "many threads (safetensors), and the OOF tables equal.\n\n"
            + markdown_table(["run", "workers", "torch threads", "OMP_NUM_THREADS", "s", "start-up s",
                              "s after start-up", "s per fold", "x local", "x local after start-up",
                              "checkpoints bit for bit (against)", "OOF equal (against)"], rows)
            + f"\n\nRay 1 -> 2 workers (1 thread each), after start-up: {one / two:.2f}x. On these 2 cores torch already "
              f"uses both in one process (the local engine on 2 threads against 1: "
              f"{results['local-1']['seconds'] / local['seconds']:.2f}x), so the fair comparison is 2 Ray workers of 1 "
              f"thread (Ray's default for an actor of 1 CPU) against the local engine on 2 threads: "
              f"{after_local / two:.2f}x after start-up, {local['seconds'] / results['ray-2']['seconds']:.2f}x with it "
              f"(the private cluster's start-up, {results['ray-2']['startup']:.1f} s, and its stop are a fixed cost per "
              + ("call): on 2 cores, folds in parallel gain little or nothing over one process that uses both. "
                 if after_local / two < 1.1 else "call). ")
              + f"Bit for bit: every Ray run's "
              f"checkpoints and OOF table equal the local run's with torch on as many threads: "
              f"{'yes' if all(ok for v, (_, ok) in same.items() if v.startswith('ray')) else 'NO'}; the local runs on 1 and 2 threads against each "
              f"other: checkpoints {'equal' if cross[0] else 'differ'}, OOF {'equal' if cross[1] else 'differs'}"
              + ("" if all(cross) else " (torch's CPU kernels split their sums by thread, so the float rounding of "
                 "the gradients depends on the thread count; a Ray worker of 1 CPU runs torch on 1 thread)") + ".")
    return "train (c): train_folds, local against Ray (bench_train.py)", body


PARTS = {"a": bench_fit, "b": bench_image_dataset, "c": bench_folds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), action="append", help="a part to run (default: every part)")
    parser.add_argument("--n", type=int, default=400, help="images in part b (default 400)")
    parser.add_argument("--steps", type=int, default=30, help="steps per run in part a (default 30)")
    parser.add_argument("--repeats", type=int, default=4, help="rounds of runs in part a (default 4)")
    parser.add_argument("--malloc-repeats", type=int, default=3,
                        help="rounds of part a's fp32 runs under tuned glibc malloc (default 3)")
    parser.add_argument("--fold-steps", type=int, default=24, help="steps per fold in part c (default 24)")
    args = parser.parse_args()
    for part in args.part or sorted(PARTS):
        record(*PARTS[part](args))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    elif sys.argv[1:2] == ["--child-malloc"]:
        print(json.dumps(malloc_child(int(sys.argv[2]), int(sys.argv[3]))))
    elif sys.argv[1:2] == ["--child-folds"]:
        folds_child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
