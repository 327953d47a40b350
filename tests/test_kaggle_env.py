"""Environment detection, input layouts and offline variables, on temporary folders."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from kagglekit.errors import InvalidArgumentError
from kagglekit.kaggle import env
from kagglekit.kaggle.env import (
    InputNotFoundError,
    find_input,
    input_dir,
    is_kaggle,
    is_rerun,
    set_offline,
    working_dir,
)

KAGGLE_VARS = (
    "KAGGLE_KERNEL_RUN_TYPE",
    "KAGGLE_URL_BASE",
    "KAGGLE_IS_COMPETITION_RERUN",
    "KAGGLEKIT_INPUT_DIR",
    "KAGGLEKIT_WORKING_DIR",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in KAGGLE_VARS:
        monkeypatch.delenv(name, raising=False)


def test_kaggle_and_rerun_detection(monkeypatch):
    assert not is_kaggle() and not is_rerun()
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert is_kaggle() and not is_rerun()
    for value, expected in (("True", True), ("1", True), ("false", False), ("0", False), ("", False)):
        monkeypatch.setenv("KAGGLE_IS_COMPETITION_RERUN", value)
        assert is_rerun() is expected


def test_paths_follow_overrides_and_kaggle(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLEKIT_INPUT_DIR", str(tmp_path / "in"))
    monkeypatch.setenv("KAGGLEKIT_WORKING_DIR", str(tmp_path / "work"))
    assert input_dir() == tmp_path / "in" and working_dir() == tmp_path / "work"
    monkeypatch.delenv("KAGGLEKIT_INPUT_DIR")
    monkeypatch.delenv("KAGGLEKIT_WORKING_DIR")
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert input_dir() == Path("/kaggle/input") and working_dir() == Path("/kaggle/working")
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    monkeypatch.chdir(tmp_path)
    assert working_dir() == tmp_path
    assert input_dir() == (Path("/kaggle/input") if Path("/kaggle/input").is_dir() else tmp_path / "input")


@pytest.fixture
def mounts(tmp_path):
    root = tmp_path / "input"
    layouts = ("old-style", "competitions/vesuvius", "datasets/alice/weights", "datasets/bob/weights")
    for rel in layouts + ("datasets/bob/wheels",):
        (root / rel).mkdir(parents=True)
    return root


def test_find_input_in_every_layout(mounts, monkeypatch):
    assert find_input("old-style", mounts) == mounts / "old-style"
    assert find_input("vesuvius", mounts) == mounts / "competitions/vesuvius"
    assert find_input("wheels", mounts) == mounts / "datasets/bob/wheels"
    assert find_input("alice/weights", mounts) == mounts / "datasets/alice/weights"
    assert find_input("bob/wheels/", mounts) == mounts / "datasets/bob/wheels"
    monkeypatch.setenv("KAGGLEKIT_INPUT_DIR", str(mounts))
    assert find_input("vesuvius") == mounts / "competitions/vesuvius"


def test_find_input_errors_name_what_is_mounted(mounts, tmp_path):
    with pytest.raises(InvalidArgumentError, match="several owners") as info:
        find_input("weights", mounts)
    assert "datasets/alice/weights" in str(info.value) and "owner/weights" in str(info.value)
    with pytest.raises(InputNotFoundError) as info:
        find_input("ubc-ocean", mounts)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    for mounted in ("old-style", "competitions/vesuvius", "datasets/bob/wheels"):
        assert mounted in message
    with pytest.raises(InputNotFoundError, match="carol"):
        find_input("carol/weights", mounts)
    with pytest.raises(InputNotFoundError, match="does not exist"):
        find_input("x", tmp_path / "missing")
    for bad in ("", "a/b/c", 3):
        with pytest.raises(InvalidArgumentError):
            find_input(bad, mounts)


def test_set_offline_sets_the_variables_and_warns_when_late(monkeypatch):
    for name in env.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for module in env._READS_AT_IMPORT:
        monkeypatch.delitem(sys.modules, module, raising=False)
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "NO_ALBUMENTATIONS_UPDATE")
    assert set_offline() == dict.fromkeys(names, "1")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.ModuleType("huggingface_hub"))
    with pytest.warns(UserWarning, match="huggingface_hub"):
        set_offline()


def test_package_exports_are_lazy():
    import subprocess

    code = (
        "import sys, kagglekit.kaggle as k; assert 'polars' not in sys.modules; "
        "assert k.Budget.__name__ == 'Budget'; assert 'polars' not in sys.modules; "
        "k.SubmissionGuard; assert 'polars' in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
