"""Decision rules on probabilities: the expected-F-beta (Bayes) decision and entropy rejection to "Other"."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from kagglekit._checks import check_beta, check_one_label_kind, label_kinds, positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["FbetaDecision", "EntropyCut", "expected_fbeta_decision", "entropy", "reject_by_entropy", "fit_entropy_cut"]


# ---------------------------------------------------------------------------------------------
# Expected F-beta decision for independent label probabilities.
# ---------------------------------------------------------------------------------------------


class FbetaDecision(NamedTuple):
    """``labels``: (n, m) bool predictions; ``expected_fbeta``: (n,) their expected F-beta."""

    labels: np.ndarray
    expected_fbeta: np.ndarray


def _check_probabilities(name: str, P, ndim: int) -> np.ndarray:
    p = np.asarray(P, dtype=np.float64)
    if p.ndim != ndim or p.size == 0:
        raise ShapeError(f"{name} must be a non-empty {ndim}-D array of probabilities, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):  # also catches NaN
        raise InvalidArgumentError(f"{name} must hold probabilities in [0, 1] (no NaN); apply sigmoid/softmax first")
    return p


def _add_bernoulli(dist: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Distribution of a count (rows of ``dist``) plus an independent Bernoulli(p) (one p per row)."""
    out = np.zeros((dist.shape[0], dist.shape[1] + 1))
    out[:, :-1] = dist * (1 - p)[:, None]
    out[:, 1:] += dist * p[:, None]
    return out


def _expected_fbeta_topk(p_desc: np.ndarray, beta2: float, empty_fbeta: float) -> np.ndarray:
    """E[F-beta] of predicting the top k labels, for k = 0..m. ``p_desc``: (n, m) sorted descending.

    With TP the number of true labels among the top k (a Poisson-binomial count A) and FN the number
    outside (an independent count B): E[F] = sum_a,b P(A=a) P(B=b) (1+beta^2) a / (beta^2 (a+b) + k).
    Holds (n, m^2 / 2) floats for the suffix distributions."""
    n, m = p_desc.shape
    suffix = [np.ones((n, 1))]
    for j in range(m - 1, -1, -1):
        suffix.append(_add_bernoulli(suffix[-1], p_desc[:, j]))
    suffix.reverse()  # suffix[k]: distribution of the count among labels k..m-1
    expected = np.empty((n, m + 1))
    expected[:, 0] = suffix[0][:, 0] * empty_fbeta
    prefix = np.ones((n, 1))
    for k in range(1, m + 1):
        prefix = _add_bernoulli(prefix, p_desc[:, k - 1])
        a = np.arange(k + 1)[:, None]
        b = np.arange(m - k + 1)[None, :]
        weight = (1 + beta2) * a / (beta2 * (a + b) + k)
        expected[:, k] = ((prefix @ weight) * suffix[k]).sum(axis=1)
    return expected


def expected_fbeta_decision(P, beta: float = 1.0, empty_fbeta: float = 1.0, chunk: int = 4096, *,
                            structure=None, classes=None) -> FbetaDecision:
    """The 0/1 prediction of each sample that maximises its expected F-beta.

    ``P``: (n, m) label probabilities, taken as independent. F-beta of an empty truth with an empty
    prediction is ``empty_fbeta`` (1.0; pass 0.0 for the other convention); otherwise
    F = (1+b^2)TP/(b^2|Y|+|S|). Under independence an optimal prediction is the set of the k most
    probable labels for some k (Lewis 1995; Ye et al. 2012), so every k is scored exactly with
    Poisson-binomial distributions: O(m^3) per sample, vectorised over ``chunk`` samples at a time
    (memory ~ chunk * m^2 * 4 bytes). Ties between k go to the smaller k.

    ``structure``: a :class:`~kagglekit.thresholds.LabelStructure` (names resolved by ``classes``); the
    prediction is then the best *valid* set. The expectation is the same one, over truths drawn from
    independent labels with these marginals (truths that break the structure included): only the
    predicted set is constrained. It is exact for any m, by exchanging a chosen label for a more probable
    unchosen one whose swap keeps the set valid (that never lowers E[F] under independence): the best
    valid set is a single alone label, or the most probable non-alone label of each exactly_one group
    plus the k most probable of a pool (the most probable non-alone label of each at_most_one group and
    every label in no group and not alone), for some k. Ties go to the smaller set, alone sets last.
    """
    beta2 = check_beta(beta) ** 2
    chunk = positive_int("chunk", chunk)
    if not 0 <= empty_fbeta <= 1:
        raise InvalidArgumentError(
            f"empty_fbeta must be in [0, 1] (1.0 or 0.0 are the usual conventions), got {empty_fbeta!r}"
        )
    p = _check_probabilities("P", P, 2)
    bound = None if structure is None else structure.bind(classes, p.shape[1])
    labels = np.zeros(p.shape, dtype=bool)
    best_value = np.empty(len(p))
    for start in range(0, len(p), chunk):
        rows = slice(start, start + chunk)
        labels[rows], best_value[rows] = _best_sets(p[rows], beta2, float(empty_fbeta), bound)
    return FbetaDecision(labels, best_value)


