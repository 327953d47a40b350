"""Every demo, by name: ``kagglekit demo`` runs them all and prints one table; ``kagglekit demo NAME`` runs one.

Each demo trains for a fixed number of steps from a fixed seed, so two runs print the same figures
however busy the machine is; each takes at most about three minutes on a 2-core CPU.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMOS", "KNOBS", "run_demos"]


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


# The size knobs each demo takes: knob (``kagglekit demo --<knob>``) -> the demo function's argument.
# ``steps`` is each model's training steps; the slides demo's heads train in epochs over the bags instead.
KNOBS = {
    "segmentation": {"steps": "steps", "train": "n_train", "test": "n_test"},
    "multilabel": {"steps": "steps", "train": "n_train", "test": "n_test", "folds": "folds"},
    "slides": {"train": "n_train", "test": "n_test", "folds": "folds", "seeds": "n_seeds", "epochs": "epochs"},
    "volume": {"steps": "steps", "train": "n_train", "test": "n_test"},
}


def run_demos(names, out="build/demo", *, steps: int | None = None, seed: int = 0, notebook=None, log=print,
              **sizes) -> list:
    """Run the demos ``names`` (all when empty) under ``out``/<name>; print and return one table of their results.

    ``steps`` and ``sizes`` (``train``, ``test``, ``folds``, ``seeds``, ``epochs``; None: the demo's own) go to
    each named demo that has that knob (:data:`KNOBS`); a knob that none of them has is an error, and
    one that some of them lack is said in the log."""
    from kagglekit.errors import InvalidArgumentError

    names = list(names) or list(DEMOS)
    unknown = [n for n in names if n not in DEMOS]
    if unknown:
        raise InvalidArgumentError(f"unknown demo(s) {unknown}; choose from {list(DEMOS)}")
    given = {k: v for k, v in {"steps": steps, **sizes}.items() if v is not None}
    for knob in given:
        takers = [n for n in names if knob in KNOBS[n]]
        if not takers:
            having = [n for n in DEMOS if knob in KNOBS[n]]
            raise InvalidArgumentError(f"no demo among {names} has the knob {knob!r}" +
                                       (f"; {', '.join(having)} do" if having else f"; the knobs are {sorted({k for v in KNOBS.values() for k in v})}"))
        if len(takers) < len(names):
            log(f"({knob} = {given[knob]} applies to {', '.join(takers)} only)")
    rows = []
    for name in names:
        log(f"=== demo {name}: {DEMOS[name][1]}")
        kwargs = {"seed": seed, "notebook": notebook, "log": log,
                  **{KNOBS[name][k]: v for k, v in given.items() if k in KNOBS[name]}}
        result = DEMOS[name][0](Path(out), **kwargs)
        rows += [(name, what, value, result["seconds"]) for what, value in result["summary"]]
    log("")
    log("| demo | result | value | demo seconds |\n| --- | --- | ---: | ---: |")
    for name, what, value, seconds in rows:
        log(f"| {name} | {what} | {value:.4f} | {seconds:.0f} |")
    return rows
