"""Stain tools on synthetic Beer-Lambert tiles whose stain vectors and concentrations are known."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2lab

from kagglekit.augment import MacenkoNormalizer, ReinhardNormalizer, StainAugmenter, macenko_stains
from kagglekit.errors import KagglekitError

IO = 240
RUIFROK = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
OTHER = np.array([[0.55, 0.20], [0.78, 0.93], [0.30, 0.30]])


def unit(stains):
    return stains / np.linalg.norm(stains, axis=0)


def beer_lambert_tile(stains, seed=0, side=96, e_scale=1.0):
    """RGB uint8 tile I = Io * exp(-C @ S.T) - 1 with pure-H, pure-E, mixed and background pixels.

    Pure-eosin pixels are dense enough (c >= 2.2) for their red OD to pass the beta = 0.15 threshold.
    Returns the tile and the true (pixels, 2) concentrations.
    """
    rng = np.random.default_rng(seed)
    n = side * side
    kind = rng.choice(4, n, p=[0.25, 0.25, 0.4, 0.1])
    c = np.zeros((n, 2))
    c[kind == 0, 0] = rng.uniform(0.6, 1.5, (kind == 0).sum())
    c[kind == 1, 1] = rng.uniform(2.2, 3.0, (kind == 1).sum())
    c[kind == 2] = rng.uniform(0.3, 1.2, ((kind == 2).sum(), 2))
    c[:, 1] *= e_scale
    rgb = IO * np.exp(-c @ unit(stains).T) - 1
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(side, side, 3), c


def cosines(a, b):
    return (unit(a) * unit(b)).sum(axis=0)


@pytest.mark.parametrize("stains", [RUIFROK, OTHER])
def test_macenko_recovers_the_stain_matrix(stains):
    tile, _ = beer_lambert_tile(stains)
    estimate = macenko_stains(tile, io=IO)
    assert estimate.shape == (3, 2)
    assert np.all(cosines(estimate, stains) >= 0.99), cosines(estimate, stains)


def test_macenko_normalizer_maps_stains_and_concentrations_onto_the_reference():
    reference, c_ref = beer_lambert_tile(OTHER, seed=1)
    source, _ = beer_lambert_tile(RUIFROK, seed=2, e_scale=0.8)
    normalizer = MacenkoNormalizer().fit(reference)
    assert np.all(cosines(normalizer.stains_, OTHER) >= 0.99)
    out = normalizer.transform(source)
    assert out.dtype == np.uint8 and out.shape == source.shape and not normalizer.last_skipped
    assert np.all(cosines(macenko_stains(out), OTHER) >= 0.99)
    od = -np.log((out.reshape(-1, 3) + 1.0) / IO)
    c_out = np.linalg.lstsq(unit(OTHER), od.T, rcond=None)[0].T
    np.testing.assert_allclose(np.percentile(c_out, 99, axis=0), np.percentile(c_ref, 99, axis=0), rtol=0.05)


def lab_stats(rgb):
    lab = rgb2lab(rgb)
    return lab.mean(axis=(0, 1)), lab.std(axis=(0, 1))


def test_reinhard_matches_reference_lab_mean_and_std():
    reference, _ = beer_lambert_tile(OTHER, seed=3)
    source, _ = beer_lambert_tile(RUIFROK, seed=4, e_scale=0.7)
    out = ReinhardNormalizer().fit(reference).transform(source)
    mean_ref, std_ref = lab_stats(reference)
    mean_out, std_out = lab_stats(out)
    mean_src, _ = lab_stats(source)
    assert np.abs(mean_src - mean_ref).max() > 3  # the test would notice no-op
    np.testing.assert_allclose(mean_out, mean_ref, atol=1.0)
    np.testing.assert_allclose(std_out, std_ref, rtol=0.05)


def test_stain_augmenter_identity_is_exact_and_jitter_follows_closed_form():
    tile, c_true = beer_lambert_tile(RUIFROK, seed=5)
    augmenter = StainAugmenter(stains=unit(RUIFROK))
    np.testing.assert_array_equal(augmenter.apply(tile, [1, 1], [0, 0]), tile)
    scale, shift = np.array([1.15, 0.85]), np.array([0.03, -0.02])
    out = augmenter.apply(tile, scale, shift)
    od = -np.log((out.reshape(-1, 3) + 1.0) / IO)
    c_out = np.linalg.lstsq(unit(RUIFROK), od.T, rcond=None)[0].T
    expected = c_true * scale + shift
    # uint8 rounding of dark pixels (input and output) blurs concentrations; judge pixels >= 30 in both
    bright = (IO * np.exp(-expected @ unit(RUIFROK).T) >= 30).all(axis=1) & (tile.reshape(-1, 3) >= 30).all(axis=1)
    error = np.abs(c_out - expected)[bright]
    assert bright.mean() > 0.5
    assert np.median(error) < 0.005 and error.max() < 0.05


def test_stain_augmenter_draws_are_seeded():
    tile, _ = beer_lambert_tile(RUIFROK, seed=6)
    augmenter = StainAugmenter()
    a = augmenter(tile, np.random.default_rng(3))
    np.testing.assert_array_equal(a, augmenter(tile, np.random.default_rng(3)))
    assert not np.array_equal(a, tile)


@pytest.mark.parametrize(
    "tile",
    [
        np.full((64, 64, 3), 255, np.uint8),  # white background (TMA)
        np.full((64, 64, 3), 238, np.uint8),
        np.zeros((1, 1, 3), np.uint8) + 120,  # tiny
        beer_lambert_tile(RUIFROK, side=4)[0],  # 16 pixels of tissue
        np.zeros((0, 0, 3), np.uint8),
    ],
)
def test_background_or_tiny_tiles_come_back_unchanged_and_flagged(tile):
    reference, _ = beer_lambert_tile(OTHER, seed=7)
    tools = [MacenkoNormalizer().fit(reference), ReinhardNormalizer().fit(reference), StainAugmenter(),
             StainAugmenter(stains=RUIFROK)]  # fixed stains: the tile is still checked for tissue
    for tool in tools:
        out = tool.transform(tile) if hasattr(tool, "transform") else tool(tile, np.random.default_rng(0))
        assert out is tile and tool.last_skipped and tool.last_reason
        (tool.transform(reference) if hasattr(tool, "transform") else tool(reference, np.random.default_rng(0)))
        assert not tool.last_skipped and tool.last_reason is None


def test_bad_input_raises():
    background = np.full((32, 32, 3), 250, np.uint8)
    with pytest.raises(KagglekitError, match="reference"):
        MacenkoNormalizer().fit(background)
    with pytest.raises(KagglekitError):
        ReinhardNormalizer().fit(background)
    with pytest.raises(KagglekitError, match="fit"):
        MacenkoNormalizer().transform(background)
    with pytest.raises(KagglekitError, match="uint8"):
        macenko_stains(background.astype(np.float32))
    with pytest.raises(KagglekitError):
        macenko_stains(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(KagglekitError):
        StainAugmenter(stains=np.ones((2, 3)))
