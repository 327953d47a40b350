"""Reading the small JSON files fitted on out-of-fold predictions (decision and blend files)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def read_json_file(path, error: type[Exception], what: str, writer: str, version: int, build: Callable[[dict], object]):
    """``build(data)`` of the JSON object in ``path`` without its ``format`` key (absent: ``version``), or ``error``
    naming the file when it is missing, not a JSON object, of a format above ``version``, or refused by ``build``
    (ValueError / TypeError). ``what``: "decision", "blend"; ``writer``: the kagglekit.thresholds function."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file {path} not found; write it with kagglekit.thresholds.{writer} after fitting on "
                    "out-of-fold predictions, or fix the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.pop("format", version) > version:
            raise ValueError("written by a newer kagglekit; upgrade kagglekit to read it")
        return build(data)
    except (ValueError, TypeError) as exc:
        raise error(f"{what} file {path} cannot be used: {exc}") from None
