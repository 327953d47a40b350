"""The bag job: each slide's tissue tiles through a backbone into one bag file (``<slide>.safetensors``).

    extract_bags("train_images/", "bags/", "timm/resnet18", weights="r18.safetensors", tile=224, top_k=256)
    run_slides(BagJob("timm/resnet18", weights="r18.safetensors", tile=224), "train/*.png", "bags/",
               engine="ray", workers=2, gpus_per_worker=1)

Every bag stores the settings it was made with, and the run's manifest their hash: a rerun keeps the
bags made by the same backbone with the same settings (tile, scale, top_k, ...; not the batch size or
the device) and redoes the others. A slide without tissue is recorded as ``"empty"`` and not read again.
"""

from __future__ import annotations

from pathlib import Path

from kagglekit.errors import KagglekitError
from kagglekit.jobs.contract import Job, NothingToDo, Slide, check_options, plain_settings
from kagglekit.jobs.models import ModelRef

__all__ = ["BagJob", "extract_bags"]

SPEED_ONLY = ("batch_size", "num_workers", "device", "threads")  # how fast, not what


class BagJob(Job):
    """Run :func:`kagglekit.mil.extract_bag` on each slide and save the bag.

    backbone: a ``create`` name with ``weights`` (a local file; the model is built with ``num_classes=0``),
        a checkpoint path, or a module / callable (pickled to each worker; a plain callable needs ``name``).
    options: :func:`~kagglekit.mil.extract_bag`'s keywords (tile, scale, top_k, min_tissue, kind, threshold,
        swap_background, stain, normalize, batch_size, device, amp, ...), checked here, before any slide.
    """

    name, suffix = "bags", ".safetensors"

    def __init__(self, backbone, *, weights=None, name: str | None = None, **options):
        from kagglekit.mil.extract import extract_bag

        check_options("BagJob", extract_bag, options, 2, per_slide=("slide", "tissue"))
        self.backbone = ModelRef(backbone, weights=weights, name=name, num_classes=0)
        self.options = options
        self._model = None

    def settings(self) -> dict:
        return {"backbone": self.backbone.name, **bag_settings(self.options)}

    def setup(self) -> None:
        self._model = self.backbone.build(self.options.get("device"))

    def run(self, slide: Slide, out_path: Path) -> dict:
        from kagglekit.mil import NoTissueError, extract_bag, save_bag

        try:
            bag = extract_bag(self._model, slide.path, slide=slide.id, name=self.backbone.name, **self.options)
        except NoTissueError as exc:
            raise NothingToDo(str(exc)) from None
        bag.selection["settings"] = bag_settings(self.options)
        save_bag(bag, out_path)
        return {"tiles": len(bag), "kind": bag.selection.get("kind")}

    def complete(self, out_path: Path) -> bool:
        """A readable bag of this backbone made with these settings (a bag edited or cut since is redone)."""
        from kagglekit.mil import load_bag

        try:
            bag = load_bag(out_path, backbone=self.backbone.name)
        except (KagglekitError, OSError):
            return False
        return bag.selection.get("settings") == bag_settings(self.options)


def bag_settings(options: dict) -> dict:
    """The extraction settings a bag stores (JSON values; objects by their type's name)."""
    return plain_settings({k: v for k, v in options.items() if k not in SPEED_ONLY})


def extract_bags(slides, out_dir, backbone, *, weights=None, name: str | None = None, progress: bool = True,
                 engine: str = "local", workers: int | None = None, **options):
    """Extract the bag of every slide into ``out_dir`` (one ``<slide>.safetensors`` each, and the run's
    ``manifest.jsonl``); return the run's table as a polars DataFrame (slide, path, output, status,
    attempts, seconds, error, tiles, kind, ...). ``status``: done, skipped (kept from before), empty (no
    tissue) or failed (with the error; the other slides go on).

    ``backbone``, ``weights``, ``name``, ``options``: as :class:`BagJob`; ``engine``, ``workers``: as
    :func:`~kagglekit.jobs.run_slides`. Holds one slide's source and bag at a time (per worker)."""
    from kagglekit.jobs.runner import run_slides

    job = BagJob(backbone, weights=weights, name=name, **options)
    return run_slides(job, slides, out_dir, engine=engine, workers=workers, progress=progress).table()
