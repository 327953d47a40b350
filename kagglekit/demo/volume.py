"""The volume demo, ``kagglekit demo volume``: ink detection on a mini Vesuvius-like competition, end to end.

    build/demo/volume/input/kagglekit-ink/         the competition (volume_data.py)
    build/demo/volume/input/kagglekit-ink-models/  a checkpoint and a segment*.toml per model
    build/demo/volume/working/                     submission.csv (the notebook's), 2d/ and swin/submission.csv,
                                                   volume_overlay.png, inference.executed.ipynb

Three models of the same kind (``kagglekit/volume_segmenter``: a timm backbone per slice group, a 3D
block, mean + max over depth, logits at 1/8) are trained for the same fixed number of steps on tiles
drawn by :class:`kagglekit.data.TileDataset`: inside the fragment masks, half of them on ink, labels at
1/8 (area mean), each fragment normalised by its own mean and std inside its mask, tiles cached on
disk. The 2.5D model (resnet10t) reads the 8 middle slices, the 2D model (resnet10t) only slice 9 (one of
the inked slices), the Swin V2 model the 8 middle slices through a tiny ``swinv2_tiny_window8_256`` (two
stages of width 24: a channels-last backbone, whose NHWC features the model permutes, built for the
tile's size). The 2.5D model's ``segment.toml`` (``kind = "volume"``, ``z = "middle:8"``, the fragment
mask, ``normalize = "volume"``, D4 cycled per window, a percentile threshold inside the mask) goes
through the inference notebook headless; the other two through ``segment`` with the same settings.
Scores are the competition's: F0.5 per fragment, averaged (``fbeta_score(average="samples")``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kagglekit.demo.volume_data import INK_SLICES, SLICES
from kagglekit.io import read_mask

MODELS = "kagglekit-ink-models"
BETA = 0.5
STEPS = 100  # per model; the Swin V2 model trains in about the 2D model's time (the 2.5D resnet10t in twice that)
TILE, STRIDE, OUT_SCALE = 128, 32, 8
MIDDLE = 8  # slices the 2.5D model reads: the middle 8 of 20 (the 4 inked ones and 2 on each side)
SLICE_2D = 9  # the one slice the 2D model reads: an inked one
MODEL_KWARGS = {"backbone": "resnet10t", "feature_index": 2, "neck_channels": 32, "num_blocks": 1}
SWIN_KWARGS = {**MODEL_KWARGS, "backbone": "swinv2_tiny_window8_256", "feature_index": 1, "img_size": TILE,
               "embed_dim": 24, "depths": [1, 1], "num_heads": [1, 2]}  # channels-last; its stage 2 is at 1/8


class ModelRun(NamedTuple):
    """One model of the demo: ``name`` (its checkpoint ``ink_<name>``, result key ``fbeta_<name>`` and the
    folder of its submission under working/), ``kind`` and ``slices`` (its table row), ``z`` (the slices as the
    config takes them), its group size, its VolumeSegmenter keywords and its kernel config's file name."""
    name: str
    kind: str
    slices: str
    z: object
    group_size: int
    kwargs: dict
    config: str


MODEL_RUNS = (  # the first goes through the notebook (segment.toml), the others through segment
    ModelRun("25d", "2.5D", f"the {MIDDLE} middle slices", f"middle:{MIDDLE}", 2, MODEL_KWARGS, "segment.toml"),
    ModelRun("2d", "2D", f"slice {SLICE_2D} alone", [SLICE_2D, SLICE_2D + 1], 1, MODEL_KWARGS, "segment_2d.toml"),
    ModelRun("swin", "2.5D Swin V2 (channels-last)", f"the {MIDDLE} middle slices", f"middle:{MIDDLE}", 2, SWIN_KWARGS,
             "segment_swin.toml"),
)


def kernel_config(q: float, z, checkpoint: str) -> dict:
    """The ``segment.toml`` of a model that reads slices ``z`` (as the config takes them: ``"middle:N"`` or
    ``[start, stop]``) from ``checkpoint``, thresholded at the ``q`` quantile inside each fragment's mask."""
    from kagglekit.demo.train import BUDGET

    return {"kind": "segment", "batch_size": 8,
            "inputs": {"glob": "test/*/volume.tif", "kind": "volume", "z": z, "id_from": "parent", "mask": "test/{id}/mask.png"},
            "preprocess": {"normalize": "volume"}, "tiling": {"tile": TILE, "stride": STRIDE},
            "models": [{"path": checkpoint}], "tta": {"views": "d4", "mode": "cycle"},
            "threshold": {"kind": "percentile", "q": q}, "output": {"id_column": "Id", "mask_column": "Predicted"},
            "budget": BUDGET}


