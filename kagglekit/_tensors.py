"""Numpy arrays as torch tensors without copying where torch can share their memory."""

from __future__ import annotations

import numpy as np

# dtypes torch.from_numpy accepts in every torch the package supports (uint16/32/64 only from torch 2.3)
_SHAREABLE = frozenset(np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64,
                                            np.float16, np.float32, np.float64))


def as_tensor(array: np.ndarray):
    """A CPU tensor viewing ``array``; a copy only when torch cannot share the memory: read-only
    arrays (memory-mapped files), negative strides (flipped views), or unsigned dtypes wider than
    8 bits, which become the smallest signed dtype that holds them (uint16 -> int32)."""
    import torch

    if array.dtype not in _SHAREABLE:
        array = array.astype(np.promote_types(array.dtype, np.int32))
    elif not array.flags.writeable or min(array.strides, default=0) < 0:
        array = array.copy()
    return torch.from_numpy(array)
