"""``kagglekit train`` from the README's instructions on the multilabel demo's competition, then
``kagglekit classify`` with the config it wrote, then ``kagglekit bundle``; and the one-preprocessing
guarantee: a fold's OOF probabilities are what ``classify`` writes for its held-out images."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kagglekit.cli import main

from competitions import read_csv
from helpers import README, code_blocks, plain_rle_decode, readme_section


def readme_training() -> tuple[str, list[str]]:
    """The README's training TOML and its commands (the section's first bash block; the second is kagglekit blend's)."""
    section = readme_section("Training")
    (toml,) = code_blocks(section, "toml")
    bash = code_blocks(section, "bash")[0]
    return toml, [line.split("  #")[0].strip() for line in bash.strip().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, kagglekit_wheel):
    """The README's commands run as written in a fresh folder, on a small copy of the demo's competition
    (its steps and folds turned down), ``kagglekit wheels build`` standing for the session's wheel."""
    from kagglekit.demo.multilabel_data import build_multilabel_competition

    root = tmp_path_factory.mktemp("train")  # a fresh clone's root: what bundle reads from it
    repo = README.parent
    shutil.copy(repo / "kernel-metadata.json", root)
    shutil.copytree(repo / "notebooks", root / "notebooks")
    shutil.copytree(repo / "wheels", root / "wheels")
    build_multilabel_competition(root / "build" / "demo", n_train=96, n_test=16, side=64, seed=0)
    toml, commands = readme_training()
    (root / "train.toml").write_text(toml.replace("steps = 120", "steps = 4").replace("n = 4", "n = 2"))
    codes = {}
    cwd = Path.cwd()
    try:
        os.chdir(root)
        for command in commands:
            argv = command.replace("<your-kaggle-username>", "you").split()[1:]
            if argv[0] == "classify":
                argv[argv.index("--output") + 1] = str(root / "out")
            if argv[:2] == ["wheels", "build"]:  # tested in test_wheels.py; here its kagglekit wheel
                shutil.copy(kagglekit_wheel, root / "wheels")
                continue
            codes[argv[0] + (" --check" if "--check" in argv else "")] = main(argv)
    finally:
        os.chdir(cwd)
    return root, codes


def test_the_readme_trains_classifies_and_bundles(trained, capsys):
    root, codes = trained
    assert codes == {"train --check": 0, "train": 0, "classify": 0, "bundle": 0}
    models, comp = root / "models", root / "build" / "demo" / "input" / "kagglekit-multilabel"
    for name in ("fold0/model.safetensors", "fold1/model.safetensors", "oof.parquet", "cv.json", "decision.json",
                 "curves.png", "classify.toml"):
        assert (models / name).is_file(), name
    assert not (models / "fold0" / "state").exists()  # a finished fold keeps no optimiser state
    rows = read_csv(root / "out" / "submission.csv")
    sample = read_csv(comp / "sample_submission.csv")
    assert [r["image_name"] for r in rows] == [r["image_name"] for r in sample]
    assert (root / "dist" / "kaggle" / "models" / "classify.toml").is_file()
    from kagglekit.models import checkpoint_info

    info = checkpoint_info(models / "fold0" / "model.safetensors")
    assert info["metadata"]["preprocess"]["size"] == [64, 64] and info["metadata"]["fold"] == 0
    oof = pl.read_parquet(models / "oof.parquet")
    train = read_csv(comp / "train.csv")
    assert sorted(oof["id"].to_list()) == sorted(r["image_name"] for r in train) and set(oof["fold"]) == {0, 1}


