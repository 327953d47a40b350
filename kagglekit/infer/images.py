"""Image-level inference: one output row per image, for every model and TTA view, each image decoded once.

    probs = predict([fold0, fold1, fold2], paths, size=224, normalize="imagenet", activation="sigmoid", tta="d4")

Per batch: the images are decoded (on ``num_workers`` threads, ahead of the model; a JPEG at 1/2, 1/4 or
1/8 scale by libjpeg when the target is at most that fraction of it), resized to ``size`` and stacked as
integers; the batch is cast and normalised once, then every model runs every view of it and the
activated outputs are merged (:class:`~kagglekit.tta.merge.Merger`). A typical kernel instead runs a
DataLoader per model and decodes every image once per model; bench_classify.py measures both.

Numeric effects of the speed-ups (bench_classify.py prints the measured maxima): ``reduced_decode``
changes the pixels by a few grey levels (libjpeg's DCT scaling is close to, not equal to, an area
resize of the full decode); channels-last weights change float32 outputs by rounding only (~1e-6);
bfloat16 autocast (``amp``) by ~1e-2 on probabilities, so float32 stays the default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kagglekit._checks import one_of, positive_int, positive_weights
from kagglekit._lazy import moved_names
from kagglekit._threads import CpuThreads, reader_task, readers
from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.infer.batching import Affine, autocast, resolve_device, resolve_normalize
from kagglekit.io import images as io_images
from kagglekit.io.images import RESIZE_MODES, image_size

__all__ = ["ACTIVATIONS", "RESIZE_MODES", "iter_predictions", "predict"]

ACTIVATIONS = ("sigmoid", "softmax", None)


# load_image moved to kagglekit.io (image loading is I/O); the old path works, with a warning, until the next release.
__getattr__ = moved_names(__name__, {"load_image": "kagglekit.io"})


def _activate(activation, y):
    import torch

    if callable(activation):
        return activation(y)
    y = y.float()
    if activation == "sigmoid":
        return torch.sigmoid(y)
    if activation == "softmax":
        return torch.softmax(y, dim=1)
    return y


def _load_models(models):
    from torch import nn

    from kagglekit.models import as_module

    if isinstance(models, nn.Module) or isinstance(models, (str, os.PathLike)):
        models = [models]
    loaded = [as_module(m, what="models") for m in models]
    if not loaded:
        raise InvalidArgumentError("predict needs at least one model")
    return loaded


def _view_batches(views, images: list[np.ndarray], to_batch) -> Iterator:
    """Each view's NCHW input in turn: tensor views (D4, crops, scales) of the batch, built once, and image views
    (random augmentations) of the HWC images, stacked and normalised per view; holds the batch and one view's."""
    batch = None
    for view in views:
        if hasattr(view, "apply_image"):
            yield to_batch([view.apply_image(image) for image in images])
        else:
            batch = to_batch(images) if batch is None else batch
            yield view.apply(batch)


def _loaded(inputs, load, num_workers: int, lookahead: int, on_error: str):
    """(index, image or the exception) for each input in order, decoded by ``load`` ``lookahead`` ahead on
    ``num_workers`` threads (0: in this thread). OpenCV and tifffile release the GIL while decoding."""

    def one(item):
        try:
            return load(item)
        except KagglekitError as exc:
            if on_error == "raise":
                raise
            return exc

    if num_workers == 0:
        for k, item in enumerate(inputs):
            yield k, one(item)
        return
    task = reader_task(one)  # their CPU time counts as busy for the model's threads (kagglekit._threads)
    with readers(num_workers), ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="kagglekit-decode") as pool:
        pending = []
        for k, item in enumerate(inputs):
            pending.append((k, pool.submit(task, item)))
            if len(pending) > lookahead:
                k0, future = pending.pop(0)
                yield k0, future.result()
        for k0, future in pending:
            yield k0, future.result()


