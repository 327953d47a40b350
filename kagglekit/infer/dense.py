"""Sliding-window inference: tiles from a source, through a model, stitched back.

Per batch: gather the tile windows (compressed TIFF tiles decoded on all cores at once), cast them
into a reused float buffer and normalize it in place, run the model, then multiply each output by its
blending weight while accumulating it (one fused pass) in a :class:`~kagglekit.tiling.Stitcher`,
either into one (C, H, W) array (:func:`sliding_window`) or into row strips that are handed out as
soon as no later tile touches them (:func:`iter_strips`).

On a CPU the steps take turns on the caller's thread. Running them concurrently on threads was slower
(bench_sliding.py): any other busy thread stalls the model's OpenMP team at each of its barriers. For
the same reason kagglekit's per-tile steps (each tile's cast into the batch, its stitching) run on one
torch thread, the batch's normalisation on the cores that are free, measured as it runs, and the model's
forward in fixed slices of the batch on one thread each, as many at once as cores are free (the same bits
whatever that count: :mod:`kagglekit._threads`, :mod:`kagglekit._slices`; ``threads=`` overrides it;
bench_load.py). On CUDA, reading runs a batch ahead on one thread and the
model on another, so that neither the GPU nor the stitching waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kagglekit._checks import positive_int
from kagglekit._threads import CpuThreads
from kagglekit._tensors import as_tensor, reading_view
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.infer.batching import Affine, autocast, prefetch, resolve_device
from kagglekit.io import Source, open_image
from kagglekit.tiling import Stitcher, TileGrid, TileWeights
from kagglekit.tiling.stitcher import accumulator_dtype, checked_out


@dataclass
class _Plan:
    source: Source
    weights: TileWeights  # its .grid is the plan's tile grid
    batch_size: int

    @property
    def grid(self) -> TileGrid:
        return self.weights.grid


def _plan(source, tile, stride, batch_size, window, sigma, margin, out_scale, skip_mask, min_fraction) -> _Plan:
    source = open_image(source)
    out_scale = positive_int("out_scale", out_scale)
    grid = TileGrid(source.shape, tile, stride=stride, multiple=out_scale)
    if skip_mask is not None:
        grid = grid.select(skip_mask, min_fraction)
    return _Plan(source, TileWeights(grid, window, sigma, margin, out_scale), positive_int("batch_size", batch_size))


def _batch_outputs(model, plan: _Plan, device, amp, channels_last, normalize, tta, cpu: CpuThreads):
    """Yield (first tile index, outputs (B, C, h, w) float32 numpy) for the plan's batches, in order."""
    import torch

    src, grid, weights = plan.source, plan.grid, plan.weights
    th, tw = grid.tile
    on_cuda = device.type == "cuda"
    affine = Affine(normalize, src.dtype, device, src.shape[2])
    if isinstance(model, torch.nn.Module):  # any other callable on tensors is used as it is
        model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
        model.eval()
    buffer = None if on_cuda else torch.empty((plan.batch_size, th, tw, src.shape[2]), dtype=torch.float32)

    def read_batches():
        for start in range(0, len(grid), plan.batch_size):
            windows = [(int(y), int(x), th, tw) for y, x in grid.positions[start : start + plan.batch_size]]
            src.prefetch(windows)
            windows = [src.read(*window) for window in windows]
            # on CUDA the compact integer tiles are stacked and pinned here, on the reader thread
            yield start, as_tensor(np.stack(windows)).pin_memory() if on_cuda else windows

    def cast_into_buffer(windows):
        """The windows as one float32 batch in the reused buffer (no page faults per batch): torch's
        multi-threaded ``copy_`` where it can view a window (read-only ones too), otherwise numpy's
        single pass."""
        batch = buffer[: len(windows)]
        for b, window in enumerate(windows):
            view = reading_view(window)
            if view is not None:
                batch[b].copy_(view)
            else:  # flipped views, uint16 on older torch: no intermediate copy
                np.copyto(batch[b].numpy(), window, casting="unsafe")
        return batch

    mixed = autocast(amp, device)
    # without TTA the slices' outputs are stitched one after another: no copy of the batch's output to join them
    forward = cpu.forward(model, join=tta is not None)
    out_h, out_w = weights.tile_out
    for start, tiles in prefetch(read_batches(), depth=1) if on_cuda else read_batches():
        # per batch: the caller's code between yields runs in its own mode and on its own threads
        with torch.inference_mode(), cpu.small():  # per tile: one thread
            batch = tiles.to(device, non_blocking=True).float() if on_cuda else cast_into_buffer(tiles)
        with torch.inference_mode(), cpu.model():  # the whole batch: the free cores; the forward in slices
            batch = affine(batch)
            # NCHW view of NHWC memory (channels-last strides): no copy, and convolutions on CPU
            # run several times faster on it than on contiguous NCHW. Models that need
            # contiguous input must call .contiguous() themselves.
            batch = batch.permute(0, 3, 1, 2)
            if affine.then is not None:
                batch = affine.then(batch)
            with mixed:
                preds = [tta(forward, batch, start)] if tta is not None else forward(batch)
            rows = sum(len(pred) if isinstance(pred, torch.Tensor) and pred.ndim else -1 for pred in preds)
            for pred in preds:
                if not isinstance(pred, torch.Tensor) or pred.ndim != 4 or rows != len(batch) or tuple(pred.shape[2:]) != (out_h, out_w):
                    got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
                    raise ShapeError(f"the model returned {got} for a batch of {tuple(batch.shape)}; expected (N, C, {out_h}, {out_w}) "
                                     f"(tile {grid.tile} / out_scale {weights.scale}); set out_scale to the model's output stride")
            # on CPU a pred may be a view of the buffer (an identity model): it is stitched before the next fill
            outputs = [pred.float().cpu().numpy() for pred in preds]
        for part in outputs:
            yield start, part
            start += len(part)


