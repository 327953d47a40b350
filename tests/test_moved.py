"""Every piece in its room, and the old paths for one release: each old import path still gives the very
object of the new one and warns (DeprecationWarning naming the new path, pointed at the caller's line);
one resolve_device, one 'module or checkpoint path' helper, one naming of MIL heads (old checkpoints load)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from kagglekit.errors import InvalidArgumentError

MODULES = [  # old module path -> new module path
    ("kagglekit.kaggle.wheels", "kagglekit.delivery.wheels"),
    ("kagglekit.kaggle.kernel", "kagglekit.delivery.kernel"),
    ("kagglekit.kaggle.bundle", "kagglekit.delivery.bundle"),
    ("kagglekit.demo.notebook", "kagglekit.delivery.notebook"),
]

NAMES = [  # (old module, old name) -> (new module, new name)
    (("kagglekit.mil", "plan_tiles"), ("kagglekit.tiling", "plan_tiles")),
    (("kagglekit.mil", "slide_kind"), ("kagglekit.tiling", "slide_kind")),
    (("kagglekit.mil", "TilePlan"), ("kagglekit.tiling", "TilePlan")),
    (("kagglekit.mil", "tile_reader"), ("kagglekit.tiling", "tile_reader")),
    (("kagglekit.mil.extract", "plan_tiles"), ("kagglekit.tiling", "plan_tiles")),
    (("kagglekit.mil.extract", "slide_kind"), ("kagglekit.tiling", "slide_kind")),
    (("kagglekit.mil.extract", "TilePlan"), ("kagglekit.tiling", "TilePlan")),
    (("kagglekit.mil.extract", "tile_reader"), ("kagglekit.tiling", "tile_reader")),
    (("kagglekit.mil.extract", "KINDS"), ("kagglekit.tiling.slides", "KINDS")),
    (("kagglekit.mil.extract", "SWAPS"), ("kagglekit.tiling.slides", "SWAPS")),
    (("kagglekit.mil.extract", "as_backbone"), ("kagglekit.models", "as_module")),
    (("kagglekit.infer", "load_image"), ("kagglekit.io", "load_image")),
    (("kagglekit.infer.images", "load_image"), ("kagglekit.io", "load_image")),
]


def _deprecations(record):
    return [w for w in record if issubclass(w.category, DeprecationWarning) and "kagglekit" in str(w.message)]


@pytest.mark.parametrize("old,new", MODULES, ids=[m[0] for m in MODULES])
def test_old_module_paths_give_the_new_module_and_warn(old, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    found = _deprecations(record)
    assert len(found) == 1 and new in str(found[0].message) and old in str(found[0].message)
    assert found[0].filename == __file__  # pointed at the importing line, not at importlib or kagglekit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module(new)  # the new path is silent


@pytest.mark.parametrize("old,new", NAMES, ids=[".".join(n[0]) for n in NAMES])
def test_old_names_give_the_new_objects_and_warn(old, new):
    module = importlib.import_module(old[0])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        value = getattr(module, old[1])
    assert value is getattr(importlib.import_module(new[0]), new[1])
    found = _deprecations(record)
    assert len(found) == 1 and f"{old[0]}.{old[1]}" in str(found[0].message)
    assert f"{new[0]}.{new[1]}" in str(found[0].message) and found[0].filename == __file__


def test_from_import_of_an_old_name_warns():
    with pytest.warns(DeprecationWarning, match=r"kagglekit\.mil\.plan_tiles moved to kagglekit\.tiling\.plan_tiles"):
        from kagglekit.mil import plan_tiles  # noqa: F401
    with pytest.warns(DeprecationWarning, match=r"kagglekit\.infer\.load_image moved to kagglekit\.io\.load_image"):
        from kagglekit.infer import load_image  # noqa: F401


def test_moved_names_are_not_listed_and_unknown_names_still_fail():
    import kagglekit.infer
    import kagglekit.mil

    assert "plan_tiles" not in dir(kagglekit.mil) and "plan_tiles" not in kagglekit.mil.__all__
    assert "load_image" not in kagglekit.infer.__all__
    with pytest.raises(AttributeError):
        kagglekit.mil.no_such_name  # noqa: B018
    with pytest.raises(AttributeError):
        kagglekit.infer.no_such_name  # noqa: B018


def test_old_notebook_runner_command_still_runs_and_warns():
    proc = subprocess.run([sys.executable, "-m", "kagglekit.demo.notebook", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "python -m kagglekit.delivery.notebook" in proc.stdout
    assert "DeprecationWarning" in proc.stderr and "kagglekit.delivery.notebook" in proc.stderr


def test_the_runtime_package_is_only_the_runtime():
    import kagglekit.delivery
    import kagglekit.kaggle

    assert set(kagglekit.kaggle.__all__) == {"Budget", "SubmissionGuard", "find_input", "input_dir", "is_kaggle",
                                             "is_rerun", "read_csv_strings", "rle_decode", "rle_encode", "set_offline",
                                             "working_dir"}
    from kagglekit.delivery.bundle import bundle

    assert callable(bundle) and callable(kagglekit.delivery.push) and callable(kagglekit.delivery.build_wheels)
    assert kagglekit.delivery.execute_notebook.__module__ == "kagglekit.delivery.notebook"


# one resolve_device


def test_resolve_device_covers_auto_none_names_and_devices(monkeypatch):
    from kagglekit.infer import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # named: taken as is, not checked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cuda")
    for bad in ("gpu", "auto:0", 3.5):
        with pytest.raises(InvalidArgumentError, match="not a torch device"):
            resolve_device(bad)


def test_every_package_uses_the_one_resolve_device():
    import kagglekit.infer.batching as batching
    import kagglekit.infer.dense as dense
    import kagglekit.infer.images as images

    assert images.resolve_device is dense.resolve_device is batching.resolve_device
    for path in ("kagglekit/mil/extract.py", "kagglekit/mil/train.py", "kagglekit/jobs/models.py"):
        text = open(path).read()
        assert "def resolve_device" not in text and "from kagglekit.infer.batching import resolve_device" in text


# one 'module or checkpoint path' helper


def test_as_module_loads_a_path_and_passes_a_module(tmp_path):
    from kagglekit.models import as_module, create, save_checkpoint

    torch.manual_seed(0)
    model = create("kagglekit/chowder", in_dim=4, r=1, num_classes=2).eval()
    path = save_checkpoint(model, tmp_path / "c.safetensors")
    assert as_module(model) is model
    loaded = as_module(path)
    assert as_module(str(path)).training is False and isinstance(loaded, type(model))
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))

    def plain(x):
        return x

    assert as_module(plain) is plain
    with pytest.raises(InvalidArgumentError, match="heads must be torch modules or checkpoint paths, got function"):
        as_module(plain, what="heads", callables=False)
    with pytest.raises(InvalidArgumentError, match="models must be torch modules, callables or checkpoint paths, got int"):
        as_module(3, what="models")


def test_ensemble_predict_and_predict_bags_take_paths_through_as_module(tmp_path):
    from kagglekit.infer import predict
    from kagglekit.mil import predict_bags
    from kagglekit.models import create, save_checkpoint
    from kagglekit.tta import Ensemble

    with pytest.raises(InvalidArgumentError, match="Ensemble members must be torch modules or checkpoint paths"):
        Ensemble([lambda x: x])
    with pytest.raises(InvalidArgumentError, match="models must be torch modules, callables or checkpoint paths"):
        predict([3], [np.zeros((4, 4, 3), np.uint8)], progress=False)
    heads = create("kagglekit/head_ensemble", head="gated_attention", seeds=[0, 1], in_dim=3, hidden=4, num_classes=2)
    path = save_checkpoint(heads.eval(), tmp_path / "h.safetensors")
    bags = [np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)]
    assert np.allclose(predict_bags(path, bags), predict_bags(heads, bags), atol=1e-6)


# one naming of MIL heads


def test_mil_heads_have_one_name_in_both_registries():
    from kagglekit.models import MIL_HEADS, HeadEnsemble, create, list_models

    assert {f"kagglekit/{name}" for name in MIL_HEADS} <= set(list_models())
    assert "kagglekit/gated_attention_mil" not in list_models()
    for name, cls in MIL_HEADS.items():
        torch.manual_seed(3)
        alone = create(f"kagglekit/{name}", in_dim=6, num_classes=3)
        assert type(alone) is cls
        stacked = HeadEnsemble(name, seeds=[3], in_dim=6, num_classes=3).eval()
        x = torch.randn(2, 7, 6)
        with torch.no_grad():
            assert torch.allclose(stacked(x)[0], alone.eval()(x), atol=1e-5)


def test_the_old_head_name_builds_with_a_warning():
    from kagglekit.models import GatedAttentionMIL, HeadEnsemble, create

    with pytest.warns(DeprecationWarning, match="kagglekit/gated_attention_mil is now kagglekit/gated_attention"):
        model = create("kagglekit/gated_attention_mil", in_dim=4, num_classes=2)
    assert type(model) is GatedAttentionMIL and model.kagglekit_config["name"] == "kagglekit/gated_attention"
    with pytest.warns(DeprecationWarning, match="gated_attention_mil"):
        ensemble = HeadEnsemble("gated_attention_mil", seeds=[0], in_dim=4, num_classes=2)
    assert ensemble.head == "gated_attention"


def test_a_checkpoint_saved_under_the_old_head_name_still_loads(tmp_path):
    from kagglekit.models import GatedAttentionMIL, checkpoint_info, create, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = create("kagglekit/gated_attention", in_dim=4, hidden=3, num_classes=2).eval()
    model.kagglekit_config = {**model.kagglekit_config, "name": "kagglekit/gated_attention_mil"}  # as 0.1 saved it
    path = save_checkpoint(model, tmp_path / "old.safetensors")
    assert checkpoint_info(path)["name"] == "kagglekit/gated_attention_mil"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the user cannot change a saved file: no warning
        loaded = load_checkpoint(path)
    assert type(loaded) is GatedAttentionMIL and loaded.kagglekit_config["name"] == "kagglekit/gated_attention"
    x = torch.randn(3, 6, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    resaved = save_checkpoint(loaded, tmp_path / "new.safetensors")
    assert checkpoint_info(resaved)["name"] == "kagglekit/gated_attention"