def train_model(competition, z, group_size: int, steps: int, *, model_kwargs=MODEL_KWARGS, batch_size: int = 8,
                seed: int = 0, cache_dir=None, log=print):
    """A VolumeSegmenter (``model_kwargs``) trained through ``kagglekit.train.fit`` on the train fragments'
    slices ``z`` (as the kernel config takes them) for ``steps`` steps of ``batch_size`` TileDataset tiles;
    returns the model in eval mode. Holds the fragments' masks and ink labels, the model and one batch (the tiles are read from
    the cache in ``cache_dir``)."""
    import albumentations as A
    import torch

    from kagglekit.data import TileDataset
    from kagglekit.demo.train import fit_tiles
    from kagglekit.io import open_volume
    from kagglekit.models import create

    folder = competition.folder / "train"
    ids = competition.train_ids
    z = slice(*z) if isinstance(z, list) else z
    dataset = TileDataset([open_volume(folder / i / "volume.tif", z=z) for i in ids],
                          [folder / i / "inklabels.png" for i in ids], tile=TILE, samples_per_epoch=steps * batch_size,
                          label_scale=OUT_SCALE, positive_fraction=0.5, regions=[folder / i / "mask.png" for i in ids],
                          normalize="volume", transform=A.Compose([A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90()]),
                          cache_dir=cache_dir, seed=seed)
    torch.manual_seed(seed)
    model = create("kagglekit/volume_segmenter", group_size=group_size, **model_kwargs)
    return fit_tiles(model, dataset, steps, batch_size=batch_size, lr=2e-3, seed=seed, log=log)


def ink_quantile(competition) -> float:
    """The percentile threshold's q: 1 - the ink fraction of the train fragments inside their masks."""
    folder = competition.folder / "train"
    inside = ink = 0
    for i in competition.train_ids:
        mask, label = read_mask(folder / i / "mask.png"), read_mask(folder / i / "inklabels.png")
        inside, ink = inside + int(mask.sum()), ink + int((label & mask).sum())
    return 1.0 - ink / inside


def per_fragment_fbeta(submission, solution_dir, ids, beta: float = BETA) -> float:
    """The competition's score: F-beta of each fragment's mask, averaged over the fragments."""
    from kagglekit.kaggle import read_csv_strings
    from kagglekit.kaggle.rle import rle_decode
    from kagglekit.metrics import fbeta_score

    rows = dict(read_csv_strings(submission, "submission").select("Id", "Predicted").iter_rows())
    truth = np.stack([read_mask(Path(solution_dir) / f"{i}.png") for i in ids])
    pred = np.stack([rle_decode(rows[i], t.shape) for i, t in zip(ids, truth)])
    return fbeta_score(truth, pred, beta, average="samples")


def all_ink_fbeta(competition, beta: float = BETA) -> float:
    """The baseline: every pixel inside each fragment's mask predicted as ink."""
    from kagglekit.metrics import fbeta_score

    ids = competition.test_ids
    truth = np.stack([read_mask(competition.solution / f"{i}.png") for i in ids])
    inside = np.stack([read_mask(competition.folder / "test" / i / "mask.png") for i in ids])
    return fbeta_score(truth, inside, beta, average="samples")


def overlay(competition, fragment: str, predictions: dict[str, Path], path: Path) -> None:
    """A PNG of ``fragment``: one slice as the 2D model sees it, then each submission's mask and the truth over it."""
    import cv2

    from kagglekit.io import open_volume
    from kagglekit.kaggle import read_csv_strings
    from kagglekit.kaggle.rle import rle_decode
    from kagglekit.tiling import overlay_mask, save_png

    volume = open_volume(competition.folder / "test" / fragment / "volume.tif", z=SLICE_2D)
    gray = volume.read(0, 0, *volume.shape[:2])[:, :, 0]
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    truth = read_mask(competition.solution / f"{fragment}.png")
    panels = [(f"slice {SLICE_2D}", rgb)]
    for name, submission in predictions.items():
        rows = dict(read_csv_strings(submission, "submission").select("Id", "Predicted").iter_rows())
        panels.append((name, overlay_mask(rgb, rle_decode(rows[fragment], truth.shape).astype(np.float32))))
    panels.append(("truth", overlay_mask(rgb, truth.astype(np.float32))))
    for title, image in panels:
        cv2.putText(image, title, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 0), 2, cv2.LINE_AA)
    save_png(path, np.concatenate([np.concatenate([p for _, p in panels[:2]], axis=1),
                                   np.concatenate([p for _, p in panels[2:]], axis=1)], axis=0))


