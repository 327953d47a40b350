"""The README's recipes run as written on replicas of the five competitions' real folders.

Each replica copies the layout, file names and formats of ``../shared/real-formats.md`` (tiny images);
each recipe's checkpoints are closed-form test models saved under the names the recipe gives. The
submission must have the sample's header, its ids in its order, every row predicted, and values in the
competition's format.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from kagglekit.cli import main
from kagglekit.models import create, save_checkpoint

from competitions import checkpoint, read_csv, write_png
from helpers import plain_rle_decode, tissue_slide

RNG = np.random.default_rng(23)
UBC_CLASSES = ["CC", "EC", "HGSC", "LGSC", "MC"]
DIAGNOSES = ["AK", "BCC", "BKL", "DF", "SCC", "VASC", "melanoma", "nevus", "unknown"]
PLANET_TAGS = ["agriculture", "artisinal_mine", "bare_ground", "blooming", "blow_down", "clear", "cloudy",
               "conventional_mine", "cultivation", "habitation", "haze", "partly_cloudy", "primary", "road",
               "selective_logging", "slash_burn", "water"]


def recipes() -> dict[str, str]:
    """{heading: TOML} of the README's "Recipes" section."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("\n## Recipes\n", 1)[1].split("\n## ", 1)[0]
    found = dict(re.findall(r"\n### ([^\n]+)\n.*?```toml\n(.*?)```", section, re.S))
    assert len(found) == 5, list(found)
    return found


def recipe(words: str) -> str:
    return next(toml for name, toml in recipes().items() if name.startswith(words))


def write_sample(path: Path, header: str, ids, value: str) -> None:
    path.write_text(header + "\n" + "".join(f"{i},{value}\n" for i in ids))


def run_recipe(tmp_path, toml: str, comp: Path, capsys) -> tuple[list[dict], str]:
    """Run the recipe as a user would (the CLI, the config in the model folder): the submission's rows, the log."""
    config = tmp_path / "models" / "config.toml"
    config.write_text(toml)
    command = "segment" if 'kind = "segment"' in toml else "classify"
    code = main([command, str(config), "--input", str(comp), "--output", str(tmp_path / "working")])
    out, log = capsys.readouterr()
    assert code == 0 and " 0 fallback rows" in out, out + log
    return read_csv(tmp_path / "working" / "submission.csv"), log


def assert_sample_order(rows: list[dict], sample: Path) -> None:
    expected = read_csv(sample)
    assert list(rows[0]) == list(expected[0])  # the header
    id_column = list(expected[0])[0]
    assert [r[id_column] for r in rows] == [r[id_column] for r in expected]


