"""The segmentation pipeline's own configuration sections (the shared ones are in :mod:`.sections`).

    [inputs]     glob = "test/*.png"  kind = "image" | "volume"  z = [20, 44] | "middle:16"  id_from = "stem" | "parent"
                 mask = "test/{id}/mask.png"   (a per-image mask: tiles only where it is set, 0 outside)
    [preprocess] normalize = "scale" | "none" | "imagenet" | "volume" | { mean = [...], std = [...] }
                 ("volume": each volume's own mean and std inside its mask)
    [tiling]     tile = 512  stride = 384  window = "gaussian"  margin = 32  batch_size = 8
                 tissue_only = true  thumbnail = 1024  min_tissue = 0.05
    [threshold]  kind = "fixed" (value) | "percentile" (q, a fraction) | "file" (file)
    [memory]     max_resident = 2  offload = "cpu" | "disk"  fp16 = false
                 (at most N models on the device at once, the others on CPU or re-read from their
                 checkpoints; fp16 weights and autocast on CUDA)
    [output]     sample_submission = "sample_submission.csv"  submission = "submission.csv"
                 id_column  mask_column  order = "C" | "F"  fallback = ""

Model and threshold files are relative to the config file's folder (a dict: to ``base_dir``),
``inputs.glob``, ``inputs.mask`` and ``output.sample_submission`` to the input folder, ``output.submission`` to the
output folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from kagglekit.errors import InvalidArgumentError
from kagglekit.pipeline import sections
from kagglekit.pipeline.sections import BudgetConfig, ModelConfig, OutputBase, PipelineConfigError, Table, TTAConfig

__all__ = ["SegmentConfig", "read_threshold_file"]

THRESHOLD_KINDS = ("fixed", "percentile", "file")


@dataclass(frozen=True)
class InputsConfig:
    glob: str = "test/*"
    kind: str = "image"
    z: tuple[int, int] | str | None = None
    id_from: str = "stem"
    mask: str | None = None

    def z_selection(self):
        """``z`` as :func:`kagglekit.io.open_volume` takes it: a slice, ``"middle:N"`` or None (all slices)."""
        return slice(*self.z) if isinstance(self.z, tuple) else self.z

    def mask_path(self, input_dir: Path, image_id: str) -> Path | None:
        """The mask file of ``image_id`` (None: no mask configured)."""
        return input_dir / self.mask.format(id=image_id) if self.mask else None


OFFLOADS = ("cpu", "disk")


@dataclass(frozen=True)
class MemoryConfig:
    """``max_resident`` None: every model stays on the device (the default)."""

    max_resident: int | None = None
    offload: str = "cpu"
    fp16: bool = False


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
class ThresholdConfig:
    kind: str = "fixed"
    value: float = 0.5
    q: float | None = None
    file: Path | None = None


@dataclass(frozen=True)
class OutputConfig(OutputBase):
    VALUE_KEY: ClassVar[str] = "mask_column"
    mask_column: str | None = None
    order: str = "C"
    fallback: str = ""

    def fill(self, reference) -> dict:
        """The fallback's replaced columns: the mask column set to ``fallback``."""
        mask_column = self.columns(reference)[1]
        return {mask_column: self.fallback} if mask_column else {}


@dataclass(frozen=True)
class SegmentConfig:
    """The checked configuration; ``normalize`` is in :func:`kagglekit.infer.sliding_window`'s form."""

    models: tuple[ModelConfig, ...]
    inputs: InputsConfig = field(default_factory=InputsConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    tta: TTAConfig = field(default_factory=TTAConfig)
    normalize: object = "scale"
    device: str = "auto"
    workers: int | str = 1
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    kind: str = "segment"


def _z(t: Table, kind: str):
    z = t.data.get("z")
    if z is None:
        return None
    if kind != "volume":
        t.fail("z", "is a slice range [start, stop) or 'middle:N' for kind = 'volume' only")
    if isinstance(z, str):
        from kagglekit.io.volume import middle_count

        try:
            middle_count(z)
        except InvalidArgumentError:
            t.fail("z", "as a string must be 'middle:N' (the N middle slices), e.g. 'middle:16'")
        return z
    if (not isinstance(z, (list, tuple)) or len(z) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in z)
            or not 0 <= z[0] < z[1]):
        t.fail("z", "must be [start, stop] with 0 <= start < stop (slices start..stop-1), or 'middle:N'")
    return (z[0], z[1])


