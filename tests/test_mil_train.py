"""MIL seed ensembles: the vectorised heads equal each head trained alone (written plainly here) on the same
batches; padding and tile order do not change a head; folds give out-of-fold rows; checkpoints reload."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from kagglekit.errors import ShapeError
from kagglekit.mil import Bag, draw_tiles, epoch_batches, fit_heads, pad_bags, predict_bags, train_heads
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


# --- bags sampled anew each epoch (bag_size) and the best heads kept (select_top) ---

def test_tile_draws_are_reproducible_and_use_every_tile_over_enough_epochs():
    from scipy.stats import chisquare

    assert np.array_equal(draw_tiles(50, 10, [3, 1], 4, 7), draw_tiles(50, 10, [3, 1], 4, 7))
    assert not np.array_equal(draw_tiles(50, 10, [3, 1], 4, 7), draw_tiles(50, 10, [3, 1], 5, 7))  # a new epoch, a new draw
    epochs = 200
    draws = [draw_tiles(50, 10, [3, 1], e, 7) for e in range(epochs)]
    assert all(len(set(d.tolist())) == 10 for d in draws)  # long bag: no tile twice in an epoch
    counts = np.bincount(np.concatenate(draws), minlength=50)
    assert counts.min() > 0 and counts.sum() == epochs * 10  # every tile used
    assert chisquare(counts).pvalue > 1e-3  # and about equally often: 40 each
    short = [draw_tiles(6, 10, 0, e, 2) for e in range(30)]  # a short bag: drawn with replacement
    assert all(len(d) == 10 and d.max() < 6 for d in short) and np.bincount(np.concatenate(short), minlength=6).min() > 0
    assert all(sorted(draw_tiles(6, 10, 0, e, 2, replace=False).tolist()) == list(range(6)) for e in range(5))
    with_replacement = np.concatenate([draw_tiles(50, 10, 0, e, 2, replace=True) for e in range(epochs)])
    assert any(len(set(with_replacement[k : k + 10].tolist())) < 10 for k in range(0, len(with_replacement), 10))


def test_sampled_training_is_reproducible_for_a_seed():
    bags, y = toy_bags()
    fit = lambda data_seed: fit_heads(bags, y, np.arange(30), seeds=[1, 2], epochs=3, batch_size=8, data_seed=data_seed,
                                      bag_size=5, head_kwargs={"r": 2})
    one, two, other = fit(4), fit(4), fit(5)
    for name, value in one.state_dict().items():
        assert torch.equal(value, two.state_dict()[name]), name
    assert any(not torch.equal(v, other.state_dict()[n]) for n, v in one.state_dict().items())  # another draw


@pytest.mark.parametrize("head, build, kwargs", [
    ("chowder", Chowder, {"r": 2, "hidden": [8]}),
    ("gated_attention", GatedAttentionMIL, {"hidden": 6}),
])
def test_sampled_vectorised_heads_equal_each_head_trained_alone_on_the_same_draws(head, build, kwargs):
    bags, y = toy_bags()  # 6..30 tiles: bags shorter than bag_size=10 are drawn with replacement
    train, seeds, bag_size, data_seed = np.arange(0, 30), [11, 12, 13], 10, [5, 0]
    ensemble = fit_heads(bags, y, train, head=head, seeds=seeds, epochs=6, lr=1e-2, weight_decay=1e-3, batch_size=7,
                         data_seed=data_seed, bag_size=bag_size, head_kwargs=kwargs)
    test = pad_bags(bags, np.arange(30, 36))  # held-out bags, whole
    weight = torch.tensor(len(train) / (3 * np.bincount(y[train], minlength=3)), dtype=torch.float32)
    for i, s in enumerate(seeds):  # the plain way: one head, its own optimiser, each epoch's draws made here
        torch.manual_seed(s)
        alone = build(in_dim=12, num_classes=3, **kwargs)
        optimiser = torch.optim.AdamW(alone.parameters(), lr=1e-2, weight_decay=1e-3)
        for step, batch in enumerate(epoch_batches(len(train), 7, 6, data_seed)):
            epoch = step // 5  # 30 bags in batches of 7: 5 steps an epoch
            drawn = [bags[k][draw_tiles(len(bags[k]), bag_size, data_seed, epoch, k)] for k in train[batch]]
            x = torch.from_numpy(np.stack(drawn).astype(np.float32))  # every draw has bag_size tiles: no padding
            loss = torch.nn.functional.cross_entropy(alone(x), torch.from_numpy(y[train[batch]]), weight=weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        # the same weights, to float rounding (attn_w.bias shifts every attention logit alike: softmax removes it,
        # so its gradient is rounding noise that Adam scales to full steps; the outputs below cover it)
        for name, value in alone.state_dict().items():
            if name != "attn_w.bias":
                np.testing.assert_allclose(getattr(ensemble, name.replace(".", "__"))[i].detach().numpy(), value.numpy(),
                                           atol=1e-5, err_msg=name)
        with torch.no_grad():
            np.testing.assert_allclose(ensemble(*test)[i].numpy(), alone.eval()(*test).numpy(), atol=1e-5)


def test_select_top_keeps_the_heads_with_the_best_validation_scores(tmp_path):
    from sklearn.metrics import log_loss

    bags, y = toy_bags(n=30)
    folds = np.arange(30) % 2
    options = dict(folds=folds, n_seeds=6, epochs=2, lr=5e-3, bag_size=8, head_kwargs={"r": 2}, progress=False)
    every = train_heads(bags, y, **options)
    best = train_heads(bags, y, select_top=2, out_dir=tmp_path, **options)
    for fold in range(2):
        val = np.flatnonzero(folds == fold)
        with torch.no_grad():
            probs = torch.softmax(every.heads[fold](*pad_bags(bags, val)), -1).numpy()  # (6, n_val, 3)
        scores = [balanced_accuracy_score(y[val], p.argmax(1)) for p in probs]
        losses = [log_loss(y[val], p, labels=[0, 1, 2]) for p in probs]
        ranked = sorted(range(6), key=lambda s: (-scores[s], losses[s], s))
        kept = sorted(ranked[:2])
        np.testing.assert_allclose(best.head_scores[fold], scores)
        assert best.heads[fold].seeds == [every.heads[fold].seeds[s] for s in kept]
        for name, value in best.heads[fold].state_dict().items():
            torch.testing.assert_close(value, every.heads[fold].state_dict()[name][kept])
        np.testing.assert_allclose(best.oof[val], probs[kept].mean(axis=0), atol=1e-6)
        assert best.fold_scores[fold] == pytest.approx(balanced_accuracy_score(y[val], best.oof[val].argmax(1)))
        assert load_checkpoint(best.paths[fold]).seeds == best.heads[fold].seeds
    np.testing.assert_allclose(predict_bags(best.paths, bags), predict_bags(best, bags), atol=1e-6)


@pytest.mark.parametrize("change, error, words", [
    (dict(bag_size=0), "InvalidArgumentError", "bag_size must be an integer >= 1"),
    (dict(bag_size=1), "ShapeError", "bag_size=1 draws fewer tiles than Chowder's r=2"),
    (dict(bag_size=8, sample="top"), "InvalidArgumentError", "unknown sample 'top'"),
    (dict(bag_size=8, replace="yes"), "InvalidArgumentError", "replace must be None"),
    (dict(select_top=5), "InvalidArgumentError", "give 1..4, got 5"),
])
def test_bad_sampling_and_selection_arguments_are_named(change, error, words):
    import kagglekit.errors

    bags, y = toy_bags(n=6)
    with pytest.raises(getattr(kagglekit.errors, error), match=words.replace("(", r"\(").replace(".", r"\.")):
        train_heads(bags, y, folds=2, n_seeds=4, epochs=1, head_kwargs={"r": 2}, progress=False, **change)
