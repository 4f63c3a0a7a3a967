"""The host's secret steps, run for real against a local AWS emulator with the AWS CLI:
the admin password is made once and kept, the DB secret lands in a 0400 file as a verify-full
connection URI, and a rotated DB password makes the refresh step recreate Orthanc only."""

from __future__ import annotations

import base64
import hashlib
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
from orthweb_dev.proc import wait_until
from orthweb_dev.testing import not_run, require

pytestmark = pytest.mark.emulator

BIN = USERDATA_DIR / "bin"
DB_URI = "ORTHANC__POSTGRESQL__CONNECTION_URI"
USERS = "ORTHANC__REGISTERED_USERS"
LOGINS = "logins.map"
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


def admin_secret(host: Host) -> dict[str, Any]:
    value = host.aws("secretsmanager", "get-secret-value", "--secret-id", host.admin_arn)["SecretString"]
    return dict(json.loads(value))


def login_hash(user: str, password: str) -> str:
    """What nginx's secure_link computes from a right login: base64url MD5 of the Basic header."""
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return base64.urlsafe_b64encode(hashlib.md5(header.encode()).digest()).decode().rstrip("=")  # noqa: S324


def test_first_run_creates_the_admin_password_and_the_second_keeps_it(host: Host) -> None:
    assert host.run("orthweb-secrets") == [DB_URI, USERS, LOGINS]
    first = admin_secret(host)
    assert list(first) == ["users"]
    assert list(first["users"]) == ["admin"]
    password = first["users"]["admin"]
    assert len(password) >= 32
    assert password.isascii()
    users = json.loads((host.secrets / USERS).read_text())
    assert users == {"admin": password}

    assert host.run("orthweb-secrets") == []  # nothing changed
    assert admin_secret(host) == first
    versions = host.aws("secretsmanager", "list-secret-version-ids", "--secret-id", host.admin_arn)["Versions"]
    assert len(versions) == 1


def test_an_existing_admin_password_of_the_old_shape_is_kept_and_migrated(host: Host) -> None:
    host.put_secret(host.admin_arn, {"username": "admin", "password": "kept-from-old-host"})
    host.run("orthweb-secrets")
    assert json.loads((host.secrets / USERS).read_text()) == {"admin": "kept-from-old-host"}
    assert admin_secret(host) == {"users": {"admin": "kept-from-old-host"}}


def test_adding_a_user_generates_only_its_password_and_removing_one_disables_its_login(host: Host) -> None:
    host.run("orthweb-secrets")
    admin = admin_secret(host)["users"]["admin"]
    host.env["ORTHWEB_WEB_USERS"] = "admin ann upton"
    assert host.run("orthweb-secrets") == [USERS, LOGINS]
    users = admin_secret(host)["users"]
    assert users["admin"] == admin
    assert set(users) == {"admin", "ann", "upton"}
    assert len({users["ann"], users["upton"], admin}) == 3
    assert json.loads((host.secrets / USERS).read_text()) == users
    # ann leaves: her password stays in the secret (if she comes back), but Orthanc and nginx drop her.
    host.env["ORTHWEB_WEB_USERS"] = "admin upton"
    host.run("orthweb-secrets")
    assert set(admin_secret(host)["users"]) == {"admin", "ann", "upton"}
    assert set(json.loads((host.secrets / USERS).read_text())) == {"admin", "upton"}
    assert '"ann"' not in (host.root / "etc" / "nginx-auth" / LOGINS).read_text()
    # Orthanc's users follow ORTHWEB_WEB_USERS' order (admins first, from the settings): the
    # image's health probe logs in as the first one.
    host.env["ORTHWEB_WEB_USERS"] = "upton admin"
    host.run("orthweb-secrets")
    assert list(json.loads((host.secrets / USERS).read_text())) == ["upton", "admin"]


def test_nginx_gets_a_hash_of_each_login_never_a_password(host: Host) -> None:
    host.env["ORTHWEB_WEB_USERS"] = "admin ann"
    host.run("orthweb-secrets")
    users = admin_secret(host)["users"]
    auth = host.root / "etc" / "nginx-auth"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o700
    assert stat.S_IMODE((auth / LOGINS).stat().st_mode) == 0o400
    assert sorted(p.name for p in auth.iterdir()) == [LOGINS]
    text = (auth / LOGINS).read_text()
    assert text.splitlines() == [f'"{name}" "{login_hash(name, password)}";' for name, password in users.items()]
    assert all(password not in text for password in users.values())


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
    assert actions(host.docker_calls()[calls_after_start:]) == []

    host.put_secret(host.db_arn, {"username": "orthweb", "password": "rotated-by-rds"})
    host.run("orthweb-refresh")
    assert actions(host.docker_calls()[calls_after_start:]) == [
        f"{compose} up --detach --no-deps --force-recreate orthanc"
    ]
    uri = urlsplit((host.secrets / DB_URI).read_text())
    assert uri.password == "rotated-by-rds"
    assert stat.S_IMODE((host.secrets / DB_URI).stat().st_mode) == 0o400


def actions(calls: list[str]) -> list[str]:
    """The Docker calls that change something (not the ps/inspect look-ups)."""
    return [c for c in calls if " up " in c or " kill " in c]


def test_orthanc_is_recreated_when_nginx_was_restarted_under_it(host: Host) -> None:
    if os.geteuid() != 0:
        not_run("making a second network namespace (unshare --net) needs root")
    host.run("orthweb-refresh")  # secrets, certificate: made once, so only the namespace changes below
    # A Docker that answers the refresh step's look-ups: each service's container and its pid.
    (host.root / "docker").write_text(
        f'#!/bin/sh\necho "$*" >> {host.root / "docker.log"}\n'
        'case "$*" in\n'
        '  *"ps --quiet nginx") echo nginx-container ;;\n'
        '  *"ps --quiet orthanc") echo orthanc-container ;;\n'
        f'  "inspect --format {{{{.State.Pid}}}} nginx-container") cat {host.root / "nginx.pid"} ;;\n'
        f'  "inspect --format {{{{.State.Pid}}}} orthanc-container") cat {host.root / "orthanc.pid"} ;;\n'
        "esac\n"
    )
    (host.root / "nginx.pid").write_text(str(os.getpid()))
    (host.root / "orthanc.pid").write_text(str(os.getpid()))  # same namespace: as after compose up
    calls_before = len(host.docker_calls())
    assert host.run("orthweb-refresh") == []
    assert actions(host.docker_calls()[calls_before:]) == []
    # nginx restarted: a new namespace, Orthanc still in the old one.
    other = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        wait_until("unshare", lambda: os.readlink(f"/proc/{other.pid}/ns/net") != os.readlink("/proc/self/ns/net"))
        (host.root / "nginx.pid").write_text(str(other.pid))
        calls_before = len(host.docker_calls())
        host.run("orthweb-refresh")
    finally:
        other.kill()
        other.wait()
    compose = f"compose --project-name orthweb --file {host.root / 'etc' / 'docker-compose.yml'}"
    assert actions(host.docker_calls()[calls_before:]) == [f"{compose} up --detach --no-deps --force-recreate orthanc"]


def test_a_db_secret_without_a_password_stops_the_step(host: Host) -> None:
    host.put_secret(host.db_arn, {"username": "x"})
    proc = subprocess.run(
        [str(host.root / "sbin" / "orthweb-secrets")], env=host.env, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "not JSON with username and password" in proc.stderr
