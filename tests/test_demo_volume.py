"""The volume demo: its fragments hide the ink from any single slice, its score is scikit-learn's per-image
F0.5 averaged; a small run of every stage scores as scikit-learn does; the full run (`make demo-check`) puts the
2.5D models (resnet10t, and a channels-last Swin V2) above the 2D one and the baseline."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from kagglekit.demo.volume_data import INK_CONTRAST, INK_SLICES, SLICES, build_ink_competition, make_fragment


def test_ink_is_a_faint_change_of_the_middle_slices_inside_the_fragment():
    volume, inside, ink = make_fragment(np.random.default_rng(0), 256, 320)
    assert volume.shape == (SLICES, 256, 320) and volume.dtype == np.uint8
    assert not volume[:, ~inside].any() and volume[:, inside].min() >= 1  # 0 exactly outside the fragment
    assert ink.any() and not (ink & ~inside).any()
    for z in range(SLICES):
        contrast = volume[z][ink].mean() - volume[z][inside & ~ink].mean()
        inked = INK_SLICES[0] <= z < INK_SLICES[1]
        assert abs(contrast - (INK_CONTRAST if inked else 0.0)) < 4.0, z
        if inked:  # fainter than the texture: one slice does not show it plainly
            assert INK_CONTRAST < 0.6 * volume[z][inside].std()


def test_the_same_seed_builds_the_same_competition(tmp_path):
    a = build_ink_competition(tmp_path / "a", n_train=1, n_test=1, shape=(96, 128), seed=3)
    b = build_ink_competition(tmp_path / "b", n_train=1, n_test=1, shape=(96, 128), seed=3)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert [str(f) for f in files] == ["ink_solution/test1.png", "input/kagglekit-ink/sample_submission.csv",
                                       "input/kagglekit-ink/test/test1/mask.png", "input/kagglekit-ink/test/test1/volume.tif",
                                       "input/kagglekit-ink/train/frag1/inklabels.png", "input/kagglekit-ink/train/frag1/mask.png",
                                       "input/kagglekit-ink/train/frag1/volume.tif"]
    assert all((a.root / f).read_bytes() == (b.root / f).read_bytes() for f in files)


def test_the_score_is_the_mean_of_scikit_learns_per_fragment_f05(tmp_path):
    from sklearn.metrics import fbeta_score

    from kagglekit.demo.volume import all_ink_fbeta, per_fragment_fbeta
    from kagglekit.io import read_mask
    from kagglekit.kaggle.rle import rle_encode

    competition = build_ink_competition(tmp_path, n_train=1, n_test=3, shape=(80, 100), seed=1)
    rng = np.random.default_rng(0)
    truths = {i: read_mask(competition.solution / f"{i}.png") for i in competition.test_ids}
    guesses = {i: t ^ (rng.random(t.shape) < 0.1) for i, t in truths.items()}  # a tenth of the pixels flipped
    (tmp_path / "sub.csv").write_text("Id,Predicted\n" + "".join(f"{i},{rle_encode(g)}\n" for i, g in guesses.items()))
    expected = np.mean([fbeta_score(truths[i].ravel(), guesses[i].ravel(), beta=0.5) for i in truths])
    assert per_fragment_fbeta(tmp_path / "sub.csv", competition.solution, competition.test_ids) == pytest.approx(expected)
    masks = {i: read_mask(competition.folder / "test" / i / "mask.png") for i in truths}
    expected_baseline = np.mean([fbeta_score(truths[i].ravel(), masks[i].ravel(), beta=0.5) for i in truths])
    assert all_ink_fbeta(competition) == pytest.approx(expected_baseline)


SMALL = {"steps": 3, "n_train": 1, "n_test": 2, "shape": (192, 256)}  # every stage, in seconds


@pytest.mark.slow
def test_a_small_volume_demo_runs_every_stage_and_scores_as_scikit_learn(tmp_path):
    import cv2
    from sklearn.metrics import fbeta_score

    from kagglekit.demo.volume import run_volume
    from kagglekit.io import read_mask
    from kagglekit.kaggle.rle import rle_decode

    lines = []
    result = run_volume(tmp_path / "volume", log=lines.append, **SMALL)
    root, (h, w) = tmp_path / "volume", SMALL["shape"]
    ids = ["test1", "test2"]
    truths = {i: read_mask(root / "ink_solution" / f"{i}.png") for i in ids}
    masks = {i: read_mask(root / "input" / "kagglekit-ink" / "test" / i / "mask.png") for i in ids}
    for key, submission in (("fbeta_25d", root / "working" / "submission.csv"),  # the notebook's (2.5D)
                            ("fbeta_2d", root / "working" / "2d" / "submission.csv"),  # segment's (2D)
                            ("fbeta_swin", root / "working" / "swin" / "submission.csv")):  # segment's (Swin V2)
        with open(submission, newline="") as f:
            rows = {r["Id"]: r["Predicted"] for r in csv.DictReader(f)}
        assert list(rows) == ids
        predicted = {i: rle_decode(rows[i], (h, w)).astype(bool) for i in ids}
        assert not any((predicted[i] & ~masks[i]).any() for i in ids)  # ink is only predicted inside the fragment
        expected = np.mean([fbeta_score(truths[i].ravel(), predicted[i].ravel(), beta=0.5, zero_division=0) for i in ids])
        assert result[key] == pytest.approx(expected), key
    assert result["baseline"] == pytest.approx(np.mean([fbeta_score(truths[i].ravel(), masks[i].ravel(), beta=0.5) for i in ids]))
    train = root / "input" / "kagglekit-ink" / "train" / "frag1"
    inside, ink = read_mask(train / "mask.png"), read_mask(train / "inklabels.png")
    assert result["q"] == pytest.approx(1 - (ink & inside).sum() / inside.sum())
    table = "\n".join(lines)
    assert "| 2.5D: the 8 middle slices |" in table and "| 2D: slice 9 alone |" in table and "| all ink inside the mask |" in table
    assert "| 2.5D Swin V2 (channels-last): the 8 middle slices |" in table
    from kagglekit.models import load_checkpoint

    swin = load_checkpoint(root / "input" / "kagglekit-ink-models" / "ink_swin.safetensors")
    assert swin.backbone.output_fmt == "NHWC" and swin.output_stride == 8  # timm's channels-last features, at 1/8
    assert "for 3 steps" in table
    assert cv2.imread(str(root / "working" / "volume_overlay.png")).shape == (2 * h, 2 * w, 3)  # 2 x 2 panels
    assert (root / "working" / "inference.executed.ipynb").is_file()


@pytest.mark.demo
def test_the_full_volume_demo_puts_the_2_5d_models_above_the_2d_model_and_the_baseline(tmp_path):
    from kagglekit.demo.volume import run_volume

    lines = []
    result = run_volume(tmp_path / "volume", log=lines.append)
    assert result["fbeta_25d"] > result["fbeta_2d"] + 0.15 and result["fbeta_25d"] > result["baseline"] + 0.3
    assert result["fbeta_swin"] > result["fbeta_2d"] + 0.15  # the channels-last 2.5D backbone sees the ink too
    assert "| 2.5D: the 8 middle slices |" in "\n".join(lines)
    assert (tmp_path / "volume" / "working" / "volume_overlay.png").stat().st_size > 10_000
