"""Sliding-window inference: tiles from a source, through a model, stitched back.

Three threads form a pipeline: a reader casts and scales the next batch's tiles into one of three
reused float buffers, the model runs on a second thread and multiplies its outputs by their blending
weights on its device, and the caller's thread accumulates them in a
:class:`~kagglekit.tiling.Stitcher`, either into one (C, H, W) array (:func:`sliding_window`) or into
row strips that are handed out as soon as no later tile touches them (:func:`iter_strips`).
"""

from __future__ import annotations

import queue
import threading
from contextlib import nullcontext
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.io import Source, open_image
from kagglekit.tiling import Stitcher, TileGrid, TileWeights

_STOP = object()


@dataclass
class _Plan:
    source: Source
    grid: TileGrid
    weights: TileWeights
    batch_size: int


def _plan(source, tile, stride, batch_size, window, sigma, margin, out_scale, skip_mask, min_fraction) -> _Plan:
    source = open_image(source)
    out_scale = positive_int("out_scale", out_scale)
    grid = TileGrid(source.shape, tile, stride=stride, multiple=out_scale)
    if skip_mask is not None:
        grid = grid.select(skip_mask, min_fraction)
    return _Plan(source, grid, TileWeights(grid, window, sigma, margin, out_scale), positive_int("batch_size", batch_size))


def _prefetch(produce: Iterator, depth: int = 2) -> Iterator:
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


def _fill_float_batch(src: Source, positions, tile, normalize, dtype_max: float | None, out: np.ndarray) -> np.ndarray:
    """Read the tiles at ``positions`` into ``out``, a reused float32 (N, h, w, C) buffer, normalized.

    Each window is cast and scaled in one numpy pass straight from the source (for in-memory images
    a view, so the uint8 pixels are read once and no uint8 batch is made). Reused buffers, because a
    fresh 25 MB array per batch costs more in page faults than the conversion itself. A callable
    ``normalize`` is applied later, on the device.
    """
    scale = np.float32(1.0 / dtype_max) if dtype_max and normalize is not None else np.float32(1.0)
    for b, (y, x) in enumerate(positions):
        np.multiply(src.read(int(y), int(x), *tile), scale, out=out[b], dtype=np.float32)
    if isinstance(normalize, tuple):
        mean, std = normalize
        out -= mean
        out /= std
    return out


def _to_float_cuda(raw, normalize, dtype_max: float | None):
    """The conversion of :func:`_fill_float_batch`, on the GPU, for an (N, h, w, C) integer tensor."""
    x = raw.float()
    if normalize is None:
        return x
    if dtype_max:
        x.mul_(1.0 / dtype_max)
    if normalize == "scale" or callable(normalize):
        return x
    mean, std = (x.new_tensor(np.asarray(v, np.float32)) for v in normalize)
    return (x - mean) / std


def _check_normalize(normalize):
    """``normalize`` as used per batch: unchanged, or a (mean, std) pair as float32 arrays."""
    if normalize is None or normalize == "scale" or callable(normalize):
        return normalize
    if isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        return tuple(np.asarray(v, np.float32) for v in normalize)
    raise InvalidArgumentError(f"normalize must be 'scale', None, a (mean, std) pair or a callable, got {normalize!r}")


