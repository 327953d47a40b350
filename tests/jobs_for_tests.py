"""Jobs the job-runner tests run, in a module of their own so that Ray's worker processes can import them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from kagglekit.jobs import Job, NothingToDo


class Copy(Job):
    """Writes the slide file's bytes ``k`` times. Appends ``<slide> <pid>`` to ``log`` at each attempt;
    kills its own process at the first attempt of a slide in ``die_once``; always raises on ``fail``;
    has nothing to write for ``empty``; and SIGKILLs its process (the driver, on the local engine) on
    ``kill_at``."""

    name, suffix = "copy", ".bin"

    def __init__(self, log, k=1, die_once=(), fail=(), empty=(), kill_at=None, setup_fails=False):
        self.log, self.k, self.die_once, self.fail, self.empty = str(log), k, tuple(die_once), tuple(fail), tuple(empty)
        self.kill_at, self.setup_fails = kill_at, setup_fails

    def settings(self):
        return {"k": self.k}

    def setup(self):
        if self.setup_fails:
            raise RuntimeError("no model here")
        self._ready = True

    def run(self, slide, out_path):
        assert self._ready
        with open(self.log, "a") as f:
            f.write(f"{slide.id} {os.getpid()}\n")
        mark = Path(self.log).with_name(f"died-{slide.id}")
        if slide.id in self.die_once and not mark.exists():
            mark.touch()
            os._exit(3)
        if slide.id == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if slide.id in self.fail:
            raise ValueError(f"{slide.id} is always bad")
        if slide.id in self.empty:
            raise NothingToDo(f"{slide.id} has nothing")
        out_path.write_bytes(Path(slide).read_bytes() * self.k)
        return {"bytes": out_path.stat().st_size}


def attempts(log) -> list[str]:
    """The slides a :class:`Copy` job was run on, in order."""
    return [line.split()[0] for line in Path(log).read_text().splitlines()] if Path(log).exists() else []
