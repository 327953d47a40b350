"""Reading local weight files without running pickled code, and loading them into models.

Files are recognised by content, not by suffix: safetensors (read with ``safetensors``) or a torch
file (read with ``torch.load(weights_only=True)``, which refuses any pickled object other than
tensors and plain containers). Keys saved through training wrappers are remapped (``module.``,
``_orig_mod.``, ``model.``, EMA prefixes) and every load returns a :class:`LoadReport`.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kagglekit.errors import KagglekitError, WeightsNotFoundError


class CheckpointError(KagglekitError, ValueError):
    """A weights or checkpoint file is unreadable, not a state dict, or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A torch file holds pickled objects that could run code; kagglekit refuses to unpickle them."""


class WeightsMismatchError(CheckpointError):
    """Keys or shapes of a weights file do not match the model (strict loading)."""


# Prefixes added by DataParallel/DDP (module.), torch.compile (_orig_mod.), Lightning-style wrappers
# (model.) and EMA / weight-averaging wrappers (timm ModelEma and torch AveragedModel use module.).
PREFIXES = ("module.", "_orig_mod.", "model.", "ema_model.", "model_ema.", "ema.")
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_BOOKKEEPING = ("n_averaged",)  # torch.optim.swa_utils.AveragedModel's counter
_SHOWN = 8
# How torch.load(weights_only=True) names a refused global: "Unsupported global: GLOBAL io.open"
# (torch 2.14), "Unsupported class io.open" (torch 2.1).
_UNSAFE_GLOBAL = re.compile(r"(?:GLOBAL|Unsupported class) [\w.]+")


@dataclass
class LoadReport:
    """What a load did. ``target`` is "" for the whole model or the name of the submodule that got the
    file (e.g. ``encoder`` or ``encoder.model``)."""

    target: str = ""
    loaded: int = 0
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    adapted: list = field(default_factory=list)
    stripped_prefixes: list = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"loaded {self.loaded} tensors into {self.target or 'the model'}"]
        for name in ("stripped_prefixes", "adapted", "mismatched", "missing", "unexpected"):
            items = getattr(self, name)
            if items:
                parts.append(f"{name.replace('_', ' ')} ({len(items)}): {_short(items)}")
        return "; ".join(parts)


def _short(items) -> str:
    items = list(items)
    return ", ".join(map(str, items[:_SHOWN])) + (f", ... (+{len(items) - _SHOWN})" if len(items) > _SHOWN else "")


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DataParallel / DDP / AveragedModel / timm ModelEma (``.module``) and torch.compile
    (``._orig_mod``) wrappers, returning the bare model that ``create`` built."""
    from torch.optim.swa_utils import AveragedModel
    from timm.utils import ModelEmaV2, ModelEmaV3

    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel, AveragedModel, ModelEmaV2, ModelEmaV3)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def read_state_dict(path, key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict (name -> CPU tensor) from a local .safetensors / .pth / .pt / .bin / .ckpt file.

    Nested training checkpoints are unpacked: ``key`` names the entry to use, otherwise the first of
    ``state_dict``, ``model_state_dict``, ``model``, ``module``, ``net``. Holds the whole file in memory
    (safetensors tensors are memory-mapped until used).
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file not found: {path}. kagglekit never downloads weights: put the file at that path "
            "(in a Kaggle kernel, attach the dataset that holds it, e.g. /kaggle/input/<dataset>/model.safetensors) "
            "or pass weights=None for random initialisation"
        )
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # SafetensorError, OSError, ...: whatever the library raises on a bad file
            raise CheckpointError(f"could not read safetensors file {path}: {e}; the file may be truncated") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        culprit = _UNSAFE_GLOBAL.search(str(e))
        if culprit is None:
            raise CheckpointError(f"could not read {path}: not a torch or safetensors file, or corrupt") from e
        raise UnsafeCheckpointError(
            f"refused to load {path}: it contains pickled Python objects, and unpickling them can run "
            "arbitrary code. If you trust the file, convert it once outside the kernel: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'clean.pth') or save it "
            f"with safetensors. Detail: {culprit.group(0)}"
        ) from e
    except Exception as e:  # torch.load raises many types on garbage (KeyError for a text file starting "h")
        raise CheckpointError(f"could not read {path} as a torch or safetensors file: {e}") from e
    return _select_state_dict(obj, key, path)


def _tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _select_state_dict(obj, key, path) -> dict[str, torch.Tensor]:
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"{path} has no entry {key!r}; its top-level entries are {keys}")
        obj = obj[key]
    elif not _tensor_dict(obj) and isinstance(obj, dict):
        obj = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)), obj)
    if not _tensor_dict(obj):
        keys = sorted(obj)[:20] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not a state dict of tensors (top-level entries: {keys}); pass key=<entry> naming "
            "the state dict inside the checkpoint"
        )
    return obj


def _overlap(keys, target_keys) -> int:
    return sum(k in target_keys for k in keys)


