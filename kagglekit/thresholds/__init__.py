"""Thresholds, decision rules, calibration and blends of prediction tables, one module per job.

    sweeps.py         best_fbeta_threshold (exact), percentile_threshold, per_class_thresholds, apply_threshold
    decisions.py      expected_fbeta_decision (Bayes-optimal F-beta, with a label structure), entropy,
                      reject_by_entropy, fit_entropy_cut
    structure.py      LabelStructure: exclusive groups (exactly_one, at_most_one) and alone labels, enforced on label sets
    repeats.py        repeated_fit: thresholds averaged over repeated fold splits, with a held-out score
    calibration.py    TemperatureScaler
    blends.py         blend: mean, logit_mean, gmean, rank, median of (N, C) prediction tables
    fitted_blends.py  fit_blend -> BlendFit: blend weights fitted on out-of-fold predictions (hill climbing,
                      Nelder-Mead, nnls) with a nested-fold estimate of their gain
    blend_files.py    write_blend, read_blend: fitted blend weights as a small JSON the pipeline reads
    files.py          decision files: what was fitted on out-of-fold predictions, as a small JSON the pipeline reads
    stacking.py       fit_stacker: a second level on out-of-fold tables (honest OOF, repeats), Stacker, load_stacker
    stack_heads.py    a stacker's fitted estimators as arrays, predicted in numpy (its file needs no pickle)
    stack_files.py    read_stack_file: the stacker or blend file classify's [stack] applies

Convention used everywhere here: a score is predicted positive when ``score >= threshold``.
"""

from kagglekit.thresholds.blend_files import BlendFileError, read_blend, write_blend
from kagglekit.thresholds.blends import BLEND_MODES, blend
from kagglekit.thresholds.calibration import TemperatureScaler
from kagglekit.thresholds.decisions import (
    EntropyCut,
    FbetaDecision,
    entropy,
    expected_fbeta_decision,
    fit_entropy_cut,
    reject_by_entropy,
)
from kagglekit.thresholds.fitted_blends import FIT_METHODS, FIT_MODES, METRICS, BlendFit, fit_blend
from kagglekit.thresholds.repeats import RepeatedFit, repeated_fit
from kagglekit.thresholds.structure import GROUP_RULES, LabelStructure
from kagglekit.thresholds.stack_files import BlendFile, read_stack_file
from kagglekit.thresholds.stacking import StackFileError, Stacker, fit_stacker, load_stacker, repeat_folds
from kagglekit.thresholds.files import DECISION_KINDS, Decision, DecisionFileError, fit_decision, read_decision, write_decision
from kagglekit.thresholds.sweeps import (
    ClassThresholds,
    ThresholdResult,
    apply_threshold,
    best_fbeta_threshold,
    per_class_thresholds,
    percentile_threshold,
)

__all__ = [
    "ThresholdResult", "ClassThresholds", "FbetaDecision", "EntropyCut", "apply_threshold", "best_fbeta_threshold",
    "percentile_threshold", "per_class_thresholds", "expected_fbeta_decision", "entropy", "reject_by_entropy",
    "fit_entropy_cut", "TemperatureScaler", "blend", "BLEND_MODES", "Decision", "DecisionFileError", "DECISION_KINDS",
    "fit_decision", "read_decision", "write_decision", "LabelStructure", "GROUP_RULES", "RepeatedFit", "repeated_fit",
    "BlendFit", "fit_blend", "FIT_METHODS", "FIT_MODES", "METRICS", "BlendFileError", "read_blend", "write_blend",
    "Stacker", "StackFileError", "fit_stacker", "load_stacker",
    "repeat_folds", "BlendFile", "read_stack_file",
]
