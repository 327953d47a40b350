"""Multi-label folds: kagglekit.cv.MultilabelStratifiedKFold against iterative-stratification.

100,000 samples x 100 labels, 5 folds, in one process on the same data. Reports wall time (best of
3) and how far each fold's label counts land from the ideal n_label / 5: the largest and the mean
absolute deviation over all (fold, label) pairs, plus the spread of fold sizes. Two label sets:

- independent: label l present with probability p_l ~ U(0.01, 0.5), about 25 labels per sample;
- skewed: frequencies falling log-linearly from 30 % to 0.05 % (50 samples), correlated through
  four latent factors (Gaussian copula), about 2.7 labels per sample (protein-atlas-like).

Both libraries run with numpy's default threading; nothing is pinned.
Run: .venv/bin/python bench/bench_folds.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, markdown_table, measure, record  # noqa: E402

from kagglekit.cv import MultilabelStratifiedKFold  # noqa: E402

N_SAMPLES, N_LABELS, N_SPLITS, REPEAT = 100_000, 100, 5, 3


def independent_labels(rng) -> np.ndarray:
    p = rng.uniform(0.01, 0.5, N_LABELS)
    return (rng.random((N_SAMPLES, N_LABELS)) < p).astype(np.int8)


def skewed_labels(rng) -> np.ndarray:
    from scipy.stats import norm

    freq = np.logspace(np.log10(0.3), np.log10(0.0005), N_LABELS)
    latent = rng.standard_normal((N_SAMPLES, 4)) @ rng.normal(0, 0.6, (4, N_LABELS))
    z = latent + rng.standard_normal((N_SAMPLES, N_LABELS))
    z /= z.std(axis=0)
    return (z > norm.ppf(1 - freq)).astype(np.int8)


def folds_from(splitter, y) -> np.ndarray:
    fold = np.empty(len(y), dtype=np.int64)
    for j, (_, test) in enumerate(splitter.split(np.zeros((len(y), 1)), y)):
        fold[test] = j
    return fold


def deviation(y, fold) -> tuple[float, float, int]:
    counts = np.stack([y[fold == j].sum(axis=0, dtype=np.int64) for j in range(N_SPLITS)])
    gap = np.abs(counts - y.sum(axis=0, dtype=np.int64) / N_SPLITS)
    sizes = np.bincount(fold, minlength=N_SPLITS)
    return float(gap.max()), float(gap.mean()), int(sizes.max() - sizes.min())


def main() -> None:
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold as PeerKFold

    machine_line = machine()
    rows = []
    for name, make in (("independent", independent_labels), ("skewed", skewed_labels)):
        y = make(np.random.default_rng(0))
        results = {}
        for library, splitter in (
            ("kagglekit", MultilabelStratifiedKFold(N_SPLITS, shuffle=True, random_state=0)),
            ("iterative-stratification", PeerKFold(n_splits=N_SPLITS, shuffle=True, random_state=0)),
        ):
            seconds, peak_mb, fold = measure(folds_from, splitter, y, repeat=REPEAT)
            results[library] = (seconds, *deviation(y, fold))
            rows.append([name, library, seconds, peak_mb, *results[library][1:]])
        ours, peer = results["kagglekit"], results["iterative-stratification"]
        rows.append([name, "ratio peer / kagglekit", peer[0] / ours[0], "", peer[1] / max(ours[1], 1e-9),
                     peer[2] / max(ours[2], 1e-9), ""])
    table = markdown_table(
        ["labels", "library", "seconds (best of 3)", "peak RSS MB", "largest deviation", "mean deviation", "fold size spread"],
        rows,
    )
    load = os.getloadavg()
    body = (
        f"{N_SAMPLES:,} samples x {N_LABELS} labels, {N_SPLITS} folds; deviation = |count of a label in a fold - "
        f"n_label / {N_SPLITS}| over all folds and labels. Load average at the end: {load[0]:.1f} (shared machine).\n\n"
        + table
    )
    record("Multi-label folds (bench_folds.py)", body, machine_line)


if __name__ == "__main__":
    main()
