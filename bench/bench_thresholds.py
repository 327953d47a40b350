"""F0.5 threshold search on 10^7 pixel scores (float32 and float16): kagglekit against what teams use.

Rows, all in this process on the same data (10% positives, scores = sigmoid of separated normal logits):
- kagglekit ``best_fbeta_threshold`` (exact; best of 3 runs),
- the exact sweep through ``sklearn.metrics.precision_recall_curve`` (F from its precision/recall),
- Nelder-Mead over the quantile, scoring ``sklearn.metrics.fbeta_score`` each step (as in a recent
  second-place ink-detection solution),
- a 100-point grid between the min and max score scored with ``fbeta_score`` (what scikit-learn's
  ``TunedThresholdClassifierCV(thresholds=100)`` evaluates).
A second table times ``expected_fbeta_decision`` on 10^5 samples x 28 labels (no peer; the issue asks
that it be fast enough). Single-threaded numpy throughout; no thread settings are changed.
Run: ``.venv/bin/python bench/bench_thresholds.py`` (about 5-8 minutes, mostly the peers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, measure, record  # noqa: E402

from kagglekit.thresholds import best_fbeta_threshold, expected_fbeta_decision  # noqa: E402

N = 10**7
BETA = 0.5


def make_scores(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.1
    logits = np.where(y, rng.normal(1.5, 1.5, n), rng.normal(-2.0, 1.5, n))
    return y, (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def pr_curve_sweep(y, scores, beta):
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, scores)
    b2 = beta * beta
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.nan_to_num((1 + b2) * precision * recall / (b2 * precision + recall))
    i = int(np.argmax(f[:-1]))  # the last point (recall 0) has no threshold
    return float(thresholds[i]), float(f[i])


def nelder_mead_quantile(y, scores, beta):
    from scipy.optimize import minimize
    from sklearn.metrics import fbeta_score

    def loss(q):
        threshold = np.quantile(scores, float(np.clip(q[0], 0.0, 1.0)))
        return -fbeta_score(y, scores >= threshold, beta=beta)

    result = minimize(loss, x0=[0.9], method="Nelder-Mead")
    return float(np.quantile(scores, float(np.clip(result.x[0], 0.0, 1.0)))), float(-result.fun)


def grid_100(y, scores, beta):
    from sklearn.metrics import fbeta_score

    grid = np.linspace(float(scores.min()), float(scores.max()), 100)
    values = [fbeta_score(y, scores >= t, beta=beta) for t in grid]
    i = int(np.argmax(values))
    return float(grid[i]), float(values[i])


def kagglekit_search(y, scores, beta):
    result = best_fbeta_threshold(y, scores, beta)
    return result.threshold, result.fbeta


def main() -> None:
    y, scores32 = make_scores(N)
    rows = []
    verdicts = []
    for scores in (scores32, scores32.astype(np.float16)):
        dtype = scores.dtype.name
        t_kk, mem_kk, (thr_kk, f_kk) = measure(kagglekit_search, y, scores, BETA, repeat=3)
        rows.append(["kagglekit best_fbeta_threshold", dtype, t_kk, mem_kk, f_kk, thr_kk, 1.0])
        for name, fn in (
            ("precision_recall_curve sweep", pr_curve_sweep),
            ("Nelder-Mead on quantile + fbeta_score", nelder_mead_quantile),
            ("100-point grid + fbeta_score", grid_100),
        ):
            seconds, mem, (thr, f) = measure(fn, y, scores, BETA)
            rows.append([name, dtype, seconds, mem, f, thr, seconds / t_kk])
            print(f"{dtype} {name}: {seconds:.3f} s, F={f:.12f}", flush=True)
            if name.startswith("precision"):
                verdicts.append(
                    f"{dtype}: F-beta equal to the exact sweep to {abs(f - f_kk):.1e}; {seconds / t_kk:.1f}x faster"
                )
            elif name.startswith("Nelder"):
                verdicts.append(f"{dtype}: {seconds / t_kk:.0f}x faster than Nelder-Mead (F {f:.6f} vs {f_kk:.6f})")
    table = markdown_table(
        ["method", "scores", "seconds", "peak RSS MB", f"F{BETA:g}", "threshold", "time / kagglekit"], rows
    )

    rng = np.random.default_rng(1)
    probabilities = rng.beta(0.3, 2.0, size=(10**5, 28))
    t_dec, mem_dec, _ = measure(expected_fbeta_decision, probabilities, 2.0)
    decision = markdown_table(
        ["function", "input", "seconds", "peak RSS MB"],
        [["expected_fbeta_decision (beta=2)", "10^5 x 28 float64", t_dec, mem_dec]],
    )
    body = (
        f"10^7 scores, 10% positives, beta={BETA} "
        "(timings on a shared machine are noisy; the ratios are from one run, same process).\n\n"
        f"{table}\n\n" + "\n".join(f"- {v}" for v in verdicts) + f"\n\n{decision}\n"
    )
    record("thresholds: exact F-beta threshold search (bench_thresholds.py)", body)


if __name__ == "__main__":
    main()
