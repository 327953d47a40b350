"""Decision files: what a decision rule fitted on out-of-fold predictions, as a small JSON file.

    decision = fit_decision(oof_probabilities, y, kind="per_class", beta=2.0, classes=names)
    write_decision(decision, "models/decision.json")        # the classify pipeline reads it
    labels = decision.apply(test_probabilities)             # (N, C) bool, or (N,) class names

Kinds: ``"threshold"`` (one threshold for every class: the best pooled F-beta), ``"per_class"`` (one
threshold per class), ``"expected_fbeta"`` (the Bayes decision for F-beta: nothing is fitted but
``beta``), ``"argmax"`` (single-label). Any kind may carry ``other_cut``, an entropy cut fitted with
:func:`~kagglekit.thresholds.fit_entropy_cut` (rows whose entropy is above it get the ``other`` label),
and ``temperature``, fitted with :class:`~kagglekit.thresholds.TemperatureScaler` on out-of-fold logits.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kagglekit._atomic import atomic_open
from kagglekit._checks import one_of
from kagglekit.errors import ConfigError, InvalidArgumentError, ShapeError
from kagglekit.thresholds._json_files import read_json_file

__all__ = ["DECISION_KINDS", "Decision", "DecisionFileError", "fit_decision", "read_decision", "write_decision"]

DECISION_KINDS = ("threshold", "per_class", "expected_fbeta", "argmax")
_FORMAT = 1


class DecisionFileError(ConfigError):
    """A decision file is missing, not JSON, or holds values that do not fit its kind."""


@dataclass(frozen=True)
class Decision:
    """A fitted decision rule (see the module docstring). ``classes`` names the columns it was fitted on;
    ``score`` is what it reached on the out-of-fold data (F-beta, or balanced accuracy with ``other_cut``)."""

    kind: str
    threshold: float | None = None
    thresholds: tuple[float, ...] | None = None
    beta: float = 1.0
    other_cut: float | None = None
    other: str = "Other"
    temperature: float = 1.0
    classes: tuple[str, ...] | None = None
    score: float | None = None

    def __post_init__(self):
        one_of("decision kind", self.kind, DECISION_KINDS)
        if self.kind == "threshold" and self.threshold is None:
            raise InvalidArgumentError("a 'threshold' decision needs threshold=")
        if self.kind == "per_class" and self.thresholds is None:
            raise InvalidArgumentError("a 'per_class' decision needs thresholds= (one per class)")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise InvalidArgumentError(f"temperature must be a positive number, got {self.temperature!r}")
        if self.classes is not None and self.thresholds is not None and len(self.classes) != len(self.thresholds):
            raise InvalidArgumentError(f"{len(self.thresholds)} thresholds for {len(self.classes)} classes")

    def apply(self, P) -> np.ndarray:
        """The decision on (N, C) probabilities: an (N, C) bool matrix (threshold kinds), or (N,) class
        indices (``argmax``, ``other_cut`` rows -1)."""
        from kagglekit.thresholds.decisions import entropy, expected_fbeta_decision

        p = np.asarray(P, np.float64)
        if p.ndim != 2:
            raise ShapeError(f"a decision applies to (N, C) probabilities, got shape {p.shape}")
        if self.thresholds is not None and len(self.thresholds) != p.shape[1]:
            raise ShapeError(f"the decision has {len(self.thresholds)} per-class thresholds but the predictions "
                             f"have {p.shape[1]} columns")
        if self.kind == "argmax":
            chosen = p.argmax(axis=1)
            return chosen if self.other_cut is None else np.where(entropy(p) > self.other_cut, -1, chosen)
        if self.kind == "expected_fbeta":
            return expected_fbeta_decision(p, self.beta).labels
        cut = np.asarray(self.thresholds if self.kind == "per_class" else self.threshold)
        return p >= cut


def fit_decision(P, y, kind: str, *, beta: float = 1.0, classes=None, other=None, logits=None) -> Decision:
    """Fit a decision rule on out-of-fold predictions.

    ``P``: (N, C) out-of-fold probabilities. ``y``: (N, C) 0/1 labels for the threshold kinds, (N,)
    class indices for ``argmax``, -1 for rows of a class the models do not know. ``other``: the label to
    write for such rows; with it an entropy cut is fitted too (``argmax`` only), maximising balanced
    accuracy with -1 as a class. ``logits``: the out-of-fold logits behind ``P``; with them a
    temperature is fitted (``argmax``: softmax; others: sigmoid) and stored, and ``P`` is recomputed
    from them at that temperature before the rest is fitted.
    """
    from kagglekit.metrics import fbeta_score
    from kagglekit.thresholds.calibration import TemperatureScaler
    from kagglekit.thresholds.decisions import fit_entropy_cut
    from kagglekit.thresholds.sweeps import best_fbeta_threshold, per_class_thresholds

    one_of("decision kind", kind, DECISION_KINDS)
    p = np.asarray(P, np.float64)
    y = np.asarray(y)
    temperature = 1.0
    if logits is not None:
        target = y if kind != "argmax" else np.where(y < 0, 0, y)
        scaler = TemperatureScaler().fit(logits, target)
        temperature, p = scaler.temperature_, scaler.transform(logits)
    names = tuple(classes) if classes is not None else None
    common = {"beta": float(beta), "temperature": float(temperature), "classes": names}
    if kind == "argmax":
        if other is None:
            score = float(np.mean(p.argmax(axis=1) == y))
            return Decision("argmax", score=score, **common)
        cut = fit_entropy_cut(p, y, other=-1)
        return Decision("argmax", other_cut=cut.cut, other=str(other), score=cut.balanced_accuracy, **common)
    if other is not None:
        raise InvalidArgumentError("other= (an entropy cut) goes with kind='argmax', a single-label decision")
    if kind == "threshold":
        found = best_fbeta_threshold(y, p, beta)
        return Decision("threshold", threshold=float(found.threshold), score=found.fbeta, **common)
    if kind == "per_class":
        found = per_class_thresholds(y, p, beta)
        return Decision("per_class", thresholds=tuple(map(float, found.thresholds)), score=float(found.fbetas.mean()), **common)
    decision = Decision("expected_fbeta", **common)
    return Decision("expected_fbeta", score=fbeta_score(y, decision.apply(p), beta, average="samples"), **common)


def write_decision(decision: Decision, path) -> Path:
    """Write ``decision`` as JSON at ``path`` (atomically: an existing file is the old one or the new one)."""
    path = Path(path)
    data = {"format": _FORMAT, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(decision).items()}}
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return path


def read_decision(path) -> Decision:
    """The :class:`Decision` in a file written by :func:`write_decision`; a DecisionFileError naming the file otherwise."""
    return read_json_file(path, DecisionFileError, "decision", "write_decision", _FORMAT, _decision)


def _decision(data: dict) -> Decision:
    if "kind" not in data:
        raise ValueError("not an object with a 'kind'")
    return Decision(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
