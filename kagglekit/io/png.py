"""PNG slides of any size, streamed row strip by row strip through libvips (pyvips), never decoded whole.

A non-interlaced PNG has no index and no reduced resolution: every row above the last one a reader needs
must be inflated, in order. So a big PNG is read in forward passes: libvips' sequential PNG loader
inflates rows top to bottom through a small buffer, and :class:`StreamedPngSource` keeps only the rows
that the windows being read span (a strip of the slide's width), dropping them as the reads move down.

What each call costs on a streamed PNG (H x W x C bytes decoded, ``W x C`` bytes a row):

- ``thumbnail(max_side)``: one full pass (the time of a whole decode; bench_png.py: 5.2 s for
  32768 x 16384 RGB), holding one strip of about 64 MB (``Source.thumbnail``'s strips) and the
  thumbnail's sums; never the slide.
- ``read(y, x, h, w)``: the rows ``y .. y+h`` (full width) and the window. Reads that move down the slide
  (row-major tiles, sliding windows, strips) continue the same pass; a read above the rows kept starts a
  new pass from the top (it inflates every row down to ``y + h`` again): random reads on a streamed PNG
  cost a pass each. ``passes`` counts the passes made. For random tiles (training), copy the slide once
  into a memory-mapped file: ``TileDataset(..., cache_dir=...)`` does it in one pass.
- ``prefetch(windows)``: reads all of ``windows`` in one forward sweep (in order of their rows) and keeps
  them (at most ``cache_bytes``) until each is read once: how :func:`kagglekit.tiling.tile_reader` reads a
  batch of a tile plan, so that a slide's tiles, planned in row-major order, cost one pass that stops at
  the last tile's rows, whatever the reader threads' order within a batch.

So the slide path (``plan_tiles`` then ``tile_reader``: :func:`kagglekit.mil.extract_bag`,
:class:`kagglekit.jobs.TileExportJob`) makes two passes: the thumbnail (tissue mask, tile plan), then the
rows that hold the selected tiles, holding about a strip of the slide's width plus a few batches of tiles.

Why libvips: bench_png.py measured every PNG decoder at hand; only libvips reads a PNG by row strips from
Python (OpenCV, Pillow, imagecodecs and pyspng decode whole), and its sequential full decode is also the
fastest (5.2 s against OpenCV's 7.8 s). OpenCV's pixel limit (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 by
default) plays no part here. Smaller PNGs (decoded size at most ``whole_bytes``) keep the OpenCV
decode-whole source (:class:`kagglekit.io.decoded.DecodedImageSource`): faster for random reads.

Channels follow what OpenCV 5's ``IMREAD_UNCHANGED`` gives in RGB order: gray 1 (also with a tRNS
chunk), gray + alpha 4 (RGBA), RGB 3, palette 3, RGB or palette with tRNS 4, RGBA 4; 16-bit files give
uint16. Interlaced (Adam7) PNGs read correctly, but libvips must decode them whole into memory first (an
interlaced image has no row order): re-export such a slide non-interlaced to stream it.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kagglekit.errors import ImageReadError
from kagglekit.io.source import Source, remembered

__all__ = ["PNG_SIGNATURE", "WHOLE_BYTES", "PngHeader", "StreamedPngSource", "opencv_pixel_limit", "png_header"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WHOLE_BYTES = 512 << 20  # a PNG decoded into at most this many bytes (13k x 13k RGB) is decoded whole by OpenCV
_CHUNK_BYTES = 8 << 20  # rows fetched from libvips at a time
_INSTALL = "pip install pyvips pyvips-binary cffi (kagglekit's wheel set has them: `kagglekit wheels build`)"


class PngHeader(NamedTuple):
    """A PNG's size and kind, from its first chunks."""

    height: int
    width: int
    depth: int
    color: int
    interlaced: bool
    trns: bool

    @property
    def channels(self) -> int:
        """The channels the decoded image has (OpenCV 5's IMREAD_UNCHANGED; see the module's docstring)."""
        return {0: 1, 2: 4 if self.trns else 3, 3: 4 if self.trns else 3, 4: 4, 6: 4}[self.color]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.depth == 16 else np.uint8)

    @property
    def decoded_bytes(self) -> int:
        return self.height * self.width * self.channels * self.dtype.itemsize


