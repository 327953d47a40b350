"""MIL seed ensembles: the vectorised heads equal each head trained alone (written plainly here) on the same
batches; padding and tile order do not change a head; folds give out-of-fold rows; checkpoints reload."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from kagglekit.errors import ShapeError
from kagglekit.mil import Bag, epoch_batches, fit_heads, pad_bags, predict_bags, train_heads
from kagglekit.models import Chowder, GatedAttentionMIL, load_checkpoint


def toy_bags(n=36, d=12, classes=3, seed=0):
    """Bags of 6..30 tiles; a bag of class c holds a few tiles shifted along feature c (a minority signal)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    bags = []
    for label in y:
        f = rng.normal(size=(int(rng.integers(6, 31)), d)).astype(np.float32)
        f[: 3, label] += 5.0
        bags.append(f[rng.permutation(len(f))].astype(np.float16))
    return bags, y


@pytest.mark.parametrize("head, build, kwargs", [
    ("chowder", Chowder, {"r": 2, "hidden": [8]}),
    ("gated_attention", GatedAttentionMIL, {"hidden": 6}),
])
def test_vectorised_heads_equal_each_head_trained_alone_with_its_seed(head, build, kwargs):
    bags, y = toy_bags()
    train = np.arange(0, 30)
    seeds = [11, 12, 13]
    ensemble = fit_heads(bags, y, train, head=head, seeds=seeds, epochs=6, lr=1e-2, weight_decay=1e-3, batch_size=7,
                         data_seed=5, head_kwargs=kwargs)
    test_x, test_mask = pad_bags(bags, np.arange(30, 36))
    with torch.no_grad():
        together = ensemble(test_x, test_mask)
    counts = np.bincount(y[train], minlength=3)
    weight = torch.tensor(len(train) / (3 * counts), dtype=torch.float32)
    for i, s in enumerate(seeds):  # the plain way: one head, its own optimiser, the same batches
        torch.manual_seed(s)
        alone = build(in_dim=12, num_classes=3, **kwargs)
        optimiser = torch.optim.AdamW(alone.parameters(), lr=1e-2, weight_decay=1e-3)
        for batch in epoch_batches(len(train), 7, 6, 5):
            x, mask = pad_bags(bags, train[batch])
            loss = torch.nn.functional.cross_entropy(alone(x, mask), torch.from_numpy(y[train[batch]]), weight=weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            np.testing.assert_allclose(together[i].numpy(), alone.eval()(test_x, test_mask).numpy(), atol=1e-4)


def test_padding_and_tile_order_do_not_change_an_ensembles_output():
    bags, y = toy_bags(n=12)
    ensemble = fit_heads(bags, y, np.arange(12), seeds=[0, 1], epochs=2, head_kwargs={"r": 3})
    with torch.no_grad():
        for k, f in enumerate(bags):
            alone = ensemble(torch.from_numpy(f.astype(np.float32))[None])
            shuffled = f[np.random.default_rng(k).permutation(len(f))]
            padded = np.concatenate([shuffled, np.full((9, f.shape[1]), np.nan, np.float16)])
            mask = torch.from_numpy(np.arange(len(padded)) < len(f))[None]
            np.testing.assert_allclose(ensemble(torch.from_numpy(padded.astype(np.float32))[None], mask).numpy(),
                                       alone.numpy(), atol=1e-5)


def test_train_heads_gives_out_of_fold_rows_fold_scores_and_reloadable_checkpoints(tmp_path):
    bags, y = toy_bags(n=45)
    names = np.array(["HGSC", "LGSC", "EC"])[y]
    objects = [Bag(f, np.zeros((len(f), 2), np.int64), tile=224, scale=1.0, backbone="b", slide=str(k)) for k, f in enumerate(bags)]
    trained = train_heads(objects, names, classes=["HGSC", "LGSC", "EC"], folds=3, n_seeds=4, epochs=40, lr=2e-2,
                          head_kwargs={"r": 2}, out_dir=tmp_path, progress=False)
    assert trained.oof.shape == (45, 3) and np.isfinite(trained.oof).all()
    np.testing.assert_allclose(trained.oof.sum(axis=1), 1, atol=1e-5)
    assert trained.score == pytest.approx(balanced_accuracy_score(y, trained.oof.argmax(axis=1)))
    assert len(trained.fold_scores) == 3 and trained.score > 0.8  # the signal is easy: most bags are right
    assert [p.name for p in trained.paths] == ["heads_fold0.safetensors", "heads_fold1.safetensors", "heads_fold2.safetensors"]
    reloaded = load_checkpoint(trained.paths[1])
    assert reloaded.kagglekit_classes == ["HGSC", "LGSC", "EC"] and reloaded.kagglekit_metadata["backbone"] == "b"
    assert reloaded.kagglekit_metadata["balanced_accuracy"] == pytest.approx(trained.fold_scores[1])
    from_files = predict_bags(trained.paths, bags)
    in_memory = predict_bags(trained, bags)
    np.testing.assert_allclose(from_files, in_memory, atol=1e-6)
    by_hand = np.mean([torch.softmax(h(*pad_bags(bags, np.arange(45))), -1).detach().numpy() for h in trained.heads], axis=(0, 1))
    np.testing.assert_allclose(in_memory, by_hand, atol=1e-5)


def test_bags_smaller_than_r_and_mixed_feature_sizes_are_refused():
    bags, y = toy_bags(n=6)
    with pytest.raises(ShapeError, match="fewer tiles than Chowder's r=10"):
        train_heads(bags, y, folds=2, head_kwargs={"r": 10}, progress=False)
    with pytest.raises(ShapeError, match="feature sizes"):
        train_heads(bags[:5] + [np.zeros((8, 3), np.float32)], y, folds=2, progress=False)


def test_bags_of_two_backbones_are_not_trained_together():
    from kagglekit.mil import BagError

    bags, y = toy_bags(n=6)
    objects = [Bag(f, np.zeros((len(f), 2), np.int64), tile=224, scale=1.0, backbone="a" if k else "b", slide=str(k))
               for k, f in enumerate(bags)]
    with pytest.raises(BagError, match=r"several backbones \['a', 'b'\]"):
        train_heads(objects, y, folds=2, head_kwargs={"r": 2}, progress=False)
