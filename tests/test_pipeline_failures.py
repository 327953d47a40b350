"""Every failure leaves a valid submission and says why, once: the catalogue in kagglekit.pipeline's docstring.

Each test runs one bad input through ``kagglekit segment`` (in-process, as a user types it) or through
``segment``, and checks the exit code, the message, and that submission.csv has the sample's ids and
columns. The expected masks are closed forms of the pointwise models in competitions.py.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from kagglekit.cli import main
from kagglekit.errors import SubmissionError
from kagglekit.models import create, register_model, save_checkpoint
from kagglekit.pipeline import segment

from competitions import RNG, TileRecorder, checkpoint, competition, config, read_csv, write_png
from helpers import plain_rle_decode


def sample_ids_and_columns(tmp_path, submission):
    """(ids, columns) of the sample submission and of ``submission``, read plainly."""
    sample = read_csv(tmp_path / "sample_submission.csv")
    rows = read_csv(submission)
    return ([r["id"] for r in sample], list(sample[0])), ([r["id"] for r in rows], list(rows[0]))


def assert_valid(tmp_path, submission, fallback=""):
    """``submission`` has exactly the sample's ids and columns; with ``fallback``, every mask is it."""
    expected, got = sample_ids_and_columns(tmp_path, submission)
    assert got == expected
    if fallback is not None:
        assert all(r["rle"] == fallback for r in read_csv(submission))


def run_cli(tmp_path, toml: str, *extra):
    (tmp_path / "segment.toml").write_text(toml)
    return main(["segment", "--config", str(tmp_path / "segment.toml"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "out"), *extra])


TOML = '[tiling]\ntile = 32\n[[models]]\npath = "a.safetensors"\n'


# --- the configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("toml, words", [
    ('[tiling]\ntile = 32\nstrid = 16\n[[models]]\npath = "a.safetensors"\n',
     "tiling: unknown key(s) ['strid'] (did you mean 'stride'?)"),
    ('[ttaa]\nviews = "d4"\n[[models]]\npath = "a.safetensors"\n',
     "unknown top-level key(s) ['ttaa'] (did you mean 'tta'?)"),
    ("[tiling\ntile = 3", "is not valid TOML"),
    ('[[models]]\npath = "a.safetensors"\n[output]\norder = "K"\n', "output.order: must be one of"),
    ('[[models]]\npath = "a.safetensors"\n[output]\nid_column = "image"\n', "output.id_column: 'image' is not a column"),
])
def test_a_config_mistake_exits_1_with_its_message_and_leaves_the_fallback(tmp_path, capsys, toml, words):
    competition(tmp_path, [(30, 40), (20, 20)])
    checkpoint(tmp_path / "a.safetensors")
    assert run_cli(tmp_path, toml) == 1
    err = capsys.readouterr().err
    assert words in err and "error: : " not in err and ("segment.toml" in err or "sample_submission.csv" in err)
    assert "Traceback" not in err and err.count("kagglekit: error:") == 1
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv")


def test_a_missing_config_still_leaves_the_fallback(tmp_path, capsys):
    competition(tmp_path, [(30, 40)])
    assert main(["segment", "--config", str(tmp_path / "absent.toml"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "out")]) == 1
    assert "absent.toml not found" in capsys.readouterr().err
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv")


def test_with_neither_sample_nor_config_the_config_is_named_first(tmp_path, capsys):
    assert main(["segment", "--config", str(tmp_path / "absent.toml"), "--input", str(tmp_path / "none"),
                 "--output", str(tmp_path / "out")]) == 1
    assert "absent.toml not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cuda_without_a_gpu_is_refused_once_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    competition(tmp_path, [(30, 40), (20, 20), (25, 25)])
    checkpoint(tmp_path / "a.safetensors")
    assert run_cli(tmp_path, 'device = "cuda"\n' + TOML) == 1
    err = capsys.readouterr().err
    assert "device: 'cuda', but this machine has no CUDA device; use device = 'auto'" in err
    assert err.count("no CUDA device") == 1 and "[1/3]" not in err and "Traceback" not in err  # once, no image ran
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv")


