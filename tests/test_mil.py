"""MIL heads: numpy oracles, tile-order invariance, padding invariance."""

import numpy as np
import pytest
import torch
from scipy import special

from kagglekit.errors import ShapeError
from kagglekit.models import Chowder, GatedAttentionMIL


def weights(linear):
    return linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()


def chowder_numpy(model, bag):
    """CHOWDER written plainly for one bag (N, D): per class, its tile scores sorted, the r highest and r
    lowest through the shared MLP."""
    w_score, b_score = weights(model.score)
    linears = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    logits = []
    for c in range(len(b_score)):
        scores = np.sort(bag @ w_score[c] + b_score[c])
        h = np.concatenate([scores[::-1][:model.r], scores[:model.r]])
        for lin in linears[:-1]:
            w, b = weights(lin)
            h = special.expit(h @ w.T + b)
        w = linears[-1].weight.detach().double().numpy()
        b = 0.0 if linears[-1].bias is None else linears[-1].bias.detach().double().numpy()
        logits.append((h @ w.T + b)[0])
    return np.array(logits)


def gated_attention_numpy(model, bag):
    wv, bv = weights(model.attn_v[0])
    wu, bu = weights(model.attn_u[0])
    ww, bw = weights(model.attn_w)
    a = (np.tanh(bag @ wv.T + bv) * special.expit(bag @ wu.T + bu)) @ ww.T[:, 0] + bw[0]
    a = special.softmax(a)
    w, b = weights(model.classifier)
    return (a @ bag) @ w.T + b


HEADS = [
    (lambda: Chowder(6, r=2, hidden=(5, 4), num_classes=3), chowder_numpy),
    (lambda: GatedAttentionMIL(6, hidden=5, num_classes=3), gated_attention_numpy),
]


@pytest.mark.parametrize("make,oracle", HEADS, ids=["chowder", "gated_attention"])
def test_heads_match_numpy_with_padding_order_and_ragged_batches(make, oracle):
    torch.manual_seed(0)
    model = make().eval()
    sizes = [7, 3, 5]
    bags = [torch.randn(n, 6) for n in sizes]
    padded = torch.full((3, 9, 6), float("nan"))  # padding holds NaN: it must never be read
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for i, bag in enumerate(bags):
        padded[i, :len(bag)] = bag
        mask[i, :len(bag)] = True
    with torch.no_grad():
        batched = model(padded, mask)
        for i, bag in enumerate(bags):
            expected = oracle(model, bag.double().numpy())
            np.testing.assert_allclose(batched[i].numpy(), expected, rtol=1e-4, atol=1e-5)
            alone = model(bag[None])[0]
            np.testing.assert_allclose(alone.numpy(), batched[i].numpy(), rtol=1e-5, atol=1e-6)
            shuffled = model(bag[torch.randperm(len(bag))][None])[0]
            np.testing.assert_allclose(shuffled.numpy(), alone.numpy(), rtol=1e-5, atol=1e-6)
        # moving the padding to the front and shuffling the rows with it changes nothing either
        perm = torch.randperm(9)
        np.testing.assert_allclose(model(padded[:, perm], mask[:, perm]).numpy(), batched.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make,oracle", HEADS, ids=["chowder", "gated_attention"])
def test_nan_padding_gives_the_gradients_of_the_unpadded_bag(make, oracle):
    torch.manual_seed(0)
    model = make()
    bag = torch.randn(5, 6, requires_grad=True)
    padded = torch.full((1, 8, 6), float("nan"))
    padded[0, :5] = bag.detach()
    padded.requires_grad_(True)
    mask = torch.arange(8)[None] < 5

    def grads(x, mask=None):
        model.zero_grad()
        model(x, mask).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    with_padding, alone = grads(padded, mask), grads(bag[None])
    for name, grad in alone.items():
        assert torch.isfinite(with_padding[name]).all(), name
        torch.testing.assert_close(with_padding[name], grad, msg=name)
    torch.testing.assert_close(padded.grad[0, :5], bag.grad)
    assert (padded.grad[0, 5:] == 0).all()


def test_attention_is_a_distribution_over_real_tiles():
    model = GatedAttentionMIL(4, hidden=3).eval()
    x, mask = torch.randn(2, 5, 4), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        _, attention = model(x, mask, return_attention=True)
    torch.testing.assert_close(attention.sum(1), torch.ones(2))
    assert (attention[0, 3:] == 0).all()


def test_bad_bags_are_rejected():
    with pytest.raises(ShapeError, match="at least 3"):
        Chowder(4, r=3)(torch.randn(1, 5, 4), torch.tensor([[1, 1, 0, 0, 0]], dtype=torch.bool))
    with pytest.raises(ShapeError, match="at least 1"):
        GatedAttentionMIL(4)(torch.randn(1, 2, 4), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"\(B, N, 4\)"):
        GatedAttentionMIL(4)(torch.randn(2, 4))
    with pytest.raises(ShapeError, match="mask"):
        Chowder(4, r=1)(torch.randn(2, 3, 4), torch.ones(3, 2, dtype=torch.bool))
