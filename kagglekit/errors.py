"""Errors raised by kagglekit.

Every error the library raises on bad input is a :class:`KagglekitError`; its message says what was
wrong and what to do. The subclasses also inherit from the matching built-in exception so that
existing ``except ValueError`` code keeps working.
"""


class KagglekitError(Exception):
    """Base class of every error kagglekit raises on purpose."""


class InvalidArgumentError(KagglekitError, ValueError):
    """An argument has a value the function cannot work with."""


class ShapeError(KagglekitError, ValueError):
    """An array has a shape, dtype or size that does not fit."""


class ImageReadError(KagglekitError, OSError):
    """A file could not be read as an image or volume (missing, truncated, corrupt, unsupported)."""


class WeightsNotFoundError(KagglekitError, FileNotFoundError):
    """A local weights or checkpoint file is missing (kagglekit never downloads)."""


class SubmissionError(KagglekitError, ValueError):
    """Submission rows do not match the sample submission."""


class ConfigError(KagglekitError, ValueError):
    """A pipeline, kernel or dataset configuration is invalid."""
