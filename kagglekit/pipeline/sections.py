"""What every pipeline configuration shares, declared once (see :mod:`.schema`): the TOML reader, the
value checks both kinds use, and the sections and top-level keys that are the same in every kind:
``[[models]]``, ``[tta]``, ``[preprocess] normalize``, ``[memory]``, ``[budget]``, ``[output]`` (its
shared keys), ``device``, ``workers``, ``amp`` and ``threads``. Each kind's own sections are in
:mod:`.segment_config` and :mod:`.classify_config`; the reference table of every key is
:func:`kagglekit.pipeline.config.reference` (the README's "Configuration reference").

Reading a config checks the *syntax* of ``device`` only: :func:`check_device` says whether this machine
has it (a run refuses a device it lacks; ``--check`` notes it), so a Kaggle GPU config can be checked
on a laptop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from kagglekit.errors import ConfigError, KagglekitError
from kagglekit.pipeline.schema import (Boolean, Check, Choice, File, Integer, Invalid, Name, Number, OneOf,
                                       PipelineConfigError, Rule, String, Table, Tables, lazy, option, read_top,
                                       read_section, section)

__all__ = ["BudgetConfig", "MemoryConfig", "ModelConfig", "OutputBase", "PipelineBase", "PipelineConfigError",
           "PreprocessConfig", "TTAConfig", "check_device", "read_toml"]

TTA_MODES = ("merge", "cycle")
NORMALIZE_NAMES = ("scale", "none", "imagenet")


# -- value checks both kinds use -----------------------------------------------------------------------------


class Normalize(Check):
    """``"scale"``, ``"none"``, ``"imagenet"`` or ``{mean = [...], std = [...]}`` (per channel, on the image
    scaled to [0, 1]), held in :func:`kagglekit.infer.sliding_window`'s form; the section's
    ``NORMALIZE_EXTRA`` names are kept as they are (segment's ``"volume"``)."""

    doc = '"scale" | "none" | "imagenet" | {mean, std}'

    def convert(self, value, table):
        from kagglekit.infer.batching import IMAGENET

        if value in NORMALIZE_NAMES:
            return {"scale": "scale", "imagenet": IMAGENET, "none": None}[value]
        if table is not None and isinstance(value, str) and value in getattr(table.cls, "NORMALIZE_EXTRA", ()):
            return value
        names = (*NORMALIZE_NAMES, *getattr(getattr(table, "cls", None), "NORMALIZE_EXTRA", ()))
        raise Invalid(f"must be {', '.join(map(repr, names))} or a table {{mean = [...], std = [...]}}")

    def read(self, value, table: Table, key: str):
        if not isinstance(value, dict):
            return super().read(value, table, key)
        t = Table(value, table.where(key), ("mean", "std"))
        pair = []
        for name in ("mean", "std"):
            v = t.data.get(name)
            if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                t.fail(name, "must be a list of numbers, one per channel (values of the image scaled to [0, 1])")
            if name == "std" and min(v) <= 0:
                t.fail(name, "must be positive")
            pair.append(tuple(float(x) for x in v))
        if len(pair[0]) != len(pair[1]):
            raise PipelineConfigError(f"{t.name}: mean has {len(pair[0])} values but std has {len(pair[1])}")
        return tuple(pair)


def _based(item, table: Table):
    """A view table with its ``reference`` file relative to ``table``'s folder; anything else as it is."""
    if isinstance(item, dict) and isinstance(item.get("reference"), str):
        return {**item, "reference": str(table.base / item["reference"])}
    return item


class Views(Check):
    """TTA views: a subset name (``"d4"``) or a list of view names and tables (``{five_crop = 224}``,
    :mod:`kagglekit.tta.spec`), held as the tuple of views :func:`kagglekit.tta.views` resolves (the
    default: the name ``"identity"``)."""

    doc = '"d4" | [view names, {five_crop | ten_crop | scale | random | random_crop | stain = ...}]'

    def default(self, value):
        return tuple(value)

    def convert(self, value, table):
        from kagglekit.tta import views

        if table is not None:  # a stain view's reference is relative to the config's folder
            value = [_based(v, table) for v in value] if isinstance(value, list) else _based(value, table)
        try:
            return views(value)
        except (KagglekitError, ValueError, TypeError) as exc:  # a stain reference that cannot be read too
            raise PipelineConfigError(f"{table.where('views')}: {exc}") from None


class Device(Check):
    """``"auto"`` or a torch device name; only its syntax (:func:`check_device`: whether this machine has it)."""

    doc = '"auto" | "cpu" | "cuda" | "cuda:N" | "mps"'

    def convert(self, value, table):
        if String().convert(value, table) != "auto":
            import torch

            try:
                torch.device(value)
            except (RuntimeError, ValueError) as exc:
                raise PipelineConfigError(f"device: {value!r} is not a torch device ({exc}); use 'auto', 'cpu', "
                                          "'cuda' or 'cuda:N'") from None
        return value


THREADS = Rule('integer >= 1 | "auto"', (lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                                         "must be an integer >= 1 (torch threads for the CPU-side work) or 'auto'"))
"""``threads``: a top-level key beside ``device``, ``workers`` and ``amp``, the other settings of how a run uses
the machine (the config has no ``[runtime]`` section, and one key would not make one)."""

WORKERS = Rule('integer >= 1 | "gpus"', (lambda v: v == "gpus" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                                         "must be an integer >= 1 or 'gpus' (one worker process per GPU)"))


class Relative(Name):
    """A non-empty file pattern relative to the competition folder (``what``: an example)."""

    doc = "pattern"

    def accepts(self, value: str) -> bool:
        return bool(value) and not Path(value).is_absolute()

    def refusal(self) -> str:
        return f"must be a non-empty pattern relative to the competition folder, e.g. {self.what!r}"


_PREDICTION = "kagglekit.pipeline.prediction_column"

ID_FROM = Choice("stem", "parent")
"""``inputs.id_from``: the image's id is its file's stem or its folder's name."""


# -- the shared sections -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    path: Path = option(check=File("a checkpoint written by kagglekit.models.save_checkpoint"),
                        help="a checkpoint, relative to the config's folder")
    weight: float = option(1.0, check=Number(0.0, open_low=True), help="its weight in the ensemble's mean")
    variant: str | None = option(None, check=String(), help="with classify's [stack]: the first-level model this "
                                                            "checkpoint is a fold of (its folds' mean is one input)")


