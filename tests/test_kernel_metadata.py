"""kernel-metadata.json / dataset-metadata.json checks.

Oracle: the rules of the kaggle CLI's ``kernels push`` and ``datasets create`` (id ``owner/slug``,
kernel slug and title >= 5 characters, dataset slug and title 6..50, one licence, code_file exists,
kernel_type in {script, notebook}, language in {python, r, rmarkdown}, ``enable_internet`` read as
true when missing), written out case by case below, plus the project's own rule: internet must be
explicitly off.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from kagglekit.delivery.kernel import (
    KernelMetadataError,
    check_dataset_metadata,
    check_kernel_metadata,
    write_json_atomic,
)

from builders import EMPTY_NOTEBOOK, kernel_folder

REPO = Path(__file__).resolve().parents[1]


def test_valid_metadata_passes_and_is_returned(tmp_path):
    meta = check_kernel_metadata(kernel_folder(tmp_path))
    assert meta["id"] == "someone/kagglekit-inference" and meta["enable_internet"] is False


def test_string_booleans_are_read_like_the_cli(tmp_path):
    assert check_kernel_metadata(kernel_folder(tmp_path, enable_internet="False", is_private="true"))


@pytest.mark.parametrize("value", [True, "true", "TRUE"])
def test_internet_on_is_refused(tmp_path, value):
    with pytest.raises(KernelMetadataError, match="enable_internet is true"):
        check_kernel_metadata(kernel_folder(tmp_path, enable_internet=value))


def test_internet_missing_is_refused_because_the_cli_defaults_it_on(tmp_path):
    with pytest.raises(KernelMetadataError, match="enable_internet is missing.*turns the internet ON"):
        check_kernel_metadata(kernel_folder(tmp_path, enable_internet=None))


@pytest.mark.parametrize("changes, expected", [
    ({"id": "someone/abcd"}, "kernel slug 'abcd' is shorter than 5"),
    ({"id": "no-owner-here"}, "id must be 'owner/slug'"),
    ({"id": "/kagglekit-inference"}, "id must be 'owner/slug'"),
    ({"id": None}, "id is missing"),
    ({"title": "abcd"}, "title must be a string of at least 5"),
    ({"code_file": None}, "code_file is missing"),
    ({"code_file": "notebooks/other.ipynb"}, "code_file 'notebooks/other.ipynb' not found"),
    ({"kernel_type": "scripts"}, "kernel_type must be one of"),
    ({"language": "julia"}, "language must be one of"),
    ({"dataset_sources": ["just-a-slug"]}, "dataset source must be 'owner/slug'"),
    ({"dataset_sources": "someone/kagglekit-wheels"}, "dataset_sources must be a list"),
    ({"kernel_sources": ["someone/abc"]}, "kernel source slug 'abc' is shorter"),
    ({"enable_gpu": "yes"}, "enable_gpu must be true or false"),
    ({"docker_image_pinning_type": "newest"}, "docker_image_pinning_type must be one of"),
])
def test_each_cli_rule_refuses_bad_metadata(tmp_path, changes, expected):
    with pytest.raises(KernelMetadataError, match=expected):
        check_kernel_metadata(kernel_folder(tmp_path, **changes))


def test_id_no_alone_is_accepted_like_the_cli(tmp_path):
    assert check_kernel_metadata(kernel_folder(tmp_path, id=None, id_no=12345))


def test_all_problems_are_reported_at_once(tmp_path):
    with pytest.raises(KernelMetadataError) as err:
        check_kernel_metadata(kernel_folder(tmp_path, language="julia", enable_internet=None, title="ab"))
    assert str(err.value).count("\n  - ") == 3


def test_a_notebook_code_file_must_be_a_notebook(tmp_path):
    path = kernel_folder(tmp_path)
    (tmp_path / "notebooks" / "inference.ipynb").write_text("print('not a notebook')")
    with pytest.raises(KernelMetadataError, match="is not a notebook"):
        check_kernel_metadata(path)


def test_unreadable_or_absent_files_are_refused(tmp_path):
    with pytest.raises(KernelMetadataError, match="not found"):
        check_kernel_metadata(tmp_path / "kernel-metadata.json")
    (tmp_path / "kernel-metadata.json").write_text("{not json")
    with pytest.raises(KernelMetadataError, match="not valid JSON"):
        check_kernel_metadata(tmp_path / "kernel-metadata.json")
    (tmp_path / "kernel-metadata.json").write_text("[]")
    with pytest.raises(KernelMetadataError, match="JSON object"):
        check_kernel_metadata(tmp_path / "kernel-metadata.json")


def test_repository_kernel_metadata_is_valid_offline_and_lists_the_wheel_dataset(tmp_path):
    raw = json.loads((REPO / "kernel-metadata.json").read_text())
    assert raw["enable_internet"] is False  # written explicitly, as a JSON boolean
    assert (raw["code_file"], raw["kernel_type"], raw["language"]) == ("notebooks/inference.ipynb", "notebook", "python")
    wheels_id = json.loads((REPO / "wheels" / "dataset-metadata.json").read_text())["id"]
    assert wheels_id in raw["dataset_sources"]
    # the notebook is written later; check the metadata beside a stand-in notebook
    (tmp_path / "kernel-metadata.json").write_text(json.dumps(raw))
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "inference.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
    assert check_kernel_metadata(tmp_path / "kernel-metadata.json") == raw


def dataset_folder(tmp_path, **meta) -> Path:
    base = {"id": "someone/kagglekit-wheels", "title": "kagglekit wheels", "licenses": [{"name": "other"}]}
    base.update(meta)
    (tmp_path / "dataset-metadata.json").write_text(json.dumps(base))
    return tmp_path


def test_repository_wheel_dataset_metadata_is_valid():
    assert check_dataset_metadata(REPO / "wheels")["id"].endswith("/kagglekit-wheels")


@pytest.mark.parametrize("meta, expected", [
    ({"id": "someone/short"}, "slug 'short' must have 6 to 50"),
    ({"id": "someone/" + "a" * 51}, "must have 6 to 50"),
    ({"id": "someone"}, "id must be 'owner/slug'"),
    ({"title": "short"}, "title must be a string of 6 to 50"),
    ({"title": "t" * 51}, "title must be a string of 6 to 50"),
    ({"licenses": []}, "exactly one licence"),
    ({"licenses": [{"name": "other"}, {"name": "CC0-1.0"}]}, "exactly one licence"),
])
def test_dataset_metadata_rules(tmp_path, meta, expected):
    with pytest.raises(KernelMetadataError, match=expected):
        check_dataset_metadata(dataset_folder(tmp_path, **meta))


def test_dataset_slug_and_title_bounds_are_inclusive(tmp_path):
    assert check_dataset_metadata(dataset_folder(tmp_path, id="someone/" + "a" * 6, title="t" * 50))
    assert check_dataset_metadata(dataset_folder(tmp_path, id="someone/" + "a" * 50, title="t" * 6))


def test_atomic_write_replaces_or_leaves_the_old_file(tmp_path):
    path = tmp_path / "meta.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["meta.json"]  # no temporary file left behind


def test_atomic_write_keeps_the_old_mode_and_gives_a_new_file_what_open_would(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")  # the oracle: open() under this process's umask
    new = write_json_atomic(tmp_path / "new.json", {"a": 1})
    assert stat.S_IMODE(new.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    os.chmod(new, 0o640)
    write_json_atomic(new, {"a": 2})
    assert stat.S_IMODE(new.stat().st_mode) == 0o640 and json.loads(new.read_text()) == {"a": 2}
