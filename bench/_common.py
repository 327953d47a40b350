"""Shared measuring and reporting for the benchmarks in bench/.

Every benchmark runs kagglekit and its peers in one process on the same data. Peak RSS per row is
measured in that same process by resetting the kernel's high-water mark (``/proc/self/clear_refs``)
before each row and reading ``VmHWM`` after it.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import re
import time
from pathlib import Path

from kagglekit import _memory
from kagglekit._atomic import atomic_open

RESULTS = Path(__file__).with_name("RESULTS.md")


def _malloc_trim() -> None:
    """Hand memory that earlier rows freed back to the OS, so that it does not count in the next row."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> None:
    """Reset this process's peak-RSS counter to its current RSS (Linux only; no-op elsewhere)."""
    gc.collect()
    _malloc_trim()
    _memory.reset_peak_rss()


def _mb(value: int | None) -> float:
    return float("nan") if value is None else value / (1 << 20)


def peak_rss_mb() -> float:
    """Peak resident set size in MB since the last :func:`reset_peak_rss`."""
    return _mb(_memory.peak_rss())


def rss_mb() -> float:
    """Current resident set size in MB."""
    return _mb(_memory.rss())


def measure(fn, *args, repeat: int = 1, **kwargs):
    """Run ``fn`` ``repeat`` times; return (best wall seconds, peak RSS MB over the runs, last result)."""
    best = float("inf")
    reset_peak_rss()
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, peak_rss_mb(), result


try:  # read when the bench script imports this module, i.e. when it starts
    _START_LOAD: float | None = os.getloadavg()[0]
except OSError:
    _START_LOAD = None


def interleaved(runs: dict, rounds: int, *args, keep_results: bool = False) -> dict:
    """Run every ``fn(*args)`` of ``runs`` (name -> fn) once per round, the methods taking turns;
    return name -> (best wall seconds, largest peak RSS MB, last result or None). Results are kept
    only with ``keep_results``: a kept whole-slide output would count in every later run's peak RSS."""
    best = {name: (float("inf"), 0.0, None) for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            seconds, peak, result = measure(fn, *args)
            best[name] = (min(best[name][0], seconds), max(best[name][1], peak), result if keep_results else None)
            del result
    return best


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, Python, torch and numpy versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        mem_gb = float("nan")
    parts = [cpu, f"{os.cpu_count()} cores", f"{mem_gb:.0f} GB RAM", f"Python {platform.python_version()}"]
    for mod in ("numpy", "torch"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    if _START_LOAD is not None:
        parts.append(f"load average {_START_LOAD:.1f} at start")
    return ", ".join(parts)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """Format rows as a GitHub markdown table (floats to 3 significant digits)."""

    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def record(section: str, body: str, machine_line: str | None = None) -> None:
    """Replace (or append) ``## section`` in bench/RESULTS.md with ``body``, stamped with date and machine."""
    stamp = f"_{datetime.date.today().isoformat()} — {machine_line or machine()}_"
    block = f"## {section}\n\n{stamp}\n\n{body.strip()}\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by `make bench`; each section by its script.\n"
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    with atomic_open(RESULTS, "w") as f:
        f.write(text)
    print(f"\n## {section}\n{stamp}\n{body}")
