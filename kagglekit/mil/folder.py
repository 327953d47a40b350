"""Bags for a folder of slides: one bag file per slide, resumable, with a manifest of what happened.

    manifest = extract_bags("train_images/", "bags/", backbone, tile=224, top_k=256)   # a polars DataFrame

``out_dir`` gets ``<slide>.safetensors`` per slide (written atomically: a file is whole or absent) and
``manifest.json``, rewritten atomically after every slide: one row per slide with its ``status``
(``"done"``; ``"kept"``: a readable bag of the same backbone was already there; ``"no_tissue"``;
``"failed"``, with the ``error``), its tile count, kind and seconds. Run it again after an interruption
or a failure: finished slides are kept, a slide that was cut off (no bag, or an unreadable one) is
extracted again, a failed one is retried; a slide recorded as ``"no_tissue"`` is not read again. A bag
made by another backbone or with other settings (tile, scale, top_k, ...; each bag stores them) is made
again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from kagglekit._atomic import atomic_open
from kagglekit.errors import InvalidArgumentError, KagglekitError

__all__ = ["SLIDE_SUFFIXES", "bag_path", "extract_bags", "settings_of", "slide_paths"]

log = logging.getLogger("kagglekit.mil")

SLIDE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".ndpi", ".btf")
MANIFEST = "manifest.json"


def slide_paths(slides) -> dict[str, Path]:
    """``{slide id: path}`` from a folder (its images with :data:`SLIDE_SUFFIXES`, sorted; id = file stem),
    a list of paths (id = stem) or a mapping of id to path."""
    if isinstance(slides, (str, os.PathLike)):
        folder = Path(slides)
        if not folder.is_dir():
            raise InvalidArgumentError(f"{folder} is not a folder of slides; pass a folder, a list of paths or {{id: path}}")
        slides = sorted(p for p in folder.iterdir() if p.suffix.lower() in SLIDE_SUFFIXES)
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


def bag_path(out_dir, slide: str) -> Path:
    """Where :func:`extract_bags` writes the bag of ``slide``."""
    return Path(out_dir) / f"{slide}.safetensors"


def _read_manifest(out_dir: Path) -> dict[str, dict]:
    try:
        return {row["slide"]: row for row in json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_manifest(out_dir: Path, rows: dict[str, dict]) -> None:
    with atomic_open(out_dir / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(list(rows.values()), f, indent=1)


def settings_of(options: dict) -> dict:
    """The extraction settings a bag was made with, as JSON values (objects by their type's name), so that a
    rerun with other settings redoes the slide instead of keeping its bag."""
    def plain(value):
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in sorted(value.items())}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return type(value).__name__

    ignored = ("batch_size", "num_workers", "device", "progress")  # how fast, not what
    return {k: plain(v) for k, v in sorted(options.items()) if k not in ignored}


def _finished(out_dir: Path, slide: str, name: str, settings: dict, before: dict | None) -> dict | None:
    """The manifest row of a slide that needs no work: a readable bag of backbone ``name`` made with
    ``settings``, or a slide recorded as having no tissue with the same settings. None otherwise."""
    from kagglekit.mil.bags import load_bag

    if before and before.get("status") == "no_tissue" and before.get("settings") == settings:
        return before
    path = bag_path(out_dir, slide)
    if not path.is_file():
        return None
    try:
        bag = load_bag(path, backbone=name)
    except KagglekitError:
        return None
    if bag.selection.get("settings") != settings:
        return None
    return {"tiles": len(bag), "kind": bag.selection.get("kind")}


def extract_bags(slides, out_dir, backbone, *, name: str | None = None, progress: bool = True, **options):
    """Extract the bag of every slide into ``out_dir`` (see the module docstring); return the manifest as a
    polars DataFrame (slide, path, status, tiles, kind, seconds, error).

    ``slides``: a folder, a list of paths or ``{id: path}``; ``backbone``, ``name`` and ``options``: as
    :func:`~kagglekit.mil.extract_bag` (the backbone is moved to the device once). A slide that fails is
    logged once and recorded; the others go on (a bad option raises at once). Holds one slide's source and bag at a time.
    """
    import inspect

    import polars as pl
    from tqdm.auto import tqdm

    from kagglekit.mil.bags import save_bag
    from kagglekit.mil.extract import NoTissueError, as_backbone, backbone_name, extract_bag

    paths = slide_paths(slides)
    try:
        inspect.signature(extract_bag).bind(backbone, None, **options)
    except TypeError as exc:
        raise InvalidArgumentError(f"extract_bags: {exc} (options go to extract_bag)") from None
    backbone = as_backbone(backbone)
    name = backbone_name(backbone, name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_manifest(out_dir)
    rows: dict[str, dict] = {}
    settings = settings_of(options)
    for slide, path in tqdm(paths.items(), unit="slide", desc="bags", disable=not progress):
        row = {"slide": slide, "path": str(path), "status": "done", "tiles": 0, "kind": None, "seconds": 0.0, "error": None,
               "settings": settings}
        start = time.perf_counter()
        done = _finished(out_dir, slide, name, settings, previous.get(slide))
        if done is not None:
            row.update(done, status="kept" if done.get("status") != "no_tissue" else "no_tissue")
        else:
            try:
                bag = extract_bag(backbone, path, slide=slide, name=name, **options)
                bag.selection["settings"] = settings
                save_bag(bag, bag_path(out_dir, slide))
                row.update(tiles=len(bag), kind=bag.selection.get("kind"))
            except NoTissueError as exc:
                row.update(status="no_tissue", error=str(exc))
            except InvalidArgumentError:  # a bad option is wrong for every slide: say it once
                raise
            except Exception as exc:  # recorded, and the other slides go on: one unreadable slide must not stop a night's run
                log.warning("slide %s failed: %s: %s", slide, type(exc).__name__, exc)
                row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        row["seconds"] = round(time.perf_counter() - start, 3)
        rows[slide] = row
        _write_manifest(out_dir, {**previous, **rows})
    return pl.DataFrame([{k: v for k, v in row.items() if k != "settings"} for row in rows.values()], schema={"slide": pl.Utf8, "path": pl.Utf8, "status": pl.Utf8, "tiles": pl.Int64,
                                                     "kind": pl.Utf8, "seconds": pl.Float64, "error": pl.Utf8})
