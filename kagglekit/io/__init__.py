"""Lazy image and volume sources.

``open_image`` and ``open_volume`` return a :class:`Source`: ``.shape`` (H, W, C), ``.dtype``,
``.read(y, x, h, w)`` (an (h, w, C) array, zero outside the image) and ``.thumbnail(max_side)``.
TIFFs are read window by window; a PNG larger than ``whole_bytes`` decoded (512 MB) is streamed by row
strips (png.py: two forward passes for a slide, never the whole slide held); other PNG/JPEG files are
decoded once on first use. ``match_channels(source, n)``
adapts a gray or RGBA image to a model's input channels; ``masked_mean_std(source, mask)`` a fragment's
own statistics in one streamed pass; ``read_mask(path, shape)`` a whole (H, W) bool mask.
``load_image(item, size, resize)`` reads one image whole as a model's input: a file, per-id channel files
stacked (HPA's red, green, blue, yellow), an array or a Source, resized, padded or centre-cropped to ``size``
(images.py; ``resize_image`` alone, ``RESIZE_MODES``); ``header_shape(path)`` a PNG/JPEG's (H, W, C, dtype)
from its header (decoded.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kagglekit.errors import ImageReadError
from kagglekit.io.channels import match_channels
from kagglekit.io.decoded import header_shape
from kagglekit.io.formats import DICOM_HINT, TIFF_SUFFIXES, file_format
from kagglekit.io.images import RESIZE_MODES, image_size, load_image, resize_image
from kagglekit.io.masks import read_mask
from kagglekit.io.source import ArraySource, Source
from kagglekit.io.stats import masked_mean_std, standardization
from kagglekit.io.volume import VolumeSource, open_volume

__all__ = ["RESIZE_MODES", "ArraySource", "Source", "VolumeSource", "file_format", "header_shape", "image_size", "load_image",
           "masked_mean_std", "match_channels", "open_image", "open_volume", "read_mask", "resize_image", "standardization"]


def open_image(path_or_array, level: int = 0, cache_bytes: int = 128 << 20, whole_bytes: int | None = None) -> Source:
    """Open an image lazily.

    ``path_or_array``: a numpy (H, W) / (H, W, C) array, an existing :class:`Source` (returned
    as is), or a path to a TIFF (tiled or striped, ``level`` = pyramid level, at most
    ``cache_bytes`` of decoded tiles held), to a PNG or to a JPEG/BMP/WebP (decoded once, RGB order).
    A file is opened by its content (:func:`~kagglekit.io.formats.file_format`), whatever its suffix
    says; a DICOM file is an ImageReadError saying so.

    A PNG whose decoded size (H x W x C bytes, from its header) is above ``whole_bytes`` (None:
    ``kagglekit.io.png.WHOLE_BYTES``, 512 MB, e.g. 13k x 13k RGB), or above OpenCV's pixel limit, is a :class:`~kagglekit.io.png.StreamedPngSource`, read through libvips in forward
    passes of row strips, whatever its size (OpenCV's pixel limit plays no part): ``thumbnail`` costs one
    pass (the time of a whole decode) and holds a strip of about 64 MB; ``read`` holds the rows its window
    spans, and a read above the previous one starts a new pass from the top (random reads cost a pass
    each); ``prefetch`` reads a batch of windows in one sweep (``cache_bytes`` of them kept). A slide's
    tile plan and tiles (``plan_tiles``, ``tile_reader``) cost two passes.

    Smaller PNGs and JPEGs hold their decoded array from the first read on, H x W x C bytes (a
    16384 x 16384 RGB PNG with ``whole_bytes`` raised: 768 MB; its thumbnail and tiles all come from that
    one decode, faster than two passes). An 8-bit RGB PNG is decoded straight into that array (peak: its
    size); other files peak at about 2.3 times it while decoding. bench/bench_png.py compares the PNG
    decoders this was chosen from, bench/bench_slides.py the two paths on slides.
    """
    if isinstance(path_or_array, Source):
        return path_or_array
    if isinstance(path_or_array, np.ndarray):
        return ArraySource(path_or_array)
    path = Path(path_or_array)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    kind = file_format(path)
    if kind == "dicom":
        raise ImageReadError(f"{path}: a DICOM file; {DICOM_HINT}")
    if kind == "tiff" or (kind is None and path.suffix.lower() in TIFF_SUFFIXES):
        from kagglekit.io.tiff import TiffSource

        return TiffSource(path, level=level, cache_bytes=cache_bytes)
    from kagglekit.io.decoded import DecodedImageSource
    from kagglekit.io import png as png_module
    from kagglekit.io.png import StreamedPngSource, opencv_pixel_limit, png_header

    png = png_header(path)
    whole_bytes = png_module.WHOLE_BYTES if whole_bytes is None else whole_bytes
    if png is not None and (png.decoded_bytes > whole_bytes or png.height * png.width > opencv_pixel_limit()):
        return StreamedPngSource(path, png, cache_bytes=cache_bytes)
    return DecodedImageSource(path)
