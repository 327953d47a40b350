"""The package itself: a cheap import, a version, and errors that are both KagglekitError and built-ins."""

from __future__ import annotations

import subprocess
import sys

import kagglekit
from kagglekit import errors

HEAVY = ("torch", "timm", "albumentations", "segmentation_models_pytorch", "cv2", "polars", "sklearn", "tifffile", "scipy")


def test_import_kagglekit_loads_no_heavy_library():
    code = "import sys, kagglekit; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"import kagglekit loaded {loaded}"


def test_light_submodules_stay_light():
    code = "import sys, kagglekit.tiling, kagglekit.io; print(','.join(m for m in ('torch', 'timm', 'albumentations') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"kagglekit.tiling / kagglekit.io loaded {loaded}"


def test_errors_are_kagglekit_errors_and_builtins():
    assert kagglekit.__version__.count(".") == 2
    for cls, builtin in [(errors.InvalidArgumentError, ValueError), (errors.ShapeError, ValueError),
                         (errors.ImageReadError, OSError), (errors.WeightsNotFoundError, FileNotFoundError),
                         (errors.SubmissionError, ValueError), (errors.ConfigError, ValueError)]:
        assert issubclass(cls, errors.KagglekitError) and issubclass(cls, builtin)
