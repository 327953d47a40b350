"""Training: a thin loop on the well-kept parts, and folds with out-of-fold predictions.

    fit(model, train, val, loss=, steps= | epochs=, ...) -> FitResult(model, history)   loop.py
      optimizer and scheduler: timm's factories (optim.py); AMP: torch.amp; EMA: timm ModelEmaV3;
      gradient accumulation, clipping, freezing, layer-wise decay, MixUp/CutMix, best / EMA / top-k
      averaged weights; resumable from its last saved state (state.py); data-parallel under torchrun
      (distributed.py)
    train_folds(model_fn, train, folds, out_dir, loss=, ...) -> FoldsResult(oof, cv)      folds.py
      one fit per fold as a job (resumable, kept when the settings are the same, on Ray with engine="ray"),
      self-describing checkpoints, the OOF table and the CV report; with kernel=SegmentKernel(...) the
      OOF maps are the kernel's own segment run on each fold's held-out images        held_out.py
    pseudo_labels(predictions, hard=(low, high), soft=, other=, weight=) -> label table      pseudo.py
      train_folds(..., pseudo=, pseudo_folds=): fold k trains on its own model's pseudo-labels only;
      fit weighs each item's loss by its source (labels 1.0, pseudo 0.3)                    weighting.py

Importing this package is cheap: each name is loaded from its submodule on first use.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {"fit": "loop", "FitResult": "loop", "evaluate": "loop", "train_folds": "folds", "FoldsResult": "folds",
            "fold_assignment": "folds", "SegmentKernel": "held_out", "pseudo_labels": "pseudo"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
