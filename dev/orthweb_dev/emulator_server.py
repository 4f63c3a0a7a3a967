"""A local AWS emulator (moto's server) on loopback, for code that calls AWS for real.

:func:`start` launches it on 127.0.0.1 (a free port unless one is given) and waits until it answers;
:func:`moto_server` does the same as a context manager that stops it after (tests). Each server
starts empty. :meth:`MotoServer.env` gives the environment that points the AWS CLI, the SDKs and
Terraform at it, with throwaway keys.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from orthweb_dev.proc import ProcessError, free_port, stop_process, wait_until

REGION = "us-east-1"
START_TIMEOUT_S = 30.0


class MotoServerError(ProcessError):
    """The emulator did not start: the message says why and what to install."""


@dataclass(frozen=True)
class MotoServer:
    """A running emulator: its endpoint and the environment that targets it."""

    endpoint: str
    region: str = REGION

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) pointed at the emulator with fake keys."""
        env = dict(os.environ if base is None else base)
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            env.pop(var, None)
        env.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - a throwaway key the emulator accepts
            AWS_DEFAULT_REGION=self.region,
            AWS_REGION=self.region,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_CONFIG_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310
            pass


def answers(endpoint: str) -> bool:
    """Whether an emulator answers at ``endpoint``."""
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback
            return True
    except (urllib.error.URLError, OSError):
        return False


def _moto_executable() -> str:
    local = Path(sys.executable).with_name("moto_server")
    found = str(local) if local.exists() else shutil.which("moto_server")
    if not found:
        raise MotoServerError("moto_server not found: install the PyPI package 'moto[server]' (make install does)")
    return found


def start(
    port: int | None = None,
    *,
    patched: bool = True,
    log: IO[bytes] | None = None,
    detach: bool = False,
    region: str = REGION,
) -> tuple[subprocess.Popen[Any], MotoServer]:
    """Start an emulator on 127.0.0.1 and wait until it answers; the process and the server.

    ``patched`` runs :mod:`orthweb_dev.emulator` (moto with the fidelity patches that make
    ``terraform apply`` then ``plan`` converge) instead of plain ``moto_server``. ``log`` takes
    its output (default: kept for the error message); ``detach`` starts it in its own session
    so it outlives this process (the demo).
    """
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = (
        [sys.executable, "-m", "orthweb_dev.emulator", "--host", "127.0.0.1", "--port", str(port)]
        if patched
        else [_moto_executable(), "-H", "127.0.0.1", "-p", str(port)]
    )
    # A file, never a pipe: moto logs every request, and a full pipe would stall the server.
    out = log if log is not None else tempfile.TemporaryFile()  # noqa: SIM115 - closed with the server
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=detach)
    try:
        wait_until("the AWS emulator", lambda: answers(endpoint), proc=proc, timeout=START_TIMEOUT_S)
    except ProcessError as exc:
        stop_process(proc)
        tail = ""
        if log is None:  # the caller's log is the caller's to show
            out.seek(0)
            tail = out.read().decode(errors="replace")[-2000:]
            out.close()
        raise MotoServerError(f"{exc}\n{tail}".rstrip()) from None
    return proc, MotoServer(endpoint=endpoint, region=region)


@contextlib.contextmanager
def moto_server(region: str = REGION, *, patched: bool = False) -> Iterator[MotoServer]:
    """An emulator on a free port for the duration of the block (stopped after)."""
    proc, server = start(patched=patched, region=region)
    try:
        yield server
    finally:
        stop_process(proc, timeout=10)
