"""``kagglekit bundle`` and ``kagglekit push``.

Oracles: the source files themselves (bytes compared after bundling), the Kaggle metadata rules
(checked by ``check_*_metadata``, tested on their own in test_kernel_metadata.py), and a stand-in
``kaggle`` executable on PATH that records the arguments it was called with.
"""

from __future__ import annotations

import filecmp
import json
import os
import shlex
import stat
from pathlib import Path

import pytest

from kagglekit.errors import ConfigError
from kagglekit.delivery.bundle import PushError, bundle, push, push_commands
from kagglekit.delivery.kernel import check_dataset_metadata, check_kernel_metadata

from builders import OWNER


def make_bundle(project, **kwargs):
    """``bundle`` of the test project into dist/kaggle; any input can be overridden."""
    kwargs.setdefault("owner", "alice")
    for name, default in (("models", "models"), ("kernel_metadata", "kernel-metadata.json"), ("wheels", "wheels")):
        kwargs.setdefault(name, project / default)
    return bundle(project / "dist" / "kaggle", **kwargs)


def set_kernel_metadata(project: Path, key: str, value, path: Path | None = None) -> None:
    """Change one key of the project's kernel-metadata.json, writing it to ``path`` (default: in place)."""
    meta = json.loads((project / "kernel-metadata.json").read_text())
    meta[key] = value
    (path or project / "kernel-metadata.json").write_text(json.dumps(meta))


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes): a snapshot to compare after a refusal."""
    return {name: (folder / name).read_bytes() for name in files_under(folder)}


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("link", [True, False])
def test_bundle_writes_three_folders_ready_for_the_kaggle_cli(bundle_project, link):
    result = make_bundle(bundle_project, link=link)
    assert files_under(result.wheels) == ["dataset-metadata.json", "kagglekit-0.1.0-py3-none-any.whl",
                                          "segmentation_models_pytorch-0.6.0-py3-none-any.whl"]
    assert files_under(result.models) == ["dataset-metadata.json", "fold0.json", "fold0.safetensors",
                                          "fold1/model.safetensors"]
    assert files_under(result.kernel) == ["kernel-metadata.json", "notebooks/inference.ipynb"]
    for name in ("fold0.json", "fold0.safetensors", "fold1/model.safetensors"):
        assert filecmp.cmp(bundle_project / "models" / name, result.models / name, shallow=False)
    assert filecmp.cmp(bundle_project / "notebooks" / "inference.ipynb",
                       result.kernel / "notebooks" / "inference.ipynb", shallow=False)
    assert check_dataset_metadata(result.wheels)["id"] == "alice/kagglekit-wheels"
    assert check_dataset_metadata(result.models)["id"] == "alice/kagglekit-models"
    kernel = check_kernel_metadata(result.kernel / "kernel-metadata.json")
    assert kernel["id"] == "alice/kagglekit-inference"
    assert kernel["dataset_sources"] == ["alice/kagglekit-wheels", "alice/kagglekit-models"]
    assert kernel["enable_internet"] is False
    source = bundle_project / "models" / "fold0.safetensors"
    assert os.path.samefile(source, result.models / "fold0.safetensors") is link
    # the sources in the project are untouched (the placeholder owner stays there)
    assert json.loads((bundle_project / "kernel-metadata.json").read_text())["id"] == f"{OWNER}/kagglekit-inference"


def test_bundle_reuses_a_model_dataset_metadata_and_rewrites_an_earlier_bundle(bundle_project):
    (bundle_project / "models" / "dataset-metadata.json").write_text(json.dumps(
        {"id": f"{OWNER}/kagglekit-models", "title": "my ink models", "licenses": [{"name": "CC0-1.0"}]}))
    first = make_bundle(bundle_project)
    (first.models / "leftover.bin").write_bytes(b"x")
    second = make_bundle(bundle_project)
    assert not (second.models / "leftover.bin").exists()
    meta = check_dataset_metadata(second.models)
    assert (meta["id"], meta["title"]) == ("alice/kagglekit-models", "my ink models")


def test_bundle_without_owner_keeps_the_placeholder_and_push_refuses_it(bundle_project):
    result = make_bundle(bundle_project, owner=None)
    assert check_kernel_metadata(result.kernel / "kernel-metadata.json")["id"] == f"{OWNER}/kagglekit-inference"
    with pytest.raises(PushError, match="placeholder owner.*--owner"):
        push_commands(result.root)


def test_bundle_takes_the_owner_from_a_kernel_id_that_has_a_real_one(bundle_project):
    set_kernel_metadata(bundle_project, "id", "bob/kagglekit-inference")
    result = make_bundle(bundle_project, owner=None)
    assert check_dataset_metadata(result.models)["id"] == "bob/kagglekit-models"
    assert check_kernel_metadata(result.kernel / "kernel-metadata.json")["dataset_sources"] == [
        "bob/kagglekit-wheels", "bob/kagglekit-models"]
    assert push_commands(result.root)  # no placeholder left


def test_bundle_refuses_a_kernel_that_does_not_list_the_model_dataset(bundle_project):
    set_kernel_metadata(bundle_project, "dataset_sources", [f"{OWNER}/kagglekit-wheels"])
    with pytest.raises(ConfigError, match=r"does not list \['alice/kagglekit-models'\] in dataset_sources"):
        make_bundle(bundle_project)


def test_bundle_refuses_internet_on_before_writing_anything(bundle_project):
    set_kernel_metadata(bundle_project, "enable_internet", True)
    with pytest.raises(ConfigError, match="enable_internet is true"):
        make_bundle(bundle_project)
    assert not (bundle_project / "dist").exists()


def test_bundle_refuses_missing_inputs(bundle_project):
    (bundle_project / "wheels" / "kagglekit-0.1.0-py3-none-any.whl").unlink()
    with pytest.raises(ConfigError, match="no kagglekit wheel.*wheels build"):
        make_bundle(bundle_project)
    (bundle_project / "wheels" / "kagglekit-0.1.0-py3-none-any.whl").write_bytes(b"wheel bytes")
    with pytest.raises(ConfigError, match="model folder .* not found"):
        make_bundle(bundle_project, models=bundle_project / "nope")
    (bundle_project / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no files"):
        make_bundle(bundle_project, models=bundle_project / "empty")
    with pytest.raises(ConfigError, match="not a Kaggle user name"):
        make_bundle(bundle_project, owner="alice/bob")


def test_bundle_never_deletes_a_folder_it_did_not_write(bundle_project):
    out = bundle_project / "dist" / "kaggle"
    out.mkdir(parents=True)
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a kagglekit bundle"):
        make_bundle(bundle_project)
    assert (out / "precious.txt").read_text() == "keep me"


def test_push_commands_upload_both_datasets_then_the_kernel(bundle_project):
    root = make_bundle(bundle_project).root
    assert push_commands(root, create=True) == [
        ["kaggle", "datasets", "create", "-p", str(root / "wheels"), "--dir-mode", "zip"],
        ["kaggle", "datasets", "create", "-p", str(root / "models"), "--dir-mode", "zip"],
        ["kaggle", "kernels", "push", "-p", str(root / "kernel")],
    ]
    assert push_commands(root, message="v2")[0] == [
        "kaggle", "datasets", "version", "-p", str(root / "wheels"), "-m", "v2", "--dir-mode", "zip"]


def fake_kaggle(folder: Path, exit_code: int = 0) -> Path:
    """A stand-in kaggle executable that appends its arguments to calls.log."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "kaggle"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/calls.log"\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder / "calls.log"


