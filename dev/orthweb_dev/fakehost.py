"""A fake Orthweb host for the host-script tests: its ``/etc/orthweb`` and scripts in a directory,
a Docker shim that records what it is asked, and the AWS CLI pointed at a local emulator. The
bootstrap-secrets and bootstrap-scale tests each lay out their hosts (symlinked or rendered
scripts, their own facts) and share how they run them."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
