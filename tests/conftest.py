"""Test-wide guard: any attempt to reach the network (a connection or a name lookup) fails the run.

The guard is installed when pytest starts, before test modules are imported, so that imports at
collection time (a library's update check, a hub download) are caught too. An attempt raises
``NetworkAccessError`` where it happens, and even if the code under test swallows that error the
run ends failed, listing the attempts.

Below the guard are the fixtures that more than one test module uses; the plain builders behind
them are in builders.py.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# Tests import albumentations themselves (as an oracle), not only through kagglekit.augment, which
# sets this too: without it albumentations asks PyPI for a newer version at import time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# OpenMP threads (torch's, OpenCV's) that wait for work sleep instead of spinning. The suite runs notebook
# kernels, spawned workers and a Ray cluster beside this process on a 2-core machine, where spinning
# threads starve the others (test_predict.py: 77 s spinning, 12 s passive on a busy 2-core CI machine).
# Set here, before any test module imports torch; subprocesses inherit it. Results do not change.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
_ATTEMPTS: list = []
_ORIGINALS = {}


class NetworkAccessError(RuntimeError):
    """Raised when code under test tries to reach the network."""


def _is_local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    return host is None or str(host).startswith(_LOOPBACK)


def _refuse(what: str, target):
    _ATTEMPTS.append(target)
    raise NetworkAccessError(f"test tried to {what} {target!r}; kagglekit must not touch the network")


def _guard_connect(method):
    def connect(self, address, *args, **kwargs):
        if isinstance(address, tuple) and address and not _is_local(address[0]):  # (AF_UNIX paths are str)
            _refuse("open a network connection to", address)
        return method(self, address, *args, **kwargs)

    return connect


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        _refuse("look up the host", host)
    return _ORIGINALS["getaddrinfo"](host, *args, **kwargs)


def pytest_addoption(parser):
    parser.addoption("--demo-check", action="store_true",
                     help="run only the full-size demo claims (tests marked demo; `make demo-check`); "
                          "without it they are deselected")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``demo`` run the demos at full size and assert their claims: ``make demo-check``
    (``pytest --demo-check``) runs them alone; every other run deselects them (listed as deselected)."""
    check = config.getoption("--demo-check")
    keep = [item for item in items if (item.get_closest_marker("demo") is not None) == check]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


def pytest_configure(config):
    _ORIGINALS.update(connect=socket.socket.connect, connect_ex=socket.socket.connect_ex, getaddrinfo=socket.getaddrinfo)
    socket.socket.connect = _guard_connect(_ORIGINALS["connect"])
    socket.socket.connect_ex = _guard_connect(_ORIGINALS["connect_ex"])
    socket.getaddrinfo = _guarded_getaddrinfo


def pytest_sessionfinish(session, exitstatus):
    if _ATTEMPTS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nFAILED: code under test tried to reach the network: {_ATTEMPTS}")


def pytest_unconfigure(config):
    socket.socket.connect = _ORIGINALS["connect"]
    socket.socket.connect_ex = _ORIGINALS["connect_ex"]
    socket.getaddrinfo = _ORIGINALS["getaddrinfo"]


# Shared fixtures. They import the builders when they run, not here: test_no_network.py copies this
# file alone into an empty folder, where the guard must still load.


@pytest.fixture(scope="module")
def links(tmp_path_factory) -> Path:
    """A find-links folder: wheels that fit the Kaggle target, wheels that do not, and an sdist-only package."""
    from builders import make_sdist, make_wheel

    folder = tmp_path_factory.mktemp("links")
    make_wheel(folder, "tinywheel", "1.0", ["tinydep>=0.2", 'oldonly; python_version < "3.12"', "docsonly; extra == 'docs'"])
    make_wheel(folder, "tinydep", "0.3")
    make_wheel(folder, "platwheel", "2.0", tag="cp312-cp312-manylinux_2_28_x86_64")
    make_wheel(folder, "legacywheel", "1.0", tag="cp312-cp312-manylinux2014_x86_64")
    make_wheel(folder, "toonew", "1.0", tag="cp312-cp312-manylinux_2_39_x86_64")
    make_wheel(folder, "otherpython", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    make_sdist(folder, "tinysdist", "0.1")
    return folder


@pytest.fixture()
def bundle_project(tmp_path) -> Path:
    """A project folder ready for ``kagglekit bundle`` (see ``builders.bundle_folder``)."""
    from builders import bundle_folder

    return bundle_folder(tmp_path / "project")


@pytest.fixture(scope="session")
def kagglekit_wheel(tmp_path_factory) -> Path:
    """kagglekit's wheel, built once for the session from a clean copy of this source tree (no build/ or
    egg-info) with ``build_wheels(requirements=[])``; test_wheels.py checks it, test_offline.py installs it."""
    import shutil

    from kagglekit.delivery.wheels import build_wheels

    repo = Path(__file__).resolve().parents[1]
    project = tmp_path_factory.mktemp("kagglekit-src")
    shutil.copytree(repo / "kagglekit", project / "kagglekit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        if (repo / name).exists():
            shutil.copy(repo / name, project / name)
    wheels = build_wheels(tmp_path_factory.mktemp("kagglekit-wheel"), project=project, requirements=[], isolated=True)
    assert len(wheels) == 1, wheels  # requirements=[]: the project's own wheel alone
    return wheels[0]


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the session (2 CPUs, no dashboard); the workers import the tests' modules."""
    import sys

    import ray
    from raytools import MARK, TESTS, left_running

    value = f"session-{os.getpid()}"
    os.environ[MARK] = value
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([TESTS, *sys.path])}})
    del os.environ[MARK]  # the cluster's processes have it; later tests' own subprocesses must not
    yield ray
    ray.shutdown()
    assert left_running(value) == [], "Ray processes were left running after the session"
