"""Losses on one roof: smp's, timm's, torchvision's and torch's where they exist, kagglekit's own where none does.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` on raw logits, with ``reduction``
"mean" | "sum" | "none" over its units (elements, images, samples or classes; each says which).

    FocalLoss(alpha, gamma, ignore_index, reduction)                  focal.py       sigmoid focal (torchvision)
    SoftBCEWithLogitsLoss(label_smoothing, ignore_index, pos_weight)  bce.py         BCE on logits (smp)
    AsymmetricLoss(gamma_neg, gamma_pos, clip, eps)                   asymmetric.py  multi-label ASL (timm)
    DiceLoss(mode, smooth, log_loss, eps, ignore_index)               dice.py        soft Dice per class (smp)
    LovaszLoss(mode, per_image, ignore_index)                         lovasz.py      Lovász hinge / softmax (smp)
    CrossEntropyLoss(weight, ignore_index, label_smoothing)           ce.py          torch's, inputs checked
    SoftFBetaLoss(beta, average, eps, ignore_index)                   fbeta.py       batch-level soft F-beta (own)
    LSEPLoss()                                                        lsep.py        pairwise ranking (own)
    WeightedSum({name: (loss, weight)})                               combine.py     parts kept in .last_parts
    create_loss(name | {name: weight}, **kwargs), LOSSES              factory.py     by name, sums from a config

Importing this package is cheap: each name is loaded from its submodule (and torch with it) on first use.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {
    "FocalLoss": "focal", "SoftBCEWithLogitsLoss": "bce", "AsymmetricLoss": "asymmetric", "DiceLoss": "dice",
    "LovaszLoss": "lovasz", "CrossEntropyLoss": "ce", "SoftFBetaLoss": "fbeta", "LSEPLoss": "lsep",
    "WeightedSum": "combine", "create_loss": "factory", "LOSSES": "factory",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
