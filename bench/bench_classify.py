"""Image classification inference: kagglekit.infer.predict against the usual kernel loop, in one process.

The usual loop, as many Kaggle kernels write it: for each fold model a torch DataLoader (the same
workers and batch size) over a Dataset that decodes each JPEG with OpenCV, resizes it (INTER_AREA)
and scales it to a contiguous NCHW float tensor; the model wrapped in ttach's ClassificationTTAWrapper
with its D4 transforms (mean of the 8 views), float32. kagglekit decodes each image once for all folds
and views, on threads ahead of the model, a JPEG at reduced scale by libjpeg where the target allows,
with channels-last weights. Both merge raw outputs (logits) by the mean, so their outputs are compared.

    (a) decode-bound: 5 folds x D4 over 200 JPEGs of 3000 x 2000 resized to 128, mobilenetv3_small_050
    (b) model-bound:  5 folds x D4 over 400 JPEGs of 512 x 512 resized to 224, resnet18
    (c) blend(mode="rank") of 3 tables of 10^6 x 28 against scipy.stats.rankdata per column

Run: make bench (or .venv/bin/python bench/bench_classify.py [a|b|c ...]).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, markdown_table, record

from kagglekit.infer import predict
from kagglekit.infer.batching import cpu_has_bf16
from kagglekit.models import create

DATA = Path(__file__).with_name("_data") / "classify"
FOLDS, BATCH, WORKERS = 5, 32, 2
WORKLOADS = {
    "a": ("(a) 200 JPEGs 3000x2000 -> 128, mobilenetv3_small_050", 200, (2000, 3000), 128, "mobilenetv3_small_050"),
    "b": ("(b) 400 JPEGs 512x512 -> 224, resnet18", 400, (512, 512), 224, "resnet18"),
}


def jpegs(count: int, shape, folder: Path) -> list[Path]:
    """``count`` photo-like JPEGs (smooth colour fields, edges and grain: quality 90, about the size of a
    camera's) under ``folder``, written once and reused."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        path = folder / f"{k}.jpg"
        if not path.is_file():
            h, w = shape
            base = cv2.resize(rng.integers(0, 256, (h // 100 + 2, w // 100 + 2, 3), dtype=np.uint8), (w, h),
                              interpolation=cv2.INTER_CUBIC)
            grain = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
            image = np.clip(base.astype(np.float32) + grain, 0, 255).astype(np.uint8)
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


class KernelDataset(torch.utils.data.Dataset):
    """What a typical kernel's Dataset does: decode, RGB, resize, scale, CHW."""

    def __init__(self, paths, size: int):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, k):
        image = cv2.cvtColor(cv2.imread(str(self.paths[k])), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(image).permute(2, 0, 1).float().div(255)


def usual_loop(models, paths, size: int) -> np.ndarray:
    import ttach

    total = None
    for model in models:
        model = model.to(memory_format=torch.contiguous_format)
        tta = ttach.ClassificationTTAWrapper(model, ttach.aliases.d4_transform(), merge_mode="mean")
        loader = torch.utils.data.DataLoader(KernelDataset(paths, size), batch_size=BATCH, num_workers=WORKERS)
        with torch.inference_mode():
            out = torch.cat([tta(x.contiguous()) for x in loader]).numpy()
        total = out if total is None else total + out
    return total / len(models)


def kagglekit_predict(models, paths, size: int, **kwargs) -> np.ndarray:
    return predict(models, paths, size=size, tta="d4", batch_size=BATCH, num_workers=WORKERS, progress=False, **kwargs)


class ChildrenMemory:
    """Samples, on a thread every 0.5 s (reading smaps costs: every 50 ms slowed the loop it measures by
    half), the unique memory (USS: pages no other process shares) of this process's children: the DataLoader worker processes of the usual loop. ``peak_mb`` is the largest
    sum seen. RSS would count the pages a forked worker shares with this process a second time."""

    def __init__(self):
        import threading

        self.peak_mb, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.5):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_full_info().uss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def workload(key: str) -> tuple[list[list], str]:
    name, count, shape, size, arch = WORKLOADS[key]
    paths = jpegs(count, shape, DATA / key)
    torch.manual_seed(0)
    models = [create(f"timm/{arch}", num_classes=8).eval() for _ in range(FOLDS)]
    workers = ChildrenMemory()

    def usual():
        with workers:
            return usual_loop(models, paths, size)

    base_name = "usual loop: DataLoader per fold, ttach D4, fp32 contiguous"
    runs = {base_name: usual,
            "kagglekit predict (fp32, channels-last, reduced JPEG decode)": lambda: kagglekit_predict(models, paths, size)}
    if key == "a":
        runs["kagglekit predict, full decode (reduced_decode=False)"] = lambda: kagglekit_predict(
            models, paths, size, reduced_decode=False)
    bf16_name = f"kagglekit predict, amp='auto' ({'bf16' if cpu_has_bf16() else 'fp32: no native bf16 here'})"
    runs[bf16_name] = lambda: kagglekit_predict(models, paths, size, amp="auto")
    results = interleaved(runs, 1, keep_results=True)
    base_seconds, base_peak, base_out = results[base_name]
    base_total = base_peak + workers.peak_mb
    rows = []
    for method, (seconds, peak, out) in results.items():
        memory = f"{peak:.0f} + {workers.peak_mb:.0f} workers = {base_total:.0f}" if method == base_name else f"{peak:.0f}"
        rows.append([name, method, seconds, memory, base_seconds / seconds, float(np.abs(out - base_out).max())])
    fp32 = rows[1]
    goal = {"a": 2.0, "b": 1.3}[key]
    verdict = (f"Target (issue 13): at least {goal}x the usual loop at fp32, lower peak memory. Measured: {fp32[4]:.2f}x "
               f"({'met' if fp32[4] >= goal else 'NOT met'}); peak memory {results[fp32[1]][1]:.0f} MB against "
               f"{base_total:.0f} MB for the usual loop and its workers "
               f"({'met' if results[fp32[1]][1] < base_total else 'NOT met'}; the usual loop's own process alone: "
               f"{base_peak:.0f} MB); bf16 row: {rows[-1][4]:.2f}x, max output difference {rows[-1][5]:.2g}.")
    return rows, verdict


def rank_blend() -> tuple[list[list], str]:
    from scipy.stats import rankdata

    from kagglekit.thresholds import blend

    rng = np.random.default_rng(0)
    tables = [rng.random((10**6, 28), dtype=np.float32) for _ in range(3)]
    tables[1] = np.round(tables[1], 3)  # ties, as probabilities written with few digits have
    weights = [2.0, 1.0, 1.0]

    def scipy_loop():
        total = np.zeros(tables[0].shape)
        for w, t in zip(weights, tables):
            ranks = np.column_stack([rankdata(t[:, c]) for c in range(t.shape[1])])
            total += w / sum(weights) * ranks / len(t)
        return total

    results = interleaved({"scipy.stats.rankdata per column": scipy_loop,
                           "kagglekit blend(mode='rank')": lambda: blend(tables, weights, mode="rank")}, 2,
                          keep_results=True)
    (s_seconds, s_peak, s_out), (k_seconds, k_peak, k_out) = results.values()
    name = "(c) rank blend of 3 tables 10^6 x 28"
    diff = float(np.abs(k_out - s_out).max())
    rows = [[name, "scipy.stats.rankdata per column", s_seconds, f"{s_peak:.0f}", 1.0, 0.0],
            [name, "kagglekit blend(mode='rank')", k_seconds, f"{k_peak:.0f}", s_seconds / k_seconds, diff]]
    verdict = (f"Target (issue 13): equal values, at least as fast. Measured: max difference {diff:.2g} "
               f"({'met' if diff == 0 else 'NOT met'}), {s_seconds / k_seconds:.2f}x "
               f"({'met' if k_seconds <= s_seconds else 'NOT met'}). Best of 2 interleaved rounds.")
    return rows, verdict


SECTIONS = {"a": "classify (a) decode-bound: predict against the usual kernel loop (bench_classify.py)",
            "b": "classify (b) model-bound: predict against the usual kernel loop (bench_classify.py)",
            "c": "classify (c) rank blend against scipy (bench_classify.py)"}
HEADERS = ["workload", "method", "seconds", "peak memory MB", "x faster than the first row", "max |output diff|"]
SETUP = ("Outputs are the mean logits of 5 folds x 8 D4 views (8 classes, random weights); their difference from the "
         f"usual loop's is the max over every image and class. Batch {BATCH}, {WORKERS} decoding workers (DataLoader "
         "processes for the usual loop, threads for kagglekit). Peak memory: this process's peak RSS, plus for the "
         "usual loop the largest sum of its worker processes' unique memory (USS, sampled every 0.5 s). One round each.")


def main(keys) -> None:
    for key in keys:
        rows, verdict = rank_blend() if key == "c" else workload(key)
        record(SECTIONS[key], f"{verdict}\n\n{'' if key == 'c' else SETUP + chr(10) + chr(10)}{markdown_table(HEADERS, rows)}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["a", "b", "c"])
