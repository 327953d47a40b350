"""Bags as TRIDENT / CLAM .h5 files: files written here with h5py in those tools' layout load with equal
features, coords (their (x, y) as our (y, x)) and attributes; save_bag(format="h5") writes that layout back."""

from __future__ import annotations

import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="h5py is in the dev extra: pip install -e '.[dev]'")

from kagglekit.mil import Bag, BagError, load_bag, save_bag  # noqa: E402

RNG = np.random.default_rng(7)
N, D = 23, 16
FEATURES = RNG.normal(size=(N, D)).astype(np.float32)
XY = RNG.integers(0, 90_000, (N, 2)).astype(np.int64)  # (x, y) at level 0, as both tools store them
# the attributes TRIDENT's coords_to_h5 / extract_patch_features write
TRIDENT_COORDS = {"patch_size": 256, "patch_size_level0": 512, "level0_magnification": 40, "target_magnification": 20,
                  "overlap": 0, "name": "slide-7", "savetodir": "/out/20x_256px_0px_overlap/patches",
                  "level0_width": 91_000, "level0_height": 90_500}
TRIDENT_FEATURES = {"name": "slide-7", "savetodir": "/out/20x_256px_0px_overlap/features_uni_v1"}
# the attributes CLAM's process_contour writes on a patch file's coords
CLAM_COORDS = {"patch_size": 256, "patch_level": 1, "downsample": [4.0, 4.0], "downsampled_level_dim": [22_750, 22_625],
               "level_dim": [22_750, 22_625], "name": "slide-7", "save_path": "/out/patches"}


def write_h5(path, features=FEATURES, coords=XY, coords_attrs=None, features_attrs=None, skip=()):
    with h5py.File(path, "w") as f:
        for name, data, attrs in (("features", features, features_attrs), ("coords", coords, coords_attrs)):
            if name not in skip:
                dataset = f.create_dataset(name, data=data)
                dataset.attrs.update(attrs or {})
    return path


@pytest.mark.parametrize("batch_axis", [False, True], ids=["(N, D)", "(1, N, D)"])
def test_a_trident_file_loads_with_its_features_coords_and_attributes(tmp_path, batch_axis):
    path = write_h5(tmp_path / "slide-7.h5", FEATURES[None] if batch_axis else FEATURES, XY.astype(np.int64),
                    TRIDENT_COORDS, TRIDENT_FEATURES)
    bag = load_bag(path, backbone="uni_v1")
    np.testing.assert_array_equal(bag.features, FEATURES.astype(np.float16))
    np.testing.assert_array_equal(bag.coords, XY[:, ::-1])  # (y, x)
    assert (bag.tile, bag.scale, bag.backbone, bag.slide) == (512, 0.5, "uni_v1", "slide-7")
    assert bag.selection == {"coords_attrs": TRIDENT_COORDS, "features_attrs": TRIDENT_FEATURES}


def test_a_clam_patch_level_gives_the_level0_tile_and_scale(tmp_path):
    bag = load_bag(write_h5(tmp_path / "s.h5", coords=XY.astype(np.int32), coords_attrs=CLAM_COORDS), backbone="resnet50_trunc")
    assert (bag.tile, bag.scale, bag.slide) == (256 * 4, 0.25, "slide-7")
    np.testing.assert_array_equal(bag.coords, XY[:, ::-1])
    assert bag.selection["coords_attrs"] == CLAM_COORDS


def test_a_file_without_patch_attributes_needs_tile_and_scale_and_a_wrong_one_is_refused(tmp_path):
    path = write_h5(tmp_path / "clam_features.h5", coords=XY.astype(np.int32))  # CLAM's h5_files/: no attributes
    with pytest.raises(BagError, match=r"does not record its tiles' tile .* pass tile="):
        load_bag(path, backbone="uni_v1")
    bag = load_bag(path, backbone="uni_v1", tile=224, scale=1.0)
    assert (bag.tile, bag.scale, bag.slide) == (224, 1.0, "clam_features")  # no name attribute: the file's stem
    trident = write_h5(tmp_path / "t.h5", coords_attrs=TRIDENT_COORDS)
    with pytest.raises(BagError, match="records tile=512, not 256"):
        load_bag(trident, backbone="uni_v1", tile=256)


