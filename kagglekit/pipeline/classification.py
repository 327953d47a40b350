"""The classification pipeline: sample submission in, ``submission.csv`` of labels or probabilities out.

``classify`` is a kind (:class:`Classify`) on the execute template (:mod:`kagglekit.pipeline.execute`:
fallback first, budget with dropped views then models, a fallback row per failure, workers, report,
exit codes): the images are cut into chunks of a few batches; each chunk goes through
:func:`kagglekit.infer.iter_predictions` (:mod:`kagglekit.pipeline.classify_images`), then the decision
(:class:`kagglekit.thresholds.Decision`, from ``[decision]`` or a decision file), and its rows are
committed. An image that cannot be read, or whose outputs are not finite, keeps its fallback row with
the reason. ``slides`` (:mod:`kagglekit.pipeline.slides`) is its variant for whole slides: the same
config, decision, classes and rows, another way of loading models and predicting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kagglekit.pipeline import classify_config
from kagglekit.pipeline.classify_config import ClassifyConfig, stack_inputs
from kagglekit.pipeline.kind import PipelineKind, Plan
from kagglekit.pipeline.inputs import locate
from kagglekit.pipeline.loop import RunReport, row_store
from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["Classify", "ClassifyReport", "classify"]


@dataclass
class ClassifyReport(RunReport):
    """A :class:`~kagglekit.pipeline.loop.RunReport` with the class names written."""

    classes: tuple[str, ...] = ()


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
    structure = d.label_structure()
    if structure is not None:
        if decision.structure is not None or decision.kind == "argmax":
            raise PipelineConfigError(f"decision.groups / alone: {d.file} holds " + (
                "a label structure already; give it in one place" if decision.structure is not None else
                "an argmax decision (one label per id); a label structure goes with the multi-label kinds"))
        decision = _changed(decision, structure=structure)
    if d.other_label is not None:
        cut = d.other_cut if d.other_file is None else read_decision(d.other_file).other_cut
        if cut is None:
            raise PipelineConfigError(f"decision.other.file: {d.other_file} holds no entropy cut (fit_decision with other=)")
        if decision.kind != "argmax":
            raise PipelineConfigError("decision.other: an entropy cut for 'Other' goes with kind = 'argmax' (one label per id)")
        decision = replace(decision, other_cut=cut, other=d.other_label)
    if decision.other_cut is not None and cfg.output.format == "columns":
        raise PipelineConfigError(f"decision: rows rejected as {decision.other!r} (an entropy cut) have no column in "
                                  "format = 'columns'; use format = 'labels', or a decision without other")
    return decision


def _changed(decision, **changes):
    """``decision`` with ``changes`` (a label structure, class names); a structure that does not fit the
    classes is a PipelineConfigError naming the label."""
    from kagglekit.errors import InvalidArgumentError

    try:
        return replace(decision, **changes)
    except InvalidArgumentError as exc:
        raise PipelineConfigError(f"decision: {exc}") from None


@dataclass(frozen=True)
class Prepared:
    """What a classify run reads before its inputs: the decision (None for kind 'probability') and the
    ``[stack]`` file's stacker or blend (None without one)."""

    decision: object
    stack: object = None


def _stack(cfg: ClassifyConfig, decision=None):
    """The ``[stack]`` file's stacker or blend (None without ``[stack]``), refused unless it fits ``[[models]]``
    and the decision; its mistakes raise naming the file."""
    from kagglekit.thresholds.stack_files import BlendFile, read_stack_file

    if cfg.stack is None:
        return None
    path, stack = cfg.stack.file, read_stack_file(cfg.stack.file)
    inputs = len(stack_inputs(cfg.models))
    if stack.n_models != inputs:
        raise PipelineConfigError(f"stack.file: {path} combines {stack.n_models} model(s) but [[models]] gives {inputs} "
                                  f"(a variant's folds count once); list the models it was fitted on, in its order, or "
                                  "fit it on these")
    if isinstance(stack, BlendFile) and stack.mode == "rank":
        raise PipelineConfigError(f"stack.file: {path} blends ranks, which need every test row at once, but classify "
                                  "predicts a chunk at a time; write a 'mean' or 'logit_mean' blend file")
    if not isinstance(stack, BlendFile) and stack.n_extra:
        raise PipelineConfigError(f"stack.file: {path} was fitted with {stack.n_extra} extra feature(s) that classify "
                                  "does not have; fit it on the models' out-of-fold tables alone")
    if decision is not None and decision.temperature != 1.0:
        raise PipelineConfigError(f"decision.file: its temperature divides each model's logits, but with [stack] the "
                                  f"decision applies to {path}'s output; fit the decision on that output without logits=")
    return stack


