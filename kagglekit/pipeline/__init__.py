"""Config-driven pipelines that the inference notebook and the demo call.

    segment(config, input_dir, output_dir)   segmentation.py  sample submission in, RLE submission.csv out
    load_config(path_or_dict)                config.py        the checked SegmentConfig
    overlay_prediction(source, rle)          preview.py       a thumbnail with the predicted mask drawn on it

Importing this package is cheap: each name is loaded from its submodule on first use.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {
    "segment": "segmentation",
    "check": "segmentation",
    "SegmentReport": "segmentation",
    "NonFiniteOutputError": "segmentation",
    "RunReport": "run",
    "load_config": "config",
    "SegmentConfig": "config",
    "PipelineConfigError": "config",
    "overlay_prediction": "preview",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
