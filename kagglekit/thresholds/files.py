"""Decision files: what a decision rule fitted on out-of-fold predictions, as a small JSON file.

    decision = fit_decision(oof_probabilities, y, kind="per_class", beta=2.0, classes=names)
    write_decision(decision, "models/decision.json")        # the classify pipeline reads it
    labels = decision.apply(test_probabilities)             # (N, C) bool, or (N,) class names

Kinds: ``"threshold"`` (one threshold for every class: the best pooled F-beta), ``"per_class"`` (one
threshold per class), ``"expected_fbeta"`` (the Bayes decision for F-beta: nothing is fitted but
``beta``), ``"argmax"`` (single-label). Any kind may carry ``other_cut``, an entropy cut fitted with
:func:`~kagglekit.thresholds.fit_entropy_cut` (rows whose entropy is above it get the ``other`` label),
and ``temperature``, fitted with :class:`~kagglekit.thresholds.TemperatureScaler` on out-of-fold logits.
The multi-label kinds may carry a :class:`~kagglekit.thresholds.LabelStructure` (exclusive groups, alone
labels) that every decision they write respects; the threshold kinds may be fitted over repeated fold
splits (``repeats``, ``folds``, ``seed``), and then record the spread of the thresholds and a held-out score.
Files without these keys (written before them) read unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kagglekit._atomic import atomic_open
from kagglekit._checks import one_of, positive_int
from kagglekit.errors import ConfigError, InvalidArgumentError, ShapeError
from kagglekit.thresholds._json_files import read_json_file
from kagglekit.thresholds.structure import LabelStructure

__all__ = ["DECISION_KINDS", "Decision", "DecisionFileError", "fit_decision", "read_decision", "write_decision"]

DECISION_KINDS = ("threshold", "per_class", "expected_fbeta", "argmax")
_FORMAT = 2
_FORMAT_2 = {"structure": None, "repeats": 1, "folds": None, "seed": None, "spread": None, "held_out_score": None}
_AVERAGE = {"threshold": "global", "per_class": "macro", "expected_fbeta": "samples"}


class DecisionFileError(ConfigError):
    """A decision file is missing, not JSON, or holds values that do not fit its kind."""


@dataclass(frozen=True)
class Decision:
    """A fitted decision rule (see the module docstring). ``classes`` names the columns it was fitted on;
    ``score`` is what it reached on the out-of-fold data (F-beta, or balanced accuracy with ``other_cut``).
    ``structure``: the label structure its decisions respect. Fitted over repeated splits: ``repeats`` x
    ``folds`` fits (``seed``), the thresholds' standard deviation over them (``spread``, one per threshold)
    and ``held_out_score``, the score of each row's labels from thresholds fitted without it."""

    kind: str
    threshold: float | None = None
    thresholds: tuple[float, ...] | None = None
    beta: float = 1.0
    other_cut: float | None = None
    other: str = "Other"
    temperature: float = 1.0
    classes: tuple[str, ...] | None = None
    score: float | None = None
    structure: LabelStructure | None = None
    repeats: int = 1
    folds: int | None = None
    seed: int | None = None
    spread: tuple[float, ...] | None = None
    held_out_score: float | None = None

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
        if self.structure is not None:
            if not isinstance(self.structure, LabelStructure):
                raise InvalidArgumentError(f"structure must be a LabelStructure, got {type(self.structure).__name__}")
            if self.kind == "argmax":
                raise InvalidArgumentError("a label structure goes with the multi-label kinds (threshold, per_class, "
                                           "expected_fbeta); argmax already writes one label per row")
            if self.classes is not None:
                self.structure.bind(self.classes)
        positive_int("repeats", self.repeats)
        if self.folds is not None:
            positive_int("folds", self.folds, minimum=2)
        elif self.repeats != 1:
            raise InvalidArgumentError(f"repeats={self.repeats} needs folds= (the fold count of each repeated split)")

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
            return expected_fbeta_decision(p, self.beta, structure=self.structure, classes=self.classes).labels
        chosen = p >= np.asarray(self.thresholds if self.kind == "per_class" else self.threshold)
        return chosen if self.structure is None else self.structure.enforce(chosen, p, self.classes)


