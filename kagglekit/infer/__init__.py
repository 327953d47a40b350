"""Inference: everything that batches pixels through models.

    sliding_window(model, source, tile, stride, ...)   dense.py   (C, H, W) stitched output of a large image
    iter_strips(model, source, ...)                    dense.py   the same as finished row strips
    predict(models, inputs, size, ...)                 images.py  (N, C): one row per image, all models and views
    iter_predictions(models, inputs, ...)              images.py  the same batch by batch, unreadable inputs skipped
    resolve_device(device=None)                        batching.py  "auto"/None: CUDA when there is a GPU, else the CPU

batching.py holds what both share: the device, normalisation names, autocast choices, the prefetcher.
Each image is read by :func:`kagglekit.io.load_image` (channel files, resize, pad, crop).
"""

from kagglekit._lazy import lazy_exports
from kagglekit.infer.batching import resolve_device
from kagglekit.infer.dense import iter_strips, sliding_window
from kagglekit.infer.images import iter_predictions, predict

__all__ = ["iter_predictions", "iter_strips", "predict", "resolve_device", "sliding_window"]

# load_image moved to kagglekit.io (image loading is I/O); the old path works, with a warning, until the next release.
__getattr__, _ = lazy_exports(__name__, {}, moved={"load_image": "kagglekit.io"})
