"""The segmentation pipeline's configuration: its own sections (``[inputs]``, ``[tiling]``,
``[threshold]``, its ``[output]`` keys, ``normalize = "volume"``) on the shared ones of
:mod:`.sections`. Every key, its type, default and meaning: :func:`kagglekit.pipeline.config.reference`.

Old spellings that still work, each with a one-line note: top-level ``normalize`` (now
``[preprocess] normalize``) and ``[tiling] batch_size`` (now the top-level ``batch_size``).

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
from kagglekit.pipeline.schema import (Boolean, Check, Choice, File, Integer, Invalid, Number, PipelineConfigError, String,
                                       Table, lazy, option, section)
from kagglekit.pipeline.inputs import PatternInputs
from kagglekit.pipeline.sections import ID_FROM, OutputBase, PipelineBase, PreprocessConfig, Relative, prediction_column

__all__ = ["SegmentConfig", "read_threshold_file"]

THRESHOLD_KINDS = ("fixed", "percentile", "file")
VOLUME_NORMALIZE = "volume"
"""``[preprocess] normalize = "volume"``: each image standardised by its own mean and std inside its mask."""


class SliceRange(Check):
    """``inputs.z``: ``[start, stop]`` (held as a tuple) or ``"middle:N"``."""

    doc = '[start, stop] | "middle:N"'

    def convert(self, value, table):
        if isinstance(value, str):
            from kagglekit.io.volume import middle_count

            try:
                middle_count(value)
            except InvalidArgumentError:
                raise Invalid("as a string must be 'middle:N' (the N middle slices), e.g. 'middle:16'") from None
            return value
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value) or not 0 <= value[0] < value[1]):
            raise Invalid("must be [start, stop] with 0 <= start < stop (slices start..stop-1), or 'middle:N'")
        return (value[0], value[1])


class Glob(Relative):
    def convert(self, value, table):
        value = super().convert(value, table)
        if any("**" in part and part != "**" for part in value.split("/")):
            raise Invalid("may hold '**' only as a whole path part, as in 'test/**/*.tif'")
        return value


class MaskPattern(Relative):
    def convert(self, value, table):
        value = super().convert(value, table)
        try:
            value.format(id="x")
        except (KeyError, IndexError, ValueError):
            raise Invalid("may hold only the placeholder {id} (the image's id), e.g. 'test/{id}/mask.png'") from None
        if "{id}" not in value:
            raise Invalid("must hold {id}, the image's id, e.g. 'test/{id}/mask.png' or 'masks/{id}.png'")
        return value


@dataclass(frozen=True, kw_only=True)
class InputsConfig(PatternInputs):
    glob: str = option("test/*", check=Glob("test/*.png"), help="the input files, relative to the input folder")
    kind: str = option("image", check=Choice("image", "volume"), help="an image, or a volume (TIFF pages or a folder of slices)")
    z: tuple[int, int] | str | None = option(None, check=SliceRange(), help="a volume's slices (none: all)")
    id_from: str = option("stem", check=ID_FROM, help="the image's id: its file's stem or its folder's name")
    mask: str | None = option(None, check=MaskPattern("test/{id}/mask.png"),
                              help="a per-image mask: tiles only where it is set, 0 outside")

    def validate(self, t: Table) -> None:
        self.check_files(t)
        if self.z is not None and self.kind != "volume":
            t.fail("z", "is a slice range [start, stop) or 'middle:N' for kind = 'volume' only")

    def z_selection(self):
        """``z`` as :func:`kagglekit.io.open_volume` takes it: a slice, ``"middle:N"`` or None (all slices)."""
        return slice(*self.z) if isinstance(self.z, tuple) else self.z

    def mask_path(self, input_dir: Path, image_id: str) -> Path | None:
        """The mask file of ``image_id`` (None: no mask configured)."""
        return input_dir / self.mask.format(id=image_id) if self.mask else None


@dataclass(frozen=True, kw_only=True)
class SegmentPreprocess(PreprocessConfig):
    NORMALIZE_EXTRA: ClassVar[tuple[str, ...]] = (VOLUME_NORMALIZE,)


@dataclass(frozen=True, kw_only=True)
class TilingConfig:
    tile: int = option(512, check=Integer(), help="the tile side the models see")
    stride: int | None = option(None, check=Integer(), help="the step between tiles (none: the tile, no overlap)")
    window: str = option("gaussian", check=String(lazy("kagglekit.tiling", "WINDOWS")), help="how overlapping tiles blend")
    margin: int = option(0, check=Integer(0), help="each tile's border that is dropped (inner crop)")
    tissue_only: bool = option(False, check=Boolean(), help="tiles only on tissue (a mask on a thumbnail)")
    thumbnail: int = option(1024, check=Integer(16), help="the tissue thumbnail's longer side")
    min_tissue: float = option(0.05, check=Number(0.0, 1.0), help="the tissue (or mask) fraction a tile needs to run")

    def validate(self, t: Table) -> None:
        tile, stride, margin = self.tile, self.stride, self.margin
        if 2 * margin >= tile:
            t.fail("margin", f"must be less than half the tile ({tile})")
        if (stride or tile) > tile - 2 * margin:
            t.fail("stride", f"must be <= tile - 2 * margin ({tile - 2 * margin}) so that the tiles' inner parts cover "
                             f"every pixel (stride {stride or tile}{' is the tile: the default' if stride is None else ''})")


@dataclass(frozen=True, kw_only=True)
class ThresholdConfig:
    kind: str = option("fixed", check=Choice(*THRESHOLD_KINDS),
                       help="fixed (value), percentile (q of each image's pixels) or file (file)")
    value: float = option(0.5, check=Number(0.0, 1.0), help="the probability cut of kind = \"fixed\"")
    q: float | None = option(None, check=Number(0.0, 1.0), help="the fraction of kind = \"percentile\"")
    file: Path | None = option(None, check=File('a file holding the threshold, e.g. "threshold.json"'),
                               help='of kind = "file": {"threshold": 0.42} or a bare number')

    def validate(self, t: Table) -> None:
        needs = {"fixed": "value", "percentile": "q", "file": "file"}[self.kind]
        if needs not in t.data and self.kind != "fixed":
            t.fail(needs, f"is required for kind = {self.kind!r}")
        extra = sorted(set(t.data) - {"kind", needs})
        if extra:
            t.fail(extra[0], f"is not used by kind = {self.kind!r} (it uses {needs!r})")


@dataclass(frozen=True, kw_only=True)
class OutputConfig(OutputBase):
    mask_column: str | None = prediction_column("mask")
    order: str = option("C", check=String(lazy("kagglekit.kaggle.rle", "ORDERS")), help="RLE pixel order (F: column-major)")
    fallback: str = option("", check=String(), help="the mask of a row that falls back (RLE)")
    probabilities: str | None = option(None, check=Relative("probabilities"),
                                       help="a folder under the output folder for each image's probability map "
                                            "(<id>.npy, float32 (H, W) at the input's size; 0 where no tile ran)")

    def fill(self, reference) -> dict:
        """The fallback's replaced columns: the mask column set to ``fallback``."""
        mask_column = self.columns(reference)[1]
        return {mask_column: self.fallback} if mask_column else {}