def run_volume(out="build/demo/volume", *, steps: int | None = None, n_train: int = 3, n_test: int = 2,
               shape: tuple[int, int] = (448, 576), seed: int = 0, notebook=None, log=print) -> dict:
    """Build, train the three models, run the notebook on the 2.5D one and ``segment`` on the others, score;
    print and return the per-fragment F0.5 of each (``fbeta_25d``, ``fbeta_2d``, ``fbeta_swin``), the all-ink
    baseline's and the time of each step. The overlay shows the 2.5D and 2D models'.

    The size knobs (``kagglekit demo volume --steps --train --test``): ``steps`` per model, ``n_train`` and
    ``n_test`` fragments of ``shape`` pixels. The defaults are the full demo, whose figures
    ``make demo-check`` asserts; the test suite runs a small size."""
    from kagglekit.delivery.notebook import run_kernel
    from kagglekit.demo.run import default_notebook
    from kagglekit.demo.train import write_kernel_config
    from kagglekit.demo.volume_data import build_ink_competition
    from kagglekit.errors import ConfigError
    from kagglekit.models import save_checkpoint
    from kagglekit.pipeline import segment

    notebook = Path(notebook) if notebook else default_notebook()
    if not notebook.is_file():
        raise ConfigError(f"{notebook} not found; run the demo from the kagglekit source tree or pass --notebook")
    out, steps = Path(out), steps or STEPS
    times: dict[str, float] = {}
    start = time.monotonic()
    log(f"1/6 building the competition under {out / 'input'} (fragments of {SLICES} x {shape[0]} x {shape[1]}, "
        f"ink in slices {INK_SLICES[0]}..{INK_SLICES[1] - 1})")
    competition = build_ink_competition(out, n_train=n_train, n_test=n_test, shape=shape, seed=seed)
    q = ink_quantile(competition)
    times["build data"] = time.monotonic() - start

    models_dir, working = out / "input" / MODELS, out / "working"
    models_dir.mkdir(parents=True, exist_ok=True)
    submissions, configs = {}, {}
    for step, run in enumerate(MODEL_RUNS, start=2):
        log(f"{step}/6 training the {run.kind} model on CPU for {steps} steps ({run.slices})")
        t = time.monotonic()
        model = train_model(competition, run.z, run.group_size, steps, model_kwargs=run.kwargs, seed=seed,
                            cache_dir=out / "tile_cache", log=log)
        checkpoint = f"ink_{run.name}.safetensors"
        save_checkpoint(model, models_dir / checkpoint, metadata={"steps": steps, "slices": run.slices})
        configs[run.name] = write_kernel_config(models_dir / run.config, kernel_config(q, run.z, checkpoint))
        submissions[run.name] = working / ("." if step == 2 else run.name) / "submission.csv"
        times[f"train {run.kind}"] = time.monotonic() - t

    log(f"5/6 running {notebook} headless on the 2.5D model, and segment on the others")
    t = time.monotonic()
    run_kernel(notebook, out, competition.folder.name, MODELS, working)  # the notebook runs segment.toml
    for name, submission in list(submissions.items())[1:]:
        segment(configs[name], competition.folder, submission.parent)
    times["inference"] = time.monotonic() - t

    log("6/6 scoring against the hidden ink labels (F0.5 per fragment, averaged)")
    scores = {name: per_fragment_fbeta(path, competition.solution, competition.test_ids) for name, path in submissions.items()}
    baseline = all_ink_fbeta(competition)
    overlay(competition, competition.test_ids[0], {"2.5D model": submissions["25d"], "2D model": submissions["2d"]},
            working / "volume_overlay.png")
    times["total"] = time.monotonic() - start
    log("")
    log("| model | per-fragment F0.5 |\n| --- | ---: |")
    for run in MODEL_RUNS:
        log(f"| {run.kind}: {run.slices} | {scores[run.name]:.4f} |")
    log(f"| all ink inside the mask | {baseline:.4f} |")
    log(f"overlay: {working / 'volume_overlay.png'}   threshold: the {q:.4f} quantile inside each fragment's mask")
    return {**{f"fbeta_{name}": score for name, score in scores.items()}, "baseline": baseline, "q": q,
            "times": times, "seconds": times["total"],
            "summary": [("per-fragment F0.5, 2.5D model (8 slices)", scores["25d"]),
                        (f"per-fragment F0.5, 2D model (slice {SLICE_2D})", scores["2d"]),
                        ("per-fragment F0.5, 2.5D Swin V2 model (8 slices)", scores["swin"]),
                        ("per-fragment F0.5, all ink", baseline)]}
