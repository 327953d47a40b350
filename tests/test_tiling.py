"""kagglekit.tiling against brute force written plainly here."""

from __future__ import annotations

import numpy as np
import pytest

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.tiling import (
    Stitcher, TileGrid, TileWeights, blend_window, block_mean, detect_background, draw_grid, overlay_mask, swap_background,
    tissue_mask, window_1d,
)

from helpers import plain_starts

RNG = np.random.default_rng(1)


@pytest.mark.parametrize(("shape", "tile", "stride"), [((100, 131), 32, 24), ((64, 64), 32, 32), ((10, 7), 32, 16), ((257, 33), (64, 16), (48, 5))])
def test_grid_covers_every_pixel_and_snaps_to_the_edge(shape, tile, stride):
    grid = TileGrid(shape, tile, stride)
    th, tw = (tile, tile) if np.isscalar(tile) else tile
    sy, sx = (stride, stride) if np.isscalar(stride) else stride
    expected = [(y, x) for y in plain_starts(shape[0], th, sy) for x in plain_starts(shape[1], tw, sx)]
    assert [tuple(p) for p in grid.positions] == expected
    covered = np.zeros(shape, int)
    for y, x in grid.positions:
        covered[y : y + th, x : x + tw] += 1
    assert covered.min() >= 1


def test_overlap_fraction_and_multiple():
    assert TileGrid((1000, 1000), 512, overlap=0.25).stride == (384, 384)
    grid = TileGrid((1000, 999), 64, 32, multiple=32)
    assert np.all(grid.positions % 32 == 0)
    assert grid.positions[:, 1].max() + 64 >= 999


def test_bad_grids():
    for kwargs, match in [
        (dict(shape=(100, 100), tile=32, stride=40), "larger than the tile"),
        (dict(shape=(0, 100), tile=32), "empty"),
        (dict(shape=(100, 100), tile=0), "tile"),
        (dict(shape=(100, 100), tile=32, stride=8, overlap=0.5), "not both"),
        (dict(shape=(100, 100), tile=30, multiple=8), "multiples"),
    ]:
        with pytest.raises(KagglekitError, match=match):
            TileGrid(**kwargs)


