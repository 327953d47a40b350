"""``kagglekit segment --check`` / ``kagglekit classify --check``: a config and every file it names,
checked without running a model or writing anything."""

from __future__ import annotations

from pathlib import Path

from kagglekit.errors import KagglekitError

__all__ = ["check"]


def _pipeline(kind: str):
    if kind == "segment":
        from kagglekit.pipeline import segmentation

        return segmentation
    from kagglekit.pipeline import classification

    return classification


def check(config, input_dir=None, *, base_dir=None) -> list[tuple[bool, str]]:
    """Check a configuration (of either kind) and its files without running a model; return ``(ok, line)`` pairs.

    A mistake in the configuration itself raises :class:`~kagglekit.pipeline.config.PipelineConfigError`.
    Then: the device, the sample submission and its columns, the pipeline's own files (threshold,
    decision or classes file), each checkpoint (header, checksum, input channels and class names, the
    same for every model), which ids have an input and (segment with ``inputs.mask``) a mask. A line with ``ok`` False names what a run would
    refuse, skip or leave as a fallback row. Reads each checkpoint once; builds no model.
    """
    from kagglekit.kaggle.env import input_dir as default_input
    from kagglekit.models import checkpoint_info, input_channels, verify_checkpoint
    from kagglekit.pipeline.config import load_config
    from kagglekit.pipeline.loop import RunReport, read_sample, resolve_device

    cfg = load_config(config, base_dir)
    pipeline = _pipeline(cfg.kind)
    input_dir = Path(input_dir) if input_dir is not None else default_input()
    lines = [(True, f"config: kind {cfg.kind}, {len(cfg.models)} model(s), {len(cfg.tta.views)} TTA view(s)"),
             (True, f"device: {cfg.device} -> {resolve_device(cfg.device)}")]

    def attempt(what: str, action) -> None:
        try:
            lines.append((True, f"{what}: {action()}"))
        except KagglekitError as exc:
            lines.append((False, f"{what}: {exc}"))

    ids = []

    def sample_rows() -> str:
        sample = input_dir / cfg.output.sample_submission
        reference = read_sample(sample)
        cfg.output.check_columns(reference, sample)
        ids.extend(reference.get_column(cfg.output.columns(reference)[0]).to_list())
        return f"{sample}: {len(ids)} rows, columns {reference.columns}"

    attempt("sample submission", sample_rows)
    for what, action in pipeline.checked_files(cfg):
        attempt(what, action)
    takes, names = {}, {}
    for k, m in enumerate(cfg.models):
        def read_model(m=m) -> str:
            info = checkpoint_info(m.path)
            checked = "checksum ok" if verify_checkpoint(m.path) else "no checksum (saved before checksums)"
            takes[m.path.name], names[m.path.name] = input_channels(info), info["classes"]
            classes = f", classes {info['classes']}" if info["classes"] else ""
            return f"{m.path}: {info['name']}, {takes[m.path.name] or 'any'} input channel(s){classes}, {checked}"

        attempt(f"models[{k}]", read_model)
    if len({c for c in takes.values() if c is not None}) > 1:
        lines.append((False, f"models: different input channel counts {takes}; an ensemble needs one"))
    if len({tuple(c) for c in names.values() if c}) > 1:
        lines.append((False, f"models: different class names {names}; an ensemble needs one order of classes"))
    if ids:
        found, where = pipeline.find_inputs(cfg, input_dir, ids, RunReport(Path()))
        missing = [i for i in ids if i not in found]
        lines.append((not missing, f"inputs: {len(found)} of {len(ids)} ids have an input {where}"
                                   + (f"; without an input: {missing[:5]}" if missing else "")))
        if cfg.kind == "segment" and cfg.inputs.mask and found:
            no_mask = [i for i in found if not cfg.inputs.mask_path(input_dir, i).is_file()]
            lines.append((not no_mask, f"masks: {len(found) - len(no_mask)} of {len(found)} inputs have their mask "
                                       f"{cfg.inputs.mask!r}" + (f"; without one: {no_mask[:5]}" if no_mask else "")))
    return lines
