"""Finding the processes of a test's Ray cluster (they carry the MARK variable), for the shared
``ray_cluster`` fixture (conftest.py) and the Ray tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

MARK = "KAGGLEKIT_RAY_TEST_RUN"  # every process a test's cluster starts inherits it: how leftovers are found
TESTS = str(Path(__file__).parent)


def marked_processes(value: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(MARK) == value and "ray" in " ".join(p.cmdline()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def left_running(value: str, wait: float = 20.0) -> list[str]:
    """Processes still carrying ``value`` after up to ``wait`` seconds (Ray's processes exit within a few)."""
    end = time.monotonic() + wait
    while (left := marked_processes(value)) and time.monotonic() < end:
        time.sleep(0.5)
    return [" ".join(p.cmdline())[:120] for p in left if p.is_running()]
