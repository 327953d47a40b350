"""The ``kagglekit`` command line: exit codes, messages, and that it calls the library.

Oracles: the library functions' own results on the same inputs (tested in test_wheels.py,
test_kernel_metadata.py, test_bundle.py), pip for wheel resolution, and ``sys.modules`` for the
import cost.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kagglekit.cli import main
from kagglekit.delivery.kernel import check_dataset_metadata

from builders import kernel_folder, make_project
from helpers import modules_loaded_by


def test_kernel_check_exit_codes_and_messages(tmp_path, capsys):
    good = kernel_folder(tmp_path / "good")
    assert main(["kernel", "check", str(good)]) == 0
    assert "ok:" in capsys.readouterr().out
    bad = kernel_folder(tmp_path / "bad", enable_internet=None)
    assert main(["kernel", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kagglekit: error: ") and "enable_internet is missing" in err


def test_usage_errors_exit_with_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["wheels"])
    assert exit_info.value.code == 2
    assert "wheels" in capsys.readouterr().err


def test_wheels_build_then_check_through_the_command(tmp_path, links, capsys):
    dest = tmp_path / "wheels"
    project_dir = make_project(tmp_path / "src")
    args = ["wheels", "build", "--dest", str(dest), "--project", str(project_dir), "--requirement", "tinywheel",
            "--requirement", "tinydep", "--find-links", str(links), "--no-index", "--isolated",
            "--dataset-id", "alice/alice-wheels"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 wheels in" in out and "Python 3.12" in out
    assert sorted(p.name for p in dest.glob("*.whl")) == [
        "kagglekit-0.0.1-py3-none-any.whl", "tinydep-0.3-py3-none-any.whl", "tinywheel-1.0-py3-none-any.whl"]
    assert check_dataset_metadata(dest)["id"] == "alice/alice-wheels"
    assert main(["wheels", "check", str(dest), "--requirement", "kagglekit", "--isolated"]) == 0
    assert "kagglekit==0.0.1" in capsys.readouterr().out
    # for Python 3.11 the pure-python wheels still fit, but tinywheel's `oldonly; python_version < "3.12"`
    # now applies and is in neither the folder nor the image
    assert main(["wheels", "check", str(dest), "--requirement", "kagglekit", "--isolated", "--python-version", "3.11"]) == 1
    assert "requires 'oldonly; python_version < \"3.12\"'" in capsys.readouterr().err


def test_wheels_build_names_the_sdist_only_requirement(tmp_path, links, capsys):
    args = ["wheels", "build", "--dest", str(tmp_path / "wheels"), "--project", str(make_project(tmp_path / "src")),
            "--requirement", "tinysdist", "--find-links", str(links), "--no-index", "--isolated"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "no wheel of tinysdist" in err and "sdist" in err


def test_wheels_target_options_reach_pip(tmp_path, links, capsys):
    # platwheel is cp312 manylinux_2_28: it fits the Kaggle default but not Python 3.11 or glibc 2.17
    common = ["wheels", "build", "--dest", str(tmp_path / "w"), "--project", str(make_project(tmp_path / "src")),
              "--requirement", "platwheel", "--find-links", str(links), "--no-index", "--isolated"]
    assert main(common) == 0
    assert main([*common, "--python-version", "3.11"]) == 1
    assert "abi cp311" in capsys.readouterr().err
    assert main([*common, "--platform", "manylinux_2_17_x86_64"]) == 1
    assert "no wheel of platwheel" in capsys.readouterr().err


def test_bundle_and_push_dry_run_through_the_command(bundle_project, tmp_path, capsys):
    out = bundle_project / "dist" / "kaggle"
    assert main(["bundle", "--out", str(out), "--models", str(bundle_project / "models"), "--owner", "alice",
                 "--kernel-metadata", str(bundle_project / "kernel-metadata.json"),
                 "--wheels", str(bundle_project / "wheels")]) == 0
    assert json.loads((out / "kernel" / "kernel-metadata.json").read_text())["id"] == "alice/kagglekit-inference"
    capsys.readouterr()
    assert main(["push", str(out), "--dry-run", "--create"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"kaggle datasets create -p {out / 'wheels'} --dir-mode zip",
                     f"kaggle datasets create -p {out / 'models'} --dir-mode zip",
                     f"kaggle kernels push -p {out / 'kernel'}"]
    assert main(["bundle", "--out", str(tmp_path / "x"), "--models", str(tmp_path / "none"),
                 "--kernel-metadata", str(bundle_project / "kernel-metadata.json"),
                 "--wheels", str(bundle_project / "wheels")]) == 1


def test_module_entry_point_and_cheap_import(tmp_path):
    path = kernel_folder(tmp_path / "k")
    proc = subprocess.run([sys.executable, "-m", "kagglekit.cli", "kernel", "check", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    heavy = ("torch", "timm", "cv2", "polars", "sklearn", "albumentations", "segmentation_models_pytorch", "numpy")
    assert modules_loaded_by("import kagglekit.cli", heavy) == []


def test_local_target_excludes_explicit_target_options(capsys):
    assert main(["wheels", "check", "--local", "--python-version", "3.12"]) == 1
    assert "--local targets this interpreter" in capsys.readouterr().err