def test_push_runs_the_kaggle_cli_when_it_is_on_path(bundle_project, tmp_path, monkeypatch):
    root = make_bundle(bundle_project).root
    log = fake_kaggle(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    echoed = []
    assert push(root, create=True, echo=echoed.append) is True
    assert log.read_text().splitlines() == [
        f"datasets create -p {root / 'wheels'} --dir-mode zip",
        f"datasets create -p {root / 'models'} --dir-mode zip",
        f"kernels push -p {root / 'kernel'}",
    ]
    assert len(echoed) == 3 and all(line.startswith("+ kaggle ") for line in echoed)


def test_push_stops_at_the_first_failing_command(bundle_project, tmp_path, monkeypatch):
    root = make_bundle(bundle_project).root
    log = fake_kaggle(tmp_path / "bin", exit_code=3)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(PushError, match="datasets version .* failed with exit code 3"):
        push(root, echo=lambda line: None)
    assert len(log.read_text().splitlines()) == 1


def test_push_prints_the_commands_without_the_kaggle_cli(bundle_project, tmp_path, monkeypatch):
    root = make_bundle(bundle_project).root
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    echoed = []
    assert push(root, echo=echoed.append) is False
    assert "not on PATH" in echoed[0]
    assert echoed[1:] == [shlex.join(cmd) for cmd in push_commands(root)]


def test_push_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    with pytest.raises(PushError, match="not a bundle.*kagglekit bundle"):
        push_commands(tmp_path)


def test_a_refused_model_dataset_metadata_leaves_the_earlier_bundle_untouched(bundle_project):
    first = make_bundle(bundle_project)
    before = contents(first.root)
    (bundle_project / "models" / "dataset-metadata.json").write_text(json.dumps(
        {"id": f"{OWNER}/kagglekit-models", "title": "short", "licenses": [{"name": "CC0-1.0"}]}))
    with pytest.raises(ConfigError, match=r"(?s)models/dataset-metadata.json would be refused.*title must be a string of 6 to 50"):
        make_bundle(bundle_project)
    assert contents(first.root) == before


def test_a_code_file_outside_the_kernel_folder_leaves_the_earlier_bundle_untouched(bundle_project):
    first = make_bundle(bundle_project)
    before = contents(first.root)
    # metadata in notebooks/ whose code_file climbs out of it: valid for Kaggle, but not copyable into kernel/
    (bundle_project / "inference.ipynb").write_bytes((bundle_project / "notebooks" / "inference.ipynb").read_bytes())
    meta_path = bundle_project / "notebooks" / "kernel-metadata.json"
    set_kernel_metadata(bundle_project, "code_file", "../inference.ipynb", path=meta_path)
    with pytest.raises(ConfigError, match="points outside the kernel folder"):
        make_bundle(bundle_project, kernel_metadata=meta_path)
    assert contents(first.root) == before
