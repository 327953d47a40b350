"""TIFF sources through tifffile: a window read decodes only the tiles or strips it touches.

tifffile's own ``asarray`` decodes a whole page and its zarr view needs the zarr package, so the
window reader here decodes segments itself with tifffile's public ``TiffPage.decode`` and keeps the
most recently used decoded segments in a small byte-bounded cache (neighbouring windows overlap).
Uncompressed contiguous pages are memory-mapped instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections import OrderedDict

import numpy as np

from kagglekit._threads import counted
from kagglekit.errors import ImageReadError, InvalidArgumentError, KagglekitError
from kagglekit.io.source import Source, remembered


@functools.cache
def _decode_pool():
    """One process-wide pool of decoding threads, one per usable core, started on first use."""
    from concurrent.futures import ThreadPoolExecutor

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return ThreadPoolExecutor(max_workers=cores, thread_name_prefix="kagglekit-decode")


if hasattr(os, "register_at_fork"):  # a forked child (DataLoader workers) inherits the pool but not its threads
    os.register_at_fork(after_in_child=_decode_pool.cache_clear)


class _SegmentCache:
    """Least-recently-used decoded segments, bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.items: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, key):
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key, value: np.ndarray) -> None:
        old = self.items.pop(key, None)
        self.bytes += value.nbytes - (0 if old is None else old.nbytes)
        self.items[key] = value
        while self.bytes > self.max_bytes and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes


_SEEK_LOCK = threading.Lock()  # for file handles without a descriptor (a TIFF opened from bytes)


def _read_at(filehandle, offset: int, count: int) -> bytes:
    """``count`` bytes at ``offset`` of a tifffile ``FileHandle`` without moving a shared file position
    (``os.pread``): readers of several pages of one file, threads and forked DataLoader workers
    (which share the descriptor's position) never interleave a seek with another's read."""
    try:
        fd = filehandle.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is not None and hasattr(os, "pread"):
        return os.pread(fd, count, offset)
    with _SEEK_LOCK:
        filehandle.seek(offset)
        return filehandle.read(count)


@contextlib.contextmanager
def tiff_errors(path):
    """Whatever tifffile raises on a corrupt or truncated header, as an :class:`ImageReadError` naming
    ``path``; kagglekit's own errors pass through."""
    try:
        yield
    except KagglekitError:
        raise
    except Exception as exc:  # tifffile raises many types on a corrupt header
        raise ImageReadError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); check that the file is complete") from exc


