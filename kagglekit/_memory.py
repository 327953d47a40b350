"""Peak memory of a stretch of work: the process's resident high-water mark, or CUDA's allocator peak."""

from __future__ import annotations

from pathlib import Path

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS; Linux only, a no-op elsewhere."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def peak_rss() -> int | None:
    """Peak resident bytes since the last :func:`reset_peak_rss` (None where /proc is not there)."""
    return _status_bytes("VmHWM")


def rss() -> int | None:
    """Resident bytes now (None where /proc is not there)."""
    return _status_bytes("VmRSS")


class PeakMemory:
    """``with PeakMemory(device) as peak: ...``; then ``peak.bytes``: the peak during the block, of CUDA
    memory allocated by torch on a CUDA ``device``, else of this process's resident memory (None
    where neither can be read). On the CPU, entering resets the process's own high-water mark
    (``VmHWM``, Linux), so a caller reading it afterwards sees the peak since then."""

    def __init__(self, device=None):
        self.cuda = getattr(device, "type", None) == "cuda"
        self.device, self.bytes = device, None

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            import torch

            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self.bytes = peak_rss()
