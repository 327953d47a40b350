"""Bags from slides: features equal the backbone on each selected tile read plainly; the tiles equal the
selection rule recomputed from the tissue mask; TMA/WSI, the background swap and per-kind scales on
slides with a known answer; a folder run resumes."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest
import torch

from kagglekit.errors import InvalidArgumentError
from kagglekit.jobs import extract_bags
from kagglekit.mil import NoTissueError, extract_bag, load_bag, save_bag
from kagglekit.tiling import plan_tiles, slide_kind
from helpers import plain_selection, plain_tile, tissue_slide as slide

IMAGENET = (np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32))


class Recorder(torch.nn.Module):
    """A backbone that records every input tile (N, C, h, w) and returns its per-channel means and maxima."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def seen_tiles(recorder):
    """The recorded tiles as (N, h, w, C) float32, in the order seen."""
    return torch.cat(recorder.seen).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("top_k", [None, 7])
def test_bag_tiles_are_the_selection_rule_recomputed_from_the_mask(top_k):
    image = slide()
    bag = extract_bag(Recorder(), image, name="recorder", tile=64, min_tissue=0.3, top_k=top_k, normalize=None,
                      batch_size=5)
    expected = plain_selection(image, 64, 0.3, top_k)
    assert len(expected) > 3 and np.array_equal(bag.coords, expected)
    assert bag.selection["rule"] == ("top_k" if top_k else "min_tissue") and bag.tile == 64 and bag.scale == 1.0


def test_bag_features_equal_the_backbone_on_each_tile_read_plainly(tmp_path):
    import tifffile

    from kagglekit.models import create

    torch.manual_seed(0)
    backbone = create("timm/resnet10t", num_classes=0).eval()
    image = slide(520, 610, seed=3)
    tifffile.imwrite(tmp_path / "s.tif", image, tile=(64, 64), compression="zlib")
    bag = extract_bag(backbone, tmp_path / "s.tif", tile=96, min_tissue=0.2, batch_size=4, num_workers=2)
    assert bag.slide == "s" and bag.backbone == "timm/resnet10t" and bag.feature_dim == 512
    tiles = np.stack([plain_tile(image, y, x, 96) for y, x in bag.coords]).astype(np.float32) / 255
    x = torch.from_numpy((tiles - IMAGENET[0]) / IMAGENET[1]).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = backbone(x).numpy()
    assert bag.features.dtype == np.float16
    np.testing.assert_allclose(bag.features.astype(np.float32), expected, rtol=2e-3, atol=2e-3)
    in_memory = extract_bag(backbone, image, name="timm/resnet10t", tile=96, min_tissue=0.2, batch_size=7, num_workers=0)
    np.testing.assert_array_equal(in_memory.coords, bag.coords)
    np.testing.assert_allclose(in_memory.features.astype(np.float32), bag.features.astype(np.float32), atol=2e-3)


def test_tma_and_wsi_are_told_by_background_and_size():
    small_white, small_black = slide(400, 500, 255), slide(400, 500, 0)
    assert slide_kind(small_white, small_white.shape, tma_max_side=600) == "tma"
    assert slide_kind(small_white, small_white.shape, tma_max_side=450) == "wsi"  # too large for a TMA
    assert slide_kind(small_black, small_black.shape, tma_max_side=600) == "wsi"


def test_the_swap_sets_exactly_the_background_to_black_and_scales_follow_the_kind():
    image = np.full((400, 480, 3), 255, np.uint8)
    image[60:340, 80:400] = (150, 90, 160)  # tissue of one colour on white: a known answer
    recorder = Recorder()  # threads=1: the slices of each batch one after another, in order, as recorded
    bag = extract_bag(recorder, image, name="r", tile=40, scale={"tma": 0.5, "wsi": 1.0}, min_tissue=0.01,
                      swap_background="tma", tma_max_side=1000, normalize=None, threads=1)
    assert bag.selection["kind"] == "tma" and bag.selection["swap_background"] is True
    assert bag.tile == 80 and bag.scale == 0.5  # a TMA tile covers 80 level-0 pixels, seen at 40
    swapped = np.where((image == 255).all(axis=2, keepdims=True), 0, image).astype(np.uint8)
    expected = np.stack([cv2.resize(plain_tile(swapped, y, x, 80), (40, 40), interpolation=cv2.INTER_AREA)
                         for y, x in bag.coords]).astype(np.float32)
    np.testing.assert_array_equal(seen_tiles(recorder), expected)
    wsi = Recorder()
    bag = extract_bag(wsi, image, name="r", tile=40, scale={"tma": 0.5, "wsi": 1.0}, min_tissue=0.01,
                      swap_background="tma", tma_max_side=300, normalize=None)
    assert bag.selection["kind"] == "wsi" and bag.tile == 40 and bag.selection["swap_background"] is False
    assert seen_tiles(wsi).max() == 255  # white background kept


def test_a_slide_without_tissue_and_bad_options_are_named():
    with pytest.raises(NoTissueError, match="no 64 px tile is at least 25% tissue"):
        extract_bag(Recorder(), np.full((300, 300, 3), 255, np.uint8), name="r", tile=64, slide="blank")
    with pytest.raises(InvalidArgumentError, match="needs a value for 'wsi'"):
        plan_tiles(__import__("kagglekit.io", fromlist=["open_image"]).open_image(slide()), scale={"tma": 0.5},
                   tma_max_side=10)
    with pytest.raises(InvalidArgumentError, match="name the backbone"):
        extract_bag(lambda x: x.mean(dim=(2, 3)), slide(), tile=64)


