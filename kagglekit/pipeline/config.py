"""Reading a pipeline configuration: a TOML file or a dict, checked key by key into a SegmentConfig or a
ClassifyConfig by its top-level ``kind`` ("segment", the default, or "classify").

The sections every pipeline shares are in :mod:`kagglekit.pipeline.sections`, each pipeline's own in
:mod:`~kagglekit.pipeline.segment_config` and :mod:`~kagglekit.pipeline.classify_config`, all declared
through :mod:`kagglekit.pipeline.schema`; :func:`reference` renders every key (the README's
"Configuration reference"). Model and other files are relative to the config file's folder (a dict: to
``base_dir``), inputs and the sample submission to the input folder, the submission to the output
folder. :func:`early_output` reads just ``[output]``, leniently, so that the pipeline can write the
fallback submission before the whole file is checked.

A run reads its TOML once: :func:`read_config` returns a :class:`ConfigSource` (the parsed table, or
the error reading it) that :func:`load_config`, :func:`early_output` and :func:`kind_of` take as they
take a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kagglekit.errors import ConfigError
from kagglekit.pipeline import classify_config, segment_config
from kagglekit.pipeline.classify_config import ClassifyConfig
from kagglekit.pipeline.schema import reference_rows
from kagglekit.pipeline.sections import PipelineConfigError, read_toml
from kagglekit.pipeline.segment_config import SegmentConfig, read_threshold_file

__all__ = ["ClassifyConfig", "ConfigSource", "DEFAULT_KIND", "KINDS", "PipelineConfigError", "SegmentConfig",
           "describe", "early_output", "kind_of", "load_config", "read_config", "read_threshold_file", "reference"]

KINDS = {"segment": segment_config, "classify": classify_config}
CLASSES = {"segment": SegmentConfig, "classify": ClassifyConfig}
DEFAULT_KIND = "segment"
_CONFIGS = tuple(CLASSES.values())


@dataclass(frozen=True)
class ConfigSource:
    """A configuration read once: its ``data`` (a dict) or the ``error`` reading it raised, the TOML ``path``
    it came from (None: a dict) and the folder ``base`` its files are relative to."""

    data: dict | None
    base: Path
    path: Path | None = None
    error: str | None = None

    def table(self) -> dict:
        """The data; the reading error (missing file, not TOML) raised again where there was one."""
        if self.error is not None:
            raise PipelineConfigError(self.error)
        return self.data


def read_config(source, base_dir=None):
    """``source`` (a TOML path, a dict, a :class:`ConfigSource` or a checked config) read once: a
    ConfigSource (the checked config is returned as it is). Never raises for a missing or broken file:
    the error is kept for :func:`load_config` to raise, so that the fallback can be written first."""
    if isinstance(source, (ConfigSource, *_CONFIGS)):
        return source
    if isinstance(source, dict):
        return ConfigSource(source, Path(base_dir) if base_dir is not None else Path.cwd())
    if not isinstance(source, (str, Path)):
        raise PipelineConfigError(f"config must be a TOML path, a dict or a checked config, got {type(source).__name__}")
    path = Path(source)
    base = Path(base_dir) if base_dir is not None else path.parent
    try:
        return ConfigSource(read_toml(path), base, path)
    except PipelineConfigError as exc:
        return ConfigSource(None, base, path, str(exc))


def _kind(data: dict) -> str:
    kind = data.get("kind", DEFAULT_KIND)
    if kind not in KINDS:
        raise PipelineConfigError(f"kind: must be one of {list(KINDS)}, got {kind!r}")
    return kind


def load_config(source, base_dir=None, kind: str | None = None):
    """Read and check a configuration: a TOML path, a dict of the same shape, a :class:`ConfigSource` or a
    checked config (returned).

    Relative paths are resolved against ``base_dir`` (default: the TOML's folder, or the current folder
    for a dict). ``kind``: the pipeline that will run it; a config of another kind is refused naming
    the command to use. The result's ``notes`` say which old spellings it used.
    """
    source = read_config(source, base_dir)
    if isinstance(source, _CONFIGS):
        config = source
    else:
        data = source.table()
        try:
            config = KINDS[_kind(data)].check(data, source.base)
        except PipelineConfigError as exc:
            raise PipelineConfigError(f"{source.path}: {exc}" if source.path is not None else str(exc)) from None
    if kind is not None and config.kind != kind:
        raise PipelineConfigError(f"this config is kind = {config.kind!r}; run it with `kagglekit {config.kind}` "
                                  f"(or kagglekit.pipeline.run, which reads the kind), not {kind}")
    return config


def kind_of(source) -> str:
    """The pipeline ``source`` names (its top-level ``kind``), the default when it names none or cannot be read."""
    if isinstance(source, _CONFIGS):
        return source.kind
    try:
        data = read_config(source).table()
    except (ConfigError, TypeError):
        return DEFAULT_KIND
    kind = data.get("kind", DEFAULT_KIND) if isinstance(data, dict) else DEFAULT_KIND
    return kind if kind in KINDS else DEFAULT_KIND


def early_output(source, kind: str = DEFAULT_KIND):
    """The ``[output]`` section of ``source`` (as :func:`load_config` takes it) as far as it can be read:
    the defaults of ``kind`` when the file is missing or not TOML or the section has a mistake. Only for
    writing the fallback submission early; :func:`load_config` reports the mistake itself."""
    if isinstance(source, _CONFIGS):
        return source.output
    try:
        source = read_config(source)
        data = source.table()
        return KINDS[_kind(data)].output(data.get("output", {}), source.base)
    except (ConfigError, TypeError, AttributeError):
        return KINDS[kind].OutputConfig()


def describe(kind: str, key: str) -> str:
    """One key of ``kind`` (dotted: ``"tiling.stride"``, ``"device"``) as a line for ``--check`` and error
    hints: ``tiling.stride (integer >= 1, default -): the step between tiles ...``."""
    for table, name, doc, default, text, _ in reference_rows(CLASSES[kind]):
        prefix = "" if table == "top level" else table.strip("[]") + "."
        if prefix + name == key:
            return f"{key} ({doc}, {default if default == 'required' else 'default ' + default}): {text}"
    raise PipelineConfigError(f"{kind} has no key {key!r}; see kagglekit.pipeline.config.reference()")


def reference(kinds=None) -> str:
    """The Markdown table of every configuration key of ``kinds`` (default: all): table, key, the kinds
    that take it, type, default, help; rendered from the declarations (the README holds this table)."""
    kinds = list(kinds or KINDS)
    rows = {("top level", "kind"): ["top level", "kind", " | ".join(f'"{k}"' for k in KINDS), f'"{DEFAULT_KIND}"',
                                    "the pipeline", list(kinds)]}
    for name in kinds:
        for table, key, doc, default, text, field in reference_rows(CLASSES[name]):
            rows.setdefault((table, key, id(field)), [table, key, doc, default, text, []])[5].append(name)
    order = list(dict.fromkeys(row[0] for row in rows.values()))
    lines = ["| table | key | kinds | type | default | meaning |", "| --- | --- | --- | --- | --- | --- |"]
    for table in order:
        for t, key, doc, default, text, names in rows.values():
            if t == table:
                cells = [t, f"`{key}`", ", ".join(names), doc, default, text]
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    renamed = [f"`{old}` -> `{new}` ({name})" for name in kinds for old, new in CLASSES[name].RENAMED]
    if renamed:
        lines += ["", "Old spellings, still read with a one-line note: " + "; ".join(renamed) + "."]
    return "\n".join(lines) + "\n"