def _tile_outputs(model, plan: _Plan, device, amp, channels_last, normalize, tta, progress, cpu: CpuThreads):
    """Yield (tile index, output (C, h, w)) for every tile, in order (``device`` resolved)."""
    from tqdm.auto import tqdm

    outputs = _batch_outputs(model, plan, device, amp, channels_last, normalize, tta, cpu)
    if device.type == "cuda":
        outputs = prefetch(outputs)
    with tqdm(total=len(plan.grid), unit="tile", desc="sliding window", disable=not progress, leave=False) as bar:
        for start, pred in outputs:
            for b in range(len(pred)):
                yield start + b, pred[b]
            bar.update(len(pred))


def _add(stitcher: Stitcher, weights: TileWeights, k: int, values: np.ndarray) -> None:
    top, bottom, left, right = weights.crop(k)
    y, x = weights.origin(k)
    stitcher.add(y + top, x + left, values[:, top:bottom, left:right], weights.weight(k)[top:bottom, left:right])


def _pop_in_chunks(stitcher: Stitcher, upto: int, rows: int, cpu: CpuThreads) -> Iterator[tuple[int, np.ndarray]]:
    """Hand out the finished rows below ``upto`` as strips of at most ``rows`` rows each."""
    while stitcher.row0 < upto:
        row0 = stitcher.row0
        with cpu.small():
            strip = stitcher.pop(min(upto, row0 + rows))
        yield row0, strip


def _tta_hook(tta):
    """``tta`` as the batches call it: None, a callable, or views (names, tables) cycled per window."""
    if tta is None or callable(tta):
        return tta
    from kagglekit.tta import ViewCycle

    return ViewCycle(tta)


def _channels_when_empty(out_channels) -> int:
    if out_channels is not None:
        return positive_int("out_channels", out_channels)
    raise InvalidArgumentError("skip_mask kept no tile, so the number of output channels is unknown: pass out_channels=")


