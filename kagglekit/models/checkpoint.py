"""Self-describing checkpoints: safetensors weights plus the ``create`` name and arguments, and a
checksum of the tensor data, verified on loading.

The checksum is the SHA-256 of the file's data section (everything after the safetensors header), kept
in the header's metadata under ``kagglekit_sha256``. The header is written with a placeholder of the
same length, which is overwritten in place once the data has been hashed: the file is written once.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from torch import nn

from kagglekit._atomic import atomic_path
from kagglekit.errors import InvalidArgumentError, WeightsNotFoundError
from kagglekit.models.factory import create
from kagglekit.models.registry import canonical_name
from kagglekit.models.weights import CheckpointError, _is_safetensors, load_weights, unwrap_model

_META_KEY = "kagglekit"
_SUM_KEY = "kagglekit_sha256"
_PLACEHOLDER = "kagglekit-checksum-placeholder-".ljust(64, "-")  # as long as a hex SHA-256
FORMAT_VERSION = 1


def _data_offset(f) -> int:
    """Where a safetensors file's tensor data starts: after the 8-byte header length and the header."""
    f.seek(0)
    (length,) = struct.unpack("<Q", f.read(8))
    return 8 + length


def _data_sha256(path: Path) -> str:
    """SHA-256 of the file's tensor data, read in 1 MiB chunks (holds one chunk)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(_data_offset(f))
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_checksum(path: Path) -> None:
    """Replace the placeholder in ``path``'s header by the checksum of its data (same length: in place)."""
    checksum = _data_sha256(path).encode()
    with open(path, "rb+") as f:
        end = _data_offset(f)
        f.seek(0)
        header = f.read(end)
        at = header.find(_PLACEHOLDER.encode())
        if at < 0 or header.find(_PLACEHOLDER.encode(), at + 1) >= 0:
            raise CheckpointError(f"{path}: the checksum placeholder is not once in the header; the checkpoint was not finished")
        f.seek(at)
        f.write(checksum)


def save_checkpoint(model: nn.Module, path, metadata: dict | None = None, *, classes=None) -> Path:
    """Write ``model``'s weights as safetensors at ``path`` with the name and kwargs it was created from.

    ``model`` is a model from :func:`create`, possibly wrapped (DataParallel, DDP, torch.compile, timm
    ModelEma, AveragedModel: the bare model is saved). ``metadata`` is any JSON-serialisable dict
    (epoch, fold, score, ...), returned by :func:`checkpoint_info`. ``classes``: the names of the
    model's outputs in order (distinct non-empty strings, as many as ``num_classes`` when the model was
    created with it), so that a pipeline can write labels without a separate file. Tied tensors are stored once. A
    checksum of the tensor data goes into the header (see the module docstring). The file is written
    to a temporary name and renamed, so a crash never leaves a half-written checkpoint.
    """
    from safetensors.torch import save_model

    bare = unwrap_model(model)
    config = getattr(bare, "kagglekit_config", None)
    if config is None:
        raise InvalidArgumentError(
            f"{type(bare).__name__} was not built by kagglekit.models.create, so a checkpoint could not "
            "rebuild it; create it with create(name, ...) (or register your architecture with register_model)"
        )
    header = {"format": FORMAT_VERSION, "name": config["name"], "kwargs": config["kwargs"], "metadata": metadata or {},
              "classes": _checked_classes(classes, config["kwargs"].get("num_classes"))}
    try:
        text = json.dumps(header)
    except TypeError as e:
        raise InvalidArgumentError(
            f"checkpoint config must be JSON-serialisable (numbers, strings, lists, dicts): {e}; "
            "pass layer choices to create() as strings, and metadata as plain values"
        ) from e
    path = Path(os.fspath(path)).expanduser()
    with atomic_path(path) as tmp:
        save_model(bare, str(tmp), metadata={_META_KEY: text, _SUM_KEY: _PLACEHOLDER})
        _write_checksum(tmp)
    return path


def _checked_classes(classes, num_classes) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str) or not all(isinstance(c, str) and c for c in classes):
        raise InvalidArgumentError(f"classes must be a list of non-empty strings (one name per output), got {classes!r}")
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise InvalidArgumentError(f"classes must be distinct; repeated: {sorted({c for c in classes if classes.count(c) > 1})}")
    if num_classes is not None and len(classes) != num_classes:
        raise InvalidArgumentError(f"{len(classes)} class names for a model with num_classes={num_classes}; give one name per output")
    return classes


