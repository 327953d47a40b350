"""notebooks/inference.ipynb: stored clean, parameters injected as papermill does, executed headless."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import cv2
import nbformat
import numpy as np
import pytest

from kagglekit.delivery.notebook import NotebookError, execute_notebook, inject_parameters
from kagglekit.errors import ConfigError

from builders import constant_checkpoint

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "inference.ipynb"


def assigned_names(source: str) -> dict:
    """Top-level ``NAME = literal`` assignments of a cell, evaluated plainly."""
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets}


def test_the_stored_notebook_has_no_outputs_and_one_parameters_cell():
    raw = json.loads(NOTEBOOK.read_text())
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert all("execution" not in c["metadata"] and "collapsed" not in c["metadata"] for c in code)
    assert "widgets" not in raw["metadata"]
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    defaults = assigned_names("".join(tagged[0]["source"]))
    assert {"CONFIG", "INPUT_DIR", "OUTPUT_DIR", "INPUT_ROOT"} <= set(defaults)
    assert defaults["INPUT_ROOT"] == "/kaggle/input" and defaults["OUTPUT_DIR"] == "/kaggle/working"
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(), as_version=4))


def test_injected_parameters_follow_the_parameters_cell_and_override_it():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(k for k, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    inject_parameters(nb, {"OUTPUT_DIR": "/tmp/x", "CONFIG": None}, extra_cells=["y = 1"])
    injected = nb.cells[index + 1]
    assert injected.metadata["tags"] == ["injected-parameters"] and nb.cells[index + 2].source == "y = 1"
    namespace: dict = {}
    for cell in nb.cells[index : index + 2]:
        exec(cell.source, namespace)
    assert namespace["OUTPUT_DIR"] == "/tmp/x" and namespace["CONFIG"] is None
    assert namespace["INPUT_ROOT"] == "/kaggle/input"  # untouched defaults stay


def test_a_notebook_without_a_parameters_cell_is_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(ConfigError, match="no cell tagged 'parameters'"):
        inject_parameters(nb, {"x": 2})


def kaggle_folders(tmp_path):
    """(input root, competition folder with test/, model folder, working folder) as Kaggle lays them out."""
    root = tmp_path / "input"
    comp, models, out = root / "demo-comp", root / "demo-models", tmp_path / "working"
    (comp / "test").mkdir(parents=True)
    models.mkdir()
    return root, comp, models, out


@pytest.mark.slow
def test_the_notebook_runs_headless_to_a_valid_submission_and_an_overlay(tmp_path):
    """One kernel for the segment kind, on two workers: the images split over two processes spawned from inside
    the kernel (two GPUs in a kernel). The notebook on one process runs in test_offline.py and the demos."""
    workers = 2
    root, comp, models, out = kaggle_folders(tmp_path)
    shapes = {"a": (300, 200), "b": (64, 90), "broken": (50, 50)}
    for name, shape in shapes.items():
        assert cv2.imwrite(str(comp / "test" / f"{name}.png"), np.full((*shape, 3), 120, np.uint8))
    (comp / "test" / "broken.png").write_bytes((comp / "test" / "broken.png").read_bytes()[:40])
    (comp / "sample_submission.csv").write_text("id,rle\n" + "".join(f"{n},\n" for n in shapes))
    constant_checkpoint(models / "model.safetensors", logit=5.0)
    (models / "segment.toml").write_text(
        f'workers = {workers}\n[inputs]\nglob = "test/*.png"\n[tiling]\ntile = 64\nstride = 48\n[[models]]\npath = "model.safetensors"\n'
        '[threshold]\nkind = "fixed"\nvalue = 0.5\n[output]\nfallback = "1 1"\n'
    )
    nb = execute_notebook(NOTEBOOK, {"INPUT_ROOT": str(root), "COMPETITION": "demo-comp", "MODELS": "demo-models",
                                     "OUTPUT_DIR": str(out)}, out=tmp_path / "executed.ipynb", cwd=tmp_path,
                          timeout=600)
    with open(out / "submission.csv", newline="") as f:
        rows = {r["id"]: r["rle"] for r in csv.DictReader(f)}
    # sigmoid(5) >= 0.5 on every pixel: one run over the whole image; the corrupt file keeps the fallback
    assert rows == {"a": f"1 {300 * 200}", "b": f"1 {64 * 90}", "broken": "1 1"}
    overlay = cv2.imread(str(out / "overlay.png"))
    assert overlay is not None and overlay.shape == (300, 200, 3)  # image "a", smaller than 1024: full size
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "using the kagglekit already installed" in text and "2 predicted, 1 fallback rows" in text


@pytest.mark.slow
def test_an_error_in_a_cell_fails_the_run(tmp_path):
    with pytest.raises(NotebookError, match="FileNotFoundError|InputNotFoundError"):
        execute_notebook(NOTEBOOK, {"INPUT_ROOT": str(tmp_path / "nothing"), "OUTPUT_DIR": str(tmp_path)},
                         cwd=tmp_path, timeout=600)
    assert not (tmp_path / "submission.csv").exists()


@pytest.mark.slow
def test_a_config_typo_fails_the_notebook_loudly_and_leaves_the_fallback_submission(tmp_path):
    root, comp, models, out = kaggle_folders(tmp_path)
    assert cv2.imwrite(str(comp / "test" / "a.png"), np.full((40, 40, 3), 120, np.uint8))
    (comp / "sample_submission.csv").write_text("id,rle\na,\nb,\n")
    constant_checkpoint(models / "model.safetensors", logit=5.0)
    (models / "segment.toml").write_text('[tiling]\nstrid = 192\n[[models]]\npath = "model.safetensors"\n')
    with pytest.raises(NotebookError, match=r"tiling: unknown key\(s\) \['strid'\] \(did you mean 'stride'\?\)"):
        execute_notebook(NOTEBOOK, {"INPUT_ROOT": str(root), "COMPETITION": "demo-comp", "MODELS": "demo-models",
                                    "OUTPUT_DIR": str(out)}, cwd=tmp_path, timeout=600)
    with open(out / "submission.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [{"id": "a", "rle": ""}, {"id": "b", "rle": ""}]


@pytest.mark.slow
def test_the_notebook_runs_a_classify_config_to_labels_and_a_picture(tmp_path):
    """The config's kind picks the pipeline; the closed-form colour model is registered in the kernel
    by importing the tests' competitions module (an extra cell after the parameters)."""
    root, comp, models, out = kaggle_folders(tmp_path)
    colours = {"x": (240, 20, 20), "y": (20, 230, 30), "z": (10, 20, 250)}
    for name, colour in colours.items():
        assert cv2.imwrite(str(comp / "test" / f"{name}.png"), np.full((60, 80, 3), colour[::-1], np.uint8))
    (comp / "sample_submission.csv").write_text("id,label\n" + "".join(f"{n},red\n" for n in colours))
    import competitions  # noqa: F401  (registers the colour model here too)
    from kagglekit.models import create, save_checkpoint

    save_checkpoint(create("kagglekit/test_pipeline_colour"), models / "m.safetensors", classes=["red", "green", "blue"])
    (models / "classify.toml").write_text('kind = "classify"\nnum_workers = 0\n[preprocess]\nsize = 32\n'
                                          '[[models]]\npath = "m.safetensors"\n[decision]\nkind = "argmax"\n')
    tests_dir = str(Path(__file__).parent)
    execute_notebook(NOTEBOOK, {"INPUT_ROOT": str(root), "COMPETITION": "demo-comp", "MODELS": "demo-models",
                                "OUTPUT_DIR": str(out)}, cwd=tmp_path, timeout=600,
                     extra_cells=[f"import sys; sys.path.insert(0, {tests_dir!r}); import competitions"])
    with open(out / "submission.csv", newline="") as f:
        assert {r["id"]: r["label"] for r in csv.DictReader(f)} == {"x": "red", "y": "green", "z": "blue"}
    picture = cv2.imread(str(out / "predictions.png"))
    assert picture is not None and picture.shape == (192 + 28, 4 * 192, 3)
