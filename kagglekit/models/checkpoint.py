"""Self-describing checkpoints: safetensors weights plus the ``create`` name and arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from kagglekit._atomic import atomic_path
from kagglekit.errors import InvalidArgumentError, WeightsNotFoundError
from kagglekit.models.factory import create
from kagglekit.models.weights import CheckpointError, _is_safetensors, load_weights, unwrap_model

_META_KEY = "kagglekit"
FORMAT_VERSION = 1


def save_checkpoint(model: nn.Module, path, metadata: dict | None = None) -> Path:
    """Write ``model``'s weights as safetensors at ``path`` with the name and kwargs it was created from.

    ``model`` is a model from :func:`create`, possibly wrapped (DataParallel, DDP, torch.compile, timm
    ModelEma, AveragedModel: the bare model is saved). ``metadata`` is any JSON-serialisable dict
    (epoch, fold, score, ...), returned by :func:`checkpoint_info`. Tied tensors are stored once. The
    file is written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.
    """
    from safetensors.torch import save_model

    bare = unwrap_model(model)
    config = getattr(bare, "kagglekit_config", None)
    if config is None:
        raise InvalidArgumentError(
            f"{type(bare).__name__} was not built by kagglekit.models.create, so a checkpoint could not "
            "rebuild it; create it with create(name, ...) (or register your architecture with register_model)"
        )
    header = {"format": FORMAT_VERSION, "name": config["name"], "kwargs": config["kwargs"], "metadata": metadata or {}}
    try:
        text = json.dumps(header)
    except TypeError as e:
        raise InvalidArgumentError(
            f"checkpoint config must be JSON-serialisable (numbers, strings, lists, dicts): {e}; "
            "pass layer choices to create() as strings, and metadata as plain values"
        ) from e
    path = Path(os.fspath(path)).expanduser()
    with atomic_path(path) as tmp:
        save_model(bare, str(tmp), metadata={_META_KEY: text})
    return path


def checkpoint_info(path) -> dict:
    """The header of a checkpoint: ``{"format", "name", "kwargs", "metadata"}`` (reads only the header)."""
    from safetensors import safe_open

    path = Path(os.fspath(path)).expanduser()
    load_hint = "load it with create(name, weights=path) naming the architecture yourself"
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint not found: {path}; attach the dataset that holds it or fix the path")
    if not _is_safetensors(path):
        raise CheckpointError(f"{path} is not a kagglekit checkpoint (not safetensors); {load_hint}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors' SafetensorError: bad header, or data shorter than the header says
        raise CheckpointError(f"could not read checkpoint {path}: {e}; the file may be truncated (an interrupted "
                              "copy or upload): re-copy it") from e
    if _META_KEY not in meta:
        raise CheckpointError(f"{path} has no kagglekit build config (not written by save_checkpoint); {load_hint}")
    try:
        info = json.loads(meta[_META_KEY])
        if not isinstance(info, dict) or not isinstance(info.get("kwargs"), dict) or "name" not in info:
            raise ValueError("not an object with 'name' and 'kwargs'")
    except ValueError as e:
        raise CheckpointError(f"{path} has a corrupt kagglekit build config ({e}); re-copy the file, or "
                              f"{load_hint}") from e
    if info.get("format", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses checkpoint format {info['format']}; upgrade kagglekit to read it")
    return info


def load_checkpoint(path, device="cpu") -> nn.Module:
    """Rebuild the model saved by :func:`save_checkpoint` from the file alone (no training code needed)
    and load its weights strictly. The training/eval mode is torch's default (train): call ``.eval()``
    for inference. The saved metadata is on ``model.kagglekit_metadata``."""
    info = checkpoint_info(path)
    model = create(info["name"], **info["kwargs"])
    load_weights(model, path, strict=True)
    model.kagglekit_metadata = info["metadata"]
    return model.to(device)
