"""The whole-slide demo: its competition's files and shifts; a small run of every stage scored as scikit-learn scores
it, its seeded stages rerun to the same bytes; the full run's table order and repeat (`make demo-check`)."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from kagglekit.demo.slides_data import CELL, OTHER, SUBTYPES, build_slide_competition, read_labels
from kagglekit.tiling import slide_kind

from helpers import same_safetensors


def test_the_competition_has_the_shifts_of_ubc_ocean(tmp_path):
    comp = build_slide_competition(tmp_path, n_train=40, n_test=24, seed=3)
    train_ids, train_labels, train_tma = read_labels(comp.folder / "train.csv")
    test_ids, test_labels, test_tma = read_labels(comp.solution)
    assert sorted(set(train_labels)) == sorted(SUBTYPES)  # no Other to train on
    assert test_labels.count(OTHER) == 4 and set(test_labels) == {*SUBTYPES, OTHER}
    assert train_tma.sum() == 2 and test_tma.sum() == round(0.4 * 24)  # 5 % of train, 40 % of test
    for folder, ids, tma in (("train_images", train_ids, train_tma), ("test_images", test_ids, test_tma)):
        for i, is_tma in zip(ids, tma):
            slide = cv2.imread(str(comp.folder / folder / f"{i}.png"))[:, :, ::-1]
            assert slide.shape[:2] == ((6 * 2 * CELL, 6 * 2 * CELL) if is_tma else (9 * CELL, 11 * CELL))
            assert slide_kind(slide, slide.shape, tma_max_side=1000) == ("tma" if is_tma else "wsi")
    with open(comp.folder / "sample_submission.csv", newline="") as f:
        assert [r["image_id"] for r in csv.DictReader(f)] == test_ids
    assert not (comp.folder / "solution.csv").exists()  # the hidden labels stay outside the kernel's input
    again = build_slide_competition(tmp_path / "again", n_train=40, n_test=24, seed=3)
    assert (again.folder / "train_images" / "train007.png").read_bytes() == (comp.folder / "train_images" / "train007.png").read_bytes()
    assert again.solution.read_bytes() == comp.solution.read_bytes()


def test_a_slides_label_lives_in_two_or_three_of_its_tiles():
    from kagglekit.demo.slides_data import _tissues, make_slide

    tissues = _tissues()
    marker = tissues["HGSC"]
    n = CELL
    rgb = marker.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)  # one number per pixel
    first, last = rgb[: 1 - n, : 1 - n], rgb[n - 1 :, n - 1 :]  # a window's first and last pixel, by its origin

    def a_crop_of_the_marker(view) -> bool:
        """Some n x n window of the marker equals ``view``, pixel for pixel (brute force over the windows
        whose first and last pixels match)."""
        code = view[[0, -1], [0, -1]].astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
        candidates = np.argwhere((first == code[0]) & (last == code[1]))
        return any(np.array_equal(marker[y : y + n, x : x + n], view) for y, x in candidates)

    for seed in range(2):
        slide = make_slide(np.random.default_rng(seed), tissues, "HGSC", tma=False)
        cells = slide.reshape(9, CELL, 11, CELL, 3).swapaxes(1, 2).reshape(-1, CELL, CELL, 3)
        tissue = cells[cells.any(axis=(1, 2, 3))]
        exact_crops = 0  # cells that are, under some element of D4, exactly a crop of the marker tissue
        for cell in tissue:
            exact_crops += any(a_crop_of_the_marker(np.rot90(c, k)) for c in (cell, cell[:, ::-1]) for k in range(4))
        assert len(tissue) >= 20 and exact_crops in (2, 3)


ROWS = ["majority class", "mean-pooled features + logistic regression", "one Chowder per fold",
        "{}-seed Chowder ensemble per fold", "ensemble + entropy Other (the notebook's submission)",
        "tile classifier, every tissue tile, max (route = tiles)", "per kind: ensemble for WSIs, tile classifier for TMAs"]
NOTEBOOK = ROWS[4]
SMALL = {"n_train": 16, "n_test": 12, "folds": 2, "n_seeds": 2, "epochs": 3, "tile_steps": 10}  # every stage, in seconds


def run(out, **sizes):
    from kagglekit.demo.slides import run_slides

    return run_slides(out, log=lambda *_: None, **sizes)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One run of the demo at a small size (two folds of two-seed ensembles, three epochs): (its folder, its result)."""
    root = tmp_path_factory.mktemp("slides-demo")
    return root, run(root, **SMALL)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # a TMA subset without some subtype
