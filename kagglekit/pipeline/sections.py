"""What every pipeline configuration shares: the TOML reader, the key-by-key checks, and the sections
both ``segment`` and ``classify`` take.

    kind       = "segment" | "classify"                          (default "segment")
    [[models]]   path = "fold0.safetensors"  weight = 1.0        (one table per checkpoint)
    [tta]        views = "d4" | ["identity", "hflip"]  mode = "merge" | "cycle"  merge = "mean"
    [preprocess] normalize = "scale" | "none" | "imagenet" | { mean = [...], std = [...] }
                 (classify also: size, resize; the old top-level ``normalize`` of segment keeps working)
    device     = "auto" | "cpu" | "cuda" | "cuda:N"   (default "auto": cuda when available, else cpu;
                                                     "cuda" on a machine without CUDA is refused)
    workers    = 1 | N | "gpus"                       (default 1: this process; "gpus": a worker process per
                                                     GPU, the images split between them; N: N processes)
    [budget]     seconds = 30600  reserve = 600
    [output]     sample_submission = "sample_submission.csv"  submission = "submission.csv"  id_column

Every mistake raises :class:`PipelineConfigError` naming the key, e.g. ``tiling.stride: must be an
integer >= 1, got 'auto'``; unknown keys are refused (typos), with the closest allowed key when there
is one.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from kagglekit.errors import ConfigError
from kagglekit.infer.batching import IMAGENET

__all__ = ["BudgetConfig", "ModelConfig", "OutputBase", "PipelineConfigError", "TTAConfig", "read_toml"]

TTA_MODES = ("merge", "cycle")


class PipelineConfigError(ConfigError):
    """A pipeline configuration key is missing, unknown or has a value the pipeline cannot use."""


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    weight: float = 1.0


@dataclass(frozen=True)
class TTAConfig:
    views: tuple[str, ...] = ("identity",)
    mode: str = "merge"
    merge: str = "mean"


@dataclass(frozen=True)
class OutputBase:
    """The ``[output]`` keys both pipelines take; a subclass names its prediction column's key in ``VALUE_KEY``."""

    VALUE_KEY: ClassVar[str] = "value_column"
    sample_submission: str = "sample_submission.csv"
    submission: str = "submission.csv"
    id_column: str | None = None

    def columns(self, reference) -> tuple[str, str | None]:
        """(id column, prediction column) of the sample as named here, the defaults (first column, next one)
        where no name or one the sample lacks is given: enough to write the fallback; :meth:`check_columns`
        refuses the wrong name afterwards."""
        columns = reference.columns
        id_column = self.id_column if self.id_column in columns else columns[0]
        others = [c for c in columns if c != id_column]
        value = getattr(self, self.VALUE_KEY)
        return id_column, value if value in others else (others[0] if others else None)

    def check_columns(self, reference, sample: Path) -> None:
        """Refuse a configured column the sample lacks, or a sample with only one column."""
        columns = reference.columns
        for key in ("id_column", self.VALUE_KEY):
            name = getattr(self, key)
            if name is not None and name not in columns:
                raise PipelineConfigError(f"output.{key}: {name!r} is not a column of {sample} ({columns})")
        if len(columns) < 2:
            raise PipelineConfigError(f"{sample} has only the column {columns}; a submission needs an id and a prediction column")


@dataclass(frozen=True)
class BudgetConfig:
    seconds: float = 8.5 * 3600
    reserve: float = 600.0


