"""Views with no inverse, for image-level outputs (class logits): crops and rescalings of NCHW tensors.

    five_crop(224)        the four corners and the centre, (h, w) crops of the batch
    ten_crop(224)         the same five, then the five of the image mirrored along W (ttach's ten crops)
    scales([0.75, 1.25])  the batch resized by each factor

A dense output cannot be mapped back through them (``invertible`` is False), so :class:`kagglekit.tta.TTA`
with ``task="segmentation"``, :class:`kagglekit.tta.ViewCycle` and ``sliding_window`` refuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kagglekit._checks import number_in, one_of, positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError

CORNERS = ("tl", "tr", "bl", "br", "center")


class LabelView:
    """A view whose outputs are merged as they are: image-level outputs do not move, dense ones cannot go back."""

    invertible: ClassVar[bool] = False

    @staticmethod
    def invert_label(y):
        return y


def crop_size(size) -> tuple[int, int]:
    """``size`` (an int or (h, w)) as a checked (h, w) pair of positive ints."""
    if not isinstance(size, (tuple, list)):
        size = (size, size)
    if len(size) != 2:
        raise InvalidArgumentError(f"a crop size is an int or (height, width), got {size!r}")
    return positive_int("crop height", size[0]), positive_int("crop width", size[1])


def size_label(size: tuple[int, int]) -> str:
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


@dataclass(frozen=True)
class Crop(LabelView):
    """The (h, w) crop at a corner (``tl``, ``tr``, ``bl``, ``br``) or the centre of (N, C, H, W) images,
    mirrored along W first if ``flip``. The centre crop starts at ``(H // 2 - h // 2, W // 2 - w // 2)``
    (ttach's ``FiveCrops``). ``apply`` returns a view of ``x`` (flipped: a copy of the crop only, the
    mirror of the original's window)."""

    size: tuple[int, int]
    at: str
    flip: bool = False

    @property
    def name(self) -> str:
        return ("hflip+" if self.flip else "") + f"crop_{self.at}@{size_label(self.size)}"

    def apply(self, x):
        (h, w), (H, W) = self.size, x.shape[-2:]
        if h > H or w > W:
            raise ShapeError(f"TTA view {self.name} needs images of at least {h}x{w}, got {H}x{W}; crop smaller "
                             "or resize the images to at least the crop (predict's size=)")
        top, left = (H // 2 - h // 2, W // 2 - w // 2) if self.at == "center" else (
            0 if self.at[0] == "t" else H - h, 0 if self.at[1] == "l" else W - w)
        if self.flip:
            left = W - w - left  # the mirrored image's window, on the original
        out = x[..., top : top + h, left : left + w]
        return out.flip(-1) if self.flip else out


@dataclass(frozen=True)
class Scale(LabelView):
    """(N, C, H, W) images resized by ``factor`` to (floor(H * factor), floor(W * factor)) with
    :func:`torch.nn.functional.interpolate` (``mode``: ``"bilinear"``, no corner alignment, antialiased
    when shrinking; or ``"nearest"``)."""

    factor: float
    mode: str = "bilinear"

    @property
    def name(self) -> str:
        return f"scale@{self.factor:g}"

    def apply(self, x):
        import torch.nn.functional as F

        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.factor, mode="nearest")
        return F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False,
                             antialias=self.factor < 1)


def five_crop(size) -> tuple[Crop, ...]:
    """The five (h, w) crops: top-left, top-right, bottom-left, bottom-right, centre; ``size`` an int or (h, w)."""
    size = crop_size(size)
    return tuple(Crop(size, at) for at in CORNERS)


def ten_crop(size) -> tuple[Crop, ...]:
    """:func:`five_crop`, then the five crops of the image mirrored along W (ttach's ``ten_crop_transform``)."""
    crops = five_crop(size)
    return crops + tuple(Crop(c.size, c.at, flip=True) for c in crops)


def scales(factors, mode: str = "bilinear") -> tuple[Scale, ...]:
    """One :class:`Scale` view per factor (a number or a list of numbers, each in (0, 8])."""
    factors = factors if isinstance(factors, (tuple, list)) else [factors]
    if not factors:
        raise InvalidArgumentError("scales needs at least one factor, e.g. [0.75, 1.25]")
    mode = one_of("scale mode", mode, ("bilinear", "nearest"))
    return tuple(Scale(number_in("scale factor", f, 0, 8, open_low=True), mode) for f in factors)