def _relative_pattern(t: Table, key: str, default, example: str):
    pattern = t.string(key, default)
    if pattern is not None and (not pattern or Path(pattern).is_absolute()):
        t.fail(key, f"must be a non-empty pattern relative to the competition folder, e.g. {example!r}")
    return pattern


def _inputs(data) -> InputsConfig:
    t = Table(data, "inputs", ("glob", "kind", "z", "id_from", "mask"))
    kind = t.string("kind", "image", ("image", "volume"))
    pattern = _relative_pattern(t, "glob", "test/*", "test/*.png")
    if any("**" in part and part != "**" for part in pattern.split("/")):
        t.fail("glob", "may hold '**' only as a whole path part, as in 'test/**/*.tif'")
    mask = _relative_pattern(t, "mask", None, "test/{id}/mask.png")
    if mask is not None:
        try:
            mask.format(id="x")
        except (KeyError, IndexError, ValueError):
            t.fail("mask", "may hold only the placeholder {id} (the image's id), e.g. 'test/{id}/mask.png'")
        if "{id}" not in mask:
            t.fail("mask", "must hold {id}, the image's id, e.g. 'test/{id}/mask.png' or 'masks/{id}.png'")
    return InputsConfig(pattern, kind, _z(t, kind), t.string("id_from", "stem", ("stem", "parent")), mask)


def _memory(data) -> MemoryConfig:
    t = Table(data, "memory", ("max_resident", "offload", "fp16"))
    return MemoryConfig(t.integer("max_resident", None), t.string("offload", "cpu", OFFLOADS), t.boolean("fp16", False))


def _tiling(data) -> TilingConfig:
    from kagglekit.tiling import WINDOWS

    t = Table(data, "tiling", ("tile", "stride", "window", "margin", "batch_size", "tissue_only", "thumbnail",
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


def _threshold(data, base: Path) -> ThresholdConfig:
    t = Table(data, "threshold", ("kind", "value", "q", "file"))
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


def output(data) -> OutputConfig:
    from kagglekit.kaggle.rle import ORDERS

    t = Table(data, "output", ("sample_submission", "submission", "id_column", "mask_column", "order", "fallback"))
    return OutputConfig(t.string("sample_submission", "sample_submission.csv"), t.string("submission", "submission.csv"),
                        t.string("id_column", None), t.string("mask_column", None), t.string("order", "C", ORDERS),
                        t.string("fallback", ""))


TOP_KEYS = ("kind", "inputs", "tiling", "models", "tta", "preprocess", "normalize", "device", "workers", "threshold",
            "output", "budget", "memory")

VOLUME_NORMALIZE = "volume"
"""``[preprocess] normalize = "volume"``: each image standardised by its own mean and std inside its mask."""


def preprocess_normalize(data) -> object:
    """``[preprocess] normalize``, or the older top-level ``normalize`` (not both); ``"volume"`` as it is."""
    pre = Table(data.get("preprocess", {}), "preprocess", ("normalize",))
    if "normalize" in pre.data and "normalize" in data:
        raise PipelineConfigError("normalize: given both at the top level and in [preprocess]; keep the [preprocess] one")
    value = pre.data.get("normalize", data.get("normalize", "scale"))
    return value if value == VOLUME_NORMALIZE else sections.normalize(value)


def check(data: dict, base: Path) -> SegmentConfig:
    """The SegmentConfig of a TOML's ``data`` (paths relative to ``base``)."""
    top = Table(data, "", TOP_KEYS)
    if "models" not in data:
        raise PipelineConfigError("models: missing; add [[models]] path = \"<checkpoint>.safetensors\"")
    return SegmentConfig(
        models=sections.models(data["models"], base),
        inputs=_inputs(data.get("inputs", {})),
        tiling=_tiling(data.get("tiling", {})),
        tta=sections.tta(data.get("tta", {})),
        normalize=preprocess_normalize(data),
        device=sections.device(top.string("device", "auto")),
        workers=sections.workers(top),
        threshold=_threshold(data.get("threshold", {}), base),
        output=output(data.get("output", {})),
        budget=sections.budget(data.get("budget", {})),
        memory=_memory(data.get("memory", {})),
    )


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
