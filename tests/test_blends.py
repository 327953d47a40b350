"""Blends of prediction tables, decision and blend files, against scipy / numpy computed plainly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import rankdata

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.thresholds import (
    BlendFileError,
    Decision,
    DecisionFileError,
    best_fbeta_threshold,
    blend,
    expected_fbeta_decision,
    fit_decision,
    fit_entropy_cut,
    per_class_thresholds,
    read_blend,
    read_decision,
    write_decision,
)

RNG = np.random.default_rng(3)


def tables(k=3, n=500, c=4, ties=False):
    out = [RNG.random((n, c)) for _ in range(k)]
    if ties:
        out = [np.round(t, 1) for t in out]
    return out


@pytest.mark.parametrize("ties", [False, True])
def test_rank_blend_is_the_weighted_mean_of_scipy_ranks(ties):
    t = tables(ties=ties)
    w = np.array([2.0, 1.0, 1.0])
    expected = sum(wk * rankdata(tk, method="average", axis=0) / len(tk) for wk, tk in zip(w / w.sum(), t))
    np.testing.assert_allclose(blend(t, weights=w, mode="rank"), expected, rtol=1e-12)
    one_column = [tk[:, 0] for tk in t]
    np.testing.assert_allclose(blend(one_column, mode="rank"), np.mean([rankdata(v) / len(v) for v in one_column], axis=0))


def test_mean_logit_mean_gmean_and_median_match_numpy():
    t = tables()
    w = np.array([1.0, 3.0, 0.5])
    wn = w / w.sum()
    np.testing.assert_allclose(blend(t, w), np.average(np.stack(t), axis=0, weights=w))
    np.testing.assert_allclose(blend(t, w, mode="logit_mean"),
                               expit(sum(wk * logit(np.clip(tk, 1e-7, 1 - 1e-7)) for wk, tk in zip(wn, t))))
    np.testing.assert_allclose(blend(t, w, mode="gmean"), np.prod([tk ** wk for wk, tk in zip(wn, t)], axis=0))
    np.testing.assert_allclose(blend(t, mode="median"), np.median(np.stack(t), axis=0))
    np.testing.assert_allclose(blend(np.stack(t)), np.mean(t, axis=0))  # a (K, N, C) array
    assert blend([np.zeros((2, 2)), np.ones((2, 2))], mode="gmean").tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize("args, error, words", [
    (([np.zeros((3, 2)), np.zeros((4, 2))],), ShapeError, "table 1 has shape (4, 2) but table 0 has (3, 2)"),
    (([np.array([[0.1, np.nan]])],), InvalidArgumentError, "finite numbers"),
    (([np.array([[2.0, 0.5]])], None, "logit_mean"), InvalidArgumentError, "probabilities in [0, 1]"),
    (([np.zeros(3), np.zeros(3)], [1.0], "mean"), InvalidArgumentError, "2 positive numbers"),
    (([np.zeros(3), np.zeros(3)], [1.0, 2.0], "median"), InvalidArgumentError, "median' takes no weights"),
    (([np.zeros(3)], None, "max"), InvalidArgumentError, "unknown blend mode 'max'"),
    (([],), InvalidArgumentError, "at least one"),
])
def test_bad_tables_are_refused_with_the_reason(args, error, words):
    with pytest.raises(error) as info:
        blend(*args)
    assert words in str(info.value) and isinstance(info.value, KagglekitError)


def multilabel(n=400, c=5):
    y = (RNG.random((n, c)) < 0.3).astype(int)
    p = np.clip(0.6 * y + 0.5 * RNG.random((n, c)) - 0.05, 0, 1)
    return y, p


def test_fitted_decisions_equal_the_functions_they_are_built_on_and_round_trip(tmp_path):
    y, p = multilabel()
    names = [f"c{i}" for i in range(p.shape[1])]
    per_class = fit_decision(p, y, "per_class", beta=2.0, classes=names)
    assert per_class.thresholds == tuple(per_class_thresholds(y, p, 2.0).thresholds) and per_class.classes == tuple(names)
    np.testing.assert_array_equal(per_class.apply(p), p >= np.array(per_class.thresholds))
    pooled = fit_decision(p, y, "threshold", beta=2.0)
    assert pooled.threshold == best_fbeta_threshold(y, p, 2.0).threshold
    bayes = fit_decision(p, y, "expected_fbeta", beta=2.0)
    np.testing.assert_array_equal(bayes.apply(p), expected_fbeta_decision(p, 2.0).labels)
    for decision in (per_class, pooled, bayes):
        assert read_decision(write_decision(decision, tmp_path / f"{decision.kind}.json")) == decision


def test_argmax_with_an_entropy_cut_and_a_temperature():
    logits = RNG.normal(size=(300, 4)) * 3
    y = logits.argmax(axis=1)
    y[:40] = -1  # rows of a class the models do not know
    logits[:40] = RNG.normal(size=(40, 4)) * 0.2  # flat: high entropy
    from scipy.special import softmax

    from kagglekit.thresholds import TemperatureScaler

    decision = fit_decision(softmax(logits, axis=1), y, "argmax", other="Other", logits=logits)
    scaler = TemperatureScaler().fit(logits, np.where(y < 0, 0, y))  # unknown rows counted as class 0
    assert decision.temperature == pytest.approx(scaler.temperature_)
    cut = fit_entropy_cut(scaler.transform(logits), y, other=-1)
    assert decision.other_cut == cut.cut and decision.other == "Other" and decision.score == cut.balanced_accuracy
    chosen = decision.apply(scaler.transform(logits))
    assert (chosen[:40] == -1).mean() > 0.8 and (chosen[40:] == y[40:]).mean() > 0.9


BLEND_FILE = {"format": 1, "kind": "blend", "mode": "mean", "weights": [1.0], "models": None, "method": "nnls",
              "in_sample": 1, "nested": 1}


@pytest.mark.parametrize("read, content, words", [
    (read_decision, None, "not found"), (read_decision, "{", "cannot be used"),
    (read_decision, '{"kind": "per_class"}', "needs thresholds"),
    (read_decision, '{"kind": "argmax", "temperature": -1}', "temperature must be a positive number"),
    (read_decision, '{"kind": "argmax", "format": 9}', "newer kagglekit"),
    (read_decision, '{"kind": "vote"}', "unknown decision kind"),
    (read_blend, None, "not found"), (read_blend, "{not json", "cannot be used"),
    (read_blend, json.dumps({"format": 1, "kind": "decision"}), '"kind": "blend"'),
    (read_blend, json.dumps({"format": 2, "kind": "blend"}), "upgrade kagglekit"),
    (read_blend, json.dumps({**BLEND_FILE, "weights": [1.5, -0.5]}), "non-negative"),
    (read_blend, json.dumps({**BLEND_FILE, "mode": "median"}), "median"),
    (read_blend, json.dumps({**BLEND_FILE, "models": ["a", "b"]}), "1 names"),
    (read_blend, json.dumps({"format": 1, "kind": "blend", "weights": [1.0]}), "missing"),
])
def test_a_bad_decision_or_blend_file_names_itself(tmp_path, read, content, words):
    path = tmp_path / "fitted.json"
    if content is not None:
        path.write_text(content)
    error = DecisionFileError if read is read_decision else BlendFileError
    with pytest.raises(error, match=words) as info:
        read(path)
    assert str(path) in str(info.value)


def test_a_decision_file_is_small_readable_json(tmp_path):
    path = write_decision(Decision("threshold", threshold=0.3, beta=2.0), tmp_path / "d.json")
    assert json.loads(path.read_text())["threshold"] == 0.3
