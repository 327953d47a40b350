"""The volume demo: its fragments hide the ink from any single slice, its score is scikit-learn's per-image
F0.5 averaged, and the whole demo runs (slow) with the 2.5D model above the 2D one and the baseline."""

from __future__ import annotations

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


@pytest.mark.slow
def test_the_volume_demo_puts_the_2_5d_model_above_the_2d_model_and_the_baseline(tmp_path):
    from kagglekit.demo.volume import run_volume

    lines = []
    result = run_volume(tmp_path / "volume", log=lines.append)
    assert result["fbeta_25d"] > result["fbeta_2d"] + 0.15 and result["fbeta_25d"] > result["baseline"] + 0.3
    assert "| 2.5D: the 8 middle slices |" in "\n".join(lines)
    assert (tmp_path / "volume" / "working" / "volume_overlay.png").stat().st_size > 10_000
