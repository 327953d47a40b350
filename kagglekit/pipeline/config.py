"""Reading a pipeline configuration: a TOML file or a dict, checked key by key into a SegmentConfig or a
ClassifyConfig by its top-level ``kind`` ("segment", the default, or "classify").

The sections every pipeline shares are in :mod:`kagglekit.pipeline.sections`, each pipeline's own in
:mod:`~kagglekit.pipeline.segment_config` and :mod:`~kagglekit.pipeline.classify_config`. Model and
other files are relative to the config file's folder (a dict: to ``base_dir``), inputs and the sample
submission to the input folder, the submission to the output folder. :func:`early_output` reads just
``[output]``, leniently, so that the pipeline can write the fallback submission before the whole file
is checked.
"""

from __future__ import annotations

from pathlib import Path

from kagglekit.errors import ConfigError
from kagglekit.pipeline import classify_config, segment_config
from kagglekit.pipeline.classify_config import ClassifyConfig
from kagglekit.pipeline.sections import PipelineConfigError, read_toml
from kagglekit.pipeline.segment_config import SegmentConfig, read_threshold_file

__all__ = ["ClassifyConfig", "KINDS", "PipelineConfigError", "SegmentConfig", "early_output", "kind_of", "load_config",
           "read_threshold_file"]

KINDS = {"segment": segment_config, "classify": classify_config}
_CONFIGS = (SegmentConfig, ClassifyConfig)


def _kind(data: dict) -> str:
    kind = data.get("kind", "segment")
    if kind not in KINDS:
        raise PipelineConfigError(f"kind: must be one of {list(KINDS)}, got {kind!r}")
    return kind


def load_config(source, base_dir=None, kind: str | None = None):
    """Read and check a configuration: a TOML path, a dict of the same shape, or a checked config (returned).

    Relative paths are resolved against ``base_dir`` (default: the TOML's folder, or the current folder
    for a dict). ``kind``: the pipeline that will run it; a config of another kind is refused naming
    the command to use.
    """
    if isinstance(source, _CONFIGS):
        config = source
    elif isinstance(source, dict):
        config = KINDS[_kind(source)].check(source, Path(base_dir) if base_dir is not None else Path.cwd())
    elif isinstance(source, (str, Path)):
        path = Path(source)
        data = read_toml(path)
        try:
            config = KINDS[_kind(data)].check(data, Path(base_dir) if base_dir is not None else path.parent)
        except PipelineConfigError as exc:
            raise PipelineConfigError(f"{path}: {exc}") from None
    else:
        raise PipelineConfigError(f"config must be a TOML path, a dict or a checked config, got {type(source).__name__}")
    if kind is not None and config.kind != kind:
        raise PipelineConfigError(f"this config is kind = {config.kind!r}; run it with `kagglekit {config.kind}` "
                                  f"(or kagglekit.pipeline.run, which reads the kind), not {kind}")
    return config


def kind_of(source) -> str:
    """The pipeline ``source`` names (its top-level ``kind``), "segment" when it names none or cannot be read."""
    if isinstance(source, _CONFIGS):
        return source.kind
    try:
        data = source if isinstance(source, dict) else read_toml(Path(source))
    except (ConfigError, TypeError):
        return "segment"
    kind = data.get("kind", "segment")
    return kind if kind in KINDS else "segment"


def early_output(source, kind: str = "segment"):
    """The ``[output]`` section of ``source`` (as :func:`load_config` takes it) as far as it can be read:
    the defaults of ``kind`` when the file is missing or not TOML or the section has a mistake. Only for
    writing the fallback submission early; :func:`load_config` reports the mistake itself."""
    if isinstance(source, _CONFIGS):
        return source.output
    try:
        data = source if isinstance(source, dict) else read_toml(Path(source))
        return KINDS[_kind(data)].output(data.get("output", {}))
    except (ConfigError, TypeError, AttributeError):
        return KINDS[kind].OutputConfig()
