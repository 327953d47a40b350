"""Named albumentations pipelines that transform an image and its mask together.

Every preset takes HWC images with any number of channels (1, 3, a volume's 35 slices), uint8 or
float32 in [0, 1] (albumentations' float convention), and an optional HW mask. Geometric transforms
move image and mask alike (mask: nearest neighbour); intensity transforms touch the image only;
colour-only transforms sit behind :class:`~kagglekit.augment.colour.RGBOnly`, which passes non-RGB
images through and warns once instead of failing.

    d4         the 8 flips/rotations of the square, uniformly
    light      d4, mild shift/scale/rotate, brightness/contrast, hue/saturation (RGB)
    heavy      d4, shift/scale/rotate, one of elastic / grid / optical / piecewise-affine distortion,
               blur, noise, brightness/contrast, coarse dropout (the ink-detection list)
    histology  d4, H&E stain jitter (RGB), brightness/contrast, blur
"""

from __future__ import annotations

import warnings

import albumentations as A
import cv2

from kagglekit._checks import one_of, positive_int
from kagglekit.augment import _albu
from kagglekit.augment.colour import RGBOnly, StainJitter
from kagglekit.augment.normalize import PerImageNormalize
from kagglekit.errors import InvalidArgumentError

def preset(
    name: str,
    size: int | tuple[int, int] | None = None,
    *,
    interpolation: int = cv2.INTER_LINEAR,
    geometric_only: bool = False,
    normalize: bool = False,
) -> A.Compose:
    """Build the ``name`` pipeline; call it as ``out = t(image=img, mask=mask)``.

    size: crop a random (h, w) window first (reflect-padding smaller images). interpolation: OpenCV
    flag for the image in geometric transforms (``cv2.INTER_NEAREST`` keeps values exact).
    geometric_only: leave out everything but the transforms that move pixels. normalize: end with
    :class:`PerImageNormalize` (float32 output).
    """
    one_of("preset", name, _BUILDERS)
    if interpolation not in (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC):
        raise InvalidArgumentError("interpolation must be cv2.INTER_NEAREST, cv2.INTER_LINEAR or cv2.INTER_CUBIC")
    geometric, intensity = _BUILDERS[name](interpolation)
    steps = _crop(size) + geometric + ([] if geometric_only else intensity)
    if normalize:
        steps.append(PerImageNormalize())
    return A.Compose(steps)


def _crop(size) -> list:
    if size is None:
        return []
    height, width = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    height, width = positive_int("size height", height), positive_int("size width", width)
    return [
        A.PadIfNeeded(min_height=height, min_width=width, border_mode=cv2.BORDER_REFLECT_101),
        A.RandomCrop(height=height, width=width),
    ]


def _d4(interpolation):
    """All 8 elements with probability 1/8 each: a uniform rotation by k * 90 degrees, then a coin-flip mirror."""
    return [A.RandomRotate90(p=1.0), A.HorizontalFlip(p=0.5)], []


def _light(interpolation):
    geometric = _d4(interpolation)[0] + [
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.0625, 0.0625), rotate=(-15, 15), interpolation=interpolation, p=0.5)
    ]
    intensity = [
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        RGBOnly(A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=15, val_shift_limit=10, p=1.0), p=0.3),
    ]
    return geometric, intensity


def _heavy(interpolation):
    geometric = _d4(interpolation)[0] + [
        A.Affine(scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-45, 45), interpolation=interpolation, p=0.75),
        A.OneOf(
            [
                A.ElasticTransform(alpha=50, sigma=5, interpolation=interpolation),
                A.GridDistortion(num_steps=5, distort_limit=0.3, interpolation=interpolation),
                A.OpticalDistortion(distort_limit=0.1, interpolation=interpolation),
                _piecewise_affine(interpolation),
            ],
            p=0.5,
        ),
    ]
    intensity = [
        A.OneOf([A.GaussianBlur(blur_limit=(3, 7)), A.MotionBlur(blur_limit=(3, 7))], p=0.3),
        _albu.gauss_noise((0.02, 0.08), p=0.3),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.75),
        _albu.coarse_dropout(max_holes=4, max_size_fraction=0.15, p=0.5),
    ]
    return geometric, intensity


def _piecewise_affine(interpolation):
    with warnings.catch_warnings():  # albumentations warns that it is slow; it is, and rare here (p=1/8)
        warnings.filterwarnings("ignore", message=".*very slow.*")
        return A.PiecewiseAffine(scale=(0.02, 0.04), interpolation=interpolation)


def _histology(interpolation):
    intensity = [
        RGBOnly(StainJitter(p=1.0), p=0.8),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        A.GaussianBlur(blur_limit=(3, 5), p=0.2),
    ]
    return _d4(interpolation)[0], intensity


_BUILDERS = {"d4": _d4, "light": _light, "heavy": _heavy, "histology": _histology}
PRESETS = tuple(_BUILDERS)
