"""Training: a thin loop on the well-kept parts, and folds with out-of-fold predictions.

    fit(model, train, val, loss=, steps= | epochs=, ...) -> FitResult(model, history)   loop.py
      optimizer and scheduler: timm's factories (optim.py); AMP: torch.amp; EMA: timm ModelEmaV3;
      gradient accumulation, clipping, freezing, layer-wise decay, MixUp/CutMix, best / EMA / top-k
      averaged weights; resumable from its last saved state (state.py); data-parallel under torchrun
      (distributed.py)

Importing this package is cheap: each name is loaded from its submodule on first use.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {"fit": "loop", "FitResult": "loop", "evaluate": "loop"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
