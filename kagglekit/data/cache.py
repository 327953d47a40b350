"""On-disk caches of decoded pixels, read back as memory maps: a tile cache (each source decoded once into an
``.npy`` file) and an image cache (each training image decoded and resized once).

The ink-detection write-ups pre-saved crops so that training did not decode 65-slice TIFFs every
step. Here the crops are one decoded array per source ((H, W, C) in the source's own dtype, only the
slices chosen), so any window is a slice of the page cache: no decoding, and forked DataLoader
workers share the pages. A file is named by what it holds (the source's name, its slices, shape,
dtype, and the files' sizes and modification times), so a changed source is decoded again.

The image cache (:func:`cached_array`) holds what :class:`~kagglekit.data.ImageDataset` decodes per item:
one small file per image, so that later epochs decode nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["cached_array", "cached_source", "file_stamp"]

_STRIP_BYTES = 64 << 20


def _identity(source) -> str:
    """What the cache file of ``source`` must match: names, shape, dtype, and its files' size and mtime."""
    names = [source.name] + [s.name for s in getattr(source, "slices", ())]
    parts = [repr(names), repr(tuple(source.shape)), str(source.dtype)]
    for name in dict.fromkeys(re.sub(r"\[\d+\]$", "", n) for n in names):  # "v.tif[3]" is page 3 of v.tif
        path = Path(name)
        if path.is_file():
            parts.append(file_stamp(path))
    return _digest(parts)


def file_stamp(path) -> str:
    """``path`` resolved, with its size and modification time: what tells a changed file from the one cached."""
    path = Path(path)
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _digest(parts) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "source"


def cached_source(source, cache_dir) -> Path:
    """The ``.npy`` file under ``cache_dir`` holding ``source`` decoded (written now if it is not there).

    Written strip by strip (about 64 MB each) through a memory map into a temporary file that is
    renamed into place, so a killed run never leaves a half file under the final name. Holds one strip.
    """
    from kagglekit._atomic import atomic_path

    cache_dir = Path(cache_dir)
    path = cache_dir / f"{_stem(Path(source.name).name)}-{_identity(source)}.npy"
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


def cached_array(cache_dir, name: str, identity, make) -> np.ndarray:
    """The array ``make()`` returns, kept under ``cache_dir`` as ``<name>-<hash of identity>.npy``: read back as a
    read-only memory map when there, else made and written (then returned as made).

    ``identity``: strings that change whenever the array would (the files' :func:`file_stamp`, the size...).
    Written to a temporary file and renamed into place, so that two DataLoader workers writing the same entry
    each rename a whole file and a reader never sees half of one; not fsynced (an entry lost in a crash is
    made again; one that does not load is too). Holds the array ``make`` returns.
    """
    path = Path(cache_dir) / f"{_stem(name)}-{_digest(identity)}.npy"
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):  # not there yet, or cut short by a crash
        pass
    array = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with tmp:
            np.save(tmp, array)
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    return array