def test_device_auto_runs_on_the_cpu_here(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    competition(tmp_path, [(30, 40)])
    a = checkpoint(tmp_path / "a.safetensors")
    report = segment(config([(a, 1.0)], device="auto"), tmp_path, tmp_path)
    assert report.device == "cpu" and report.predicted == ["img0"]


@pytest.mark.parametrize("content, words", [
    (None, "threshold.file: {path} not found"),
    ("{\"thresh\": 0.4}", "threshold.file: {path} must hold a probability"),
])
def test_an_unreadable_threshold_file_is_named_as_such(tmp_path, capsys, content, words):
    competition(tmp_path, [(30, 40)])
    checkpoint(tmp_path / "a.safetensors")
    if content is not None:
        (tmp_path / "threshold.json").write_text(content)
    assert run_cli(tmp_path, TOML + '[threshold]\nkind = "file"\nfile = "threshold.json"\n') == 1
    err = capsys.readouterr().err
    assert words.format(path=tmp_path / "threshold.json") in err and "no usable model" not in err
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv")


# --- the sample submission and the output folder -------------------------------------------------


def test_an_unreadable_sample_submission_is_the_one_case_without_a_file(tmp_path, capsys):
    checkpoint(tmp_path / "a.safetensors")
    (tmp_path / "sample_submission.csv").write_text("")
    assert run_cli(tmp_path, TOML) == 1
    err = capsys.readouterr().err
    assert f"sample submission {tmp_path / 'sample_submission.csv'} is empty" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "submission.csv").exists()


def test_a_sample_with_only_an_id_column_is_refused_after_the_fallback(tmp_path, capsys):
    competition(tmp_path, [(30, 40)])
    (tmp_path / "sample_submission.csv").write_text("id\nimg0\n")
    checkpoint(tmp_path / "a.safetensors")
    assert run_cli(tmp_path, TOML) == 1
    assert "a submission needs an id and a prediction column" in capsys.readouterr().err
    assert [r["id"] for r in read_csv(tmp_path / "out" / "submission.csv")] == ["img0"]