def _uncompiled(state: dict) -> dict:
    """Keys of a compiled submodule (``layer4._orig_mod.conv.weight``) as in the bare model."""
    return {k.replace("._orig_mod.", "."): v for k, v in state.items()}


def remap_state_dict(state: dict, target_keys=None) -> tuple[dict, list[str]]:
    """Strip wrapper prefixes from ``state``'s keys; return (new state, prefixes stripped in order).

    Prefixes are stripped one after another while every key has one (nested wrappers such as
    ``_orig_mod.module.`` or ``module.module.``). Without ``target_keys`` all of them go; with it, the
    depth that makes the most keys match the target wins (ties keep fewer strips, so a model whose real
    keys start with ``model.`` keeps them). ``._orig_mod.`` inside keys (a compiled submodule) is removed
    when that makes more keys match (always without a target). AveragedModel's ``n_averaged`` is dropped.
    """
    target = None if target_keys is None else set(target_keys)
    state = {k: v for k, v in state.items() if not (k in _BOOKKEEPING and (target is None or k not in target))}
    depths = [(state, [])]
    while state:
        p = next((p for p in PREFIXES if all(k.startswith(p) for k in state)), None)
        if p is None:
            break
        state = {k[len(p):]: v for k, v in state.items()}
        depths.append((state, depths[-1][1] + [p]))
    if target is None:
        return _uncompiled(state), depths[-1][1]
    best = None
    for candidate, stripped in depths:
        for keys in (candidate, _uncompiled(candidate)):
            score = _overlap(keys, target)
            if best is None or score > best[0]:
                best = (score, keys, stripped)
    return best[1], best[2]


def load_weights(model: nn.Module, source, *, strict: bool = True, pretrained: bool = False,
                 key: str | None = None) -> LoadReport:
    """Load a local weights file (or a state dict) into ``model`` in place; return a :class:`LoadReport`.

    ``pretrained=False`` (a checkpoint of this very model): every key must match in name and shape
    unless ``strict=False``. ``pretrained=True`` (a timm / smp / torchvision pretrained file): the file
    goes into the model or the submodule at most two levels down that it fits best (a ``backbone``, an
    smp ``encoder``, the timm model ``encoder.model`` of an smp ``tu-`` encoder); a first convolution
    with another input-channel count is adapted with timm's ``adapt_input_conv``; tensors of other
    shapes (a 1000-class head) and keys the target lacks are skipped and reported; only keys missing
    from the file are an error under ``strict``. Never downloads; never unpickles code.
    """
    state = read_state_dict(source, key) if isinstance(source, (str, os.PathLike)) else dict(source)
    model = unwrap_model(model)
    candidates = [(n, m) for n, m in model.named_modules() if not n or (pretrained and n.count(".") < 2)]
    best = None
    for name, module in candidates:
        own = module.state_dict()
        remapped, stripped = remap_state_dict(state, own)
        score = _overlap(remapped, own)
        if best is None or score > best[0]:
            best = (score, name, module, own, remapped, stripped)
    score, name, target, own, state, stripped = best
    where = f"{type(model).__name__}" + (f".{name}" if name else "")
    if score == 0:
        raise WeightsMismatchError(
            f"no tensor name in the file matches {where}: file keys start {_short(sorted(state))}; model keys "
            f"start {_short(list(own))}. Check that the file belongs to this architecture (and pass "
            "pretrained=True for a library pretrained file)"
        )
    report = LoadReport(target=name, stripped_prefixes=stripped)
    first_conv = next((k for k, v in own.items() if v.ndim == 4), None)
    to_load, mismatched = {}, set()
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif v.shape == own[k].shape:
            to_load[k] = v
        elif pretrained and k == first_conv and v.shape[0] == own[k].shape[0] and v.shape[2:] == own[k].shape[2:]:
            from timm.models import adapt_input_conv

            from_rgb = v.shape[1] == 3  # base_chans (a file that is not RGB) needs timm >= 1.0
            to_load[k] = adapt_input_conv(own[k].shape[1], v.float(), **({} if from_rgb else {"base_chans": v.shape[1]}))
            report.adapted.append(f"{k}: {v.shape[1]} -> {own[k].shape[1]} input channels")
        else:
            mismatched.add(k)
            report.mismatched.append(f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}")
    loaded_storage = {own[k].data_ptr() for k in to_load if own[k].numel()}
    report.missing = [k for k in own if k not in to_load and k not in mismatched
                      and own[k].data_ptr() not in loaded_storage]  # tied tensors are saved once
    report.loaded = len(to_load)
    problems = report.missing if pretrained else report.missing + report.unexpected + report.mismatched
    if strict and problems:
        raise WeightsMismatchError(
            f"weights do not fit {where}: {report}. Use the model arguments the file was trained with, "
            "pass pretrained=True for a library pretrained file, or strict=False to load what fits"
        )
    target.load_state_dict(to_load, strict=False)
    return report
