"""The tile export job: each slide's tissue tiles (the top-K, as bags choose them) as PNG files, and one
index table for the folder, the pre-tiled training set the UBC-OCEAN write-ups trained from.

    run_slides(TileExportJob(tile=256, scale={"tma": 0.5, "wsi": 1.0}, top_k=64), "train/*.png", "tiles/")
    # tiles/<slide>/<y>_<x>.png (uint8 RGB), tiles/<slide>/index.csv, and tiles/tiles.csv for all slides

A tile is planned and read by :mod:`kagglekit.tiling.slides`, as :func:`kagglekit.mil.extract_bag` reads
it (stain-normalised, background swapped, resized to ``tile``), so a model trained on these tiles sees
what the bag backbone sees.
"""

from __future__ import annotations

from pathlib import Path

from kagglekit.jobs.contract import Job, NothingToDo, Slide, check_options, plain_settings

__all__ = ["INDEX", "TileExportJob"]

INDEX = "tiles.csv"
OPTIONS = ("tile", "scale", "min_tissue", "top_k", "threshold", "kind", "tma_max_side", "thumbnail_side")


class TileExportJob(Job):
    """Write each slide's tiles into the folder ``<slide>/`` with its ``index.csv`` (file, y, x, side: the
    level-0 window); :meth:`finish` writes ``tiles.csv`` (slide, file relative to the output folder, y, x,
    side, tile, kind) for every finished slide. ``swap_background`` and ``stain``: as
    :func:`~kagglekit.mil.extract_bag`; the other options: as :func:`~kagglekit.tiling.plan_tiles`.
    Holds the slide's source (a PNG above 512 MB decoded is streamed: the thumbnail's pass, then the rows
    down to the last selected tile, a strip of the slide's width at a time, never the slide) and one tile
    at a time."""

    name, suffix = "tiles", ""

    def __init__(self, *, swap_background=False, stain=None, **options):
        from kagglekit.tiling.slides import plan_tiles, swaps_background

        check_options("TileExportJob", plan_tiles, options, 1, per_slide=("tissue",))
        swaps_background(swap_background, "auto")  # checked here, in the driver
        self.swap_background, self.stain, self.options = swap_background, stain, options

    def settings(self) -> dict:
        return plain_settings({**self.options, "swap_background": self.swap_background, "stain": self.stain})

    def run(self, slide: Slide, out_path: Path) -> dict:
        import cv2
        import polars as pl

        from kagglekit.io import open_image
        from kagglekit.tiling.slides import plan_tiles, swaps_background, tile_reader

        source = open_image(slide)
        try:
            plan = plan_tiles(source, **self.options)
            if not len(plan.coords):
                raise NothingToDo(f"slide {slide.id!r}: no {plan.side} px tile has enough tissue")
            swap = swaps_background(self.swap_background, plan.kind)
            read = tile_reader(source, plan, swap=swap, stain=self.stain, batch_size=16)
            out_path.mkdir()
            files = []
            for i, (y, x) in enumerate(plan.coords):
                name = f"{int(y)}_{int(x)}.png"
                pixels = read(i)
                if not cv2.imwrite(str(out_path / name), pixels[..., ::-1] if pixels.shape[-1] == 3 else pixels):
                    raise OSError(f"cannot write {out_path / name}")
                files.append(name)
        finally:
            if hasattr(source, "close"):
                source.close()
        pl.DataFrame({"file": files, "y": plan.coords[:, 0], "x": plan.coords[:, 1], "side": [plan.side] * len(files),
                      "tile": [plan.tile] * len(files), "kind": [plan.kind] * len(files)}).write_csv(out_path / "index.csv")
        return {"tiles": len(files), "kind": plan.kind}

    def complete(self, out_path: Path) -> bool:
        return (out_path / "index.csv").is_file()

    def finish(self, out_dir: Path, outputs: dict[str, Path]) -> None:
        """Write ``out_dir/tiles.csv``, the index of every finished slide's tiles (atomically)."""
        import polars as pl

        from kagglekit._atomic import atomic_path

        parts = [pl.read_csv(folder / "index.csv").with_columns(pl.lit(slide).alias("slide"),
                                                                 (pl.lit(f"{folder.name}/") + pl.col("file")).alias("file"))
                 for slide, folder in outputs.items()]
        if not parts:
            return
        table = pl.concat(parts).select("slide", "file", "y", "x", "side", "tile", "kind")
        with atomic_path(out_dir / INDEX) as tmp:
            table.write_csv(tmp)
