"""Test-wide guard: any attempt to reach the network (a connection or a name lookup) fails the run.

The guard is installed when pytest starts, before test modules are imported, so that imports at
collection time (a library's update check, a hub download) are caught too. An attempt raises
``NetworkAccessError`` where it happens, and even if the code under test swallows that error the
run ends failed, listing the attempts.
"""

from __future__ import annotations

import os
import socket

import pytest

# Tests import albumentations themselves (as an oracle), not only through kagglekit.augment, which
# sets this too: without it albumentations asks PyPI for a newer version at import time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

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
