"""``train_folds``: every id once in the OOF table with the fold that held it out, the OOF logits equal to
each fold's checkpoint on its held-out items, the CV report equal to the metric computed here, kept
folds on a rerun, redone folds for a changed setting, and the same files on Ray as in this process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from kagglekit.models import create, load_checkpoint, register_model
from kagglekit.train import train_folds

N, D = 40, 5


class TinyMLP(nn.Module):
    def __init__(self, classes: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, classes))

    def forward(self, x):
        return self.body(x)


register_model("test_folds_mlp", TinyMLP)


def small_model():
    """A fresh model (module level: Ray's workers import it by name)."""
    torch.manual_seed(0)
    return create("kagglekit/test_folds_mlp")


class Items(torch.utils.data.Dataset):
    """(x, multi-hot y) with ids ``item<k>``."""

    def __init__(self):
        g = torch.Generator().manual_seed(4)
        self.x = torch.randn(N, D, generator=g)
        self.y = torch.stack([self.x[:, 0] > 0, self.x[:, 1] + self.x[:, 2] > 0], dim=1).float()
        self.ids = [f"item{k}" for k in range(N)]

    @property
    def targets(self):
        return self.y.numpy()

    def __len__(self):
        return N

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def accuracy(y, p) -> float:
    return float(((p > 0.5) == (y > 0.5)).mean())


FOLDS = np.arange(N) % 4
OPTIONS = {"loss": nn.BCEWithLogitsLoss(), "steps": 6, "batch_size": 8, "lr": 0.05, "classes": ["a", "b"],
           "metric": accuracy, "progress": False}


def test_the_oof_table_holds_each_id_once_with_its_folds_checkpoint_outputs(tmp_path):
    data = Items()
    result = train_folds(small_model, data, FOLDS, tmp_path, **OPTIONS)
    oof = result.oof
    assert oof["id"].to_list() == data.ids and oof["fold"].to_list() == FOLDS.tolist()
    for k in range(4):
        held = np.flatnonzero(FOLDS == k)
        model = load_checkpoint(tmp_path / f"fold{k}" / "model.safetensors").eval()
        with torch.no_grad():
            expected = model(data.x[held]).numpy()
        got = oof.filter(oof["fold"] == k).select(["logit_a", "logit_b"]).to_numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        p = 1 / (1 + np.exp(-expected.astype(np.float64)))
        np.testing.assert_allclose(oof.filter(oof["fold"] == k).select(["prob_a", "prob_b"]).to_numpy(), p, atol=1e-6)
        assert result.cv["folds"][k]["score"] == pytest.approx(accuracy(data.y[held].numpy(), p))
    all_p = oof.select(["prob_a", "prob_b"]).to_numpy()
    assert result.cv["overall"] == pytest.approx(accuracy(data.y.numpy(), all_p))
    assert json.loads((tmp_path / "cv.json").read_text()) == result.cv


def test_a_rerun_keeps_finished_folds_and_a_changed_setting_redoes_them(tmp_path):
    first = train_folds(small_model, Items(), FOLDS, tmp_path, **OPTIONS)
    again = train_folds(small_model, Items(), FOLDS, tmp_path, **OPTIONS)
    assert again.report.skipped == ["fold0", "fold1", "fold2", "fold3"] and again.oof.equals(first.oof)
    changed = train_folds(small_model, Items(), FOLDS, tmp_path, **{**OPTIONS, "lr": 0.02})
    assert changed.report.done == ["fold0", "fold1", "fold2", "fold3"] and not changed.oof.equals(first.oof)
    relabelled = Items()
    relabelled.y[0] = 1 - relabelled.y[0]
    redone = train_folds(small_model, relabelled, FOLDS, tmp_path, **{**OPTIONS, "lr": 0.02})
    assert redone.report.done == ["fold0", "fold1", "fold2", "fold3"]  # other labels: every fold again


def test_folds_from_a_splitter_and_their_mistakes(tmp_path):
    from kagglekit.errors import InvalidArgumentError
    from kagglekit.train import fold_assignment

    splits = [(np.flatnonzero(FOLDS != k), np.flatnonzero(FOLDS == k)) for k in range(4)]
    np.testing.assert_array_equal(fold_assignment(splits, N), FOLDS)
    with pytest.raises(InvalidArgumentError, match="held out by no fold"):
        fold_assignment(splits[:3], N)
    with pytest.raises(InvalidArgumentError, match="already held out"):
        fold_assignment([*splits, splits[0]], N)


def test_ray_writes_the_same_checkpoints_and_oof_table_as_this_process(ray_cluster, tmp_path):
    from safetensors.torch import load_file

    local = train_folds(small_model, Items(), FOLDS, tmp_path / "local", **OPTIONS)
    on_ray = train_folds(small_model, Items(), FOLDS, tmp_path / "ray", engine="ray", workers=2, **OPTIONS)
    assert on_ray.report.engine == "ray" and on_ray.oof.equals(local.oof) and on_ray.cv == local.cv
    for a, b in zip(local.checkpoints, on_ray.checkpoints):
        ta, tb = load_file(a), load_file(b)
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
