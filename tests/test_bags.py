"""Bags of tile features: saved and loaded whole, refused when from another backbone or damaged."""

from __future__ import annotations

import numpy as np
import pytest

from kagglekit.errors import ShapeError, WeightsNotFoundError
from kagglekit.mil import Bag, BagError, load_bag, save_bag

RNG = np.random.default_rng(2)


def bag(n=37, d=64, backbone="timm/resnet18"):
    return Bag(RNG.normal(size=(n, d)).astype(np.float32), RNG.integers(0, 50000, (n, 2)), tile=256, scale=0.5,
               backbone=backbone, slide="10077", selection={"rule": "top_k", "k": n, "min_tissue": 0.25, "candidates": 900})


def test_a_bag_round_trips_with_float16_features_and_its_metadata(tmp_path):
    original = bag()
    loaded = load_bag(save_bag(original, tmp_path / "b.safetensors"), backbone="timm/resnet18")
    assert loaded.features.dtype == np.float16 and np.array_equal(loaded.features, original.features)
    assert loaded.coords.dtype == np.int64 and np.array_equal(loaded.coords, original.coords)
    assert (loaded.tile, loaded.scale, loaded.backbone, loaded.slide, loaded.selection, loaded.feature_dim, len(loaded)) == (
        256, 0.5, "timm/resnet18", "10077", original.selection, 64, 37)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def test_a_bag_from_another_backbone_is_refused_by_name(tmp_path):
    path = save_bag(bag(backbone="timm/vit_small_patch16_224"), tmp_path / "b.safetensors")
    with pytest.raises(BagError, match="holds features of 'timm/vit_small_patch16_224', not 'timm/resnet18'"):
        load_bag(path, backbone="timm/resnet18")
    assert load_bag(path).backbone == "timm/vit_small_patch16_224"  # without backbone= it loads


def test_damaged_foreign_and_missing_files_are_bag_errors(tmp_path):
    path = save_bag(bag(), tmp_path / "b.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BagError, match="may be truncated"):
        load_bag(tmp_path / "cut.safetensors")
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BagError, match="not a kagglekit bag"):
        load_bag(tmp_path / "other.safetensors")
    with pytest.raises(WeightsNotFoundError, match="bag not found"):
        load_bag(tmp_path / "none.safetensors")


@pytest.mark.parametrize("change, words", [
    (dict(features=np.zeros((3, 4), np.float32), coords=np.zeros((2, 2), np.int64)), "one per feature row"),
    (dict(features=np.zeros((3,), np.float32), coords=np.zeros((3, 2), np.int64)), "(N, D) float"),
    (dict(features=np.full((2, 4), np.nan, np.float32), coords=np.zeros((2, 2), np.int64)), "NaN or inf"),
    (dict(tile=0), "tile must be a positive integer"),
    (dict(backbone=""), "needs the backbone's name"),
])
def test_a_malformed_bag_is_refused(change, words):
    kwargs = dict(features=np.zeros((2, 4), np.float32), coords=np.zeros((2, 2), np.int64), tile=64, scale=1.0,
                  backbone="timm/resnet18", slide="s")
    kwargs.update(change)
    with pytest.raises(ShapeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Bag(**kwargs)


def test_bags_are_read_and_written_without_torch():
    from helpers import modules_loaded_by

    assert modules_loaded_by("import kagglekit.mil; kagglekit.mil.load_bag, kagglekit.mil.save_bag", ("torch",)) == []
