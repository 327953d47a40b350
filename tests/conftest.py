"""Test-wide guards: any attempt to open a network connection fails the test run."""

from __future__ import annotations

import socket

import pytest

_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")


class NetworkAccessError(RuntimeError):
    """Raised when code under test tries to reach the network."""


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = str(address[0]) if isinstance(address, tuple) and address else ""
    return host.startswith(_LOOPBACK)


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Patch socket connects for the whole session: loopback and unix sockets only."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    attempts: list = []

    def guarded(method):
        def wrapper(self, address, *args, **kwargs):
            if not _is_local(address):
                attempts.append(address)
                raise NetworkAccessError(f"test tried to open a network connection to {address!r}")
            return method(self, address, *args, **kwargs)

        return wrapper

    original_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host, *args, **kwargs):
        # name lookups reach the network too (and libraries retry them for a long time)
        if host is not None and not _is_local((host.decode() if isinstance(host, bytes) else str(host),)):
            attempts.append(host)
            raise NetworkAccessError(f"test tried to look up the host {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded(original_connect)
    socket.socket.connect_ex = guarded(original_connect_ex)
    socket.getaddrinfo = guarded_getaddrinfo
    yield attempts
    socket.socket.connect = original_connect
    socket.socket.connect_ex = original_connect_ex
    socket.getaddrinfo = original_getaddrinfo
    assert not attempts, f"code under test tried to reach the network: {attempts}"
