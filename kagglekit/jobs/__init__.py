"""Per-slide work over a folder, in this process or on Ray: one output file per slide, resumable.

    Job: name, suffix, settings(), setup(), run(slide, out_path)   contract.py  what a job must provide
    run_slides(job, slides, out_dir, engine=, workers=) -> JobReport runner.py   the run, its manifest and resume
    slide_paths(slides)                                             slides.py    a folder, glob, list or {id: path}
    BagJob, extract_bags(slides, out_dir, backbone, ...)            bags.py      tile features per slide (MIL bags)
    PredictionJob                                                   predictions.py  a probability map or mask per slide
    TileExportJob                                                   tiles.py     the top-K tissue tiles as PNGs + one index
    JOBS                                                                         the jobs ``kagglekit run`` knows

Importing this package is cheap, and nothing here imports Ray unless the Ray engine runs.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {"Job": "contract", "NothingToDo": "contract", "JobSetupError": "contract", "settings_hash": "contract",
            "run_slides": "runner", "JobReport": "runner", "output_path": "runner",
            "slide_paths": "slides", "SLIDE_SUFFIXES": "slides",
            "BagJob": "bags", "extract_bags": "bags", "PredictionJob": "predictions", "TileExportJob": "tiles",
            "JOBS": "registry", "ModelRef": "models"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
