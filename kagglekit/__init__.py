"""kagglekit: tiling, stitching, TTA, thresholds, folds and offline delivery for Kaggle image competitions.

Importing the package is cheap: torch, timm, segmentation-models-pytorch and albumentations are
imported by the submodules that need them, when they are first used. Submodules:

    kagglekit.io          lazy image and volume sources
    kagglekit.tiling      tile grids, tissue masks, blending windows, the Stitcher
    kagglekit.infer       sliding-window inference over a source; predict, one row per image
    kagglekit.tta         the dihedral group D4, TTA wrappers and merge modes
    kagglekit.models      model factory, offline weights, checkpoints, 2.5D and MIL models
    kagglekit.augment     albumentations presets, mixers, volume and stain transforms
    kagglekit.cv          fold makers
    kagglekit.metrics     F-beta, balanced accuracy, dice
    kagglekit.thresholds  threshold search, decision rules and files, calibration, blends
    kagglekit.kaggle      environment, RLE, submission guard, time budget, offline delivery
    kagglekit.mil         bags of tile features for whole-slide MIL
    kagglekit.pipeline    the config-driven segment and classify pipelines (one run loop)
    kagglekit.demo        the mini-competitions behind ``kagglekit demo``
"""

from kagglekit.errors import KagglekitError

__version__ = "0.1.0"
__all__ = ["KagglekitError", "__version__"]