_DOC_ARGS = """
    model: a torch module (or any callable on tensors) taking (N, C, tile_h, tile_w) float32 and
        returning (N, C_out, tile_h / out_scale, tile_w / out_scale). A module is moved to ``device``
        and put in eval mode; any other callable is used as it is. On a CPU it is called on slices of
        each batch, from several threads at once: one that keeps Python state across calls must lock it
        (or pass ``threads=1``: one slice at a time, on the caller's thread).
    source: a path, an (H, W, C) numpy array or a :class:`~kagglekit.io.Source` (image or volume:
        a volume's slices are the channels).
    tile, stride: tile size and step in input pixels (int or (h, w)); stride defaults to the tile.
    batch_size: tiles per forward pass.
    window, sigma: blending window (``"constant"``, ``"linear"``, ``"gaussian"``; sigma as a fraction
        of the tile).
    margin: input pixels discarded on every tile side that is not on the image border.
    out_scale: the model's output stride (e.g. 32 for logits at 1/32); the output is ceil(H / out_scale).
    device, amp: where to run, and autocast: False (float32), True / "auto" (float16 on CUDA, bfloat16
        on a CPU with native bfloat16), "fp16", "bf16" (see :mod:`kagglekit.infer.batching`).
    channels_last: convert the model's weights to channels-last memory. The batch itself is always
        an NCHW tensor with channels-last strides (the tiles' own NHWC memory, not copied).
    normalize: ``"scale"`` (integers divided by their dtype's maximum), ``"imagenet"``, None or
        ``"none"`` (cast only), a (mean, std) pair applied after scaling, or a callable on the float
        NCHW batch (the names of :mod:`kagglekit.infer.batching`).
    skip_mask, min_fraction: a low-resolution (h, w) bool mask of the image; tiles with less than
        ``min_fraction`` of it are not run and their pixels get ``fill_value``.
    out_channels: needed only when ``skip_mask`` keeps no tile.
    dtype: accumulator dtype (float32, or float16 to halve the output's memory; with ``skip_mask`` the
        sums stay float32, see :class:`~kagglekit.tiling.Stitcher`).
    tta: None, a callable ``tta(model, batch, first_index)`` returning the model output for the
        batch (e.g. :class:`kagglekit.tta.ViewCycle`), or D4 views (``"d4"``, a list of names), cycled
        per window as ``ViewCycle(tta)``. Views without an inverse (crops, scales, random views) are
        refused: a dense output cannot be mapped back through them.
    progress: show a tqdm progress bar.
    threads: torch threads for the CPU-side work. None / ``"auto"`` (default): the per-tile steps (each
        tile's cast into the batch, its stitching) on one thread, the batch's normalisation on the cores
        that are free (this process's cores less those other processes keep busy, measured while it runs),
        the model's forward in one slice of the batch per usable core, each on one thread, as many at once
        as cores are free; on CUDA the GPU work is unchanged. An integer N: kagglekit's steps on N threads,
        N slices at once. The caller's ``torch.get_num_threads()`` is restored on return. Outputs are the
        same bits either way; why this is the default: :mod:`kagglekit._threads` and bench/bench_load.py.
"""


