"""Volumes through `segment` (ink detection): fragment masks, per-volume normalisation, output at 1/32,
and many models under a residency limit, each against numpy computed plainly here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile

from kagglekit.pipeline import segment

from competitions import RNG, TrackedChannel0Logit, checkpoint, config, read_csv, write_png
from helpers import plain_rle_decode


def fragment(tmp_path, volume: np.ndarray, mask: np.ndarray | None, name: str = "frag") -> None:
    """test/<name>/volume.tif ((Z, H, W) pages), test/<name>/mask.png, and a one-row sample submission."""
    folder = tmp_path / "test" / name
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "volume.tif", volume, photometric="minisblack")
    if mask is not None:
        write_png(folder / "mask.png", np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, axis=2))
    sample = tmp_path / "sample_submission.csv"
    rows = sample.read_text().splitlines()[1:] if sample.exists() else []
    sample.write_text("\n".join(["id,rle", *rows, f"{name},"]) + "\n")


def ellipse(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return ((y - h / 2) / (0.45 * h)) ** 2 + ((x - w / 2) / (0.4 * w)) ** 2 <= 1


VOLUME_INPUTS = {"glob": "test/*/volume.tif", "kind": "volume", "id_from": "parent", "mask": "test/{id}/mask.png"}


def decoded(out_dir, shape, name="frag"):
    rows = {r["id"]: r["rle"] for r in read_csv(out_dir / "submission.csv")}
    return plain_rle_decode(rows[name], shape).astype(bool)


def test_volume_normalisation_is_numpys_mean_and_std_over_the_masked_voxels(tmp_path):
    volume = RNG.integers(0, 256, (9, 70, 90), dtype=np.uint8)
    mask = ellipse(70, 90)
    fragment(tmp_path, volume, mask)
    a = checkpoint(tmp_path / "a.safetensors", gain=1.0, offset=0.0)  # the logit is the normalised slice
    cfg = config([(a, 1.0)], inputs={**VOLUME_INPUTS, "z": "middle:3"}, preprocess={"normalize": "volume"})
    report = segment(cfg, tmp_path, tmp_path / "out")
    chosen = volume[3:6]  # the 3 middle of 9 slices
    inside = chosen[:, mask].astype(np.float64)
    assert report.normalization["frag"] == pytest.approx((inside.mean(), inside.std()), rel=1e-12)
    expected = (chosen[0] >= inside.mean()) & mask  # logit >= 0 where the first chosen slice is above the mean
    assert np.array_equal(decoded(tmp_path / "out", mask.shape), expected)


def test_pixels_outside_the_mask_are_0_and_do_not_change_the_percentile(tmp_path):
    volume = RNG.integers(0, 256, (3, 64, 80), dtype=np.uint8)
    mask = ellipse(64, 80)
    fragment(tmp_path / "one", volume, mask)
    changed = volume.copy()
    changed[:, ~mask] = 255  # brighter than anything inside: it would move a whole-image quantile
    fragment(tmp_path / "two", changed, mask)
    a = checkpoint(tmp_path / "a.safetensors", gain=10.0)
    q = 0.8
    cfg = config([(a, 1.0)], inputs=VOLUME_INPUTS, threshold={"kind": "percentile", "q": q})
    reports = [segment(cfg, tmp_path / run, tmp_path / run / "out") for run in ("one", "two")]
    logits = (10 * (volume[0].astype(np.float32) / 255 - 0.5)).astype(np.float16)
    cut = np.quantile(logits[mask], q, method="lower")  # only the fragment's pixels count
    expected = (logits >= cut) & mask
    for run, report in zip(("one", "two"), reports):
        assert np.array_equal(decoded(tmp_path / run / "out", mask.shape), expected), run
        assert report.thresholds["frag"] == pytest.approx(1 / (1 + math.exp(-float(cut))), rel=1e-6)
        assert report.out_scale == 1


def test_a_model_at_one_32nd_equals_the_model_on_the_whole_volume_upsampled(tmp_path):
    import torch

    from competitions import BlockMeanLogit

    H, W = 120, 150  # not multiples of 32: the last blocks are partly padding, as in the whole-volume oracle
    levels = RNG.integers(0, 256, (8, 4, 5))  # a level per 32 x 32 block and slice, plus noise
    volume = np.clip(np.kron(levels, np.ones((1, 32, 32)))[:, :H, :W] + RNG.normal(0, 20, (8, H, W)), 0, 255).astype(np.uint8)
    fragment(tmp_path, volume, None)
    a = checkpoint(tmp_path / "a.safetensors", "test_pipeline_block_mean", scale=32, gain=10.0, offset=0.45)
    no_mask = {k: v for k, v in VOLUME_INPUTS.items() if k != "mask"}
    cfg = config([(a, 1.0)], inputs={**no_mask, "z": [2, 6]}, tiling={"tile": 64, "stride": 32, "margin": 0}, batch_size=3)
    report = segment(cfg, tmp_path, tmp_path / "out")
    padded = torch.zeros(1, 4, 128, 160)
    padded[0, :, :H, :W] = torch.from_numpy(volume[2:6] / 255.0)
    whole = BlockMeanLogit(32, 10.0, 0.45)(padded)[0, 0].detach().numpy()  # (4, 5) logits of the whole volume
    assert np.abs(whole).min() > 1e-3  # no block sits on the threshold
    expected = np.kron(whole >= 0, np.ones((32, 32), bool))[:H, :W]
    assert report.out_scale == 32 and report.predicted == ["frag"]
    assert np.array_equal(decoded(tmp_path / "out", (H, W)), expected)


def test_a_volume_segmenter_checkpoint_runs_at_its_own_output_stride(tmp_path):
    from kagglekit.models import create, save_checkpoint

    fragment(tmp_path, RNG.integers(0, 256, (10, 96, 96), dtype=np.uint8), ellipse(96, 96))
    model = create("kagglekit/volume_segmenter", backbone="resnet10t", group_size=2, neck_channels=8)
    save_checkpoint(model, tmp_path / "v.safetensors")
    cfg = config([(tmp_path / "v.safetensors", 1.0)], inputs={**VOLUME_INPUTS, "z": "middle:4"},
                 tiling={"tile": 64, "stride": 32}, preprocess={"normalize": "volume"},
                 threshold={"kind": "percentile", "q": 0.9})
    report = segment(cfg, tmp_path, tmp_path / "out")
    assert report.out_scale == 32 and report.predicted == ["frag"] and not report.fallback
    assert not (decoded(tmp_path / "out", (96, 96)) & ~ellipse(96, 96)).any()


def test_a_three_slice_tiff_written_as_rgb_is_refused_with_the_fix(tmp_path):
    from kagglekit.errors import ShapeError
    from kagglekit.io import open_volume

    tifffile.imwrite(tmp_path / "v.tif", np.zeros((3, 8, 8), np.uint8), photometric="rgb", planarconfig="separate")
    with pytest.raises(ShapeError, match="one page of 3 samples .*photometric='minisblack'"):
        open_volume(tmp_path / "v.tif")


def test_a_mask_of_the_wrong_size_or_missing_costs_that_volume_its_row_only(tmp_path):
    volume = RNG.integers(0, 256, (2, 40, 50), dtype=np.uint8)
    fragment(tmp_path, volume, ellipse(40, 48), "small")
    fragment(tmp_path, volume, None, "nomask")
    fragment(tmp_path, volume, ellipse(40, 50), "good")
    a = checkpoint(tmp_path / "a.safetensors")
    report = segment(config([(a, 1.0)], inputs=VOLUME_INPUTS), tmp_path, tmp_path / "out")
    assert report.predicted == ["good"]
    assert "is 40x48 but its image is 40x50" in report.fallback["small"]
    assert "nomask/mask.png: no such file" in report.fallback["nomask"]
    from kagglekit.pipeline import check

    assert (False, "masks: 2 of 3 inputs have their mask 'test/{id}/mask.png'; without one: ['nomask']") in check(
        config([(a, 1.0)], inputs=VOLUME_INPUTS), tmp_path)


@pytest.mark.parametrize("threshold", [{"kind": "fixed", "value": 0.5}, {"kind": "percentile", "q": 0.6}])
def test_six_models_two_resident_give_the_all_resident_output_with_at_most_two_alive(tmp_path, threshold):
    volume = RNG.integers(0, 256, (3, 60, 70), dtype=np.uint8)
    fragment(tmp_path, volume, ellipse(60, 70))
    params = [(3.0, 0.41), (5.0, 0.53), (2.0, 0.47), (4.0, 0.58), (6.0, 0.44), (1.0, 0.5)]
    models = [(checkpoint(tmp_path / f"m{k}.safetensors", "test_pipeline_tracked", gain=g, offset=o), 1.0 + k)
              for k, (g, o) in enumerate(params)]
    runs = {}
    for name, memory in (("all", {}), ("two", {"max_resident": 2, "offload": "disk"}), ("cpu", {"max_resident": 4})):
        TrackedChannel0Logit.most = 0
        report = segment(config(models, inputs=VOLUME_INPUTS, threshold=threshold, tta={"views": ["identity", "hflip"]},
                                memory=memory), tmp_path, tmp_path / name)
        runs[name] = (report, TrackedChannel0Logit.most, decoded(tmp_path / name, (60, 70)))
    assert runs["all"][1] == 6  # all six alive while they ran
    assert runs["two"][1] <= 2  # never more than two, from the probe on
    for name in ("two", "cpu"):
        assert np.array_equal(runs[name][2], runs["all"][2]), name
        assert runs[name][0].thresholds["frag"] == pytest.approx(runs["all"][0].thresholds["frag"], abs=1e-6)
    red = volume[0] / 255.0
    weights = np.arange(1.0, 7.0)
    logit = sum(w * g * (red - o) for w, (g, o) in zip(weights, params)) / weights.sum()
    if threshold["kind"] == "fixed":
        assert np.array_equal(runs["all"][2], (logit >= 0) & ellipse(60, 70))
    assert any("at most 2 on cpu at once" in e for e in runs["two"][0].events)


def test_peak_memory_sees_a_block_allocation():
    from kagglekit._memory import PeakMemory, rss

    with PeakMemory() as peak:
        block = np.ones(256 << 20, np.uint8)  # 256 MiB, touched
        del block
    assert peak.bytes >= rss() + (200 << 20)


def test_slices_that_no_volume_has_give_each_row_the_reason_and_load_no_model(tmp_path):
    fragment(tmp_path, RNG.integers(0, 256, (6, 40, 50), dtype=np.uint8), None)
    a = checkpoint(tmp_path / "a.safetensors")
    no_mask = {k: v for k, v in VOLUME_INPUTS.items() if k != "mask"}
    report = segment(config([(a, 1.0)], inputs={**no_mask, "z": "middle:8"}), tmp_path, tmp_path / "out")
    assert report.fallback == {"frag": "InvalidArgumentError: the middle 8 slices of a volume of 6 slices: n must be 1..6"}
    assert report.events == ["no input could be read: every image keeps the fallback row"]
