"""Label structure for multi-label decisions: groups of mutually exclusive labels and labels that stand alone.

    weather = LabelStructure(groups=[(["clear", "partly_cloudy", "haze", "cloudy"], "exactly_one")], alone=["cloudy"])
    labels = weather.enforce(P >= thresholds, P, classes=names)      # (n, m) bool, every row valid

A row's label set S is *valid* when every ``"exactly_one"`` group holds exactly one label of S, every
``"at_most_one"`` group at most one, and an ``alone`` label of S is its only label (Planet: "cloudy"
means no other tag). Labels are class names (then ``classes=`` names the columns) or column indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kagglekit._checks import one_of
from kagglekit.errors import InvalidArgumentError

__all__ = ["GROUP_RULES", "LabelStructure"]

GROUP_RULES = ("exactly_one", "at_most_one")


def _label(value, where: str):
    if isinstance(value, str) and value:
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise InvalidArgumentError(f"label structure: {where} holds {value!r}; a label is a class name or a column index >= 0")


def _labels(values, where: str) -> tuple:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InvalidArgumentError(f"label structure: {where} must be a list of labels, got {values!r}")
    labels = tuple(_label(v, where) for v in values)
    repeated = sorted({v for v in labels if labels.count(v) > 1}, key=str)
    if repeated:
        raise InvalidArgumentError(f"label structure: {where} repeats {repeated}; name each label once")
    return labels


class Bound(NamedTuple):
    """A structure as column indices: ``groups`` ((int64 indices, exactly_one?), ...), ``alone``."""

    groups: tuple[tuple[np.ndarray, bool], ...]
    alone: np.ndarray


@dataclass(frozen=True)
class LabelStructure:
    """``groups``: ((labels, rule), ...) with rule ``"exactly_one"`` or ``"at_most_one"``, each group >= 2
    labels, no label in two groups; ``alone``: labels that exclude every other label when chosen."""

    groups: tuple = ()
    alone: tuple = ()

    def __post_init__(self):
        groups = []
        for k, group in enumerate(self.groups):
            if not isinstance(group, (tuple, list)) or len(group) != 2:
                raise InvalidArgumentError(f"label structure: group {k} must be (labels, rule), got {group!r}")
            labels = _labels(group[0], f"group {k}")
            one_of(f"rule of group {k}", group[1], GROUP_RULES)
            if len(labels) < 2:
                raise InvalidArgumentError(f"label structure: group {k} has {len(labels)} label; a group needs 2 or more")
            groups.append((labels, group[1]))
        object.__setattr__(self, "groups", tuple(groups))
        object.__setattr__(self, "alone", _labels(self.alone, "alone"))

    def to_dict(self) -> dict:
        """The JSON / TOML spelling: ``{"groups": [{"labels": [...], "rule": ...}], "alone": [...]}``."""
        return {"groups": [{"labels": list(labels), "rule": rule} for labels, rule in self.groups], "alone": list(self.alone)}

    @classmethod
    def from_dict(cls, data: dict) -> LabelStructure:
        """The structure written by :meth:`to_dict`."""
        if not isinstance(data, dict) or set(data) - {"groups", "alone"}:
            raise InvalidArgumentError(f"label structure must be {{'groups': [...], 'alone': [...]}}, got {data!r}")
        groups = data.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, dict) and set(g) == {"labels", "rule"} for g in groups):
            raise InvalidArgumentError(f"label structure: groups must be [{{'labels': [...], 'rule': ...}}, ...], got {groups!r}")
        return cls(tuple((g["labels"], g["rule"]) for g in groups), data.get("alone", ()))

    def bind(self, classes=None, m: int | None = None) -> Bound:
        """The structure as indices of the columns named ``classes`` (or of ``m`` columns), checked: a name
        that is not a class, an index out of range, a label in two groups, an alone label that can never be
        chosen beside an ``exactly_one`` group, and a group of alone labels only are each named."""
        if classes is None and m is None:
            raise InvalidArgumentError("label structure: bind needs classes= (the column names) or m= (the column count)")
        names = None if classes is None else [str(c) for c in classes]
        m = len(names) if m is None else m
        if names is not None and len(names) != m:
            raise InvalidArgumentError(f"label structure: {len(names)} classes named for {m} columns")
        index = {} if names is None else {n: i for i, n in enumerate(names)}

        def column(label):
            if isinstance(label, int):
                return label if label < m else None
            return index.get(label)

        everything = [v for labels, _ in self.groups for v in labels] + list(self.alone)
        unknown = sorted({str(v) for v in everything if column(v) is None})
        if unknown:
            known = f"the classes are {names}" if names is not None else f"no classes= were given (indices 0..{m - 1})"
            raise InvalidArgumentError(f"label structure: {unknown} not among the {m} columns; {known}")
        groups = tuple((np.array([column(v) for v in labels], np.int64), rule == "exactly_one") for labels, rule in self.groups)
        bound = Bound(groups, np.array([column(v) for v in self.alone], np.int64))
        _check_consistent(bound, names)
        return bound

    def enforce(self, chosen, P, classes=None) -> np.ndarray:
        """``chosen`` (n, m) bool (e.g. ``P >= thresholds``) made valid: in an ``exactly_one`` group the most
        probable chosen label is kept, or the group's most probable label when none is chosen; in an
        ``at_most_one`` group the most probable chosen label is kept; then, if an alone label is chosen, the
        most probable chosen alone label is the row's only label. Ties go to the label listed first."""
        p = np.asarray(P, np.float64)
        out = np.array(chosen, dtype=bool)
        if out.shape != p.shape or p.ndim != 2:
            raise InvalidArgumentError(f"chosen and P must be (n, m) arrays of one shape, got {out.shape} and {p.shape}")
        return _enforce_bound(self.bind(classes, p.shape[1]), out, p)


