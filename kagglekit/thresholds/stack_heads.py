"""A stacker's fitted second-level estimators as plain arrays, and their predictions recomputed from them in numpy.

    head = export_head(fitted)        # a dict of numpy arrays and numbers (no estimator object)
    proba = head_proba(head, X)       # (N, K) float64, as fitted.predict_proba(X)
    packed = pack_head(head)          # JSON-ready: arrays as base64 of zlib-compressed little-endian bytes
    head = unpack_head(packed)        # the same dict back, without pickle

Kinds: ``"logistic"`` (scikit-learn ``LogisticRegression``: ``coef`` (K', F), ``intercept`` (K',); one row
is a binary model, its probability ``expit``, several a multinomial one, their ``softmax``) and ``"trees"``
(scikit-learn ``ExtraTreesClassifier``: every tree's ``tree_`` arrays concatenated, node indices offset
to the concatenation, ``roots`` (T,) and ``depth``). The trees are walked for every row and tree at once,
one level per step, on the features cast to float32 as scikit-learn's trees compare them, and the
trees' leaf class fractions are summed in tree order as ``predict_proba`` does: the result equals
scikit-learn's.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

from kagglekit.errors import InvalidArgumentError

__all__ = ["export_head", "head_proba", "pack_head", "unpack_head"]

_DTYPES = ("<f8", "<i8")  # what a packed array may hold: never an object array


def export_head(fitted) -> dict:
    """The arrays behind a fitted ``LogisticRegression`` or ``ExtraTreesClassifier`` (classes 0..K-1)."""
    if hasattr(fitted, "coef_"):
        return {"kind": "logistic", "coef": np.asarray(fitted.coef_, np.float64),
                "intercept": np.asarray(fitted.intercept_, np.float64)}
    trees = [e.tree_ for e in fitted.estimators_]
    sizes = np.array([t.node_count for t in trees])
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    left = np.concatenate([np.where(t.children_left < 0, -1, t.children_left + o) for t, o in zip(trees, offsets)])
    right = np.concatenate([np.where(t.children_right < 0, -1, t.children_right + o) for t, o in zip(trees, offsets)])
    feature = np.concatenate([t.feature for t in trees])
    return {"kind": "trees", "left": left.astype(np.int64), "right": right.astype(np.int64),
            "feature": np.where(left < 0, 0, feature).astype(np.int64),  # a leaf's -2 would index a column
            "threshold": np.concatenate([t.threshold for t in trees]).astype(np.float64),
            "value": np.concatenate([_leaf_probabilities(t.value[:, 0, :]) for t in trees]),
            "roots": offsets.astype(np.int64), "depth": int(max(t.max_depth for t in trees))}


def _leaf_probabilities(value: np.ndarray) -> np.ndarray:
    """A tree's (nodes, K) class fractions: scikit-learn >= 1.4 stores them, older versions stored counts
    and divided by their sum when predicting (a sum of 0 by 1), as done here once."""
    value = np.asarray(value, np.float64)
    if np.allclose(value.sum(axis=1), 1.0, rtol=0, atol=1e-9):
        return value
    normalizer = value.sum(axis=1, keepdims=True)
    normalizer[normalizer == 0] = 1.0
    return value / normalizer


def head_proba(head: dict, X: np.ndarray) -> np.ndarray:
    """(N, K) float64 class probabilities of the (N, F) features ``X`` (K = 2 for a binary head)."""
    X = np.asarray(X, np.float64)
    if head["kind"] == "logistic":
        from scipy.special import expit

        scores = X @ head["coef"].T + head["intercept"]
        if scores.shape[1] == 1:
            p = expit(scores[:, 0])
            return np.stack([1 - p, p], axis=1)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        return scores / scores.sum(axis=1, keepdims=True)
    return _trees_proba(head, X.astype(np.float32))


def _trees_proba(head: dict, X: np.ndarray) -> np.ndarray:
    """The forest's probabilities: each row walks every tree, one level per step. Holds (N, T) node indices."""
    left, right, feature, threshold = head["left"], head["right"], head["feature"], head["threshold"]
    node = np.repeat(head["roots"][None, :], len(X), axis=0)
    rows = np.arange(len(X))[:, None]
    for _ in range(head["depth"]):
        inner = left[node] >= 0
        go_left = X[rows, feature[node]] <= threshold[node]
        node = np.where(inner, np.where(go_left, left[node], right[node]), node)
    total = np.zeros((len(X), head["value"].shape[1]))
    for t in range(node.shape[1]):  # in tree order, as scikit-learn accumulates them
        total += head["value"][node[:, t]]
    return total / node.shape[1]


def _pack_array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, np.float64 if a.dtype.kind == "f" else np.int64)
    packed = base64.b64encode(zlib.compress(a.tobytes())).decode()
    return {"dtype": a.dtype.str, "shape": list(a.shape), "zlib_base64": packed}


def _unpack_array(packed: dict) -> np.ndarray:
    if not isinstance(packed, dict) or packed.get("dtype") not in _DTYPES:
        raise InvalidArgumentError(f"an array must be packed as {{dtype: one of {list(_DTYPES)}, shape, zlib_base64}}")
    try:
        data = zlib.decompress(base64.b64decode(packed["zlib_base64"], validate=True))
        return np.frombuffer(data, np.dtype(packed["dtype"])).reshape(packed["shape"]).copy()
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise InvalidArgumentError(f"a packed array cannot be read: {exc}") from None


def pack_head(head: dict) -> dict:
    """``head`` as JSON-ready values: its arrays packed, its numbers and kind as they are."""
    return {k: _pack_array(v) if isinstance(v, np.ndarray) else v for k, v in head.items()}


def unpack_head(packed: dict) -> dict:
    """The head of :func:`pack_head`'s output; an InvalidArgumentError when it is not one."""
    kind = packed.get("kind") if isinstance(packed, dict) else None
    names = {"logistic": ("coef", "intercept"), "trees": ("left", "right", "feature", "threshold", "value", "roots")}
    if kind not in names or not isinstance(packed.get("depth", 0), int):
        raise InvalidArgumentError(f"a head must be a 'logistic' or 'trees' table, got kind {kind!r}")
    head = {**packed, **{k: _unpack_array(packed.get(k)) for k in names[kind]}}
    if kind == "trees":
        n = len(head["left"])
        if not all(len(head[k]) == n for k in ("right", "feature", "threshold", "value")) or not all(
                ((head[k] >= -1) & (head[k] < n)).all() for k in ("left", "right", "roots")):
            raise InvalidArgumentError("a trees head's node arrays differ in length or point outside the nodes")
    return head
