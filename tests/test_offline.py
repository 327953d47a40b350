"""The offline proof: the wheel folder installs, and the notebook runs to a valid submission, with no network.

The "Kaggle image" is a new virtual environment that sees this project's environment through a
folder of symlinks (one ``.pth`` line) that leaves out kagglekit and segmentation-models-pytorch,
as the real image does. Everything in it runs under ``unshare -rn``: a new network namespace with
only a loopback interface (brought up for the Jupyter kernel's sockets), so any other connection
fails. pip runs with ``PIP_CONFIG_FILE=/dev/null`` (no configured index or find-links) and
``--no-index``: the wheel folder is the only source.

Building the wheel folder downloads segmentation-models-pytorch's wheel once (build time, not run
time); the folder is kept under build/ (git-ignored) and later runs rebuild only kagglekit's wheel.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from builders import constant_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "inference.ipynb"
WHEEL_CACHE = ROOT / "build" / "offline-proof" / "wheels"
LEFT_OUT = ("kagglekit", "__editable__", "segmentation_models_pytorch", "pyvips", "_libvips")  # not in the Kaggle image


def build_wheel_folder(kagglekit_wheel: Path) -> Path:
    """kagglekit's wheel (the session's build of the current code, conftest.py) + the cached downloads."""
    from kagglekit.delivery.wheels import Target, build_wheels, check_wheels, kaggle_image

    target = Target.local()
    image = kaggle_image()
    cached = all(any(WHEEL_CACHE.glob(f"{name}-*.whl")) for name in ("segmentation_models_pytorch", "pyvips", "pyvips_binary"))
    # cached: the from-source wheels (pyvips) built last time are taken from the cache like the downloads
    build_wheels(WHEEL_CACHE, project=None, target=target,
                 **({"find_links": [WHEEL_CACHE], "no_index": True, "from_source": (),
                     "requirements": [*image.missing, *image.from_source]} if cached else {}))
    shutil.copy(kagglekit_wheel, WHEEL_CACHE / kagglekit_wheel.name)
    check_wheels(WHEEL_CACHE, target=target)
    return WHEEL_CACHE


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def offline(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a new user and network namespace (loopback only), from ``cwd``."""
    script = 'ip link set lo up && exec "$@"'
    return subprocess.run(["unshare", "-rn", "sh", "-c", script, "sh", *cmd], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def kaggle_like(tmp_path_factory, kagglekit_wheel):
    """(python, wheel folder, work folder): a fresh venv with the image's packages, without kagglekit or smp."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("the offline proof needs util-linux `unshare` and iproute2 `ip` (CI has both)")
    wheels = build_wheel_folder(kagglekit_wheel)
    work = tmp_path_factory.mktemp("offline")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    view = work / "image-site-packages"
    view.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not entry.name.startswith(LEFT_OUT) and entry.suffix != ".pth" and entry.name != "__pycache__":
            (view / entry.name).symlink_to(entry)
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, cwd=work).stdout.strip()
    Path(venv_site, "kaggle_image.pth").write_text(f"{view}\n")
    return python, wheels, work


def imports(python: Path, cwd: Path, module: str) -> str:
    proc = subprocess.run([str(python), "-c", f"import {module}; print({module}.__file__)"], cwd=cwd,
                          env=clean_env(), capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def competition(root: Path, wheels: Path) -> None:
    """Under ``root`` (our /kaggle/input): the wheel dataset, a model dataset and a small competition."""
    import cv2
    import numpy as np

    shutil.copytree(wheels, root / "kagglekit-wheels")
    (root / "kagglekit-models").mkdir(parents=True)
    constant_checkpoint(root / "kagglekit-models" / "model.safetensors", logit=5.0)
    (root / "kagglekit-models" / "segment.toml").write_text(
        '[inputs]\nglob = "test/*.png"\n[tiling]\ntile = 64\n[[models]]\npath = "model.safetensors"\n'
        '[tta]\nviews = "hflip"\n[output]\nfallback = ""\n'
    )
    (root / "comp" / "test").mkdir(parents=True)
    for name, shape in {"s1": (70, 50), "s2": (64, 64)}.items():
        assert cv2.imwrite(str(root / "comp" / "test" / f"{name}.png"), np.full((*shape, 3), 90, np.uint8))
    (root / "comp" / "sample_submission.csv").write_text("id,rle\ns1,\ns2,\n")


def run_notebook(python: Path, work: Path, out: Path, extra_cells=()) -> subprocess.CompletedProcess:
    params = [f'INPUT_ROOT="{work / "input"}"', 'COMPETITION="comp"', f'OUTPUT_DIR="{out}"']
    cmd = [str(python), "-m", "kagglekit.delivery.notebook", str(NOTEBOOK), "--cwd", str(work), "--timeout", "600",
           "--out", str(out / "executed.ipynb")]
    for p in params:
        cmd += ["-p", p]
    for cell in extra_cells:
        cmd += ["--cell", cell]
    out.mkdir(parents=True, exist_ok=True)
    return offline(cmd, work)


def test_the_wheel_folder_installs_offline_and_the_notebook_writes_a_valid_submission(kaggle_like):
    python, wheels, work = kaggle_like
    assert imports(python, work, "torch") and imports(python, work, "nbclient")  # the image's packages are there
    assert not imports(python, work, "kagglekit") and not imports(python, work, "segmentation_models_pytorch")

    proc = offline([str(python), "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "kagglekit"], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    venv = python.parent.parent
    for module in ("kagglekit", "segmentation_models_pytorch"):
        assert imports(python, work, module).startswith(str(venv)), f"{module} was not installed into the new env"

    competition(work / "input", wheels)
    out = work / "working"
    proc = run_notebook(python, work, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    with open(out / "submission.csv", newline="") as f:
        rows = {r["id"]: r["rle"] for r in csv.DictReader(f)}
    assert rows == {"s1": f"1 {70 * 50}", "s2": f"1 {64 * 64}"}  # sigmoid(5) >= 0.5 everywhere
    assert (out / "overlay.png").is_file()
    executed = (out / "executed.ipynb").read_text()
    assert "installing kagglekit offline from" in executed and "Requirement already satisfied" in executed


def test_a_network_connection_from_the_notebook_fails_the_run(kaggle_like):
    python, wheels, work = kaggle_like
    if not imports(python, work, "kagglekit"):
        subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "kagglekit"],
                       cwd=work, env=clean_env(), check=True, capture_output=True)
    if not (work / "input").exists():
        competition(work / "input", wheels)
    out = work / "working-network"
    probe = "import socket\nsocket.create_connection(('8.8.8.8', 53), timeout=10)"
    proc = run_notebook(python, work, out, extra_cells=[probe])
    assert proc.returncode == 1
    assert "Network is unreachable" in proc.stderr
    assert not (out / "submission.csv").exists()  # the run stopped at the probe, before the pipeline
