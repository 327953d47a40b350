"""The segmentation pipeline's configuration: a TOML file or a dict, checked key by key.

    [inputs]     glob = "test/*.png"  kind = "image" | "volume"  z = [20, 44]  id_from = "stem" | "parent"
    [tiling]     tile = 512  stride = 384  window = "gaussian"  margin = 32  batch_size = 8
                 tissue_only = true  thumbnail = 1024  min_tissue = 0.05
    [[models]]   path = "fold0.safetensors"  weight = 1.0        (one table per checkpoint)
    [tta]        views = "d4" | ["identity", "hflip"]  mode = "merge" | "cycle"  merge = "mean"
    normalize  = "scale" | "none" | "imagenet" | { mean = [...], std = [...] }
    device     = "auto" | "cpu" | "cuda" | "cuda:N"   (default "auto": cuda when available, else cpu;
                                                     "cuda" on a machine without CUDA is refused)
    [threshold]  kind = "fixed" (value) | "percentile" (q, a fraction) | "file" (file)
    [output]     sample_submission = "sample_submission.csv"  submission = "submission.csv"
                 id_column  mask_column  order = "C" | "F"  fallback = ""
    [budget]     seconds = 30600  reserve = 600

Model and threshold files are relative to the config file's folder (a dict: to ``base_dir``),
``inputs.glob`` and ``output.sample_submission`` to the input folder, ``output.submission`` to the
output folder. Every mistake raises :class:`PipelineConfigError` naming the key, e.g.
``tiling.stride: must be an integer >= 1, got 'auto'``; unknown keys are refused (typos), with the
closest allowed key when there is one. :func:`early_output` reads just ``[output]``, leniently, so
that the pipeline can write the fallback submission before the whole file is checked.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from kagglekit.errors import ConfigError

__all__ = ["PipelineConfigError", "SegmentConfig", "early_output", "load_config", "read_threshold_file"]

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
THRESHOLD_KINDS = ("fixed", "percentile", "file")
TTA_MODES = ("merge", "cycle")


class PipelineConfigError(ConfigError):
    """A pipeline configuration key is missing, unknown or has a value the pipeline cannot use."""


@dataclass(frozen=True)
class InputsConfig:
    glob: str = "test/*"
    kind: str = "image"
    z: tuple[int, int] | None = None
    id_from: str = "stem"


@dataclass(frozen=True)
class TilingConfig:
    tile: int = 512
    stride: int | None = None
    window: str = "gaussian"
    margin: int = 0
    batch_size: int = 8
    tissue_only: bool = False
    thumbnail: int = 1024
    min_tissue: float = 0.05


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
class ThresholdConfig:
    kind: str = "fixed"
    value: float = 0.5
    q: float | None = None
    file: Path | None = None


@dataclass(frozen=True)
class OutputConfig:
    sample_submission: str = "sample_submission.csv"
    submission: str = "submission.csv"
    id_column: str | None = None
    mask_column: str | None = None
    order: str = "C"
    fallback: str = ""


@dataclass(frozen=True)
class BudgetConfig:
    seconds: float = 8.5 * 3600
    reserve: float = 600.0


@dataclass(frozen=True)
class SegmentConfig:
    """The checked configuration; ``normalize`` is in :func:`kagglekit.infer.sliding_window`'s form."""

    models: tuple[ModelConfig, ...]
    inputs: InputsConfig = field(default_factory=InputsConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    tta: TTAConfig = field(default_factory=TTAConfig)
    normalize: object = "scale"
    device: str = "auto"
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)


class _Table:
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


