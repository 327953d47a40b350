"""kagglekit.infer against the whole-image model (pointwise models) and a brute-force weighted average."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.infer import iter_strips, sliding_window
from kagglekit.io import open_volume
from kagglekit.tiling import Stitcher

from helpers import plain_starts

RNG = np.random.default_rng(2)
torch.manual_seed(0)
POINTWISE = torch.nn.Conv2d(3, 2, 1).eval()
SPATIAL = torch.nn.Conv2d(3, 2, 5, padding=2).eval()


def whole(model, image: np.ndarray, scale: float = 255.0) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None] / scale)[0].numpy()


def plain_window(kind, n, sigma=0.125):
    i = np.arange(n)
    if kind == "constant":
        return np.ones(n)
    if kind == "linear":
        return np.minimum(i + 1, n - i).astype(float)
    return np.maximum(np.exp(-0.5 * ((i - (n - 1) / 2) / (sigma * n)) ** 2), 1e-6)


def brute_force(model, image, tile, stride, window, margin, keep=None, fill=0.0):
    """Every tile through the model, weighted by its window with the inner crop, averaged; plainly."""
    H, W, _ = image.shape
    padded = np.zeros((H + tile, W + tile, image.shape[2]), image.dtype)
    padded[:H, :W] = image
    num, den = None, np.zeros((H + tile, W + tile))
    for y in plain_starts(H, tile, stride):
        for x in plain_starts(W, tile, stride):
            if keep is not None and not keep(y, x):
                continue
            out = whole(model, padded[y : y + tile, x : x + tile])
            wy, wx = plain_window(window, tile), plain_window(window, tile)
            if y > 0:
                wy[:margin] = 0
            if y + tile < H:
                wy[tile - margin :] = 0
            if x > 0:
                wx[:margin] = 0
            if x + tile < W:
                wx[tile - margin :] = 0
            w = np.outer(wy, wx)
            num = np.zeros((out.shape[0], *den.shape)) if num is None else num
            num[:, y : y + tile, x : x + tile] += out * w
            den[y : y + tile, x : x + tile] += w
    result = np.full(num.shape, float(fill))
    np.divide(num, den, out=result, where=den > 0)
    return result[:, :H, :W]


@pytest.mark.parametrize("window", ["constant", "linear", "gaussian"])
@pytest.mark.parametrize("margin", [0, 4])
@pytest.mark.parametrize("stride", [16, 23])
@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (70, 101), (9, 30)])
def test_pointwise_model_equals_whole_image(window, margin, stride, shape):
    image = RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = sliding_window(POINTWISE, image, tile=32, stride=stride, batch_size=3, window=window, margin=margin, progress=False)
    assert out.shape == (2, *shape) and out.dtype == np.float32
    np.testing.assert_allclose(out, whole(POINTWISE, image), atol=1e-5, rtol=0)


@pytest.mark.parametrize("window", ["constant", "gaussian"])
@pytest.mark.parametrize("margin", [0, 6])
def test_spatial_model_equals_brute_force_average(window, margin):
    image = RNG.integers(0, 256, (75, 90, 3), dtype=np.uint8)
    out = sliding_window(SPATIAL, image, tile=32, stride=18, batch_size=4, window=window, margin=margin, progress=False)
    np.testing.assert_allclose(out, brute_force(SPATIAL, image, 32, 18, window, margin), atol=1e-5, rtol=0)


def test_skip_mask_fills_skipped_tiles_and_averages_kept_ones():
    image = RNG.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    mask = np.zeros((12, 12), bool)
    mask[:4, :6] = True  # tissue in the top-left only
    out = sliding_window(SPATIAL, image, tile=32, stride=24, window="gaussian", skip_mask=mask, min_fraction=0.1, fill_value=-7, progress=False)

    def keep(y, x):
        region = np.kron(mask, np.ones((8, 8), bool))[y : y + 32, x : x + 32]
        return region.mean() >= 0.1

    expected = brute_force(SPATIAL, image, 32, 24, "gaussian", 0, keep=keep, fill=-7)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert (out == -7).any() and (out != -7).any()


@pytest.mark.parametrize(("margin", "masked", "strip_rows"), [(0, None, 128), (4, None, 7), (4, "random", 128), (0, "bottom", 16)])
def test_strips_concatenate_to_the_in_memory_result(margin, masked, strip_rows):
    image = RNG.integers(0, 256, (150, 77, 3), dtype=np.uint8)
    mask = {None: None, "random": RNG.random((15, 8)) < 0.5, "bottom": np.arange(15)[:, None] * np.ones((1, 8)) >= 12}[masked]
    kwargs = dict(tile=32, stride=20, margin=margin, skip_mask=mask, window="linear", progress=False, batch_size=5)
    full = sliding_window(SPATIAL, image, **kwargs)
    strips = list(iter_strips(SPATIAL, image, strip_rows=strip_rows, **kwargs))
    rows = [r for r, _ in strips]
    assert max(s.shape[1] for _, s in strips) <= strip_rows
    assert rows == sorted(rows) and rows[0] == 0 and len(strips) > 3
    np.testing.assert_array_equal(np.concatenate([s for _, s in strips], axis=1), full)


@pytest.mark.parametrize("scale", [2, 8])
def test_out_scale_equals_average_pooling(scale):
    image = RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    pool = torch.nn.AvgPool2d(scale)
    out = sliding_window(pool, image, tile=32, stride=16, out_scale=scale, window="gaussian", progress=False)
    expected = F.avg_pool2d(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, scale)[0].numpy()
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_out_scale_with_ragged_edges_pads_with_zeros():
    image = RNG.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    out = sliding_window(torch.nn.AvgPool2d(4), image, tile=16, stride=8, out_scale=4, progress=False)
    padded = np.zeros((48, 72, 3), np.uint8)
    padded[:45, :70] = image
    expected = F.avg_pool2d(torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255, 4)[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_volume_slices_are_channels(tmp_path):
    import tifffile

    stack = RNG.integers(0, 65535, (7, 50, 60), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "v.tif", stack, tile=(16, 16))
    model = torch.nn.Conv2d(4, 1, 1).eval()
    out = sliding_window(model, open_volume(tmp_path / "v.tif", z=slice(2, 6)), tile=32, stride=24, progress=False)
    np.testing.assert_allclose(out, whole(model, np.moveaxis(stack[2:6], 0, 2), 65535.0), atol=1e-5)


def test_normalize_modes():
    image = RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = sliding_window(POINTWISE, image, tile=32, stride=16, normalize=(mean, std), progress=False)
    x = (image / 255.0 - mean) / std
    np.testing.assert_allclose(out, whole(POINTWISE, x.astype(np.float32), 1.0), atol=1e-5)
    out = sliding_window(POINTWISE, image, tile=32, stride=16, normalize=lambda t: t * 2, progress=False)
    np.testing.assert_allclose(out, whole(POINTWISE, image, 255.0 / 2), atol=1e-5)
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # the names mean the same as in the pipeline's TOML
    out = sliding_window(POINTWISE, image, tile=32, stride=16, normalize="imagenet", progress=False)
    x = (image / 255.0 - imagenet[0]) / imagenet[1]
    np.testing.assert_allclose(out, whole(POINTWISE, x.astype(np.float32), 1.0), atol=1e-5)
    out = sliding_window(POINTWISE, image, tile=32, stride=16, normalize="none", progress=False)
    np.testing.assert_allclose(out, whole(POINTWISE, image, 1.0), rtol=1e-6, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match="normalize"):
        sliding_window(POINTWISE, image, tile=32, normalize="zscore", progress=False)


@pytest.mark.parametrize("model", [lambda x: x, torch.nn.Identity()], ids=["callable", "module"])
def test_identity_model_output_survives_buffer_reuse(model):
    """A model that returns its input hands back a view of the reused batch buffer."""
    image = RNG.integers(0, 256, (90, 75, 3), dtype=np.uint8)
    expected = np.moveaxis(image, 2, 0) / 255.0
    out = sliding_window(model, image, tile=32, stride=20, batch_size=3, progress=False)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    strips = [s for _, s in iter_strips(model, image, tile=32, stride=20, batch_size=3, strip_rows=16, progress=False)]
    np.testing.assert_allclose(np.concatenate(strips, axis=1), expected, atol=1e-6)


@pytest.mark.parametrize("dtype, normalize, scale", [
    (np.uint8, None, 1.0), (np.int16, "scale", 32767.0), (np.uint32, "scale", 4294967295.0),
    (np.float32, "scale", 1.0), (np.float64, None, 1.0),
])
def test_source_dtypes_and_read_only_memory(dtype, normalize, scale):
    """Integer sources are divided by their dtype's maximum (unless normalize=None), float sources
    taken as they are; a read-only array (like a memory-mapped file) is read without a warning."""
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    image = (RNG.integers(0, info.max, (45, 50, 3), endpoint=True) if info else RNG.normal(size=(45, 50, 3))).astype(dtype)
    image.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sliding_window(POINTWISE, image, tile=32, stride=24, normalize=normalize, progress=False)
    np.testing.assert_allclose(out, whole(POINTWISE, image.astype(np.float64), scale), rtol=1e-5, atol=1e-5)


def test_a_once_only_warning_of_the_model_is_shown_once_over_a_read_only_source():
    """Python's "default" action shows a warning once per code location; reading a read-only source
    must not reset that record each batch (``warnings.catch_warnings`` does), or the model's warning
    would come back on every batch."""
    image = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image.flags.writeable = False

    def warning_model(batch):
        warnings.warn("model says so once", UserWarning)
        return POINTWISE(batch)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        sliding_window(warning_model, image, tile=32, stride=16, batch_size=2, progress=False)  # 9 tiles, 5 batches
    assert [str(w.message) for w in caught] == ["model says so once"]


def test_tta_hook_gets_each_batch_and_its_first_index():
    image = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    seen = []

    def flip_tta(model, batch, first):
        seen.append((first, len(batch)))
        return model(batch.flip(-1)).flip(-1)

    out = sliding_window(POINTWISE, image, tile=32, stride=16, batch_size=4, tta=flip_tta, progress=False)
    np.testing.assert_allclose(out, whole(POINTWISE, image), atol=1e-5)
    assert seen == [(0, 4), (4, 4), (8, 1)]


def _never_called(batch):
    raise AssertionError("the model ran although the arguments were bad")


def test_bad_arguments_are_clear():
    image = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cases = [
        (dict(tile=32, stride=40), "larger than the tile"),
        (dict(tile=32, stride=16, margin=16), "less than half"),
        (dict(tile=32, window="hann"), "unknown window"),
        (dict(tile=32, batch_size=0), "batch_size"),
        (dict(tile=32, out_scale=3), "multiples of 3"),
    ]
    for kwargs, match in cases:
        with pytest.raises(KagglekitError, match=match):
            sliding_window(POINTWISE, image, progress=False, **kwargs)
    with pytest.raises(ShapeError, match="empty"):
        sliding_window(POINTWISE, np.zeros((0, 10, 3), np.uint8), tile=32, progress=False)
    with pytest.raises(ShapeError, match="out_scale"):
        sliding_window(torch.nn.AvgPool2d(2), image, tile=32, progress=False)
    with pytest.raises(InvalidArgumentError, match="out_channels"):
        sliding_window(POINTWISE, image, tile=32, skip_mask=np.zeros((4, 4), bool), progress=False)
    with pytest.raises(InvalidArgumentError, match="needs 1 or 3 values"):
        sliding_window(POINTWISE, image, tile=32, normalize=([0.5, 0.5], [0.2, 0.2]), progress=False)
    with pytest.raises(InvalidArgumentError, match="float16, float32 or float64"):
        sliding_window(_never_called, image, tile=32, dtype=np.int32, progress=False)
    filled = sliding_window(POINTWISE, image, tile=32, skip_mask=np.zeros((4, 4), bool), out_channels=2, fill_value=3, progress=False)
    assert filled.shape == (2, 64, 64) and np.all(filled == 3)


def test_model_errors_propagate_from_the_reader_thread():
    from kagglekit.io import Source

    class BrokenSource(Source):
        shape, dtype, name = (64, 64, 3), np.dtype(np.uint8), "broken"

        def read(self, *args, **kwargs):
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        sliding_window(POINTWISE, BrokenSource(), tile=32, progress=False)


def test_view_cycle_gives_each_window_the_next_view():
    from kagglekit.tta import ViewCycle, views

    image = RNG.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    out = sliding_window(SPATIAL, image, tile=32, stride=20, batch_size=3, tta=ViewCycle("d4"), progress=False)
    d4 = views("d4")
    tile_index = iter(range(10**6))

    class PerTileView(torch.nn.Module):
        """The oracle's model: tile number k (in grid order) seen through view k % 8, mapped back."""

        def forward(self, x):
            v = d4[next(tile_index) % 8]
            return v.invert(SPATIAL(v.apply(x)))

    expected = brute_force(PerTileView(), image, 32, 20, "gaussian", 0)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    pointwise = sliding_window(POINTWISE, image, tile=32, stride=20, tta=ViewCycle("d4"), progress=False)
    np.testing.assert_allclose(pointwise, whole(POINTWISE, image), atol=1e-5)


