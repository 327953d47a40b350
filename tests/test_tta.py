"""kagglekit.tta: D4 views against numpy, group laws, merges against numpy/scipy, TTA against ttach."""

import numpy as np
import pytest
import torch
from scipy import special, stats
from torch import nn

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.tta import D4, SUBSETS, TTA, Ensemble, Merger, ViewCycle, merge, views

# Each view written plainly with numpy on (..., H, W) arrays: the oracle for the torch ops.
NUMPY_VIEWS = {
    "identity": lambda a: a,
    "rot90": lambda a: np.rot90(a, 1, axes=(-2, -1)),
    "rot180": lambda a: a[..., ::-1, ::-1],
    "rot270": lambda a: np.rot90(a, -1, axes=(-2, -1)),
    "hflip": lambda a: a[..., :, ::-1],
    "vflip": lambda a: a[..., ::-1, :],
    "transpose": lambda a: np.swapaxes(a, -1, -2),
    "antitranspose": lambda a: np.swapaxes(a, -1, -2)[..., ::-1, ::-1],
}


@pytest.fixture
def image():
    torch.manual_seed(0)
    return torch.randn(2, 3, 5, 7)


def small_cnn(out_channels=2, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, out_channels, 3, padding=1)).eval()


@pytest.mark.parametrize("view", D4, ids=lambda v: v.name)
def test_view_matches_numpy_and_inverse_is_identity(view, image):
    np.testing.assert_array_equal(view.apply(image).numpy(), NUMPY_VIEWS[view.name](image.numpy()))
    assert torch.equal(view.invert(view.apply(image)), image)
    assert view.apply(image).shape[-2:] == ((7, 5) if view.swaps_hw else (5, 7))
    assert torch.equal(view.invert_label(image), image)


def test_group_is_closed_with_inverses(image):
    assert len({NUMPY_VIEWS[v.name](image.numpy()).tobytes() for v in D4}) == 8  # eight distinct actions
    for a in D4:
        assert torch.equal(a.inverse().apply(a.apply(image)), image)
        assert (a @ a.inverse()).name == "identity"
        for b in D4:
            c = a @ b
            assert c in D4
            np.testing.assert_array_equal(c.apply(image).numpy(), NUMPY_VIEWS[a.name](NUMPY_VIEWS[b.name](image.numpy())))


@pytest.mark.parametrize("subset", ["d2", "rot90", "d4", "identity"])
def test_group_subsets_are_closed(subset):
    members = set(views(subset))
    assert all(a @ b in members for a in members for b in members)


def test_named_subsets_and_bad_names():
    assert [v.name for v in views("flips")] == ["identity", "hflip", "vflip"]
    assert len(views("d4")) == 8 and set(views("d4")) == set(D4)
    assert [v.name for v in views(["rot90", "hflip"])] == ["rot90", "hflip"]
    assert set(SUBSETS) >= {"flips", "d2", "d4", "rot90"}
    with pytest.raises(InvalidArgumentError, match="unknown TTA view"):
        views("d8")
    with pytest.raises(InvalidArgumentError):
        views([])


def symmetric_conv():
    """A conv whose kernels are D4-symmetric: exactly equivariant to every view."""
    conv = nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        w = conv.weight
        w.copy_(sum(torch.from_numpy(NUMPY_VIEWS[v.name](w.numpy()).copy()) for v in D4) / 8)
    return conv.eval()


@pytest.mark.parametrize("merge_mode", ["mean", "max", "logit_mean", "gmean", "tsharpen"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 6, 10)])
def test_equivariant_model_gives_plain_output(merge_mode, batched, shape):
    torch.manual_seed(1)
    model, x = symmetric_conv(), torch.randn(shape)
    with torch.no_grad():
        plain = model(x)
        out = TTA(model, "d4", merge=merge_mode, batched=batched)(x)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-4)


def test_invariant_classifier_gives_plain_output():
    torch.manual_seed(2)
    model = nn.Sequential(symmetric_conv(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4)).eval()
    x = torch.randn(3, 3, 6, 10)
    with torch.no_grad():
        torch.testing.assert_close(TTA(model, "d4", task="classification")(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 8, 12)])
def test_tta_equals_plain_loop_with_numpy_views(shape):
    model, x = small_cnn(), torch.randn(shape)
    with torch.no_grad():
        expected = np.mean([
            NUMPY_VIEWS[v.inverse().name](model(torch.from_numpy(NUMPY_VIEWS[v.name](x.numpy()).copy())).numpy())
            for v in D4], axis=0)
        batched = TTA(model, "d4")(x)
        sequential = TTA(model, "d4", batched=False)(x)
    np.testing.assert_allclose(batched.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(sequential.numpy(), expected, atol=1e-5)


def test_tta_matches_ttach():
    import ttach

    model, x = small_cnn(), torch.randn(2, 3, 16, 16)
    classifier = nn.Sequential(small_cnn(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)).eval()
    with torch.no_grad():
        ours = TTA(model, "d4")(x)
        theirs = ttach.SegmentationTTAWrapper(model, ttach.aliases.d4_transform(), merge_mode="mean")(x)
        ours_cls = TTA(classifier, "d4", task="classification")(x)
        theirs_cls = ttach.ClassificationTTAWrapper(classifier, ttach.aliases.d4_transform(), merge_mode="mean")(x)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours_cls.numpy(), theirs_cls.numpy(), atol=1e-5)


