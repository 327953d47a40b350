"""workers = N in segment and classify: the images split over spawned worker processes give the submission
one process gives; a worker killed mid-run costs its own rows only, and the file stays valid."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pytest
import torch

from kagglekit.models import create, save_checkpoint
from kagglekit.pipeline import PipelineConfigError, classify, load_config, segment
from kagglekit.pipeline.workers import worker_devices

from competitions import competition, config, read_csv, write_png
from helpers import assert_same_report, tissue_slide

SHAPES = [(100, 130), (40, 50), (64, 64), (80, 70), (50, 90)]


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    torch.manual_seed(0)  # library models only: a spawned worker imports kagglekit, not the tests' registrations
    return save_checkpoint(create("smp/unet/resnet18", num_classes=1), tmp_path_factory.mktemp("m") / "unet.safetensors")


def submission(folder) -> list[dict]:
    return read_csv(folder / "submission.csv")


@pytest.mark.slow
def test_segment_on_two_workers_writes_what_one_process_writes(tmp_path, unet):
    competition(tmp_path, SHAPES)
    cfg = config([(unet, 1.0)], threshold={"kind": "percentile", "q": 0.7})
    one = segment(cfg, tmp_path, tmp_path / "one")
    two = segment({**cfg, "workers": 2}, tmp_path, tmp_path / "two")
    assert submission(tmp_path / "two") == submission(tmp_path / "one")
    assert sorted(two.predicted) == sorted(one.predicted) == [f"img{k}" for k in range(5)] and not two.fallback
    assert two.thresholds == pytest.approx(one.thresholds) and two.device == "cpu, cpu"
    assert any("split over 2 workers" in e for e in two.events)
    assert not any("not in the sample submission" in e for e in two.events)  # the other worker's files are not strays
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["submission.csv"]  # no scratch folder left
    assert_same_report(one, two)


@pytest.mark.slow
def test_classify_on_two_workers_writes_what_one_process_writes(tmp_path):
    competition(tmp_path, SHAPES, columns=("id", "label"))
    torch.manual_seed(0)
    model = save_checkpoint(create("timm/resnet18", num_classes=3), tmp_path / "r18.safetensors", classes=["a", "b", "c"])
    cfg = {"kind": "classify", "models": [{"path": str(model)}], "inputs": {"glob": "test/*.png"}, "preprocess": {"size": [64, 64]},
           "decision": {"kind": "argmax"}}
    one = classify(cfg, tmp_path, tmp_path / "one")
    two = classify({**cfg, "workers": 2}, tmp_path, tmp_path / "two")
    assert submission(tmp_path / "two") == submission(tmp_path / "one") and len(two.predicted) == 5
    assert two.classes == one.classes == ("a", "b", "c")
    assert_same_report(one, two)


@pytest.mark.slow
def test_slides_on_two_workers_write_and_report_what_one_process_does(tmp_path):
    """A library backbone and random Chowder heads (a spawned worker knows only the library's models)."""
    (tmp_path / "test").mkdir()
    for k in range(4):
        write_png(tmp_path / "test" / f"s{k}.png", tissue_slide(240, 300, seed=k))
    write_png(tmp_path / "test" / "blank.png", np.full((90, 90, 3), 255, np.uint8))
    (tmp_path / "sample_submission.csv").write_text("id,label\n" + "".join(f"s{k},a\n" for k in range(4)) + "blank,a\n")
    torch.manual_seed(0)
    backbone = create("timm/resnet10t", num_classes=0)
    save_checkpoint(backbone, tmp_path / "backbone.safetensors")
    heads = create("kagglekit/head_ensemble", head="chowder", seeds=[0, 1], in_dim=backbone.num_features, r=1,
                   hidden=[], num_classes=3)
    save_checkpoint(heads, tmp_path / "heads.safetensors", classes=["a", "b", "c"])
    cfg = {"kind": "classify", "models": [{"path": "heads.safetensors"}], "num_workers": 0,
           "slides": {"backbone": "backbone.safetensors", "tile": 32}}
    one = classify(cfg, tmp_path, tmp_path / "one", base_dir=tmp_path)
    two = classify({**cfg, "workers": 2}, tmp_path, tmp_path / "two", base_dir=tmp_path)
    assert submission(tmp_path / "two") == submission(tmp_path / "one")
    assert len(one.predicted) == 4 and list(one.fallback) == ["blank"]
    assert_same_report(one, two)


def kill_first_worker(parent: psutil.Process, killed: list):
    """Kill the first spawned worker process of ``parent`` as soon as it appears."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        for child in parent.children():
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    child.kill()
                    killed.append(child.pid)
                    return
            except psutil.Error:
                continue
        time.sleep(0.01)


@pytest.mark.slow
def test_a_killed_worker_costs_its_rows_only(tmp_path, unet):
    competition(tmp_path, SHAPES)
    killed = []
    killer = threading.Thread(target=kill_first_worker, args=(psutil.Process(), killed))
    killer.start()
    report = segment({**config([(unet, 1.0)]), "workers": 2}, tmp_path, tmp_path / "out")
    killer.join()
    assert killed
    ids = [f"img{k}" for k in range(5)]
    lost = sorted(report.fallback)
    assert lost in (ids[0::2], ids[1::2]) and sorted(report.predicted) == sorted(set(ids) - set(lost))
    assert all("failed" in why for why in report.fallback.values())
    rows = {r["id"]: r["rle"] for r in submission(tmp_path / "out")}
    assert list(rows) == ids and all(rows[i] == "" for i in lost)  # the fallback mask, the file whole


def test_workers_key_and_devices():
    assert load_config({"models": [{"path": "a.safetensors"}], "workers": "gpus"}).workers == "gpus"
    for bad in (0, "all", 1.5, True):
        with pytest.raises(PipelineConfigError, match="workers"):
            load_config({"models": [{"path": "a.safetensors"}], "workers": bad})
    if not torch.cuda.is_available():
        assert worker_devices("gpus", "auto") == ["cpu"] and worker_devices(3, "auto") == ["cpu"] * 3
    else:
        n = torch.cuda.device_count()
        assert worker_devices("gpus", "auto") == [f"cuda:{k}" for k in range(n)]
        assert worker_devices(3, "cpu") == ["cpu"] * 3


def test_a_worker_report_merges_field_by_field():
    """The parent's report of a workers run starts empty and takes each worker's: ids joined, per-id values,
    the worker's output scale (it stayed 1 when reports were merged by field type), the fewest views."""
    from pathlib import Path

    from kagglekit.pipeline.segmentation import SegmentReport

    parent = SegmentReport(Path("s.csv"))
    parent.merge(SegmentReport(Path("w1.csv"), predicted=["b"], thresholds={"b": 0.4}, out_scale=32, views=8,
                               events=["x"]), "worker 1 (cpu)")
    parent.merge(SegmentReport(Path("w0.csv"), predicted=["a"], thresholds={"a": 0.5}, out_scale=32, views=4,
                               no_tissue=["a"]), "worker 0 (cpu)")
    parent.order_ids(["a", "b"])
    assert (parent.predicted, parent.thresholds, parent.out_scale, parent.views) == (["a", "b"], {"b": 0.4, "a": 0.5}, 32, 4)
    assert parent.no_tissue == ["a"] and parent.events == ["worker 1 (cpu): x"] and parent.submission == Path("s.csv")