def test_an_output_folder_that_cannot_be_written_is_named(tmp_path, capsys):
    competition(tmp_path, [(30, 40)])
    checkpoint(tmp_path / "a.safetensors")
    (tmp_path / "file").write_text("x")
    (tmp_path / "segment.toml").write_text(TOML)
    out = tmp_path / "file" / "out"  # a folder under a file: cannot be made, even as root
    assert main(["segment", "--config", str(tmp_path / "segment.toml"), "--input", str(tmp_path), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out / 'submission.csv'}" in err and "pass an output folder you can write to" in err
    with pytest.raises(SubmissionError, match="cannot write"):
        segment(tmp_path / "segment.toml", tmp_path, out)


def test_a_failed_write_costs_one_row_and_the_file_stays_valid(tmp_path, monkeypatch):
    from kagglekit.kaggle.submission import SubmissionGuard

    images = competition(tmp_path, [(30, 40), (20, 30)])
    a = checkpoint(tmp_path / "a.safetensors")
    real, calls = SubmissionGuard.commit, []

    def flaky(self, rows):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(self, rows)

    monkeypatch.setattr(SubmissionGuard, "commit", flaky)
    report = segment(config([(a, 1.0)]), tmp_path, tmp_path)
    assert "No space left" in report.fallback["img0"] and report.predicted == ["img1"]
    rows = {r["id"]: r["rle"] for r in read_csv(tmp_path / "submission.csv")}
    red = images["img1"][:, :, 0] / 255.0
    assert rows["img0"] == "" and np.array_equal(plain_rle_decode(rows["img1"], red.shape), red >= 0.5)


# --- models -----------------------------------------------------------------------------------------


def test_every_row_falling_back_exits_3_and_strict_exits_3_on_any(tmp_path, capsys):
    competition(tmp_path, [(30, 40), (20, 20)])
    assert run_cli(tmp_path, TOML) == 3  # a.safetensors does not exist
    out = capsys.readouterr()
    assert "0 predicted, 2 fallback rows" in out.out and "model " in out.err and "skipped" in out.err
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv")
    checkpoint(tmp_path / "a.safetensors")
    (tmp_path / "test" / "img1.png").write_bytes(b"not a png")
    assert run_cli(tmp_path, TOML) == 0
    assert run_cli(tmp_path, TOML, "--strict") == 3
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv", fallback=None)


def test_nan_weights_make_a_fallback_row_with_the_pixel_count(tmp_path, capsys):
    competition(tmp_path, [(30, 40)])
    checkpoint(tmp_path / "a.safetensors", gain=math.nan)
    assert run_cli(tmp_path, TOML) == 3
    captured = capsys.readouterr()
    tiles = 1 * 2  # a 30 x 40 image in 32 px tiles (one row, two columns), each 32 x 32 logits
    assert f"NonFiniteOutputError: the model returned {tiles * 32 * 32} NaN or infinite logits out of {tiles * 32 * 32}" in captured.out
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv")


def test_a_corrupted_checkpoint_is_skipped_by_its_checksum(tmp_path):
    images = competition(tmp_path, [(30, 40)])
    good = checkpoint(tmp_path / "good.safetensors", gain=10.0)
    bad = checkpoint(tmp_path / "bad.safetensors", gain=-10.0)  # it would invert every mask
    data = bytearray(bad.read_bytes())
    data[-4:] = np.float32(7.0).tobytes()  # the gain's bytes: the header still reads
    bad.write_bytes(bytes(data))
    report = segment(config([(bad, 5.0), (good, 1.0)]), tmp_path, tmp_path)
    assert any("bad.safetensors skipped" in e and "checksum" in e for e in report.events) and report.models == 1
    red = images["img0"][:, :, 0] / 255.0
    assert np.array_equal(plain_rle_decode(read_csv(tmp_path / "submission.csv")[0]["rle"], red.shape), red >= 0.5)


class Exploding(nn.Module):
    """A model that loads but fails on every input."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        raise RuntimeError("boom")


register_model("test_pipeline_exploding", Exploding)


def test_a_model_that_fails_on_a_tile_is_skipped_before_any_image(tmp_path):
    images = competition(tmp_path, [(30, 40)])
    good = checkpoint(tmp_path / "good.safetensors")
    broken = save_checkpoint(create("kagglekit/test_pipeline_exploding"), tmp_path / "broken.safetensors")
    report = segment(config([(broken, 2.0), (good, 1.0)]), tmp_path, tmp_path)
    assert any("broken.safetensors skipped: it fails on a zero input of shape (1, 3, 64, 64): RuntimeError: boom" in e
               for e in report.events)
    assert report.predicted == ["img0"] and report.models == 1
    red = images["img0"][:, :, 0] / 255.0
    assert np.array_equal(plain_rle_decode(read_csv(tmp_path / "submission.csv")[0]["rle"], red.shape), red >= 0.5)


def smp_two_classes():
    return create("smp/unet/tu-lcnet_050", num_classes=2, encoder_depth=3, decoder_channels=[16, 8, 4])


@pytest.mark.parametrize("models, words", [
    ([lambda: create("kagglekit/test_pipeline_mean", in_channels=3), lambda: create("kagglekit/test_pipeline_mean", in_channels=1)],
     "different input channel counts (a.safetensors: 3, b.safetensors: 1)"),
    ([lambda: create("kagglekit/test_pipeline_mean", in_channels=3), smp_two_classes],
     "different output channel counts (a.safetensors: 1, b.safetensors: 2)"),
    ([smp_two_classes], "a.safetensors returns 2 channels; segment thresholds one logit map"),
    ([lambda: create("timm/resnet10t", num_classes=1)], "returns (1, 1) for a tile of shape (1, 3, 32, 32)"),
])
def test_mismatched_models_are_refused_before_any_image(tmp_path, capsys, models, words):
    competition(tmp_path, [(30, 40)])
    toml = "[tiling]\ntile = 32\n"
    for name, build in zip("ab", models):
        save_checkpoint(build(), tmp_path / f"{name}.safetensors")
        toml += f'[[models]]\npath = "{name}.safetensors"\n'
    assert run_cli(tmp_path, toml) == 1
    err = capsys.readouterr().err
    assert words in err and "[1/1]" not in err
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv")


# --- images -----------------------------------------------------------------------------------------


def test_gray_and_rgba_images_are_adapted_for_an_rgb_model_and_noted_once(tmp_path):
    (tmp_path / "test").mkdir()
    gray = RNG.integers(0, 256, (40, 50), dtype=np.uint8)
    gray2 = RNG.integers(0, 256, (30, 30), dtype=np.uint8)
    rgba = RNG.integers(0, 256, (40, 30, 4), dtype=np.uint8)
    assert cv2.imwrite(str(tmp_path / "test" / "g.png"), gray) and cv2.imwrite(str(tmp_path / "test" / "h.png"), gray2)
    assert cv2.imwrite(str(tmp_path / "test" / "c.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    (tmp_path / "sample_submission.csv").write_text("id,rle\ng,\nh,\nc,\n")
    a = save_checkpoint(create("kagglekit/test_pipeline_mean", in_channels=3), tmp_path / "a.safetensors")
    report = segment(config([(a, 1.0)]), tmp_path, tmp_path)
    assert report.predicted == ["g", "h", "c"] and not report.fallback
    assert [e for e in report.events if "adapted" in e] == [
        "inputs adapted to the models' 3 channels: gray -> 3 channels (replicated)",
        "inputs adapted to the models' 3 channels: RGBA -> RGB (alpha dropped)"]
    rows = {r["id"]: r["rle"] for r in read_csv(tmp_path / "submission.csv")}
    means = {"g": gray / 255.0, "h": gray2 / 255.0, "c": rgba[:, :, :3].astype(np.float64).mean(axis=2) / 255.0}
    for i, mean in means.items():
        decided = np.abs(mean - 0.5) > 1e-3  # float32 rounding at exactly 0.5
        got = plain_rle_decode(rows[i], mean.shape).astype(bool)
        assert np.array_equal(got[decided], (mean >= 0.5)[decided])


def test_an_image_whose_channels_cannot_be_adapted_gets_a_fallback_row_naming_both_counts(tmp_path, capsys):
    (tmp_path / "test").mkdir()
    write_png(tmp_path / "test" / "ok.png", RNG.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    import tifffile

    two = np.dstack([RNG.integers(0, 256, (30, 30), dtype=np.uint8)] * 2)  # 2 channels: no rule adapts them to 3

    tifffile.imwrite(tmp_path / "test" / "two.tif", two, photometric="minisblack", planarconfig="contig")
    (tmp_path / "sample_submission.csv").write_text("id,rle\nok,\ntwo,\n")
    save_checkpoint(create("kagglekit/test_pipeline_mean", in_channels=3), tmp_path / "a.safetensors")
    assert run_cli(tmp_path, TOML.replace("[tiling]", '[inputs]\nglob = "test/*"\n[tiling]')) == 0
    captured = capsys.readouterr()
    assert "two: ShapeError" in captured.err and "has 2 channel(s) but the model takes 3" in captured.err
    assert "Traceback" not in captured.err
    rows = {r["id"]: r["rle"] for r in read_csv(tmp_path / "out" / "submission.csv")}
    assert rows["two"] == "" and rows["ok"] != ""


def test_with_tissue_only_no_tile_without_tissue_runs_and_an_empty_slide_is_noted(tmp_path):
    (tmp_path / "test").mkdir()
    slide = np.full((256, 256, 3), 255, np.uint8)
    slide[64:128, 128:192] = RNG.integers(30, 120, (64, 64, 3), dtype=np.uint8)  # one tile of tissue
    write_png(tmp_path / "test" / "slide.png", slide)
    write_png(tmp_path / "test" / "glass.png", np.full((256, 256, 3), 255, np.uint8))
    (tmp_path / "sample_submission.csv").write_text("id,rle\nslide,\nglass,\n")
    a = save_checkpoint(create("kagglekit/test_pipeline_recorder"), tmp_path / "a.safetensors")
    TileRecorder.seen.clear()
    cfg = config([(a, 1.0)], tiling={"tile": 64, "tissue_only": True, "thumbnail": 64, "min_tissue": 0.0})
    report = segment(cfg, tmp_path, tmp_path)
    assert report.predicted == ["slide", "glass"] and report.no_tissue == ["glass"]
    assert any(e.startswith("glass: no tile has tissue (tissue mask empty)") for e in report.events)
    assert TileRecorder.seen and all((tile < 200).any() for tile in TileRecorder.seen)  # every tile run holds tissue
    assert read_csv(tmp_path / "submission.csv")[1]["rle"] == ""


def test_a_run_where_every_tissue_mask_is_empty_says_so(tmp_path):
    (tmp_path / "test").mkdir()
    for i in ("a", "b"):
        write_png(tmp_path / "test" / f"{i}.png", np.full((128, 128, 3), 250, np.uint8))
    (tmp_path / "sample_submission.csv").write_text("id,rle\na,\nb,\n")
    m = checkpoint(tmp_path / "m.safetensors")
    report = segment(config([(m, 1.0)], tiling={"tile": 64, "tissue_only": True}), tmp_path, tmp_path)
    assert report.no_tissue == ["a", "b"]
    assert any(e.startswith("no predicted image had a tile with tissue") for e in report.events)


# --- the command line ---------------------------------------------------------------------------------


def test_the_log_has_one_line_per_image_and_tracebacks_only_with_v(tmp_path, capsys):
    competition(tmp_path, [(30, 40), (20, 20), (25, 35)])
    checkpoint(tmp_path / "a.safetensors")
    (tmp_path / "test" / "img1.png").write_bytes(b"\x89PNG broken")
    assert run_cli(tmp_path, TOML) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err if "[" in line] == ["INFO [1/3] img0", "WARNING [2/3] img1", "INFO [3/3] img2"]
    assert sum("img1" in line for line in err) == 1 and not any("Traceback" in line for line in err)
    main(["-v", "segment", "--config", str(tmp_path / "segment.toml"), "--input", str(tmp_path), "--output", str(tmp_path / "out")])
    assert "Traceback" in capsys.readouterr().err
    assert run_cli(tmp_path, TOML, "--strict") == 3
    capsys.readouterr()
    main(["-q", "segment", "--config", str(tmp_path / "segment.toml"), "--input", str(tmp_path), "--output", str(tmp_path / "out")])
    assert "INFO" not in capsys.readouterr().err
    log = logging.getLogger("kagglekit")
    assert log.propagate and not log.handlers  # main() leaves the caller's logging as it found it


def test_segment_check_validates_without_running_a_model(tmp_path, capsys, monkeypatch):
    competition(tmp_path, [(30, 40), (20, 20)])
    checkpoint(tmp_path / "a.safetensors")
    (tmp_path / "segment.toml").write_text(TOML)
    args = ["segment", "--check", "--config", str(tmp_path / "segment.toml"), "--input", str(tmp_path)]
    import kagglekit.infer
    import kagglekit.models

    def no_model(*args, **kwargs):
        raise AssertionError("--check ran or built a model")

    monkeypatch.setattr(kagglekit.infer, "iter_strips", no_model)
    monkeypatch.setattr(kagglekit.models, "load_checkpoint", no_model)
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "checksum ok" in out and "inputs: 2 of 2 ids" in out and "ready to run" in out
    assert not (tmp_path / "submission.csv").exists()
    (tmp_path / "test" / "img1.png").unlink()
    bad = bytearray((tmp_path / "a.safetensors").read_bytes())
    bad[-1] ^= 0xFF
    (tmp_path / "a.safetensors").write_bytes(bytes(bad))
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "problem: models[0]: " in out and "do not match the checksum" in out
    assert "problem: inputs: 1 of 2 ids" in out and "['img1']" in out and "2 problem(s)" in out
    (tmp_path / "segment.toml").write_text(TOML.replace("tile", "tiel"))
    assert main(args) == 1
    assert "did you mean 'tile'?" in capsys.readouterr().err


def test_help_lists_every_command_with_an_example_and_version(capsys):
    from kagglekit import __version__
    from kagglekit.cli import build_parser

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"kagglekit {__version__}"
    top = build_parser().format_help()
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"segment", "classify", "train", "blend", "run", "demo", "wheels", "kernel", "bundle", "push"}
    for name, parser in commands.items():
        assert f"kagglekit {name}" in top.split("examples:")[1]
        assert "example:\n  kagglekit " + name in parser.format_help()
    assert "Kaggle delivery: offline wheels, bundle, push." not in top


def test_piping_the_report_into_head_keeps_the_exit_code_and_prints_no_traceback(tmp_path):
    import subprocess
    import sys

    competition(tmp_path, [(30, 40), (20, 20)])  # no checkpoint: every row falls back, exit 3
    (tmp_path / "segment.toml").write_text(TOML)
    command = (f"set -o pipefail; {sys.executable} -m kagglekit.cli -q segment --config {tmp_path / 'segment.toml'} "
               f"--input {tmp_path} --output {tmp_path / 'out'} | true")  # the reader is gone before the report
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert_valid(tmp_path, tmp_path / "out" / "submission.csv")
