"""Config-driven pipelines that the inference notebook and the demo call.

    PipelineKind, Plan, register, get_kind   kind.py            a pipeline kind is one object (config, inputs, plan, report);
                                                                the registry every entry point reads
    execute(config, ...)                     execute.py         the one template every kind runs on
    segment(config, input_dir, output_dir)   segmentation.py    sample submission in, RLE submission.csv out
                                             segment_images.py  (its models over an image, strip by strip)
    classify(config, input_dir, output_dir)  classification.py  sample submission in, labels or probabilities out
                                             classify_images.py (its models over chunks of images)
    slides (classify with [slides])          slides.py          each slide a bag, then MIL heads (slide_heads.py)
    run(config, input_dir, output_dir)       dispatch.py        the kind the config's ``kind`` names
    check(config, input_dir)                 checking.py        the config and its files, checked without running a model
    load_config(path_or_dict)                config.py          the checked config of its kind, the TOML read once
    RunReport, run_items, start_run          loop.py            the run loop's parts: guard, units, report (with merge)
    run_on_workers                           workers.py         the ids over worker processes, rows merged back
    load_models, probe_models, Resident      ensemble.py        checkpoints loaded and probed once, before any image;
                                                                at most [memory] max_resident of them on the device at a time
    save_preview(report, output_dir)         preview.py         the picture of a run's predictions its kind draws
    overlay_prediction(source, rle)          preview.py         a thumbnail with the predicted mask drawn on it
    labelled_grid(items)                     preview.py         images with their predicted labels, in a grid

Configuration: schema.py (declarations and their one reader), sections.py (what every kind shares),
segment_config.py, classify_config.py; every key: ``config.reference()`` (the README's table).

Importing this package is cheap: each name is loaded from its submodule on first use.

What happens when something is wrong (``kagglekit segment`` / ``kagglekit classify`` exit codes: 0
something was predicted, 3 every row fell back or, with ``--strict``, any row did; 1 an error).
"Fallback file" means that submission.csv holds the sample's ids and columns, with ``output.fallback``
as every mask (segment) or the sample's own values, or ``output.fallback`` in the label column
(classify); it is written before anything below can fail, except the first two rows.

| input | failure | outcome |
| --- | --- | --- |
| sample submission | missing, empty, unreadable CSV, repeated ids | SubmissionError naming it (and the ids); no file can be written (exit 1). A broken config is named first |
| output folder | a file, or cannot be created or written | InvalidArgumentError / SubmissionError naming the path; no file (exit 1) |
| config | missing, not TOML, unknown key (with the closest key), bad value, `output.id_column` not in the sample, sample with only an id column | PipelineConfigError naming the file and key; fallback file (exit 1) |
| config `kind` | not a registered kind (`segment`, `classify`, `slides` or one `register`ed) | PipelineConfigError listing the kinds; fallback file of the command's kind (exit 1) |
| config `device` | `"cuda"` (or `cuda:N`, `mps`) that this machine lacks | PipelineConfigError before any work, once; fallback file (exit 1). `"auto"` (default) falls back to the CPU |
| threshold file (segment) | missing, or not a probability | PipelineConfigError naming `threshold.file`; fallback file (exit 1) |
| decision file, classes file (classify) | missing, not JSON, a kind other than `decision.kind`, thresholds of another length than the classes, fitted on other classes | DecisionFileError / PipelineConfigError naming the file; fallback file (exit 1) |
| class names (classify) | none anywhere, different in two checkpoints or from `output.classes`, another count than the models' outputs, not the sample's columns (`format = "columns"`); `format = "probability"` from more than two outputs without `output.value`, or a `value` that is no class / index of the models | PipelineConfigError before any image; fallback file (exit 1) |
| checkpoint | missing, truncated, not a kagglekit checkpoint, tensor bytes damaged (checksum), fails on a zero tile | that model is skipped and named in the report; the others run. None left: every row falls back (exit 3) |
| checkpoints together | different input or output channel counts; for segment not one logit map (N, 1, h, w) (a classifier), for classify not (N, C) (a segmentation model) | PipelineConfigError before any image; fallback file (exit 1) |
| input image | no file for an id (classify: one of its channel files) | fallback row "no input matches" / "channel file missing: <path>" (noted once with a count) |
| input image | a DICOM file (SIIM-ISIC's `test/`) | passed over, noted once with the fix (`inputs.glob = "jpeg/test/*.jpg"`); its row falls back saying so |
| input image | another format than its suffix says (a PNG named `.tif`) | opened by its content |
| input image | corrupt or truncated | fallback row with the ImageReadError |
| input image | a PNG above OpenCV's pixel limit (2^30 px, UBC-OCEAN's WSIs) | read: streamed by libvips in row strips, no environment variable needed (`kagglekit.io.png`); without pyvips an ImageReadError saying what to install |
| input image | gray or RGBA for an RGB model (gray + alpha for a gray one) | adapted (replicated / alpha dropped), noted once per run |
| input image | any other channel count than the model's | fallback row naming both counts |
| input image | no tissue (``tissue_only``): no tile is run | predicted empty, noted; "every tissue mask was empty" noted when that holds for all |
| image mask (`inputs.mask`) | missing, unreadable, or of another size than its image | fallback row naming the mask file (and both sizes) |
| image mask (`inputs.mask`) | empty | predicted empty (no tile runs), noted |
| volume (`kind = "volume"`) | fewer slices than `z` asks; one TIFF page of several samples (written as RGB) | fallback row naming the count, or how to write the slices as pages |
| volume (`normalize = "volume"`) | constant inside its mask | fallback row: the standard deviation is 0 |
| checkpoints (segment) | outputs at different scales, or a scale that tiling.stride / tiling.margin are not multiples of | PipelineConfigError before any image; fallback file (exit 1) |
| worker process (`workers = "gpus"` or N) | dies (killed, out of memory, a CUDA error) | its ids keep the fallback row with the reason; the other workers' rows are merged (exit 0 if any) |
| worker process | started from a script without an `if __name__ == "__main__":` guard | runs: workers are started without re-importing the script |
| worker process | the run's kind is defined in the script itself (`__main__`) | PipelineConfigError before any worker starts: define it in a module, or workers = 1; fallback file (exit 1) |
| slide (classify `[slides]`) | no tile with enough tissue | fallback row "no tissue: ..." naming the tile size, candidates and background |
| slide backbone (`[slides]`) | cannot be built or loaded; heads trained on bags of another backbone (their checkpoint says which) | PipelineConfigError before any slide; fallback file (exit 1) |
| MIL heads (`[slides]`) | a bag with fewer tiles than Chowder's r | that slide's fallback row with the reason |
| model output | NaN or infinite logits | fallback row (segment: with the count of non-finite pixels) |
| submission write | fails for one image (disk full) | that image keeps its fallback row; the file on disk stays the last valid one |
| time budget | the projected finish passes it | TTA views, then models are dropped; when spent, the remaining rows fall back (noted) |

Per-image failures are logged as one line (``[n/N] id: reason``; classify logs per chunk of images);
tracebacks only at DEBUG (``kagglekit -v``). The report's summary counts the fallback reasons, and
when most rows fell back for one reason its last line says so (``MOST ROWS FELL BACK: ...``).
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {
    "run": "dispatch",
    "segment": "segmentation",
    "SegmentReport": "segmentation",
    "NonFiniteOutputError": "segmentation",
    "classify": "classification",
    "ClassifyReport": "classification",
    "check": "checking",
    "execute": "execute",
    "PipelineKind": "kind",
    "Plan": "kind",
    "register": "kind",
    "get_kind": "kind",
    "kinds": "kind",
    "RunReport": "loop",
    "load_config": "config",
    "SegmentConfig": "config",
    "ClassifyConfig": "config",
    "PipelineConfigError": "config",
    "overlay_prediction": "preview",
    "labelled_grid": "preview",
    "save_preview": "preview",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
