"""The Kaggle kernel's runtime: environment and paths, offline mode, RLE, the submission guard, the time budget.

Delivery (wheels, kernel metadata, bundle, push, the headless notebook runner) is :mod:`kagglekit.delivery`;
``kagglekit.kaggle.wheels``, ``.kernel`` and ``.bundle`` are that package's modules under their old
names, with a DeprecationWarning, until the next release. ``kaggle_image.toml`` (what the Kaggle image
has installed) stays here: the wheel builder reads it.

Importing this package is cheap: each name is loaded from its submodule on first use.

    kagglekit.kaggle.env         is_kaggle, is_rerun, input_dir, working_dir, find_input, set_offline
    kagglekit.kaggle.rle         rle_encode, rle_decode
    kagglekit.kaggle.submission  SubmissionGuard, read_csv_strings
    kagglekit.kaggle.budget      Budget
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {
    "is_kaggle": "env",
    "is_rerun": "env",
    "input_dir": "env",
    "working_dir": "env",
    "find_input": "env",
    "set_offline": "env",
    "rle_encode": "rle",
    "rle_decode": "rle",
    "SubmissionGuard": "submission",
    "read_csv_strings": "submission",
    "Budget": "budget",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
