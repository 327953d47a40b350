"""What dense and image-level inference share: the device, normalisation of integer batches, autocast
choices, and a background prefetcher.

Normalisation names mean the same everywhere (``sliding_window``, ``iter_strips``, ``predict`` and both
pipelines' ``[preprocess] normalize``):

    "scale"      integers divided by their dtype's maximum (uint8 / 255), floats as they are
    "imagenet"   "scale", then ImageNet's (mean, std) per channel
    "model"      "scale", then the (mean, std) of the model's timm ``pretrained_cfg`` (predict only)
    None/"none"  cast to float only
    (mean, std)  "scale", then these per channel (one value, or one per channel)
    callable     applied to the float NCHW batch after casting

Autocast (``amp``): False (default: float32, results as in training), True or ``"auto"`` (float16 on
CUDA; bfloat16 on a CPU with native bfloat16 instructions, float32 on others), ``"fp16"``, ``"bf16"``.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from kagglekit.errors import InvalidArgumentError

__all__ = ["AMP_CHOICES", "IMAGENET", "Affine", "autocast", "prefetch", "resolve_device", "resolve_normalize"]

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
AMP_CHOICES = (False, True, "auto", "fp16", "bf16")
_STOP = object()


def resolve_device(device=None):
    """The ``torch.device`` to run on: ``None`` or ``"auto"`` (a pipeline config's value) is CUDA when there is
    a GPU, else the CPU; a name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) or a ``torch.device`` is that
    device, not probed (a config check says first whether this machine has it). The one device rule of
    kagglekit (inference, MIL, jobs, pipelines). A value torch does not read as a device is an
    InvalidArgumentError."""
    import torch

    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"device: {device!r} is not a torch device ({exc}); use 'auto', 'cpu', 'cuda' or "
                                   "'cuda:N'") from None


def resolve_normalize(normalize, model=None):
    """``normalize`` by name (see the module docstring) as ``Affine`` takes it: "scale", None, a (mean,
    std) pair or a callable. ``"model"`` reads timm's ``pretrained_cfg`` of ``model`` (or its first member)."""
    if isinstance(normalize, str):
        if normalize == "imagenet":
            return IMAGENET
        if normalize == "none":
            return None
        if normalize == "model":
            return _model_mean_std(model)
    return normalize


def _model_mean_std(model):
    cfg = None
    for candidate in (model, *(getattr(model, "members", None) or ())):
        cfg = getattr(candidate, "pretrained_cfg", None) or getattr(getattr(candidate, "model", None), "pretrained_cfg", None)
        if cfg:
            break
    if not cfg or "mean" not in cfg or "std" not in cfg:
        raise InvalidArgumentError("normalize='model' needs a timm model (its pretrained_cfg holds mean and std); "
                                   "pass normalize='imagenet' or (mean, std) for this model")
    return tuple(cfg["mean"]), tuple(cfg["std"])


class Affine:
    """``x * scale + offset``, in place on a float NHWC batch: ``normalize`` folded into one pass.

    ``scale`` holds the integer range (1 / dtype max, for ``"scale"`` and (mean, std)) and 1 / std;
    ``offset`` is -mean / std, or None. Both broadcast over the last (channel) axis. A callable
    ``normalize`` is kept as ``then``, for the float NCHW batch. The integer-to-float cast itself is a
    separate ``copy_``: torch vectorises a pure cast but not a multiply that also promotes uint8.
    """

    def __init__(self, normalize, dtype: np.dtype, device, channels: int):
        import torch

        normalize = resolve_normalize(normalize)
        pair = isinstance(normalize, (tuple, list)) and len(normalize) == 2
        if not (normalize is None or normalize == "scale" or callable(normalize) or pair):
            raise InvalidArgumentError(f"normalize must be 'scale', 'imagenet', 'none'/None, a (mean, std) pair or a "
                                       f"callable, got {normalize!r}")
        self.scale = 1.0 / np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) and normalize is not None else 1.0
        self.offset = None
        if pair:
            mean, std = (np.asarray(v, np.float32) for v in normalize)
            if mean.size not in (1, channels) or std.size not in (1, channels):
                raise InvalidArgumentError(f"normalize=(mean, std) needs 1 or {channels} values each (the source's channels), "
                                           f"got {mean.size} and {std.size}")
            self.scale = torch.as_tensor(np.asarray(self.scale / std, np.float32), device=device)
            self.offset = torch.as_tensor(-mean / std, device=device)
        self.then = normalize if callable(normalize) else None

    def __call__(self, batch):
        """Apply to the float32 (..., C) ``batch`` in place and return it."""
        import torch

        if self.offset is not None:
            return torch.addcmul(self.offset, batch, self.scale, out=batch)
        return batch.mul_(self.scale) if self.scale != 1.0 else batch


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX512-BF16 or AMX), read from /proc/cpuinfo;
    without them bfloat16 autocast is emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16"))


def autocast(amp, device):
    """The autocast context for ``amp`` (see the module docstring) on ``device``; a null context for float32."""
    import torch

    if amp not in AMP_CHOICES or isinstance(amp, (int, float)) and not isinstance(amp, bool):
        raise InvalidArgumentError(f"amp must be one of {list(AMP_CHOICES)}, got {amp!r}")
    if amp is False:
        return nullcontext()
    on_cuda = device.type == "cuda"
    if amp in (True, "auto"):
        if not on_cuda and not cpu_has_bf16():
            return nullcontext()
        dtype = torch.float16 if on_cuda else torch.bfloat16
    else:
        dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def prefetch(produce: Iterator, depth: int = 2) -> Iterator:
    """Run ``produce`` on a background thread, ``depth`` items ahead; its exceptions re-raise here."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        """Queue ``item`` unless the consumer has gone; False once it has."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in produce:
                if not put(item):
                    return
            put(_STOP)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=work, name="kagglekit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _STOP:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
