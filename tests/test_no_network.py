"""The suite's network guard (tests/conftest.py) turns any non-loopback connection into a failed run."""

import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

ATTEMPTS = {
    "raises": """
        import socket
        def test_connects():
            socket.create_connection(("93.184.216.34", 80), timeout=2)
    """,
    "name lookup": """
        import socket
        def test_looks_up_a_host():
            try:
                socket.getaddrinfo("huggingface.co", 443)
            except Exception:
                pass
    """,
    "swallowed": """
        import socket
        def test_connects_and_hides_it():
            try:
                socket.create_connection(("8.8.8.8", 53), timeout=2)
            except Exception:
                pass
    """,
}


def run_pytest(tmp_path, body):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_attempt.py").write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", list(ATTEMPTS))
def test_network_attempt_fails_the_run(tmp_path, case):
    done = run_pytest(tmp_path, ATTEMPTS[case])
    assert done.returncode != 0, done.stdout
    assert "tried to open a network connection" in done.stdout or "tried to reach the network" in done.stdout


def test_loopback_is_allowed(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        done = run_pytest(tmp_path, f"""
            import socket
            def test_local():
                socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2).close()
        """)
    finally:
        server.close()
    assert done.returncode == 0, done.stdout + done.stderr
