"""Out-of-fold predictions made by the kernel itself: ``segment`` with a fold's checkpoint on its held-out
images, so that the OOF probability maps are, by construction, what the kernel computes for them.

    train_folds(model_fn, masks, folds, out_dir, loss="bce", kernel=SegmentKernel(segment_config, input_dir))
    out_dir/fold<k>/oof/<id>.npy            each held-out image's probability map (float32 (H, W))
    out_dir/fold<k>/oof.parquet             id, fold, map (the .npy, relative to out_dir), rle (the written mask)
"""

from __future__ import annotations

from pathlib import Path

from kagglekit.errors import InvalidArgumentError

__all__ = ["SegmentKernel"]


class SegmentKernel:
    """A fold's OOF predictions through ``kagglekit.pipeline.segment``: ``config`` is the kernel config
    (a dict as its TOML reads: ``[inputs]``, ``[tiling]``, ``[threshold]``...; its ``[[models]]`` are
    replaced by the fold's checkpoint, its ``[output]`` writes the maps), ``input_dir`` the folder its
    ``[inputs]`` read. Picklable, for Ray."""

    def __init__(self, config: dict, input_dir):
        self.config, self.input_dir = dict(config), str(input_dir)

    def __call__(self, checkpoint: Path, ids: list[str], fold: int, out_path: Path):
        """The OOF frame of ``ids`` (id, fold, map, rle); their maps under ``out_path/oof``. An image the
        kernel cannot predict is an InvalidArgumentError naming it (a fold's OOF must be whole)."""
        import polars as pl

        from kagglekit.kaggle import read_csv_strings
        from kagglekit.pipeline import segment

        output = dict(self.config.get("output", {}))
        id_column, mask_column = output.get("id_column") or "id", output.get("mask_column") or "rle"
        sample = out_path / "held_out_sample.csv"
        sample.write_text(f"{id_column},{mask_column}\n" + "".join(f"{i},\n" for i in ids))
        output.update(sample_submission=str(sample), submission="held_out_submission.csv", probabilities="oof")
        config = {**self.config, "kind": "segment", "models": [{"path": str(checkpoint)}], "output": output}
        report = segment(config, self.input_dir, out_path)
        if report.fallback:
            raise InvalidArgumentError(f"fold {fold}: the kernel could not predict {dict(list(report.fallback.items())[:3])}; "
                                       "check the kernel config's [inputs] against the training images")
        written = read_csv_strings(out_path / "held_out_submission.csv", "held-out submission")
        rle = dict(zip(written.get_column(id_column).to_list(), written.get_column(mask_column).to_list()))
        return pl.DataFrame({"id": ids, "fold": [fold] * len(ids), "map": [f"fold{fold}/oof/{i}.npy" for i in ids],
                             "rle": [rle[i] or "" for i in ids]})