def fit_decision(P, y, kind: str, *, beta: float = 1.0, classes=None, other=None, logits=None, structure=None,
                 repeats: int = 1, folds: int | None = None, seed: int = 0) -> Decision:
    """Fit a decision rule on out-of-fold predictions.

    ``P``: (N, C) out-of-fold probabilities. ``y``: (N, C) 0/1 labels for the threshold kinds, (N,)
    class indices for ``argmax``, -1 for rows of a class the models do not know. ``other``: the label to
    write for such rows; with it an entropy cut is fitted too (``argmax`` only), maximising balanced
    accuracy with -1 as a class. ``logits``: the out-of-fold logits behind ``P``; with them a
    temperature is fitted (``argmax``: softmax; others: sigmoid) and stored, and ``P`` is recomputed
    from them at that temperature before the rest is fitted.

    ``structure``: a :class:`~kagglekit.thresholds.LabelStructure` (names are ``classes``) stored in the
    decision; thresholds are fitted without it, then applied with it, and ``score`` is that of the
    structured labels. ``folds`` (threshold kinds): the thresholds are the mean over ``repeats`` splits
    into ``folds`` folds (see :func:`~kagglekit.thresholds.repeated_fit`: repeat r is seeded ``seed + r``)
    of those fitted on each split's k-1 training folds; ``folds=None`` fits once on every row.
    """
    from kagglekit.thresholds.calibration import TemperatureScaler

    one_of("decision kind", kind, DECISION_KINDS)
    p = np.asarray(P, np.float64)
    y = np.asarray(y)
    temperature = 1.0
    if logits is not None:
        target = y if kind != "argmax" else np.where(y < 0, 0, y)
        scaler = TemperatureScaler().fit(logits, target)
        temperature, p = scaler.temperature_, scaler.transform(logits)
    names = tuple(classes) if classes is not None else None
    common = {"beta": float(beta), "temperature": float(temperature), "classes": names, "structure": structure}
    if folds is not None and kind not in ("threshold", "per_class"):
        raise InvalidArgumentError(f"folds= averages fitted thresholds; kind {kind!r} has none to average (use "
                                   "'threshold' or 'per_class', or drop folds and repeats)")
    if kind == "argmax":
        return _fit_argmax(p, y, other, common)
    if other is not None:
        raise InvalidArgumentError("other= (an entropy cut) goes with kind='argmax', a single-label decision")
    if kind == "expected_fbeta":
        decision = Decision("expected_fbeta", **common)
    else:
        decision = _fit_thresholds(p, y, kind, common, repeats, folds, seed)
    return dataclasses.replace(decision, score=_score(kind, beta, y, decision.apply(p)))


def _fit_argmax(p: np.ndarray, y: np.ndarray, other, common: dict) -> Decision:
    from kagglekit.thresholds.decisions import fit_entropy_cut

    if other is None:
        return Decision("argmax", score=float(np.mean(p.argmax(axis=1) == y)), **common)
    cut = fit_entropy_cut(p, y, other=-1)
    return Decision("argmax", other_cut=cut.cut, other=str(other), score=cut.balanced_accuracy, **common)


def _fit_thresholds(p: np.ndarray, y: np.ndarray, kind: str, common: dict, repeats: int, folds, seed) -> Decision:
    """A threshold or per-class decision (without its score) fitted on every row, or over repeated splits."""
    from kagglekit.thresholds.repeats import repeated_fit
    from kagglekit.thresholds.sweeps import best_fbeta_threshold, per_class_thresholds

    def fit(y_rows, p_rows):
        if kind == "threshold":
            return best_fbeta_threshold(y_rows, p_rows, common["beta"]).threshold
        return per_class_thresholds(y_rows, p_rows, common["beta"]).thresholds

    def made(thresholds, **fitting) -> Decision:
        if kind == "threshold":
            return Decision(kind, threshold=float(thresholds), **common, **fitting)
        return Decision(kind, thresholds=tuple(map(float, thresholds)), **common, **fitting)

    if folds is None:
        return made(fit(y, p), repeats=repeats)
    found = repeated_fit(p, y, fit=fit, decide=lambda rows, t: made(t).apply(rows), folds=folds, repeats=repeats,
                         seed=seed, score=lambda truth, labels: _score(kind, common["beta"], truth, labels))
    return made(found.thresholds, repeats=repeats, folds=folds, seed=int(seed), held_out_score=found.held_out_score,
                spread=tuple(map(float, np.atleast_1d(found.spread))))


def _score(kind: str, beta: float, y, labels) -> float:
    """The F-beta a multi-label kind is scored by: pooled (threshold), macro (per_class), per row (expected_fbeta)."""
    from kagglekit.metrics import fbeta_score

    return fbeta_score(y, labels, beta, average=_AVERAGE[kind])


def write_decision(decision: Decision, path) -> Path:
    """Write ``decision`` as JSON at ``path`` (atomically: an existing file is the old one or the new one).
    Keys added in format 2 are written only when set, so a plain decision stays readable by format-1 readers."""
    path = Path(path)
    values = {f.name: getattr(decision, f.name) for f in dataclasses.fields(decision)}
    newer = {k for k, default in _FORMAT_2.items() if values[k] != default}
    data = {"format": _FORMAT if newer else 1}
    for key, value in values.items():
        if key not in _FORMAT_2 or key in newer:
            data[key] = value.to_dict() if isinstance(value, LabelStructure) else list(value) if isinstance(value, tuple) else value
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return path


def read_decision(path) -> Decision:
    """The :class:`Decision` in a file written by :func:`write_decision`; a DecisionFileError naming the file otherwise."""
    return read_json_file(path, DecisionFileError, "decision", "write_decision", _FORMAT, _decision)


def _decision(data: dict) -> Decision:
    if "kind" not in data:
        raise ValueError("not an object with a 'kind'")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    if fields.get("structure") is not None:
        fields["structure"] = LabelStructure.from_dict(data["structure"])
    return Decision(**fields)
