"""``run(config, ...)``: the pipeline a config's ``kind`` names, for the notebook and scripts that serve both."""

from __future__ import annotations

__all__ = ["run"]


def run(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None):
    """Run ``segment`` or ``classify``, as the config's top-level ``kind`` says (default "segment"); return its report.

    A config that cannot be read at all is run as ``segment``: it writes the fallback submission from the
    sample, then raises the config's error.
    """
    from kagglekit.pipeline.config import kind_of

    if kind_of(config) == "classify":
        from kagglekit.pipeline.classification import classify

        return classify(config, input_dir, output_dir, base_dir=base_dir, budget=budget)
    from kagglekit.pipeline.segmentation import segment

    return segment(config, input_dir, output_dir, base_dir=base_dir, budget=budget)
