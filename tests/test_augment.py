"""Presets, per-image normalisation and the RGB-only gate."""

from __future__ import annotations

import warnings

import albumentations as A
import cv2
import numpy as np
import pytest

from kagglekit.augment import (
    PRESETS,
    ColourSkippedWarning,
    PerImageNormalize,
    RGBOnly,
    StainJitter,
    normalize_per_image,
    preset,
)
from kagglekit.errors import KagglekitError

from helpers import modules_loaded_by, seeded_compose

CHANNELS = (1, 3, 35)


def blocky_image(rng, channels, dtype, h=72, w=60):
    """Piecewise-constant image (8x8 blocks) of levels k/255, uint8 or float32 in [0, 1]."""
    levels = rng.integers(1, 256, (h // 8 + 1, w // 8 + 1, channels)).astype(np.uint8)
    image = np.repeat(np.repeat(levels, 8, axis=0), 8, axis=1)[:h, :w]
    return image if dtype == np.uint8 else image.astype(np.float32) / 255


def painted_mask(image):
    """A mask painted from the image: its middle channel's level, as uint8."""
    channel = image[..., image.shape[2] // 2]
    return channel if channel.dtype == np.uint8 else np.rint(channel * 255).astype(np.uint8)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_geometric_part_keeps_image_and_mask_aligned(name, channels, dtype):
    rng = np.random.default_rng(channels)
    transform = preset(name, size=48, interpolation=cv2.INTER_NEAREST, geometric_only=True)
    image = blocky_image(rng, channels, dtype)
    changed = 0
    for _ in range(12):
        out = transform(image=image, mask=painted_mask(image))
        assert out["image"].shape == (48, 48, channels) and out["image"].dtype == dtype
        np.testing.assert_array_equal(out["mask"], painted_mask(out["image"]))
        changed += not np.array_equal(out["image"], image[:48, :48])
    assert changed, "the geometric transforms never moved a pixel"


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_full_preset_runs_on_any_channel_count(name, channels, dtype):
    rng = np.random.default_rng(0)
    transform = preset(name, size=32)
    image = blocky_image(rng, channels, dtype, 40, 36)
    mask = rng.integers(0, 3, image.shape[:2]).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColourSkippedWarning)
        for _ in range(6):
            out = transform(image=image, mask=mask)
            assert out["image"].shape == (32, 32, channels) and out["image"].dtype == dtype
            assert out["mask"].shape == (32, 32) and set(np.unique(out["mask"])) <= {0, 1, 2}


def test_d4_preset_yields_exactly_the_eight_symmetries():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (16, 16, 2), dtype=np.uint8)
    symmetries = [np.rot90(f, k) for f in (image, image[:, ::-1]) for k in range(4)]
    transform = preset("d4")
    seen = set()
    for _ in range(120):
        out = transform(image=image)["image"]
        matches = [i for i, s in enumerate(symmetries) if np.array_equal(out, s)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))


def test_normalize_flag_gives_float32_zero_mean_unit_std_per_channel():
    image = blocky_image(np.random.default_rng(2), 5, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColourSkippedWarning)  # hue/saturation skips 5 channels, by design
        out = preset("light", normalize=True)(image=image)["image"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 1)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1)), 1, atol=1e-3)


def test_unknown_preset_and_bad_arguments_raise():
    with pytest.raises(KagglekitError, match="d4"):
        preset("medium")
    with pytest.raises(KagglekitError):
        preset("d4", size=0)
    with pytest.raises(KagglekitError):
        preset("d4", interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- per-image normalisation


def test_normalize_per_image_matches_numpy_closed_forms():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 65535, (20, 30, 4)).astype(np.uint16)
    x = image.astype(np.float64)
    z = normalize_per_image(image)
    np.testing.assert_allclose(z, (x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-6), rtol=1e-4, atol=1e-4)
    whole = normalize_per_image(image, per_channel=False)
    np.testing.assert_allclose(whole, (x - x.mean()) / (x.std() + 1e-6), rtol=1e-4, atol=1e-4)
    scaled = normalize_per_image(image, percentiles=(2, 98))
    lo, hi = np.percentile(x, 2, axis=(0, 1)), np.percentile(x, 98, axis=(0, 1))
    np.testing.assert_allclose(scaled, (np.clip(x, lo, hi) - lo) / (hi - lo + 1e-6), atol=1e-5)
    assert scaled.dtype == np.float32


def test_per_image_normalize_transform_leaves_mask():
    image = blocky_image(np.random.default_rng(4), 3, np.uint8)
    mask = painted_mask(image)
    out = A.Compose([PerImageNormalize(percentiles=(1, 99))])(image=image, mask=mask)
    np.testing.assert_array_equal(out["mask"], mask)
    np.testing.assert_allclose(out["image"], normalize_per_image(image, percentiles=(1, 99)))
    with pytest.raises(KagglekitError):
        normalize_per_image(image, percentiles=(50, 10))


# ---------------------------------------------------------------- RGB-only gate


def test_rgb_only_applies_to_rgb_and_warns_once_otherwise():
    inner = A.ToGray(p=1.0)
    gate = RGBOnly(inner)
    rgb = blocky_image(np.random.default_rng(5), 3, np.uint8)
    np.testing.assert_array_equal(gate(image=rgb)["image"], inner(image=rgb)["image"])
    volume = blocky_image(np.random.default_rng(6), 35, np.uint8)
    with pytest.warns(ColourSkippedWarning, match="35-channel"):
        out = gate(image=volume)["image"]
    np.testing.assert_array_equal(out, volume)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColourSkippedWarning)
        gate(image=volume)  # second skip: counted, not warned again
    assert gate.skipped == 2


def test_rgb_only_follows_the_compose_seed():
    rgb = blocky_image(np.random.default_rng(7), 3, np.uint8)

    def run(seed):
        return seeded_compose([RGBOnly(A.HueSaturationValue(p=1.0))], seed)(image=rgb)["image"]

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_stain_jitter_transform_is_seeded_and_keeps_float_range():
    rgb = blocky_image(np.random.default_rng(8), 3, np.float32)
    first = seeded_compose([StainJitter(stains=np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), p=1.0)], 1)
    second = seeded_compose([StainJitter(stains=np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), p=1.0)], 1)
    a, b = first(image=rgb)["image"], second(image=rgb)["image"]
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1 and not np.array_equal(a, rgb)


def test_importing_augment_is_cheap():
    assert modules_loaded_by("import kagglekit.augment", ("albumentations", "torch", "cv2")) == []
