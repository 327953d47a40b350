"""classify with [slides] route = "tiles" and per-kind branches, against plain loops.

The tile classifiers are closed forms: a tile's logits are gain * (r - b, b - r) of the mean colour of its
left (or top) half, and a constant, so each tile's softmax is computed here from the tile read plainly
(the selection recomputed from the tissue mask by ``plain_selection``), the views applied by hand, and the
tiles' probabilities aggregated with numpy. Branches get classifiers of different halves, gains and
constants, tile sizes, scales and aggregations, so a slide's row says which branch ran.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from kagglekit.models import create, register_model, save_checkpoint
from kagglekit.pipeline import classify
from kagglekit.pipeline.sections import PipelineConfigError

from competitions import read_csv, write_png
from helpers import plain_selection, plain_tile

CLASSES = ["red", "blue", "plain"]


class HalfColour(nn.Module):
    """(B, 3, h, w) in [0, 1] -> (B, 3) logits: gain * (r - b, b - r) of the mean colour of the tile's left
    (``half="left"``) or top half, and ``constant``."""

    def __init__(self, half: str = "left", gain: float = 8.0, constant: float = 0.3):
        super().__init__()
        self.half = half
        self.gain = nn.Parameter(torch.tensor(gain))
        self.constant = nn.Parameter(torch.tensor(constant))

    def forward(self, x):
        h, w = x.shape[2:]
        part = x[:, :, :, : w // 2] if self.half == "left" else x[:, :, : h // 2]
        m = part.mean(dim=(2, 3))
        score = self.gain * (m[:, 0] - m[:, 2])
        return torch.stack([score, -score, self.constant.expand(len(x))], dim=1)


register_model("test_tiles_half_colour", HalfColour)
MODELS = {"left": {"half": "left", "gain": 8.0, "constant": 0.3}, "top": {"half": "top", "gain": 5.0, "constant": -0.2}}


def plain_softmax(tile: np.ndarray, half: str, gain: float, constant: float) -> np.ndarray:
    """The classifier on one (h, w, 3) uint8 tile, in numpy."""
    t = tile.astype(np.float64) / 255
    part = t[:, : t.shape[1] // 2] if half == "left" else t[: t.shape[0] // 2]
    m = part.reshape(-1, 3).mean(axis=0)
    z = np.array([gain * (m[0] - m[2]), -gain * (m[0] - m[2]), constant])
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()


def plain_slide(image, model: str, tile: int, top_k=None, how="mean", k=None, scale=1.0, views=("identity",)):
    """The slide's probabilities by a plain loop: the selected tiles, each read and resized plainly, every view's
    softmax averaged, then the tiles' aggregated per class."""
    side = round(tile / scale)
    rows = []
    for y, x in plain_selection(image, side, 0.25, top_k):
        pixels = plain_tile(image, y, x, side)
        if side != tile:
            pixels = cv2.resize(pixels, (tile, tile), interpolation=cv2.INTER_AREA)
        seen = {"identity": pixels, "hflip": pixels[:, ::-1]}
        rows.append(np.mean([plain_softmax(seen[v], **MODELS[model]) for v in views], axis=0))
    p = np.array(rows)
    if how == "mean":
        return p.mean(axis=0)
    if how == "max":
        return p.max(axis=0)
    return np.array([np.mean(sorted(p[:, c])[-k:]) for c in range(p.shape[1])])


def slide(size, background, patches=()):
    """Gray tissue on ``background`` with coloured 40 px squares [(y, x, colour)] inside it."""
    h, w = size
    image = np.full((h, w, 3), background, np.uint8)
    image[30 : h - 30, 40 : w - 40] = (120, 120, 120)
    for y, x, colour in patches:
        image[y : y + 40, x : x + 40] = colour
    return image


RED, BLUE = (220, 40, 40), (40, 40, 220)
SLIDES = {  # tma_max_side = 250 below: a slide on white of at most 250 px is a TMA, any other a WSI
    "tma_red": slide((200, 240), 255, [(40, 50, RED), (100, 140, BLUE), (120, 60, RED)]),
    "tma_blue": slide((220, 200), 255, [(60, 44, BLUE), (130, 100, RED)]),
    "wsi_red": slide((300, 360), 0, [(60, 70, RED), (150, 200, RED), (200, 100, BLUE)]),
    "big_white": slide((300, 300), 255, [(80, 90, BLUE), (170, 150, RED)]),
}
AUTO_KIND = {"tma_red": "tma", "tma_blue": "tma", "wsi_red": "wsi", "big_white": "wsi"}


