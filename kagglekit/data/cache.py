"""A tile cache: each source decoded once into an ``.npy`` file on disk, read back as a memory map.

The ink-detection write-ups pre-saved crops so that training did not decode 65-slice TIFFs every
step. Here the crops are one decoded array per source ((H, W, C) in the source's own dtype, only the
slices chosen), so any window is a slice of the page cache: no decoding, and forked DataLoader
workers share the pages. A file is named by what it holds (the source's name, its slices, shape,
dtype, and the files' sizes and modification times), so a changed source is decoded again.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

__all__ = ["cached_source"]

_STRIP_BYTES = 64 << 20


def _identity(source) -> str:
    """What the cache file of ``source`` must match: names, shape, dtype, and its files' size and mtime."""
    names = [source.name] + [s.name for s in getattr(source, "slices", ())]
    parts = [repr(names), repr(tuple(source.shape)), str(source.dtype)]
    for name in dict.fromkeys(re.sub(r"\[\d+\]$", "", n) for n in names):  # "v.tif[3]" is page 3 of v.tif
        path = Path(name)
        if path.is_file():
            stat = path.stat()
            parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cached_source(source, cache_dir) -> Path:
    """The ``.npy`` file under ``cache_dir`` holding ``source`` decoded (written now if it is not there).

    Written strip by strip (about 64 MB each) through a memory map into a temporary file that is
    renamed into place, so a killed run never leaves a half file under the final name. Holds one strip.
    """
    from kagglekit._atomic import atomic_path

    cache_dir = Path(cache_dir)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.name).name)[:60] or "source"
    path = cache_dir / f"{stem}-{_identity(source)}.npy"
    if path.is_file():
        return path
    H, W, C = source.shape
    rows = max(1, _STRIP_BYTES // max(1, W * C * source.dtype.itemsize))
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=source.dtype, shape=(H, W, C))
        for y in range(0, H, rows):
            out[y : y + rows] = source.read(y, 0, min(rows, H - y), W)
        out.flush()
        del out
    return path
