"""Decision files fitted over repeated fold splits, against the same fits made plainly on the same splits."""

from __future__ import annotations

import numpy as np
import pytest

from kagglekit.cv import MultilabelStratifiedKFold
from kagglekit.errors import InvalidArgumentError, KagglekitError
from kagglekit.metrics import fbeta_score
from kagglekit.thresholds import (
    Decision,
    LabelStructure,
    best_fbeta_threshold,
    fit_decision,
    per_class_thresholds,
    read_decision,
    write_decision,
)

STRUCTURE = LabelStructure([([0, 1, 2], "exactly_one")], [1])


def multilabel(n=300, c=5, seed=4):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(int)
    p = np.clip(0.5 * y + 0.6 * rng.random((n, c)) - 0.05, 0, 1)
    return y, p


def plain_fits(y, p, kind, repeats, folds, seed, structure):
    """(every split's thresholds, the mean over repeats of the held-out score), fitted one split at a time."""
    fits, held = [], []
    average = "macro" if kind == "per_class" else "global"
    for r in range(repeats):
        labels = np.zeros(y.shape, dtype=bool)
        for train, test in MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + r).split(p, y):
            if kind == "per_class":
                t = per_class_thresholds(y[train], p[train], 2.0).thresholds
            else:
                t = best_fbeta_threshold(y[train], p[train], 2.0).threshold
            fits.append(t)
            chosen = p[test] >= t
            labels[test] = chosen if structure is None else structure.enforce(chosen, p[test])
        held.append(fbeta_score(y, labels, 2.0, average=average))
    return np.array(fits), float(np.mean(held))


@pytest.mark.parametrize("kind", ["per_class", "threshold"])
@pytest.mark.parametrize("structure", [None, STRUCTURE])
def test_repeated_thresholds_are_the_mean_of_plain_fits_on_the_same_splits(kind, structure, tmp_path):
    y, p = multilabel()
    decision = fit_decision(p, y, kind, beta=2.0, repeats=3, folds=4, seed=7, structure=structure)
    fits, held = plain_fits(y, p, kind, 3, 4, 7, structure)
    fitted = np.atleast_1d(decision.thresholds if kind == "per_class" else decision.threshold)
    np.testing.assert_allclose(fitted, np.atleast_1d(fits.mean(axis=0)), rtol=1e-14)
    np.testing.assert_allclose(decision.spread, np.atleast_1d(fits.std(axis=0)), rtol=1e-12, atol=1e-15)
    assert decision.held_out_score == pytest.approx(held, rel=1e-14)
    labels = p >= fitted if kind == "per_class" else p >= fitted[0]
    labels = labels if structure is None else structure.enforce(labels, p)
    average = "macro" if kind == "per_class" else "global"
    assert decision.score == fbeta_score(y, labels, 2.0, average=average)
    assert (decision.repeats, decision.folds, decision.seed, decision.structure) == (3, 4, 7, structure)
    assert read_decision(write_decision(decision, tmp_path / "d.json")) == decision


def test_without_folds_the_fit_is_todays_exactly():
    y, p = multilabel()
    names = tuple(f"c{i}" for i in range(5))
    found = per_class_thresholds(y, p, 2.0)
    assert fit_decision(p, y, "per_class", beta=2.0, classes=names) == Decision(
        "per_class", thresholds=tuple(found.thresholds.tolist()), beta=2.0, classes=names, score=float(found.fbetas.mean()))
    pooled = best_fbeta_threshold(y, p, 2.0)
    assert fit_decision(p, y, "threshold", beta=2.0, repeats=1, folds=None) == Decision(
        "threshold", threshold=pooled.threshold, beta=2.0, score=pooled.fbeta)


@pytest.mark.parametrize("call, words", [
    (lambda y, p: fit_decision(p, y, "per_class", repeats=3), "repeats=3 needs folds="),
    (lambda y, p: fit_decision(p, y, "expected_fbeta", folds=5), "kind 'expected_fbeta' has none to average"),
    (lambda y, p: fit_decision(p, y, "per_class", folds=1), "folds must be an integer >= 2, got 1"),
    (lambda y, p: fit_decision(p, y, "per_class", folds=3, repeats=0), "repeats must be an integer >= 1, got 0"),
    (lambda y, p: fit_decision(p, y, "threshold", folds=3, seed="a"), "seed must be an integer, got 'a'"),
    (lambda y, p: fit_decision(p, y.argmax(axis=1), "argmax", structure=STRUCTURE), "argmax already writes one label per row"),
])
def test_fitting_mistakes_are_named_once(call, words):
    y, p = multilabel(n=60)
    with pytest.raises(InvalidArgumentError) as info:
        call(y, p)
    assert str(info.value).count(words) == 1 and isinstance(info.value, KagglekitError)