def test_tta_counts_forwards():
    calls = []
    base = small_cnn()

    def model(x):
        calls.append(tuple(x.shape))
        return base(x)

    with torch.no_grad():
        TTA(model, "d4")(torch.randn(2, 3, 8, 8))
        assert calls == [(16, 3, 8, 8)]
        calls.clear()
        TTA(model, "d4")(torch.randn(2, 3, 8, 12))
        assert sorted(calls) == [(8, 3, 8, 12), (8, 3, 12, 8)]


def test_segmentation_task_refuses_class_outputs():
    classifier = nn.Sequential(small_cnn(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).eval()
    x = torch.randn(2, 3, 8, 8)  # two images, two classes: flipping the (N, K) output would swap the classes
    with torch.no_grad():
        for run in (lambda: TTA(classifier, "hflip")(x), lambda: TTA(classifier, "d4", batched=False)(x),
                    lambda: ViewCycle("d4")(classifier, x, 0)):
            with pytest.raises(ShapeError, match="task='classification'"):
                run()
        # control: as a classifier, hflip TTA is the mean over the plain and the flipped image
        torch.testing.assert_close(TTA(classifier, "hflip", task="classification")(x),
                                   (classifier(x) + classifier(x.flip(-1))) / 2)


def test_dense_outputs_without_a_channel_axis_are_inverted():
    """(N, h, w) outputs (a Unet followed by squeeze(1)) are dense: hflip TTA is the plain formula."""
    net = small_cnn()
    squeezed = lambda x: net(x)[:, 0]  # noqa: E731
    x = torch.randn(2, 3, 8, 12)
    with torch.no_grad():
        expected = (squeezed(x) + squeezed(x.flip(-1)).flip(-1)) / 2
        for batched in (True, False):
            torch.testing.assert_close(TTA(squeezed, "hflip", batched=batched)(x), expected)


# ---- merges -------------------------------------------------------------------------------------

def test_merges_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (5, 2, 7)).astype(np.float32)
    probs = special.expit(logits).astype(np.float32)
    t = lambda a: [torch.from_numpy(v) for v in a]  # noqa: E731
    np.testing.assert_allclose(merge(t(logits), "mean"), logits.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(merge(t(logits), "max"), logits.max(0))
    np.testing.assert_allclose(merge(t(probs), "gmean", "probs"), stats.gmean(probs, axis=0), rtol=1e-5)
    np.testing.assert_allclose(merge(t(logits), "gmean"),
                               special.logit(stats.gmean(special.expit(logits.astype(np.float64)), axis=0)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(merge(t(probs), "logit_mean", "probs"), special.expit(special.logit(probs).mean(0)), rtol=1e-5)
    np.testing.assert_allclose(merge(t(logits), "logit_mean"), logits.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(merge(t(probs), "tsharpen", "probs"), np.sqrt(probs).mean(0) ** 2, rtol=1e-5)
    weights = [1.0, 2.0, 0.5, 3.0, 1.0]
    np.testing.assert_allclose(merge(t(logits), "mean", weights=weights), np.average(logits, 0, weights), rtol=1e-5, atol=1e-6)


def test_logit_mean_of_saturated_probs_is_symmetric():
    # views saying 1 and 0 cancel: sigmoid((logit(1 - eps) + logit(eps)) / 2) = 0.5
    out = merge([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])], "logit_mean", "probs")
    np.testing.assert_allclose(out.numpy(), [0.5, 0.5], rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode,outputs,a,b,formula", [
    ("mean", "logits", 1 + 1e-12, 1.0, lambda a, b: (a + b) / 2),
    ("logit_mean", "logits", 1 + 1e-12, 1.0, lambda a, b: (a + b) / 2),
    ("logit_mean", "probs", 0.5 + 1e-12, 0.5, lambda a, b: special.expit((special.logit(a) + special.logit(b)) / 2)),
    ("tsharpen", "logits", 1 + 1e-12, 1.0, lambda a, b: ((np.sqrt(a) + np.sqrt(b)) / 2) ** 2),
])
def test_float64_outputs_are_merged_in_float64(mode, outputs, a, b, formula):
    # a and b are equal in float32, so a float32 merge returns b
    out = merge([torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)], mode, outputs)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), [formula(a, b)], rtol=1e-14, atol=0)


