"""classify with [slides]: each slide a bag, closed-form MIL heads, the expected submission computed plainly.

The backbone returns each tile's mean colour (0..1); the Chowder heads score each tile for the classes
"red", "blue" and "plain" by red - blue, blue - red and a constant, and a class's logit is a fixed gain
times its highest tile score, so every
slide's probabilities, the entropy "Other" and the temperature have a closed form over the tiles that the
selection rule (recomputed here from the tissue mask) keeps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from kagglekit.cli import main
from kagglekit.models import create, register_model, save_checkpoint
from kagglekit.pipeline import classify
from kagglekit.thresholds import Decision, write_decision

from competitions import read_csv, write_png
from helpers import plain_selection, plain_tile

CLASSES = ["red", "blue", "plain"]
GAINS = (6.0, 9.0)  # one head per seed of the ensemble, each its own gain
TILE = 32


class MeanColour(nn.Module):
    """(B, 3, h, w) -> (B, 3): each tile's mean colour."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x.mean(dim=(2, 3))


register_model("test_slides_mean_colour", MeanColour)


def tissue_slide(patches=(), size=(200, 260)):
    """Gray tissue on white with coloured square patches [(y, x, colour)]."""
    image = np.full((*size, 3), 255, np.uint8)
    image[30:170, 40:220] = (120, 120, 120)
    for y, x, colour in patches:
        image[y : y + 40, x : x + 40] = colour
    return image


SLIDES = {"r": tissue_slide([(40, 50, (220, 40, 40))]), "b": tissue_slide([(100, 150, (40, 40, 220))]),
          "p": tissue_slide(), "o": tissue_slide([(40, 50, (220, 40, 40)), (100, 150, (40, 40, 220))]),
          "blank": np.full((120, 120, 3), 255, np.uint8)}