class Counting(Recorder):
    """A recorder that counts the tiles it is given and can raise KeyboardInterrupt at the call given the
    tile of index ``interrupt_at`` (a batch's slices may run on two threads at once: the count is locked)."""

    def __init__(self, interrupt_at=None):
        super().__init__()
        self.tiles, self.interrupt_at, self.lock = 0, interrupt_at, threading.Lock()

    def forward(self, x):
        with self.lock:
            first, self.tiles = self.tiles, self.tiles + len(x)
        if self.interrupt_at is not None and first <= self.interrupt_at < first + len(x):
            raise KeyboardInterrupt
        return super().forward(x)


def bag_path(out, slide):
    return out / f"{slide}.safetensors"


def slide_folder(tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f"s{k}.png"), slide(300, 360, seed=k)[:, :, ::-1])
    (folder / "blank.png").write_bytes(cv2.imencode(".png", np.full((200, 200, 3), 255, np.uint8))[1].tobytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return folder


def test_a_folder_run_records_each_slide_and_resumes_after_an_interruption(tmp_path):
    folder, out = slide_folder(tmp_path), tmp_path / "bags"
    options = dict(name="r", tile=64, min_tissue=0.2, batch_size=2, progress=False)
    with pytest.raises(KeyboardInterrupt):  # stopped in the middle of slide s1 (a few batches per slide)
        extract_bags(folder, out, Counting(interrupt_at=len(plain_selection(slide(300, 360, seed=0), 64, 0.2)) + 2), **options)
    assert bag_path(out, "s0").is_file() and not bag_path(out, "s1").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    bag_path(out, "s0").write_bytes(bag_path(out, "s0").read_bytes())  # untouched, still whole
    counting = Counting()
    manifest = extract_bags(folder, out, counting, **options)
    status = dict(zip(manifest["slide"], manifest["status"]))
    assert status == {"blank": "skipped", "broken": "failed", "s0": "skipped", "s1": "done", "s2": "done"}  # blank: empty before s0
    expected_tiles = {f"s{k}": len(plain_selection(slide(300, 360, seed=k), 64, 0.2)) for k in range(3)}
    assert dict(zip(manifest["slide"], manifest["tiles"])) == {"blank": None, "broken": None, **expected_tiles}
    assert dict(zip(manifest["slide"], manifest["attempts"]))["broken"] == 1  # bad input: not tried again
    assert sum(len(x) for x in counting.seen) == expected_tiles["s1"] + expected_tiles["s2"]  # s0 not redone
    assert "broken.png" in manifest.filter(manifest["slide"] == "broken")["error"][0]
    on_disk = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        on_disk[json.loads(line)["slide"]] = json.loads(line)["status"]
    assert on_disk == {**status, "s0": "done", "blank": "empty"}
    # a cut-off bag file is extracted again; the blank slide is not read again
    bag_path(out, "s2").write_bytes(bag_path(out, "s2").read_bytes()[:-20])
    counting = Counting()
    manifest = extract_bags(folder, out, counting, **options)
    status = dict(zip(manifest["slide"], manifest["status"]))
    assert status == {"blank": "skipped", "broken": "failed", "s0": "skipped", "s1": "skipped", "s2": "done"}
    assert sum(len(x) for x in counting.seen) == expected_tiles["s2"]
    assert len(load_bag(bag_path(out, "s2"), backbone="r")) == expected_tiles["s2"]


def test_a_folder_run_redoes_a_bag_of_another_backbone_and_refuses_a_bad_option(tmp_path):
    folder, out = slide_folder(tmp_path), tmp_path / "bags"
    first = extract_bag(Recorder(), folder / "s0.png", name="other", tile=64)
    save_bag(first, bag_path(out, "s0"))
    manifest = extract_bags({"s0": folder / "s0.png"}, out, Recorder(), name="r", tile=64, progress=False)
    assert manifest["status"].to_list() == ["done"] and load_bag(bag_path(out, "s0")).backbone == "r"
    with pytest.raises(InvalidArgumentError, match="options go to kagglekit.mil.extract_bag"):
        extract_bags(folder, out, Recorder(), name="r", tile_size=64, progress=False)


def test_a_folder_run_with_other_settings_redoes_every_slide(tmp_path):
    folder, out = slide_folder(tmp_path), tmp_path / "bags"
    extract_bags(folder, out, Recorder(), name="r", tile=64, min_tissue=0.2, progress=False)
    same = extract_bags(folder, out, Recorder(), name="r", tile=64, min_tissue=0.2, batch_size=3, progress=False)
    assert same["status"].to_list() == ["skipped", "failed", "skipped", "skipped", "skipped"]  # batch_size changes no bag
    other = extract_bags(folder, out, Recorder(), name="r", tile=48, min_tissue=0.2, progress=False)
    assert other["status"].to_list() == ["empty", "failed", "done", "done", "done"]
    assert load_bag(bag_path(out, "s0")).tile == 48 and load_bag(bag_path(out, "s0")).selection["settings"]["tile"] == 48
