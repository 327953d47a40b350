"""The whole demo, as ``kagglekit demo`` runs it: data, training, the inference notebook headless, the score.

    build/demo/input/kagglekit-demo/     the competition (data.py)
    build/demo/input/kagglekit-models/   model.safetensors, threshold.json, segment.toml (train.py)
    build/demo/working/                  submission.csv, overlay.png, inference.executed.ipynb

The other demos (``kagglekit demo multilabel``, ...) are listed in :mod:`kagglekit.demo.suite`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kagglekit.errors import ConfigError

MODELS = "kagglekit-models"


def default_notebook() -> Path:
    """notebooks/inference.ipynb of the source tree kagglekit is imported from."""
    import kagglekit

    return Path(kagglekit.__file__).resolve().parents[1] / "notebooks" / "inference.ipynb"


def score(submission, solution, beta: float = 0.5) -> tuple[float, float]:
    """(F-beta of the submission's masks, F-beta of predicting every pixel positive), pooled over all test pixels."""
    from kagglekit.demo.data import read_masks
    from kagglekit.kaggle import read_csv_strings
    from kagglekit.kaggle.rle import rle_decode
    from kagglekit.metrics import fbeta_score

    truth = read_masks(solution)
    rows = dict(read_csv_strings(submission, "submission").select("id", "rle").iter_rows())
    y = np.concatenate([m.ravel() for m in truth.values()])
    pred = np.concatenate([rle_decode(rows[i], m.shape).ravel() for i, m in truth.items()])
    return fbeta_score(y, pred, beta), fbeta_score(y, np.ones_like(y), beta)


def run_demo(out="build/demo", *, steps: int | None = None, n_train: int = 4, n_test: int = 2, side: int = 2048,
             seed: int = 0, notebook=None, log=print) -> dict:
    """Run every step under ``out``; print and return the scores and the time of each step."""
    from kagglekit.demo.data import build_competition
    from kagglekit.delivery.notebook import run_kernel
    from kagglekit.demo.train import STEPS, train

    notebook = Path(notebook) if notebook else default_notebook()
    if not notebook.is_file():
        raise ConfigError(f"{notebook} not found; run the demo from the kagglekit source tree or pass --notebook")
    out = Path(out)
    times: dict[str, float] = {}
    start = time.monotonic()

    log(f"1/4 building the competition under {out / 'input'} ({n_train} train, {n_test} test slides of {side} px)")
    competition = build_competition(out, n_train=n_train, n_test=n_test, side=side, seed=seed)
    times["build data"] = time.monotonic() - start

    steps = steps or STEPS
    log(f"2/4 training on CPU for {steps} steps")
    t = time.monotonic()
    trained = train(competition.folder, out / "input" / MODELS, steps, seed=seed, log=log)
    times["train + pick threshold"] = time.monotonic() - t

    log(f"3/4 running {notebook} headless")
    t = time.monotonic()
    working = out / "working"
    run_kernel(notebook, out, competition.folder.name, MODELS, working)
    times["inference notebook"] = time.monotonic() - t

    log("4/4 scoring against the hidden masks")
    t = time.monotonic()
    fbeta, baseline = score(working / "submission.csv", competition.solution)
    times["score"] = time.monotonic() - t
    times["total"] = time.monotonic() - start

    log("")
    log(f"training: {trained.steps} steps; held-out ({', '.join(trained.held_out)}) F0.5 {trained.held_out_fbeta:.3f} "
        f"at threshold {trained.threshold:.3f}")
    log(f"test slides ({n_test}): F0.5 = {fbeta:.3f}   (all-positive baseline: {baseline:.3f})")
    log(f"submission: {working / 'submission.csv'}   overlay: {working / 'overlay.png'}")
    log("")
    log("| step | seconds |\n| --- | ---: |")
    for name, seconds in times.items():
        log(f"| {name} | {seconds:.1f} |")
    return {"fbeta": fbeta, "baseline": baseline, "held_out_fbeta": trained.held_out_fbeta,
            "threshold": trained.threshold, "steps": trained.steps, "times": times, "seconds": times["total"],
            "summary": [("test F0.5 (pixels), the trained U-Net", fbeta), ("test F0.5 (pixels), all positive", baseline)]}
