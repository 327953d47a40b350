"""The dihedral group D4 acting on the last two axes (H, W) of NCHW tensors, and its named subsets.

Every element is written as ``R^k F^f``: first an optional mirror along W (``F``, a horizontal flip),
then ``k`` counter-clockwise quarter turns (``R``, :func:`torch.rot90` on dims (-2, -1)). With
``F R F = R^-1`` the product and the inverse have closed forms, so composing views never needs a
lookup table. Views with odd ``k`` swap H and W.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

_NAMES = {
    (0, False): "identity",
    (1, False): "rot90",
    (2, False): "rot180",
    (3, False): "rot270",
    (0, True): "hflip",
    (1, True): "transpose",
    (2, True): "vflip",
    (3, True): "antitranspose",
}


@dataclass(frozen=True)
class View:
    """One element ``R^rotations F^flip`` of D4; ``apply`` and ``invert`` return new tensors (no in-place)."""

    rotations: int
    flip: bool
    invertible: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "rotations", self.rotations % 4)

    @property
    def name(self) -> str:
        return _NAMES[(self.rotations, self.flip)]

    @property
    def swaps_hw(self) -> bool:
        """True when the view turns an (H, W) tile into a (W, H) one."""
        return self.rotations % 2 == 1

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Transform images ``x`` (..., H, W); returns (..., H, W) or (..., W, H) if ``swaps_hw``."""
        if self.flip:
            x = x.flip(-1)
        return torch.rot90(x, self.rotations, dims=(-2, -1)) if self.rotations else x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        """Map a dense output (..., h, w) of a transformed input back to the original orientation."""
        if self.rotations:
            y = torch.rot90(y, -self.rotations, dims=(-2, -1))
        return y.flip(-1) if self.flip else y

    @staticmethod
    def invert_label(y: torch.Tensor) -> torch.Tensor:
        """Image-level outputs (labels, class logits) do not move: the inverse is the identity."""
        return y

    def inverse(self) -> View:
        """The group inverse: ``(R^k F^f)^-1 = F^f R^-k = R^(-k if f == 0 else k) F^f``."""
        return View(self.rotations if self.flip else -self.rotations, self.flip)

    def __matmul__(self, other: View) -> View:
        """Composition ``self @ other``: apply ``other`` first, then ``self``."""
        sign = -1 if self.flip else 1
        return View(self.rotations + sign * other.rotations, self.flip != other.flip)

    def __repr__(self) -> str:
        return f"View({self.name})"


BY_NAME = {name: View(k, f) for (k, f), name in _NAMES.items()}

SUBSETS = {
    "identity": ("identity",),
    "hflip": ("identity", "hflip"),
    "flips": ("identity", "hflip", "vflip"),
    "d2": ("identity", "hflip", "vflip", "rot180"),
    "rot90": ("identity", "rot90", "rot180", "rot270"),
    "d4": ("identity", "rot90", "rot180", "rot270", "hflip", "vflip", "transpose", "antitranspose"),
}
D4 = tuple(BY_NAME[n] for n in SUBSETS["d4"])
