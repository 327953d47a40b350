"""A run's manifest, ``manifest.jsonl`` in the output folder: one JSON line per finished slide (the last
line of a slide wins), appended and flushed as each slide ends, so a killed run loses at most the
line it was writing. It is compacted (one line per slide, atomically) when the next run starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kagglekit._atomic import atomic_open

__all__ = ["MANIFEST", "Manifest"]

MANIFEST = "manifest.jsonl"


class Manifest:
    """The rows of ``out_dir/manifest.jsonl`` by slide; :meth:`add` appends one and makes it durable."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / MANIFEST
        self.rows: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.rows[str(row["slide"])] = row
                except (ValueError, KeyError, TypeError):  # the half line of a killed run
                    continue
            with atomic_open(self.path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(row) + "\n" for row in self.rows.values())

    def get(self, slide: str) -> dict | None:
        return self.rows.get(slide)

    def add(self, row: dict) -> None:
        self.rows[row["slide"]] = row
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