@dataclass(frozen=True, kw_only=True)
class TTAConfig:
    views: tuple = option(["identity"], check=Views(), help="test-time views (kagglekit.tta.views); crops, scales, "
                                                            "random and stain views have no inverse: classify only")
    mode: str = option("merge", check=Choice(*TTA_MODES),
                       help="merge: every view of every input; cycle: one view per window, in turn (segment)")
    merge: str = option("mean", check=String(lazy("kagglekit.tta", "MODES")), help="how the views' outputs are merged")


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """``[preprocess]``: what both kinds take; a kind's subclass adds its keys and ``NORMALIZE_EXTRA``."""

    NORMALIZE_EXTRA: ClassVar[tuple[str, ...]] = ()
    normalize: object = option("scale", check=Normalize(),
                               help='the models\' input normalisation ("scale": to [0, 1]; segment also "volume": '
                                    "each volume by its own mean and std inside its mask)")


@dataclass(frozen=True, kw_only=True)
class MemoryConfig:
    max_resident: int | None = option(None, check=Integer(), help="at most N models on the device at once (none: all; segment only for now)")
    offload: str = option("cpu", check=Choice("cpu", "disk"),
                          help="where the other models wait: in host memory, or re-read from their checkpoints")
    fp16: bool = option(False, check=Boolean(), help="weights in half precision on CUDA, run with fp16 autocast (segment only for now)")


@dataclass(frozen=True, kw_only=True)
class BudgetConfig:
    seconds: float = option(30600.0, check=Number(0.0, open_low=True),
                            help="the run's time budget (8.5 h of the kernel's 9)")
    reserve: float = option(600.0, check=Number(0.0), help="seconds kept for writing the submission")

    def validate(self, t: Table) -> None:
        if self.reserve >= self.seconds:
            t.fail("reserve", f"must be less than budget.seconds ({self.seconds})")


def prediction_column(what: str):
    """``[output]``'s key of the prediction column (a kind's own name for it: ``mask_column``, ``label_column``)."""
    declared = option(None, check=String(), help=f"the {what} column (default: the sample's second)")
    return dataclasses.field(default=None, metadata={**declared.metadata, _PREDICTION: True})


