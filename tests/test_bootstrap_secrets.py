"""The host's secret steps, run for real against a local AWS emulator with the AWS CLI:
the admin password is made once and kept, the DB secret lands in a 0400 file as a verify-full
connection URI, and a rotated DB password makes the refresh step recreate Orthanc only."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from orthweb.bootstrap import USERDATA_DIR
from orthweb_dev.emulator_server import MotoServer, moto_server
from orthweb_dev.testing import require

pytestmark = pytest.mark.emulator

BIN = USERDATA_DIR / "bin"
DB_URI = "ORTHANC__POSTGRESQL__CONNECTION_URI"
USERS = "ORTHANC__REGISTERED_USERS"
# Characters a generated RDS password may hold that a URI must escape.
DB_PASSWORD = "p@ss:w/rd?#%&$x"


@dataclass
class Host:
    """A fake host: its /etc/orthweb in a temp dir, its scripts, and the secrets they read."""

    root: Path
    env: dict[str, str]
    db_arn: str
    admin_arn: str

    @property
    def secrets(self) -> Path:
        return self.root / "etc" / "secrets"

    def run(self, script: str, *args: str) -> list[str]:
        """Run a host script; return the lines it printed (what changed)."""
        proc = subprocess.run(
            [str(self.root / "sbin" / script), *args], env=self.env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
        return [line for line in proc.stdout.splitlines() if line]

    def aws(self, *args: str) -> Any:
        """The AWS CLI (the venv's, as on the host) against the emulator; parsed JSON output."""
        proc = subprocess.run(
            ["aws", "--output", "json", *args], env=self.env, capture_output=True, text=True, check=True
        )
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def put_secret(self, arn: str, value: dict[str, str]) -> None:
        self.aws("secretsmanager", "put-secret-value", "--secret-id", arn, "--secret-string", json.dumps(value))

    def docker_calls(self) -> list[str]:
        log = self.root / "docker.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def emulator() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def host(tmp_path: Path, emulator: MotoServer) -> Host:
    require("jq", "jq")
    require("openssl", "openssl")
    emulator.reset()
    (tmp_path / "etc").mkdir()
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    for script in BIN.glob("orthweb-*.sh"):
        (sbin / script.stem).symlink_to(script)
    # The RDS CA download needs the internet; test_bootstrap_cert covers it against loopback.
    (sbin / "orthweb-rds-ca").unlink()
    (sbin / "orthweb-rds-ca").write_text("#!/bin/sh\nexit 0\n")
    (sbin / "orthweb-rds-ca").chmod(0o755)
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "docker.log"}\n')
    docker.chmod(0o755)
    (tmp_path / "orthweb.env").write_text(
        "ORTHWEB_REGION=us-east-1\nORTHWEB_DB_ADDRESS=db.example.internal\nORTHWEB_DB_PORT=5432\n"
        "ORTHWEB_DB_NAME=orthanc\nORTHWEB_SITE_NAME=\n"
    )
    env = emulator.env()
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",  # the venv's aws
        ORTHWEB_ENV_FILE=str(tmp_path / "orthweb.env"),
        ORTHWEB_LIB=str(USERDATA_DIR / "lib"),
        ORTHWEB_ETC=str(tmp_path / "etc"),
        ORTHWEB_SBIN=str(sbin),
        ORTHWEB_DOCKER=str(docker),
        ORTHWEB_IMDS_URL="http://127.0.0.1:9",  # nothing there: every host fact is given below
        ORTHWEB_PUBLIC_HOSTNAME="ec2-203-0-113-10.compute-1.amazonaws.com",
        ORTHWEB_LOCAL_HOSTNAME="ip-10-64-1-10.ec2.internal",
        ORTHWEB_PUBLIC_IPV4="203.0.113.10",
        ORTHWEB_LOCAL_IPV4="10.64.1.10",
    )
    host = Host(root=tmp_path, env=env, db_arn="", admin_arn="")
    db_secret = {"username": "orthweb", "password": DB_PASSWORD}
    host.db_arn = host.aws(
        "secretsmanager", "create-secret", "--name", "rds!db-test", "--secret-string", json.dumps(db_secret)
    )["ARN"]
    # No value, like the stack's admin secret.
    host.admin_arn = host.aws("secretsmanager", "create-secret", "--name", "orthweb/orthanc-admin-test")["ARN"]
    with (tmp_path / "orthweb.env").open("a") as facts:
        facts.write(f"ORTHWEB_DB_SECRET_ARN={host.db_arn}\nORTHWEB_ADMIN_SECRET_ARN={host.admin_arn}\n")
    return host


