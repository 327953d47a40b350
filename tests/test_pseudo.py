"""Pseudo-labels: the label table equals thresholds applied plainly cell by cell (row by row for one class per
row); fit's loss with a weight per source equals BCE(labels) + 0.3 BCE(pseudo) written by hand, and its SGD step
a plain step on that loss; the datasets carry the weights; and ``train_folds`` never trains a fold on
pseudo-labels from a model that saw that fold's labels (checked on the rows each fold's fits read)."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from kagglekit.data import ImageDataset, TileDataset
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.losses import DiceLoss, LovaszLoss, SoftFBetaLoss
from kagglekit.models import create, register_model
from kagglekit.train import fit, pseudo_labels, train_folds

PLAIN = {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0, "scheduler": None, "shuffle": False, "progress": False}
CLASSES = ["a", "b", "c", "d"]


def plain_cells(p, low, high):
    """A cell: 1.0 at or above high, 0.0 at or below low, None in between."""
    return [1.0 if v >= high else 0.0 if v <= low else None for v in p]


def test_hard_multi_label_pseudo_labels_are_a_plain_threshold_of_each_cell():
    rng = np.random.default_rng(0)
    P = rng.random((40, 4))
    P[:3] = 0.5  # rows with no decided cell: dropped
    ids = [f"t{i}" for i in range(40)]
    table = pseudo_labels(P, ids=ids, classes=CLASSES, hard=(0.2, 0.8), weight=0.3)
    expected = [(ids[i], plain_cells(P[i], 0.2, 0.8)) for i in range(40) if any(c is not None for c in plain_cells(P[i], 0.2, 0.8))]
    assert table.columns == ["id", *CLASSES, "weight", "source"]
    assert table["id"].to_list() == [i for i, _ in expected]
    assert [list(row) for row in table.select(CLASSES).rows()] == [cells for _, cells in expected]
    assert table["weight"].to_list() == pytest.approx([0.3] * len(expected)) and set(table["source"]) == {"pseudo"}
    soft = pseudo_labels(P, ids=ids, classes=CLASSES, hard=(0.2, 0.8), soft=True)
    kept = [i for i in range(40) if any(c is not None for c in plain_cells(P[i], 0.2, 0.8))]
    assert [list(row) for row in soft.select(CLASSES).rows()] == [
        [None if c is None else pytest.approx(v, abs=1e-7) for v, c in zip(P[i], plain_cells(P[i], 0.2, 0.8))] for i in kept]
    every = pseudo_labels(P, ids=ids, classes=CLASSES, soft=True)
    np.testing.assert_allclose(every.select(CLASSES).to_numpy(), P, atol=1e-7)


def test_hard_single_label_pseudo_labels_keep_one_sure_class_per_row_and_other():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (60, 3))
    P = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    ids = [f"t{i}" for i in range(60)]
    table = pseudo_labels(P, ids=ids, classes=["x", "y", "z"], activation="softmax", hard=(0.4, 0.6), other="Other")
    expected = []
    for i, p in enumerate(P):  # exactly one class sure and the others surely not; or none at all: Other
        ones, zeros = [c for c, v in zip("xyz", p) if v >= 0.6], [c for c, v in zip("xyz", p) if v <= 0.4]
        if len(ones) == 1 and len(zeros) == 2:
            expected.append((ids[i], ones[0]))
        elif len(zeros) == 3:
            expected.append((ids[i], "Other"))
    assert {label for _, label in expected} >= {"Other", "x"}  # the draw covers both cases
    assert table.columns == ["id", "label", "weight", "source"]
    assert list(zip(table["id"], table["label"])) == expected


def test_per_fold_predictions_keep_the_fold_that_made_each_row():
    rng = np.random.default_rng(2)
    P = rng.random((3, 10, 4))  # 3 fold models x 10 unlabelled images
    ids = [f"t{i}" for i in range(10)]
    from_array = pseudo_labels(P, ids=ids, classes=CLASSES, hard=(0.3, 0.7), weight=0.3)
    oof_like = pl.DataFrame({"id": ids * 3, "fold": np.repeat(np.arange(3), 10),
                             **{f"prob_{c}": P[:, :, j].ravel() for j, c in enumerate(CLASSES)}})
    from_table = pseudo_labels(oof_like, hard=(0.3, 0.7), weight=0.3)
    assert from_table.equals(from_array.select(from_table.columns))
    for row in from_array.iter_rows(named=True):  # each row's cells are those of its own fold's predictions
        p = P[row["fold"], ids.index(row["id"])]
        assert [row[c] for c in CLASSES] == plain_cells(p, 0.3, 0.7)


@pytest.mark.parametrize("call, match", [
    (lambda: pseudo_labels(np.full((2, 2), 3.0), ids=["a", "b"], hard=(0.1, 0.9)), "probabilities in"),
    (lambda: pseudo_labels(np.full((2, 2), 0.5), ids=["a", "a"], hard=(0.1, 0.9)), "appears twice"),
    (lambda: pseudo_labels(np.full((2, 2), 0.5), ids=["a", "b"]), "soft=True"),
    (lambda: pseudo_labels(np.full((2, 2), 0.5), ids=["a", "b"], hard=(0.9, 0.1)), "low <= high"),
    (lambda: pseudo_labels(np.full((2, 2), 0.5), ids=["a", "b"], hard=(0.1, 0.9), other="Other"), "softmax"),
    (lambda: pseudo_labels(np.full((2, 2), 0.5), ids=["a", "b"], classes=["id", "x"], soft=True), "none of"),
])
def test_pseudo_label_mistakes_are_named(call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call()


def mixed_batch(n_labelled: int = 6, n_pseudo: int = 6, seed: int = 0):
    """(x, y, w): labelled rows at weight 1.0, pseudo rows at 0.3 with some masked (NaN) cells."""
    g = torch.Generator().manual_seed(seed)
    n = n_labelled + n_pseudo
    x = torch.randn(n, 5, generator=g)
    y = (torch.rand(n, 3, generator=g) > 0.5).float()
    y[n_labelled:][torch.rand(n_pseudo, 3, generator=g) > 0.6] = float("nan")
    w = torch.tensor([1.0] * n_labelled + [0.3] * n_pseudo)
    return x, y, w


def hand_weighted_bce(model, x, y, n_labelled: int = 6) -> torch.Tensor:
    """BCE(labels) + 0.3 BCE(pseudo), each a sum over its rows' kept cells, over the batch's cell count."""
    cells = nn.functional.binary_cross_entropy_with_logits(model(x), torch.nan_to_num(y), reduction="none")
    labels = cells[:n_labelled].sum()
    pseudo = cells[n_labelled:][~torch.isnan(y[n_labelled:])].sum()
    return (labels + 0.3 * pseudo) / cells.numel()


@pytest.mark.parametrize("loss", ["bce", nn.BCEWithLogitsLoss()], ids=["kagglekit", "torch"])
def test_the_weighted_loss_and_an_sgd_step_equal_a_hand_weighted_bce(loss):
    x, y, w = mixed_batch()
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    plain = copy.deepcopy(model)
    result = fit(model, torch.utils.data.TensorDataset(x, y, w), loss=loss, steps=1, batch_size=len(x), lr=0.5, **PLAIN)
    expected = hand_weighted_bce(plain, x, y)
    assert result.history["loss"][0] == pytest.approx(expected.item(), rel=1e-6)
    expected.backward()
    with torch.no_grad():
        for p in plain.parameters():
            p -= 0.5 * p.grad
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)


def test_mixup_weighs_each_mixed_targets_loss_by_its_own_rows_weight():
    from kagglekit.augment.mix import mixup

    x, y, w = mixed_batch()
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    plain = copy.deepcopy(model)
    result = fit(model, torch.utils.data.TensorDataset(x, y, w), loss="bce", steps=1, batch_size=len(x), mix="mixup",
                 **PLAIN)
    generator = torch.Generator().manual_seed(1)  # fit's mixer: seeded seed + 1, one draw for mix_prob first
    torch.rand((), generator=generator)
    mixed = mixup(x, torch.zeros(len(x), 1), 1.0, generator=generator)
    logits = plain(mixed.inputs)

    def hand(targets, weights):  # sum of row weight x kept cells' BCE, over the batch's cells
        cells = nn.functional.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets), reduction="none")
        return (weights[:, None] * cells * ~torch.isnan(targets)).sum() / cells.numel()

    expected = mixed.lam * hand(y, w) + (1 - mixed.lam) * hand(y[mixed.index], w[mixed.index])
    assert (mixed.index != torch.arange(len(x))).any()  # partners with other weights are mixed in
    assert result.history["loss"][0] == pytest.approx(expected.item(), rel=1e-6)


def test_cutmix_of_masks_weighs_each_pixel_as_the_item_it_came_from():
    from kagglekit.augment.mix import cutmix

    g = torch.Generator().manual_seed(8)
    x = torch.randn(6, 1, 8, 8, generator=g)
    y, w = (x > 0.3).float(), torch.tensor([1.0, 1.0, 1.0, 0.3, 0.3, 0.3])
    torch.manual_seed(6)
    model = nn.Conv2d(1, 1, 3, padding=1)
    plain = copy.deepcopy(model)
    result = fit(model, torch.utils.data.TensorDataset(x, y, w), loss="bce", steps=1, batch_size=6, mix="cutmix",
                 **PLAIN)
    generator = torch.Generator().manual_seed(1)
    torch.rand((), generator=generator)
    mixed = cutmix(x, torch.zeros(6, 1), 1.0, masks=y, generator=generator)
    with torch.no_grad():
        cells = nn.functional.binary_cross_entropy_with_logits(plain(mixed.inputs), mixed.masks, reduction="none")
    y0, y1, x0, x1 = mixed.box
    total = 0.0
    for i in range(6):  # a pixel in the pasted box came from item index[i], the others from item i
        for r in range(8):
            for c in range(8):
                source = int(mixed.index[i]) if y0 <= r < y1 and x0 <= c < x1 else i
                total += float(w[source]) * float(cells[i, 0, r, c])
    assert (y1 - y0) * (x1 - x0) > 0 and (w[mixed.index] != w).any()  # a box pasted across weights
    assert result.history["loss"][0] == pytest.approx(total / cells.numel(), rel=1e-5)


def test_weights_of_one_train_as_the_unweighted_loss():
    x, y, _ = mixed_batch(12, 0)
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    unweighted = fit(copy.deepcopy(model), torch.utils.data.TensorDataset(x, y), loss="bce", steps=3, batch_size=4, **PLAIN)
    weighted = fit(model, torch.utils.data.TensorDataset(x, y, torch.ones(12)), loss="bce", steps=3, batch_size=4, **PLAIN)
    np.testing.assert_allclose(weighted.history["loss"], unweighted.history["loss"], rtol=1e-6)
    for name, value in unweighted.model.state_dict().items():
        torch.testing.assert_close(weighted.model.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("loss, error, match", [
    (lambda o, t: ((o - t) ** 2).mean(), InvalidArgumentError, "reduction='none'"),
    (DiceLoss(mode="binary"), InvalidArgumentError, "as a whole"),
    (SoftFBetaLoss(), InvalidArgumentError, "as a whole"),
    (LovaszLoss(mode="binary"), ShapeError, "one value per item"),
], ids=["function", "dice", "fbeta", "lovasz"])
def test_a_loss_that_cannot_weigh_items_is_refused(loss, error, match):
    x = torch.randn(8, 1, 4, 4)
    data = torch.utils.data.TensorDataset(x, (x > 0).float(), torch.ones(8))
    with pytest.raises(error, match=match):
        fit(nn.Conv2d(1, 1, 1), data, loss=loss, steps=1, batch_size=4, progress=False)


def test_image_and_tile_datasets_carry_each_rows_weight(tmp_path):
    rng = np.random.default_rng(5)
    for k in range(3):
        cv2.imwrite(str(tmp_path / f"t{k}.png"), rng.integers(0, 255, (8, 8, 3), np.uint8))
    table = pl.DataFrame({"id": ["t0", "t1", "t2"], "a": [1.0, None, 0.0], "b": [0.0, 1.0, None],
                          "weight": [0.3, 0.3, 0.15]})
    data = ImageDataset(table, "{id}.png", root=tmp_path, target="columns", classes=["a", "b"], weight="weight")
    items = [data[i] for i in range(3)]
    assert [float(w) for _, _, w in items] == pytest.approx([0.3, 0.3, 0.15])
    np.testing.assert_array_equal(np.stack([y.numpy() for _, y, _ in items]), [[1, 0], [np.nan, 1], [0, np.nan]])
    table.write_csv(tmp_path / "pseudo.csv")  # empty cells as "" in the CSV: read back as masked cells
    from_csv = ImageDataset(tmp_path / "pseudo.csv", "{id}.png", target="columns", classes=["a", "b"], weight="weight")
    np.testing.assert_array_equal(from_csv.targets, data.targets)
    np.testing.assert_array_equal(from_csv.weights, data.weights)
    labelled = ImageDataset(table.drop("weight").fill_null(0), "{id}.png", root=tmp_path, target="columns",
                            classes=["a", "b"], weight=1.0)
    assert [float(labelled[i][2]) for i in range(3)] == [1.0] * 3
    with pytest.raises(InvalidArgumentError, match="masked pseudo-label"):
        ImageDataset(table, "{id}.png", root=tmp_path, target="columns", classes=["a", "b"])
    with pytest.raises(InvalidArgumentError, match="row 1 has weight"):
        ImageDataset(table.with_columns(weight=pl.Series([1.0, -1.0, 1.0])), "{id}.png", root=tmp_path,
                     target="columns", classes=["a", "b"], weight="weight")
    images = [rng.integers(0, 255, (16, 16, 3), np.uint8) for _ in range(2)]
    tiles = TileDataset(images, [np.zeros((16, 16), np.uint8)] * 2, tile=8, stride=8, weights=[1.0, 0.3])
    assert [float(tiles[i][2]) for i in range(len(tiles))] == pytest.approx([[1.0, 0.3][tiles.window(i)[0]]
                                                                             for i in range(len(tiles))])


class Spy(torch.utils.data.TensorDataset):
    """A TensorDataset that logs each item read as (tag, index)."""

    def __init__(self, log: list, tag: str, *tensors, ids=None):
        super().__init__(*tensors)
        self.log, self.tag, self.ids = log, tag, ids

    def __getitem__(self, i):
        self.log.append((self.tag, int(i)))
        return super().__getitem__(i)


def reads_per_fold(log: list) -> list[dict]:
    """The log cut at each model_fn call: per fit, the labelled and pseudo items it read."""
    fits = []
    for entry in log:
        if entry == "model":
            fits.append({"L": set(), "P": set()})
        else:
            fits[-1][entry[0]].add(entry[1])
    return fits


N, FOLDS, D = 24, np.arange(24) % 3, 5


class Linear(nn.Linear):
    def __init__(self):
        super().__init__(D, 1)


register_model("test_pseudo_linear", Linear)


def labelled_data(log):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(N, D, generator=g)
    y = (x[:, :1] > 0).float()
    return Spy(log, "L", x, y), torch.utils.data.TensorDataset(x, y)  # reads for training logged, held-out not


def run_folds(tmp_path, name, log, **pseudo_options):
    def model_fn():
        log.append("model")
        return create("kagglekit/test_pseudo_linear")

    train, val = labelled_data(log)
    return train_folds(model_fn, train, FOLDS, tmp_path / name, val_data=val, ids=[f"l{i}" for i in range(N)],
                       loss="bce", epochs=1, batch_size=4, progress=False, **pseudo_options)


def test_a_folds_pseudo_labels_never_come_from_a_model_that_saw_its_labels(tmp_path):
    log: list = []
    run_folds(tmp_path, "round0", log)
    seen_by = {}  # round 0: the labelled rows each fold's model trained on, named by the fold it held out
    for reads in reads_per_fold(log):
        (held,) = set(FOLDS[sorted(set(range(N)) - reads["L"])])
        seen_by[held] = reads["L"]
    assert all(not seen_by[k] & set(np.flatnonzero(FOLDS == k)) for k in range(3))
    log.clear()
    made_by = np.repeat(np.arange(3), 4)  # 4 unlabelled images, each predicted by every fold's model
    g = torch.Generator().manual_seed(7)
    pseudo = Spy(log, "P", torch.randn(12, D, generator=g), torch.rand(12, 1, generator=g), torch.full((12,), 0.3),
                 ids=[f"u{i % 4}" for i in range(12)])
    result = run_folds(tmp_path, "round1", log, pseudo=pseudo, pseudo_folds=made_by)
    for reads in reads_per_fold(log):
        held_out = set(np.flatnonzero(FOLDS == FOLDS[min(set(range(N)) - reads["L"])]))
        assert reads["P"], "the fold trained on pseudo rows"
        for row in reads["P"]:  # the model that made this pseudo-label never read a held-out labelled row
            assert not seen_by[made_by[row]] & held_out
    assert result.oof["id"].to_list() == [f"l{i}" for i in range(N)]  # pseudo rows never validate


def test_pseudo_labels_of_a_model_that_saw_every_fold_are_refused_unless_accepted(tmp_path):
    log: list = []
    pseudo = Spy(log, "P", torch.randn(8, D), torch.rand(8, 1), torch.full((8,), 0.3), ids=[f"u{i}" for i in range(8)])
    with pytest.raises(InvalidArgumentError, match="saw every fold's labels"):
        run_folds(tmp_path, "leak", log, pseudo=pseudo)
    with pytest.raises(InvalidArgumentError, match="have labels too"):
        run_folds(tmp_path, "overlap", log, pseudo=Spy(log, "P", *pseudo.tensors, ids=["l0", *pseudo.ids[1:]]),
                  pseudo_folds=np.zeros(8, int))
    log.clear()
    run_folds(tmp_path, "accepted", log, pseudo=pseudo, accept_leaky_pseudo=True)
    assert [reads["P"] for reads in reads_per_fold(log)] == [set(range(8))] * 3  # an epoch reads every item