class TiffPageReader:
    """Window reads from one TIFF page (a level of a pyramid, or a slice of a stack).

    Holds the open file handle shared with its ``TiffFile`` and at most ``cache_bytes`` of decoded
    segments. Thread-safe and fork-safe: file reads are positional (``os.pread``) and the cache is
    guarded by a lock.
    """

    def __init__(self, tif, page, name: str, cache_bytes: int = 128 << 20):
        self.tif, self.page, self.name = tif, page, name
        self.lock = threading.Lock()
        _, depth, H, W, S = page.shaped
        if depth != 1:
            raise ImageReadError(f"{name}: volumetric TIFF pages (ImageDepth {depth}) are not supported")
        self.shape = (int(H), int(W), int(S) if page.planarconfig == 1 else int(page.shaped[0]))
        self.dtype = np.dtype(page.dtype).newbyteorder("=")
        self.memmap = self._try_memmap()
        if page.is_tiled:
            self.seg_h, self.seg_w = page.tilelength, page.tilewidth
        else:
            self.seg_h, self.seg_w = min(page.rowsperstrip or H, H), W
        if not all(isinstance(n, (int, np.integer)) and n > 0 for n in (self.seg_h, self.seg_w)):
            raise ImageReadError(f"{name}: invalid tile or strip size {self.seg_h} x {self.seg_w} in the header; the file is corrupt")
        self.seg_h, self.seg_w = int(self.seg_h), int(self.seg_w)
        self.seg_rows = -(-H // self.seg_h)
        self.seg_cols = -(-W // self.seg_w)
        self.planes = int(page.shaped[0]) if page.planarconfig == 2 else 1
        segments = self.planes * self.seg_rows * self.seg_cols
        if self.memmap is None and min(len(page.dataoffsets), len(page.databytecounts)) < segments:
            raise ImageReadError(f"{name}: the header lists {len(page.dataoffsets)} tiles or strips, but a "
                                 f"{H} x {W} image needs {segments}; the file is corrupt")
        self.seg_bytes = self.seg_h * self.seg_w * self.dtype.itemsize * (self.shape[2] // self.planes)
        self.cache = _SegmentCache(cache_bytes)

    def _try_memmap(self):
        page = self.page
        if not page.is_memmappable or page.planarconfig != 1:
            return None
        try:
            dtype = np.dtype(self.tif.byteorder + self.dtype.char)
            offset = page.dataoffsets[0]
            path = self.tif.filehandle.path
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=self.shape)
        except (OSError, ValueError, TypeError):
            return None

    def _touched(self, y0: int, x0: int, y1: int, x1: int):
        """(plane, row, col, segment index) of every segment the window [y0, y1) x [x0, x1) touches."""
        for plane in range(self.planes):
            for row in range(y0 // self.seg_h, (y1 - 1) // self.seg_h + 1):
                for col in range(x0 // self.seg_w, (x1 - 1) // self.seg_w + 1):
                    yield plane, row, col, (plane * self.seg_rows + row) * self.seg_cols + col

    def decode_ahead(self, windows) -> None:
        """Decode the segments that the (y0, x0, y1, x1) ``windows`` touch and the cache lacks, all at
        once on a thread per core (zlib, JPEG and the other codecs release the GIL), so that reading
        the windows next finds them cached. Does nothing when they would not fit in the cache."""
        if self.memmap is not None:
            return
        needed = {index for window in windows for *_, index in self._touched(*window)}
        with self.lock:
            missing = sorted(i for i in needed if self.cache.get(i) is None)  # get(): keeps the cached ones recent
        if len(missing) > 1 and len(needed) * self.seg_bytes <= self.cache.max_bytes:
            list(_decode_pool().map(counted(self._segment), missing))

    def _segment(self, index: int) -> np.ndarray:
        """Decoded segment ``index`` as (seg_h, seg_w, samples), padded to the full tile size."""
        with self.lock:
            cached = self.cache.get(index)
        if cached is not None:
            return cached
        page = self.page
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        data = _read_at(self.tif.filehandle, offset, count) if count else None  # outside the lock: reads overlap
        if count and len(data) != count:
            raise ImageReadError(f"{self.name}: the file is truncated (segment {index} is cut short); re-copy or re-export it")
        try:
            segment, _, shape = page.decode(data, index, jpegtables=page.jpegtables)
        except Exception as exc:  # tifffile and imagecodecs raise many types for bad data
            raise ImageReadError(f"{self.name}: cannot decode TIFF segment {index} ({exc}); the file is corrupt or uses an unsupported codec") from exc
        if segment is None:  # an empty segment: tifffile leaves it to the caller to fill
            segment = np.zeros(shape, self.dtype)
        segment = segment.reshape(segment.shape[-3:])
        with self.lock:
            self.cache.put(index, segment)
        return segment

    def read_inside(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """(y1-y0, x1-x0, C) window, all inside the page."""
        if self.memmap is not None:  # the copy is also in native byte order (the map has the file's)
            return np.array(self.memmap[y0:y1, x0:x1], dtype=self.dtype)
        out = np.empty((y1 - y0, x1 - x0, self.shape[2]), self.dtype)
        for plane, row, col, index in self._touched(y0, x0, y1, x1):
            channels = slice(plane, plane + 1) if self.planes > 1 else slice(None)
            seg = self._segment(index)
            top, left = row * self.seg_h, col * self.seg_w
            a0, a1 = max(y0, top), min(y1, top + seg.shape[0])
            b0, b1 = max(x0, left), min(x1, left + seg.shape[1])
            out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0, channels] = seg[a0 - top : a1 - top, b0 - left : b1 - left]
        return out


class PageSource(Source):
    """A source over one TIFF page through a :class:`TiffPageReader`."""

    def __init__(self, reader: TiffPageReader):
        self.reader, self.name = reader, reader.name
        self.shape, self.dtype = reader.shape, reader.dtype
        if 0 in self.shape:
            raise ImageReadError(f"{self.name}: the image is empty (shape {self.shape})")

    def _read_inside(self, y0, x0, y1, x1):
        return self.reader.read_inside(y0, x0, y1, x1)

    def _prefetch_inside(self, windows) -> None:
        self.reader.decode_ahead(windows)


class TiffSource(PageSource):
    """A 2D TIFF image (one page or one pyramid level) read window by window.

    ``level`` picks a pyramid level of the first series (0 is full resolution). Holds the file open
    and at most ``cache_bytes`` of decoded tiles; call :meth:`close` (or use ``with``) to release it.
    """

    def __init__(self, path, level: int = 0, cache_bytes: int = 128 << 20):
        import tifffile

        with tiff_errors(path):
            self.tif = tifffile.TiffFile(path)
            levels = self.tif.series[0].levels
        if not 0 <= level < len(levels):
            raise InvalidArgumentError(f"{path} has pyramid levels 0..{len(levels) - 1}, got level={level}")
        self.levels = [lv.keyframe for lv in levels]
        super().__init__(TiffPageReader(self.tif, self.levels[level], str(path), cache_bytes))

    @remembered
    def thumbnail(self, max_side: int = 1024) -> np.ndarray:
        """Thumbnail from the smallest pyramid level below this source's whose longer side is still at
        least ``max_side``."""
        side = max(self.shape[:2])
        smaller = [p for p in self.levels if max_side <= max(p.shaped[2], p.shaped[3]) < side]
        if not smaller:
            return super().thumbnail(max_side)
        level = PageSource(TiffPageReader(self.tif, smaller[-1], self.name, cache_bytes=32 << 20))
        return level.thumbnail(max_side)

    def close(self) -> None:
        self.tif.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
