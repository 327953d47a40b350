"""The job runner on the local engine: outputs whole or absent, the manifest and resume, retries, errors;
and the three built-in jobs against plain computations (the bag job's own oracle is in test_extract.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest
import torch

from kagglekit import cli
from kagglekit.errors import InvalidArgumentError
from kagglekit.jobs import (Job, JobSetupError, PredictionJob, TileExportJob, run_slides, settings_hash,
                            slide_paths)
from helpers import plain_selection, plain_tile, tissue_slide
from jobs_for_tests import Copy, attempts


def byte_slides(folder: Path, n: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        (folder / f"s{k}.png").write_bytes(bytes([k]) * (k + 1))
    return folder


def test_each_output_is_the_job_s_and_a_rerun_skips_finished_slides(tmp_path):
    slides, out, log = byte_slides(tmp_path / "slides"), tmp_path / "out", tmp_path / "log"
    report = run_slides(Copy(log, k=2, fail=["s1"], empty=["s2"]), slides, out, retries=2, progress=False)
    assert report.engine == "local" and report.done == ["s0", "s3", "s4"] and report.empty == ["s2"]
    assert list(report.failed) == ["s1"] and "s1 is always bad" in report.failed["s1"]
    for k in (0, 3, 4):
        assert (out / f"s{k}.bin").read_bytes() == bytes([k]) * (k + 1) * 2
    assert not (out / "s1.bin").exists() and not (out / "s2.bin").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary output left
    assert attempts(log).count("s1") == 3  # 1 + retries
    table = report.table()
    assert table.filter(pl.col("slide") == "s4")["bytes"][0] == 10 and table["attempts"].to_list() == [1, 3, 1, 1, 1]
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["slide"]: r["status"] for r in rows} == {"s0": "done", "s1": "failed", "s2": "empty", "s3": "done", "s4": "done"}
    # a rerun: the finished and empty slides are kept, the failed one is tried again
    (out / "s3.bin").unlink()  # a lost output is made again
    again = run_slides(Copy(log, k=2, fail=["s1"], empty=["s2"]), slides, out, retries=0, progress=False)
    assert again.skipped == ["s0", "s2", "s4"] and again.done == ["s3"] and list(again.failed) == ["s1"]
    assert attempts(log)[7:] == ["s1", "s3"]
    assert "copy -> " in again.summary() and "failed s1" in again.summary()


def test_other_settings_redo_every_slide_and_skip_existing_false_too(tmp_path):
    slides, out, log = byte_slides(tmp_path / "slides", 3), tmp_path / "out", tmp_path / "log"
    run_slides(Copy(log, k=1), slides, out, progress=False)
    assert settings_hash(Copy(log, k=1)) != settings_hash(Copy(log, k=2)) == settings_hash(Copy(tmp_path, k=2))
    assert run_slides(Copy(log, k=2), slides, out, progress=False).done == ["s0", "s1", "s2"]
    assert (out / "s2.bin").read_bytes() == bytes([2]) * 6
    assert run_slides(Copy(log, k=2), slides, out, progress=False, skip_existing=False).done == ["s0", "s1", "s2"]
    assert len(attempts(log)) == 9


def test_a_killed_run_resumes_with_only_the_unfinished_slides(tmp_path):
    slides, out, log = byte_slides(tmp_path / "slides"), tmp_path / "out", tmp_path / "log"
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; from jobs_for_tests import Copy; from kagglekit.jobs import run_slides; "
            "run_slides(Copy(sys.argv[3], kill_at='s2'), sys.argv[4], sys.argv[5], engine='local', progress=False)")
    tests = str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", code, tests, str(Path.cwd()), str(log), str(slides), str(out)])
    assert done.returncode == -9  # SIGKILLed in the middle of s2
    assert sorted(p.name for p in out.glob("*.bin")) == ["s0.bin", "s1.bin"]
    (out / "manifest.jsonl").open("a").write('{"slide": "s2", "sta')  # the half line a kill can leave
    report = run_slides(Copy(log), slides, out, progress=False)
    assert report.skipped == ["s0", "s1"] and report.done == ["s2", "s3", "s4"]
    assert attempts(log) == ["s0", "s1", "s2", "s2", "s3", "s4"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_setup_failure_and_bad_arguments_raise_once(tmp_path):
    slides, log = byte_slides(tmp_path / "slides", 2), tmp_path / "log"
    with pytest.raises(JobSetupError, match="no model here"):
        run_slides(Copy(log, setup_fails=True), slides, tmp_path / "out", progress=False)
    assert attempts(log) == []
    for bad, match in [(dict(engine="spark"), "engine"), (dict(workers=0), "workers"), (dict(retries=-1), "retries"),
                       (dict(cpus_per_worker=0), "cpus_per_worker")]:
        with pytest.raises(InvalidArgumentError, match=match):
            run_slides(Copy(log), slides, tmp_path / "out", progress=False, **bad)
    with pytest.raises(InvalidArgumentError, match="kagglekit.jobs.Job"):
        run_slides(lambda slide, out: None, slides, tmp_path / "out")

    class Lazy(Job):
        name, suffix = "lazy", ".txt"

        def run(self, slide, out_path):
            return None  # writes nothing

    report = run_slides(Lazy(), slides, tmp_path / "lazy", progress=False, retries=0)
    assert "without writing its output" in report.failed["s0"]


def test_slide_paths_from_folder_glob_list_and_mapping(tmp_path):
    slides = byte_slides(tmp_path / "slides", 3)
    (slides / "notes.txt").write_text("not a slide")
    assert list(slide_paths(slides)) == ["s0", "s1", "s2"]
    assert list(slide_paths(str(slides / "s[12].png"))) == ["s1", "s2"]
    assert slide_paths({"a": slides / "s0.png"}) == {"a": slides / "s0.png"}
    with pytest.raises(InvalidArgumentError, match="two slides have the id"):
        slide_paths([slides / "s0.png", tmp_path / "s0.png"])
    with pytest.raises(InvalidArgumentError, match="no file matches"):
        slide_paths(str(slides / "*.tif"))
    with pytest.raises(InvalidArgumentError, match="neither a folder"):
        slide_paths(tmp_path / "missing")


def test_prediction_job_equals_the_model_on_the_whole_image_averaged_and_rounded(tmp_path):
    image = tissue_slide(300, 260, seed=1)
    (tmp_path / "slides").mkdir()
    cv2.imwrite(str(tmp_path / "slides" / "a.png"), image[:, :, ::-1])
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 2, 1)  # pointwise: tiles blended anywhere equal the whole image
    report = run_slides(PredictionJob(model, name="conv", tile=64, stride=48, downsample=4, channel=1), tmp_path / "slides",
                        tmp_path / "maps", progress=False)
    assert report.done == ["a"]
    got = cv2.imread(str(tmp_path / "maps" / "a.png"), cv2.IMREAD_UNCHANGED)
    with torch.no_grad():
        logits = model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)[0, 1].double().numpy()
    probability = 1 / (1 + np.exp(-logits))
    want = [[probability[y : y + 4, x : x + 4].mean() for x in range(0, 260, 4)] for y in range(0, 300, 4)]
    assert got.shape == (75, 65) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - np.rint(np.array(want) * 255)).max() <= 1
    mask_job = PredictionJob(model, name="conv", tile=64, downsample=4, channel=1, threshold=0.5)
    run_slides(mask_job, tmp_path / "slides", tmp_path / "masks", progress=False)
    mask = cv2.imread(str(tmp_path / "masks" / "a.png"), cv2.IMREAD_UNCHANGED)
    sure = np.abs(np.array(want) - 0.5) > 1e-3
    np.testing.assert_array_equal(mask[sure], np.where(np.array(want) >= 0.5, 255, 0)[sure])
    with pytest.raises(InvalidArgumentError, match="options go to"):
        PredictionJob(model, name="conv", tiles=64)
    bad = run_slides(PredictionJob(model, name="conv", tile=64, channel=5), tmp_path / "slides", tmp_path / "bad", progress=False)
    assert "channel 5" in bad.failed["a"]


def test_tile_export_writes_the_selected_tiles_and_one_index(tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    images = {f"s{k}": tissue_slide(300, 360, seed=k) for k in range(2)}
    for name, image in images.items():
        cv2.imwrite(str(folder / f"{name}.png"), image[:, :, ::-1])
    cv2.imwrite(str(folder / "blank.png"), np.full((200, 200, 3), 255, np.uint8))
    report = run_slides(TileExportJob(tile=64, min_tissue=0.2, top_k=6), folder, tmp_path / "tiles", progress=False)
    assert report.done == ["s0", "s1"] and report.empty == ["blank"]
    index = pl.read_csv(tmp_path / "tiles" / "tiles.csv")
    assert index.columns == ["slide", "file", "y", "x", "side", "tile", "kind"]
    for name, image in images.items():
        rows = index.filter(pl.col("slide") == name)
        expected = plain_selection(image, 64, 0.2, top_k=6)
        np.testing.assert_array_equal(rows.select("y", "x").to_numpy(), expected)
        for file, y, x in rows.select("file", "y", "x").iter_rows():
            tile = cv2.imread(str(tmp_path / "tiles" / file))[:, :, ::-1]
            np.testing.assert_array_equal(tile, plain_tile(image, y, x, 64))
    assert len(index) == 12


def test_cli_runs_a_job_resumes_and_names_bad_input(tmp_path, capsys):
    folder = tmp_path / "slides"
    folder.mkdir()
    cv2.imwrite(str(folder / "s0.png"), tissue_slide(300, 360, seed=0)[:, :, ::-1])
    argv = ["run", "tiles", "--slides", str(folder / "*.png"), "--out", str(tmp_path / "tiles"), "--tile", "64", "--top-k", "3"]
    assert cli.main(argv) == 0
    assert "1 done, 0 skipped" in capsys.readouterr().out
    assert cli.main(argv) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert cli.main(["run", "tiles", "--slides", str(tmp_path / "none/*.png"), "--out", str(tmp_path / "t")]) == 1
    assert "no file matches" in capsys.readouterr().err
    (folder / "s1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert cli.main(argv) == 3
    assert "failed s1: ImageReadError" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "bags", "--slides", str(folder), "--out", str(tmp_path / "b")])  # --backbone is required
    assert cli.main(["run", "bags", "--slides", str(folder), "--out", str(tmp_path / "b"), "--backbone", "missing.safetensors"]) == 1
    assert "missing.safetensors" in capsys.readouterr().err
