"""Where the code runs and where its inputs are: Kaggle or not, rerun or not, input and working
folders, finding a dataset under any of Kaggle's mount layouts, and Hugging Face offline mode.

Kaggle mounts attached data as ``/kaggle/input/<slug>`` (older kernels) or, in the newer layout,
``/kaggle/input/competitions/<slug>`` and ``/kaggle/input/datasets/<owner>/<slug>``.
``KAGGLEKIT_INPUT_DIR`` and ``KAGGLEKIT_WORKING_DIR`` override the folders (e.g. a local mirror).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from kagglekit.errors import InvalidArgumentError, KagglekitError

__all__ = ["InputNotFoundError", "is_kaggle", "is_rerun", "input_dir", "working_dir", "find_input", "set_offline"]

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
OFFLINE_VARIABLES = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
}
# Modules that read the variables above once, when they are imported.
_READS_AT_IMPORT = ("huggingface_hub", "transformers", "datasets", "timm", "albumentations")


class InputNotFoundError(KagglekitError, FileNotFoundError):
    """An input dataset or competition folder is not mounted where it was looked for."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def is_kaggle() -> bool:
    """True inside a Kaggle kernel (interactive, batch or rerun)."""
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ or "KAGGLE_URL_BASE" in os.environ


def is_rerun() -> bool:
    """True when Kaggle reruns the kernel on the hidden test set (``KAGGLE_IS_COMPETITION_RERUN``)."""
    return _flag("KAGGLE_IS_COMPETITION_RERUN")


def input_dir() -> Path:
    """``$KAGGLEKIT_INPUT_DIR``, else ``/kaggle/input`` on Kaggle (or if it exists), else ``./input``."""
    if os.environ.get("KAGGLEKIT_INPUT_DIR"):
        return Path(os.environ["KAGGLEKIT_INPUT_DIR"])
    return KAGGLE_INPUT if is_kaggle() or KAGGLE_INPUT.is_dir() else Path.cwd() / "input"


def working_dir() -> Path:
    """``$KAGGLEKIT_WORKING_DIR``, else ``/kaggle/working`` on Kaggle, else the current directory."""
    if os.environ.get("KAGGLEKIT_WORKING_DIR"):
        return Path(os.environ["KAGGLEKIT_WORKING_DIR"])
    return KAGGLE_WORKING if is_kaggle() else Path.cwd()


def _listing(root: Path, limit: int = 20) -> list[str]:
    found = []
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        if top.name == "competitions":
            found += [f"competitions/{p.name}" for p in sorted(top.iterdir()) if p.is_dir()]
        elif top.name == "datasets":
            for owner in sorted(p for p in top.iterdir() if p.is_dir()):
                found += [f"datasets/{owner.name}/{p.name}" for p in sorted(owner.iterdir()) if p.is_dir()]
        else:
            found.append(top.name)
    return found[:limit]


def find_input(name: str, root=None) -> Path:
    """The folder of competition or dataset ``name`` (``"slug"`` or ``"owner/slug"``) under ``root``.

    ``root`` defaults to :func:`input_dir`. Looks at ``<root>/<slug>``, ``<root>/competitions/<slug>``
    and ``<root>/datasets/<owner>/<slug>`` (any owner unless one is given), in that order. Raises
    InputNotFoundError listing what is mounted, or InvalidArgumentError if the slug is ambiguous.
    """
    if not isinstance(name, str) or not name.strip("/") or name.strip("/").count("/") > 1:
        raise InvalidArgumentError(f"name must be 'slug' or 'owner/slug', got {name!r}")
    owner, _, slug = name.strip("/").rpartition("/")
    root = Path(root) if root is not None else input_dir()
    if not root.is_dir():
        raise InputNotFoundError(
            f"input folder {root} does not exist; attach the data to the kernel or set KAGGLEKIT_INPUT_DIR"
        )
    for candidate in (root / slug, root / "competitions" / slug):
        if candidate.is_dir():
            return candidate
    datasets = root / "datasets"
    if owner:
        owners = [datasets / owner]
    else:
        owners = sorted(p for p in datasets.iterdir() if p.is_dir()) if datasets.is_dir() else []
    matches = [o / slug for o in owners if (o / slug).is_dir()]
    if len(matches) > 1:
        raise InvalidArgumentError(
            f"{slug!r} is mounted by several owners: {[str(m.relative_to(root)) for m in matches]}; pass 'owner/{slug}'"
        )
    if matches:
        return matches[0]
    raise InputNotFoundError(
        f"{name!r} is not under {root} (looked for {slug}, competitions/{slug}, datasets/{owner or '*'}/{slug}); "
        f"mounted: {_listing(root) or 'nothing'}. Attach it to the kernel (Add Input) or check the slug."
    )


def set_offline() -> dict[str, str]:
    """Set the Hugging Face offline variables (hub, transformers, datasets; telemetry off) and stop
    albumentations' version check.

    Call it before importing timm, transformers or huggingface_hub: they read the variables at
    import time. Warns if one of them is already imported. Returns the variables set."""
    already = [m for m in _READS_AT_IMPORT if m in sys.modules]
    os.environ.update(OFFLINE_VARIABLES)
    if already:
        warnings.warn(
            f"set_offline() called after {already} were imported; they may have read the old settings. "
            "Call it first thing in the kernel.",
            stacklevel=2,
        )
    return dict(OFFLINE_VARIABLES)