@dataclass(frozen=True, kw_only=True)
class OutputBase:
    """The ``[output]`` keys both pipelines take; a subclass declares its prediction column with
    :func:`prediction_column`."""

    sample_submission: str = option("sample_submission.csv", check=String(),
                                    help="the sample submission, relative to the input folder")
    submission: str = option("submission.csv", check=String(), help="the submission, relative to the output folder")
    id_column: str | None = option(None, check=String(), help="the id column (default: the sample's first)")

    @classmethod
    def value_key(cls) -> str:
        """The key of the prediction column."""
        return next(f.name for f in dataclasses.fields(cls) if f.metadata.get(_PREDICTION))

    def columns(self, reference) -> tuple[str, str | None]:
        """(id column, prediction column) of the sample as named here, the defaults (first column, next one)
        where no name or one the sample lacks is given: enough to write the fallback; :meth:`check_columns`
        refuses the wrong name afterwards."""
        columns = reference.columns
        id_column = self.id_column if self.id_column in columns else columns[0]
        others = [c for c in columns if c != id_column]
        value = getattr(self, self.value_key())
        return id_column, value if value in others else (others[0] if others else None)

    def check_columns(self, reference, sample: Path) -> None:
        """Refuse a configured column the sample lacks, or a sample with only one column."""
        columns = reference.columns
        for key in ("id_column", self.value_key()):
            name = getattr(self, key)
            if name is not None and name not in columns:
                raise PipelineConfigError(f"output.{key}: {name!r} is not a column of {sample} ({columns})")
        if len(columns) < 2:
            raise PipelineConfigError(f"{sample} has only the column {columns}; a submission needs an id and a prediction column")


AMP = OneOf((False, True, "auto", "fp16", "bf16"), "must be false, true, 'auto', 'fp16' or 'bf16'")


@dataclass(frozen=True, kw_only=True)
class PipelineBase:
    """The top level every kind shares. ``RENAMED``: (old dotted key, new dotted key) of old spellings that
    still work, each with a one-line note in ``notes`` (not a TOML key)."""

    EXTRA_KEYS: ClassVar[tuple[str, ...]] = ("kind",)  # read by kagglekit.pipeline.config
    RENAMED: ClassVar[tuple[tuple[str, str], ...]] = ()
    models: tuple[ModelConfig, ...] = option(check=Tables(ModelConfig, "checkpoint", '[[models]] path = "fold0.safetensors"'),
                                             help="one table per checkpoint")
    tta: TTAConfig = section(TTAConfig, help="test-time augmentation")
    budget: BudgetConfig = section(BudgetConfig, help="the time budget")
    memory: MemoryConfig = section(MemoryConfig, help="models on the device")
    device: str = option("auto", check=Device(), help='where the models run ("auto": the GPU when there is one, else the CPU)')
    workers: int | str = option(1, check=WORKERS,
                                help='1: this process; N: N processes; "gpus": a worker process per GPU')
    amp: object = option(False, check=AMP, help="autocast: false (float32), true / \"auto\" (fp16 on CUDA, bf16 on CPU), "
                                                "\"fp16\", \"bf16\"")
    threads: int | str = option("auto", check=THREADS,
                                help='torch threads on the CPU ("auto": kagglekit\'s own steps on one, each model\'s forward in '
                                     "a slice of the batch per core, one thread each, as many at once as other processes leave cores "
                                     "free; N: kagglekit's steps on N threads, N slices at once; the same outputs either way)")
    notes: tuple[str, ...] = field(default=(), compare=False)


def check_device(value: str) -> None:
    """Raise :class:`PipelineConfigError` when this machine lacks ``device`` (a checked config value):
    no CUDA device, no CUDA device of that index, no MPS. ``"auto"`` and ``"cpu"`` always pass."""
    if value in ("auto", "cpu"):
        return
    import torch

    device = torch.device(value)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise PipelineConfigError(f"device: {value!r}, but this machine has no CUDA device; use device = 'auto' "
                                      "(the GPU when there is one, else the CPU), or turn the kernel's GPU accelerator on")
        if device.index is not None and device.index >= count:
            raise PipelineConfigError(f"device: {value!r}, but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PipelineConfigError(f"device: {value!r}, but MPS is not available here; use device = 'auto'")


def read_toml(path: Path) -> dict:
    from kagglekit._toml import tomllib

    if not path.is_file():
        raise PipelineConfigError(f"pipeline config {path} not found; attach the dataset that holds it or fix the path")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a BOM from a Windows editor is skipped
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"{path} is not valid TOML: {exc}") from None
