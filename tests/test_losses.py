"""kagglekit.losses against oracles: closed forms and brute force written plainly here (numpy, loops), and the
established implementations (smp) where kagglekit only wraps them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch

from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.losses import (
    LOSSES,
    AsymmetricLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszLoss,
    LSEPLoss,
    SoftBCEWithLogitsLoss,
    SoftFBetaLoss,
    WeightedSum,
    create_loss,
)

IGNORE = 255


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def batch(case: str, shape=(4, 3, 6, 5), seed: int = 0):
    """(logits, targets) as float64 tensors: random 0/1 targets, all 0, all 1, or soft values in [0, 1]."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, shape)
    targets = {"random": (rng.random(shape) < 0.4).astype(float), "all_negative": np.zeros(shape),
               "all_positive": np.ones(shape), "soft": rng.random(shape)}[case]
    return torch.tensor(logits), torch.tensor(targets)


def with_ignored(targets, fraction=0.3, seed=1):
    """``targets`` with a random ``fraction`` of elements set to IGNORE, and the numpy mask of those kept."""
    kept = np.random.default_rng(seed).random(targets.shape) >= fraction
    return torch.where(torch.tensor(kept), targets, torch.full_like(targets, IGNORE)), kept


def check_reductions(make, logits, targets, expected_none, kept=None, rtol=1e-9):
    """``make(reduction)``'s loss gives ``expected_none`` ("none"), its sum and its mean over the ``kept`` units."""
    kept = np.ones(np.shape(expected_none), bool) if kept is None else kept
    none = make("none")(logits, targets).numpy()
    np.testing.assert_allclose(none, np.where(kept, expected_none, 0), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(make("sum")(logits, targets).item(), expected_none[kept].sum(), rtol=rtol)
    mean = expected_none[kept].mean() if kept.any() else 0.0
    np.testing.assert_allclose(make("mean")(logits, targets).item(), mean, rtol=rtol, atol=1e-12)


# --- elementwise losses: focal, BCE, ASL --------------------------------------------------------------

@pytest.mark.parametrize("case", ["random", "all_negative", "all_positive", "soft"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (None, 0.0), (0.7, 1.5)])
def test_focal_loss_is_the_closed_form(case, alpha, gamma):
    logits, targets = batch(case)
    x, y = logits.numpy(), targets.numpy()
    p = sigmoid(x)
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    check_reductions(lambda r: FocalLoss(alpha, gamma, reduction=r), logits, targets, alpha_t * ce * (1 - p_t) ** gamma)


def test_focal_loss_leaves_ignored_pixels_out():
    logits, targets = batch("random", (3, 1, 8, 8))
    x, y = logits.numpy(), targets.numpy()
    p = sigmoid(x)
    expected = 0.25 * y + 0.75 * (1 - y)
    expected = expected * -(y * np.log(p) + (1 - y) * np.log(1 - p)) * (1 - (p * y + (1 - p) * (1 - y))) ** 2
    marked, kept = with_ignored(targets)
    check_reductions(lambda r: FocalLoss(ignore_index=IGNORE, reduction=r), logits, marked, expected, kept)
    logits.requires_grad_(True)
    FocalLoss(ignore_index=IGNORE)(logits, marked).backward()
    assert (logits.grad.numpy()[~kept] == 0).all() and (logits.grad.numpy()[kept] != 0).all()
    everything = torch.full_like(targets, IGNORE)
    assert FocalLoss(ignore_index=IGNORE)(logits, everything).item() == 0.0


@pytest.mark.parametrize("case", ["random", "all_negative", "all_positive", "soft"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_soft_bce_is_the_closed_form_with_smoothing_pos_weight_and_ignored_elements(case, smoothing):
    logits, targets = batch(case, (5, 4))
    x, y = logits.numpy(), targets.numpy()
    smooth = y * (1 - smoothing) + smoothing / 2
    pos_weight = np.array([1.0, 2.0, 0.5, 3.0])
    expected = -(pos_weight * smooth * np.log(sigmoid(x)) + (1 - smooth) * np.log(1 - sigmoid(x)))
    check_reductions(lambda r: SoftBCEWithLogitsLoss(smoothing, pos_weight=pos_weight, reduction=r),
                     logits, targets, expected)
    marked, kept = with_ignored(targets)
    check_reductions(lambda r: SoftBCEWithLogitsLoss(smoothing, IGNORE, pos_weight=pos_weight, reduction=r),
                     logits, marked, expected, kept)


@pytest.mark.parametrize("case", ["random", "all_negative", "all_positive"])
@pytest.mark.parametrize("gamma_neg, gamma_pos, clip", [(4.0, 1.0, 0.05), (2.0, 0.0, 0.0), (0.0, 0.0, 0.2)])
def test_asymmetric_loss_is_the_papers_formula(case, gamma_neg, gamma_pos, clip):
    logits, targets = batch(case, (6, 5))
    x, y = logits.numpy(), targets.numpy()
    p = sigmoid(x)
    shifted = np.maximum(p - clip, 0)  # the negatives' probability after asymmetric clipping
    positive = y * (1 - p) ** gamma_pos * np.log(np.maximum(p, 1e-8))
    negative = (1 - y) * shifted ** gamma_neg * np.log(np.maximum(1 - shifted, 1e-8))
    # timm computes in float32 whatever the logits' dtype
    check_reductions(lambda r: AsymmetricLoss(gamma_neg, gamma_pos, clip, reduction=r), logits, targets,
                     -(positive + negative), rtol=1e-5)


def test_cross_entropy_is_the_closed_form_with_label_smoothing_and_ignored_pixels():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, (3, 4, 5, 5))
    y = rng.integers(0, 4, (3, 5, 5))
    y[rng.random(y.shape) < 0.3] = IGNORE
    log_p = x - np.log(np.exp(x).sum(1, keepdims=True))
    kept = y != IGNORE
    picked = np.take_along_axis(log_p, np.where(kept, y, 0)[:, None], 1)[:, 0]
    expected = -(0.9 * picked + 0.1 * log_p.mean(1))
    check_reductions(lambda r: CrossEntropyLoss(ignore_index=IGNORE, reduction=r, label_smoothing=0.1),
                     torch.tensor(x), torch.tensor(y), expected, kept)


# --- region losses: Dice, Lovász (smp) ----------------------------------------------------------------

def plain_dice_losses(probs, onehot, kept):
    """Per class: 1 - 2 sum(p y) / (sum p + sum y) over the batch and pixels (kept ones), 0 without positives."""
    probs, onehot = probs * kept, onehot * kept
    axes = (0, *range(2, probs.ndim))
    tp, total = (probs * onehot).sum(axes), probs.sum(axes) + onehot.sum(axes)
    return np.where(onehot.sum(axes) > 0, 1 - 2 * tp / total, 0.0)


@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
@pytest.mark.parametrize("ignore", [False, True])
def test_dice_loss_per_class_is_the_formula_and_its_mean_is_smps(mode, ignore):
    rng = np.random.default_rng(4)
    channels = 1 if mode == "binary" else 3
    logits = torch.tensor(rng.normal(0, 2, (2, channels, 8, 8)))
    if mode == "multiclass":
        targets = torch.tensor(rng.integers(0, 2, (2, 8, 8)))  # class 2 absent: its loss is 0
        x = logits.numpy()
        probs = np.exp(x) / np.exp(x).sum(1, keepdims=True)
        onehot = np.eye(channels)[targets.numpy()].transpose(0, 3, 1, 2)
    else:
        targets = (torch.rand(logits.shape, generator=torch.Generator().manual_seed(5)) < 0.3).double()
        targets[:, -1] = 0  # one class (the binary mask) without positives
        probs, onehot = sigmoid(logits.numpy()), targets.numpy()
    kept = np.ones(targets.shape, bool)
    if ignore:
        targets, kept = with_ignored(targets)
    kept = kept[:, None] if mode == "multiclass" else kept
    ignore_index = IGNORE if ignore else None
    expected = plain_dice_losses(probs, onehot, kept)
    check_reductions(lambda r: DiceLoss(mode, ignore_index=ignore_index, reduction=r), logits, targets, expected)
    oracle = smp.losses.DiceLoss(mode, ignore_index=ignore_index)(logits, targets)
    torch.testing.assert_close(DiceLoss(mode, ignore_index=ignore_index)(logits, targets), oracle)


def jaccard_loss(truth, wrong):
    """1 - |truth and predicted| / |truth or predicted| when exactly the ``wrong`` pixels are mispredicted."""
    return 1 - (truth & ~wrong).sum() / (truth | wrong).sum()


@pytest.mark.parametrize("per_image", [True, False])
def test_lovasz_hinge_is_the_jaccard_loss_where_errors_are_0_or_1(per_image):
    # margins 1 - logit * sign are 0 where the logit is +-1 on the right side and 1 where it is 0: there the
    # Lovász extension equals the set function, the Jaccard loss of the mispredicted set
    rng = np.random.default_rng(6)
    truth = rng.random((3, 1, 6, 6)) < 0.4
    truth[:, 0, 0, 0] = True  # every image has a positive
    wrong = rng.random(truth.shape) < 0.2
    wrong[2] = False  # a perfect image
    logits = torch.tensor(np.where(wrong, 0.0, np.where(truth, 1.0, -1.0)))
    targets = torch.tensor(truth.astype(float))
    if per_image:
        expected = np.array([jaccard_loss(t, w) for t, w in zip(truth, wrong)])
        assert expected[2] == 0 and (expected[:2] > 0).all()
    else:
        expected = np.array(jaccard_loss(truth, wrong))
    check_reductions(lambda r: LovaszLoss("binary", per_image, reduction=r), logits, targets, expected, rtol=1e-6)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("per_image", [True, False])
def test_lovasz_loss_is_smps_and_an_image_left_out_gives_0(mode, per_image):
    rng = np.random.default_rng(7)
    channels = 1 if mode == "binary" else 4
    logits = torch.tensor(rng.normal(0, 2, (3, channels, 7, 7)), dtype=torch.float32)  # smp's Lovász: float32 only
    shape = (3, 7, 7) if mode == "multiclass" else (3, 1, 7, 7)
    targets = torch.tensor(rng.integers(0, channels if mode == "multiclass" else 2, shape))
    targets, _ = with_ignored(targets, 0.2)
    oracle = smp.losses.LovaszLoss(mode, per_image=per_image, ignore_index=IGNORE)(logits, targets)
    torch.testing.assert_close(LovaszLoss(mode, per_image, IGNORE)(logits, targets), oracle)
    targets[1] = IGNORE
    per = LovaszLoss(mode, True, IGNORE, reduction="none")(logits, targets)
    singles = [smp.losses.LovaszLoss(mode, ignore_index=IGNORE)(logits[[i]], targets[[i]]) for i in (0, 2)]
    torch.testing.assert_close(per, torch.stack([singles[0], torch.tensor(0.0), singles[1]]))


# --- own losses: soft F-beta, LSEP ----------------------------------------------------------------------

def plain_soft_fbeta_losses(logits, targets, beta, average, eps, kept):
    """1 - F-beta from numpy sums of p y, p (1 - y), (1 - p) y over kept elements, per class or over all."""
    p, y = sigmoid(logits) * kept, np.where(kept, targets, 0)
    axes = None if average == "micro" else (0, *range(2, p.ndim))
    tp, fp, fn = (p * y).sum(axes), (p * (1 - y)).sum(axes), ((1 - p) * y).sum(axes)
    return 1 - (1 + beta**2) * tp / ((1 + beta**2) * tp + beta**2 * fn + fp + eps)


@pytest.mark.parametrize("case", ["random", "all_negative", "all_positive", "soft"])
@pytest.mark.parametrize("average", ["macro", "micro"])
@pytest.mark.parametrize("beta, ignore", [(0.5, False), (1.0, True), (2.0, True)])
def test_soft_fbeta_loss_is_the_numpy_formula(case, average, beta, ignore):
    logits, targets = batch(case)
    kept = np.ones(targets.shape, bool)
    if ignore:
        targets, kept = with_ignored(targets)
    expected = plain_soft_fbeta_losses(logits.numpy(), targets.numpy(), beta, average, 1e-7, kept)
    check_reductions(lambda r: SoftFBetaLoss(beta, average, ignore_index=IGNORE if ignore else None, reduction=r),
                     logits, targets, expected)
    if case == "all_negative":  # no positive: F = 0
        assert np.allclose(expected, 1)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_soft_fbeta_loss_is_smps_tversky_loss_where_every_class_has_positives(beta):
    logits, targets = batch("random")
    tversky = smp.losses.TverskyLoss("multilabel", eps=0.0, alpha=1 / (1 + beta**2), beta=beta**2 / (1 + beta**2))
    torch.testing.assert_close(SoftFBetaLoss(beta, eps=1e-12)(logits, targets), tversky(logits, targets))


def test_soft_fbeta_loss_takes_a_vector_of_binary_logits():
    logits, targets = batch("random", (16,))
    expected = plain_soft_fbeta_losses(logits.numpy()[:, None], targets.numpy()[:, None], 0.5, "micro", 1e-7, True)
    np.testing.assert_allclose(SoftFBetaLoss(0.5, reduction="none")(logits, targets).numpy(), expected)


def plain_lsep(scores, labels):
    """log(1 + sum over positive i, negative j of exp(s_j - s_i)) per sample, pair by pair."""
    losses = []
    for s, y in zip(scores, labels):
        total = 0.0
        for i, j in itertools.product(range(len(s)), repeat=2):
            if y[i] == 1 and y[j] == 0:
                total += np.exp(s[j] - s[i])
        losses.append(np.log1p(total))
    return np.array(losses)


def test_lsep_loss_is_the_double_loop_over_pairs_and_samples_without_pairs_give_0():
    logits, targets = batch("random", (6, 5))
    targets[1] = 0  # no positive
    targets[2] = 1  # no negative
    targets[3] = torch.tensor([1.0, 0, 0, 0, 0])
    expected = plain_lsep(logits.numpy(), targets.numpy())
    assert expected[1] == expected[2] == 0 and (expected[[0, 3, 4, 5]] > 0).all()
    check_reductions(lambda r: LSEPLoss(r), logits, targets, expected)
    far = torch.tensor([[100.0, -100.0, 90.0]])  # a huge margin: no overflow, loss about exp(-190)
    assert 0 <= LSEPLoss()(far, torch.tensor([[1.0, 0.0, 1.0]])).item() < 1e-40


def test_own_losses_have_the_gradients_of_their_formulas():
    logits, targets = batch("soft", (3, 2, 4, 4))
    marked, _ = with_ignored(targets)
    logits.requires_grad_(True)
    for loss in (SoftFBetaLoss(0.5, ignore_index=IGNORE),
                 SoftFBetaLoss(2.0, "micro", ignore_index=IGNORE, reduction="sum")):
        assert torch.autograd.gradcheck(lambda x, loss=loss: loss(x, marked), (logits,))
    scores, labels = batch("random", (5, 4), seed=2)
    labels[0] = 0
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: LSEPLoss("none")(x, labels), (scores,))


# --- weighted sums and the factory ----------------------------------------------------------------------

def test_weighted_sum_is_the_weighted_parts_and_keeps_them():
    logits, targets = batch("random")
    bce, fbeta = SoftBCEWithLogitsLoss(), SoftFBetaLoss(0.5)
    total = WeightedSum({"bce": (bce, 1.0), "fbeta": (fbeta, 0.5)})
    assert total.last_parts == {}
    value = total(logits, targets)
    parts = {"bce": bce(logits, targets).item(), "fbeta": fbeta(logits, targets).item()}
    assert value.item() == pytest.approx(parts["bce"] + 0.5 * parts["fbeta"], rel=1e-12)
    assert total.last_parts == pytest.approx(parts, rel=1e-12)
    assert isinstance(total.last_parts["bce"], float)
    built = create_loss({"bce": 1.0, "soft_fbeta": 0.5}, soft_fbeta={"beta": 0.5})
    assert built(logits, targets).item() == pytest.approx(value.item(), rel=1e-12)
    assert built.last_parts == pytest.approx({"bce": parts["bce"], "soft_fbeta": parts["fbeta"]}, rel=1e-12)


def test_weighted_sum_refuses_unreduced_parts_and_bad_weights():
    logits, targets = batch("random")
    with pytest.raises(ShapeError, match="reduction"):
        WeightedSum({"bce": (SoftBCEWithLogitsLoss(reduction="none"), 1.0)})(logits, targets)
    for parts in [{}, {"bce": (SoftBCEWithLogitsLoss(), -1.0)}, {"bce": SoftBCEWithLogitsLoss()},
                  {"a.b": (FocalLoss(), 1)}]:
        with pytest.raises(InvalidArgumentError):
            WeightedSum(parts)


@pytest.mark.parametrize("name, kwargs, attribute, value", [
    ("focal", {"gamma": 3.0}, "gamma", 3.0), ("lovasz", {"mode": "multiclass"}, "mode", "multiclass"),
    ("dice", {"log_loss": True}, "log_loss", True), ("bce", {"label_smoothing": 0.1}, "label_smoothing", 0.1),
    ("asl", {"reduction": "sum"}, "reduction", "sum"), ("soft_fbeta", {"beta": 0.5}, "beta", 0.5),
    ("lsep", {}, "reduction", "mean"), ("ce", {"label_smoothing": 0.1}, "label_smoothing", 0.1),
])
def test_create_loss_builds_each_name_with_its_arguments(name, kwargs, attribute, value):
    loss = create_loss(name, **kwargs)
    assert type(loss).__name__ == LOSSES[name] and getattr(loss, attribute) == value


@pytest.mark.parametrize("call, message", [
    (lambda: create_loss("focall"), "choose one of .*'focal'.*'lsep'"),
    (lambda: create_loss("focal", gama=2), "no argument 'gama'.*'gamma'"),
    (lambda: create_loss({"bce": 1.0, "dicee": 1.0}), "choose one of"),
    (lambda: create_loss({"bce": 1.0}, dice={"mode": "binary"}), "does not hold"),
    (lambda: create_loss({"bce": 1.0}, bce=0.1), "must be a mapping"),
    (lambda: create_loss(["bce"]), "a name .* or a mapping"),
])
def test_create_loss_refuses_unknown_names_and_arguments(call, message):
    with pytest.raises(InvalidArgumentError, match=message):
        call()


# --- bad input ------------------------------------------------------------------------------------------

logits_2d, labels_2d = batch("random", (4, 3))


@pytest.mark.parametrize("call, error, message", [
    (lambda: FocalLoss()(logits_2d, labels_2d[:, :2]), ShapeError, r"targets of shape \(4, 2\) do not match"),
    (lambda: SoftBCEWithLogitsLoss()(logits_2d, labels_2d * 2), InvalidArgumentError, r"in \[0, 1\].*one_hot"),
    (lambda: SoftFBetaLoss(ignore_index=-1)(logits_2d, labels_2d - 2), InvalidArgumentError, "or ignore_index=-1"),
    (lambda: AsymmetricLoss()(logits_2d, labels_2d * np.nan), InvalidArgumentError, "nan"),
    (lambda: LSEPLoss()(logits_2d, labels_2d * 0.9), InvalidArgumentError, "0 or 1"),
    (lambda: LSEPLoss()(logits_2d[:, :, None], labels_2d[:, :, None]), ShapeError, r"\(N, C\) logits"),
    (lambda: FocalLoss()(logits_2d.long(), labels_2d), InvalidArgumentError, "float tensor of logits"),
    (lambda: DiceLoss("binary")(logits_2d[:, :, None], labels_2d[:, :, None]), ShapeError, "multilabel"),
    (lambda: DiceLoss("multiclass")(logits_2d, labels_2d.long()), ShapeError, r"shape \(4,\)"),
    (lambda: LovaszLoss("multiclass")(logits_2d, labels_2d[:, 0]), InvalidArgumentError, "targets.long"),
    (lambda: CrossEntropyLoss()(logits_2d, torch.tensor([0, 1, 3, 2])), InvalidArgumentError, r"\[0, 3\)"),
    (lambda: LovaszLoss("binary")(logits_2d[:, :1], labels_2d[:, :1] * 0.5), InvalidArgumentError, "0 or 1"),
    (lambda: FocalLoss(reduction="avg"), InvalidArgumentError, "choose one of"),
    (lambda: FocalLoss(alpha=1.5), InvalidArgumentError, r"alpha must be a number in \[0, 1\]"),
    (lambda: SoftFBetaLoss(beta=0), InvalidArgumentError, "beta"),
    (lambda: DiceLoss("semantic"), InvalidArgumentError, "mode"),
    (lambda: SoftBCEWithLogitsLoss(ignore_index=0.5), InvalidArgumentError, "ignore_index"),
])
def test_bad_input_raises_kagglekit_errors_that_say_what_to_do(call, error, message):
    with pytest.raises(error, match=message):
        call()
