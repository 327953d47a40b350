"""Files open by their content, whatever their suffix says, and a DICOM file is named as such (SIIM-ISIC's
test/ holds DICOMs beside the JPEG copies in jpeg/test/)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from kagglekit.cli import main
from kagglekit.errors import ImageReadError
from kagglekit.io import file_format, load_image, open_image

from competitions import read_csv

RNG = np.random.default_rng(3)


def fake_dicom(path):
    """A DICOM file's layout: a 128-byte preamble, 'DICM', then data elements (here a few bytes)."""
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\x00" * 64)


@pytest.mark.parametrize("written, named", [(".png", "a.tif"), (".tif", "a.png"), (".jpg", "a.png"), (".png", "a")])
def test_an_image_opens_by_its_content_whatever_its_suffix(tmp_path, written, named):
    image = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    real = tmp_path / f"real{written}"
    tifffile.imwrite(real, image) if written == ".tif" else cv2.imwrite(str(real), image[:, :, ::-1])
    expected = tifffile.imread(real) if written == ".tif" else cv2.imread(str(real))[:, :, ::-1]
    (tmp_path / named).write_bytes(real.read_bytes())
    source = open_image(tmp_path / named)
    assert np.array_equal(source.read(0, 0, 40, 56), expected)
    assert np.array_equal(load_image(tmp_path / named), expected)
    assert file_format(tmp_path / named) == {".png": "png", ".tif": "tiff", ".jpg": "jpeg"}[written]


def test_a_dicom_file_is_named_with_the_fix(tmp_path):
    fake_dicom(tmp_path / "ISIC_1.dcm")
    assert file_format(tmp_path / "ISIC_1.dcm") == "dicom"
    with pytest.raises(ImageReadError, match=r"ISIC_1.dcm: a DICOM file; DICOM is not read: point inputs.glob at .*'jpeg/test/\*.jpg'"):
        open_image(tmp_path / "ISIC_1.dcm")


def test_a_siim_isic_folder_with_the_default_glob_names_the_dicoms_and_the_fix(tmp_path, capsys):
    """The real layout: test/*.dcm and jpeg/test/*.jpg; the default glob 'test/*' finds only DICOMs."""
    from kagglekit.models import create, save_checkpoint

    (tmp_path / "test").mkdir()
    (tmp_path / "jpeg" / "test").mkdir(parents=True)
    for i in ("ISIC_0052060", "ISIC_0052349"):
        fake_dicom(tmp_path / "test" / f"{i}.dcm")
        cv2.imwrite(str(tmp_path / "jpeg" / "test" / f"{i}.jpg"), RNG.integers(0, 256, (60, 90, 3), dtype=np.uint8))
    (tmp_path / "sample_submission.csv").write_text("image_name,target\nISIC_0052060,0\nISIC_0052349,0\n")
    save_checkpoint(create("timm/resnet10t", num_classes=1), tmp_path / "m.safetensors")
    toml = tmp_path / "c.toml"
    body = ('kind = "classify"\nnum_workers = 0\n[[models]]\npath = "m.safetensors"\n[preprocess]\nsize = 32\n'
            '[decision]\nkind = "probability"\n[output]\nformat = "probability"\n')
    toml.write_text(body)
    assert main(["classify", str(toml), "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 3
    out = capsys.readouterr()
    assert "2 DICOM file(s) matching 'test/*' passed over" in out.err and "'jpeg/test/*.jpg'" in out.err
    assert "fallback reason (2 rows): only a DICOM file matches 'test/*'" in out.out
    toml.write_text(body + '[inputs]\nglob = "jpeg/test/*.jpg"\n')
    assert main(["classify", str(toml), "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 0
    assert all(0 < float(r["target"]) < 1 for r in read_csv(tmp_path / "o" / "submission.csv"))