def test_prefetch_stops_its_thread_when_the_consumer_leaves_early():
    import threading
    import time

    from kagglekit.infer.batching import prefetch as _prefetch

    def leave_after_one():
        stream = _prefetch(iter(range(2)), depth=1)
        assert next(stream) == 0
        time.sleep(0.5)  # the producer queues item 1, then waits to hand over its end marker
        stream.close()

    runner = threading.Thread(target=leave_after_one, daemon=True)
    runner.start()
    runner.join(timeout=10)
    assert not runner.is_alive(), "closing the consumer left the prefetch thread blocked"


def test_callers_grad_mode_is_untouched_between_strips():
    """Inference mode is entered per batch: the caller's loop body, and two interleaved generators,
    run in the caller's own grad mode."""
    image = RNG.integers(0, 256, (64, 40, 3), dtype=np.uint8)
    first = iter_strips(POINTWISE, image, tile=16, stride=12, strip_rows=8, progress=False)
    second = iter_strips(POINTWISE, image, tile=16, stride=12, strip_rows=8, progress=False)
    w = torch.ones(2, requires_grad=True)
    for (_, a), (_, b) in zip(first, second):
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        (w * float(a.sum() + b.sum())).sum().backward()
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled() and w.grad is not None


def test_float32_batches_whatever_torchs_default_dtype():
    image = RNG.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = sliding_window(POINTWISE, image, tile=16, stride=12, progress=False)
    finally:
        torch.set_default_dtype(previous)
    np.testing.assert_allclose(out, whole(POINTWISE, image), atol=1e-5)