@pytest.fixture(scope="module")
def comp(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    (root / "test").mkdir()
    for i, image in SLIDES.items():
        write_png(root / "test" / f"{i}.png", image)
    (root / "sample_submission.csv").write_text("id,red,blue,plain\n" + "".join(f"{i},0,0,1\n" for i in SLIDES))
    for name, kwargs in MODELS.items():
        save_checkpoint(create("kagglekit/test_tiles_half_colour", **kwargs), root / f"{name}.safetensors", classes=CLASSES)
    return root


def run(comp, out, slides, models=("left",), **top):
    cfg = {"kind": "classify", "models": [{"path": f"{m}.safetensors"} for m in models], "num_workers": 0,
           "slides": {"route": "tiles", "normalize": "scale", "tma_max_side": 250, **slides},
           "decision": {"kind": "probability", "activation": "softmax"}, "output": {"format": "columns"}, **top}
    report = classify(cfg, comp, comp / out, base_dir=comp)
    rows = {r["id"]: np.array([float(r[c]) for c in CLASSES]) for r in read_csv(comp / out / "submission.csv")}
    return report, rows


@pytest.mark.parametrize("how, k", [("mean", None), ("max", None), ("topk_mean", 2)])
def test_the_tile_route_equals_a_plain_loop_over_the_top_k_tiles(comp, how, k):
    aggregation = {"aggregate": how, **({"aggregate_k": k} if k else {})}
    report, rows = run(comp, f"out_{how}", {"tile": 32, "top_k": 5, **aggregation})
    assert not report.fallback and set(rows) == set(SLIDES)
    for i, image in SLIDES.items():
        np.testing.assert_allclose(rows[i], plain_slide(image, "left", 32, 5, how, k), atol=1e-5, err_msg=i)


def test_the_tile_route_runs_every_view_and_model_and_all_tiles_without_top_k(comp):
    _, rows = run(comp, "out_views", {"tile": 32}, models=("left", "top"), tta={"views": ["identity", "hflip"]})
    for i, image in SLIDES.items():
        expected = (plain_slide(image, "left", 32, views=("identity", "hflip"))
                    + plain_slide(image, "top", 32, views=("identity", "hflip"))) / 2
        np.testing.assert_allclose(rows[i], expected, atol=1e-5, err_msg=i)
    plain = plain_slide(SLIDES["tma_red"], "left", 32)
    assert np.abs(rows["tma_red"] - plain).max() > 1e-3  # the views and the second model changed the row


BRANCHES = {"tile": 32, "top_k": 4,
            "tma": {"models": [{"path": "top.safetensors"}], "aggregate": "max"},
            "wsi": {"tile": 24, "scale": 0.5, "aggregate": "topk_mean", "aggregate_k": 2}}


def expected_by_kind(kind: str, image):
    """The row of each branch: TMAs through the top-half classifier (32 px, max), WSIs through the left-half
    one (24 px tiles of 48 px, the mean of the 2 highest per class)."""
    if kind == "tma":
        return plain_slide(image, "top", 32, 4, "max")
    return plain_slide(image, "left", 24, 4, "topk_mean", 2, scale=0.5)


def test_per_kind_branches_route_each_slide_by_its_thumbnail(comp):
    _, rows = run(comp, "out_auto", BRANCHES)
    for i, image in SLIDES.items():
        expected, other = expected_by_kind(AUTO_KIND[i], image), expected_by_kind(
            {"tma": "wsi", "wsi": "tma"}[AUTO_KIND[i]], image)
        np.testing.assert_allclose(rows[i], expected, atol=1e-5, err_msg=i)
        assert np.abs(rows[i] - other).max() > 1e-3, i  # the other branch would have written another row


def test_per_kind_branches_follow_tma_when_over_the_table(comp):
    table = {"tma_red": "false", "tma_blue": "true", "wsi_red": "true", "big_white": "false"}  # not the thumbnail's
    (comp / "test.csv").write_text("image_id,is_tma\n" + "".join(f"{i},{v}\n" for i, v in table.items()))
    report, rows = run(comp, "out_table", {**BRANCHES, "tma_when": "is_tma"},
                       inputs={"glob": "test/*", "table": {"path": "test.csv"}})
    assert report.slide_kind == {i: "tma" if v == "true" else "wsi" for i, v in table.items()}
    for i, image in SLIDES.items():
        np.testing.assert_allclose(rows[i], expected_by_kind(report.slide_kind[i], image), atol=1e-5, err_msg=i)


def test_a_mil_branch_beside_a_tile_branch(comp):
    """WSIs through the bag and MIL heads of test_classify_slides (its closed form), TMAs through tiles."""
    from test_classify_slides import TILE, expected_probabilities, heads

    save_checkpoint(create("kagglekit/test_slides_mean_colour"), comp / "backbone.safetensors")
    heads(comp / "heads.safetensors", "kagglekit/test_slides_mean_colour@backbone.safetensors")
    slides = {"route": "mil", "backbone": "backbone.safetensors", "tile": TILE, "normalize": "scale", "tma_max_side": 250,
              "tma": {"route": "tiles", "models": [{"path": "top.safetensors"}], "top_k": 4, "aggregate": "max"}}
    cfg = {"kind": "classify", "models": [{"path": "heads.safetensors"}], "num_workers": 0, "slides": slides,
           "decision": {"kind": "probability", "activation": "softmax"}, "output": {"format": "columns"}}
    classify(cfg, comp, comp / "out_mil", base_dir=comp)
    rows = {r["id"]: np.array([float(r[c]) for c in CLASSES]) for r in read_csv(comp / "out_mil" / "submission.csv")}
    for i, image in SLIDES.items():
        expected = expected_by_kind("tma", image) if AUTO_KIND[i] == "tma" else expected_probabilities(image)
        np.testing.assert_allclose(rows[i], expected, atol=1e-5, err_msg=i)


@pytest.mark.parametrize("slides, top, words", [
    ({"backbone": "b.safetensors"}, {}, "slides.backbone: goes with route = \"mil\""),
    ({"aggregate": "max", "route": "mil", "backbone": "b.safetensors"}, {}, "slides.aggregate: goes with route = \"tiles\""),
    ({"aggregate": "topk_mean"}, {}, "slides.aggregate_k: goes with aggregate = \"topk_mean\""),
    ({"aggregate_k": 3}, {}, "slides.aggregate_k: goes with aggregate = \"topk_mean\""),
    ({"route": "mil"}, {}, "slides: route = \"mil\" needs backbone"),
    ({"kind": "tma", "wsi": {"tile": 64}}, {}, "slides.wsi: slides.kind = 'tma' makes every slide a TMA"),
    ({"tma": {"scale": {"tma": 0.5}}}, {}, "slides.tma.scale: is per kind already"),
    ({"tma": {"models": [{"path": "top.safetensors"}]}, "wsi": {"models": [{"path": "left.safetensors"}]}}, {},
     r"models: \[\[slides.tma.models\]\] and \[\[slides.wsi.models\]\] give every slide kind"),
    ({"route": "mil", "backbone": "b.safetensors"}, {"tta": {"views": ["hflip"]}}, "tta: applies to route = \"tiles\""),
    ({"route": "mil", "backbone": "b.safetensors", "tma": {"route": "tiles", "backbone": "c.safetensors"}}, {},
     "slides.tma.backbone: goes with route = \"mil\""),
    ({"tma": {"tiles": 3}}, {}, "slides.tma: unknown key.*did you mean 'tile'"),
])
def test_contradictory_slides_configs_are_refused_naming_the_key(comp, slides, top, words):
    with pytest.raises(PipelineConfigError, match=words):
        run(comp, "out_bad", slides, **top)
    assert (comp / "out_bad" / "submission.csv").is_file()  # the fallback was written first


def test_a_classifier_trained_on_other_normalisation_is_refused(comp):
    preprocess = {"size": [32, 32], "resize": "resize", "normalize": "imagenet"}  # as kagglekit train records it
    save_checkpoint(create("kagglekit/test_tiles_half_colour"), comp / "imagenet.safetensors", {"preprocess": preprocess},
                    classes=CLASSES)
    with pytest.raises(PipelineConfigError, match=r"slides.normalize: .*imagenet.safetensors was trained on tiles "
                                                  r"normalised otherwise \(normalize = 'imagenet'"):
        run(comp, "out_imagenet", {"tile": 32}, models=("imagenet",))


def test_a_backbone_that_a_mil_branch_reads_is_not_refused(comp):
    from kagglekit.pipeline.config import load_config

    cfg = load_config({"kind": "classify", "models": [{"path": "left.safetensors"}],
                       "slides": {"backbone": "b.safetensors", "tma": {"route": "tiles"}}}, base_dir=comp)
    assert cfg.slides.branch("tma").route == "tiles" and cfg.slides.branch("wsi").route == "mil"
    assert cfg.slides.branch("wsi").backbone == str(comp / "b.safetensors")


def test_check_says_which_kinds_take_tile_classifiers(comp, capsys):
    from kagglekit.cli import main

    toml = comp / "tiles.toml"
    toml.write_text('kind = "classify"\n[[models]]\npath = "left.safetensors"\n[slides]\nroute = "tiles"\ntile = 32\n'
                    '[slides.tma]\ntile = 24\n[[slides.tma.models]]\npath = "top.safetensors"\n')
    assert main(["classify", "--config", str(toml), "--input", str(comp), "--check"]) == 0
    assert "slides backbone: tma: tile classifiers; wsi: tile classifiers" in capsys.readouterr().out