def _candidate_order(p: np.ndarray, bound) -> tuple[np.ndarray, int, int]:
    """(each row's columns: the forced labels, then the pool by descending probability, then the rest (see
    :func:`expected_fbeta_decision`); the number forced; forced + pool). Without a structure: (all by
    descending probability, 0, m)."""
    order = np.argsort(-p, axis=1, kind="stable")
    if bound is None:
        return order, 0, p.shape[1]
    rank = np.ones(p.shape, dtype=np.int64)  # 0: forced, 1: pool, 2: the rest
    for idx, _ in bound.groups:
        rank[:, idx] = 2
    rank[:, bound.alone] = 2
    rows = np.arange(len(p))
    for idx, exactly in bound.groups:
        candidates = idx[~np.isin(idx, bound.alone)]
        if candidates.size:  # an exactly_one group always has one (LabelStructure.bind)
            rank[rows, candidates[p[:, candidates].argmax(axis=1)]] = 0 if exactly else 1
    counts = np.bincount(rank[0], minlength=3)
    by_rank = np.argsort(np.take_along_axis(rank, order, axis=1), axis=1, kind="stable")
    return np.take_along_axis(order, by_rank, axis=1), int(counts[0]), int(counts[0] + counts[1])


def _alone_values(p: np.ndarray, beta2: float, alone: np.ndarray) -> np.ndarray:
    """E[F-beta] of predicting alone label a only, for each a: p_a E[(1+b^2) / (b^2 (1 + B) + 1)], B the count of
    the other true labels (a Poisson-binomial)."""
    values = np.empty((len(p), alone.size))
    for j, a in enumerate(alone.tolist()):
        dist = np.ones((len(p), 1))
        for k in range(p.shape[1]):
            if k != a:
                dist = _add_bernoulli(dist, p[:, k])
        b = np.arange(dist.shape[1])
        values[:, j] = p[:, a] * (dist @ ((1 + beta2) / (beta2 * (1 + b) + 1)))
    return values


def _best_sets(p: np.ndarray, beta2: float, empty_fbeta: float, bound) -> tuple[np.ndarray, np.ndarray]:
    """((n, m) bool best sets, (n,) their expected F-beta) of a chunk of rows."""
    order, forced, most = _candidate_order(p, bound)
    expected = _expected_fbeta_topk(np.take_along_axis(p, order, axis=1), beta2, empty_fbeta)
    if bound is not None:
        expected[:, :forced] = -np.inf
        expected[:, most + 1 :] = -np.inf
        expected = np.concatenate([expected, _alone_values(p, beta2, bound.alone)], axis=1)
    best = expected.argmax(axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(p.shape[1])[None, :], axis=1)
    top_k = np.where(best <= p.shape[1], best, 0)
    labels = rank < top_k[:, None]
    single = np.flatnonzero(best > p.shape[1])
    if single.size:
        labels[single, bound.alone[best[single] - p.shape[1] - 1]] = True
    return labels, expected[np.arange(len(p)), best]


