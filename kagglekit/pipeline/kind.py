"""A pipeline kind is one object: a small base with a handful of hooks, and the registry every entry point reads.

    class Count(PipelineKind):                            # one number per image, say
        name, help = "count", "one number per image"
        config_type = CountConfig                         # declared (kagglekit.pipeline.schema)
        def plan(self, run, pending, report, state): ...  # Plan(predict, degrader, units, cost) or None
    register(Count())

The execute template (:func:`kagglekit.pipeline.execute.execute`) runs any kind: the fallback file first,
the budget, the ids split over workers, missing inputs, "no usable model", degradation, a fallback row
per failed unit, the report. Config loading, dispatch (``kagglekit.pipeline.run``), ``check``, the
workers, the CLI (one command per kind) and the notebook all read :func:`get_kind` / :func:`kinds`;
an unknown kind is one clear :class:`~kagglekit.pipeline.sections.PipelineConfigError` everywhere.

A *variant* (``variant_of = "classify"``) shares its base kind's config and CLI command and is chosen
when its :meth:`PipelineKind.claims` the config's data: ``slides`` is classify with a ``[slides]``
section. Built-in kinds are imported on first use, so ``import kagglekit.pipeline`` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from kagglekit.pipeline.loop import RunReport
from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["PipelineKind", "Plan", "get_kind", "kind_for", "kinds", "register", "unregister"]

DEFAULT_KIND = "segment"


@dataclass
class Plan:
    """What a kind hands the template once its models are ready: ``predict(ids, payload) -> (failed, detail)``
    per unit (see :func:`~kagglekit.pipeline.loop.run_items`), the ``degrader`` it reads its current
    views/models from, the ``units`` ``[(ids, payload)]`` and their ``cost`` (pixels, images: what the
    budget projects from), named ``unit`` in the log."""

    predict: Callable
    degrader: object
    units: list
    cost: list
    unit: str = "image"


class PipelineKind:
    """The hooks a pipeline kind gives the execute template. Subclass, set the class attributes (``name``,
    ``help``, the declared ``config_type``), implement :meth:`plan`, and :func:`register` an instance.

    The checked config a kind reads must carry ``output`` (an ``OutputBase``: sample_submission,
    submission, ``columns``, ``fill``, ``check_columns``), ``device``, ``workers`` and ``budget``;
    the default :meth:`find_inputs` reads ``inputs.files`` or ``inputs.glob`` and ``inputs.id_from``
    (:func:`kagglekit.pipeline.inputs.locate`).
    """

    name: ClassVar[str]
    help: ClassVar[str] = ""
    variant_of: ClassVar[str | None] = None
    report_type: ClassVar[type[RunReport]] = RunReport
    config_type: ClassVar[type]
    """The kind's config, a class declared through :mod:`kagglekit.pipeline.schema` (e.g. on
    :class:`~kagglekit.pipeline.sections.PipelineBase`) with an ``output`` section."""

    @property
    def example(self) -> str:
        """The command line of ``kagglekit <command> --help``."""
        return f"kagglekit {self.command} models/{self.command}.toml --input /kaggle/input/comp --output /kaggle/working"

    @property
    def command(self) -> str:
        """The config ``kind`` and the CLI command that run this kind (a variant's: its base's)."""
        return self.variant_of or self.name

    def claims(self, data: dict) -> bool:
        """For a variant: whether the config's raw ``data`` asks for it rather than its base kind."""
        return False

    def read_config(self, data: dict, base: Path):
        """The checked config of a TOML's ``data`` (paths relative to ``base``); mistakes raise PipelineConfigError."""
        from kagglekit.pipeline.schema import read_top

        return read_top(self.config_type, data, base)

    def read_output(self, data: dict, base: Path | None = None):
        """The ``[output]`` section alone (``data`` is that section): enough to write the fallback early."""
        from kagglekit.pipeline.schema import declared, read_section

        output_type = next(d.section for f, d in declared(self.config_type) if f.name == "output")
        return read_section(output_type, data, "output", base)

    def default_output(self):
        """The ``[output]`` defaults, for a config that cannot be read at all."""
        return self.read_output({})

    def new_report(self, run) -> RunReport:
        """The report of a run (``run``: :class:`~kagglekit.pipeline.loop.Started`)."""
        return self.report_type(run.guard.path, run.id_column, device=str(run.device), events=list(run.config_notes),
                                kind=self.name)

    def prepare(self, run, report):
        """Read what the run needs before its inputs (a threshold or decision file): its mistakes raise
        with the fallback on disk. Returned as ``state`` to :meth:`plan`."""
        return None

    def find_inputs(self, cfg, input_dir: Path, ids: list[str], report, sample=None) -> tuple[dict, str]:
        """(input per id, where they were looked for); ids without one get a fallback reason in ``report``."""
        from kagglekit.pipeline.inputs import locate

        return locate(cfg.inputs, input_dir, ids, report, sample)

    def plan(self, run, pending: list[tuple[str, object]], report, state) -> Plan | None:
        """Load the models for ``pending`` ``[(id, input)]`` and return the :class:`Plan`, or None when no
        model can run (the template gives each pending id without a reason "no usable model")."""
        raise NotImplementedError

    def finish(self, run, report) -> None:
        """After the units ran: a last note on the whole run, if any."""

    def preview(self, report, output_dir: Path) -> Path:
        """Save a picture of a run's predictions in ``output_dir`` and return its path (called when something
        was predicted). Default: the first 12 predicted inputs with their written value, ``predictions.png``."""
        from kagglekit.pipeline.preview import labelled_grid, written_values
        from kagglekit.tiling import save_png

        values = written_values(report, report.predicted[:12])
        path = output_dir / "predictions.png"
        save_png(path, labelled_grid([(self.preview_image(report.inputs[i]), v) for i, v in values.items()]))
        return path

    def preview_image(self, item):
        """What :meth:`preview` draws of an input: the input itself (a path, or a tuple of channel files)."""
        return item

    def checked_files(self, cfg) -> list[tuple[str, Callable[[], str]]]:
        """For ``--check``: (what, read it) of the files besides checkpoints; a read raises KagglekitError."""
        return []

    def check_inputs(self, cfg, input_dir: Path, found: dict) -> list[tuple[bool, str]]:
        """For ``--check``: (ok, line) about the inputs found, beyond their count (e.g. their masks)."""
        return []


