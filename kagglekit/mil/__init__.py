"""Whole-slide MIL, training side: bags of tile features and what extracted them.

    Bag, save_bag(bag, path), load_bag(path, backbone=)   bags.py   a slide's tile features (N, D) float16 with their
                                                                   coordinates and the backbone that made them

Importing this package is cheap: each name is loaded from its submodule on first use.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_EXPORTS = {"Bag": "bags", "BagError": "bags", "save_bag": "bags", "load_bag": "bags"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
