"""Every demo, by name: ``kagglekit demo`` runs them all and prints one table; ``kagglekit demo NAME`` runs one.

Each demo trains for a fixed number of steps from a fixed seed, so two runs print the same figures
however busy the machine is; each takes at most about three minutes on a 2-core CPU.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMOS", "run_demos"]


def _segmentation(out: Path, **kw) -> dict:
    from kagglekit.demo.run import run_demo

    return run_demo(out / "segmentation", **kw)


def _multilabel(out: Path, **kw) -> dict:
    from kagglekit.demo.multilabel import run_multilabel

    return run_multilabel(out / "multilabel", **kw)


def _slides(out: Path, **kw) -> dict:
    from kagglekit.demo.slides import run_slides

    return run_slides(out / "slides", **kw)


def _volume(out: Path, **kw) -> dict:
    from kagglekit.demo.volume import run_volume

    return run_volume(out / "volume", **kw)


DEMOS = {
    "segmentation": (_segmentation, "DAB-positive tissue on IHC slides: a U-Net, tiles, RLE, F0.5 (kagglekit.demo.run)"),
    "multilabel": (_multilabel, "Planet-like chips of scikit-image textures: timm folds, decisions, F2 (kagglekit.demo.multilabel)"),
    "slides": (_slides, "UBC-like slides of scikit-image's IHC tissue: bags, Chowder seed ensembles, entropy Other (kagglekit.demo.slides)"),
    "volume": (_volume, "Vesuvius-like ink in the middle slices of papyrus volumes: a 2.5D model, masks, F0.5 per fragment (kagglekit.demo.volume)"),
}


def run_demos(names, out="build/demo", *, steps: int | None = None, seed: int = 0, notebook=None, log=print) -> list:
    """Run the demos ``names`` (all when empty) under ``out``/<name>; print and return one table of their results."""
    from kagglekit.errors import InvalidArgumentError

    names = list(names) or list(DEMOS)
    unknown = [n for n in names if n not in DEMOS]
    if unknown:
        raise InvalidArgumentError(f"unknown demo(s) {unknown}; choose from {list(DEMOS)}")
    rows = []
    for name in names:
        log(f"=== demo {name}: {DEMOS[name][1]}")
        kwargs = {"seed": seed, "notebook": notebook, "log": log, **({"steps": steps} if steps else {})}
        result = DEMOS[name][0](Path(out), **kwargs)
        rows += [(name, what, value, result["seconds"]) for what, value in result["summary"]]
    log("")
    log("| demo | result | value | demo seconds |\n| --- | --- | ---: | ---: |")
    for name, what, value, seconds in rows:
        log(f"| {name} | {what} | {value:.4f} | {seconds:.0f} |")
    return rows
