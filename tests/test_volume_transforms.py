"""Depth transforms on (H, W, D) volumes, against plain-loop brute force."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from kagglekit.augment import (
    DepthShift,
    RandomSliceWindow,
    SliceShuffle,
    shift_depth,
    shuffle_slices,
    slice_window,
)
from kagglekit.errors import KagglekitError

from helpers import seeded_compose


def volume(depth=10, seed=0):
    """Slice z holds the value z + 1 everywhere plus noise, so each slice is recognisable."""
    rng = np.random.default_rng(seed)
    return (np.arange(1, depth + 1) * 20 + rng.integers(0, 5, (6, 5, depth))).astype(np.uint8)


def brute_shift(vol, shift, fill):
    depth = vol.shape[2]
    out = np.empty_like(vol)
    for z in range(depth):
        src = z - shift
        if 0 <= src < depth:
            out[..., z] = vol[..., src]
        elif fill == "edge":
            out[..., z] = vol[..., 0 if src < 0 else depth - 1]
        else:
            out[..., z] = 0
    return out


@pytest.mark.parametrize("fill", ["edge", "zero"])
@pytest.mark.parametrize("shift", [-3, -1, 0, 2, 9, 12])
def test_shift_depth_matches_loop(shift, fill):
    vol = volume()
    np.testing.assert_array_equal(shift_depth(vol, shift, fill), brute_shift(vol, shift, fill))


def test_shuffle_slices_permutes_within_groups_only():
    vol = volume(11)
    out = shuffle_slices(vol, 4, np.random.default_rng(3))
    for start in range(0, 11, 4):
        stop = min(start + 4, 11)
        original = sorted(vol[..., z].tobytes() for z in range(start, stop))
        shuffled = sorted(out[..., z].tobytes() for z in range(start, stop))
        assert original == shuffled
    assert not np.array_equal(out, vol)
    np.testing.assert_array_equal(out, shuffle_slices(vol, 4, np.random.default_rng(3)))
    np.testing.assert_array_equal(shuffle_slices(vol, 1, np.random.default_rng(0)), vol)


def test_slice_window_is_the_slice():
    vol = volume()
    np.testing.assert_array_equal(slice_window(vol, 4, 3), vol[:, :, 3:7])
    for start in (7, -1, 1.0):
        with pytest.raises(KagglekitError):
            slice_window(vol, 4, start)


def test_depth_shift_transform_covers_every_shift_and_leaves_mask():
    vol = volume()
    mask = np.ones(vol.shape[:2], np.uint8)
    transform = seeded_compose([DepthShift(max_shift=2, fill="edge", p=1.0)], 0)
    seen = set()
    for _ in range(60):
        out = transform(image=vol, mask=mask)
        shifts = [s for s in range(-2, 3) if np.array_equal(out["image"], brute_shift(vol, s, "edge"))]
        assert len(shifts) == 1
        seen.add(shifts[0])
        np.testing.assert_array_equal(out["mask"], mask)
    assert seen == {-2, -1, 0, 1, 2}


def test_random_slice_window_covers_every_start():
    vol = volume(8)
    transform = seeded_compose([RandomSliceWindow(depth=5)], 1)
    starts = set()
    for _ in range(60):
        out = transform(image=vol)["image"]
        matches = [s for s in range(4) if np.array_equal(out, vol[..., s : s + 5])]
        assert len(matches) == 1
        starts.add(matches[0])
    assert starts == {0, 1, 2, 3}
    with pytest.raises(KagglekitError):
        A.Compose([RandomSliceWindow(depth=9)])(image=vol)


def test_slice_shuffle_transform_is_seeded():
    vol = volume(12)
    a = seeded_compose([SliceShuffle(group=3, p=1.0)], 5)(image=vol)["image"]
    b = seeded_compose([SliceShuffle(group=3, p=1.0)], 5)(image=vol)["image"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DepthShift(max_shift=-1),
        lambda: DepthShift(fill="wrap"),
        lambda: SliceShuffle(group=0),
        lambda: RandomSliceWindow(depth=0),
        lambda: shift_depth(np.zeros((4, 4)), 1),
    ],
)
def test_bad_arguments(make):
    with pytest.raises(KagglekitError):
        make()