def iter_predictions(models, inputs: Sequence, *, size=None, resize="resize", normalize="scale",
                     activation=None, tta=None, merge: str = "mean", weights=None, batch_size: int = 32,
                     num_workers: int = 0, device=None, amp=False, channels_last: bool = True,
                     reduced_decode: bool = True, on_error: str = "raise",
                     loader=None, threads=None) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Yield ``(indices, outputs, errors)`` per batch: the input positions (int64), their merged outputs
    ((b, C) float32) and, with ``on_error="skip"``, ``{position: KagglekitError}`` of inputs that could not
    be read (they are left out of ``indices``). ``loader(item) -> (h, w, C) array`` replaces
    :func:`~kagglekit.io.load_image` (``size``, ``resize`` and ``reduced_decode`` then go unused). Other arguments as
    :func:`predict`."""
    import torch

    from kagglekit.tta import views as resolve_views
    from kagglekit.tta.merge import Merger

    models = _load_models(models)
    weights = positive_weights(weights, len(models), "model") if weights is not None else [1.0] * len(models)
    one_of("resize", resize, RESIZE_MODES)
    one_of("on_error", on_error, ("raise", "skip"))
    if not callable(activation):
        one_of("activation", activation, ACTIVATIONS)
    views = resolve_views(tta) if tta is not None else resolve_views("identity")
    merge_outputs = "logits" if activation is None else "probs"
    Merger(merge, merge_outputs).check_weights(weights)
    batch_size = positive_int("batch_size", batch_size)
    num_workers = positive_int("num_workers", num_workers, minimum=0)
    device = resolve_device(device)
    cpu = CpuThreads(threads, device)
    normalize = resolve_normalize(normalize, models[0])
    size = image_size(size)
    mixed = autocast(amp, device)
    for m in models:
        if isinstance(m, torch.nn.Module):
            m.to(device, memory_format=torch.channels_last) if channels_last else m.to(device)
            m.eval()

    forwards = [cpu.forward(m) for m in models]  # on a CPU: in slices of the batch (kagglekit._slices)
    affines = {}  # the normalisation per (dtype, channels), built once, not per batch

    def to_batch(images: list[np.ndarray]):
        """HWC images of one shape -> the normalised NCHW float batch (channels-last strides) on ``device``."""
        first = images[0]
        for image in images[1:]:
            if image.shape != first.shape or image.dtype != first.dtype:
                raise ShapeError(f"images of shapes {first.shape} {first.dtype} and {image.shape} {image.dtype} "
                                 "cannot share a batch; pass size= (and resize=) to bring them to one size")
        batch = torch.from_numpy(np.stack(images)).to(device)
        key = (first.dtype, first.shape[2])
        affine = affines.get(key) or affines.setdefault(key, Affine(normalize, first.dtype, device, first.shape[2]))
        x = affine(batch.float()).permute(0, 3, 1, 2)  # NCHW with channels-last strides: no copy
        return affine.then(x) if affine.then is not None else x

    def run(images: list[np.ndarray]) -> np.ndarray:
        """The merged outputs of one batch: every step is a whole-batch op on the free cores, each forward in
        slices of the batch (kagglekit._slices)."""
        with torch.inference_mode(), cpu.model():
            merger = Merger(merge, merge_outputs)
            for x in _view_batches(views, images, to_batch):
                for forward, w in zip(forwards, weights):
                    with mixed:
                        y = forward(x)
                    if not isinstance(y, torch.Tensor) or y.ndim != 2 or len(y) != len(x):
                        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                        raise ShapeError(f"a model returned {got} for a batch of {tuple(x.shape)}; predict needs one "
                                         "row per image, (N, C) (use sliding_window for dense outputs)")
                    merger.add(_activate(activation, y), w)
            return merger.result().float().cpu().numpy()

    images, indices, errors, columns = [], [], {}, 0
    load = loader or (lambda item: io_images.load_image(item, size, resize, reduced_decode))
    for k, image in _loaded(inputs, load, num_workers, 2 * batch_size, on_error):
        if isinstance(image, KagglekitError):
            errors[k] = image
        else:
            images.append(image)
            indices.append(k)
        if len(images) == batch_size:
            outputs = run(images)
            columns = outputs.shape[1]
            yield np.asarray(indices, np.int64), outputs, errors
            images, indices, errors = [], [], {}
    if images or errors:  # a last batch of only unreadable inputs: no rows, as many columns as the others
        yield np.asarray(indices, np.int64), run(images) if images else np.empty((0, columns), np.float32), errors


def predict(models, inputs: Sequence, *, size=None, resize="resize", normalize="scale", activation=None,
            tta=None, merge: str = "mean", weights=None, batch_size: int = 32, num_workers: int = 0, device=None,
            amp=False, channels_last: bool = True, reduced_decode: bool = True, progress: bool = True,
            threads=None) -> np.ndarray:
    """Run every model and TTA view over every input; return the merged (N, C) float32 outputs in input order.

    models: a torch module, a checkpoint path, or a list of them (any callable on NCHW tensors too),
        each returning (B, C) for a (B, C_in, h, w) float batch. Modules are moved to ``device`` and put
        in eval mode (and converted to channels-last weights with ``channels_last``). On a CPU each is
        called on slices of a batch, from several threads at once: one that keeps Python state across
        calls must lock it (or pass ``threads=1``: one slice at a time, on the caller's thread).
    inputs: paths, tuples of single-channel paths (stacked as channels, in order), (H, W[, C]) arrays
        or Sources; see :func:`kagglekit.io.load_image`.
    size, resize: the model's input size (int or (h, w)) and how to get there: ``"resize"`` (stretch),
        ``"pad"`` (keep the aspect ratio, centre on zeros), ``"center_crop"`` (cover, then crop), None.
        Without a size every image must already have one shape.
    normalize: ``"scale"``, ``"imagenet"``, ``"model"`` (the first model's timm ``pretrained_cfg``), None,
        (mean, std) or a callable (see :mod:`kagglekit.infer.batching`).
    activation: ``"sigmoid"``, ``"softmax"``, None (raw outputs) or a callable, applied to each model's
        output for each view before merging (Kagglers average probabilities).
    tta, merge: views (``"d4"``, ``"flips"``, a list of D4 names, view objects and tables such as
        ``{"five_crop": 224}``, ``{"random": "light", "n": 8, "seed": 0}``: :func:`kagglekit.tta.views`;
        None: the identity) and how their activated outputs, and the models', are merged (``"mean"``,
        ``"gmean"``, ``"logit_mean"``, ...), ``weights`` per model (default equal). Random views transform
        the decoded images before batching (the same draw for every image, :mod:`kagglekit.tta.augmented`).
    batch_size, num_workers: images per forward pass; decoding threads (0: decode in this thread).
    device, amp: where to run; autocast (False: float32; True/"auto": float16 on CUDA, bfloat16 on CPUs
        with native bfloat16; "fp16"; "bf16").
    channels_last: channels-last weights (the batch always has channels-last strides): faster
        convolutions on CPU and CUDA, equal outputs up to float rounding.
    reduced_decode: decode a JPEG at 1/2, 1/4 or 1/8 of its size when the target allows (see above).
    progress: a tqdm bar over images.
    threads: torch threads for the CPU-side work. None / ``"auto"`` (default): each batch's cast,
        normalisation, TTA views and merges on the cores that are free: this process's cores less those
        kept busy by other processes and by the ``num_workers`` decoding threads (their CPU use, measured
        while it runs), at least one; each forward in one slice of the batch per usable core, each on one
        thread, as many at once as other processes leave cores free; on CUDA the GPU work is unchanged. An integer N:
        kagglekit's steps on N threads, N slices at once. The caller's ``torch.get_num_threads()`` is
        restored on return; outputs are the same bits either way. Why: :mod:`kagglekit._threads`,
        bench/bench_load.py.

    Holds the models, the outputs (N * C floats) and at most about three batches of decoded images;
    memory does not grow with N otherwise. Raises the first :class:`KagglekitError` of an unreadable input.
    """
    from tqdm.auto import tqdm

    out = None
    with tqdm(total=len(inputs), unit="image", desc="predict", disable=not progress, leave=False) as bar:
        for indices, outputs, _ in iter_predictions(
                models, inputs, size=size, resize=resize, normalize=normalize, activation=activation, tta=tta,
                merge=merge, weights=weights, batch_size=batch_size, num_workers=num_workers, device=device, amp=amp,
                channels_last=channels_last, reduced_decode=reduced_decode, threads=threads):
            if out is None:
                out = np.full((len(inputs), outputs.shape[1]), math.nan, np.float32)
            elif outputs.shape[1] != out.shape[1]:
                raise ShapeError(f"the models returned {outputs.shape[1]} columns for a batch after {out.shape[1]}")
            out[indices] = outputs
            bar.update(len(indices))
    if out is None:
        raise InvalidArgumentError("predict got no inputs; pass at least one image")
    return out

