"""The classification pipeline: sample submission in, ``submission.csv`` of labels or probabilities out.

It runs on the same loop as ``segment`` (:mod:`kagglekit.pipeline.loop`: fallback first, budget with
dropped views then models, a fallback row per failure, report, exit codes): the images are cut into
chunks of a few batches; each chunk goes through :func:`kagglekit.infer.iter_predictions` (every image
decoded once for all models and views), then the decision (:class:`kagglekit.thresholds.Decision`, from
``[decision]`` or a decision file), and its rows are committed. An image that cannot be read, or whose
outputs are not finite, keeps its fallback row with the reason. With ``[slides]`` each input is a whole
slide, one per unit, classified from its bag of tile features by MIL heads (:mod:`.slides`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from kagglekit.kaggle.budget import Budget
from kagglekit.pipeline.classify_config import ClassifyConfig
from kagglekit.pipeline.degrade import Degrader
from kagglekit.pipeline.ensemble import first_channels, input_channels_of, load_models, probe_models
from kagglekit.pipeline.loop import RunReport, match_inputs, note_missing, row_store, run_items, start_run
from kagglekit.pipeline.workers import run_on_workers, shard_budget, splits
from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["ClassifyReport", "classify"]

CHUNK_BATCHES = 4  # batches per unit of the run loop: the rows are committed once per chunk


@dataclass
class ClassifyReport(RunReport):
    """A :class:`~kagglekit.pipeline.loop.RunReport` with the class names written."""

    classes: tuple[str, ...] = ()


class _Tempered(nn.Module):
    """``model``'s logits divided by a fitted temperature."""

    def __init__(self, model, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x):
        return self.model(x) / self.temperature


def _decision(cfg: ClassifyConfig):
    """The :class:`~kagglekit.thresholds.Decision` to apply (None for kind 'probability'), read from the
    decision file and ``other`` file when given; their mistakes raise naming the file."""
    from kagglekit.thresholds import Decision, read_decision

    d = cfg.decision
    decision = read_decision(d.file) if d.file is not None else None
    if decision is not None and d.kind is not None and decision.kind != d.kind:
        raise PipelineConfigError(f"decision.kind is {d.kind!r} but {d.file} holds a {decision.kind!r} decision; "
                                  "drop decision.kind (the file says it) or use the matching file")
    if d.kind == "probability":
        return None
    if decision is None:
        decision = Decision(d.kind, threshold=d.value if d.kind == "threshold" else None, beta=d.beta)
    if d.other_label is not None:
        cut = d.other_cut if d.other_file is None else read_decision(d.other_file).other_cut
        if cut is None:
            raise PipelineConfigError(f"decision.other.file: {d.other_file} holds no entropy cut (fit_decision with other=)")
        if decision.kind != "argmax":
            raise PipelineConfigError("decision.other: an entropy cut for 'Other' goes with kind = 'argmax' (one label per id)")
        from dataclasses import replace

        decision = replace(decision, other_cut=cut, other=d.other_label)
    if decision.other_cut is not None and cfg.output.format == "columns":
        raise PipelineConfigError(f"decision: rows rejected as {decision.other!r} (an entropy cut) have no column in "
                                  "format = 'columns'; use format = 'labels', or a decision without other")
    return decision


