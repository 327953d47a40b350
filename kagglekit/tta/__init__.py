"""Test-time augmentation: the dihedral group D4 on NCHW tensors, merge modes, TTA and ensemble modules.

    views("d4")                      the eight views; subsets identity, hflip, flips, d2, rot90, d4
    TTA(model, views, merge, task)   a module returning the merged, inverted outputs of all views
    ViewCycle(views)                 per-window view cycling for kagglekit.infer.sliding_window
    Ensemble(models, weights, merge) merge several models or checkpoints
    Merger / merge                   mean, max, logit_mean, gmean, tsharpen
"""

from kagglekit.tta.dihedral import D4, SUBSETS, View, views
from kagglekit.tta.ensemble import Ensemble
from kagglekit.tta.merge import MODES, Merger, merge
from kagglekit.tta.wrappers import TTA, ViewCycle

__all__ = ["D4", "SUBSETS", "View", "views", "TTA", "ViewCycle", "Ensemble", "Merger", "merge", "MODES"]
