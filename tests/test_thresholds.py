"""Threshold search against scikit-learn's precision-recall curve and numpy's quantile."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import fbeta_score, precision_recall_curve

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.thresholds import (
    apply_threshold,
    best_fbeta_threshold,
    per_class_thresholds,
    percentile_threshold,
)

BETAS = [0.5, 1.0, 2.0]


def pr_curve_best(y, scores, beta):
    """Oracle: max F-beta over scikit-learn's curve, and the largest threshold reaching it."""
    precision, recall, thresholds = precision_recall_curve(y.ravel(), scores.ravel().astype(np.float64))
    b2 = beta * beta
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.nan_to_num((1 + b2) * precision * recall / (b2 * precision + recall))[:-1]
    best = f.max()
    return best, thresholds[f >= best - 1e-12].max()


def check_against_oracle(y, scores, beta, mask=None):
    result = best_fbeta_threshold(y, scores, beta, mask=mask)
    yo, so = (y, scores) if mask is None else (y[mask], scores[mask])
    best, threshold = pr_curve_best(yo, so, beta)
    assert abs(result.fbeta - best) <= 1e-12
    assert result.threshold == threshold
    achieved = fbeta_score(yo.ravel(), apply_threshold(so, result.threshold).ravel(), beta=beta)
    assert abs(achieved - result.fbeta) <= 1e-12


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.uint8, np.uint16, np.int32])
def test_exact_on_random_data_with_ties(beta, dtype):
    rng = np.random.default_rng(int(beta * 10))
    for trial in range(25):
        n = int(rng.integers(1, 400))
        y = rng.random(n) < rng.uniform(0.05, 0.9)
        y[rng.integers(n)] = True
        levels = int(rng.integers(2, 50))  # few distinct values: many ties
        raw = rng.integers(0, levels, n) if trial % 2 else rng.normal(size=n) * 50 + 100
        if dtype in (np.uint8, np.uint16, np.int32):
            scores = np.clip(raw * (1 if dtype == np.uint8 else 250), 0, np.iinfo(dtype).max).astype(dtype)
        else:
            scores = (raw / levels).astype(dtype)
        check_against_oracle(y, scores, beta)


@pytest.mark.parametrize("beta", BETAS)
def test_float32_bucket_refinement_is_exact(beta):
    """float32 takes the bucket-and-refine path: stress it with crowded buckets, signs and zeros."""
    rng = np.random.default_rng(7)
    n = 60_000
    cases = {
        "separated": (rng.random(n) < 0.1, None),
        "one crowded bucket": (rng.random(n) < 0.3, 0.5 + rng.random(n).astype(np.float32) * 2**-10),
        "uninformative": (rng.random(n) < 0.5, rng.random(n)),
        "signed with zeros": (rng.random(n) < 0.2, np.where(rng.random(n) < 0.2, -0.0, rng.normal(size=n))),
        "tiny denormals": (rng.random(n) < 0.4, rng.integers(-3, 4, n) * np.float32(1e-45)),
    }
    for name, (y, scores) in cases.items():
        if scores is None:
            scores = np.where(y, rng.normal(1, 1, n), rng.normal(-1, 1, n))
        scores = np.asarray(scores, dtype=np.float32)
        check_against_oracle(y, scores, beta)


def test_float16_gives_the_float32_answer_for_the_same_values():
    rng = np.random.default_rng(11)
    for trial in range(20):
        n = int(rng.integers(2, 5000))
        y = rng.random(n) < 0.3
        y[0] = True
        values = rng.normal(size=n) * (10 if trial % 2 else 0.1)
        values[rng.random(n) < 0.05] = 0.0
        values[rng.random(n) < 0.05] = -0.0
        if trial % 3 == 0:
            values = np.abs(values)  # non-negative scores take a shortcut
        s16 = values.astype(np.float16)
        for beta in BETAS:
            a, b = best_fbeta_threshold(y, s16, beta), best_fbeta_threshold(y, s16.astype(np.float32), beta)
            assert a == b
            check_against_oracle(y, s16, beta)