@pytest.mark.parametrize("masked", [None, "some", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_out_array_is_overwritten_with_the_fresh_result(masked, dtype):
    """A reused, dirty ``out`` ends up equal to a fresh result, for full grids, sub-grids (a weight
    map) and a mask that keeps no tile, and is the array returned."""
    image = RNG.integers(0, 256, (70, 101, 3), dtype=np.uint8)
    mask = {None: None, "some": RNG.random((7, 10)) < 0.5, "none": np.zeros((7, 10), bool)}[masked]
    kwargs = dict(tile=32, stride=20, window="gaussian", skip_mask=mask, fill_value=-2, dtype=dtype, progress=False)
    fresh = sliding_window(SPATIAL, image, out_channels=2, **kwargs)
    out = np.full((2, 70, 101), np.nan, dtype)
    for _ in range(2):  # the second call starts from the first call's result
        got = sliding_window(SPATIAL, image, out=out, **kwargs)
        assert got is out
        np.testing.assert_array_equal(out, fresh)


def test_bad_out_arrays_are_clear():
    image = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for bad in (np.empty((2, 40, 51), np.float32), np.empty((2, 40, 50), np.float64), np.empty((40, 50), np.float32), [0.0]):
        with pytest.raises(ShapeError, match=r"out must be a \(C_out, 40, 50\) array of float32"):
            sliding_window(POINTWISE, image, tile=32, out=bad, progress=False)
    with pytest.raises(ShapeError, match=r"\(2, 40, 50\)"):  # the channels are checked once the model has answered
        sliding_window(POINTWISE, image, tile=32, out=np.empty((3, 40, 50), np.float32), progress=False)
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        sliding_window(POINTWISE, image, tile=32, out=np.empty((2, 40, 100), np.float32)[:, :, ::2], progress=False)
    with pytest.raises(InvalidArgumentError, match="in-memory"):
        Stitcher(2, 40, 50, max_rows=8, out=np.empty((2, 40, 50), np.float32))