def png_header(path) -> PngHeader | None:
    """The :class:`PngHeader` of the PNG at ``path``, or None when the file is not a PNG (no signature).

    Reads the IHDR chunk and the chunk headers up to the first IDAT (a few bytes). Raises
    :class:`ImageReadError` for a PNG whose IHDR is missing or impossible."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(33)
        if not head.startswith(PNG_SIGNATURE):
            return None
        if len(head) < 33 or head[12:16] != b"IHDR":
            raise ImageReadError(f"{path}: the PNG has no IHDR chunk (truncated or corrupt); re-copy or re-export the file")
        width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
        valid = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
        if width == 0 or height == 0 or depth not in valid.get(color, ()) or interlace not in (0, 1):
            raise ImageReadError(f"{path}: the PNG header is invalid ({width} x {height}, bit depth {depth}, colour type "
                                 f"{color}, interlace {interlace}); re-copy or re-export the file")
        trns = False
        while len(chunk := fh.read(8)) == 8 and chunk[4:] != b"IDAT":
            trns |= chunk[4:] == b"tRNS"
            fh.seek(int.from_bytes(chunk[:4], "big") + 4, 1)  # chunk data and CRC
    return PngHeader(height, width, depth, color, bool(interlace), trns)


def opencv_pixel_limit() -> int:
    """The most pixels OpenCV decodes (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 when unset), as OpenCV reads it."""
    try:
        return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
    except ValueError:
        return 1 << 30


def _pyvips(path):
    try:
        import pyvips
    except (ImportError, OSError) as exc:  # OSError: pyvips without a libvips it can load
        raise ImageReadError(f"{path}: a PNG this large is streamed by libvips, which cannot be loaded here ({exc}); "
                             f"{_INSTALL}") from exc
    return pyvips


class StreamedPngSource(Source):
    """A PNG read in forward passes of row strips (libvips' sequential loader), never decoded whole.

    ``path``: the PNG; ``cache_bytes``: the most bytes of prefetched windows kept (see :meth:`prefetch`).
    Holds the rows that the current read spans (full width) and the prefetched windows not yet read; see
    the module's docstring for what each call costs. Thread-safe: reads take a lock (one pass at a time).
    """

    def __init__(self, path, header: PngHeader | None = None, cache_bytes: int = 128 << 20):
        self.path = Path(path)
        self.name = str(path)
        header = header or png_header(self.path)
        if header is None:
            raise ImageReadError(f"{self.path}: not a PNG (no PNG signature); open it with open_image")
        self.header = header
        self.shape = (header.height, header.width, header.channels)
        self.dtype = header.dtype
        self.cache_bytes = int(cache_bytes)
        self.passes = 0  # forward passes started (each inflates the file from its first row)
        self._lock = threading.Lock()
        self._image = self._region = None
        self._rows, self._row0 = None, 0  # the rows kept: self._rows holds rows [self._row0, self._row0 + len)
        self._cache: dict = {}
        self._cached_bytes = 0
        self._check_end()

    def _check_end(self) -> None:
        """A PNG cut short is refused when opened (libvips would find it only at the cut, late in a pass)."""
        end = b"\x00\x00\x00\x00IEND\xaeB`\x82"
        with open(self.path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - len(end)))
            if fh.read() != end:
                raise ImageReadError(f"{self.path}: the PNG is truncated (no IEND chunk at its end); re-copy or re-export the file")

    def close(self) -> None:
        """End the current pass and drop the rows and windows kept."""
        with self._lock:
            self._end_pass()
            self._cache.clear()
            self._cached_bytes = 0

    def _end_pass(self) -> None:
        self._image = self._region = self._rows = None
        self._row0 = 0

    def _error(self, exc) -> ImageReadError:
        detail = " ".join(str(getattr(exc, "detail", "") or exc).split())[:200]
        return ImageReadError(f"{self.path}: libvips cannot decode the PNG ({detail}); the file is corrupt or truncated: "
                              "re-copy or re-export it")

    def _start_pass(self) -> None:
        pyvips = _pyvips(self.path)
        try:
            image = pyvips.Image.new_from_file(str(self.path), access="sequential", fail_on="error", revalidate=True)
            self._region = pyvips.Region.new(image)
        except pyvips.Error as exc:
            raise self._error(exc) from None
        self._image, self._rows, self._row0 = image, None, 0
        self.passes += 1

    def _fetch(self, y0: int, y1: int) -> np.ndarray:
        """Rows [y0, y1) from the current pass, full width, as OpenCV's channels (see the module's docstring).

        Fetched in chunks of about ``_CHUNK_BYTES`` into one array: libvips' region buffer and the bytes it
        hands over stay the size of a chunk, not of the rows asked for."""
        H, W, C = self.shape
        pyvips = _pyvips(self.path)
        bands = self._image.bands
        rows = np.empty((y1 - y0, W, bands), self.dtype)
        step = max(1, _CHUNK_BYTES // (W * bands * self.dtype.itemsize))
        try:
            for y in range(y0, y1, step):
                n = min(step, y1 - y)
                rows[y - y0 : y - y0 + n] = np.frombuffer(self._region.fetch(0, y, W, n), self.dtype).reshape(n, W, bands)
        except pyvips.Error as exc:
            self._end_pass()
            raise self._error(exc) from None
        if self.header.color == 0 and bands > 1:  # gray with tRNS: OpenCV drops the alpha libvips adds
            rows = rows[:, :, :1]
        elif self.header.color == 4:  # gray + alpha: OpenCV returns it as RGBA
            rows = rows[:, :, [0, 0, 0, 1]]
        if rows.shape[2] != C:
            raise ImageReadError(f"{self.path}: libvips decoded {rows.shape[2]} channels where the header says {C}; "
                                 "re-export the PNG as 8-bit RGB")
        return rows

    def _span(self, y0: int, y1: int) -> np.ndarray:
        """Rows [y0, y1), full width, continuing the pass (a new pass when y0 is above the rows kept).
        Keeps rows from y0 down, dropping those above. Call with the lock held."""
        if self._image is None or y0 < self._row0:
            self._start_pass()
        kept_end = self._row0 + (0 if self._rows is None else len(self._rows))
        if self._rows is None or y0 >= kept_end:
            self._rows = None  # dropped before the next rows are fetched: one strip held, not two
            rows = self._fetch(y0, y1)  # libvips inflates and drops the rows in between
        else:
            rows = self._rows[y0 - self._row0:]
            if y1 > kept_end:
                rows = np.concatenate([rows, self._fetch(kept_end, y1)])
        self._rows, self._row0 = rows, y0
        return rows[: y1 - y0]

    def _read_inside(self, y0, x0, y1, x1):
        with self._lock:
            cached = self._cache.pop((y0, x0, y1, x1), None)
            if cached is not None:
                self._cached_bytes -= cached.nbytes
                return cached
            window = self._span(y0, y1)[:, x0:x1]
            if 2 * (x1 - x0) < self.shape[1]:
                return window.copy()  # a narrow window must not pin a strip of the slide's width
            window = window.view()
            window.flags.writeable = False  # a view of the rows kept: read-only, as a decoded source's reads
            return window

    def _prefetch_inside(self, windows) -> None:
        """Read ``windows`` (clipped (y0, x0, y1, x1)) in one forward sweep, in order of their first rows, and
        keep each until it is read once; the oldest kept windows go first beyond ``cache_bytes``."""
        with self._lock:
            for window in sorted(set(windows)):
                if window in self._cache:
                    continue
                y0, x0, y1, x1 = window
                pixels = self._span(y0, y1)[:, x0:x1].copy()
                self._cache[window] = pixels
                self._cached_bytes += pixels.nbytes
                while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
                    self._cached_bytes -= self._cache.pop(next(iter(self._cache))).nbytes

    @remembered
    def thumbnail(self, max_side: int = 1024) -> np.ndarray:
        """:meth:`Source.thumbnail` in one forward pass of row strips (about 64 MB each), then the pass ends:
        holds one strip and the thumbnail's sums, never the slide."""
        try:
            return super().thumbnail(max_side)
        finally:
            with self._lock:
                self._end_pass()


def write_png_rows(path, height: int, width: int, rows, channels: int = 1, level: int = 1) -> Path:
    """Write an 8-bit PNG (gray for ``channels`` 1, RGB for 3) row by row with zlib, never holding the image.

    ``rows(y0, y1) -> (y1 - y0, width, channels) uint8`` gives the image strip by strip (strips of 256 rows).
    Holds one strip and zlib's window. Used by the tests and the bench to make slides larger than memory."""
    path = Path(path)
    color = {1: 0, 3: 2}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    deflate = zlib.compressobj(level)
    with open(path, "wb") as fh:
        fh.write(PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)))
        for y in range(0, height, 256):
            strip = np.ascontiguousarray(rows(y, min(y + 256, height)), np.uint8).reshape(-1, width * channels)
            filtered = np.zeros((len(strip), width * channels + 1), np.uint8)  # filter byte 0 (None) on every row
            filtered[:, 1:] = strip
            data = deflate.compress(filtered.tobytes())
            if data:
                fh.write(chunk(b"IDAT", data))
        fh.write(chunk(b"IDAT", deflate.flush()) + chunk(b"IEND", b""))
    return path