@dataclass(frozen=True, kw_only=True)
class SegmentConfig(PipelineBase):
    """The checked configuration; ``preprocess.normalize`` is in :func:`kagglekit.infer.sliding_window`'s form."""

    RENAMED: ClassVar[tuple[tuple[str, str], ...]] = (("normalize", "preprocess.normalize"), ("tiling.batch_size", "batch_size"))
    inputs: InputsConfig = section(InputsConfig, help="the test images")
    preprocess: SegmentPreprocess = section(SegmentPreprocess, help="the models' input")
    batch_size: int = option(8, check=Integer(), help="tiles per model call")
    tiling: TilingConfig = section(TilingConfig, help="the sliding window")
    threshold: ThresholdConfig = section(ThresholdConfig, help="probability -> mask")
    output: OutputConfig = section(OutputConfig, help="the submission")
    kind: str = field(default="segment", init=False)

    def validate(self, t: Table) -> None:
        if self.memory.fp16 and self.amp == "bf16":
            t.fail("amp", "is bfloat16 autocast, but [memory] fp16 = true holds float16 weights; drop one of them")
        varied = [k for k, m in enumerate(self.models) if m.variant is not None]
        if varied:
            raise PipelineConfigError(f"models[{varied[0]}].variant: groups folds for classify's [stack]; segment "
                                      "averages every model by weight: remove variant")
        self._check_views()

    def _check_views(self) -> None:
        """Dense outputs take views with an inverse only (the default, names, are D4 views: no torch to load)."""
        if all(isinstance(v, str) for v in self.tta.views):
            return
        from kagglekit.tta import checked_views

        try:
            checked_views(self.tta.views, "segment", dense=True)
        except InvalidArgumentError as exc:
            raise PipelineConfigError(f"tta.views: {exc}") from None



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