def ubc_replica(comp: Path) -> None:
    """test.csv (ids, originals' sizes), test_images/<id>.png, test_thumbnails/<id>_thumbnail.png for the
    WSIs only (on black, 1/20 of test.csv's size); the TMA (on white) has none."""
    (comp / "test_images").mkdir(parents=True)
    (comp / "test_thumbnails").mkdir()
    rows = [("41", 12800, 8000), ("66", 1200, 1200), ("4", 10240, 7680)]
    for image_id, width, height in rows:
        if width < 6000:  # a TMA: one round core of tissue on white glass
            core = np.full((height, width, 3), 255, np.uint8)
            disc = cv2.circle(np.zeros((height, width), np.uint8), (width // 2, height // 2), int(0.45 * width), 1, -1)
            core[disc > 0] = RNG.integers(60, 190, (int(disc.sum()), 3))
            write_png(comp / "test_images" / f"{image_id}.png", core)
        else:
            thumb = tissue_slide(height // 20, width // 20, 0, seed=int(image_id))
            write_png(comp / "test_thumbnails" / f"{image_id}_thumbnail.png", thumb)
    (comp / "test.csv").write_text("image_id,image_width,image_height\n" + "".join(f"{i},{w},{h}\n" for i, w, h in rows))
    write_sample(comp / "sample_submission.csv", "image_id,label", [i for i, _, _ in rows], "HGSC")


def test_ubc_ocean_slides_from_thumbnails_and_tmas_from_their_images(tmp_path, capsys):
    import test_classify_slides  # noqa: F401  (registers the mean-colour backbone)

    comp, models = tmp_path / "input" / "UBC-OCEAN", tmp_path / "models"
    ubc_replica(comp)
    models.mkdir()
    save_checkpoint(create("kagglekit/test_slides_mean_colour"), models / "backbone.safetensors")
    for fold in (0, 1):
        heads = create("kagglekit/head_ensemble", head="chowder", seeds=[fold], in_dim=3, r=1, hidden=[], num_classes=5)
        save_checkpoint(heads, models / f"heads_fold{fold}.safetensors",
                        {"backbone": "kagglekit/test_slides_mean_colour@backbone.safetensors"}, classes=UBC_CLASSES)
    rows, log = run_recipe(tmp_path, recipe("UBC-OCEAN"), comp, capsys)
    assert_sample_order(rows, comp / "sample_submission.csv")
    assert {r["label"] for r in rows} <= {*UBC_CLASSES, "Other"}
    assert log.count("tiles (wsi)") == 2 and log.count("tiles (tma)") == 1  # the kinds test.csv's widths give


def test_siim_isic_target_is_the_melanoma_probability_of_a_nine_class_model(tmp_path, capsys):
    comp, models = tmp_path / "input" / "siim-isic-melanoma-classification", tmp_path / "models"
    (comp / "jpeg" / "test").mkdir(parents=True)
    (comp / "test").mkdir()
    models.mkdir()
    ids = ["ISIC_0052060", "ISIC_0052349", "ISIC_0058510"]
    colours = RNG.integers(30, 225, (len(ids), 3))
    for i, colour in zip(ids, colours):
        cv2.imwrite(str(comp / "jpeg" / "test" / f"{i}.jpg"), np.full((48, 64, 3), colour[::-1], np.uint8))
        (comp / "test" / f"{i}.dcm").write_bytes(bytes(128) + b"DICM" + bytes(64))  # a DICOM's preamble
    (comp / "test.csv").write_text("image_name,patient_id,sex,age_approx,anatom_site_general_challenge\n"
                                   + "".join(f"{i},IP_{k},,45.0,torso\n" for k, i in enumerate(ids)))
    write_sample(comp / "sample_submission.csv", "image_name,target", ids, "0")
    for fold in (0, 1):
        save_checkpoint(create("kagglekit/test_pipeline_colour", num_classes=9), models / f"diagnosis_fold{fold}.safetensors",
                        classes=DIAGNOSES)
    rows, _ = run_recipe(tmp_path, recipe("SIIM-ISIC"), comp, capsys)
    assert_sample_order(rows, comp / "sample_submission.csv")
    imagenet = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
    for row, colour in zip(rows, colours):  # a solid colour: the model's softmax has a closed form
        seen = (colour / 255 - imagenet[0]) / imagenet[1]  # the recipe's normalize = "imagenet"
        logits = np.array([8.0 * (seen[k % 3] - 0.5) for k in range(9)])  # ColourLogits' closed form
        p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert 0 <= float(row["target"]) <= 1
        assert float(row["target"]) == pytest.approx(p[DIAGNOSES.index("melanoma")], abs=0.02)  # JPEG's rounding


def test_hpa_four_channel_files_and_integer_labels(tmp_path, capsys):
    comp, models = tmp_path / "input" / "human-protein-atlas-image-classification", tmp_path / "models"
    (comp / "test").mkdir(parents=True)
    models.mkdir()
    ids = ["00008af0-bad0-11e8-b2b8-ac1f6b6435d0", "0000a892-bacf-11e8-b2b7-ac1f6b6435d0"]
    for i in ids:
        for colour in ("red", "green", "blue", "yellow"):
            cv2.imwrite(str(comp / "test" / f"{i}_{colour}.png"), RNG.integers(0, 256, (64, 64), np.uint8))
    write_sample(comp / "sample_submission.csv", "Id,Predicted", ids, "0")
    save_checkpoint(create("kagglekit/test_pipeline_colour", in_channels=4, num_classes=28), models / "rgby_fold0.safetensors",
                    classes=[str(k) for k in range(28)])
    rows, _ = run_recipe(tmp_path, recipe("Human Protein Atlas"), comp, capsys)
    assert_sample_order(rows, comp / "sample_submission.csv")
    for row in rows:
        assert re.fullmatch(r"(\d+( \d+)*)?", row["Predicted"])
        assert all(0 <= int(k) <= 27 for k in row["Predicted"].split())


def test_planet_two_test_folders_in_the_v2_samples_order(tmp_path, capsys):
    comp, models = tmp_path / "input" / "planet-understanding-the-amazon-from-space", tmp_path / "models"
    (comp / "test-jpg").mkdir(parents=True)
    (comp / "test-jpg-additional").mkdir()
    models.mkdir()
    ids = [f"test_{n}" for n in range(4)] + [f"file_{n}" for n in range(3)]
    for i in ids:
        folder = "test-jpg" if i.startswith("test_") else "test-jpg-additional"
        cv2.imwrite(str(comp / folder / f"{i}.jpg"), RNG.integers(0, 256, (32, 32, 3), np.uint8))
    write_sample(comp / "sample_submission_v2.csv", "image_name,tags", ids, "primary clear agriculture road water")
    save_checkpoint(create("kagglekit/test_pipeline_colour", num_classes=17), models / "planet_fold0.safetensors",
                    classes=PLANET_TAGS)
    rows, _ = run_recipe(tmp_path, recipe("Planet"), comp, capsys)
    assert_sample_order(rows, comp / "sample_submission_v2.csv")
    assert all(set(r["tags"].split()) <= set(PLANET_TAGS) for r in rows)
    weather = {"clear", "partly_cloudy", "haze", "cloudy"}  # the recipe's group: exactly one; "cloudy" alone
    for tags in (set(r["tags"].split()) for r in rows):
        assert len(tags & weather) == 1 and ("cloudy" not in tags or tags == {"cloudy"})


def test_vesuvius_per_slice_tiffs_with_masks_give_valid_rles(tmp_path, capsys):
    comp, models = tmp_path / "input" / "vesuvius-challenge-ink-detection", tmp_path / "models"
    shapes = {"a": (200, 300), "b": (160, 240)}
    masks = {}
    for name, (h, w) in shapes.items():
        folder = comp / "test" / name / "surface_volume"
        folder.mkdir(parents=True)
        for z in range(65):
            tifffile.imwrite(folder / f"{z:02d}.tif", RNG.integers(0, 65536, (h, w), np.uint16))
        masks[name] = np.zeros((h, w), bool)
        masks[name][10 : h - 10, 20 : w - 20] = True
        cv2.imwrite(str(comp / "test" / name / "mask.png"), masks[name].astype(np.uint8) * 255)
    write_sample(comp / "sample_submission.csv", "Id,Predicted", list(shapes), "1 1")
    models.mkdir()
    checkpoint(models / "ink_fold0.safetensors", "test_pipeline_block_mean", scale=32, gain=10.0, offset=0.0)
    rows, _ = run_recipe(tmp_path, recipe("Vesuvius"), comp, capsys)
    assert_sample_order(rows, comp / "sample_submission.csv")
    for row in rows:
        h, w = shapes[row["Id"]]
        pairs = np.array(row["Predicted"].split(), np.int64).reshape(-1, 2)
        starts, lengths = pairs[:, 0], pairs[:, 1]
        assert len(pairs) and (starts >= 1).all() and (lengths > 0).all()
        assert (starts[1:] > starts[:-1] + lengths[:-1]).all()  # sorted, apart (adjacent runs would be one)
        assert starts[-1] + lengths[-1] - 1 <= h * w
        mask = plain_rle_decode(row["Predicted"], (h, w))
        assert mask.any() and not (mask & ~masks[row["Id"]]).any()  # ink only inside the papyrus