# ---------------------------------------------------------------------------------------------
# Entropy rejection ("Other").
# ---------------------------------------------------------------------------------------------


def entropy(P) -> np.ndarray:
    """Shannon entropy in nats of each row of ``P`` (n, C), rows being probability vectors (0 log 0 = 0)."""
    return _entropy(_check_probabilities("P", P, 2))


def _entropy(p: np.ndarray) -> np.ndarray:
    """:func:`entropy` of an already checked (n, C) probability array."""
    sums = p.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise InvalidArgumentError(
            f"rows of P must sum to 1 (found sums from {sums.min():.4g} to {sums.max():.4g}); apply softmax first"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def _class_labels(P: np.ndarray, classes, other, y=None):
    """The labels of P's columns; raise unless they, ``other`` and ``y`` are all strings or all numbers."""
    labels = np.arange(P.shape[1]) if classes is None else np.asarray(classes)
    if labels.shape != (P.shape[1],):
        raise ShapeError(f"classes must name the {P.shape[1]} columns of P, got shape {labels.shape}")
    kinds = {"classes": label_kinds(labels), "other": label_kinds([other])}
    if y is not None:
        kinds["y"] = label_kinds(y)
    check_one_label_kind(kinds, "pass other= of the classes' type (e.g. other='Other' with class names)"
                                + (" and classes= naming P's columns with the labels used in y" if y is not None else ""))
    return labels


def reject_by_entropy(P, cut: float, other=-1, classes=None) -> np.ndarray:
    """Arg-max class of each row of ``P`` (n, C), or ``other`` where ``entropy(P) > cut``.

    ``classes``: labels of the C columns (default 0..C-1). Returns a (n,) array of labels."""
    p = _check_probabilities("P", P, 2)
    labels = _class_labels(p, classes, other)
    return np.where(_entropy(p) > cut, other, labels[p.argmax(axis=1)])


class EntropyCut(NamedTuple):
    """``cut`` for :func:`reject_by_entropy` and the ``balanced_accuracy`` it reaches on the fitting data."""

    cut: float
    balanced_accuracy: float


def fit_entropy_cut(P, y, other=-1, classes=None) -> EntropyCut:
    """The entropy cut maximising balanced accuracy of :func:`reject_by_entropy` on out-of-fold data.

    ``P``: (n, C) out-of-fold probabilities; ``y``: (n,) true labels, ``other`` for samples of
    classes the model does not know (without any, rejecting can only hurt and the cut is the
    largest entropy). Exact over every distinct entropy (and -inf, rejecting all): one sort and
    cumulative sums. Among equal scores the largest cut (fewest rejections) is returned.
    """
    p = _check_probabilities("P", P, 2)
    y = np.asarray(y)
    if y.shape != (len(p),):
        raise ShapeError(f"y must be a 1-D array with one label per row of P ({len(p)}), got shape {y.shape}")
    labels = _class_labels(p, classes, other, y)
    ent = _entropy(p)
    predicted = labels[p.argmax(axis=1)]
    classes_in_y, index, class_size = np.unique(y, return_inverse=True, return_counts=True)
    is_other = y == other
    # Balanced accuracy = (sum of kept correct known-class samples / their class size
    #                      + sum of rejected "other" samples / their class size) / number of classes.
    kept_gain = np.where(~is_other & (predicted == y), 1.0 / class_size[index], 0.0)
    rejected_gain = np.where(is_other, 1.0 / class_size[index], 0.0)
    order = np.argsort(ent, kind="stable")
    ent_sorted = ent[order]
    last_of_value = np.r_[np.flatnonzero(ent_sorted[1:] != ent_sorted[:-1]), len(ent) - 1]
    kept = np.cumsum(kept_gain[order])[last_of_value]
    rejected = rejected_gain.sum() - np.cumsum(rejected_gain[order])[last_of_value]
    scores = np.r_[rejected_gain.sum(), kept + rejected] / len(classes_in_y)
    cuts = np.r_[-math.inf, ent_sorted[last_of_value]]
    i = len(scores) - 1 - int(np.argmax(scores[::-1]))
    return EntropyCut(float(cuts[i]), float(scores[i]))