def test_a_small_slides_demo_runs_every_stage_and_scores_as_scikit_learn(small_run):
    from sklearn.metrics import balanced_accuracy_score

    root, result = small_run
    rows, truth, tma = result["rows"], result["truth"], result["is_tma"]
    assert list(rows) == [name.format(SMALL["n_seeds"]) for name in ROWS]
    assert len(truth) == SMALL["n_test"] and set(truth) == {*SUBTYPES, OTHER} and tma.sum() == round(0.4 * SMALL["n_test"])
    for name, (all_, on_tma, other) in rows.items():
        predicted = result["predictions"][name]
        assert all_ == pytest.approx(balanced_accuracy_score(truth, predicted))
        assert on_tma == pytest.approx(balanced_accuracy_score(truth[tma], predicted[tma]))
        assert other == np.mean(predicted[truth == OTHER] == OTHER)
    assert rows["majority class"][0] == pytest.approx(1 / 5)  # one class of the five right, the other four wrong
    assert all(rows[n][2] == 0 for n in rows if n != NOTEBOOK)  # only the entropy cut can say Other
    working = root / "working" / "slides"
    with open(working / "submission.csv", newline="") as f:
        submitted = [(r["image_id"], r["label"]) for r in csv.DictReader(f)]
    assert submitted == list(zip(result["ids"], result["predictions"][NOTEBOOK]))  # the notebook's, in the sample's order
    # the per-kind branches: WSIs as the heads' ensemble says, TMAs as the tile classifier says
    ensemble, tiles, kinds = (result["predictions"][ROWS[k].format(SMALL["n_seeds"])] for k in (3, 5, 6))
    np.testing.assert_array_equal(kinds[~tma], ensemble[~tma])
    np.testing.assert_array_equal(kinds[tma], tiles[tma])
    models = root / "input" / "kagglekit-slides-models"
    assert sorted(p.name for p in models.glob("heads_fold*.safetensors")) == ["heads_fold0.safetensors", "heads_fold1.safetensors"]
    assert (models / "decision.json").is_file() and (models / "classify.toml").read_text().count("[[models]]") == 2
    assert "[[slides.tma.models]]" in (models / "classify_kinds.toml").read_text()
    assert (working / "slides.png").is_file() and (working / "inference.executed.ipynb").is_file()


@pytest.mark.slow
def test_the_slides_stages_rerun_from_their_seeds_give_the_same_files_and_figures(small_run, tmp_path):
    """Two runs give the same figures: each seeded stage run again (backbone, bags, heads) writes the same
    tensors and metadata and the same out-of-fold score, the heads predict the same test labels, and ``classify`` run here on the
    model folder writes the submission the notebook wrote."""
    from kagglekit.demo import slides, slides_tiles
    from kagglekit.jobs import extract_bags
    from kagglekit.mil import load_bag, predict_bags, train_heads
    from kagglekit.pipeline import classify

    root, result = small_run
    comp, models, bags = root / "input" / "kagglekit-slides", root / "input" / slides.MODELS, root / "working" / "slides" / "bags"
    backbone = slides.make_backbone(tmp_path / "backbone.safetensors", seed=0)
    assert same_safetensors(tmp_path / "backbone.safetensors", models / "backbone.safetensors")
    extract_bags(comp / "train_images", tmp_path / "bags", backbone, progress=False, **slides.BAG_OPTIONS)
    train_ids, train_labels, _ = read_labels(comp / "train.csv")
    for i in train_ids:
        assert same_safetensors(tmp_path / "bags" / f"{i}.safetensors", bags / "train" / f"{i}.safetensors"), i
    ensemble = train_heads([load_bag(tmp_path / "bags" / f"{i}.safetensors") for i in train_ids],
                           np.array([SUBTYPES.index(label) for label in train_labels]), folds=SMALL["folds"],
                           n_seeds=SMALL["n_seeds"], seed=0, classes=SUBTYPES, out_dir=tmp_path / "heads", progress=False,
                           **{**slides.TRAINING, "epochs": SMALL["epochs"]})
    assert ensemble.score == result["oof"]["ensemble"]
    for fold in range(SMALL["folds"]):
        name = f"heads_fold{fold}.safetensors"
        assert same_safetensors(tmp_path / "heads" / name, models / name), name
    test_bags = [load_bag(bags / "test" / f"{i}.safetensors") for i in result["ids"]]
    names = np.array([*SUBTYPES, OTHER], dtype=object)
    assert list(names[predict_bags(ensemble, test_bags).argmax(axis=1)]) == list(result["predictions"][ROWS[3].format(SMALL["n_seeds"])])
    classify(models / "classify.toml", comp, tmp_path / "working")
    assert (tmp_path / "working" / "submission.csv").read_bytes() == (root / "working" / "slides" / "submission.csv").read_bytes()
    slides_tiles.train_tile_classifier(comp / "train_images", dict(zip(train_ids, train_labels)), tmp_path / "tiles",
                                       tmp_path / "tiles.safetensors", backbone, classes=SUBTYPES, options=slides.BAG_OPTIONS,
                                       steps=SMALL["tile_steps"], seed=0, log=lambda *_: None)
    assert same_safetensors(tmp_path / "tiles.safetensors", models / "tiles.safetensors")


def test_the_slides_demo_names_a_size_it_cannot_run(tmp_path):
    from kagglekit.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=r"n_train >= 4 x folds .*got n_train=6, n_test=12, folds=2"):
        run(tmp_path, n_train=6, n_test=12, folds=2)
    assert not (tmp_path / "input").exists()


@pytest.mark.demo
def test_the_full_slides_demo_orders_its_table_recovers_other_and_repeats(tmp_path):
    runs = [run(tmp_path / f"run{k}") for k in range(2)]
    rows = runs[0]["rows"]
    names = list(rows)[:5]  # the tile classifier's rows are figures beside them, in no asserted order
    accuracy = [rows[n][0] for n in names]
    assert names[0] == "majority class" and accuracy[0] == pytest.approx(1 / 5)
    # majority < mean pooling < one Chowder < the seed ensemble < the ensemble with its entropy Other
    assert accuracy == sorted(accuracy) and len(set(accuracy)) == 5
    assert rows[NOTEBOOK][2] >= 0.5 and all(rows[n][2] == 0 for n in rows if n != NOTEBOOK)  # Other recovered
    assert runs[1]["rows"] == rows  # the same figures: fixed epochs, fixed seeds
    working = tmp_path / "run0" / "working" / "slides"
    assert (working / "slides.png").is_file() and (working / "inference.executed.ipynb").is_file()
