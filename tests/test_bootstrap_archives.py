"""orthweb-archives, the step that mounts the archive volume where Orthanc builds archives, and
orthweb-refresh --up, which starts nothing without it. The volume itself, formatted, mounted and
filled past its size, is tested on the containers (tests/test_app_archives.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orthweb.bootstrap import USERDATA_DIR

pytestmark = pytest.mark.fast

BIN = USERDATA_DIR / "bin"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "orthweb.env").write_text("ORTHWEB_REGION=us-east-1\n")
    return {
        "PATH": os.environ["PATH"],
        "ORTHWEB_ENV_FILE": str(tmp_path / "orthweb.env"),
        "ORTHWEB_LIB": str(USERDATA_DIR / "lib"),
        "ORTHWEB_ETC": str(tmp_path / "etc"),
        "ORTHWEB_STATE_DIR": str(tmp_path / "state"),
        **extra,
    }


def test_without_the_volume_nothing_is_mounted_and_no_directory_of_the_root_volume_stands_in(tmp_path: Path) -> None:
    env = _env(tmp_path, ORTHWEB_ARCHIVE_DEVICE=str(tmp_path / "sdf"), ORTHWEB_ARCHIVE_WAIT="1")
    proc = subprocess.run([str(BIN / "orthweb-archives.sh")], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert f"the archive volume {tmp_path / 'sdf'} is not attached" in proc.stderr
    assert "replace the host" in proc.stderr
    assert not (tmp_path / "etc" / "archives").exists()


def test_a_regular_file_is_not_taken_for_the_volume(tmp_path: Path) -> None:
    (tmp_path / "sdf").write_bytes(b"\0" * 4096)
    env = _env(tmp_path, ORTHWEB_ARCHIVE_DEVICE=str(tmp_path / "sdf"), ORTHWEB_ARCHIVE_WAIT="1")
    proc = subprocess.run([str(BIN / "orthweb-archives.sh")], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "not attached" in proc.stderr
    assert (tmp_path / "sdf").read_bytes() == b"\0" * 4096  # never formatted


def test_refresh_up_starts_nothing_when_the_archive_volume_cannot_be_mounted(tmp_path: Path) -> None:
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    for step in ("secrets", "rds-ca", "db-role", "cert"):  # each step succeeds, changing nothing
        (sbin / f"orthweb-{step}").write_text("#!/bin/sh\nexit 0\n")
        (sbin / f"orthweb-{step}").chmod(0o755)
    (sbin / "orthweb-archives").symlink_to(BIN / "orthweb-archives.sh")
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "docker.log"}\n')
    docker.chmod(0o755)
    env = _env(
        tmp_path,
        ORTHWEB_SBIN=str(sbin),
        ORTHWEB_DOCKER=str(docker),
        ORTHWEB_ARCHIVE_DEVICE=str(tmp_path / "sdf"),
        ORTHWEB_ARCHIVE_WAIT="1",
    )
    for name in ("secrets", "tls", "nginx-auth"):
        (tmp_path / "etc" / name).mkdir()
    proc = subprocess.run(
        [str(BIN / "orthweb-refresh.sh"), "--up"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "not starting: the archive volume is not mounted" in proc.stderr
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert not any(" up " in call for call in calls), calls
