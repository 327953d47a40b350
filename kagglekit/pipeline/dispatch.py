"""``run(config, ...)``: the pipeline a config's ``kind`` names, for the notebook and scripts that serve every kind."""

from __future__ import annotations

__all__ = ["run"]


def run(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None):
    """Run the pipeline kind the config's top-level ``kind`` names (default "segment"; see
    :mod:`kagglekit.pipeline.kind`) on the execute template; return its report.

    A config that cannot be read at all is run as ``segment``: it writes the fallback submission from the
    sample, then raises the config's error.
    """
    from kagglekit.pipeline.execute import execute

    return execute(config, input_dir, output_dir, base_dir=base_dir, budget=budget)
