"""``kagglekit <kind> --check``: a config and every file it names, checked without running a model or
writing anything."""

from __future__ import annotations

from pathlib import Path

from kagglekit.errors import KagglekitError

__all__ = ["check"]


def check(config, input_dir=None, *, base_dir=None) -> list[tuple[bool, str]]:
    """Check a configuration (of any kind) and its files without running a model; return ``(ok, line)`` pairs.

    A mistake in the configuration itself raises :class:`~kagglekit.pipeline.config.PipelineConfigError`.
    Then: the device (one this machine lacks is a note, so that a Kaggle GPU config can be checked on a
    laptop), the sample submission and its columns, the kind's own files (threshold, decision or
    classes file, slide backbone), each checkpoint (header, checksum, input channels and class names,
    the same for every model), which ids have an input, and what the kind checks of them (segment with
    ``inputs.mask``: their masks). A line with ``ok`` False names what a run would refuse, skip or leave
    as a fallback row. Reads each checkpoint once; builds no model.
    """
    from kagglekit.kaggle.env import input_dir as default_input
    from kagglekit.pipeline.config import kind_of, load_config, read_config

    source = read_config(config, base_dir)
    cfg, kind = load_config(source), kind_of(source)
    input_dir = Path(input_dir) if input_dir is not None else default_input()
    views = len(cfg.tta.views) if hasattr(cfg, "tta") else 1
    lines = [(True, f"config: kind {kind.name}, {len(getattr(cfg, 'models', ()))} model(s), {views} TTA view(s)"),
             _device_line(cfg.device)]
    lines += [(True, f"note: {n}") for n in getattr(cfg, "notes", ())]

    def attempt(what: str, action) -> None:
        try:
            lines.append((True, f"{what}: {action()}"))
        except KagglekitError as exc:
            lines.append((False, f"{what}: {exc}"))

    ids = []
    attempt("sample submission", lambda: _sample_rows(cfg, input_dir, ids))
    for what, action in kind.checked_files(cfg):
        attempt(what, action)
    lines += _model_lines(cfg, attempt)
    if ids:
        try:
            found, where = kind.find_inputs(cfg, input_dir, ids, kind.report_type(Path()))
        except KagglekitError as exc:
            return [*lines, (False, f"inputs: {exc}")]
        missing = [i for i in ids if i not in found]
        lines.append((not missing, f"inputs: {len(found)} of {len(ids)} ids have an input {where}"
                                   + (f"; without an input: {missing[:5]}" if missing else "")))
        lines += kind.check_inputs(cfg, input_dir, found)
    return lines


def _device_line(device: str) -> tuple[bool, str]:
    """The device the config asks for; one this machine lacks is a note (it is an error when a run starts)."""
    from kagglekit.infer.batching import resolve_device
    from kagglekit.pipeline.sections import check_device

    try:
        check_device(device)
    except KagglekitError as exc:
        return True, f"device: note: {exc} (a run here would stop on this; on a machine that has it, it runs)"
    return True, f"device: {device} -> {resolve_device(device)}"


def _sample_rows(cfg, input_dir: Path, ids: list) -> str:
    from kagglekit.pipeline.loop import read_sample

    sample = input_dir / cfg.output.sample_submission
    reference = read_sample(sample)
    cfg.output.check_columns(reference, sample)
    ids.extend(reference.get_column(cfg.output.columns(reference)[0]).to_list())
    return f"{sample}: {len(ids)} rows, columns {reference.columns}"


def _model_lines(cfg, attempt) -> list[tuple[bool, str]]:
    """Each checkpoint read (via ``attempt``), then whether the models agree on input channels and classes."""
    from kagglekit.models import checkpoint_info, input_channels, verify_checkpoint

    takes, names = {}, {}
    for k, m in enumerate(getattr(cfg, "models", ())):
        def read_model(m=m) -> str:
            info = checkpoint_info(m.path)
            checked = "checksum ok" if verify_checkpoint(m.path) else "no checksum (saved before checksums)"
            takes[m.path.name], names[m.path.name] = input_channels(info), info["classes"]
            classes = f", classes {info['classes']}" if info["classes"] else ""
            return f"{m.path}: {info['name']}, {takes[m.path.name] or 'any'} input channel(s){classes}, {checked}"

        attempt(f"models[{k}]", read_model)
    lines = []
    if len({c for c in takes.values() if c is not None}) > 1:
        lines.append((False, f"models: different input channel counts {takes}; an ensemble needs one"))
    if len({tuple(c) for c in names.values() if c}) > 1:
        lines.append((False, f"models: different class names {names}; an ensemble needs one order of classes"))
    return lines