def _inputs(data) -> InputsConfig:
    t = _Table(data, "inputs", ("glob", "kind", "z", "id_from"))
    kind = t.string("kind", "image", ("image", "volume"))
    z = t.data.get("z")
    if z is not None:
        if kind != "volume":
            t.fail("z", "is a slice range [start, stop) for kind = 'volume' only")
        if (not isinstance(z, (list, tuple)) or len(z) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in z)
                or not 0 <= z[0] < z[1]):
            t.fail("z", "must be [start, stop] with 0 <= start < stop (slices start..stop-1)")
        z = (z[0], z[1])
    pattern = t.string("glob", "test/*")
    if not pattern or Path(pattern).is_absolute() or any("**" in part and part != "**" for part in pattern.split("/")):
        t.fail("glob", "must be a non-empty pattern relative to the competition folder, e.g. 'test/*.png' "
                       "('**' only as a whole path part, as in 'test/**/*.tif')")
    return InputsConfig(pattern, kind, z, t.string("id_from", "stem", ("stem", "parent")))


def _tiling(data) -> TilingConfig:
    from kagglekit.tiling import WINDOWS

    t = _Table(data, "tiling", ("tile", "stride", "window", "margin", "batch_size", "tissue_only", "thumbnail",
                                "min_tissue"))
    tile = t.integer("tile", 512)
    stride = t.integer("stride", None)
    margin = t.integer("margin", 0, minimum=0)
    if 2 * margin >= tile:
        t.fail("margin", f"must be less than half the tile ({tile})")
    if (stride or tile) > tile - 2 * margin:
        t.fail("stride", f"must be <= tile - 2 * margin ({tile - 2 * margin}) so that the tiles' inner parts cover "
                         f"every pixel (stride {stride or tile}{' is the tile: the default' if stride is None else ''})")
    return TilingConfig(tile, stride, t.string("window", "gaussian", WINDOWS), margin, t.integer("batch_size", 8),
                        t.boolean("tissue_only", False), t.integer("thumbnail", 1024, minimum=16),
                        t.number("min_tissue", 0.05, 0.0, 1.0))


def _models(data, base: Path) -> tuple[ModelConfig, ...]:
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise PipelineConfigError(
            "models: give at least one checkpoint, e.g. [[models]] path = \"fold0.safetensors\" weight = 1.0"
        )
    models = []
    for i, item in enumerate(data):
        t = _Table(item, f"models[{i}]", ("path", "weight"))
        path = t.string("path", None)
        if not path:
            t.fail("path", "must name a checkpoint written by kagglekit.models.save_checkpoint")
        models.append(ModelConfig(base / path, t.number("weight", 1.0, 0.0, open_low=True)))
    return tuple(models)


def _tta(data) -> TTAConfig:
    from kagglekit.tta import MODES, views

    t = _Table(data, "tta", ("views", "mode", "merge"))
    spec = t.data.get("views", "identity")
    try:
        names = tuple(v.name for v in views(spec))
    except (ConfigError, ValueError, TypeError) as exc:
        raise PipelineConfigError(f"tta.views: {exc}") from None
    return TTAConfig(names, t.string("mode", "merge", TTA_MODES), t.string("merge", "mean", MODES))


def _normalize(value):
    if value in ("scale", "imagenet", "none"):
        return {"scale": "scale", "imagenet": IMAGENET, "none": None}[value]
    if isinstance(value, dict):
        t = _Table(value, "normalize", ("mean", "std"))
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


def _device(value: str) -> str:
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


def _threshold(data, base: Path) -> ThresholdConfig:
    t = _Table(data, "threshold", ("kind", "value", "q", "file"))
    kind = t.string("kind", "fixed", THRESHOLD_KINDS)
    needs = {"fixed": "value", "percentile": "q", "file": "file"}[kind]
    if needs not in t.data and kind != "fixed":
        t.fail(needs, f"is required for kind = {kind!r}")
    extra = sorted(set(t.data) - {"kind", needs})
    if extra:
        t.fail(extra[0], f"is not used by kind = {kind!r} (it uses {needs!r})")
    value = t.number("value", 0.5, 0.0, 1.0)
    q = t.number("q", None, 0.0, 1.0)
    file = t.string("file", None)
    if kind == "file" and not file.strip():
        t.fail("file", "must name a file holding the threshold, e.g. \"threshold.json\"")
    return ThresholdConfig(kind, value, q, base / file if file else None)


