"""A stain-normalisation view for image-level outputs: each RGB uint8 image through a Macenko or Reinhard
normaliser fitted on one reference (:mod:`kagglekit.augment.stain`), as UBC-OCEAN's 5th place used it.

    stain_view("macenko", "reference.png")     or a fitted MacenkoNormalizer / ReinhardNormalizer

Like the random views it transforms the (H, W, 3) uint8 images before batching; an image with too little
tissue passes unchanged (the normaliser's ``last_skipped``). It has no inverse: image-level outputs only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kagglekit.augment.stain import fitted_normalizer
from kagglekit.tta.crops import LabelView


@dataclass(frozen=True, eq=False)
class StainView(LabelView):
    """``normalizer.transform`` of a fitted :class:`~kagglekit.augment.MacenkoNormalizer` or
    :class:`~kagglekit.augment.ReinhardNormalizer` on each (H, W, 3) uint8 image."""

    normalizer: object
    method: str

    @property
    def name(self) -> str:
        return f"stain_{self.method}"

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return self.normalizer.transform(image)


def stain_view(method: str, reference) -> tuple[StainView]:
    """One view: ``method`` (``"macenko"`` or ``"reinhard"``) fitted on ``reference``, an RGB uint8 (H, W, 3)
    array or an image path (:func:`kagglekit.io.load_image`)."""
    return (StainView(fitted_normalizer(method, reference), method),)