def _stack_fits(cfg: ClassifyConfig, stack, kept, classes) -> None:
    """Refuse a run whose models did not all load and run (a stack needs each), or whose classes differ from the
    stacker's."""
    lost = [str(m.path) for m in cfg.models if m.path not in {k.path for k in kept}]
    if lost:
        raise PipelineConfigError(f"stack: {cfg.stack.file} needs every model, but {lost} could not load or run (see "
                                  "the notes above); fix them, or refit the stack without them")
    names, n = getattr(stack, "classes", None), getattr(stack, "n_classes", kept[0].out_shape[1])
    if n != kept[0].out_shape[1] or (names and classes and tuple(names) != tuple(classes)):
        raise PipelineConfigError(f"stack.file: {cfg.stack.file} was fitted on {n} classes {list(names or [])}, the models "
                                  f"return {kept[0].out_shape[1]} ({list(classes)})")


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


def value_index(out, classes, n: int) -> int | None:
    """The output written by ``format = 'probability'`` (None for another format): ``out.value`` as a class
    name of ``classes`` or an index below ``n``, else the one output or the second of two; any other
    case is a PipelineConfigError saying what to set."""
    if out.format != "probability":
        return None
    if out.value is None:
        if n in (1, 2):
            return n - 1
        named = f" (one of {list(classes)})" if classes else ""
        raise PipelineConfigError(f"output.format = 'probability' writes one probability, but the models have {n} outputs; "
                                  f"set output.value = \"<class>\"{named} or an index, or use format = 'columns'")
    if isinstance(out.value, int):
        if out.value >= n:
            raise PipelineConfigError(f"output.value: index {out.value}, but the models have {n} outputs (0..{n - 1})")
        return out.value
    if out.value not in classes:
        raise PipelineConfigError(f"output.value: {out.value!r} is not a class of the models ({list(classes) or 'none saved'}); "
                                  "name one of them, or give an index")
    return list(classes).index(out.value)


def _find_inputs(cfg, input_dir: Path, ids: list[str], report, sample=None) -> tuple[dict, str]:
    """(input per id: a path, or a tuple of channel paths; where they were looked for); ``sample`` as
    :func:`~kagglekit.pipeline.inputs.locate`."""
    if cfg.inputs.channels is None:
        return locate(cfg.inputs, input_dir, ids, report, sample)
    found = {}
    for i in ids:
        paths = tuple(input_dir / pattern.format(id=i) for pattern in cfg.inputs.channels)
        missing = [p for p in paths if not p.is_file()]
        if missing:
            report.fallback[i] = f"channel file missing: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        else:
            found[i] = paths
    return found, f"with every channel file {list(cfg.inputs.channels)} under {input_dir}"


def preprocess_mismatch(cfg: ClassifyConfig, trained: dict | None) -> str | None:
    """How ``[preprocess]`` differs from the ``preprocess`` a checkpoint records (``kagglekit train`` writes
    it: the size, resize and normalisation the model was trained on), as ``key = value`` fixes; None when
    they agree or the checkpoint says nothing."""
    from kagglekit.infer.batching import IMAGENET

    if not trained:
        return None
    p = cfg.preprocess
    normalize = {"scale": "scale", "imagenet": IMAGENET, "none": None}.get(trained.get("normalize"), trained.get("normalize"))
    if isinstance(normalize, dict):
        normalize = (tuple(normalize["mean"]), tuple(normalize["std"]))
    ours = {"size": list(p.size) if p.size else None, "resize": p.resize or "none", "normalize": p.normalize}
    theirs = {"size": trained.get("size"), "resize": trained.get("resize", "none"), "normalize": normalize}
    differ = [k for k in ours if ours[k] != theirs[k] and not (k == "resize" and theirs["size"] is None)]
    written = {"size": trained.get("size"), "resize": trained.get("resize"), "normalize": trained.get("normalize")}
    return ", ".join(f"{k} = {written[k]!r} (not {ours[k]!r})" for k in differ) or None