def test_infinite_scores_are_ordinary_values():
    y = np.array([1, 0, 1, 0, 1], dtype=bool)
    for dtype in (np.float16, np.float32, np.float64):
        scores = np.array([np.inf, -np.inf, 0.5, 0.5, -1.0], dtype=dtype)
        values, ranks = np.unique(scores, return_inverse=True)  # sklearn refuses inf; ranks keep the order
        best, rank = pr_curve_best(y, ranks.astype(np.float64), 1.0)
        result = best_fbeta_threshold(y, scores, 1.0)
        assert abs(result.fbeta - best) <= 1e-12 and result.threshold == values[int(rank)]


def test_mask_restricts_the_search_and_accepts_images():
    rng = np.random.default_rng(3)
    y = rng.random((64, 80)) < 0.2
    scores = np.where(y, rng.random((64, 80)) + 0.3, rng.random((64, 80))).astype(np.float32)
    mask = rng.random((64, 80)) < 0.5
    for beta in BETAS:
        check_against_oracle(y, scores, beta, mask=mask)
        check_against_oracle(y, scores, beta)


def test_quantile_maps_back_to_exactly_the_threshold():
    """Many sizes: (n - 1) * (below / (n - 1)) != below in float arithmetic for some of them."""
    rng = np.random.default_rng(5)
    dtypes = (np.float64, np.float32, np.float16, np.uint8)
    for trial in range(2000):
        n = int(rng.integers(2, 3000))
        y = rng.random(n) < rng.uniform(0.05, 0.6)
        y[0] = True
        scores = (rng.random(n) * (255 if trial % 4 == 3 else 1)).astype(dtypes[trial % 4])
        result = best_fbeta_threshold(y, scores, rng.choice(BETAS))
        below = np.count_nonzero(scores < result.threshold)
        assert below == int(np.floor((n - 1) * result.quantile))  # the q of the "lower" method, by hand
        back = percentile_threshold(scores, result.quantile)
        assert back == result.threshold
        predicted = np.count_nonzero(apply_threshold(scores, result.threshold))
        assert np.count_nonzero(apply_threshold(scores, back)) == predicted == n - below


def test_percentile_threshold_is_a_sorted_score():
    rng = np.random.default_rng(6)
    scores = rng.random((50, 60)).astype(np.float32)
    mask = rng.random((50, 60)) < 0.3
    for q in (0.0, 0.1, 0.5, 0.93, 1.0):
        for s in (scores.ravel(), scores[mask]):
            expected = np.sort(s)[int(np.floor((s.size - 1) * q))]
            assert percentile_threshold(s, q) == expected == np.quantile(s, q, method="lower")
        assert percentile_threshold(scores, q, mask=mask) == percentile_threshold(scores[mask], q)
    with pytest.raises(InvalidArgumentError, match="p / 100"):
        percentile_threshold(scores, 95)
    with pytest.raises(InvalidArgumentError, match="NaN"):
        percentile_threshold(np.array([0.1, np.nan], dtype=np.float16), 0.5)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_nan_scores_and_ignore_labels_outside_the_mask_are_left_out(dtype):
    rng = np.random.default_rng(9)
    y = rng.random((40, 50)) < 0.3
    scores = np.where(y, rng.random((40, 50)) + 0.2, rng.random((40, 50))).astype(dtype)
    mask = rng.random((40, 50)) < 0.6
    noisy_scores = np.where(mask, scores, np.nan).astype(dtype)
    noisy_y = np.where(mask, y, 255).astype(np.uint8)  # 255: an "ignore" label
    for beta in BETAS:
        assert best_fbeta_threshold(noisy_y, noisy_scores, beta, mask=mask) == best_fbeta_threshold(
            y[mask], scores[mask], beta
        )
    for q in (0.0, 0.37, 1.0):
        assert percentile_threshold(noisy_scores, q, mask=mask) == percentile_threshold(scores[mask], q)
    inside = np.flatnonzero(mask)[0]  # inside the mask, NaN and 255 are still refused
    noisy_scores.flat[inside] = np.nan
    with pytest.raises(InvalidArgumentError, match="NaN"):
        best_fbeta_threshold(noisy_y, noisy_scores, mask=mask)
    with pytest.raises(InvalidArgumentError, match="NaN"):
        percentile_threshold(noisy_scores, 0.5, mask=mask)
    noisy_y.flat[inside] = 255
    with pytest.raises(InvalidArgumentError, match="0 and 1"):
        best_fbeta_threshold(noisy_y, scores, mask=mask)


