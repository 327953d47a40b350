"""Inference: everything that batches pixels through models.

    sliding_window(model, source, tile, stride, ...)   dense.py   (C, H, W) stitched output of a large image
    iter_strips(model, source, ...)                    dense.py   the same as finished row strips
    predict(models, inputs, size, ...)                 images.py  (N, C): one row per image, all models and views
    iter_predictions(models, inputs, ...)              images.py  the same batch by batch, unreadable inputs skipped

batching.py holds what both share: the device, normalisation names, autocast choices, the prefetcher.
"""

from kagglekit.infer.dense import iter_strips, sliding_window
from kagglekit.infer.images import iter_predictions, load_image, predict

__all__ = ["iter_predictions", "iter_strips", "load_image", "predict", "sliding_window"]