def _output(data) -> OutputConfig:
    from kagglekit.kaggle.rle import ORDERS

    t = _Table(data, "output", ("sample_submission", "submission", "id_column", "mask_column", "order", "fallback"))
    return OutputConfig(t.string("sample_submission", "sample_submission.csv"), t.string("submission", "submission.csv"),
                        t.string("id_column", None), t.string("mask_column", None), t.string("order", "C", ORDERS),
                        t.string("fallback", ""))


def _budget(data) -> BudgetConfig:
    t = _Table(data, "budget", ("seconds", "reserve"))
    seconds = t.number("seconds", 8.5 * 3600, 0.0, open_low=True)
    reserve = t.number("reserve", 600.0, 0.0)
    if reserve >= seconds:
        t.fail("reserve", f"must be less than budget.seconds ({seconds})")
    return BudgetConfig(seconds, reserve)


def _read_toml(path: Path) -> dict:
    from kagglekit._toml import tomllib

    if not path.is_file():
        raise PipelineConfigError(f"pipeline config {path} not found; attach the dataset that holds it or fix the path")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a BOM from a Windows editor is skipped
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"{path} is not valid TOML: {exc}") from None


def load_config(source, base_dir=None) -> SegmentConfig:
    """Read and check a configuration: a TOML path, a dict of the same shape, or a SegmentConfig (returned).

    Relative model and threshold paths are resolved against ``base_dir`` (default: the TOML's folder,
    or the current folder for a dict).
    """
    if isinstance(source, SegmentConfig):
        return source
    if isinstance(source, dict):
        data, base = source, Path(base_dir) if base_dir is not None else Path.cwd()
        return _check(data, base)
    if not isinstance(source, (str, Path)):
        raise PipelineConfigError(f"config must be a TOML path, a dict or a SegmentConfig, got {type(source).__name__}")
    path = Path(source)
    data = _read_toml(path)
    try:
        return _check(data, Path(base_dir) if base_dir is not None else path.parent)
    except PipelineConfigError as exc:
        raise PipelineConfigError(f"{path}: {exc}") from None


def _check(data: dict, base: Path) -> SegmentConfig:
    top = _Table(data, "", ("inputs", "tiling", "models", "tta", "normalize", "device", "threshold", "output", "budget"))
    if "models" not in data:
        raise PipelineConfigError("models: missing; add [[models]] path = \"<checkpoint>.safetensors\"")
    return SegmentConfig(
        models=_models(data["models"], base),
        inputs=_inputs(data.get("inputs", {})),
        tiling=_tiling(data.get("tiling", {})),
        tta=_tta(data.get("tta", {})),
        normalize=_normalize(data.get("normalize", "scale")),
        device=_device(top.string("device", "auto")),
        threshold=_threshold(data.get("threshold", {}), base),
        output=_output(data.get("output", {})),
        budget=_budget(data.get("budget", {})),
    )


def early_output(source) -> OutputConfig:
    """The ``[output]`` section of ``source`` (as :func:`load_config` takes it) as far as it can be read:
    the defaults when the file is missing or not TOML or the section has a mistake. Only for writing
    the fallback submission early; :func:`load_config` reports the mistake itself."""
    if isinstance(source, SegmentConfig):
        return source.output
    try:
        data = source if isinstance(source, dict) else _read_toml(Path(source))
        return _output(data.get("output", {}))
    except (ConfigError, TypeError, AttributeError):
        return OutputConfig()


def read_threshold_file(path: Path) -> float:
    """A probability threshold from a file: JSON ``{"threshold": 0.42}`` or a bare number."""
    if not path.is_file():
        raise PipelineConfigError(f"threshold.file: {path} not found; write it when choosing the threshold, or use kind = 'fixed'")
    text = path.read_text(encoding="utf-8").strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        value = value.get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise PipelineConfigError(
            f"threshold.file: {path} must hold a probability in [0, 1] as JSON {{\"threshold\": 0.42}} or a bare number, "
            f"got {text[:60]!r}"
        )
    return float(value)