def test_a_folds_oof_probabilities_are_what_classify_writes_for_its_held_out_images(trained):
    """The kernel's config as written, narrowed to fold 0's checkpoint, no TTA, probabilities in columns."""
    from kagglekit._toml import tomllib
    from kagglekit.pipeline import classify

    root, _ = trained
    models, comp = root / "models", root / "build" / "demo" / "input" / "kagglekit-multilabel"
    oof = pl.read_parquet(models / "oof.parquet").filter(pl.col("fold") == 0)
    classes = [c.removeprefix("prob_") for c in oof.columns if c.startswith("prob_")]
    parity = root / "parity"
    parity.mkdir()
    (parity / "sample.csv").write_text("image_name," + ",".join(classes) + "\n"
                                       + "".join(f"{i}{',0' * len(classes)}\n" for i in oof["id"]))
    config = tomllib.loads((models / "classify.toml").read_text())
    config.update(models=[{"path": "fold0/model.safetensors"}], tta={"views": ["identity"]},
                  inputs={"glob": "train/*.jpg"}, decision={"kind": "probability"},
                  output={"sample_submission": str(parity / "sample.csv"), "format": "columns"})
    report = classify(config, comp, parity, base_dir=models)
    assert len(report.predicted) == oof.height
    written = {r["image_name"]: [float(r[c]) for c in classes] for r in read_csv(parity / "submission.csv")}
    got = np.array([written[i] for i in oof["id"]])
    np.testing.assert_allclose(got, oof.select([f"prob_{c}" for c in classes]).to_numpy(), rtol=0, atol=1e-5)


def test_check_names_a_mistake_in_the_kernel_section_before_any_training(tmp_path, capsys):
    toml, _ = readme_training()
    (tmp_path / "train.toml").write_text(toml.replace('label_column = "tags"', 'label_colum = "tags"'))
    (tmp_path / "train.csv").write_text("image_name,tags\n")
    assert main(["train", str(tmp_path / "train.toml"), "--input", str(tmp_path), "--out", str(tmp_path / "m")]) == 1
    assert "output: unknown key(s) ['label_colum'] (did you mean 'label_column'?)" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_kernel_config_that_feeds_the_models_otherwise_is_refused_naming_the_fix(trained, capsys):
    root, _ = trained
    models, comp = root / "models", root / "build" / "demo" / "input" / "kagglekit-multilabel"
    text = (models / "classify.toml").read_text()
    assert "size = 64" in text
    wrong = models / "wrong.toml"
    wrong.write_text(text.replace("size = 64", "size = 96"))
    assert main(["classify", str(wrong), "--input", str(comp), "--check"]) == 1
    assert "set [preprocess] size = [64, 64] (not [96, 96])" in capsys.readouterr().out
    assert main(["classify", str(wrong), "--input", str(comp), "--output", str(root / "wrong")]) == 1
    assert "the kernel must feed it what training fed it: set [preprocess] size = [64, 64]" in capsys.readouterr().err
    assert [r["image_name"] for r in read_csv(root / "wrong" / "submission.csv")] == [
        r["image_name"] for r in read_csv(comp / "sample_submission.csv")]  # the fallback stays


SEGMENT_TOML = """kind = "segment"

[data]
table = "train.csv"
images = "train/{id}.png"
label = "rle"
target = "mask"

[preprocess]
normalize = "scale"

[model]
name = "kagglekit/test_oof_segmenter"

[train]
steps = 4
batch_size = 2
lr = 0.05
loss = "bce"
num_workers = 0

[folds]
n = 2

[decision]
beta = 0.5

[kernel.inputs]
glob = "test/*.png"

[kernel.tiling]
tile = 32
stride = 16
margin = 4
"""


