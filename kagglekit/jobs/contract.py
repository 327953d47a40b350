"""The job contract: a small picklable object that builds what it needs once per worker and turns one
slide into one output.

    class Thumbnails(Job):
        name, suffix = "thumbnails", ".png"
        def __init__(self, side=512): self.side = side
        def settings(self): return {"side": self.side}
        def run(self, slide, out_path):
            cv2.imwrite(str(out_path), open_image(slide).thumbnail(self.side)[..., ::-1])

``run`` writes ``out_path`` (a file with the job's ``suffix``; a folder when the suffix is ``""``). The
runner gives it a temporary name beside the final one and renames it when ``run`` returns, so an
output that exists under its final name is complete. ``settings()`` names everything that changes
the output (not how fast it is made): a rerun with other settings redoes every slide.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from kagglekit.errors import InvalidArgumentError, KagglekitError

__all__ = ["Job", "JobSetupError", "NothingToDo", "Slide", "check_options", "plain_settings", "settings_hash"]


@dataclass(frozen=True)
class Slide:
    """The slide :meth:`Job.run` is given: its ``id`` (the output's name) and its file ``path``. It is
    path-like, so ``open_image(slide)`` and ``Path(slide)`` work."""

    id: str
    path: Path

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


class NothingToDo(KagglekitError):
    """Raised by :meth:`Job.run` for a slide that has no output (e.g. no tissue): recorded as ``"empty"``,
    not retried, and not read again by a rerun with the same settings."""


class JobSetupError(KagglekitError, RuntimeError):
    """A job's :meth:`Job.setup` failed: no slide can run, so the run stops with this one error."""


class Job:
    """Base class of per-slide jobs (see the module docstring). Instances are pickled to the workers, so
    keep them small: paths and options, not models. Build the model in :meth:`setup` into an attribute
    whose name starts with ``_``: those stay on the worker that built them (they are not pickled)."""

    name: str = "job"
    suffix: str = ""

    def settings(self) -> dict:
        """JSON-able values that decide the output (their hash is kept per slide in the manifest)."""
        return {}

    def setup(self) -> None:
        """Build what :meth:`run` needs (a model on this worker's device); called once per worker process."""

    def run(self, slide: Slide, out_path: Path) -> dict | None:
        """Write the output of ``slide`` (path-like, with its ``id``) at ``out_path``; return a few JSON values for the
        manifest (e.g. ``{"tiles": 212}``), or None. Raise :class:`NothingToDo` when there is nothing to write."""
        raise NotImplementedError(f"{type(self).__name__}.run")

    def complete(self, out_path: Path) -> bool:
        """Whether the output at ``out_path`` can be kept on a rerun (default: it exists)."""
        return out_path.exists()

    def finish(self, out_dir: Path, outputs: dict[str, Path]) -> None:
        """Called once in the driver after the run with every slide's finished output (e.g. to write one index)."""

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def check_options(job: str, function, options: dict, positional: int, per_slide=()) -> None:
    """Refuse, before any slide runs, ``options`` that ``function`` (called with ``positional`` arguments
    first) does not take, and the ``per_slide`` ones that cannot be one value for every slide."""
    import inspect

    try:
        inspect.signature(function).bind(*[None] * positional, **options)
    except TypeError as exc:
        raise InvalidArgumentError(f"{job}: {exc} (options go to {function.__module__.rsplit('.', 1)[0]}."
                                   f"{function.__name__})") from None
    for name in per_slide:
        if name in options:
            raise InvalidArgumentError(f"{job}: {name}= is per slide; it cannot be one option for all slides")


def plain_settings(value):
    """``value`` as JSON values: mappings sorted by key, sequences as lists, other objects by their type's name."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain_settings(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [plain_settings(v) for v in value]
    return type(value).__name__


def settings_hash(job: Job) -> str:
    """16 hex digits over the job's name and settings: what a manifest row is compared on."""
    text = json.dumps({"job": job.name, "settings": plain_settings(job.settings())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