def heads(path, backbone_name):
    """A HeadEnsemble of two Chowder heads (r=1, no hidden layer): tile scores red - blue, blue - red and
    0.3 for the three classes; a class's logit is g times its highest score, g from GAINS."""
    ensemble = create("kagglekit/head_ensemble", head="chowder", seeds=[0, 1], in_dim=3, r=1, hidden=[], num_classes=3)
    with torch.no_grad():
        ensemble.score__weight.copy_(torch.tensor([[[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]] * 2))
        ensemble.score__bias.copy_(torch.tensor([[0.0, 0.0, 0.3]] * 2))
        for k, g in enumerate(GAINS):
            ensemble.mlp__0__weight[k] = torch.tensor([[g, 0.0]])
    return save_checkpoint(ensemble, path, {"backbone": backbone_name}, classes=CLASSES)


def expected_probabilities(image, temperature=1.0):
    """The mean over both heads of the softmax, from the tiles the selection keeps, computed plainly; then
    the temperature divides its logarithm."""
    coords = plain_selection(image, TILE, 0.25)
    means = np.array([plain_tile(image, y, x, TILE).reshape(-1, 3).mean(axis=0) / 255 for y, x in coords])
    means = means.astype(np.float16).astype(np.float64)  # a bag stores float16 features
    redness = means[:, 0] - means[:, 2]
    highest = np.array([redness.max(), (-redness).max(), 0.3])
    p = np.mean([np.exp(g * highest - (g * highest).max()) / np.exp(g * highest - (g * highest).max()).sum()
                 for g in GAINS], axis=0)
    z = np.log(p) / temperature
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()


@pytest.fixture
def comp(tmp_path):
    (tmp_path / "test").mkdir()
    for i, image in SLIDES.items():
        write_png(tmp_path / "test" / f"{i}.png", image)
    (tmp_path / "sample_submission.csv").write_text("id,label\n" + "".join(f"{i},plain\n" for i in SLIDES))
    save_checkpoint(create("kagglekit/test_slides_mean_colour"), tmp_path / "backbone.safetensors")
    heads(tmp_path / "heads.safetensors", "kagglekit/test_slides_mean_colour@backbone.safetensors")
    return tmp_path


def run_slides(tmp_path, decision=None, **slides):
    cfg = {"kind": "classify", "models": [{"path": "heads.safetensors"}], "num_workers": 0,
           "slides": {"backbone": "backbone.safetensors", "tile": TILE, "normalize": "scale", **slides},
           "decision": decision or {}}
    report = classify(cfg, tmp_path, tmp_path / "out", base_dir=tmp_path)
    return report, {r["id"]: r["label"] for r in read_csv(tmp_path / "out" / "submission.csv")}


def entropy(p):
    return float(-(p * np.log(p)).sum())


def test_each_slide_gets_the_class_of_its_bag_and_a_blank_slide_its_fallback(comp):
    report, rows = run_slides(comp)
    expected = {i: CLASSES[int(expected_probabilities(SLIDES[i]).argmax())] for i in "rbpo"}
    assert expected["r"] == "red" and expected["b"] == "blue" and expected["p"] == "plain"
    assert rows == {**expected, "blank": "plain"}  # the blank slide keeps the sample's row
    assert "no tissue" in report.fallback["blank"] and report.exit_code() == 0 and report.exit_code(strict=True) == 3


def test_other_from_an_entropy_cut_and_a_temperature_from_the_decision_file(comp):
    entropies = {i: entropy(expected_probabilities(SLIDES[i], 2.0)) for i in "rbpo"}
    cut = (entropies["o"] + max(entropies[i] for i in "rbp")) / 2  # only the red-and-blue slide is above
    assert entropies["o"] > cut
    write_decision(Decision("argmax", other_cut=cut, other="Other", temperature=2.0, classes=tuple(CLASSES)),
                   comp / "decision.json")
    _, rows = run_slides(comp, {"file": "decision.json"})
    expected = {i: CLASSES[int(expected_probabilities(SLIDES[i], 2.0).argmax())] for i in "rbp"}
    assert rows == {**expected, "o": "Other", "blank": "plain"}


def test_probabilities_in_columns_equal_the_closed_form(comp):
    (comp / "sample_submission.csv").write_text("id,red,blue,plain\n" + "".join(f"{i},0,0,1\n" for i in "rbpo"))
    cfg = {"kind": "classify", "models": [{"path": "heads.safetensors"}], "num_workers": 0,
           "slides": {"backbone": "backbone.safetensors", "tile": TILE, "normalize": "scale"},
           "decision": {"kind": "probability"}, "output": {"format": "columns"}}
    classify(cfg, comp, comp / "out", base_dir=comp)
    for row in read_csv(comp / "out" / "submission.csv"):
        got = [float(row[c]) for c in CLASSES]
        np.testing.assert_allclose(got, expected_probabilities(SLIDES[row["id"]]), atol=1e-5)


def test_heads_of_another_backbone_are_refused_and_the_submission_stays_valid(comp, capsys):
    heads(comp / "heads.safetensors", "timm/vit_small_patch16_224")
    (comp / "classify.toml").write_text(
        'kind = "classify"\nnum_workers = 0\n[[models]]\npath = "heads.safetensors"\n'
        f'[slides]\nbackbone = "backbone.safetensors"\ntile = {TILE}\n')
    code = main(["classify", "--config", str(comp / "classify.toml"), "--input", str(comp), "--output", str(comp / "out")])
    assert code == 1
    assert "trained on bags of 'timm/vit_small_patch16_224'" in capsys.readouterr().err
    assert [r["label"] for r in read_csv(comp / "out" / "submission.csv")] == ["plain"] * 5


@pytest.mark.parametrize("slides, words", [
    ({"backbone": "timm/resnet18"}, "slides.weights: goes with a timm name"),
    ({"backbone": "b.safetensors", "scale": {"tmaa": 0.5}}, "slides.scale"),
    ({"backbone": "b.safetensors", "swap_background": "wsi"}, "slides.swap_background"),
    ({"backbone": "b.safetensors", "tiles": 3}, "did you mean 'tile'"),
])
def test_slides_mistakes_name_the_key(comp, slides, words):
    from kagglekit.pipeline.sections import PipelineConfigError

    cfg = {"kind": "classify", "models": [{"path": "heads.safetensors"}], "slides": slides}
    with pytest.raises(PipelineConfigError, match=words.replace("(", r"\(")):
        classify(cfg, comp, comp / "out", base_dir=comp)
    assert json.dumps(read_csv(comp / "out" / "submission.csv"))  # the fallback was written first


def test_check_names_the_backbone_and_a_head_of_another(comp, capsys):
    toml = (comp / "classify.toml")
    toml.write_text('kind = "classify"\n[[models]]\npath = "heads.safetensors"\n'
                    f'[slides]\nbackbone = "backbone.safetensors"\ntile = {TILE}\n')
    assert main(["classify", "--config", str(toml), "--input", str(comp), "--check"]) == 0
    assert "slides backbone: kagglekit/test_slides_mean_colour@backbone.safetensors" in capsys.readouterr().out
    heads(comp / "heads.safetensors", "timm/vit_small_patch16_224")
    assert main(["classify", "--config", str(toml), "--input", str(comp), "--check"]) == 1
    assert "trained on bags of 'timm/vit_small_patch16_224'" in capsys.readouterr().out