@pytest.mark.parametrize("mode", ["gmean", "tsharpen"])
def test_gmean_and_tsharpen_never_nan_on_real_inputs(mode):
    torch.manual_seed(3)
    extremes = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 50.0, -50.0, 1e4, -1e4, 3e38, -3e38])
    stacks = [torch.randn(4, 1000) * 20, extremes.repeat(4, 1), extremes[torch.randperm(10)].repeat(4, 1)]
    for stack in stacks:
        out = merge(list(stack), mode)
        assert not torch.isnan(out).any()
    # tsharpen is odd: merging negated logits gives the negated result (ttach returns NaN here)
    x = torch.randn(4, 50) * 5
    torch.testing.assert_close(merge(list(-x), "tsharpen"), -merge(list(x), "tsharpen"))
    assert torch.isfinite(merge(list(x), mode)).all()


def test_merge_input_checks():
    with pytest.raises(InvalidArgumentError, match="outputs='probs'"):
        merge([torch.tensor([-1.0, 0.5])], "gmean", "probs")
    with pytest.raises(InvalidArgumentError, match="weights"):
        merge([torch.zeros(2), torch.ones(2)], "max", weights=[1, 2])
    with pytest.raises(InvalidArgumentError, match="unknown merge mode"):
        Merger("median")
    with pytest.raises(InvalidArgumentError, match="shapes"):
        merge([torch.zeros(2), torch.zeros(3)])
    with pytest.raises(ShapeError, match="NCHW"):
        TTA(small_cnn(), "d4")(torch.zeros(3, 8, 8))
    with pytest.raises(KagglekitError):
        TTA(small_cnn(), "d4", task="detection")


# ---- per-window view cycle ----------------------------------------------------------------------

@pytest.mark.parametrize("tile", [(8, 8), (8, 12)])
@pytest.mark.parametrize("first_index", [0, 3, 13])
def test_view_cycle_matches_plain_loop(tile, first_index):
    model = small_cnn(out_channels=3)
    batch = torch.randn(6, 3, *tile)
    cycle = ViewCycle("d4")
    with torch.no_grad():
        out = cycle(model, batch, first_index)
        for i in range(6):
            view = D4[(first_index + i) % 8]
            expected = NUMPY_VIEWS[view.inverse().name](
                model(torch.from_numpy(NUMPY_VIEWS[view.name](batch[i:i + 1].numpy()).copy())).numpy())
            np.testing.assert_allclose(out[i:i + 1].numpy(), expected, atol=1e-5)


def test_view_cycle_runs_one_forward_per_tile_shape():
    calls = []
    base = small_cnn()

    def model(x):
        calls.append(x.shape[0])
        return base(x)

    with torch.no_grad():
        ViewCycle("flips")(model, torch.randn(5, 3, 8, 8), 1)
        assert calls == [5]
        calls.clear()
        ViewCycle("d4")(model, torch.randn(5, 3, 8, 12), 2)
        assert sorted(calls) == [2, 3]  # views 2,4,6 keep the shape; 3,5 swap H and W


@pytest.mark.parametrize("channels_last", [True, False])
def test_views_reach_the_model_in_the_callers_memory_format(channels_last):
    """Flips and rotations return contiguous NCHW; a channels-last batch must stay channels-last."""
    base, formats = small_cnn(), []

    def model(x):
        formats.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return base(x)

    batch = torch.randn(4, 3, 8, 8)
    batch = batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
    with torch.no_grad():
        ViewCycle("d4")(model, batch, 0)
        TTA(model, "d4", batched=True)(batch)
        TTA(model, "d4", batched=False)(batch)
    assert len(formats) == 1 + 1 + 8 and set(formats) == {channels_last}


# ---- ensemble -----------------------------------------------------------------------------------

def test_ensemble_weighted_mean_and_checkpoints(tmp_path):
    from kagglekit.models import create, save_checkpoint

    members = [create("timm/resnet10t", num_classes=3).eval() for _ in range(2)]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = [m(x).numpy() for m in members]
        ens = Ensemble(members, weights=[1.0, 3.0])(x)
        np.testing.assert_allclose(ens.numpy(), np.average(outs, axis=0, weights=[1, 3]), rtol=1e-5, atol=1e-6)
        path = save_checkpoint(members[1], tmp_path / "m1.safetensors")
        from_disk = Ensemble([members[0], path], merge="max")(x)
    np.testing.assert_allclose(from_disk.numpy(), np.maximum(*outs), rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidArgumentError):
        Ensemble(members, weights=[1.0])


def test_ensemble_refuses_max_with_weights_at_construction():
    members = [small_cnn(seed=0), small_cnn(seed=1)]
    with pytest.raises(InvalidArgumentError, match="merge='max' does not take weights"):
        Ensemble(members, weights=[1, 2], merge="max")
    Ensemble(members, weights=[1, 1], merge="max")  # unit weights are the unweighted maximum
