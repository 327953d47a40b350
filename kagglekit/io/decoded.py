"""PNG, JPEG, BMP, WebP ... through OpenCV: formats that cannot be read window by window.

The file is decoded once, on the first read, and the decoded array (uint8 or uint16, never float) is
kept; RGB(A) order, not OpenCV's BGR(A). What a PNG costs in memory: an 8-bit RGB PNG is decoded straight
into its array, H x W x 3 bytes and nothing more (1.5 GB for 32768 x 16384); other PNGs and formats peak
at about 2.3 times their decoded size while decoding (the file's bytes, OpenCV's BGR array, the RGB copy).
OpenCV was chosen from bench_png.py's table for images small enough to decode whole: as fast as
libpng/libspng through imagecodecs, with the smallest peak. PNGs above ``open_image``'s ``whole_bytes``
(512 MB decoded) or OpenCV's pixel limit are not decoded here but streamed by libvips (kagglekit.io.png).
No PNG decoder reads a reduced resolution faster than the full one (every row must be inflated), so a
small slide's thumbnail is computed from the one decode its tiles are read from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kagglekit.errors import ImageReadError, InvalidArgumentError
from kagglekit.io.source import Source


_REDUCED = {2: ("IMREAD_REDUCED_COLOR_2", "IMREAD_REDUCED_GRAYSCALE_2"), 4: ("IMREAD_REDUCED_COLOR_4", "IMREAD_REDUCED_GRAYSCALE_4"),
            8: ("IMREAD_REDUCED_COLOR_8", "IMREAD_REDUCED_GRAYSCALE_8")}


def decode_image(path, reduce: int = 1) -> np.ndarray:
    """Decode an image file into an (H, W, C) uint8/uint16 array in RGB(A) order.

    ``reduce`` (1, 2, 4 or 8): for a JPEG, libjpeg decodes at 1/reduce of the size (ceil(H / reduce) x
    ceil(W / reduce), its DCT scaling: several times faster, and about an area average of the full
    decode; see bench_classify.py for the difference); other formats are decoded at full size. A PNG
    above OpenCV's pixel limit (2^30 by default) is decoded by libvips in one pass (kagglekit.io.png).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    from kagglekit.io.png import StreamedPngSource, opencv_pixel_limit, png_header

    png = png_header(path)
    if png is not None and png.height * png.width > opencv_pixel_limit():  # beyond OpenCV: one libvips pass
        return StreamedPngSource(path, png).read(0, 0, png.height, png.width)
    if reduce == 1 and png is not None:
        direct = _read_rgb_png(cv2, path, png)
        if direct is not None:
            return direct
    data = path.read_bytes()
    flags = cv2.IMREAD_UNCHANGED
    if reduce != 1 and data.startswith(b"\xff\xd8"):
        if reduce not in _REDUCED:
            raise InvalidArgumentError(f"reduce must be 1, 2, 4 or 8, got {reduce!r}")
        with open(path, "rb") as fh:
            header = _jpeg_header(fh)
        gray = header is not None and header[2] == 1
        flags = getattr(cv2, _REDUCED[reduce][gray])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if image is None or image.size == 0 or (data.startswith(b"\xff\xd8") and not _jpeg_is_complete(data)):
        raise ImageReadError(f"{path}: OpenCV cannot decode it (truncated, corrupt or not an image); re-copy or re-export the file")
    if image.ndim == 2:
        return image[:, :, None]
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _read_rgb_png(cv2, path: Path, png):
    """An 8-bit RGB PNG decoded by OpenCV straight into an array allocated from its header, in RGB order:
    the decoded size and nothing more (reading the file's bytes and converting BGR to RGB, as for other
    files, peaks at 2.3 times it; bench_png.py measures both). None when the file is not such a PNG or
    this OpenCV cannot decode into a given array in RGB order (``imread(path, dst, IMREAD_COLOR_RGB)``,
    OpenCV >= 4.11), so that the caller decodes it the general way. ``png``: its
    :class:`~kagglekit.io.png.PngHeader`."""
    flag = getattr(cv2, "IMREAD_COLOR_RGB", None)
    if flag is None or png.channels != 3 or png.dtype != np.uint8:
        return None
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - len(_PNG_END)))
        complete = fh.read(len(_PNG_END)) == _PNG_END
    if not complete:  # OpenCV fills the given array without a word for a file cut short
        raise ImageReadError(f"{path}: the PNG is truncated (no IEND chunk at its end); re-copy or re-export the file")
    out = np.empty((png.height, png.width, 3), np.uint8)
    try:
        decoded = cv2.imread(str(path), out, flag)
    except (cv2.error, TypeError):  # an OpenCV without the dst argument
        return None
    if decoded is None or decoded.shape != out.shape:
        raise ImageReadError(f"{path}: OpenCV cannot decode it (corrupt PNG data); re-copy or re-export the file")
    return decoded