def admin_secret(host: Host) -> dict[str, str]:
    value = host.aws("secretsmanager", "get-secret-value", "--secret-id", host.admin_arn)["SecretString"]
    return dict(json.loads(value))


def test_first_run_creates_the_admin_password_and_the_second_keeps_it(host: Host) -> None:
    assert host.run("orthweb-secrets") == [DB_URI, USERS]
    first = admin_secret(host)
    assert first["username"] == "admin"
    assert len(first["password"]) >= 32
    assert first["password"].isascii()
    users = json.loads((host.secrets / USERS).read_text())
    assert users == {"admin": first["password"]}

    assert host.run("orthweb-secrets") == []  # nothing changed
    assert admin_secret(host) == first
    versions = host.aws("secretsmanager", "list-secret-version-ids", "--secret-id", host.admin_arn)["Versions"]
    assert len(versions) == 1


def test_an_existing_admin_password_is_read_not_replaced(host: Host) -> None:
    host.put_secret(host.admin_arn, {"username": "admin", "password": "kept-from-old-host"})
    host.run("orthweb-secrets")
    assert json.loads((host.secrets / USERS).read_text()) == {"admin": "kept-from-old-host"}
    assert admin_secret(host)["password"] == "kept-from-old-host"


def test_db_secret_becomes_a_root_only_verify_full_connection_uri(host: Host) -> None:
    host.run("orthweb-secrets")
    assert stat.S_IMODE(host.secrets.stat().st_mode) == 0o700
    for name in (DB_URI, USERS):
        assert stat.S_IMODE((host.secrets / name).stat().st_mode) == 0o400
    assert sorted(p.name for p in host.secrets.iterdir()) == [DB_URI, USERS]  # no temp file left behind
    uri = urlsplit((host.secrets / DB_URI).read_text())
    assert uri.scheme == "postgresql"
    assert (unquote(uri.username or ""), unquote(uri.password or "")) == ("orthweb", DB_PASSWORD)
    assert (uri.hostname, uri.port, uri.path) == ("db.example.internal", 5432, "/orthanc")
    assert parse_qs(uri.query) == {"sslmode": ["verify-full"], "sslrootcert": ["/etc/orthweb/rds-ca.pem"]}


def test_rotated_db_secret_is_detected_and_only_orthanc_is_recreated(host: Host) -> None:
    host.run("orthweb-refresh", "--up")
    compose = f"compose --project-name orthweb --file {host.root / 'etc' / 'docker-compose.yml'}"
    # Fresh containers read the new files: no recreate right after the first start.
    assert host.docker_calls() == [f"{compose} ps --quiet", f"{compose} up --detach --remove-orphans"]
    calls_after_start = len(host.docker_calls())

    host.run("orthweb-refresh")  # the timer, nothing rotated
    assert len(host.docker_calls()) == calls_after_start

    host.put_secret(host.db_arn, {"username": "orthweb", "password": "rotated-by-rds"})
    host.run("orthweb-refresh")
    assert host.docker_calls()[calls_after_start:] == [f"{compose} up --detach --no-deps --force-recreate orthanc"]
    uri = urlsplit((host.secrets / DB_URI).read_text())
    assert uri.password == "rotated-by-rds"
    assert stat.S_IMODE((host.secrets / DB_URI).stat().st_mode) == 0o400


def test_a_db_secret_without_a_password_stops_the_step(host: Host) -> None:
    host.put_secret(host.db_arn, {"username": "x"})
    proc = subprocess.run(
        [str(host.root / "sbin" / "orthweb-secrets")], env=host.env, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "not JSON with username and password" in proc.stderr
