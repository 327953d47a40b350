"""Fold makers: scikit-learn splitters, polars fold columns and reports, adversarial validation.

    StratifiedGroupKFold       stratified on one or several keys, groups kept whole
    MultilabelStratifiedKFold  iterative (rarest label first) multi-label stratification, groups optional
    PatientBalancedKFold       patient folds balanced on target and images per patient
    make_folds, fold_report    polars DataFrame in, polars DataFrame out
    adversarial_validation     out-of-fold AUC of "is this row from test", per-row probabilities
    fold_pairs                 (train, validation) rows from a fold count, a fold column or the pairs
"""

from kagglekit.cv.adversarial import AdversarialResult, adversarial_validation
from kagglekit.cv.folds import fold_report, label_matrix, make_folds
from kagglekit.cv.pairs import fold_pairs
from kagglekit.cv.splitters import MultilabelStratifiedKFold, PatientBalancedKFold, StratifiedGroupKFold

__all__ = [
    "AdversarialResult",
    "MultilabelStratifiedKFold",
    "PatientBalancedKFold",
    "StratifiedGroupKFold",
    "adversarial_validation",
    "fold_pairs",
    "fold_report",
    "label_matrix",
    "make_folds",
]
