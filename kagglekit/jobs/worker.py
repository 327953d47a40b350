"""What runs on a worker, whichever the engine: one attempt at one slide, its output published atomically."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from kagglekit.errors import KagglekitError
from kagglekit.jobs.contract import Job, NothingToDo, Slide

__all__ = ["Task", "attempt", "remove_partials", "set_up"]

log = logging.getLogger("kagglekit.jobs")

PARTIAL = ".partial-"  # in the temporary names of outputs being written (a killed run's are removed on the next)


@dataclass(frozen=True)
class Task:
    """One slide to run: its id, input file and final output path (strings, to pickle small)."""

    slide: str
    path: str
    out: str
    attempt: int = 1

    def retry(self, result: dict, retries: int) -> Task | None:
        """The next attempt after ``result``, or None: it did not fail, failed on bad input (``retry`` False),
        or this was attempt ``1 + retries``."""
        if result["status"] != "failed" or not result.get("retry", True) or self.attempt > retries:
            return None
        log.info("slide %s: attempt %d failed (%s); trying again", self.slide, self.attempt, result["error"])
        return Task(self.slide, self.path, self.out, self.attempt + 1)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` over ``final``; a folder output replaces the old folder whole."""
    if tmp.is_file():
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}{PARTIAL}old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_partials(out_dir: Path) -> None:
    """Remove the temporary outputs a killed run left in ``out_dir``."""
    for stale in out_dir.glob(f".*{PARTIAL}*"):
        _remove(stale)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def set_up(job: Job) -> str | None:
    """Call ``job.setup()``; None on success, else the error as text (every slide would fail the same way)."""
    try:
        job.setup()
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the run with it
        return f"{type(exc).__name__}: {exc}"
    return None


def attempt(job: Job, task: Task) -> dict:
    """Run ``job`` on ``task``'s slide into a temporary path beside the output, then rename it into place.

    Returns the manifest fields of the attempt: ``status`` (``"done"``, ``"empty"`` or ``"failed"``),
    ``error``, ``seconds``, ``worker`` and the job's own values; a failure from bad input (a
    :class:`~kagglekit.errors.KagglekitError`) has ``retry`` False. A failure leaves no partial output."""
    final = Path(task.out)
    tmp = final.with_name(f".{task.slide}{PARTIAL}{uuid.uuid4().hex[:8]}{job.suffix}")
    start = time.perf_counter()
    result = {"slide": task.slide, "status": "done", "error": None, "attempts": task.attempt, "worker": _worker_name()}
    try:
        info = job.run(Slide(task.slide, Path(task.path)), tmp)
        if not tmp.exists():
            raise RuntimeError(f"{type(job).__name__}.run returned without writing its output at the path it was given")
        _publish(tmp, final)
        result["info"] = dict(info or {})
    except NothingToDo as exc:
        result.update(status="empty", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one slide's failure is recorded; the others go on
        # kagglekit's own errors name bad input (a truncated file, a wrong shape): trying again cannot help
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8),
                      retry=not isinstance(exc, KagglekitError))
    finally:
        if tmp.exists():
            _remove(tmp)
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result
