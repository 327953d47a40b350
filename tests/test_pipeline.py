"""kagglekit.pipeline.segment against brute-force masks of pointwise models, plus its failure modes.

The checkpoints are of a registered pointwise model, ``logit = gain * (channel0 - offset)`` on the
image scaled to [0, 1], so the expected mask of every configuration has a closed form that the
tests compute plainly from the pixels (and the RLE strings are decoded by a plain loop here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kagglekit.errors import ConfigError, KagglekitError, SubmissionError
from kagglekit.kaggle.budget import Budget
from kagglekit.pipeline import PipelineConfigError, load_config, segment

from competitions import RNG, FakeClock, checkpoint, competition, config, read_csv, write_png
from helpers import modules_loaded_by, plain_rle_decode

def test_fixed_threshold_with_tta_and_a_weighted_ensemble_matches_the_pixels(tmp_path):
    images = competition(tmp_path, [(100, 130), (40, 50), (64, 64)], columns=("image_id", "segmentation", "width"))
    a = checkpoint(tmp_path / "m" / "a.safetensors", gain=10.0)
    b = checkpoint(tmp_path / "m" / "b.safetensors", gain=4.0)
    cfg = config([(a, 2.0), (b, 1.0)], tta={"views": "d4"}, threshold={"kind": "fixed", "value": 0.5})
    report = segment(cfg, tmp_path, tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "submission.csv")
    assert [r["image_id"] for r in rows] == list(images) and list(rows[0]) == ["image_id", "segmentation", "width"]
    for row in rows:
        image = images[row["image_id"]]
        expected = image[:, :, 0] / 255.0 >= 0.5  # both models: the same sign as red - 0.5
        assert np.array_equal(plain_rle_decode(row["segmentation"], image.shape[:2]), expected)
        assert row["width"] == str(image.shape[1])  # other sample columns are kept
    assert sorted(report.predicted) == sorted(images) and not report.fallback
    assert report.views == 8 and report.models == 2


def test_percentile_threshold_keeps_the_pixels_above_the_quantile(tmp_path):
    images = competition(tmp_path, [(70, 90)])
    a = checkpoint(tmp_path / "a.safetensors", gain=10.0)
    q = 0.7
    report = segment(config([(a, 1.0)], threshold={"kind": "percentile", "q": q}), tmp_path, tmp_path)
    red = images["img0"][:, :, 0]
    cut = np.quantile(red, q, method="lower")  # the score at sorted position floor((n - 1) q)
    rows = read_csv(tmp_path / "submission.csv")
    assert np.array_equal(plain_rle_decode(rows[0]["rle"], red.shape), red >= cut)
    assert report.thresholds["img0"] == pytest.approx(1 / (1 + math.exp(-10 * (cut / 255 - 0.5))), abs=1e-3)


@pytest.mark.parametrize("content", ['{"threshold": 0.3}', "0.3\n"])
def test_threshold_from_a_file_is_a_probability(tmp_path, content):
    images = competition(tmp_path, [(50, 60)])
    a = checkpoint(tmp_path / "a.safetensors", gain=10.0)
    (tmp_path / "t.json").write_text(content)
    cfg = config([(a, 1.0)], threshold={"kind": "file", "file": "t.json"})
    segment(cfg, tmp_path, tmp_path, base_dir=tmp_path)
    red = images["img0"][:, :, 0] / 255.0
    expected = 10 * (red - 0.5) >= math.log(0.3 / 0.7)
    rows = read_csv(tmp_path / "submission.csv")
    assert np.array_equal(plain_rle_decode(rows[0]["rle"], red.shape), expected)


def test_a_toml_file_reads_like_the_dict(tmp_path):
    (tmp_path / "segment.toml").write_text(
        'normalize = "imagenet"\n[inputs]\nglob = "test/*.png"\n[tiling]\ntile = 64\nstride = 48\n[[models]]\npath = "a.safetensors"\n'
        '[[models]]\npath = "b.safetensors"\nweight = 0.5\n[tta]\nviews = ["identity", "hflip"]\n'
        '[threshold]\nkind = "percentile"\nq = 0.9\n[output]\norder = "F"\n'
    )
    from_toml = load_config(tmp_path / "segment.toml")
    from_dict = load_config({"inputs": {"glob": "test/*.png"}, "tiling": {"tile": 64, "stride": 48},
                             "models": [{"path": "a.safetensors"}, {"path": "b.safetensors", "weight": 0.5}],
                             "tta": {"views": ["identity", "hflip"]}, "normalize": "imagenet",
                             "threshold": {"kind": "percentile", "q": 0.9}, "output": {"order": "F"}},
                            base_dir=tmp_path)
    assert from_toml == from_dict
    assert from_toml.models[1].path == tmp_path / "b.safetensors" and from_toml.preprocess.normalize[0] == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("change, words", [
    ({"tiling": {"tile": 64, "stride": 80}}, "tiling.stride"),
    ({"tiling": {"tilesize": 64}}, "tiling: unknown key(s) ['tilesize']"),
    ({"tiling": {"tile": "big"}}, "tiling.tile: must be an integer"),
    ({"tiling": {"tile": 64, "margin": 32}}, "tiling.margin"),
    ({"threshold": {"kind": "percentile"}}, "threshold.q: is required"),
    ({"threshold": {"kind": "fixed", "value": 1.5}}, "threshold.value: must be a number in [0.0, 1.0]"),
    ({"threshold": {"kind": "fixed", "q": 0.5}}, "threshold.q: is not used by kind = 'fixed'"),
    ({"threshold": {"kind": "guess"}}, "threshold.kind: must be one of"),
    ({"models": []}, "models: give at least one checkpoint"),
    ({"models": [{"path": "a", "weight": 0}]}, "models[0].weight"),
    ({"normalize": "zscore"}, "normalize: must be 'scale'"),
    ({"normalize": {"mean": [0.5], "std": [0.0]}}, "normalize.std: must be positive"),
    ({"inputs": {"z": [0, 4]}}, "inputs.z: is a slice range"),
    ({"inputs": {"kind": "volume", "z": [4, 2]}}, "inputs.z: must be [start, stop]"),
    ({"inputs": {"kind": "volume", "z": "centre:16"}}, "inputs.z: as a string must be 'middle:N'"),
    ({"inputs": {"mask": "test/mask.png"}}, "inputs.mask: must hold {id}"),
    ({"inputs": {"mask": "test/{name}/mask.png"}}, "inputs.mask: may hold only the placeholder {id}"),
    ({"inputs": {"mask": "/kaggle/input/m/{id}.png"}}, "inputs.mask: must be a non-empty pattern relative"),
    ({"memory": {"max_resident": 0}}, "memory.max_resident: must be an integer >= 1"),
    ({"memory": {"offload": "gpu"}}, "memory.offload: must be one of ['cpu', 'disk']"),
    ({"memory": {"fp16": "yes"}}, "memory.fp16: must be true or false"),
    ({"tta": {"views": ["sideways"]}}, "tta.views: unknown TTA view 'sideways'"),
    ({"budget": {"seconds": 60, "reserve": 60}}, "budget.reserve"),
    ({"output": {"order": "K"}}, "output.order"),
    ({"modles": []}, "unknown top-level key(s) ['modles'] (did you mean 'models'?)"),
    ({"tiling": {"tile": 64, "margin": 8}}, "tiling.stride: must be <= tile - 2 * margin (48)"),
    ({"inputs": {"glob": "/kaggle/input/c/test/*.png"}}, "inputs.glob: must be a non-empty pattern relative"),
    ({"inputs": {"glob": ""}}, "inputs.glob"),
    ({"inputs": {"glob": "test/**.png"}}, "'**' only as a whole path part"),
    ({"device": "cdua"}, "device: 'cdua' is not a torch device"),
    ({"threshold": {"kind": "file", "file": ""}}, "threshold.file: must name a file"),
])
def test_configuration_mistakes_name_the_key(change, words):
    data = {"models": [{"path": "a.safetensors"}]}
    data.update(change)
    with pytest.raises(PipelineConfigError) as info:
        load_config(data)
    assert words in str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, KagglekitError)


def test_a_toml_with_a_byte_order_mark_loads(tmp_path):
    (tmp_path / "bom.toml").write_text('[[models]]\npath = "a.safetensors"\n', encoding="utf-8-sig")
    assert load_config(tmp_path / "bom.toml").models[0].path == tmp_path / "a.safetensors"


def test_percentile_with_skipped_background_counts_only_the_predicted_pixels(tmp_path):
    """A slide that is mostly white glass: the skipped tiles' pixels must stay background, and the
    quantile is taken over the pixels that were predicted."""
    (tmp_path / "test").mkdir()
    image = np.full((256, 256, 3), 250, np.uint8)
    image[:40, :40] = RNG.integers(40, 160, (40, 40, 3), dtype=np.uint8)  # tissue in one corner
    write_png(tmp_path / "test" / "slide.png", image)
    (tmp_path / "sample_submission.csv").write_text("id,rle\nslide,1 1\n")
    a = checkpoint(tmp_path / "a.safetensors", gain=10.0)
    cfg = config([(a, 1.0)], tiling={"tile": 64, "stride": 48, "tissue_only": True, "thumbnail": 64},
                 threshold={"kind": "percentile", "q": 0.9})
    report = segment(cfg, tmp_path, tmp_path / "out")
    assert report.predicted == ["slide"]
    mask = plain_rle_decode(read_csv(tmp_path / "out" / "submission.csv")[0]["rle"], (256, 256))
    assert mask.any() and not mask[112:].any() and not mask[:, 112:].any()  # nothing beyond the kept tiles


def test_a_percentile_far_below_zero_gives_a_probability_not_an_overflow(tmp_path):
    images = competition(tmp_path, [(40, 50)])
    a = checkpoint(tmp_path / "a.safetensors", gain=5000.0, offset=1.0)  # logits down to -5000
    report = segment(config([(a, 1.0)], threshold={"kind": "percentile", "q": 0.2}), tmp_path, tmp_path)
    assert report.predicted == ["img0"] and 0 <= report.thresholds["img0"] < 1e-300
    red = images["img0"][:, :, 0]
    cut = np.quantile(red, 0.2, method="lower")
    assert np.array_equal(plain_rle_decode(read_csv(tmp_path / "submission.csv")[0]["rle"], red.shape), red >= cut)


def test_bad_toml_and_missing_files_raise_before_anything_is_written(tmp_path):
    (tmp_path / "bad.toml").write_text("[tiling\ntile = 3")
    with pytest.raises(PipelineConfigError, match="bad.toml is not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(PipelineConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    a = checkpoint(tmp_path / "a.safetensors")
    with pytest.raises(SubmissionError, match="sample submission .* not found"):
        segment(config([(a, 1.0)]), tmp_path / "nothing", tmp_path / "out")
    assert not (tmp_path / "out" / "submission.csv").exists()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_an_unusable_model_file_is_skipped_and_the_others_predict(tmp_path, damage):
    images = competition(tmp_path, [(60, 70), (30, 40)])
    a = checkpoint(tmp_path / "a.safetensors", gain=10.0)
    bad = tmp_path / "bad.safetensors"
    if damage == "truncated":
        bad.write_bytes(checkpoint(bad, gain=10.0).read_bytes()[:-1])
    report = segment(config([(bad, 5.0), (a, 1.0)]), tmp_path, tmp_path)
    rows = read_csv(tmp_path / "submission.csv")
    for row in rows:
        red = images[row["id"]][:, :, 0] / 255.0
        assert np.array_equal(plain_rle_decode(row["rle"], red.shape), red >= 0.5)
    assert sorted(report.predicted) == sorted(images) and report.models == 1
    assert any("bad.safetensors skipped" in e for e in report.events)


def test_no_usable_model_leaves_the_fallback_submission(tmp_path):
    images = competition(tmp_path, [(30, 40), (20, 20)])
    cfg = config([(tmp_path / "gone.safetensors", 1.0)], output={"fallback": ""})
    report = segment(cfg, tmp_path, tmp_path)
    rows = read_csv(tmp_path / "submission.csv")
    assert [r["id"] for r in rows] == list(images) and all(r["rle"] == "" for r in rows)
    assert set(report.fallback) == set(images) and not report.predicted


def test_a_corrupt_image_gets_the_fallback_row_and_the_others_are_predicted(tmp_path):
    images = competition(tmp_path, [(50, 60), (40, 40), (30, 70)])
    png = (tmp_path / "test" / "img1.png").read_bytes()
    (tmp_path / "test" / "img1.png").write_bytes(png[:60])  # header intact, body truncated
    a = checkpoint(tmp_path / "a.safetensors", gain=10.0)
    report = segment(config([(a, 1.0)], output={"fallback": "1 1"}), tmp_path, tmp_path)
    rows = {r["id"]: r["rle"] for r in read_csv(tmp_path / "submission.csv")}
    assert list(rows) == ["img0", "img1", "img2"] and rows["img1"] == "1 1"
    for i in ("img0", "img2"):
        red = images[i][:, :, 0] / 255.0
        assert np.array_equal(plain_rle_decode(rows[i], red.shape), red >= 0.5)
    assert list(report.fallback) == ["img1"] and "ImageReadError" in report.fallback["img1"]


def test_an_id_without_an_input_file_keeps_the_fallback_row(tmp_path):
    competition(tmp_path, [(30, 30), (30, 30)])
    (tmp_path / "test" / "img1.png").unlink()
    (tmp_path / "test" / "stray.png").write_bytes((tmp_path / "test" / "img0.png").read_bytes())
    a = checkpoint(tmp_path / "a.safetensors")
    report = segment(config([(a, 1.0)]), tmp_path, tmp_path)
    assert report.predicted == ["img0"] and "no input matches" in report.fallback["img1"]
    assert [r["id"] for r in read_csv(tmp_path / "submission.csv")] == ["img0", "img1"]


def test_the_budget_drops_views_then_models_then_stops_with_a_valid_submission(tmp_path):
    """One 64x64 tile per image, 1 s per forward: 4 views x 2 models = 8 s, then 2 x 2, 1 x 2, 1 x 1.

    Budget 15 s, 5 images: after image 0 the projection 8 + 4 * 8 = 40 s drops views to 2; after
    image 1 (12 + 3 * 4 = 24 s) to 1 view; after image 2 (14 + 2 * 2 = 18 s) a model; after image 3
    (15 + 1 = 16 s) nothing is left to drop; image 4 finds the budget exhausted: fallback row.
    """
    images = competition(tmp_path, [(64, 64)] * 5)
    a = checkpoint(tmp_path / "a.safetensors", gain=10.0, cost=1.0)
    b = checkpoint(tmp_path / "b.safetensors", gain=5.0, cost=1.0)
    FakeClock.now = 0.0
    budget = Budget(15, reserve=0, clock=FakeClock())
    cfg = config([(a, 2.0), (b, 1.0)], tiling={"tile": 64}, tta={"views": "rot90"})
    report = segment(cfg, tmp_path, tmp_path, budget=budget)
    assert [e.split(" passes")[0] for e in report.events] == [
        "dropped TTA views 4 -> 2: projected finish 40 s", "dropped TTA views 2 -> 1: projected finish 24 s",
        "dropped a model: 2 -> 1: projected finish 18 s", "nothing left to drop: projected finish 16 s",
        "time budget exhausted after 15 s: 1 image(s) keep the fallback row"]
    assert report.predicted == ["img0", "img1", "img2", "img3"] and list(report.fallback) == ["img4"]
    assert budget.steps["image"] == [8.0, 4.0, 2.0, 1.0]
    rows = {r["id"]: r["rle"] for r in read_csv(tmp_path / "submission.csv")}
    assert list(rows) == list(images) and rows["img4"] == ""
    for i in report.predicted:
        red = images[i][:, :, 0] / 255.0
        assert np.array_equal(plain_rle_decode(rows[i], red.shape), red >= 0.5)


def test_tissue_only_runs_tiles_on_tissue_and_leaves_the_rest_empty(tmp_path):
    (tmp_path / "test").mkdir()
    image = np.full((256, 256, 3), 255, np.uint8)
    image[64:128, 64:192] = RNG.integers(40, 120, (64, 128, 3), dtype=np.uint8)  # tissue on whole tiles
    write_png(tmp_path / "test" / "slide.png", image)
    (tmp_path / "sample_submission.csv").write_text("id,rle\nslide,\n")
    a = checkpoint(tmp_path / "a.safetensors", offset=-1.0)  # positive on every pixel it sees
    cfg = config([(a, 1.0)], tiling={"tile": 64, "tissue_only": True, "thumbnail": 64, "min_tissue": 0.5})
    segment(cfg, tmp_path, tmp_path)
    expected = np.zeros((256, 256), bool)
    expected[64:128, 64:192] = True
    assert np.array_equal(plain_rle_decode(read_csv(tmp_path / "submission.csv")[0]["rle"], (256, 256)), expected)


def test_volumes_use_the_configured_slice_range(tmp_path):
    import tifffile

    (tmp_path / "test").mkdir()
    volume = RNG.integers(0, 256, (6, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "test" / "frag.tif", volume)
    (tmp_path / "sample_submission.csv").write_text("id,rle\nfrag,\n")
    a = checkpoint(tmp_path / "a.safetensors")
    cfg = config([(a, 1.0)], inputs={"glob": "test/*.tif", "kind": "volume", "z": [2, 5]})
    segment(cfg, tmp_path, tmp_path)
    rle = read_csv(tmp_path / "submission.csv")[0]["rle"]
    assert np.array_equal(plain_rle_decode(rle, (40, 50)), volume[2] / 255.0 >= 0.5)  # channel 0 is slice 2


def test_the_segment_command_runs_a_toml_config(tmp_path, capsys):
    from kagglekit.cli import main

    images = competition(tmp_path, [(40, 30)])
    checkpoint(tmp_path / "a.safetensors")
    (tmp_path / "segment.toml").write_text('[tiling]\ntile = 32\n[[models]]\npath = "a.safetensors"\n')
    assert main(["segment", "--config", str(tmp_path / "segment.toml"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "out")]) == 0
    assert "1 predicted, 0 fallback rows" in capsys.readouterr().out
    red = images["img0"][:, :, 0] / 255.0
    assert np.array_equal(plain_rle_decode(read_csv(tmp_path / "out" / "submission.csv")[0]["rle"], red.shape), red >= 0.5)
    assert main(["segment", "--config", str(tmp_path / "absent.toml")]) == 1
    assert "absent.toml not found" in capsys.readouterr().err
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main(["segment", "--config", str(tmp_path / "segment.toml"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "taken")]) == 1
    assert "kagglekit: error: the output" in capsys.readouterr().err and (tmp_path / "taken").read_text() == "a file, not a folder"


def test_importing_the_pipeline_package_is_cheap():
    assert modules_loaded_by("import kagglekit.pipeline", ("torch", "polars", "cv2", "timm")) == []


def test_a_percentile_counts_real_logits_that_equal_any_value():
    """Skipped pixels are told apart by NaN, not by a logit value a model can also produce: a model whose
    logits are clamped at -30 keeps those pixels in the quantile (oracle: numpy's 'lower' quantile)."""
    from kagglekit.infer import iter_strips
    from kagglekit.io import open_image
    from kagglekit.pipeline.segment_images import _Image, _predict

    image = np.zeros((64, 64, 3), np.uint8)
    image[:10, :10, 0] = RNG.integers(200, 256, (10, 10))  # 100 pixels above the clamp, 4000 at it
    clamped = lambda x: (100 * (x[:, :1] - 0.5)).clamp(min=-30)  # noqa: E731  (black pixels: exactly -30)
    cfg = load_config({"models": [{"path": "unused"}], "tiling": {"tile": 32}, "threshold": {"kind": "percentile", "q": 0.9}})
    source = open_image(image)
    strips = ((row, strip[0]) for row, strip in iter_strips(clamped, source, tile=32, progress=False))
    mask, _, _ = _predict(strips, _Image(source, None, None, 0.0, "scale"), cfg, None, 1)
    logits = (100 * (image[:, :, 0].astype(np.float32) / 255 - 0.5)).clip(-30)
    cut = np.quantile(logits.astype(np.float16), 0.9, method="lower")
    assert np.array_equal(mask, logits.astype(np.float16) >= cut)


def test_preprocess_normalize_is_the_old_top_level_normalize():
    base = {"models": [{"path": "a.safetensors"}]}
    assert load_config({**base, "preprocess": {"normalize": "imagenet"}}) == load_config({**base, "normalize": "imagenet"})
    with pytest.raises(PipelineConfigError, match="given both at the top level and in \\[preprocess\\]"):
        load_config({**base, "normalize": "scale", "preprocess": {"normalize": "imagenet"}})
    with pytest.raises(PipelineConfigError, match=r"preprocess: unknown key\(s\) \['size'\]"):
        load_config({**base, "preprocess": {"size": 224}})