def _check_preprocessing(cfg: ClassifyConfig, infos) -> None:
    """Refuse a ``[preprocess]`` other than the one a checkpoint was trained with (``infos``: (path, metadata))."""
    for path, metadata in infos:
        fix = preprocess_mismatch(cfg, (metadata or {}).get("preprocess"))
        if fix:
            raise PipelineConfigError(f"preprocess: {path} was trained on other inputs; the kernel must feed it what "
                                      f"training fed it: set [preprocess] {fix}")


def _formatter(cfg: ClassifyConfig, classes, decision, label_column: str, value: int | None):
    """``rows(probabilities (b, C)) -> {column: [b strings]}`` for the output format (``value``: the column of
    ``format = 'probability'``)."""
    out = cfg.output
    names = np.asarray(classes, dtype=object)

    def probability_columns(p):
        return {c: [repr(float(v)) for v in p[:, k]] for k, c in enumerate(classes)}

    def rows(p: np.ndarray) -> dict:
        if decision is None:  # kind 'probability'
            if out.format == "columns":
                return probability_columns(p)
            return {label_column: [repr(float(v)) for v in p[:, value]]}
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


class Classify(PipelineKind):
    """Labels, one probability, or one column per class per image, from image-level models."""

    name = "classify"
    help = "run the classification pipeline of a TOML config to submission.csv (labels or probabilities)"
    report_type = ClassifyReport
    config_type = classify_config.ClassifyConfig


    def prepare(self, run, report):
        decision = _decision(run.config)
        return Prepared(decision, _stack(run.config, decision))

    def find_inputs(self, cfg, input_dir, ids, report, sample=None):
        return _find_inputs(cfg, input_dir, ids, report, sample)

    def load(self, run, pending, report):
        """(the models kept after their probe, what :meth:`predictor` needs besides them)."""
        from kagglekit.pipeline.classify_images import load_models_for

        return load_models_for(run, pending, report), None

    def predictor(self, run, kept, loaded, state, store_rows, report):
        """(degrader, predict(ids, payloads), ids per unit, unit name) for the kept models (``state``: :class:`Prepared`)."""
        from kagglekit.pipeline.classify_images import chunk_predictor

        return chunk_predictor(run, kept, state.decision, store_rows, report, state.stack)

    def plan(self, run, pending, report, state):
        kept, loaded = self.load(run, pending, report)
        for m in kept:
            if len(m.out_shape) != 2:
                raise PipelineConfigError(f"models: {m.path} returns {m.out_shape} for a zero input; classify needs one "
                                          "row of class scores per input (N, C): is it a segmentation model?")
        if not kept:
            return None
        cfg, decision = run.config, state.decision
        if cfg.slides is None:
            _check_preprocessing(cfg, [(m.path, getattr(m.model, "kagglekit_metadata", None)) for m in kept])
        report.classes = _classes(cfg, kept, decision, run.reference, run.sample)
        if decision is not None and decision.structure is not None and decision.classes is None:
            decision = _changed(decision, classes=report.classes)
        if state.stack is not None:
            _stack_fits(cfg, state.stack, kept, report.classes)
        label_column = cfg.output.columns(run.reference)[1]
        value = value_index(cfg.output, report.classes, kept[0].out_shape[1])  # before any image
        rows = _formatter(cfg, report.classes, decision, label_column, value)
        store = row_store(run.guard, list(report.classes) if cfg.output.format == "columns" else [label_column])
        degrader, predict, chunk, unit = self.predictor(run, kept, loaded, state, lambda ids, p: store(ids, rows(p)), report)
        units = [([i for i, _ in pending[k : k + chunk]], [p for _, p in pending[k : k + chunk]])
                 for k in range(0, len(pending), chunk)]
        return Plan(predict, degrader, units, [len(ids) for ids, _ in units], unit)

    def checked_files(self, cfg):
        files = []
        if cfg.decision.file is not None or cfg.decision.other_file is not None:
            files.append(("decision file", lambda: f"{_decision(cfg) or 'probability'}"))
        if cfg.stack is not None:
            files.append(("stack file", lambda: _checked_stack(cfg)))
        if cfg.output.classes_file is not None:
            files.append(("classes file", lambda: f"{cfg.output.classes_file}: {list(_read_classes(cfg.output.classes_file))}"))
        if cfg.output.format == "probability":
            files.append(("output value", lambda: _checked_value(cfg)))
        if cfg.decision.label_structure() is not None:
            files.append(("label structure", lambda: _checked_structure(cfg)))
        if cfg.slides is None:
            files.append(("preprocessing", lambda: _checked_preprocessing(cfg)))
        return files


