"""Test-time augmentation: the dihedral group D4 on NCHW tensors, views without inverses (crops, scales,
random augmentations) for image-level outputs, merge modes, TTA and ensemble modules.

    views("d4")                      the eight views; subsets identity, hflip, flips, d2, rot90, d4
    views([..., {"five_crop": 224}]) D4 names, view objects and tables of other views (spec.py)
    five_crop, ten_crop, scales      crops and rescalings of NCHW tensors (crops.py)
    random_views, random_crops       n seeded draws of an albumentations transform on HWC images (augmented.py)
    stain_view                       Macenko / Reinhard stain normalisation to a reference (stain.py)
    TTA(model, views, merge, task)   a module returning the merged, inverted outputs of all views
    ViewCycle(views)                 per-window view cycling for kagglekit.infer.sliding_window
    Ensemble(models, weights, merge) merge several models or checkpoints
    Merger / merge                   mean, max, logit_mean, gmean, tsharpen
"""

from kagglekit.tta.augmented import RandomView, random_crops, random_views
from kagglekit.tta.crops import Crop, Scale, five_crop, scales, ten_crop
from kagglekit.tta.dihedral import D4, SUBSETS, View
from kagglekit.tta.ensemble import Ensemble
from kagglekit.tta.merge import MODES, Merger, merge
from kagglekit.tta.spec import TABLES, checked_views, views
from kagglekit.tta.stain import StainView, stain_view
from kagglekit.tta.wrappers import TTA, ViewCycle

__all__ = ["D4", "SUBSETS", "TABLES", "View", "Crop", "Scale", "RandomView", "StainView", "views", "checked_views",
           "five_crop", "ten_crop", "scales", "random_views", "random_crops", "stain_view", "TTA", "ViewCycle",
           "Ensemble", "Merger", "merge", "MODES"]