def test_a_bag_round_trips_through_h5_in_the_tools_layout(tmp_path):
    original = Bag(FEATURES, XY[:, ::-1], tile=448, scale=0.5, backbone="timm/resnet18", slide="10077",
                   selection={"rule": "top_k", "k": N})
    path = save_bag(original, tmp_path / "10077.h5", format="h5")
    loaded = load_bag(path, backbone="timm/resnet18")
    np.testing.assert_array_equal(loaded.features, original.features)
    np.testing.assert_array_equal(loaded.coords, original.coords)
    assert (loaded.tile, loaded.scale, loaded.backbone, loaded.slide, loaded.selection) == (
        448, 0.5, "timm/resnet18", "10077", {"rule": "top_k", "k": N})
    with h5py.File(path, "r") as f:  # what TRIDENT's readers see
        assert f["features"].dtype == np.float32 and f["coords"].dtype == np.int64
        np.testing.assert_array_equal(f["features"][()], original.features.astype(np.float32))
        np.testing.assert_array_equal(f["coords"][()], XY)
        assert (f["coords"].attrs["patch_size_level0"], f["coords"].attrs["patch_size"], f["coords"].attrs["name"]) == (448, 224, "10077")
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(BagError, match="holds features of 'timm/resnet18', not 'uni_v1'"):
        load_bag(path, backbone="uni_v1")


def test_a_trident_file_saved_again_keeps_its_datasets_and_attributes(tmp_path):
    source = write_h5(tmp_path / "in.h5", coords_attrs=TRIDENT_COORDS, features_attrs=TRIDENT_FEATURES)
    out = save_bag(load_bag(source, backbone="uni_v1"), tmp_path / "out.h5", format="h5")
    with h5py.File(source, "r") as a, h5py.File(out, "r") as b:
        np.testing.assert_array_equal(b["features"][()], a["features"][()].astype(np.float16))  # a Bag holds float16
        np.testing.assert_array_equal(b["coords"][()], a["coords"][()])
        for name in ("features", "coords"):
            assert {k: np.asarray(v).tolist() for k, v in b[name].attrs.items()} == {k: np.asarray(v).tolist() for k, v in a[name].attrs.items()}


@pytest.mark.parametrize("features, coords, skip, words", [
    (FEATURES, XY, ("features",), "has no 'features' dataset"),
    (FEATURES, XY, ("coords",), "has no 'coords' dataset"),
    (np.stack([FEATURES, FEATURES]), XY, (), r"\(N, D\) or \(1, N, D\).*\(2, 23, 16\)"),
    (FEATURES[0], XY[:1], (), r"got \(16,\) and \(1, 2\)"),  # a slide embedding
    (FEATURES, XY[:-1], (), r"got \(23, 16\) and \(22, 2\)"),
    (FEATURES, np.c_[XY, XY[:, :1]], (), r"got \(23, 16\) and \(23, 3\)"),
])
def test_malformed_files_are_named(tmp_path, features, coords, skip, words):
    path = write_h5(tmp_path / "bad.h5", features, coords, TRIDENT_COORDS, skip=skip)
    with pytest.raises(BagError, match=words):
        load_bag(path, backbone="uni_v1")


def test_a_truncated_file_is_a_bag_error(tmp_path):
    whole = write_h5(tmp_path / "s.h5", coords_attrs=TRIDENT_COORDS).read_bytes()
    (tmp_path / "cut.h5").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BagError, match="may be truncated"):
        load_bag(tmp_path / "cut.h5", backbone="uni_v1")


def test_a_foreign_file_needs_the_backbones_name(tmp_path):
    with pytest.raises(BagError, match=r"does not record the patch encoder .* backbone='uni_v1'"):
        load_bag(write_h5(tmp_path / "s.h5", coords_attrs=TRIDENT_COORDS))


def test_missing_h5py_is_named_with_the_extra(tmp_path, monkeypatch):
    path = write_h5(tmp_path / "s.h5", coords_attrs=TRIDENT_COORDS)
    bag = load_bag(path, backbone="uni_v1")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(BagError, match=r"needs h5py: pip install 'kagglekit\[h5\]'"):
        load_bag(path, backbone="uni_v1")
    with pytest.raises(BagError, match=r"needs h5py: pip install 'kagglekit\[h5\]'"):
        save_bag(bag, tmp_path / "out.h5", format="h5")
    assert not (tmp_path / "out.h5").exists() and not list(tmp_path.glob(".*.tmp"))
