"""kagglekit: tiling, stitching, TTA, thresholds, folds and offline delivery for Kaggle image competitions.

Importing the package is cheap: torch, timm, segmentation-models-pytorch and albumentations are
imported by the submodules that need them, when they are first used. Submodules:

    kagglekit.io          lazy image and volume sources; image loading (channel files, resize, pad, crop)
    kagglekit.tiling      tile grids, tissue masks, slide tile plans, blending windows, the Stitcher
    kagglekit.infer       sliding-window inference over a source; predict, one row per image; resolve_device
    kagglekit.tta         the dihedral group D4, crops, scales, random views, TTA wrappers and merge modes
    kagglekit.models      model factory (MIL heads included), offline weights, checkpoints, as_module, 2.5D models
    kagglekit.augment     albumentations presets, mixers, volume and stain transforms
    kagglekit.data        training datasets (TileDataset)
    kagglekit.losses      losses: smp's, timm's, torchvision's wrapped; soft F-beta, LSEP, weighted sums, create_loss
    kagglekit.cv          fold makers
    kagglekit.metrics     F-beta, balanced accuracy, dice
    kagglekit.thresholds  threshold search, decision rules and files, calibration, blends
    kagglekit.mil         bags of tile features for whole-slide MIL, heads trained as seed ensembles
    kagglekit.jobs        per-slide work over a folder, in this process or on Ray, resumable
    kagglekit.kaggle      the kernel's runtime: environment, RLE, submission guard, time budget
    kagglekit.delivery    wheels, kernel metadata, bundle, push, the headless notebook runner
    kagglekit.pipeline    the config-driven segment and classify pipelines (one run loop)
    kagglekit.demo        the mini-competitions behind ``kagglekit demo``
    kagglekit.cli         the ``kagglekit`` command
"""

from kagglekit.errors import KagglekitError

__version__ = "0.1.0"
__all__ = ["KagglekitError", "__version__"]