def _jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG's last scan ends in the end-of-image marker. Byte stuffing keeps FF D9 out of a
    scan's data, so a file cut inside or after a scan has none. OpenCV 4.8 decodes such a file (grey
    below the cut) where 4.11 refuses it. Searched from the ends (the last EOI, then no scan after it; a
    first scan before it), not through the scan data: 0.01 ms instead of 1.6 for a 1.7 MB photo."""
    end = data.rfind(b"\xff\xd9")
    return end >= 0 and data.find(b"\xff\xda", end) < 0 and 0 <= data.find(b"\xff\xda") < end


# start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic coded)
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_header(fh):
    """(H, W, C, uint8) from a JPEG's start-of-frame segment, or None (also for anything unusual:
    12-bit samples, CMYK, a height given only after the scan). OpenCV's IMREAD_UNCHANGED ignores the
    EXIF orientation, so the frame size is the decoded size."""
    if fh.read(2) != b"\xff\xd8":
        return None
    while fh.read(1) == b"\xff":
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes before a marker
            marker = fh.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # end of file or image, or the scan before a frame
            return None
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD7:  # markers without a length
            continue
        size = fh.read(2)
        if marker[0] in _JPEG_SOF:
            frame = fh.read(6)
            if len(frame) < 6 or frame[0] != 8 or frame[5] not in (1, 3):
                return None
            height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            return (height, width, frame[5], np.dtype(np.uint8)) if height and width else None
        if len(size) < 2:
            return None
        fh.seek(int.from_bytes(size, "big") - 2, 1)
    return None


def header_shape(path) -> tuple | None:
    """(H, W, C, dtype) from a PNG or JPEG header without decoding (a few bytes read), or None for other
    formats, a broken header, or a PNG with a tRNS chunk (OpenCV then adds an alpha channel that the
    colour type does not announce)."""
    from kagglekit.io.png import png_header

    try:
        png = png_header(path)
    except ImageReadError:
        return None
    if png is not None:
        return None if png.trns else (png.height, png.width, png.channels, png.dtype)
    with open(path, "rb") as fh:
        return _jpeg_header(fh)


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array`` made read-only: reads hand out views of it, and an in-place edit of one window must
    fail rather than change every later read."""
    array.flags.writeable = False
    return array


class DecodedImageSource(Source):
    """A source over a file OpenCV decodes whole. Holds the decoded image after the first read.

    The shape of a PNG or JPEG comes from its header, so opening is cheap and a corrupt body is
    reported on the first read; other formats are decoded when opened.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.name = str(path)
        self._array = None
        header = header_shape(self.path)
        if header is None:
            self._array = _read_only(decode_image(self.path))
            header = (*self._array.shape, self._array.dtype)
        *shape, self.dtype = header
        self.shape = tuple(int(s) for s in shape)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            array = decode_image(self.path)
            if array.shape != self.shape or array.dtype != self.dtype:
                raise ImageReadError(f"{self.path}: decoded shape {array.shape} {array.dtype} differs from its header {self.shape} {self.dtype}")
            self._array = _read_only(array)
        return self._array

    def _read_inside(self, y0, x0, y1, x1):
        return self.array[y0:y1, x0:x1]