def sliding_window(model, source, tile=512, stride=None, batch_size: int = 8, window: str = "gaussian",
                   margin: int = 0, out_scale: int = 1, device=None, amp: bool = False, channels_last: bool = False,
                   normalize="scale", skip_mask=None, progress: bool = True, *, sigma: float = 0.125,
                   min_fraction: float = 0.05, fill_value: float = 0.0, out_channels: int | None = None,
                   dtype=np.float32, tta=None, out: np.ndarray | None = None, threads=None) -> np.ndarray:
    """Run ``model`` over ``source`` tile by tile and return the stitched (C_out, H_out, W_out) array of ``dtype``.

    Holds the output, one float batch, one batch of raw windows (views, for an in-memory image; on
    CUDA up to three batches, pinned) and the model; never a float copy of the source.

    ``out``: an existing (C_out, H_out, W_out) C-contiguous array of ``dtype`` to write the result
    into (and return), e.g. one array reused over a loop of same-sized images, so that each image
    does not allocate and first-touch (page-fault) a new output.
    """
    plan = _plan(source, tile, stride, batch_size, window, sigma, margin, out_scale, skip_mask, min_fraction)
    H, W = plan.weights.out_shape
    dtype, tta = accumulator_dtype(dtype), _tta_hook(tta)  # checked before the model runs
    if out is not None:  # checked before the model runs; the channel count is checked again by the stitcher
        checked_out(out, None, H, W, dtype)
    device = resolve_device(device)
    cpu = CpuThreads(threads, device)
    stitcher = None
    with cpu.small():
        for k, values in _tile_outputs(model, plan, device, amp, channels_last, normalize, tta, progress, cpu):
            if stitcher is None:
                stitcher = Stitcher(len(values), H, W, normalized=plan.weights.normalized, dtype=dtype, fill_value=fill_value, out=out)
            _add(stitcher, plan.weights, k, values)
        if stitcher is None:
            result = out if out is not None else np.empty((_channels_when_empty(out_channels), H, W), dtype)
            result.fill(fill_value)
            return result
        return stitcher.finish()


def iter_strips(model, source, tile=512, stride=None, batch_size: int = 8, window: str = "gaussian",
                margin: int = 0, out_scale: int = 1, device=None, amp: bool = False, channels_last: bool = False,
                normalize="scale", skip_mask=None, progress: bool = True, *, sigma: float = 0.125,
                min_fraction: float = 0.05, fill_value: float = 0.0, out_channels: int | None = None,
                dtype=np.float32, tta=None, strip_rows: int = 128, threads=None) -> Iterator[tuple[int, np.ndarray]]:
    """Like :func:`sliding_window`, but yield ``(first_row, strip)`` pairs as rows are finished.

    ``strip`` is a new float32 (C_out, rows, W_out) array of output rows ``first_row:first_row + rows``
    with ``rows <= strip_rows``; the strips tile the output from top to bottom. Holds one tile-row of
    output (tile_h / out_scale rows) and one strip, so memory does not grow with the image's height.
    """
    dtype, tta = accumulator_dtype(dtype), _tta_hook(tta)  # checked before the model runs
    plan = _plan(source, tile, stride, batch_size, window, sigma, margin, out_scale, skip_mask, min_fraction)
    weights, grid = plan.weights, plan.grid
    H, W = weights.out_shape
    strip_rows = positive_int("strip_rows", strip_rows)
    device = resolve_device(device)
    cpu = CpuThreads(threads, device)  # each step in its own scope: the caller's code between yields runs on its threads
    stitcher = None
    for k, values in _tile_outputs(model, plan, device, amp, channels_last, normalize, tta, progress, cpu):
        if stitcher is None:
            stitcher = Stitcher(len(values), H, W, normalized=weights.normalized, dtype=dtype,
                                fill_value=fill_value, max_rows=weights.tile_out[0])
        if k == 0 or grid.index[k][0] != grid.index[k - 1][0]:  # a new tile row: rows above it are final
            yield from _pop_in_chunks(stitcher, weights.origin(k)[0] + weights.crop(k)[0], strip_rows, cpu)
        with cpu.small():
            _add(stitcher, weights, k, values)
    if stitcher is None:
        channels, step = _channels_when_empty(out_channels), strip_rows
        for row0 in range(0, H, step):
            yield row0, np.full((channels, min(step, H - row0), W), fill_value, np.float32)
        return
    yield from _pop_in_chunks(stitcher, H, strip_rows, cpu)


sliding_window.__doc__ += "\n    Args:" + _DOC_ARGS
iter_strips.__doc__ += "\n    Args:" + _DOC_ARGS
