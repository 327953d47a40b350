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

import resource
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


def workload(key: str) -> tuple[str, list[list]]:
    name, count, shape, size, arch = WORKLOADS[key]
    paths = jpegs(count, shape, DATA / key)
    torch.manual_seed(0)
    models = [create(f"timm/{arch}", num_classes=8).eval() for _ in range(FOLDS)]
    runs = {"usual loop: DataLoader per fold, ttach D4, fp32 contiguous": lambda: usual_loop(models, paths, size),
            "kagglekit predict (fp32, channels-last, reduced JPEG decode)": lambda: kagglekit_predict(models, paths, size)}
    if key == "a":
        runs["kagglekit predict, full decode (reduced_decode=False)"] = lambda: kagglekit_predict(
            models, paths, size, reduced_decode=False)
    runs[f"kagglekit predict, amp='auto' ({'bf16' if cpu_has_bf16() else 'fp32: no native bf16 here'})"] = (
        lambda: kagglekit_predict(models, paths, size, amp="auto"))
    results = interleaved(runs, 1, keep_results=True)
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the usual loop's DataLoader workers
    base_name = next(iter(runs))
    base_seconds, base_peak, base_out = results[base_name]
    rows = []
    for method, (seconds, peak, out) in results.items():
        diff = float(np.abs(out - base_out).max())
        extra = f" + {workers_peak:.0f} per worker process" if method == base_name else ""
        rows.append([name, method, seconds, f"{peak:.0f}{extra}", base_seconds / seconds, diff])
    return name, rows


def rank_blend() -> list[list]:
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
    return [[name, "scipy.stats.rankdata per column", s_seconds, f"{s_peak:.0f}", 1.0, 0.0],
            [name, "kagglekit blend(mode='rank')", k_seconds, f"{k_peak:.0f}", s_seconds / k_seconds,
             float(np.abs(k_out - s_out).max())]]


def main(keys) -> None:
    rows = []
    for key in keys:
        rows += rank_blend() if key == "c" else workload(key)[1]
    table = markdown_table(["workload", "method", "seconds", "peak RSS MB", "x faster than the first row", "max |output diff|"],
                           rows)
    targets = ("Targets (issue 13): (a) at least 2x the usual loop at fp32; (b) at least 1.3x at fp32, and the bf16 "
               "row with its output difference; lower peak RSS than the usual loop in both; (c) equal values, at least "
               "as fast. Outputs are the mean logits of 5 folds x 8 views (8 classes); their difference from the usual "
               f"loop's is the max over every image and class. Batch {BATCH}, {WORKERS} decoding workers (DataLoader "
               "processes for the usual loop, threads for kagglekit). Peak RSS is this process's; the usual loop's "
               "worker processes hold their decoded images on top (the largest worker's peak is added). One round "
               "each (the model-bound rows take minutes).")
    record("classify: predict against the usual kernel loop (bench_classify.py)", f"{targets}\n\n{table}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["a", "b", "c"])
