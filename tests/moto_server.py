"""A local AWS emulator (``moto_server``) on loopback, for tests that call AWS for real.

Use :func:`moto_server` as a context manager, or the ``moto`` / ``moto_module`` fixtures (import
them into a test module: ``from moto_server import moto  # noqa: F401``; tests/ is on sys.path). Each server listens on
127.0.0.1 on a free port, starts empty, and is stopped when the block or the test ends.
:meth:`MotoServer.env` gives the environment variables that point the AWS CLI and SDKs at it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REGION = "us-east-1"
START_TIMEOUT_S = 30.0
# moto with the fidelity patches that make `terraform apply` then `plan` converge.
PATCHED_EMULATOR = Path(__file__).resolve().parents[1] / "scripts" / "emulator.py"


class MotoServerError(RuntimeError):
    """The emulator did not start: the message says why and what to install."""


@dataclass(frozen=True)
class MotoServer:
    """A running emulator: its endpoint and the environment that targets it."""

    endpoint: str
    region: str = REGION

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) pointed at the emulator with fake keys."""
        env = dict(os.environ if base is None else base)
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE"):
            env.pop(var, None)
        env.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=self.region,
            AWS_REGION=self.region,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310
            pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _executable() -> str:
    local = Path(sys.executable).with_name("moto_server")
    found = str(local) if local.exists() else shutil.which("moto_server")
    if not found:
        raise MotoServerError("moto_server not found: install the PyPI package 'moto[server]' in the venv")
    return found


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback
            return True
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def moto_server(region: str = REGION, *, patched: bool = False) -> Iterator[MotoServer]:
    """Start ``moto_server`` on 127.0.0.1 on a free port, wait until it answers, stop it after.

    ``patched`` starts ``scripts/emulator.py`` instead: the same server with the fidelity patches.
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = (
        [sys.executable, str(PATCHED_EMULATOR), "--host", "127.0.0.1", "--port", str(port)]
        if patched
        else [_executable(), "-H", "127.0.0.1", "-p", str(port)]
    )
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(endpoint):
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise MotoServerError(f"moto_server exited with {proc.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise MotoServerError(f"moto_server did not answer on {endpoint} within {START_TIMEOUT_S:.0f}s")
            time.sleep(0.1)
        yield MotoServer(endpoint=endpoint, region=region)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    """A fresh emulator for one test."""
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def moto_module() -> Iterator[MotoServer]:
    """One emulator shared by a module's tests (call ``reset()`` between them if they need it empty)."""
    with moto_server() as server:
        yield server