class Table:
    """One TOML table being read: each getter checks a value and names ``<section>.<key>`` when it is wrong."""

    def __init__(self, data, name: str, allowed):
        if not isinstance(data, dict):
            raise PipelineConfigError(f"{name}: must be a table (a dict), got {type(data).__name__}")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            close = [c for key in unknown for c in difflib.get_close_matches(str(key), allowed, n=1)]
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            where = f"{name}: unknown key(s)" if name else "unknown top-level key(s)"
            raise PipelineConfigError(f"{where} {unknown}{hint}; allowed keys are {sorted(allowed)}")
        self.data, self.name = data, name

    def _where(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def fail(self, key: str, what: str):
        raise PipelineConfigError(f"{self._where(key)}: {what}, got {self.data.get(key)!r}")

    def integer(self, key: str, default, minimum: int = 1):
        value = self.data.get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, f"must be an integer >= {minimum}")
        return value

    def number(self, key: str, default, low: float = -math.inf, high: float = math.inf, open_low: bool = False):
        value = self.data.get(key, default)
        if value is None and default is None:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value > high or value < low or (open_low and value == low):
            bounds = f"{'(' if open_low else '['}{low}, {high}]"
            self.fail(key, f"must be a number in {bounds}")
        return float(value)

    def string(self, key: str, default, choices=None):
        value = self.data.get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str):
            self.fail(key, "must be a string")
        if choices is not None and value not in choices:
            self.fail(key, f"must be one of {list(choices)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
        return value


def models(data, base: Path) -> tuple[ModelConfig, ...]:
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise PipelineConfigError(
            "models: give at least one checkpoint, e.g. [[models]] path = \"fold0.safetensors\" weight = 1.0"
        )
    models = []
    for i, item in enumerate(data):
        t = Table(item, f"models[{i}]", ("path", "weight"))
        path = t.string("path", None)
        if not path:
            t.fail("path", "must name a checkpoint written by kagglekit.models.save_checkpoint")
        models.append(ModelConfig(base / path, t.number("weight", 1.0, 0.0, open_low=True)))
    return tuple(models)


def tta(data) -> TTAConfig:
    from kagglekit.tta import MODES, views

    t = Table(data, "tta", ("views", "mode", "merge"))
    spec = t.data.get("views", "identity")
    try:
        names = tuple(v.name for v in views(spec))
    except (ConfigError, ValueError, TypeError) as exc:
        raise PipelineConfigError(f"tta.views: {exc}") from None
    return TTAConfig(names, t.string("mode", "merge", TTA_MODES), t.string("merge", "mean", MODES))


def normalize(value):
    if value in ("scale", "imagenet", "none"):
        return {"scale": "scale", "imagenet": IMAGENET, "none": None}[value]
    if isinstance(value, dict):
        t = Table(value, "normalize", ("mean", "std"))
        pair = []
        for key in ("mean", "std"):
            v = t.data.get(key)
            if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                t.fail(key, "must be a list of numbers, one per channel (values of the image scaled to [0, 1])")
            if key == "std" and min(v) <= 0:
                t.fail(key, "must be positive")
            pair.append(tuple(float(x) for x in v))
        if len(pair[0]) != len(pair[1]):
            raise PipelineConfigError(f"normalize: mean has {len(pair[0])} values but std has {len(pair[1])}")
        return tuple(pair)
    raise PipelineConfigError(
        f"normalize: must be 'scale', 'none', 'imagenet' or a table {{mean = [...], std = [...]}}, got {value!r}"
    )


def device(value: str) -> str:
    """'auto' or a torch device name ('cpu', 'cuda', 'cuda:1', 'mps') that this machine has."""
    if value == "auto":
        return value
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as exc:
        raise PipelineConfigError(f"device: {value!r} is not a torch device ({exc}); use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise PipelineConfigError(f"device: {value!r}, but this machine has no CUDA device; use device = 'auto' "
                                      "(the GPU when there is one, else the CPU), or turn the kernel's GPU accelerator on")
        if device.index is not None and device.index >= count:
            raise PipelineConfigError(f"device: {value!r}, but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PipelineConfigError(f"device: {value!r}, but MPS is not available here; use device = 'auto'")
    return value


def workers(top: Table) -> int | str:
    """``workers``: 1 (this process), an integer N >= 1, or ``"gpus"`` (one worker process per GPU)."""
    value = top.data.get("workers", 1)
    if value == "gpus" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    top.fail("workers", "must be an integer >= 1 or 'gpus' (one worker process per GPU)")


def budget(data) -> BudgetConfig:
    t = Table(data, "budget", ("seconds", "reserve"))
    seconds = t.number("seconds", 8.5 * 3600, 0.0, open_low=True)
    reserve = t.number("reserve", 600.0, 0.0)
    if reserve >= seconds:
        t.fail("reserve", f"must be less than budget.seconds ({seconds})")
    return BudgetConfig(seconds, reserve)


def read_toml(path: Path) -> dict:
    from kagglekit._toml import tomllib

    if not path.is_file():
        raise PipelineConfigError(f"pipeline config {path} not found; attach the dataset that holds it or fix the path")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a BOM from a Windows editor is skipped
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"{path} is not valid TOML: {exc}") from None


def check_device(value: str) -> None:
    """Refuse a device this machine lacks (TEMPORARY: replaced by the declarative config's)."""
    device(value)