_BUILTIN = {"segment": "kagglekit.pipeline.segmentation:Segment",
            "classify": "kagglekit.pipeline.classification:Classify",
            "slides": "kagglekit.pipeline.slides:Slides"}
_REGISTERED: dict[str, PipelineKind] = {}


def register(kind: PipelineKind) -> PipelineKind:
    """Add ``kind`` to the registry (replacing one of the same name) and return it. A kind that
    ``workers`` will run must be defined in an importable module (not ``__main__``)."""
    if not isinstance(kind, PipelineKind) or not getattr(kind, "name", None):
        raise TypeError(f"register takes a PipelineKind instance with a name, got {kind!r}")
    _REGISTERED[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove the registered kind ``name`` (a built-in comes back on its next use)."""
    _REGISTERED.pop(name, None)


def kinds() -> list[str]:
    """Every kind's name: the built-ins, then the registered ones."""
    return list(dict.fromkeys([*_BUILTIN, *_REGISTERED]))


def get_kind(name: str) -> PipelineKind:
    """The kind called ``name``; an unknown name is a PipelineConfigError listing the known ones."""
    if name not in _REGISTERED and name in _BUILTIN:
        module, attribute = _BUILTIN[name].split(":")
        register(getattr(importlib.import_module(module), attribute)())
    if name not in _REGISTERED:
        raise PipelineConfigError(f"kind: must be one of {kinds()}, got {name!r}")
    return _REGISTERED[name]


def kind_for(data: dict) -> PipelineKind:
    """The kind a config's raw ``data`` asks for: its ``kind`` (default "segment"), or the variant that claims it."""
    name = data.get("kind", DEFAULT_KIND) if isinstance(data, dict) else None
    if not isinstance(name, str):
        raise PipelineConfigError(f"kind: must be one of {kinds()}, got {name!r}")
    base = get_kind(name)
    for other in kinds():
        variant = get_kind(other) if other != name else None
        if variant is not None and variant.variant_of == base.name and variant.claims(data):
            return variant
    return base