def _read_classes(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise PipelineConfigError(f"output.classes_file: {path} not found; write one class name per line, or a JSON list")
    text = path.read_text(encoding="utf-8")
    try:
        names = json.loads(text)
    except json.JSONDecodeError:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise PipelineConfigError(f"output.classes_file: {path} must hold class names, one per line or a JSON list")
    return tuple(names)


def _classes(cfg: ClassifyConfig, kept, decision, reference, sample: Path) -> tuple[str, ...]:
    """The class names of the models' outputs, checked against every model, the decision and the sample."""
    out = cfg.output
    n = kept[0].out_shape[1]
    saved = {m.path.name: tuple(m.classes) for m in kept if m.classes}
    if len(set(saved.values())) > 1:
        raise PipelineConfigError(f"models: the checkpoints name different classes ({saved}); an ensemble averages "
                                  "outputs of the same classes in the same order")
    names = out.classes or (_read_classes(out.classes_file) if out.classes_file else None)
    if names and saved and next(iter(saved.values())) != names:
        raise PipelineConfigError(f"output.classes {list(names)} differ from the classes saved in the checkpoints "
                                  f"{list(next(iter(saved.values())))}")
    names = names or next(iter(saved.values()), None)
    if names is None:
        if out.format == "probability":
            return ()
        raise PipelineConfigError("output.classes: the checkpoints hold no class names; give output.classes = [...] "
                                  "(or classes_file), or save the checkpoints with save_checkpoint(..., classes=[...])")
    if len(names) != n:
        raise PipelineConfigError(f"models: they return {n} outputs but there are {len(names)} classes ({list(names)[:5]}...)")
    if decision is not None and decision.classes and tuple(decision.classes) != tuple(names):
        raise PipelineConfigError(f"decision.file: fitted on classes {list(decision.classes)}, the models' are {list(names)}")
    if decision is not None and decision.thresholds is not None and len(decision.thresholds) != n:
        raise PipelineConfigError(f"decision.file: {cfg.decision.file} holds {len(decision.thresholds)} per-class thresholds "
                                  f"but the models have {n} classes")
    if out.format == "columns":
        columns = [c for c in reference.columns if c != out.columns(reference)[0]]
        if set(columns) != set(names):
            raise PipelineConfigError(f"output.format = 'columns': the sample's columns {columns} are not the classes "
                                      f"{list(names)} (missing: {sorted(set(names) - set(columns))}, extra: "
                                      f"{sorted(set(columns) - set(names))})")
    return tuple(names)


def find_inputs(cfg: ClassifyConfig, input_dir: Path, ids: list[str], report, sample=None) -> tuple[dict, str]:
    """(input per id: a path, or a tuple of channel paths; where they were looked for); ``sample`` as
    :func:`~kagglekit.pipeline.loop.match_inputs`."""
    if cfg.inputs.channels is None:
        found = match_inputs(input_dir, ids, cfg.inputs.glob, cfg.inputs.id_from, report, sample)
        return found, f"matching {cfg.inputs.glob!r} under {input_dir}"
    found = {}
    for i in ids:
        paths = tuple(input_dir / pattern.format(id=i) for pattern in cfg.inputs.channels)
        missing = [p for p in paths if not p.is_file()]
        if missing:
            report.fallback[i] = f"channel file missing: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        else:
            found[i] = paths
    return found, f"with every channel file {list(cfg.inputs.channels)} under {input_dir}"


def _formatter(cfg: ClassifyConfig, classes, decision, label_column: str):
    """``rows(probabilities (b, C)) -> {column: [b strings]}`` for the output format."""
    out = cfg.output
    names = np.asarray(classes, dtype=object)

    def probability_columns(p):
        return {c: [repr(float(v)) for v in p[:, k]] for k, c in enumerate(classes)}

    def rows(p: np.ndarray) -> dict:
        if decision is None:  # kind 'probability'
            if out.format == "columns":
                return probability_columns(p)
            if p.shape[1] not in (1, 2):
                raise PipelineConfigError(f"output.format = 'probability' writes one probability, but the models have "
                                          f"{p.shape[1]} outputs; use format = 'columns'")
            return {label_column: [repr(float(v)) for v in p[:, -1]]}
        chosen = decision.apply(p)
        if chosen.ndim == 1:  # argmax: class indices, -1 for "Other"
            if out.format == "columns":
                chosen = np.eye(len(classes), dtype=bool)[chosen]  # no -1: 'other' is refused with columns
            else:
                return {label_column: [decision.other if k < 0 else names[k] for k in chosen]}
        if out.format == "columns":
            return {c: ["1" if v else "0" for v in chosen[:, k]] for k, c in enumerate(classes)}
        return {label_column: [out.separator.join(names[row]) for row in chosen]}

    return rows


def _chunk_predictor(cfg: ClassifyConfig, models, weights, in_channels, activation, degrader: Degrader, report,
                     store, device):
    """``predict(ids, items)`` for :func:`~kagglekit.pipeline.loop.run_items`: a chunk of images through the
    current setting of ``degrader`` (:func:`kagglekit.infer.iter_predictions`, unreadable images and
    non-finite outputs failed by id), the finite rows handed to ``store(ids, probabilities)``."""
    import threading

    from kagglekit.infer import iter_predictions, load_image
    from kagglekit.io import ArraySource, match_channels

    noting = threading.Lock()  # images are loaded on the decoding threads

    def matched(item):
        """The image at the input size with the models' channels (gray replicated, alpha dropped), noted once."""
        image = load_image(item, cfg.preprocess.size, cfg.preprocess.resize)
        source = match_channels(ArraySource(image), in_channels)
        if source.shape[2] == image.shape[2]:
            return image
        with noting:
            report.note_once(f"inputs adapted to the models' {in_channels} channels: {source.adaptation}")
        return source.read(0, 0, *image.shape[:2])

    def predict(chunk_ids: list[str], items: list) -> tuple[dict, str]:
        failed, done, outputs = {}, [], []
        for indices, out, errors in iter_predictions(
                models[: degrader.models], items, normalize=cfg.preprocess.normalize, activation=activation,
                tta=list(cfg.tta.views[: degrader.views]), merge=cfg.tta.merge, weights=weights[: degrader.models],
                batch_size=cfg.batch_size, num_workers=cfg.num_workers, device=device, amp=cfg.amp, on_error="skip",
                loader=matched):
            failed.update({chunk_ids[k]: f"{type(e).__name__}: {e}" for k, e in errors.items()})
            good = np.isfinite(out).all(axis=1)
            failed.update({chunk_ids[k]: "NonFiniteOutputError: the models returned NaN or infinite scores"
                           for k in indices[~good]})
            done += [chunk_ids[k] for k in indices[good]]
            outputs.append(out[good])
        if done:
            store(done, np.concatenate(outputs))
        return failed, f"{degrader.views} view(s) x {degrader.models} model(s)"

    return predict


def classify(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None, shard=None) -> ClassifyReport:
    """Predict every image of the sample submission and write ``submission.csv``; return the report.

    ``config``: TOML path, dict or checked config of kind "classify" (see
    :mod:`kagglekit.pipeline.classify_config`); the folders, ``budget``, ``workers`` and ``shard`` as
    :func:`~kagglekit.pipeline.segment`.
    The fallback (the sample's rows, or ``output.fallback`` in the label column) is written before
    anything else can fail; a mistake in the config, an unreadable decision or classes file, models
    whose classes or output counts disagree, or classes that do not fit the sample raise with that file
    on disk; a model that cannot load or run is skipped; an image that cannot be read keeps its
    fallback row with the reason. Holds the models, a chunk of decoded images and the rows (strings).
    """
    from kagglekit.infer import load_image

    start = time.monotonic()
    run = start_run(config, input_dir, output_dir, base_dir, "classify", shard)
    cfg = run.config
    report = ClassifyReport(run.guard.path, run.id_column, device=str(run.device))
    try:
        decision = _decision(cfg)
        budget = shard_budget(shard) if shard is not None else budget or Budget(cfg.budget.seconds, cfg.budget.reserve)
        if splits(run, shard):  # workers = "gpus" or N: the ids go to worker processes, the rows come back here
            return run_on_workers("classify", run, config, base_dir, budget, report)
        ids = run.ids
        found, where = find_inputs(cfg, run.input_dir, ids, report, run.sample_ids)
        report.inputs = found
        note_missing(report, ids, found, where)
        pending = [(i, found[i]) for i in ids if i in found]
        if cfg.slides is not None and pending:
            from kagglekit.pipeline.slides import slide_models

            backbone, backbone_name, kept, stain = slide_models(cfg, load_models(cfg.models, report), report)
        elif pending:
            spatial = cfg.preprocess.size or (224, 224)
            channels = first_channels(pending, lambda item: load_image(item, (8, 8), "resize").shape[2]) or 3  # none reads: each fails in turn
            kept = probe_models(load_models(cfg.models, report), spatial, channels, report)
        else:
            kept = []
        for m in kept:
            if len(m.out_shape) != 2:
                raise PipelineConfigError(f"models: {m.path} returns {m.out_shape} for a zero input; classify needs one "
                                          "row of class scores per input (N, C): is it a segmentation model?")
        if not kept:
            if pending:
                report.note("no usable model: every image keeps the fallback row", logging.ERROR)
            report.fallback.update({i: "no usable model" for i, _ in pending})
            return report
        report.classes = _classes(cfg, kept, decision, run.reference, run.sample)
        temperature = decision.temperature if decision is not None else 1.0
        weights = [m.weight for m in kept]
        label_column = cfg.output.columns(run.reference)[1]
        rows = _formatter(cfg, report.classes, decision, label_column)
        columns = list(report.classes) if cfg.output.format == "columns" else [label_column]
        store = row_store(run.guard, columns)
        store_rows = lambda ids_, p: store(ids_, rows(p))  # noqa: E731
        if cfg.slides is not None:
            from kagglekit.pipeline.slides import slide_predictor

            degrader = Degrader(1, len(kept))
            predict = slide_predictor(cfg, backbone, backbone_name, [m.model for m in kept], weights, stain, temperature,
                                      degrader, store_rows, run.device)
            chunk, unit = 1, "slide"
        else:
            models = [m.model if temperature == 1.0 else _Tempered(m.model, temperature) for m in kept]
            activation = cfg.decision.activation or ("softmax" if decision is not None and decision.kind == "argmax" else "sigmoid")
            degrader = Degrader(len(cfg.tta.views), len(models))
            predict = _chunk_predictor(cfg, models, weights, input_channels_of(kept), activation, degrader, report,
                                       store_rows, run.device)
            chunk, unit = cfg.batch_size * CHUNK_BATCHES, "image"
        units = [([i for i, _ in pending[k : k + chunk]], [p for _, p in pending[k : k + chunk]])
                 for k in range(0, len(pending), chunk)]
        run_items(units, [len(ids_) for ids_, _ in units], degrader, predict, budget, report, unit=unit)
        report.views, report.models = degrader.views, degrader.models
        return report
    finally:
        report.seconds = time.monotonic() - start


def checked_files(cfg: ClassifyConfig) -> list[tuple[str, object]]:
    """For :func:`kagglekit.pipeline.checking.check`: (what, read it) of the files besides checkpoints."""
    files = []
    if cfg.decision.file is not None or cfg.decision.other_file is not None:
        files.append(("decision file", lambda: f"{_decision(cfg) or 'probability'}"))
    if cfg.slides is not None:
        from kagglekit.pipeline.slides import check_backbone

        files.append(("slides backbone", lambda: check_backbone(cfg)))
    if cfg.output.classes_file is not None:
        files.append(("classes file", lambda: f"{cfg.output.classes_file}: {list(_read_classes(cfg.output.classes_file))}"))
    return files

