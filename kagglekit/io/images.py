"""Image loading for models: a file, per-id channel files, an array or a Source, read whole as an
(h, w, C) array and brought to a model's input size (resize, pad or centre crop).

    image = load_image(("a_red.png", "a_green.png", "a_blue.png", "a_yellow.png"), size=512)  # (512, 512, 4) uint8
    image = load_image("x.jpg", size=224, resize="pad")   # JPEG decoded at a reduced scale when 224 allows

:func:`kagglekit.infer.predict` reads every input with :func:`load_image`; training datasets read the same
way, so that training and the kernel see the same pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["RESIZE_MODES", "image_size", "load_image", "resize_image"]

RESIZE_MODES = ("resize", "pad", "center_crop", None)


def image_size(size) -> tuple[int, int] | None:
    """``size`` (None, an int, or an (h, w) pair) as None or an (h, w) pair of positive ints."""
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise InvalidArgumentError(f"size must be an int or an (h, w) pair, got {size!r}")
        return positive_int("size", size[0]), positive_int("size", size[1])
    side = positive_int("size", size)
    return side, side


def _scale(shape, size, resize) -> float:
    """The factor by which ``resize`` shrinks an image of ``shape`` to ``size`` (its larger axis factor for
    "resize", the fitting one for "pad", the covering one for "center_crop")."""
    (h, w), (H, W) = size, shape[:2]
    sy, sx = h / H, w / W
    return {"resize": max(sy, sx), "pad": min(sy, sx), "center_crop": max(sy, sx)}[resize]


def _reduction(path: Path, size, resize) -> int:
    """The largest of 8, 4, 2 that libjpeg may decode the JPEG ``path`` at while staying at least the target
    size; 1 if none."""
    from kagglekit.io.decoded import header_shape

    if size is None or resize is None:
        return 1
    header = header_shape(path)
    if header is None:
        return 1
    scale = _scale(header, size, resize)
    return next((r for r in (8, 4, 2) if r * scale <= 1), 1)


def resize_image(image: np.ndarray, size, resize="resize", interpolation: int | None = None) -> np.ndarray:
    """``image`` (H, W, C) of any dtype brought to ``size`` (h, w) by ``resize`` (one of :data:`RESIZE_MODES`):
    INTER_AREA when shrinking, INTER_LINEAR when enlarging, or ``interpolation`` (an OpenCV flag such as
    ``cv2.INTER_NEAREST`` for a mask: the same geometry as its image's); "pad" keeps the aspect ratio and centres
    the image on zeros, "center_crop" covers ``size`` and crops the middle; None (or no ``size``) returns ``image``
    itself. Returns (h, w, C) of ``image``'s dtype; holds the resized copy."""
    import cv2

    if size is None or resize is None or image.shape[:2] == size:
        return image
    h, w = size
    C = image.shape[2]
    scale = _scale(image.shape, size, resize)
    if resize == "resize":
        new = (h, w)
    else:
        new = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    if resize == "center_crop":
        new = (max(new[0], h), max(new[1], w))
    if interpolation is None:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image, (new[1], new[0]), interpolation=interpolation).reshape(*new, C)
    if resize == "resize":
        return out
    if resize == "center_crop":
        y, x = (new[0] - h) // 2, (new[1] - w) // 2
        return out[y : y + h, x : x + w]
    padded = np.zeros((h, w, C), image.dtype)
    y, x = (h - new[0]) // 2, (w - new[1]) // 2
    padded[y : y + new[0], x : x + new[1]] = out
    return padded


def load_image(item, size=None, resize="resize", reduced_decode: bool = True) -> np.ndarray:
    """One image as an (h, w, C) uint8/uint16/float32 array at ``size`` (as :func:`kagglekit.infer.predict` reads
    each input; ``size`` and ``resize`` as :func:`resize_image`; None: the image's own size).

    ``item``: a path (PNG, JPEG, TIFF, ...), a tuple of paths (single-channel files stacked as channels,
    e.g. HPA's red, green, blue, yellow), an (H, W) or (H, W, C) array, or a :class:`~kagglekit.io.Source`
    (read whole). ``reduced_decode``: a JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale when that still
    covers ``size``. Holds the decoded image and the resized one. Raises ImageReadError (unreadable file),
    ShapeError (channel files that do not match, another dtype) or InvalidArgumentError.
    """
    from kagglekit.io import Source, open_image
    from kagglekit.io.decoded import decode_image
    from kagglekit.io.formats import file_format

    size = image_size(size)
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        kind = file_format(path)  # by content, whatever the suffix says
        if kind in ("jpeg", "png", "bmp", "webp"):
            reduce = _reduction(path, size, resize) if reduced_decode and kind == "jpeg" else 1
            image = decode_image(path, reduce)
        else:
            source = open_image(path)
            image = source.read(0, 0, *source.shape[:2])
    elif isinstance(item, tuple):
        planes = [load_image(p, None, None, False) for p in item]
        for p, plane in zip(item, planes):
            if plane.shape[2] != 1:
                raise ShapeError(f"{p}: a per-channel file must have one channel, it has {plane.shape[2]}")
            if plane.shape[:2] != planes[0].shape[:2] or plane.dtype != planes[0].dtype:
                raise ShapeError(f"{p} is {plane.shape[:2]} {plane.dtype} but {item[0]} is {planes[0].shape[:2]} "
                                 f"{planes[0].dtype}; the channel files of one id must match")
        image = np.concatenate(planes, axis=2)
    elif isinstance(item, Source):
        image = item.read(0, 0, *item.shape[:2])
    elif isinstance(item, np.ndarray):
        image = item[:, :, None] if item.ndim == 2 else item
        if image.ndim != 3 or 0 in image.shape:
            raise ShapeError(f"an image array must be a non-empty (H, W) or (H, W, C), got shape {item.shape}")
    else:
        raise InvalidArgumentError(f"an input must be a path, a tuple of channel paths, an array or a Source, "
                                   f"got {type(item).__name__}")
    if image.dtype.kind not in "uif" or image.dtype.itemsize > 4 or image.dtype == np.float16:
        raise ShapeError(f"images must be uint8, uint16 or float32, got {image.dtype}")
    return np.ascontiguousarray(resize_image(image, size, resize))