def _check_consistent(bound: Bound, names) -> None:
    """Refuse overlapping groups, alone labels never valid, and exactly_one groups of alone labels only."""
    show = (lambda i: repr(names[i])) if names is not None else str
    seen = {}
    for k, (idx, _) in enumerate(bound.groups):
        for i in idx.tolist():
            if i in seen:
                raise InvalidArgumentError(f"label structure: label {show(i)} is in groups {seen[i]} and {k}; a label "
                                           "belongs to one group at most")
            seen[i] = k
    exactly = [k for k, (_, e) in enumerate(bound.groups) if e]
    alone = set(bound.alone.tolist())
    for i in sorted(alone):
        others = [k for k in exactly if seen.get(i) != k]
        if others:
            raise InvalidArgumentError(f"label structure: alone label {show(i)} can never be chosen, as exactly_one group "
                                       f"{others[0]} needs a label beside it; drop it from alone or from that group's rule")
    for k in exactly:
        if set(bound.groups[k][0].tolist()) <= alone:
            raise InvalidArgumentError(f"label structure: exactly_one group {k} holds alone labels only, so every row gets "
                                       "one label: that is a single-label decision (kind 'argmax')")


def _enforce_bound(bound: Bound, out: np.ndarray, p: np.ndarray) -> np.ndarray:
    """:meth:`LabelStructure.enforce` on a bound structure; ``out`` (n, m) bool is changed in place and returned."""
    rows = np.arange(len(p))
    for idx, exactly in bound.groups:
        chosen = out[:, idx]
        best = np.where(chosen, p[:, idx], -np.inf).argmax(axis=1)
        keep = chosen.any(axis=1)
        if exactly:
            best = np.where(keep, best, p[:, idx].argmax(axis=1))
            keep[:] = True
        out[:, idx] = False
        out[rows[keep], idx[best[keep]]] = True
    if bound.alone.size:
        chosen = out[:, bound.alone]
        single = chosen.any(axis=1)
        pick = bound.alone[np.where(chosen, p[:, bound.alone], -np.inf).argmax(axis=1)]
        out[single] = False
        out[rows[single], pick[single]] = True
    return out
