"""kagglekit.metrics against scikit-learn on random inputs and on edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.metrics import balanced_accuracy, dice, fbeta_score

SK_AVERAGE = {"micro": "micro", "samples": "samples", "macro": "macro"}  # "global" is binary on raveled arrays


def sk_fbeta(y_true, y_pred, beta, average, zero_division=0.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if average == "global":
            return skm.fbeta_score(
                y_true.ravel(), y_pred.ravel(), beta=beta, average="binary", zero_division=zero_division
            )
        return skm.fbeta_score(y_true, y_pred, beta=beta, average=SK_AVERAGE[average], zero_division=zero_division)


@pytest.mark.parametrize("average", ["global", "micro", "samples", "macro"])
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_matches_sklearn_on_random_matrices(average, beta):
    rng = np.random.default_rng(0)
    for _ in range(20):
        n, m = rng.integers(1, 30, size=2)
        y_true = (rng.random((n, m)) < rng.random()).astype(np.int64)
        y_pred = rng.random((n, m)) < rng.random()
        for zero_division in (0.0, 1.0, np.nan):
            ours = fbeta_score(y_true, y_pred, beta, average, zero_division)
            np.testing.assert_allclose(ours, sk_fbeta(y_true, y_pred, beta, average, zero_division), rtol=0, atol=1e-12)


@pytest.mark.parametrize("average", ["global", "micro", "samples", "macro"])
@pytest.mark.parametrize(
    "case",
    ["no positives", "no predictions", "neither", "all positive", "one sample", "one label"],
)
def test_fbeta_edge_cases_match_sklearn(average, case):
    rng = np.random.default_rng(1)
    y_true = rng.random((6, 4)) < 0.5
    y_pred = rng.random((6, 4)) < 0.5
    if case == "no positives":
        y_true[:] = False
    elif case == "no predictions":
        y_pred[:] = False
    elif case == "neither":
        y_true[:] = False
        y_pred[:] = False
    elif case == "all positive":
        y_true[:] = True
    elif case == "one sample":
        y_true, y_pred = y_true[:1], y_pred[:1]
    else:
        y_true, y_pred = y_true[:, :1], y_pred[:, :1]
    for zero_division in (0.0, 1.0):
        ours = fbeta_score(y_true, y_pred, 2.0, average, zero_division)
        if case == "one label" and average == "samples":  # sklearn reads one column as binary, not multi-label
            expected = np.mean([sk_fbeta(t, p, 2.0, "global", zero_division) for t, p in zip(y_true, y_pred)])
        elif case == "one label":
            expected = sk_fbeta(y_true, y_pred, 2.0, "global", zero_division)
        else:
            expected = sk_fbeta(y_true, y_pred, 2.0, average, zero_division)
        assert ours == pytest.approx(expected, abs=1e-12)


def test_global_fbeta_pools_image_stacks_and_samples_averages_images():
    rng = np.random.default_rng(2)
    y_true = rng.random((3, 16, 16)) < 0.3
    y_pred = rng.random((3, 16, 16)) < 0.3
    assert fbeta_score(y_true, y_pred, 0.5) == pytest.approx(
        skm.fbeta_score(y_true.ravel(), y_pred.ravel(), beta=0.5), abs=1e-12
    )
    per_image = [skm.fbeta_score(t.ravel(), p.ravel(), beta=0.5) for t, p in zip(y_true, y_pred)]
    assert fbeta_score(y_true, y_pred, 0.5, average="samples") == pytest.approx(np.mean(per_image), abs=1e-12)


def test_dice_is_f1_with_empty_masks_scoring_one():
    rng = np.random.default_rng(3)
    masks_true = rng.random((5, 8, 8)) < 0.2
    masks_pred = rng.random((5, 8, 8)) < 0.2
    masks_true[0] = masks_pred[0] = False  # both empty: dice 1 by convention
    expected = [
        skm.f1_score(t.ravel(), p.ravel(), zero_division=1.0) for t, p in zip(masks_true, masks_pred)
    ]
    assert dice(masks_true, masks_pred, average="samples") == pytest.approx(np.mean(expected), abs=1e-12)
    closed_form = 2 * (masks_true & masks_pred).sum() / (masks_true.sum() + masks_pred.sum())
    assert dice(masks_true, masks_pred) == pytest.approx(closed_form, abs=1e-12)
    assert dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert dice(masks_true, masks_pred, average="samples", empty_score=0.0) == pytest.approx(
        np.mean([skm.f1_score(t.ravel(), p.ravel(), zero_division=0.0) for t, p in zip(masks_true, masks_pred)]),
        abs=1e-12,
    )


@pytest.mark.parametrize("adjusted", [False, True])
def test_balanced_accuracy_matches_sklearn(adjusted):
    rng = np.random.default_rng(4)
    for _ in range(30):
        n = int(rng.integers(2, 60))
        y_true = rng.integers(0, 5, n)
        y_pred = rng.integers(0, 6, n)  # may contain classes absent from y_true
        if adjusted and len(np.unique(y_true)) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = skm.balanced_accuracy_score(y_true, y_pred, adjusted=adjusted)
        assert balanced_accuracy(y_true, y_pred, adjusted) == pytest.approx(expected, abs=1e-12)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_string_labels_and_one_class():
    y_true = np.array(["HGSC", "LGSC", "HGSC", "Other", "CC"])
    y_pred = np.array(["HGSC", "HGSC", "HGSC", "Other", "EC"])
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    assert balanced_accuracy([1, 1, 1], [1, 0, 1]) == pytest.approx(skm.balanced_accuracy_score([1, 1, 1], [1, 0, 1]))


@pytest.mark.parametrize(
    "y_true, y_pred",
    [
        (np.array(["0", "1", "1"]), np.array([0, 1, 1])),  # labels read from a CSV vs argmax indices
        (np.array([0, 1, 1]), np.array(["0", "1", "1"], dtype=object)),
        (np.array(["a", 1, "b"], dtype=object), np.array(["a", "a", "b"], dtype=object)),
    ],
)
def test_balanced_accuracy_refuses_a_mix_of_strings_and_numbers_as_sklearn_does(y_true, y_pred):
    # scikit-learn refuses these too ("Mix of label input types", or no order between str and int)
    with pytest.raises(InvalidArgumentError, match="mix of label kinds"):
        balanced_accuracy(y_true, y_pred)


def test_balanced_accuracy_object_arrays_of_numbers_and_missing_labels():
    y_true, y_pred = np.array([0, 1, 1, 2], dtype=object), np.array([0, 1, 0, 2])
    expected = skm.balanced_accuracy_score(y_true.astype(int), y_pred)  # sklearn refuses object-dtype numbers
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(InvalidArgumentError, match="None"):
        balanced_accuracy(np.array(["a", None, "a"], dtype=object), np.array(["a", "a", "a"]))
    with pytest.raises(InvalidArgumentError, match="None"):
        balanced_accuracy(np.array(["a", "b"]), np.array(["a", None], dtype=object))


@pytest.mark.parametrize(
    "y_true, y_pred, error",
    [
        (np.ones(3), np.ones(4), ShapeError),
        (np.array([]), np.array([]), ShapeError),
        (np.array([0, 2, 1]), np.array([0, 1, 1]), InvalidArgumentError),
        (np.array([0.0, np.nan]), np.array([0, 1]), InvalidArgumentError),
        (np.array([0, 1]), np.array([0.3, 1.0]), InvalidArgumentError),
        (np.array(["a", "b"]), np.array([0, 1]), InvalidArgumentError),
    ],
)
def test_fbeta_bad_inputs_raise_kagglekit_errors(y_true, y_pred, error):
    with pytest.raises(error) as info:
        fbeta_score(y_true, y_pred)
    assert isinstance(info.value, KagglekitError) and str(info.value)


def test_bad_options_raise():
    y = np.array([0, 1])
    with pytest.raises(InvalidArgumentError, match="beta"):
        fbeta_score(y, y, beta=0)
    with pytest.raises(InvalidArgumentError, match="average"):
        fbeta_score(y, y, average="weighted")
    with pytest.raises(InvalidArgumentError, match="zero_division"):
        fbeta_score(y, y, zero_division=0.5)
    with pytest.raises(InvalidArgumentError, match="zero_division"):
        fbeta_score(y, y, zero_division="warn")  # scikit-learn's default
    with pytest.raises(InvalidArgumentError, match="empty_score"):
        dice(y, y, empty_score=0.5)
    with pytest.raises(ShapeError, match="2-D"):
        fbeta_score(y, y, average="macro")
    with pytest.raises(ShapeError):
        balanced_accuracy([0, 1], [0])
    with pytest.raises(InvalidArgumentError, match="NaN"):
        balanced_accuracy([0.0, np.nan], [0, 1])