def _read_header(path: Path) -> dict:
    """The safetensors metadata of a checkpoint file, checked to be one (reads only the header)."""
    from safetensors import safe_open

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
    return meta


def verify_checkpoint(path) -> bool:
    """Check the tensor data of a checkpoint against the checksum in its header.

    Returns True when it matches, False for a file written before checksums existed (nothing to
    check); raises :class:`CheckpointError` naming the file when the data differ (bytes overwritten,
    a bad copy). Reads the whole file once, one chunk at a time.
    """
    path = Path(os.fspath(path)).expanduser()
    expected = _read_header(path).get(_SUM_KEY)
    if expected is None:
        return False
    if _data_sha256(path) != expected:
        raise CheckpointError(f"{path}: the tensor data do not match the checksum in its header (the file was "
                              "damaged after it was saved, e.g. a bad copy or upload); re-copy it or save it again")
    return True


def checkpoint_info(path) -> dict:
    """The header of a checkpoint: ``{"format", "name", "kwargs", "metadata", "classes"}`` (reads only the
    header; ``classes`` is None when none were saved)."""
    path = Path(os.fspath(path)).expanduser()
    load_hint = "load it with create(name, weights=path) naming the architecture yourself"
    meta = _read_header(path)
    try:
        info = json.loads(meta[_META_KEY])
        if not isinstance(info, dict) or not isinstance(info.get("kwargs"), dict) or "name" not in info:
            raise ValueError("not an object with 'name' and 'kwargs'")
    except ValueError as e:
        raise CheckpointError(f"{path} has a corrupt kagglekit build config ({e}); re-copy the file, or "
                              f"{load_hint}") from e
    if info.get("format", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses checkpoint format {info['format']}; upgrade kagglekit to read it")
    info.setdefault("classes", None)  # files saved before class names travelled with the model
    return info


def _current_name(name: str) -> str:
    """A saved build name as it is registered now: a checkpoint saved under a retired kagglekit name
    (e.g. ``kagglekit/gated_attention_mil``) loads as the model it names today, without a warning."""
    family, sep, rest = str(name).partition("/")
    return f"kagglekit/{canonical_name(rest)}" if family == "kagglekit" and sep else name


def load_checkpoint(path, device="cpu", *, train: bool = False) -> nn.Module:
    """Rebuild the model saved by :func:`save_checkpoint` from the file alone (no training code needed),
    verify its checksum (:func:`verify_checkpoint`) and load its weights strictly.

    The model is returned in **eval mode** (BatchNorm running statistics, no dropout), ready for
    inference; ``train=True`` returns it in training mode, to fine-tune. The saved metadata is on
    ``model.kagglekit_metadata``, the class names (or None) on ``model.kagglekit_classes``.
    """
    info = checkpoint_info(path)
    verify_checkpoint(path)
    model = create(_current_name(info["name"]), **info["kwargs"])
    load_weights(model, path, strict=True)
    model.kagglekit_metadata = info["metadata"]
    model.kagglekit_classes = info["classes"]
    model.kagglekit_weights = str(path)
    return model.to(device).train(train)


def as_module(model_or_path, *, what: str = "a model", callables: bool = True):
    """``model_or_path`` itself, or the model that the checkpoint at that path holds.

    A ``str`` / ``PathLike`` is a checkpoint written by :func:`save_checkpoint`: rebuilt and loaded by
    :func:`load_checkpoint` (on the CPU, eval mode; a missing file is a WeightsNotFoundError naming it).
    Anything else must be a torch ``nn.Module`` or, with ``callables``, any callable on NCHW (or (B, N, D))
    tensors; else an InvalidArgumentError naming ``what`` was expected. Holds the loaded model only."""
    if isinstance(model_or_path, (str, os.PathLike)):
        return load_checkpoint(model_or_path)
    if isinstance(model_or_path, nn.Module) or (callables and callable(model_or_path)):
        return model_or_path
    kinds = "torch modules, callables or checkpoint paths" if callables else "torch modules or checkpoint paths"
    raise InvalidArgumentError(f"{what} must be {kinds}, got {type(model_or_path).__name__}")