@pytest.mark.parametrize(("shape", "mask_shape", "tile", "stride"), [
    ((100, 130), (13, 17), 12, 4),   # cells of 7.7 x 7.6 pixels: tiles cut cells
    ((450, 300), (5, 4), 100, 90),   # tiles graze cells
    ((37, 41), (40, 50), 16, 9),     # a mask larger than the image
    ((10, 7), (3, 3), 32, 16),       # an image smaller than a tile
])
def test_mask_fraction_equals_the_full_resolution_fraction(shape, mask_shape, tile, stride):
    grid = TileGrid(shape, tile, stride)
    mask = RNG.random(mask_shape) < 0.4
    H, W = shape
    full = np.array([[mask[r * mask_shape[0] // H, c * mask_shape[1] // W] for c in range(W)] for r in range(H)])
    brute = np.array([full[y : y + tile, x : x + tile].mean() for y, x in grid.positions])  # numpy clips at the edge
    np.testing.assert_allclose(grid.mask_fraction(mask), brute, atol=1e-12)


def test_subset_refuses_a_wrong_keep():
    grid = TileGrid((100, 100), 32, 32)
    assert len(grid.subset([])) == 0 and len(grid.subset(np.array([3, 1, 3]))) == 2
    with pytest.raises(ShapeError, match="one value per tile"):
        grid.subset(np.ones(len(grid) - 1, bool))
    with pytest.raises(InvalidArgumentError, match="integers"):
        grid.subset([0.5])
    for outside in ([-1, 0], [len(grid)]):
        with pytest.raises(InvalidArgumentError, match=f"outside 0..{len(grid) - 1}"):
            grid.subset(outside)


def test_select_and_top_k_match_brute_force():
    shape, tile = (300, 400), 50
    grid = TileGrid(shape, tile, 40)
    mask = RNG.random((30, 40)) < 0.3
    full = np.kron(mask, np.ones((10, 10), bool))  # the mask at full resolution
    brute = np.array([full[y : y + tile, x : x + tile].mean() for y, x in grid.positions])
    np.testing.assert_allclose(grid.mask_fraction(mask), brute)
    kept = grid.select(mask, 0.35)
    assert [tuple(p) for p in kept.positions] == [tuple(p) for p, f in zip(grid.positions, brute) if f >= 0.35]
    assert not kept.is_full and grid.is_full
    top = grid.top_k(brute, 5)
    assert sorted(brute[[i for i, p in enumerate(grid.positions) if tuple(p) in {tuple(q) for q in top.positions}]]) == sorted(np.sort(brute)[-5:])
    with pytest.raises(ShapeError):
        grid.top_k(brute[:-1], 3)


def test_top_k_never_keeps_a_tile_without_tissue_and_honours_a_minimum():
    """An all-white slide has no tile to keep; with tissue in a corner, only the tiles that touch it
    (brute force: the mask at full resolution, tile by tile) and reach the minimum fraction are kept."""
    grid = TileGrid((200, 200), 50)
    assert len(grid.top_k(grid.mask_fraction(np.zeros((20, 20), bool)), 4)) == 0
    assert len(grid.select(np.zeros((20, 20), bool), 0.0)) == 0
    mask = np.zeros((20, 20), bool)
    mask[:7, :7] = True  # 70 x 70 pixels of tissue: tile (0, 0) full, (0, 1) and (1, 0) 40 %, (1, 1) 16 %
    full = np.kron(mask, np.ones((10, 10), bool))
    brute = np.array([full[y : y + 50, x : x + 50].mean() for y, x in grid.positions])
    top = grid.top_k(grid.mask_fraction(mask), 10)
    assert sorted(map(tuple, top.positions)) == sorted(tuple(p) for p, f in zip(grid.positions, brute) if f > 0)
    top = grid.top_k(grid.mask_fraction(mask), 10, min_fraction=0.3)
    assert sorted(map(tuple, top.positions)) == sorted(tuple(p) for p, f in zip(grid.positions, brute) if f >= 0.3)
    with pytest.raises(InvalidArgumentError, match="min_fraction must be in"):
        grid.top_k(brute, 3, min_fraction=1.5)


def test_windows_closed_form():
    np.testing.assert_allclose(window_1d("linear", 5), [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])
    g = window_1d("gaussian", 8, 0.25)
    centre = 3.5
    np.testing.assert_allclose(g, np.exp(-0.5 * ((np.arange(8) - centre) / 2.0) ** 2))
    np.testing.assert_allclose(blend_window("constant", (3, 4)), np.ones((3, 4)))
    with pytest.raises(InvalidArgumentError, match="unknown window"):
        window_1d("hann", 8)


@pytest.mark.parametrize("window", ["constant", "linear", "gaussian"])
@pytest.mark.parametrize("margin", [0, 4])
def test_full_grid_weights_sum_to_one(window, margin):
    grid = TileGrid((70, 91), 32, 20)
    weights = TileWeights(grid, window, margin=margin)
    total = np.zeros((70 + 32, 91 + 32))
    for k, (y, x) in enumerate(grid.positions):
        total[y : y + 32, x : x + 32] += weights.weight(k)
    np.testing.assert_allclose(total[:70, :91], 1, atol=1e-6)


def test_margin_leaving_a_gap_is_refused():
    with pytest.raises(InvalidArgumentError, match="stride <= tile - 2 \\* margin"):
        TileWeights(TileGrid((100, 100), 32, 30), margin=4)
    with pytest.raises(InvalidArgumentError, match="less than half"):
        TileWeights(TileGrid((100, 100), 32, 8), margin=16)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("max_rows", [None, 40])
def test_stitcher_matches_brute_force(dtype, max_rows):
    H, W, C, t = 100, 80, 2, 30
    tiles = [(y, x) for y in range(0, 71, 20) for x in range(0, 51, 25)]
    values = {p: RNG.random((C, t, t)) for p in tiles}
    weights = {p: RNG.random((t, t)) + 0.1 for p in tiles}
    num, den = np.zeros((C, H, W)), np.zeros((H, W))
    for y, x in tiles:
        num[:, y : y + t, x : x + t] += values[y, x] * weights[y, x]
        den[y : y + t, x : x + t] += weights[y, x]
    expected = np.where(den > 0, num / np.where(den > 0, den, 1), -1)
    st = Stitcher(C, H, W, dtype=dtype, fill_value=-1, max_rows=max_rows)
    strips = []
    for i, (y, x) in enumerate(tiles):
        st.add(y, x, values[y, x].astype(np.float32), weights[y, x].astype(np.float32))
        if max_rows and i + 1 < len(tiles) and tiles[i + 1][0] != y:
            strips.append(st.pop(tiles[i + 1][0]))
    strips.append(st.finish())
    got = np.concatenate(strips, axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-2 if dtype == np.float16 else 1e-5, atol=1e-2 if dtype == np.float16 else 1e-6)


def test_stitcher_takes_any_strided_float_views():
    """Flipped (negative-stride), strided and float64/float16 inputs all add ``values * weight``."""
    values, weight = RNG.random((2, 12, 16)), RNG.random((12, 16))
    st = Stitcher(2, 20, 20, normalized=True)
    st.add(3, 2, values[:, ::-1, ::-1], weight[::-1].astype(np.float16))
    st.add(5, 0, values[:, ::2, ::2].astype(np.float32), None)
    expected = np.zeros((2, 20, 20))
    expected[:, 3:15, 2:18] += values[:, ::-1, ::-1] * weight[::-1].astype(np.float16)
    expected[:, 5:11, 0:8] += values[:, ::2, ::2].astype(np.float32)
    np.testing.assert_allclose(st.finish(), expected, rtol=1e-6, atol=1e-6)


def test_stitcher_refuses_tiles_beyond_its_rows():
    st = Stitcher(1, 100, 10, max_rows=20, normalized=True)
    with pytest.raises(InvalidArgumentError, match="pop finished rows"):
        st.add(10, 0, np.ones((1, 20, 10), np.float32))


def _disk_slide(background: str) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:200, :300]
    truth = (yy - 100) ** 2 + (xx - 140) ** 2 < 70**2
    bg = 240 if background == "white" else 10
    fg = 150 if background == "white" else 120
    image = np.full((200, 300, 3), bg, np.uint8)
    image[truth] = [fg, fg - 40, fg + 30]
    noisy = np.clip(image.astype(int) + RNG.integers(-12, 12, image.shape), 0, 255).astype(np.uint8)
    return noisy, truth


@pytest.mark.parametrize("background", ["white", "black"])
def test_tissue_mask_and_background(background):
    image, truth = _disk_slide(background)
    assert detect_background(image) == background
    mask = tissue_mask(image)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.97
    swapped = swap_background(image, mask)
    assert np.all(swapped[~mask] == 0) and np.array_equal(swapped[mask], image[mask])


def test_pictures_have_the_right_shape():
    image, truth = _disk_slide("white")
    over = overlay_mask(image, truth[::2, ::2])
    assert over.shape == image.shape and over.dtype == np.uint8
    assert np.abs(over[truth].astype(int) - image[truth]).mean() > 5  # the tint is visible
    grid = TileGrid((2000, 3000), 500)
    drawn = draw_grid(image, grid)
    assert drawn[0, :, 1].max() == 255  # the top edge of the first tile row is drawn in green


def test_stitcher_pops_spans_longer_than_its_ring():
    st = Stitcher(1, 50, 4, max_rows=8, fill_value=-1)
    st.add(3, 0, np.full((1, 4, 4), 2.0, np.float32), np.ones((4, 4), np.float32))
    first = st.pop(30)
    assert first.shape == (1, 30, 4)
    expected = np.full((30, 4), -1.0)
    expected[3:7] = 2.0
    np.testing.assert_array_equal(first[0], expected)
    assert np.all(st.pop(40) == -1)
    st.add(40, 0, np.full((1, 5, 4), 3.0, np.float32), np.ones((5, 4), np.float32))
    rest = st.finish()
    assert rest.shape == (1, 10, 4) and np.all(rest[0, :5] == 3) and np.all(rest[0, 5:] == -1)


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(12, dtype=">f4").reshape(3, 4),
    np.arange(60000, 60012, dtype=np.uint16).reshape(3, 4),
    np.arange(2**40, 2**40 + 12, dtype=np.uint64).reshape(3, 4),
    np.arange(12, dtype=np.int16).reshape(3, 4)[::-1, ::2],
], ids=["float32", "big-endian", "uint16", "uint64", "flipped"])
def test_as_tensor_views_or_copies_with_the_same_values(array):
    from kagglekit._tensors import as_tensor, shareable

    tensor = as_tensor(array)
    np.testing.assert_array_equal(tensor.numpy(), array)
    assert (tensor.data_ptr() == array.ctypes.data) == shareable(array)  # a view exactly when shareable
    read_only = array.copy()
    read_only.flags.writeable = False
    assert not shareable(read_only)
    np.testing.assert_array_equal(as_tensor(read_only).numpy(), array)


def test_stitcher_drops_what_lies_outside_and_refuses_what_lands_on_handed_out_rows():
    values, weight = RNG.random((1, 6, 5)).astype(np.float32), RNG.random((6, 5)).astype(np.float32)
    st = Stitcher(1, 10, 8, normalized=True, max_rows=10)
    st.add(-2, -1, values, weight)  # the rows above 0 and the column left of 0 lie outside: dropped
    expected = np.zeros((10, 8), np.float32)
    expected[0:4, 0:4] = (values[0] * weight)[2:, 1:]
    np.testing.assert_allclose(st.pop(3)[0], expected[:3], rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="already handed out"):
        st.add(0, 0, np.ones((1, 2, 2), np.float32))  # rows 0-1, both handed out
    st.add(0, 0, np.zeros((1, 2, 2), np.float32))  # zeros may land anywhere
    with pytest.raises(ShapeError, match="weight must be"):
        st.add(4, 0, values, weight[:5])


def test_float16_sums_with_a_weight_map_keep_tile_corners():
    """A sub-grid (weight map) adds raw gaussian weights of about 1e-7 at tile corners: summed in
    float16 they vanish. A constant model output must come back as that constant (closed form)."""
    grid = TileGrid((96, 128), 32, 24)
    sub = grid.subset(np.arange(0, len(grid), 2))
    weights = TileWeights(sub, "gaussian")
    assert not weights.normalized
    for out in (None, np.full((1, 96, 128), np.nan, np.float16)):
        st = Stitcher(1, 96, 128, dtype=np.float16, fill_value=-1, out=out)
        for k in range(len(sub)):
            y, x = weights.origin(k)
            st.add(y, x, np.full((1, 32, 32), 0.01, np.float32), weights.weight(k))
        result = st.finish()
        assert result.dtype == np.float16 and (out is None or result is out)
        covered = result != -1
        assert covered.mean() > 0.5
        np.testing.assert_allclose(result[covered], 0.01, rtol=1e-3)


def test_swap_background_takes_opencv_style_uint8_masks():
    image, truth = _disk_slide("white")
    np.testing.assert_array_equal(swap_background(image, truth.astype(np.uint8)), swap_background(image, truth))


def test_tissue_mask_of_12_bit_data_in_uint16_equals_the_16_bit_one():
    image, _ = _disk_slide("white")
    twelve = image.astype(np.uint16) * 16 + 8  # 0..4095, as 12-bit cameras store it
    np.testing.assert_array_equal(tissue_mask(twelve), tissue_mask(image.astype(np.uint16) * 257))


@pytest.mark.parametrize("dtype", [np.float32, bool, np.uint8])
def test_block_mean_equals_numpy_over_each_block(dtype):
    values = (np.random.default_rng(0).random((10, 7)) * 3).astype(dtype)
    got = block_mean(values, 4)
    want = [[values[y : y + 4, x : x + 4].astype(np.float64).mean() for x in range(0, 7, 4)] for y in range(0, 10, 4)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ShapeError, match="non-empty"):
        block_mean(np.zeros((0, 3)), 2)
