"""The package itself: a cheap import, a version, and errors that are both KagglekitError and built-ins."""

from __future__ import annotations

import kagglekit
from kagglekit import errors

from helpers import modules_loaded_by

HEAVY = ("torch", "timm", "albumentations", "segmentation_models_pytorch", "cv2", "polars", "sklearn", "tifffile", "scipy")


def test_import_kagglekit_loads_no_heavy_library():
    loaded = modules_loaded_by("import kagglekit", HEAVY)
    assert loaded == [], f"import kagglekit loaded {loaded}"


def test_light_submodules_stay_light():
    loaded = modules_loaded_by("import kagglekit.tiling, kagglekit.io, kagglekit.mil, kagglekit.data, kagglekit.jobs, "
                               "kagglekit.losses, kagglekit.train", ("torch", "timm", "albumentations", "ray"))
    assert loaded == [], f"kagglekit.tiling / io / mil / data / jobs / losses / train loaded {loaded}"


def test_the_job_runner_loads_ray_only_for_the_ray_engine():
    loaded = modules_loaded_by("from kagglekit.jobs import BagJob, PredictionJob, TileExportJob, run_slides, JOBS; "
                               "import kagglekit.jobs.runner, kagglekit.cli", ("ray",))
    assert loaded == [], f"the job runner loaded {loaded} without the Ray engine"


def test_errors_are_kagglekit_errors_and_builtins():
    assert kagglekit.__version__.count(".") == 2
    for cls, builtin in [(errors.InvalidArgumentError, ValueError), (errors.ShapeError, ValueError),
                         (errors.ImageReadError, OSError), (errors.WeightsNotFoundError, FileNotFoundError),
                         (errors.SubmissionError, ValueError), (errors.ConfigError, ValueError)]:
        assert issubclass(cls, errors.KagglekitError) and issubclass(cls, builtin)


def test_no_function_of_the_pipeline_package_is_over_60_lines():
    import ast
    from pathlib import Path

    long = []
    for path in sorted((Path(kagglekit.__file__).parent / "pipeline").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"split these: {long}"


def test_the_cli_and_the_pipeline_registry_load_no_torch():
    loaded = modules_loaded_by("import kagglekit.cli; kagglekit.cli.build_parser(); "
                               "from kagglekit.pipeline.kind import get_kind, kinds; [get_kind(k) for k in kinds()]",
                               ("torch", "timm", "ray"))
    assert loaded == [], f"building the CLI loaded {loaded}"
