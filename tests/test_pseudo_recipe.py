"""The README's pseudo-label rounds run as written on a small copy of the multilabel demo's competition (its
steps, folds and batch turned down): the last relabel is a plain threshold of each fold's model's outputs,
computed here from the checkpoints on plainly decoded images; the retrain's OOF table holds the labelled ids
only."""

from __future__ import annotations

import cv2
import numpy as np
import polars as pl
import pytest
import torch

from kagglekit.models import load_checkpoint

from helpers import code_blocks, readme_section

TURNED_DOWN = {"steps=120": "steps=2", "n_splits=4": "n_splits=2", "batch_size=32": "batch_size=8",
               "hard=(0.1, 0.9)": "hard=(0.48, 0.5)"}  # two steps leave every probability within 0.47-0.53


def plain_probabilities(checkpoint, files) -> np.ndarray:
    """(N, C) sigmoid outputs of the checkpoint's model on the images read by cv2, scaled to [0, 1]."""
    model = load_checkpoint(checkpoint)
    x = np.stack([cv2.imread(str(f))[:, :, ::-1].transpose(2, 0, 1) / 255.0 for f in files]).astype(np.float32)
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x))).numpy()


def test_the_readme_rounds_relabel_by_a_plain_threshold_of_each_folds_model(tmp_path, monkeypatch):
    from kagglekit.demo.multilabel_data import build_multilabel_competition

    build_multilabel_competition(tmp_path / "build" / "demo", n_train=32, n_test=12, side=64, seed=0)
    (code,) = code_blocks(readme_section("Pseudo-labels", level=3), "python")
    for written, small in TURNED_DOWN.items():
        assert written in code, written
        code = code.replace(written, small)
    monkeypatch.chdir(tmp_path)
    run: dict = {}
    exec(compile(code, "README.md", "exec"), run)

    comp = tmp_path / "build" / "demo" / "input" / "kagglekit-multilabel"
    ids = pl.read_csv(comp / "sample_submission.csv")["image_name"].to_list()
    files = [comp / "test" / f"{i}.jpg" for i in ids]
    P = np.stack([plain_probabilities(tmp_path / "pseudo" / "round1" / f"fold{k}" / "model.safetensors", files)
                  for k in range(2)])  # the last relabel's models: round 1's folds
    np.testing.assert_allclose(run["P"], P, atol=1e-6)
    classes, table = run["classes"], run["table"]
    expected = []
    for fold in range(2):
        for i, p in zip(ids, run["P"][fold]):
            cells = [1.0 if v >= 0.5 else 0.0 if v <= 0.48 else None for v in p]
            if any(c is not None for c in cells):
                expected.append((i, *cells, "pseudo", fold))
    assert expected, "the relabel kept no row: nothing was retrained on"
    assert table.columns == ["id", *classes, "weight", "source", "fold"]
    assert [(r["id"], *(r[c] for c in classes), r["source"], r["fold"]) for r in table.iter_rows(named=True)] == expected
    assert table["weight"].to_list() == pytest.approx([0.15] * len(expected))  # the second round's weight
    assert sorted(run["result"].oof["id"].to_list()) == sorted(run["labelled"].ids)  # pseudo rows never validate
