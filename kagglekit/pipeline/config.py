"""Reading a pipeline configuration: a TOML file or a dict, checked key by key by the reader of the kind its
top-level ``kind`` names (:mod:`kagglekit.pipeline.kind`: "segment", the default, "classify", or a
registered kind).

The sections every pipeline shares are in :mod:`kagglekit.pipeline.sections`, each pipeline's own in
:mod:`~kagglekit.pipeline.segment_config` and :mod:`~kagglekit.pipeline.classify_config`. Model and
other files are relative to the config file's folder (a dict: to ``base_dir``), inputs and the sample
submission to the input folder, the submission to the output folder. Every section is declared through
:mod:`kagglekit.pipeline.schema`; :func:`reference` renders every key (the README's "Configuration
reference"). A run reads its TOML once (:func:`read_config`, a :class:`ConfigSource` that
:func:`load_config`, :func:`early_output` and :func:`kind_of` take as they take a path);
:func:`early_output` reads just ``[output]``, leniently, so that the pipeline can write the fallback
submission before the whole file is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kagglekit.errors import ConfigError
from kagglekit.pipeline.classify_config import ClassifyConfig
from kagglekit.pipeline.schema import reference_rows
from kagglekit.pipeline.sections import PipelineConfigError, read_toml
from kagglekit.pipeline.segment_config import SegmentConfig, read_threshold_file

__all__ = ["ClassifyConfig", "ConfigSource", "PipelineConfigError", "SegmentConfig", "describe", "early_output", "kind_of",
           "load_config", "read_config", "read_threshold_file", "reference"]

CLASSES = {"segment": SegmentConfig, "classify": ClassifyConfig}
"""The config classes of the built-in kinds (``slides`` is classify with ``[slides]``), for the reference table."""


@dataclass(frozen=True)
class ConfigSource:
    """A config as a run holds it, read once: the TOML's ``data`` (None for an already checked ``checked``
    config), the folder its relative paths start from, and the file's ``path`` (None for a dict) that
    errors are prefixed with. ``error``: why the file could not be read, raised by :func:`load_config`."""

    data: dict | None
    base: Path
    path: Path | None = None
    checked: object = None
    error: ConfigError | None = None


def read_config(source, base_dir=None) -> ConfigSource:
    """``source`` (a TOML path, a dict or a checked config) read once; a file that cannot be read is kept
    as its error, so that the fallback can still be written before it is raised."""
    if isinstance(source, ConfigSource):
        return source
    base = Path(base_dir) if base_dir is not None else None
    if isinstance(source, dict):
        return ConfigSource(source, base or Path.cwd())
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            return ConfigSource(read_toml(path), base or path.parent, path)
        except ConfigError as exc:
            return ConfigSource(None, base or path.parent, path, error=exc)
    if hasattr(source, "output") and hasattr(source, "kind"):
        return ConfigSource(None, base or Path.cwd(), checked=source)
    raise PipelineConfigError(f"config must be a TOML path, a dict or a checked config, got {type(source).__name__}")


def kind_of(source, base_dir=None):
    """The :class:`~kagglekit.pipeline.kind.PipelineKind` ``source`` asks for; the default kind when it names
    none or cannot be read (its error comes from :func:`load_config`)."""
    from kagglekit.pipeline.kind import DEFAULT_KIND, get_kind, kind_for

    src = read_config(source, base_dir)
    if src.checked is not None:
        return get_kind(src.checked.kind)
    try:
        return kind_for(src.data) if src.data is not None else get_kind(DEFAULT_KIND)
    except PipelineConfigError:
        return get_kind(DEFAULT_KIND)


def load_config(source, base_dir=None, kind=None):
    """Read and check a configuration: a TOML path, a dict of the same shape, or a checked config (returned).

    Relative paths are resolved against ``base_dir`` (default: the TOML's folder, or the current folder
    for a dict). ``kind``: the command that will run it (a name), or the
    :class:`~kagglekit.pipeline.kind.PipelineKind` itself, whose reader then reads a config that names
    it, registered in this process or not (a worker's); a config of another kind is refused naming the
    command to use.
    """
    from kagglekit.pipeline.kind import DEFAULT_KIND, PipelineKind, get_kind, kind_for

    src = read_config(source, base_dir)
    if src.error is not None:
        raise src.error
    given = kind if isinstance(kind, PipelineKind) else None
    named = src.checked.kind if src.checked is not None else src.data.get("kind", DEFAULT_KIND)
    pipeline = given if given is not None and named in (given.name, given.command) else None
    try:
        pipeline = pipeline or (get_kind(named) if src.checked is not None else kind_for(src.data))
        config = src.checked if src.checked is not None else pipeline.read_config(src.data, src.base)
    except PipelineConfigError as exc:
        raise (PipelineConfigError(f"{src.path}: {exc}") if src.path is not None else exc) from None
    command = given.command if given is not None else kind
    if command is not None and pipeline.command != command:
        raise PipelineConfigError(f"this config is kind = {pipeline.command!r}; run it with `kagglekit {pipeline.command}` "
                                  f"(or kagglekit.pipeline.run, which reads the kind), not {command}")
    return config


def early_output(source, kind=None):
    """The ``[output]`` section of ``source`` (as :func:`load_config` takes it) as far as it can be read:
    the defaults of ``kind`` (a PipelineKind; default: the one ``source`` asks for) when the file is
    missing or not TOML or the section has a mistake. Only for writing the fallback submission early;
    :func:`load_config` reports the mistake itself."""
    src = read_config(source)
    if src.checked is not None:
        return src.checked.output
    kind = kind or kind_of(src)
    try:
        return kind.read_output(src.data.get("output", {}), src.base)
    except (ConfigError, TypeError, AttributeError):
        return kind.default_output()


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
    kinds = list(kinds or CLASSES)
    rows = {("top level", "kind"): ["top level", "kind", " | ".join(f'"{k}"' for k in CLASSES), '"segment"',
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
