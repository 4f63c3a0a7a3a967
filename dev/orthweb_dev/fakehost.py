"""A fake Orthweb host for the host-script tests: its ``/etc/orthweb`` and scripts in a directory,
a Docker shim that records what it is asked, and the AWS CLI pointed at a local emulator. The
bootstrap-secrets and bootstrap-scale tests each lay out their hosts (symlinked or rendered
scripts, their own facts) and share how they run them; :func:`first_boot_host` is a host at its
first boot, with only what its user data writes, for the fetch step."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orthweb.bootstrap import HostFile
from orthweb_dev.testing import user_data_files


@dataclass
class FakeHost:
    """One host: ``root`` holds ``etc/`` (its /etc/orthweb), ``sbin/`` (its scripts) and the Docker
    shim's log; ``env`` is what its scripts run with (paths, host facts, the emulator)."""

    root: Path
    env: dict[str, str]
    last_stderr: str = field(default="", init=False)

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def secrets(self) -> Path:
        return self.etc / "secrets"

    def run_unchecked(
        self, script: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a host script with the host's environment (plus ``env``); whatever its outcome."""
        proc = subprocess.run(
            [str(self.root / "sbin" / script), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        self.last_stderr = proc.stderr
        return proc

    def run(self, script: str, *args: str, check: bool = True, env: dict[str, str] | None = None) -> list[str]:
        """Run a host script; the lines it printed (what it changed). With ``check``, it must
        succeed; without, a failure is the one line ``exit N`` (its stderr is in ``last_stderr``)."""
        proc = self.run_unchecked(script, *args, env=env)
        if check:
            assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
        if proc.returncode != 0:
            return [f"exit {proc.returncode}"]
        return [line for line in proc.stdout.splitlines() if line]

    def aws(self, *args: str) -> Any:
        """The AWS CLI (the venv's, as on the host) against the emulator; its parsed JSON output."""
        proc = subprocess.run(
            ["aws", "--output", "json", *args], env=self.env, capture_output=True, text=True, check=True
        )
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def docker_calls(self) -> list[str]:
        """What the host's scripts asked Docker to do, in order (the shim logs each call)."""
        log = self.root / "docker.log"
        return log.read_text().splitlines() if log.exists() else []


def first_boot_host(root: Path, user_data: str, env: Mapping[str, str]) -> FakeHost:
    """A host at first boot from ``user_data`` (a rendered cloud-config): the files it writes, with
    ``orthweb-fetch`` in ``root/sbin``; the fetch unpacks into ``root/fs`` (the host's /) and
    downloads into ``root/state``. ``env`` points the AWS CLI at an emulator."""
    written = user_data_files(user_data)
    sbin = root / "sbin"
    sbin.mkdir(parents=True)
    (root / "fs").mkdir()
    env_file = root / "orthweb.env"
    env_file.write_text(written["/etc/orthweb/orthweb.env"].text)
    fetch = written["/usr/local/sbin/orthweb-fetch"]
    (sbin / "orthweb-fetch").write_text(fetch.text)
    (sbin / "orthweb-fetch").chmod(fetch.mode)
    return FakeHost(
        root=root,
        env={
            **env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",  # the venv's aws
            "ORTHWEB_ENV_FILE": str(env_file),
            "ORTHWEB_ROOT": str(root / "fs"),
            "ORTHWEB_STATE_DIR": str(root / "state"),
        },
    )


def unpacked(host: FakeHost) -> dict[str, HostFile]:
    """The files the host's fetch step unpacked (under its ``root/fs``), by their path on the host."""
    fs = host.root / "fs"
    return (
        {
            f"/{path.relative_to(fs)}": HostFile(
                path=f"/{path.relative_to(fs)}", mode=stat.S_IMODE(path.stat().st_mode), text=path.read_text()
            )
            for path in sorted(fs.rglob("*"))
            if path.is_file()
        }
        if fs.exists()
        else {}
    )
