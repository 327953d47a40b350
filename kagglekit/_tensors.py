"""Numpy arrays as torch tensors without copying where torch can share their memory."""

from __future__ import annotations

import warnings

import numpy as np

# dtypes torch.from_numpy accepts in every torch the package supports (uint16/32/64 only from torch 2.3)
_SHAREABLE = frozenset(np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64,
                                            np.float16, np.float32, np.float64))


def _viewable(array: np.ndarray) -> bool:
    """A native-endian dtype every supported torch knows, and no negative strides (no flipped view)."""
    return array.dtype in _SHAREABLE and min(array.strides, default=0) >= 0


def shareable(array: np.ndarray) -> bool:
    """True when ``torch.from_numpy`` can view ``array`` as it is: :func:`_viewable` and writable memory
    (not a read-only memory map)."""
    return _viewable(array) and array.flags.writeable


_read_only_seen = False  # torch's read-only warning already silenced once in this process


def reading_view(array: np.ndarray):
    """A CPU tensor viewing ``array`` to be read from only (e.g. the source of a ``copy_``), or None
    when torch cannot view it (a dtype older torch lacks, negative strides). Read-only memory is fine
    here: torch's warning about it is silenced, since nothing writes through the view."""
    import torch

    global _read_only_seen
    if not _viewable(array):
        return None
    if array.flags.writeable or _read_only_seen:
        return torch.from_numpy(array)
    # torch warns once per process; catch_warnings is not entered per tile, since it resets which
    # once-only warnings were shown (the model's own would come back on every batch)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        view = torch.from_numpy(array)
    _read_only_seen = True
    return view


def as_tensor(array: np.ndarray):
    """A CPU tensor viewing ``array``, or viewing a copy when it is not :func:`shareable`: in native
    byte order, and for dtypes older torch lacks in the one numpy promotes them to with int32
    (uint16 -> int32, uint32 -> int64, uint64 -> float64)."""
    import torch

    if not shareable(array):
        dtype = array.dtype.newbyteorder("=")
        array = array.astype(dtype if dtype in _SHAREABLE else np.promote_types(dtype, np.int32))
    return torch.from_numpy(array)
