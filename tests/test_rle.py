"""RLE against a plain pixel loop, and round trips."""

from __future__ import annotations

import numpy as np
import pytest

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.kaggle.rle import _join_integers, rle_decode, rle_encode

from helpers import plain_rle_decode


def loop_encode(mask, order):
    """Oracle: walk the pixels one by one in the given order, 1-indexed."""
    pixels = [int(v) for v in (mask.T if order == "F" else mask).ravel()]
    out, start = [], None
    for i, v in enumerate(pixels + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out += [start + 1, i - start]
            start = None
    return " ".join(map(str, out))


@pytest.mark.parametrize("order", ["C", "F"])
def test_encode_matches_a_plain_loop_on_small_masks(order):
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = rng.integers(1, 9, size=2)
        mask = rng.random((h, w)) < rng.random()
        assert rle_encode(mask, order) == loop_encode(mask, order)
        assert rle_encode(mask.astype(np.uint8), order) == loop_encode(mask, order)


def test_known_example_and_empty_mask():
    mask = np.array([[0, 1, 1], [1, 0, 1]])
    assert rle_encode(mask) == "2 3 6 1"  # row-major pixels 2,3,4 and 6
    assert rle_encode(mask, "F") == "2 2 5 2"  # column-major: 0 1 | 1 0 | 1 1
    assert rle_encode(np.zeros((4, 5))) == ""
    assert rle_encode(np.ones((2, 2), bool)) == "1 4"
    assert np.array_equal(rle_decode("", (2, 3)), np.zeros((2, 3), np.uint8))


@pytest.mark.parametrize("order", ["C", "F"])
def test_round_trip_on_random_masks(order):
    rng = np.random.default_rng(1)
    for density in (0.0, 0.01, 0.5, 0.99, 1.0):
        mask = rng.random((97, 131)) < density
        decoded = rle_decode(rle_encode(mask, order), mask.shape, order)
        assert decoded.dtype == np.uint8 and decoded.flags.c_contiguous
        assert np.array_equal(decoded, mask)


def test_decode_matches_a_plain_loop():
    rng = np.random.default_rng(2)
    for order in ("C", "F"):
        mask = rng.random((13, 7)) < 0.4
        rle = loop_encode(mask, order)
        expected = plain_rle_decode(rle, mask.shape, order)
        assert np.array_equal(rle_decode(rle, mask.shape, order, dtype=bool), expected)


def test_integer_formatting_matches_str_join_across_chunks_and_widths():
    rng = np.random.default_rng(3)
    for high in (9, 10**6, 2**32 + 5, 10**18):
        values = rng.integers(0, high, 1000, dtype=np.int64)
        values[:3] = [0, high - 1, 10]
        assert _join_integers(values, chunk=77) == " ".join(map(str, values.tolist()))


@pytest.mark.parametrize(
    "rle, words",
    [
        ("1 2 3", "odd number"),
        ("0 2", "start below 1"),
        ("3 0", "length below 1"),
        ("5 3", "past the last pixel"),
        ("4 1 1 1", "sorted"),
        ("1 3 2 1", "sorted"),
        ("1 x", "'x'"),
        ("1 2 x 3", "'x'"),  # numpy 1.x's parser stops at 'x', keeps "1 2" and only warns
        ("1 2.5", "'2.5'"),
        ("1 -2", "length below 1"),
        ("1 99999999999999999999999", "past the last pixel"),
        ("9223372036854775807 9223372036854775807", "past the last pixel"),
    ],
)
def test_decode_rejects_malformed_strings(rle, words):
    with pytest.raises(InvalidArgumentError, match=words) as info:
        rle_decode(rle, (2, 3))
    assert isinstance(info.value, KagglekitError)


def test_bad_arguments_raise():
    with pytest.raises(ShapeError, match="2-D"):
        rle_encode(np.zeros((2, 2, 1)))
    with pytest.raises(ShapeError):
        rle_encode(np.zeros((0, 3)))
    with pytest.raises(InvalidArgumentError, match="0 and 1"):
        rle_encode(np.array([[0.2, 1.0]]))
    with pytest.raises(InvalidArgumentError, match="order"):
        rle_encode(np.zeros((2, 2)), order="K")
    with pytest.raises(ShapeError):
        rle_decode("1 1", (0, 3))
    with pytest.raises(ShapeError):
        rle_decode("1 1", "ab")
    with pytest.raises(InvalidArgumentError, match="string"):
        rle_decode(None, (2, 2))