def _checked_preprocessing(cfg) -> str:
    """For ``--check``: the checkpoints that record their training's preprocessing agree with ``[preprocess]``."""
    from kagglekit.models import checkpoint_info

    infos = [(m.path, checkpoint_info(m.path)["metadata"]) for m in cfg.models if m.path.is_file()]
    _check_preprocessing(cfg, infos)
    recorded = sum(bool((meta or {}).get("preprocess")) for _, meta in infos)
    return f"{recorded} of {len(infos)} checkpoint(s) record their training's preprocessing; [preprocess] agrees"


def _checked_structure(cfg) -> str:
    """For ``--check``: every label of ``[decision] groups`` and ``alone`` is a class (the config's or the first
    checkpoint's class names)."""
    from kagglekit.models import checkpoint_info

    classes = cfg.output.classes or (_read_classes(cfg.output.classes_file) if cfg.output.classes_file else None)
    classes = classes or checkpoint_info(cfg.models[0].path)["classes"]
    if not classes:
        return "the models save no class names; the structure is checked against output.classes when given"
    _changed(_decision(cfg), classes=tuple(classes))
    structure = cfg.decision.label_structure()
    return f"{len(structure.groups)} group(s), alone {list(structure.alone)}: every label is one of the {len(classes)} classes"


def _checked_stack(cfg) -> str:
    """For ``--check``: the ``[stack]`` file reads and fits ``[[models]]`` and the decision."""
    stack = _stack(cfg, _decision(cfg))
    what = (f"a {stack.mode!r} blend" if hasattr(stack, "mode")
            else f"a {stack.estimator} stacker of {stack.n_classes} class(es)")
    return f"{cfg.stack.file}: {what} over {stack.n_models} model(s)"


def _checked_value(cfg) -> str:
    """For ``--check``: which class ``format = 'probability'`` writes, from the first checkpoint's class names."""
    from kagglekit.models import checkpoint_info

    classes = cfg.output.classes or checkpoint_info(cfg.models[0].path)["classes"]
    if not classes:
        return "the models' output count is known when they run (no class names saved)"
    index = value_index(cfg.output, classes, len(classes))
    return f"the probability of {classes[index]!r} (output {index} of {len(classes)})"


def classify(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None) -> ClassifyReport:
    """Predict every image of the sample submission and write ``submission.csv``; return the report.

    ``config``: TOML path, dict or checked config of kind "classify" (see
    :mod:`kagglekit.pipeline.classify_config`; with ``[slides]`` it runs the ``slides`` variant); the
    folders, ``budget`` and ``workers`` as :func:`~kagglekit.pipeline.segment`.
    The fallback (the sample's rows, or ``output.fallback`` in the label column) is written before
    anything else can fail; a mistake in the config, an unreadable decision or classes file, models
    whose classes or output counts disagree, or classes that do not fit the sample raise with that file
    on disk; a model that cannot load or run is skipped; an image that cannot be read keeps its
    fallback row with the reason. Holds the models, a chunk of decoded images and the rows (strings).
    """
    from kagglekit.pipeline.execute import execute

    return execute(config, input_dir, output_dir, base_dir=base_dir, budget=budget, command="classify")