def test_per_class_thresholds_reach_the_macro_optimum():
    rng = np.random.default_rng(8)
    Y = rng.random((500, 6)) < np.linspace(0.02, 0.5, 6)
    Y[0] = True
    S = np.clip(Y * 0.3 + rng.random((500, 6)), 0, 1).astype(np.float32)
    result = per_class_thresholds(Y, S, beta=1.0)
    for c in range(6):
        best, threshold = pr_curve_best(Y[:, c], S[:, c], 1.0)
        assert abs(result.fbetas[c] - best) <= 1e-12 and result.thresholds[c] == threshold
    macro = fbeta_score(Y, apply_threshold(S, result.thresholds), beta=1.0, average="macro")
    assert abs(macro - result.fbetas.mean()) <= 1e-12


@pytest.mark.parametrize(
    "y, scores, error, words",
    [
        (np.array([0, 1, 1]), np.array([0.1, 0.2]), ShapeError, "shape"),
        (np.array([0, 1]), np.array([0.1, np.nan]), InvalidArgumentError, "NaN"),
        (np.array([0, 1]), np.array([0.1, np.nan], dtype=np.float32), InvalidArgumentError, "NaN"),
        (np.array([0, 1]), np.array([0.1, np.nan], dtype=np.float16), InvalidArgumentError, "NaN"),
        (np.array([0, 2]), np.array([0.1, 0.2]), InvalidArgumentError, "0 and 1"),
        (np.array([0.0, 0.5]), np.array([0.1, 0.2]), InvalidArgumentError, "0 and 1"),
        (np.array([], dtype=bool), np.array([]), ShapeError, "empty"),
        (np.array([0, 0]), np.array([0.1, 0.2]), InvalidArgumentError, "no positive"),
        (np.array([0, 1]), np.array([1 + 1j, 2]), InvalidArgumentError, "real numeric"),
    ],
)
def test_bad_inputs_raise_clear_errors(y, scores, error, words):
    with pytest.raises(error, match=words) as info:
        best_fbeta_threshold(y, scores)
    assert isinstance(info.value, KagglekitError)


def test_bad_options_raise_clear_errors():
    y, s = np.array([0, 1]), np.array([0.1, 0.2])
    with pytest.raises(InvalidArgumentError, match="beta"):
        best_fbeta_threshold(y, s, beta=-1)
    with pytest.raises(InvalidArgumentError, match="mask selects no"):
        best_fbeta_threshold(y, s, mask=np.zeros(2, bool))
    with pytest.raises(ShapeError, match="mask"):
        best_fbeta_threshold(y, s, mask=np.ones(3, bool))
    with pytest.raises(InvalidArgumentError, match=r"classes \[1\]"):
        per_class_thresholds(np.array([[1, 0], [0, 0]]), np.array([[0.1, 0.2], [0.3, 0.4]]))
    with pytest.raises(ShapeError):
        per_class_thresholds(np.array([1, 0]), np.array([0.1, 0.2]))


def test_sklearn_oracle_is_not_vacuous():
    """The oracle must disagree with a wrong answer (guards against a test that cannot fail)."""
    y = np.array([1, 0, 1, 0, 0, 1], dtype=bool)
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best, threshold = pr_curve_best(y, scores, 1.0)
    # Closed form F1 = 2 TP / (3 + predicted): 0.9 -> 2/4, 0.8 -> 2/5, 0.7 -> 4/6, 0.3 -> 4/7,
    # 0.2 -> 4/8, 0.1 -> 6/9. The maximum 2/3 is tied between 0.7 and 0.1; the larger one wins.
    assert best == pytest.approx(2 / 3) and threshold == 0.7
    assert best_fbeta_threshold(y, scores, 1.0) == (0.7, pytest.approx(2 / 3), 3 / 5)
