"""A fit's resumable state: one file, ``<state_dir>/last.pt``, replaced atomically at each save.

It holds what makes the rest of the run equal an uninterrupted one: the step, the model, optimiser,
scheduler, gradient scaler and EMA states, the kept snapshots, the history, torch's random state and
the mixer's generator, and the hash of the settings that shaped them. It is read with
``torch.load(weights_only=True)``: tensors and plain values only, no pickled code.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from kagglekit._atomic import atomic_path

__all__ = ["load_state", "save_state", "settings_hash"]

logger = logging.getLogger("kagglekit.train")
STATE_FILE = "last.pt"


def settings_hash(settings: dict) -> str:
    """A short hash of the settings (JSON, keys sorted; values that JSON cannot hold by their repr)."""
    text = json.dumps(settings, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_state(state_dir: Path, state: dict) -> None:
    """Write ``state`` (tensors and plain values) as ``state_dir/last.pt``, replacing the old one atomically."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(state_dir / STATE_FILE) as tmp:
        torch.save(state, tmp)


def load_state(state_dir: Path | None, expected_hash: str) -> dict | None:
    """The saved state in ``state_dir`` when its settings hash is ``expected_hash``; None when there is
    none, or when the settings changed (then the run starts over, and says so)."""
    path = state_dir / STATE_FILE if state_dir is not None else None
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("settings_hash") != expected_hash:
        logger.warning("%s was saved with other settings: training starts over", path)
        return None
    logger.info("resuming from %s at step %d", path, state["step"])
    return state
