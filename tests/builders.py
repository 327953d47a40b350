"""Plain builders shared by several test modules: project folders, kernel metadata, wheels, checkpoints."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

EMPTY_NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
ONE_CELL_NOTEBOOK = {"cells": [{"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": [],
                                "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
OWNER = "your-kaggle-username"  # the placeholder owner of the repository's Kaggle ids


def kernel_folder(tmp_path, **changes) -> Path:
    """A folder with a valid kernel-metadata.json and notebook; ``changes`` edit (None deletes) keys."""
    meta = {
        "id": "someone/kagglekit-inference", "title": "kagglekit inference",
        "code_file": "notebooks/inference.ipynb", "language": "python", "kernel_type": "notebook",
        "is_private": True, "enable_gpu": True, "enable_internet": False,
        "dataset_sources": ["someone/kagglekit-wheels"], "competition_sources": [], "kernel_sources": [],
    }
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (tmp_path / "notebooks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "notebooks" / "inference.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
    path = tmp_path / "kernel-metadata.json"
    path.write_text(json.dumps(meta))
    return path


def bundle_folder(root: Path) -> Path:
    """A project folder like the repository: kernel metadata + notebook, wheels/, and a model folder."""
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "inference.ipynb").write_text(json.dumps(ONE_CELL_NOTEBOOK))
    (root / "kernel-metadata.json").write_text(json.dumps({
        "id": f"{OWNER}/kagglekit-inference", "title": "kagglekit inference",
        "code_file": "notebooks/inference.ipynb", "language": "python", "kernel_type": "notebook",
        "enable_gpu": True, "enable_internet": False,
        "dataset_sources": [f"{OWNER}/kagglekit-wheels", f"{OWNER}/kagglekit-models"],
    }))
    (root / "wheels").mkdir()
    (root / "wheels" / "kagglekit-0.1.0-py3-none-any.whl").write_bytes(b"wheel bytes")
    (root / "wheels" / "segmentation_models_pytorch-0.6.0-py3-none-any.whl").write_bytes(b"smp bytes")
    (root / "wheels" / "dataset-metadata.json").write_text(json.dumps(
        {"id": f"{OWNER}/kagglekit-wheels", "title": "kagglekit wheels", "licenses": [{"name": "other"}]}))
    models = root / "models"
    (models / "fold1").mkdir(parents=True)
    rng = os.urandom
    (models / "fold0.safetensors").write_bytes(rng(4096))
    (models / "fold0.json").write_text('{"arch": "unet"}')
    (models / "fold1" / "model.safetensors").write_bytes(rng(1024))
    return root


def make_wheel(folder, name, version, requires=(), tag="py3-none-any") -> Path:
    """Write a minimal valid wheel (METADATA, WHEEL, RECORD and one module) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module, dist = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{module}/__init__.py": b"",
        f"{dist}.dist-info/METADATA": metadata.encode(),
        f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in files.items()) + f"{dist}.dist-info/RECORD,,\n"
    files[f"{dist}.dist-info/RECORD"] = record.encode()
    path = folder / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_in_zip, data in files.items():
            zf.writestr(name_in_zip, data)
    return path


def make_sdist(folder, name, version) -> Path:
    """Write a source distribution only (a .tar.gz with PKG-INFO)."""
    path = Path(folder) / f"{name}-{version}.tar.gz"
    data = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


def make_buildable_sdist(folder, name, version) -> Path:
    """Write a source distribution of a pure-Python setuptools project that ``pip wheel`` can build."""
    files = {"pyproject.toml": '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n',
             "setup.cfg": f"[metadata]\nname = {name}\nversion = {version}\n\n[options]\npackages = {name}\n",
             f"{name}/__init__.py": "", "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}
    path = Path(folder) / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for file, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{file}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def make_project(folder, requires=("tinywheel>=1.0",)) -> Path:
    """A tiny setuptools project named kagglekit (so that the builder's own-wheel step has something to build)."""
    folder = Path(folder)
    (folder / "kagglekit").mkdir(parents=True)
    (folder / "kagglekit" / "__init__.py").write_text("")
    (folder / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=64"]\n'
                                           'build-backend = "setuptools.build_meta"\n')
    (folder / "setup.cfg").write_text("[metadata]\nname = kagglekit\nversion = 0.0.1\n\n[options]\npackages = kagglekit\n"
                                      "install_requires =\n" + "".join(f"    {r}\n" for r in requires))
    return folder


def constant_checkpoint(path: Path, logit: float) -> Path:
    """A small smp U-Net whose output is ``logit`` everywhere: every weight 0, the head's bias ``logit``."""
    import torch

    from kagglekit.models import create, save_checkpoint

    model = create("smp/unet/tu-lcnet_050", encoder_depth=3, decoder_channels=[16, 8, 4])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.segmentation_head[0].bias.fill_(logit)
    return save_checkpoint(model, path)