def _batch_outputs(model, plan: _Plan, device, amp, channels_last, normalize, tta):
    """Yield (first tile index, weighted outputs (B, C, h, w) float32 numpy) for the plan's batches, in order.

    Tiles are read and converted on a prefetch thread; each output is multiplied by its tile's
    blending weight (two broadcast products with the separable profiles) on the model's device.
    """
    import torch

    normalize = _check_normalize(normalize)
    src, grid, weights = plan.source, plan.grid, plan.weights
    th, tw = grid.tile
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_cuda = device.type == "cuda"
    dtype_max = float(np.iinfo(src.dtype).max) if np.issubdtype(src.dtype, np.integer) else None
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    model.eval()

    shape = (plan.batch_size, th, tw, src.shape[2])
    free: queue.Queue = queue.Queue()  # float batch buffers the model thread has finished with
    for _ in range(3):  # one being filled, one queued, one in the model
        free.put(None if on_cuda else np.empty(shape, np.float32))

    def read_batches():
        for start in range(0, len(grid), plan.batch_size):
            ks = range(start, min(start + plan.batch_size, len(grid)))
            positions = grid.positions[start : start + len(ks)]
            wy, wx = (torch.from_numpy(np.stack(p)) for p in zip(*(weights.profiles(k) for k in ks)))
            buffer = free.get()
            if on_cuda:  # ship the compact integer tiles, convert on the GPU
                raw = np.stack([src.read(int(y), int(x), th, tw) for y, x in positions])
                raw = raw.astype(np.int32) if raw.dtype == np.uint16 else raw
                yield start, torch.from_numpy(raw).pin_memory(), wy, wx, buffer
            else:
                batch = _fill_float_batch(src, positions, (th, tw), normalize, dtype_max, buffer[: len(ks)])
                yield start, torch.from_numpy(batch), wy, wx, buffer

    autocast = torch.autocast("cuda", dtype=torch.float16) if amp and on_cuda else nullcontext()
    out_h, out_w = weights.tile_out
    with torch.inference_mode():
        for start, batch, wy, wx, buffer in _prefetch(read_batches(), depth=1):
            if on_cuda:
                batch = _to_float_cuda(batch.to(device, non_blocking=True), normalize, dtype_max)
            # NCHW view of NHWC memory (channels-last strides): no copy, and convolutions on CPU
            # run several times faster on it than on contiguous NCHW. Models that need
            # contiguous input must call .contiguous() themselves.
            batch = batch.permute(0, 3, 1, 2)
            if callable(normalize):
                batch = normalize(batch)
            with autocast:
                pred = tta(model, batch, start) if tta is not None else model(batch)
            if not isinstance(pred, torch.Tensor) or pred.ndim != 4 or pred.shape[0] != len(batch) or tuple(pred.shape[2:]) != (out_h, out_w):
                got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
                raise ShapeError(f"the model returned {got} for a batch of {tuple(batch.shape)}; expected (N, C, {out_h}, {out_w}) "
                                 f"(tile {grid.tile} / out_scale {weights.scale}); set out_scale to the model's output stride")
            if buffer is not None and pred.untyped_storage().data_ptr() == batch.untyped_storage().data_ptr():
                pred = pred.clone()  # the model returned (a view of) its input: keep it before the buffer is reused
            pred = pred.float().mul_(wy.to(pred.device)[:, None, :, None]).mul_(wx.to(pred.device)[:, None, None, :])
            del batch
            free.put(buffer)
            yield start, pred.cpu().numpy()


def _tile_outputs(model, plan: _Plan, device, amp, channels_last, normalize, tta, progress):
    """Yield (tile index, weighted output (C, h, w)) for every tile, in order.

    The model runs on a second background thread, a batch ahead, while the caller stitches.
    """
    from tqdm.auto import tqdm

    with tqdm(total=len(plan.grid), unit="tile", desc="sliding window", disable=not progress, leave=False) as bar:
        for start, pred in _prefetch(_batch_outputs(model, plan, device, amp, channels_last, normalize, tta)):
            for b in range(len(pred)):
                yield start + b, pred[b]
            bar.update(len(pred))


def _add(stitcher: Stitcher, weights: TileWeights, k: int, values: np.ndarray) -> None:
    top, bottom, left, right = weights.crop(k)
    y, x = weights.origin(k)
    weight = None if stitcher.normalized else weights.weight(k)[top:bottom, left:right]
    stitcher.add(y + top, x + left, values[:, top:bottom, left:right], weight)


