"""Which slides a run covers: ``{slide id: path}`` from a folder, a glob pattern, a list or a mapping."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from pathlib import Path

from kagglekit.errors import InvalidArgumentError

__all__ = ["SLIDE_SUFFIXES", "slide_paths"]

SLIDE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".ndpi", ".btf")


def slide_paths(slides) -> dict[str, Path]:
    """``{slide id: path}``, sorted by path, from: a folder (its files with :data:`SLIDE_SUFFIXES`; id = file
    stem), a glob pattern (``"train/*.png"``), a list of paths (id = stem) or a mapping of id to path.
    Two files with one stem, or no slide at all, are refused."""
    if isinstance(slides, (str, os.PathLike)):
        text = str(slides)
        if glob.has_magic(text):
            slides = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not slides:
                raise InvalidArgumentError(f"no file matches {text!r}; check the pattern (quote it in a shell)")
        elif Path(text).is_dir():
            slides = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in SLIDE_SUFFIXES)
        else:
            raise InvalidArgumentError(f"{text} is neither a folder of slides nor a glob pattern; pass a folder, "
                                       "a pattern such as 'train/*.png', a list of paths or {id: path}")
    if isinstance(slides, Mapping):
        found = {str(k): Path(v) for k, v in slides.items()}
    else:
        found = {}
        for p in map(Path, slides):
            if p.stem in found:
                raise InvalidArgumentError(f"two slides have the id {p.stem!r} ({found[p.stem]}, {p}); pass {{id: path}}")
            found[p.stem] = p
    if not found:
        raise InvalidArgumentError("no slides given (an empty folder or list)")
    return found