def test_kagglekit_train_segments_with_a_threshold_fitted_on_the_kernels_oof_maps(tmp_path, capsys):
    """The OOF maps come from the kernel's own segment; the threshold is F0.5's best over their pixels
    (checked against a brute force over every distinct probability); then segment runs on the test images."""
    import test_segment_oof  # noqa: F401  (registers the tiny segmenter)
    from kagglekit.kaggle.rle import rle_encode
    from kagglekit.metrics import fbeta_score

    from competitions import write_png

    rng = np.random.default_rng(5)
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
    rows = []
    for k in range(6):
        image = rng.integers(0, 256, (36, 36, 3), np.uint8)
        write_png(tmp_path / "train" / f"t{k}.png", image)
        rows.append((f"t{k}", rle_encode(image[..., 0] > 140)))
        write_png(tmp_path / "test" / f"s{k}.png", image[::-1])
    (tmp_path / "train.csv").write_text("id,rle\n" + "".join(f"{i},{r}\n" for i, r in rows))
    (tmp_path / "sample_submission.csv").write_text("id,rle\n" + "".join(f"s{k},\n" for k in range(6)))
    (tmp_path / "train.toml").write_text(SEGMENT_TOML)
    assert main(["train", str(tmp_path / "train.toml"), "--input", str(tmp_path), "--check"]) == 0
    assert "6 rows, masks, 3 channel(s)" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "train.toml"), "--input", str(tmp_path), "--out", str(tmp_path / "models")]) == 0
    models = tmp_path / "models"
    oof = pl.read_parquet(models / "oof.parquet")
    maps = [np.load(models / m) for m in oof["map"]]
    truth = [plain_rle_decode(dict(rows)[i], (36, 36)) for i in oof["id"]]
    scores, y = np.concatenate([m.astype(np.float16).ravel() for m in maps]), np.concatenate([t.ravel() for t in truth])
    best = max(fbeta_score(y, scores >= t, 0.5) for t in np.unique(scores))
    chosen = __import__("json").loads((models / "threshold.json").read_text())
    assert fbeta_score(y, scores >= chosen["threshold"], 0.5) == pytest.approx(best)
    assert main(["segment", str(models / "segment.toml"), "--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    assert [r["id"] for r in read_csv(tmp_path / "out" / "submission.csv")] == [f"s{k}" for k in range(6)]


def test_the_training_decision_is_fit_decision_over_repeated_splits_under_a_label_structure(tmp_path, capsys):
    from kagglekit.demo.multilabel import train_config, weather
    from kagglekit.demo.multilabel_data import WEATHER, build_multilabel_competition
    from kagglekit.thresholds import fit_decision
    from kagglekit.train.command import fit_oof_decision
    from kagglekit.train.config import read_train_config
    from kagglekit.train.toml_writer import dumps

    comp = build_multilabel_competition(tmp_path, n_train=24, n_test=2).folder
    structure = {"alone": ["cloudy"], "groups": [{"labels": list(WEATHER), "rule": "exactly_one"}]}
    data = train_config(steps=1, folds=2)
    data["decision"].update(structure, repeats=3)
    (tmp_path / "train.toml").write_text(dumps(data))
    cfg = read_train_config(tmp_path / "train.toml")
    rng = np.random.default_rng(0)
    classes, y = ["a", *WEATHER], (rng.random((60, 5)) < 0.4).astype(int)
    z = rng.normal(size=(60, 5)) + 2 * y
    oof = pl.DataFrame({"id": [str(k) for k in range(60)], **{f"logit_{c}": z[:, k] for k, c in enumerate(classes)},
                        **{f"prob_{c}": 1 / (1 + np.exp(-z[:, k])) for k, c in enumerate(classes)}})
    expected = fit_decision(1 / (1 + np.exp(-z)), y, "per_class", beta=2.0, classes=classes, logits=z, structure=weather(),
                            folds=5, repeats=3, seed=0)
    assert fit_oof_decision(cfg, oof, classes, y) == expected and expected.repeats == 3 and expected.structure is not None

    decision = {k: v for k, v in data["decision"].items() if k != "alone"}
    unknown = {**data, "decision": {**decision, "groups": [{"labels": ["clear", "foggy"], "rule": "at_most_one"}]}}
    (tmp_path / "unknown.toml").write_text(dumps(unknown))  # --check names a label that is not a class of the table
    assert main(["train", str(tmp_path / "unknown.toml"), "--input", str(comp), "--check"]) == 1
    captured = capsys.readouterr()
    assert "problem: decision: label structure: ['foggy'] not among the 12 columns" in captured.out + captured.err
    for change, words in (({"repeats": 2, "folds": None}, "decision.repeats: goes with folds"),
                          ({"kind": "argmax"}, "a label structure goes with kind = 'threshold'")):
        bad = {**data, "decision": {k: v for k, v in {**data["decision"], "alone": ["cloudy"], **change}.items() if v is not None}}
        (tmp_path / "bad.toml").write_text(dumps(bad))
        assert main(["train", str(tmp_path / "bad.toml"), "--input", str(comp), "--check"]) == 1
        assert capsys.readouterr().err.count(words) == 1, words
