"""MixUp and CutMix against their closed forms."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from kagglekit.augment import cutmix, mixup
from kagglekit.errors import KagglekitError


def batch(n=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 12, generator=g)
    y = torch.nn.functional.one_hot(torch.randint(classes, (n,), generator=g), classes).float()
    masks = torch.randint(0, 3, (n, 16, 12), generator=g)
    return x, y, masks


def test_mixup_closed_form_and_label_sums():
    x, y, _ = batch()
    out = mixup(x, y, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert 0 <= out.lam <= 1
    assert sorted(out.index.tolist()) == list(range(6))
    torch.testing.assert_close(out.inputs, out.lam * x + (1 - out.lam) * x[out.index])
    torch.testing.assert_close(out.targets, out.lam * y + (1 - out.lam) * y[out.index])
    torch.testing.assert_close(out.targets.sum(1), torch.ones(6))


def test_mixup_lambda_follows_beta():
    x, y, _ = batch()
    g = torch.Generator().manual_seed(2)
    lams = [mixup(x, y, alpha=0.4, generator=g).lam for _ in range(400)]
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 1e-3


def test_cutmix_box_comes_from_partner_and_lam_is_its_area():
    x, y, masks = batch()
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        out = cutmix(x, y, alpha=1.0, masks=masks, generator=g)
        y0, y1, x0, x1 = out.box
        inside = torch.zeros(16, 12, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        partner = x[out.index]
        assert torch.equal(out.inputs[..., inside], partner[..., inside])
        assert torch.equal(out.inputs[..., ~inside], x[..., ~inside])
        assert torch.equal(out.masks[:, inside], masks[out.index][:, inside])
        assert torch.equal(out.masks[:, ~inside], masks[:, ~inside])
        assert out.lam == pytest.approx(1 - inside.float().mean().item())
        torch.testing.assert_close(out.targets, out.lam * y + (1 - out.lam) * y[out.index])
        torch.testing.assert_close(out.targets.sum(1), torch.ones(6))


def test_mixers_are_reproducible_under_a_seeded_generator():
    x, y, masks = batch()
    for mix, extra in ((mixup, {}), (cutmix, {"masks": masks})):
        a = mix(x, y, generator=torch.Generator().manual_seed(7), **extra)
        b = mix(x, y, generator=torch.Generator().manual_seed(7), **extra)
        c = mix(x, y, generator=torch.Generator().manual_seed(8), **extra)
        assert torch.equal(a.inputs, b.inputs) and a.lam == b.lam and torch.equal(a.index, b.index)
        assert not torch.equal(a.inputs, c.inputs)


def test_multilabel_targets_keep_their_sums():
    x, _, _ = batch()
    y = (torch.rand(6, 5, generator=torch.Generator().manual_seed(4)) < 0.4).float()
    out = mixup(x, y, generator=torch.Generator().manual_seed(5))
    sums = y.sum(1)
    torch.testing.assert_close(out.targets.sum(1), out.lam * sums + (1 - out.lam) * sums[out.index])


@pytest.mark.parametrize(
    "make",
    [
        lambda x, y, m: mixup(x, y.argmax(1)),  # integer class ids
        lambda x, y, m: mixup(x[:1], y[:1]),
        lambda x, y, m: mixup(x, y, alpha=0),
        lambda x, y, m: mixup(x.long(), y),
        lambda x, y, m: cutmix(x[:, 0], y),  # not NCHW
        lambda x, y, m: cutmix(x, y, masks=m[:, :8]),
        lambda x, y, m: mixup(x, y[:3]),
        lambda x, y, m: mixup(x, y, alpha=float("inf")),
    ],
)
def test_bad_input(make):
    with pytest.raises(KagglekitError):
        make(*batch())


def test_mixup_allocates_one_new_batch():
    """The mixed batch is the only batch-sized allocation (the docstring's promise): the bytes every
    op allocates, from torch's CPU memory profiler, against the batch's own size."""
    from torch.profiler import ProfilerActivity, profile

    x, y = torch.rand(16, 3, 64, 64), torch.rand(16, 4)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        mixup(x, y, generator=torch.Generator().manual_seed(0))
    allocated = sum(max(0, e.self_cpu_memory_usage) for e in prof.key_averages())
    assert x.numel() * 4 <= allocated <= x.numel() * 4 * 1.01
