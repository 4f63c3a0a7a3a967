"""Processes and ports on loopback: the one copy of each helper the emulator, the harness, the
demo, the tests and the benchmarks use."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ProcessError(RuntimeError):
    """A command or a server did not do what was asked; the message carries its output or log tail."""


# Below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default): a port
# chosen there cannot be handed to some process's outgoing connection between the moment it is
# found free and the moment the server binds it (it happened: Orthanc's DICOM port, taken by a
# client of another test run). Other listeners can still take it; the window is short.
_LISTEN_PORTS = (20000, 32767)


def ephemeral_low(default: int = 32768) -> int:
    """The first port of the kernel's ephemeral range (what it gives outgoing connections)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


# Every port this process has handed out. A port is only probed, then closed, and the server that
# will listen on it starts later: without this record, two calls in a row (the harness asks for
# five to eight ports before it starts anything) could return the same port, and the second server
# would fail with "Address already in use" (it happened in CI: nginx's port was Orthanc's).
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the kernel's ephemeral range, and never
    handed out before by this process."""
    low, high = _LISTEN_PORTS[0], min(_LISTEN_PORTS[1], ephemeral_low() - 1)
    span = max(high - low + 1, 0)
    start = random.randrange(span) if span else 0  # noqa: S311 - spreads test ports, not a secret
    for offset in range(span):  # every port of the range once, from a random place
        port = low + (start + offset) % span
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    while True:  # no room below: the kernel's choice, still never the same port twice
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    log: Path | None = None,
    proc: subprocess.Popen[Any] | None = None,
    timeout: float = 60.0,
    interval: float = 0.1,
    describe: Callable[[], str] | None = None,
) -> None:
    """Poll ``ready()`` until true; raise :class:`ProcessError` with ``log``'s tail (or what
    ``describe`` says) when ``proc`` exits first or ``timeout`` seconds pass. Readiness is polled,
    never slept for."""
    deadline = time.monotonic() + timeout
    while not ready():
        tail = f"; log tail:\n{log_tail(log)}" if log else ""
        if describe is not None and time.monotonic() > deadline:
            tail = f":\n{describe()}"
        if proc is not None and proc.poll() is not None:
            raise ProcessError(f"{what} exited with {proc.returncode}{tail}")
        if time.monotonic() > deadline:
            raise ProcessError(f"{what} not ready within {timeout:.0f}s{tail}")
        time.sleep(interval)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` capturing text output; raise :class:`ProcessError` with the output on failure."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise ProcessError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 20) -> None:
    """Terminate ``proc`` (then kill it after ``timeout`` seconds); nothing if it already ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pid: int, timeout: float = 10) -> None:
    """SIGTERM the process group led by ``pid`` (a background server) and wait for it to go."""
    if not pid_alive(pid):
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