def _pop_in_chunks(stitcher: Stitcher, upto: int, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """Hand out the finished rows below ``upto`` as strips of at most ``rows`` rows each."""
    while stitcher.row0 < upto:
        row0 = stitcher.row0
        yield row0, stitcher.pop(min(upto, row0 + rows))


def _channels_when_empty(out_channels) -> int:
    if out_channels is not None:
        return positive_int("out_channels", out_channels)
    raise InvalidArgumentError("skip_mask kept no tile, so the number of output channels is unknown: pass out_channels=")


_DOC_ARGS = """
    model: a torch module (or any callable on tensors) taking (N, C, tile_h, tile_w) float32 and
        returning (N, C_out, tile_h / out_scale, tile_w / out_scale). It is moved to ``device`` and put
        in eval mode.
    source: a path, an (H, W, C) numpy array or a :class:`~kagglekit.io.Source` (image or volume:
        a volume's slices are the channels).
    tile, stride: tile size and step in input pixels (int or (h, w)); stride defaults to the tile.
    batch_size: tiles per forward pass.
    window, sigma: blending window (``"constant"``, ``"linear"``, ``"gaussian"``; sigma as a fraction
        of the tile).
    margin: input pixels discarded on every tile side that is not on the image border.
    out_scale: the model's output stride (e.g. 32 for logits at 1/32); the output is ceil(H / out_scale).
    device, amp: where to run, and whether to use float16 autocast (CUDA only).
    channels_last: convert the model's weights to channels-last memory. The batch itself is always
        an NCHW tensor with channels-last strides (the tiles' own NHWC memory, not copied).
    normalize: ``"scale"`` (integers divided by their dtype's maximum), None (cast only), a
        (mean, std) pair applied after scaling, or a callable on the float NCHW batch.
    skip_mask, min_fraction: a low-resolution (h, w) bool mask of the image; tiles with less than
        ``min_fraction`` of it are not run and their pixels get ``fill_value``.
    out_channels: needed only when ``skip_mask`` keeps no tile.
    dtype: accumulator dtype (float32, or float16 to halve memory).
    tta: None, or a callable ``tta(model, batch, first_index)`` returning the model output for the
        batch (e.g. :class:`kagglekit.tta.ViewCycle`).
    progress: show a tqdm progress bar.
"""


def sliding_window(model, source, tile=512, stride=None, batch_size: int = 8, window: str = "gaussian",
                   margin: int = 0, out_scale: int = 1, device=None, amp: bool = False, channels_last: bool = False,
                   normalize="scale", skip_mask=None, progress: bool = True, *, sigma: float = 0.125,
                   min_fraction: float = 0.05, fill_value: float = 0.0, out_channels: int | None = None,
                   dtype=np.float32, tta: Callable | None = None) -> np.ndarray:
    """Run ``model`` over ``source`` tile by tile and return the stitched (C_out, H_out, W_out) array of ``dtype``.

    Holds the output, one batch of tiles (raw and float) ahead and behind, and the model; never a
    float copy of the source.
    """
    plan = _plan(source, tile, stride, batch_size, window, sigma, margin, out_scale, skip_mask, min_fraction)
    H, W = plan.weights.out_shape
    stitcher = None
    for k, values in _tile_outputs(model, plan, device, amp, channels_last, normalize, tta, progress):
        if stitcher is None:
            stitcher = Stitcher(len(values), H, W, normalized=plan.weights.normalized, dtype=dtype, fill_value=fill_value)
        _add(stitcher, plan.weights, k, values)
    if stitcher is None:
        return np.full((_channels_when_empty(out_channels), H, W), fill_value, dtype)
    return stitcher.finish()


def iter_strips(model, source, tile=512, stride=None, batch_size: int = 8, window: str = "gaussian",
                margin: int = 0, out_scale: int = 1, device=None, amp: bool = False, channels_last: bool = False,
                normalize="scale", skip_mask=None, progress: bool = True, *, sigma: float = 0.125,
                min_fraction: float = 0.05, fill_value: float = 0.0, out_channels: int | None = None,
                dtype=np.float32, tta: Callable | None = None, strip_rows: int = 128) -> Iterator[tuple[int, np.ndarray]]:
    """Like :func:`sliding_window`, but yield ``(first_row, strip)`` pairs as rows are finished.

    ``strip`` is a new float32 (C_out, rows, W_out) array of output rows ``first_row:first_row + rows``
    with ``rows <= strip_rows``; the strips tile the output from top to bottom. Holds one tile-row of
    output (tile_h / out_scale rows) and one strip, so memory does not grow with the image's height.
    """
    plan = _plan(source, tile, stride, batch_size, window, sigma, margin, out_scale, skip_mask, min_fraction)
    weights, grid = plan.weights, plan.grid
    H, W = weights.out_shape
    strip_rows = positive_int("strip_rows", strip_rows)
    stitcher = None
    for k, values in _tile_outputs(model, plan, device, amp, channels_last, normalize, tta, progress):
        if stitcher is None:
            stitcher = Stitcher(len(values), H, W, normalized=weights.normalized, dtype=dtype,
                                fill_value=fill_value, max_rows=weights.tile_out[0])
        if k == 0 or grid.index[k][0] != grid.index[k - 1][0]:  # a new tile row: rows above it are final
            yield from _pop_in_chunks(stitcher, weights.origin(k)[0] + weights.crop(k)[0], strip_rows)
        _add(stitcher, weights, k, values)
    if stitcher is None:
        channels, step = _channels_when_empty(out_channels), strip_rows
        for row0 in range(0, H, step):
            yield row0, np.full((channels, min(step, H - row0), W), fill_value, np.float32)
        return
    yield from _pop_in_chunks(stitcher, H, strip_rows)


sliding_window.__doc__ += "\n    Args:" + _DOC_ARGS
iter_strips.__doc__ += "\n    Args:" + _DOC_ARGS
