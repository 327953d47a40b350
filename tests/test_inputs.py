"""``[inputs] files``: patterns tried in order per id (the thumbnail if there is one, else the image), a
pattern's scale (stated, or from the competition's table), and the slide kind from a table expression."""

from __future__ import annotations

import numpy as np
import pytest

from kagglekit.cli import main
from kagglekit.pipeline import PipelineConfigError, load_config
from kagglekit.pipeline.inputs import FilePattern
from kagglekit.tiling import slide_kind

from competitions import RNG, checkpoint, read_csv, write_png
from helpers import plain_rle_decode

THUMB_OR_IMAGE = [{"pattern": "thumbs/{id}_thumbnail.png", "scale": 0.5}, "images/{id}.png"]


def write_toml(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize("files, words", [
    ("[]", "must be a list of patterns with {id}"),
    ('["images/*.png"]', "each pattern is relative to the input folder with the placeholder {id}"),
    ('["/abs/{id}.png"]', "each pattern is relative"),
    ('[{ pattern = "t/{id}.png", scale = 2 }]', 'a number in (0, 1] or "table"'),
    ('[{ pattern = "t/{id}.png", scal = 0.5 }]', "unknown key(s) ['scal']"),
])
def test_a_wrong_files_entry_names_the_key_and_the_fix(files, words):
    from kagglekit._toml import tomllib

    data = tomllib.loads(f'[[models]]\npath = "m.safetensors"\n[inputs]\nfiles = {files}\n')
    with pytest.raises(PipelineConfigError, match=r"inputs\.files") as exc:
        load_config(data)
    assert words in str(exc.value)


def test_files_are_read_in_order_and_refuse_a_glob_and_a_pointless_scale():
    cfg = load_config({"models": [{"path": "m.safetensors"}], "inputs": {"files": THUMB_OR_IMAGE}})
    assert cfg.inputs.files == (FilePattern("thumbs/{id}_thumbnail.png", 0.5), FilePattern("images/{id}.png"))
    with pytest.raises(PipelineConfigError, match="inputs.glob: goes with files found by a glob"):
        load_config({"models": [{"path": "m.safetensors"}], "inputs": {"files": ["a/{id}.png"], "glob": "a/*"}})
    with pytest.raises(PipelineConfigError, match="classify resizes every image to preprocess.size"):
        load_config({"kind": "classify", "models": [{"path": "m.safetensors"}], "inputs": {"files": THUMB_OR_IMAGE}})
    slides = {"backbone": "b.safetensors", "tma_when": "image_width < 6000"}
    with pytest.raises(PipelineConfigError, match=r"slides.tma_when: .* is read from \[inputs.table\]"):
        load_config({"kind": "classify", "models": [{"path": "m.safetensors"}], "slides": slides})


def test_segment_takes_the_thumbnail_if_there_is_one_and_writes_the_mask_at_the_originals_size(tmp_path, capsys):
    """Ids a, b have a half-size thumbnail (scale 0.5); c only its image. The expected masks: the pointwise
    model's on the file read, brought to the original's size by repeating each pixel (nearest)."""
    (tmp_path / "thumbs").mkdir()
    (tmp_path / "images").mkdir()
    files = {"a": RNG.integers(0, 256, (40, 60, 3), np.uint8), "b": RNG.integers(0, 256, (30, 50, 3), np.uint8),
             "c": RNG.integers(0, 256, (70, 90, 3), np.uint8)}
    for i, image in files.items():
        write_png(tmp_path / ("thumbs" if i != "c" else "images") / (f"{i}_thumbnail.png" if i != "c" else f"{i}.png"), image)
    write_png(tmp_path / "images" / "a.png", np.zeros((80, 120, 3), np.uint8))  # the thumbnail wins over it
    (tmp_path / "sample_submission.csv").write_text("id,rle\na,1 1\nb,1 1\nc,1 1\nd,1 1\n")
    checkpoint(tmp_path / "m.safetensors")
    toml = write_toml(tmp_path / "segment.toml", '[[models]]\npath = "m.safetensors"\n[tiling]\ntile = 32\n'
                      '[inputs]\nfiles = [{ pattern = "thumbs/{id}_thumbnail.png", scale = 0.5 }, "images/{id}.png"]\n')
    assert main(["segment", str(toml), "--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    rows = {r["id"]: r["rle"] for r in read_csv(tmp_path / "out" / "submission.csv")}
    for i, image in files.items():
        mask = image[..., 0].astype(np.float64) / 255 >= 0.5
        if i != "c":
            mask = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)
        np.testing.assert_array_equal(plain_rle_decode(rows[i], mask.shape), mask)
    assert rows["d"] == ""  # segment's fallback: an empty mask
    out = capsys.readouterr().out + capsys.readouterr().err
    assert "none of ['thumbs/{id}_thumbnail.png', 'images/{id}.png'] exists" in out


def test_the_thumbnails_scale_from_the_table_gives_the_masks_size(tmp_path):
    (tmp_path / "thumbs").mkdir()
    thumb = RNG.integers(0, 256, (20, 30, 3), np.uint8)
    write_png(tmp_path / "thumbs" / "7_thumbnail.png", thumb)
    (tmp_path / "test.csv").write_text("image_id,image_width,image_height\n7,90,60\n8,10,10\n")
    (tmp_path / "sample_submission.csv").write_text("image_id,rle\n7,1 1\n")
    checkpoint(tmp_path / "m.safetensors")
    toml = write_toml(tmp_path / "segment.toml", '[[models]]\npath = "m.safetensors"\n[tiling]\ntile = 32\n[inputs]\n'
                      'files = [{ pattern = "thumbs/{id}_thumbnail.png", scale = "table" }]\n'
                      '[inputs.table]\npath = "test.csv"\nwidth = "image_width"\nheight = "image_height"\n')
    assert main(["segment", str(toml), "--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    (row,) = read_csv(tmp_path / "out" / "submission.csv")
    expected = np.repeat(np.repeat(thumb[..., 0] / 255 >= 0.5, 3, axis=0), 3, axis=1)  # 60 x 90, as test.csv says
    np.testing.assert_array_equal(plain_rle_decode(row["rle"], (60, 90)), expected)


def test_a_table_without_the_id_or_the_sizes_says_which(tmp_path, capsys):
    (tmp_path / "thumbs").mkdir()
    write_png(tmp_path / "thumbs" / "7_thumbnail.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "test.csv").write_text("image_id,image_width,image_height\n8,10,10\n")
    (tmp_path / "sample_submission.csv").write_text("image_id,rle\n7,1 1\n")
    checkpoint(tmp_path / "m.safetensors")
    inputs = '[inputs]\nfiles = [{ pattern = "thumbs/{id}_thumbnail.png", scale = "table" }]\n[inputs.table]\npath = "test.csv"\n'
    toml = write_toml(tmp_path / "s.toml", '[[models]]\npath = "m.safetensors"\n' + inputs + 'width = "image_width"\nheight = "image_height"\n')
    assert main(["segment", str(toml), "--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 3
    assert "test.csv has no size of '7'" in capsys.readouterr().out
    toml = write_toml(tmp_path / "s.toml", '[[models]]\npath = "m.safetensors"\n' + inputs + 'width = "width"\nheight = "image_height"\n')
    assert main(["segment", str(toml), "--input", str(tmp_path), "--check"]) == 1
    assert "inputs.table.width: 'width' cannot be read from" in capsys.readouterr().out


def _ubc_replica(root, slides_module):
    """UBC-OCEAN's test layout: test.csv with the originals' sizes, test_images/<id>.png, and a thumbnail
    at half size for the WSI only. The WSI's thumbnail is small and on white: guessed from it, it would
    be a TMA."""
    (root / "test_images").mkdir(parents=True)
    (root / "test_thumbnails").mkdir()
    wsi_thumb = slides_module.tissue_slide([(40, 50, (220, 40, 40))])
    tma = slides_module.tissue_slide([(100, 150, (40, 40, 220))])
    write_png(root / "test_thumbnails" / "41_thumbnail.png", wsi_thumb)
    write_png(root / "test_images" / "66.png", tma)
    h, w = wsi_thumb.shape[:2]
    (root / "test.csv").write_text(f"image_id,image_width,image_height\n41,{2 * w},{2 * h}\n66,{tma.shape[1]},{tma.shape[0]}\n")
    (root / "sample_submission.csv").write_text("image_id,label\n41,HGSC\n66,HGSC\n")
    return wsi_thumb, tma


def test_slides_from_thumbnails_at_their_scale_with_the_kind_from_the_table(tmp_path, capsys):
    import test_classify_slides as s

    from kagglekit.models import create, save_checkpoint

    wsi_thumb, tma = _ubc_replica(tmp_path, s)
    assert slide_kind(wsi_thumb, (2 * wsi_thumb.shape[0], 2 * wsi_thumb.shape[1])) == "tma"  # what a guess would say
    save_checkpoint(create("kagglekit/test_slides_mean_colour"), tmp_path / "backbone.safetensors")
    s.heads(tmp_path / "heads.safetensors", "kagglekit/test_slides_mean_colour@backbone.safetensors")
    # wsi scale 0.5 of the original = the thumbnail's own pixels; the TMA is its original, read at 1
    toml = write_toml(tmp_path / "classify.toml", f'''kind = "classify"
num_workers = 0
[[models]]
path = "heads.safetensors"
[inputs]
files = [{{ pattern = "test_thumbnails/{{id}}_thumbnail.png", scale = "table" }}, "test_images/{{id}}.png"]
[inputs.table]
path = "test.csv"
width = "image_width"
height = "image_height"
[slides]
backbone = "backbone.safetensors"
tile = {s.TILE}
normalize = "scale"
scale = {{ tma = 1.0, wsi = 0.5 }}
tma_when = "image_width < 400"
[decision]
kind = "probability"
[output]
format = "columns"
classes = {s.CLASSES}
''')
    (tmp_path / "sample_submission.csv").write_text("image_id,red,blue,plain\n41,0,0,0\n66,0,0,0\n")
    assert main(["classify", str(toml), "--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 0
    log = capsys.readouterr().err
    rows = {r["image_id"]: r for r in read_csv(tmp_path / "out" / "submission.csv")}
    for i, image in (("41", wsi_thumb), ("66", tma)):
        got = [float(rows[i][c]) for c in s.CLASSES]
        np.testing.assert_allclose(got, s.expected_probabilities(image), atol=1e-5)
    assert "41: predicted (" in log and "tiles (wsi)" in log and "66: predicted (" in log and "tiles (tma)" in log
    assert "inputs: 1 from 'test_thumbnails/{id}_thumbnail.png', 1 from 'test_images/{id}.png'" in log
    assert "more detail than" not in log  # the WSI's 0.5 is the thumbnail's own scale


def test_a_slide_scale_finer_than_the_thumbnail_reads_it_at_its_own_pixels_and_says_so(tmp_path):
    import test_classify_slides as s

    from kagglekit.pipeline import classify

    from kagglekit.models import create, save_checkpoint

    wsi_thumb, _ = _ubc_replica(tmp_path, s)
    save_checkpoint(create("kagglekit/test_slides_mean_colour"), tmp_path / "backbone.safetensors")
    s.heads(tmp_path / "heads.safetensors", "kagglekit/test_slides_mean_colour@backbone.safetensors")
    (tmp_path / "sample_submission.csv").write_text("image_id,label\n41,plain\n")
    cfg = {"kind": "classify", "num_workers": 0, "models": [{"path": "heads.safetensors"}],
           "inputs": {"files": [{"pattern": "test_thumbnails/{id}_thumbnail.png", "scale": "table"}],
                      "table": {"path": "test.csv", "width": "image_width", "height": "image_height"}},
           "slides": {"backbone": "backbone.safetensors", "tile": s.TILE, "normalize": "scale", "kind": "wsi"}}
    report = classify(cfg, tmp_path, tmp_path / "out", base_dir=tmp_path)
    assert report.predicted == ["41"] and report.original_size == {"41": (2 * wsi_thumb.shape[0], 2 * wsi_thumb.shape[1])}
    assert sum("asks for more detail than some inputs hold" in e for e in report.events) == 1
    (row,) = read_csv(tmp_path / "out" / "submission.csv")
    assert row["label"] == s.CLASSES[int(np.argmax(s.expected_probabilities(wsi_thumb)))]


def test_a_table_scale_without_the_tables_sizes_is_refused_by_the_check(tmp_path, capsys):
    toml = write_toml(tmp_path / "s.toml", '[[models]]\npath = "m.safetensors"\n[inputs]\n'
                      'files = [{ pattern = "thumbs/{id}_thumbnail.png", scale = "table" }]\n')
    assert main(["segment", str(toml), "--input", str(tmp_path), "--check"]) == 1
    assert 'inputs.files: has scale = "table", which reads the originals\' sizes from [inputs.table]' in capsys.readouterr().err
