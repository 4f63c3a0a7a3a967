"""The host's secret steps, run for real against a local AWS emulator with the AWS CLI:
the admin password is made once and kept, the DB secret lands in a 0400 file as a verify-full
connection URI, a rotated DB password makes the refresh step recreate Orthanc only, and a
re-create that failed is tried again at the next run."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
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
from orthweb.settings import MONITOR_IDENTITY
from orthweb_dev.emulator_server import MotoServer, moto_server, start
from orthweb_dev.fakehost import FakeHost
from orthweb_dev.proc import free_port, stop_process, wait_until
from orthweb_dev.testing import command_lines, db_app_password, not_run, record_command_lines, require

pytestmark = pytest.mark.emulator

BIN = USERDATA_DIR / "bin"
DB_URI = "ORTHANC__POSTGRESQL__CONNECTION_URI"
USERS = "ORTHANC__REGISTERED_USERS"
LOGINS = "logins.map"
# The monitoring identity's password (userdata/lib/common.sh, monitor_password).
MONITOR_FILE = "orthweb-monitor"
# Characters a generated RDS password may hold that a URI must escape.
DB_PASSWORD = "p@ss:w/rd?#%&$x"


@dataclass
class Host(FakeHost):
    """A fake host with the stack's two secrets: RDS's master secret and the admin secret."""

    db_arn: str = ""
    admin_arn: str = ""

    def put_secret(self, arn: str, value: dict[str, Any]) -> None:
        self.aws("secretsmanager", "put-secret-value", "--secret-id", arn, "--secret-string", json.dumps(value))


@pytest.fixture(scope="module")
def emulator() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


def fake_host(tmp_path: Path, emulator: MotoServer) -> Host:
    """A host's /etc/orthweb in ``tmp_path``, its scripts, and a Docker shim, pointed at ``emulator``
    (which need not be running yet); its secrets are not created here."""
    require("jq", "jq")
    require("openssl", "openssl")
    (tmp_path / "etc").mkdir()
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    for script in BIN.glob("orthweb-*.sh"):
        (sbin / script.stem).symlink_to(script)
    # The RDS CA download needs the internet; test_bootstrap_cert covers it against loopback. The
    # database role step needs PostgreSQL: tests/test_app_db_role.py runs it against the harness's.
    # The archive volume step needs a block device to mount: tests/test_app_archives.py gives it a
    # loop device, tests/test_bootstrap_archives.py its refusals.
    for step in ("orthweb-rds-ca", "orthweb-db-role", "orthweb-archives"):
        (sbin / step).unlink()
        (sbin / step).write_text("#!/bin/sh\nexit 0\n")
        (sbin / step).chmod(0o755)
    docker = tmp_path / "docker"
    # Records each call; fails a re-create while the file docker-fails exists (Docker Hub down, say).
    docker.write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path / "docker.log"}\n'
        f'case "$*" in *force-recreate*) [ ! -e {tmp_path / "docker-fails"} ] || exit 1 ;; esac\n'
    )
    docker.chmod(0o755)
    (tmp_path / "orthweb.env").write_text(
        "ORTHWEB_REGION=us-east-1\nORTHWEB_DB_ADDRESS=db.example.internal\nORTHWEB_DB_PORT=5432\n"
        "ORTHWEB_DB_NAME=orthanc\nORTHWEB_DB_ROLE=orthanc_app\nORTHWEB_SITE_NAME=\n"
    )
    env = emulator.env()
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",  # the venv's aws
        ORTHWEB_ENV_FILE=str(tmp_path / "orthweb.env"),
        ORTHWEB_LIB=str(USERDATA_DIR / "lib"),
        ORTHWEB_ETC=str(tmp_path / "etc"),
        ORTHWEB_STATE_DIR=str(tmp_path / "state"),
        ORTHWEB_SBIN=str(sbin),
        # Fast back-off: these tests are about what is retried, not how long it waits.
        ORTHWEB_RETRY_ATTEMPTS="2",
        ORTHWEB_RETRY_DELAY="1",
        ORTHWEB_RETRY_MAX_DELAY="1",
        ORTHWEB_DOCKER=str(docker),
        ORTHWEB_IMDS_URL="http://127.0.0.1:9",  # nothing there: every host fact is given below
        ORTHWEB_PUBLIC_HOSTNAME="ec2-203-0-113-10.compute-1.amazonaws.com",
        ORTHWEB_LOCAL_HOSTNAME="ip-10-64-1-10.ec2.internal",
        ORTHWEB_PUBLIC_IPV4="203.0.113.10",
        ORTHWEB_LOCAL_IPV4="10.64.1.10",
    )
    return Host(root=tmp_path, env=env, db_arn="", admin_arn="")


def set_secret_ids(host: Host, db: str, admin: str) -> None:
    host.db_arn, host.admin_arn = db, admin
    with (host.root / "orthweb.env").open("a") as facts:
        facts.write(f"ORTHWEB_DB_SECRET_ARN={db}\nORTHWEB_ADMIN_SECRET_ARN={admin}\n")


def create_secrets(host: Host, db_name: str = "rds!db-test", admin_name: str = "orthweb/orthanc-admin-test") -> None:
    """The stack's two secrets: RDS's master secret with a value, the admin secret without one."""
    db_secret = {"username": "orthweb", "password": DB_PASSWORD}
    db = host.aws("secretsmanager", "create-secret", "--name", db_name, "--secret-string", json.dumps(db_secret))
    admin = host.aws("secretsmanager", "create-secret", "--name", admin_name)
    if not host.db_arn:
        set_secret_ids(host, db["ARN"], admin["ARN"])


@pytest.fixture
def host(tmp_path: Path, emulator: MotoServer) -> Host:
    emulator.reset()
    host = fake_host(tmp_path, emulator)
    create_secrets(host)
    return host


def admin_secret(host: Host) -> dict[str, Any]:
    value = host.aws("secretsmanager", "get-secret-value", "--secret-id", host.admin_arn)["SecretString"]
    return dict(json.loads(value))


def login_hash(user: str, password: str) -> str:
    """What nginx's secure_link computes from a right login: base64url MD5 of the Basic header."""
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return base64.urlsafe_b64encode(hashlib.md5(header.encode()).digest()).decode().rstrip("=")  # noqa: S324


def web_logins(host: Host) -> dict[str, str]:
    """Orthanc's logins but the monitoring identity's: the web users'."""
    users = json.loads((host.secrets / USERS).read_text())
    assert next(iter(users)) == MONITOR_IDENTITY
    return {name: password for name, password in users.items() if name != MONITOR_IDENTITY}


def test_first_run_creates_the_admin_password_and_the_second_keeps_it(host: Host) -> None:
    assert host.run("orthweb-secrets") == [DB_URI, USERS, LOGINS]
    first = admin_secret(host)
    assert list(first) == ["users"]
    assert list(first["users"]) == ["admin"]
    password = first["users"]["admin"]
    assert len(password) >= 32
    assert password.isascii()
    users = json.loads((host.secrets / USERS).read_text())
    # Orthanc's logins: the monitoring identity's first, made on this host and never stored in the
    # admin secret; then the web users'.
    monitor = (host.secrets / MONITOR_FILE).read_text()
    assert len(monitor) >= 32
    assert monitor not in json.dumps(first)
    assert users == {MONITOR_IDENTITY: monitor, "admin": password}
    assert list(users) == [MONITOR_IDENTITY, "admin"]

    assert host.run("orthweb-secrets") == []  # nothing changed
    assert admin_secret(host) == first
    versions = host.aws("secretsmanager", "list-secret-version-ids", "--secret-id", host.admin_arn)["Versions"]
    assert len(versions) == 1


def test_an_existing_admin_password_of_the_old_shape_is_kept_and_migrated(host: Host) -> None:
    host.put_secret(host.admin_arn, {"username": "admin", "password": "kept-from-old-host"})
    host.run("orthweb-secrets")
    assert web_logins(host) == {"admin": "kept-from-old-host"}
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
    assert web_logins(host) == users
    # ann leaves: her password stays in the secret (if she comes back), but Orthanc and nginx drop her.
    host.env["ORTHWEB_WEB_USERS"] = "admin upton"
    host.run("orthweb-secrets")
    assert set(admin_secret(host)["users"]) == {"admin", "ann", "upton"}
    assert set(web_logins(host)) == {"admin", "upton"}
    assert '"ann"' not in (host.root / "etc" / "nginx-auth" / LOGINS).read_text()
    # The monitoring identity stays first whatever the users' order (a healthcheck that takes the
    # first registered user takes it, never an admin), with the password this host made.
    monitor = (host.secrets / MONITOR_FILE).read_text()
    host.env["ORTHWEB_WEB_USERS"] = "upton admin"
    host.run("orthweb-secrets")
    users = json.loads((host.secrets / USERS).read_text())
    assert list(users) == [MONITOR_IDENTITY, "upton", "admin"]
    assert users[MONITOR_IDENTITY] == monitor


def test_nginx_gets_a_hash_of_each_login_never_a_password(host: Host) -> None:
    host.env["ORTHWEB_WEB_USERS"] = "admin ann"
    host.run("orthweb-secrets")
    users = json.loads((host.secrets / USERS).read_text())  # the monitoring identity's login too
    assert list(users) == [MONITOR_IDENTITY, "admin", "ann"]
    auth = host.root / "etc" / "nginx-auth"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o700
    assert stat.S_IMODE((auth / LOGINS).stat().st_mode) == 0o400
    assert sorted(p.name for p in auth.iterdir()) == [LOGINS]
    text = (auth / LOGINS).read_text()
    assert text.splitlines() == [f'"{name}" "{login_hash(name, password)}";' for name, password in users.items()]
    assert all(password not in text for password in users.values())


def test_db_secret_becomes_a_root_only_verify_full_uri_for_orthancs_own_role_never_the_master(host: Host) -> None:
    host.run("orthweb-secrets")
    assert stat.S_IMODE(host.secrets.stat().st_mode) == 0o700
    for name in (DB_URI, USERS):
        assert stat.S_IMODE((host.secrets / name).stat().st_mode) == 0o400
    assert sorted(p.name for p in host.secrets.iterdir()) == [DB_URI, USERS, MONITOR_FILE]  # no temp file left
    assert stat.S_IMODE((host.secrets / MONITOR_FILE).stat().st_mode) == 0o400
    uri = urlsplit((host.secrets / DB_URI).read_text())
    assert uri.scheme == "postgresql"
    # Orthanc's own role, with a password derived from the master's: never the master login.
    user, password = unquote(uri.username or ""), unquote(uri.password or "")
    assert user == "orthanc_app"  # not the master user, "orthweb" here
    assert password == db_app_password(DB_PASSWORD)
    assert DB_PASSWORD not in (host.secrets / DB_URI).read_text()
    assert len(password) == 43  # 256 bits
    assert (uri.hostname, uri.port, uri.path) == ("db.example.internal", 5432, "/orthanc")
    assert parse_qs(uri.query) == {"sslmode": ["verify-full"], "sslrootcert": ["/etc/orthweb/rds-ca.pem"]}


def test_rotated_db_secret_is_detected_and_only_orthanc_is_recreated(host: Host) -> None:
    host.run("orthweb-refresh", "--up")
    compose = f"compose --project-name orthweb --file {host.root / 'etc' / 'docker-compose.yml'}"
    # Fresh containers read the new files: no recreate right after the first start.
    assert host.docker_calls() == [f"{compose} ps --quiet", f"{compose} up --detach --pull missing --remove-orphans"]
    calls_after_start = len(host.docker_calls())

    host.run("orthweb-refresh")  # the timer, nothing rotated
    assert actions(host.docker_calls()[calls_after_start:]) == []

    host.put_secret(host.db_arn, {"username": "orthweb", "password": "rotated-by-rds"})
    host.run("orthweb-refresh")
    assert actions(host.docker_calls()[calls_after_start:]) == [
        f"{compose} up --detach --no-deps --force-recreate orthanc"
    ]
    uri = urlsplit((host.secrets / DB_URI).read_text())
    assert uri.password == db_app_password("rotated-by-rds")  # Orthanc's password follows the master's rotation
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


def test_a_failed_orthanc_recreate_is_tried_again_at_the_next_run(host: Host) -> None:
    host.run("orthweb-refresh", "--up")
    compose = f"compose --project-name orthweb --file {host.root / 'etc' / 'docker-compose.yml'}"
    recreate = f"{compose} up --detach --no-deps --force-recreate orthanc"
    host.put_secret(host.db_arn, {"username": "orthweb", "password": "rotated-while-docker-fails"})
    (host.root / "docker-fails").touch()
    start = len(host.docker_calls())
    failed = host.run_unchecked("orthweb-refresh")
    assert failed.returncode != 0
    assert actions(host.docker_calls()[start:]) == [recreate, recreate]  # ORTHWEB_RETRY_ATTEMPTS=2
    assert "recreate Orthanc: failed 2 times (last exit status 1); giving up" in failed.stderr
    assert "error: orthweb-refresh line" in failed.stderr
    # The new password is on disk, but Orthanc did not get it: the next run must not think it did.
    assert urlsplit((host.secrets / DB_URI).read_text()).password == db_app_password("rotated-while-docker-fails")

    (host.root / "docker-fails").unlink()
    start = len(host.docker_calls())
    host.run("orthweb-refresh")  # the timer, ten minutes later: nothing new in the secret
    assert actions(host.docker_calls()[start:]) == [recreate]
    start = len(host.docker_calls())
    host.run("orthweb-refresh")  # and now it is applied: nothing to do
    assert actions(host.docker_calls()[start:]) == []


# --- no password in a command line ----------------------------------------------------------------


def test_no_password_ever_appears_in_a_command_line(host: Host) -> None:
    """Any local user can read every process's command line (/proc/PID/cmdline): the database
    passwords (the master's and Orthanc's), a kept web password and a newly generated one reach jq,
    the AWS CLI, openssl and python3 only through stdin, files or the environment (which only root
    reads)."""
    host.put_secret(host.admin_arn, {"users": {"admin": "kept-admin-password-0123456789abcdef"}})
    host.env["ORTHWEB_WEB_USERS"] = "admin ann"  # ann's password is generated and stored in this run
    scripts = [BIN / "orthweb-secrets.sh", USERDATA_DIR / "lib" / "common.sh"]
    wrapped = record_command_lines(scripts, host.env, host.root)
    assert {"aws", "jq", "openssl"} <= set(wrapped)
    assert host.run("orthweb-secrets") == [DB_URI, USERS, LOGINS]
    users = admin_secret(host)["users"]
    assert set(users) == {"admin", "ann"}
    lines = command_lines(host.root)
    ran = {line.split(" ", 1)[0] for line in lines}
    assert {"aws", "jq", "openssl"} <= ran  # the recorder saw the programs that handle the passwords
    assert any(line.startswith("aws secretsmanager put-secret-value") for line in lines)
    monitor = (host.secrets / MONITOR_FILE).read_text()
    for password in (DB_PASSWORD, db_app_password(DB_PASSWORD), *users.values(), monitor):
        leaks = [line.split(" ", 1)[0] for line in lines if password in line]
        assert leaks == [], f"a password appears in the command line of {leaks}"


def test_the_file_of_all_web_passwords_is_removed_even_when_storing_them_fails(host: Host) -> None:
    shim = host.root / "failing-aws"
    shim.mkdir()
    real = shutil.which("aws", path=host.env["PATH"])
    (shim / "aws").write_text(
        "#!/bin/bash\n"
        '[ "$1 $2" != "secretsmanager put-secret-value" ] || { echo ThrottlingException >&2; exit 255; }\n'
        f'exec {real} "$@"\n'
    )
    (shim / "aws").chmod(0o755)
    host.env["PATH"] = f"{shim}{os.pathsep}{host.env['PATH']}"
    proc = host.run_unchecked("orthweb-secrets")
    assert proc.returncode != 0
    assert "store the web users' passwords" in proc.stderr
    assert [p.name for p in host.secrets.iterdir() if p.name.startswith(".")] == []


def test_a_db_secret_without_a_password_stops_the_step(host: Host) -> None:
    host.put_secret(host.db_arn, {"username": "x"})
    proc = subprocess.run(
        [str(host.root / "sbin" / "orthweb-secrets")], env=host.env, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "not JSON with username and password" in proc.stderr


# --- boot while AWS does not answer --------------------------------------------------------------

# Secret names stand in for the ARNs: the emulator makes up ARNs only when it creates the secrets,
# and here the host is configured before the emulator even runs.
DB_SECRET_NAME = "rds!db-late"
ADMIN_SECRET_NAME = "orthweb/orthanc-admin-late"


def test_boot_waits_for_secrets_manager_and_comes_up_once_it_answers(tmp_path: Path) -> None:
    port = free_port()  # where the emulator will answer, once it is started
    host = fake_host(tmp_path, MotoServer(endpoint=f"http://127.0.0.1:{port}"))
    set_secret_ids(host, DB_SECRET_NAME, ADMIN_SECRET_NAME)
    # The CLI's own retries off, so each failed attempt is one of the script's.
    host.env.update(ORTHWEB_RETRY_ATTEMPTS="60", ORTHWEB_RETRY_MAX_DELAY="2", AWS_MAX_ATTEMPTS="1")
    log = tmp_path / "orthweb-refresh.log"
    with log.open("w") as err:
        boot = subprocess.Popen(
            [str(tmp_path / "sbin" / "orthweb-refresh"), "--up"], env=host.env, stdout=subprocess.PIPE, stderr=err
        )
    moto = None
    try:
        # What orthweb.service runs at boot, with nothing answering at the endpoint yet.
        wait_until("a first failed attempt", lambda: "failed (attempt 1 of 60" in log.read_text(), proc=boot)
        moto, _ = start(port=port)
        create_secrets(host, DB_SECRET_NAME, ADMIN_SECRET_NAME)
        assert boot.wait(timeout=180) == 0, log.read_text()
    finally:
        stop_process(boot)
        stop_process(moto)
    stderr = log.read_text()
    assert f"read secret {DB_SECRET_NAME}: failed (attempt 1 of 60" in stderr
    assert re.search(rf"read secret {re.escape(DB_SECRET_NAME)}: succeeded at attempt [2-9]", stderr)
    # And then the whole boot went on: the secret files (the monitoring password too), the certificate,
    # and the project started.
    assert sorted(p.name for p in host.secrets.iterdir()) == [DB_URI, USERS, MONITOR_FILE]
    assert (tmp_path / "etc" / "tls" / "server.crt").exists()
    compose = f"compose --project-name orthweb --file {tmp_path / 'etc' / 'docker-compose.yml'}"
    assert host.docker_calls()[-1] == f"{compose} up --detach --pull missing --remove-orphans"


def test_boot_gives_up_with_a_clear_message_when_secrets_manager_never_answers(tmp_path: Path) -> None:
    host = fake_host(tmp_path, MotoServer(endpoint=f"http://127.0.0.1:{free_port()}"))  # nothing there
    set_secret_ids(host, DB_SECRET_NAME, ADMIN_SECRET_NAME)
    host.env.update(ORTHWEB_RETRY_ATTEMPTS="3", AWS_MAX_ATTEMPTS="1")
    boot = host.run_unchecked("orthweb-refresh", "--up")
    assert boot.returncode != 0
    lines = [line for line in boot.stderr.splitlines() if line.startswith("orthweb: ")]
    assert [line for line in lines if "retrying in" in line] == [
        f"orthweb: read secret {DB_SECRET_NAME}: failed (attempt {n} of 3, exit status 1); retrying in 1s"
        for n in (1, 2)
    ]
    assert f"orthweb: error: read secret {DB_SECRET_NAME}: failed 3 times (last exit status 1); giving up" in lines
    # The refresh names the step that failed, and nothing was started or half-written.
    assert "orthweb: error: orthweb-secrets failed (exit status 1); going on with the other steps" in lines
    assert any(line.startswith("orthweb: error: not starting: orthweb-secrets failed and ") for line in lines)
    assert host.docker_calls() == []
    assert not host.secrets.exists() or sorted(p.name for p in host.secrets.iterdir()) == []


def test_a_reboot_while_secrets_manager_does_not_answer_starts_from_the_last_runs_files(tmp_path: Path) -> None:
    """The files of the last run are on disk: a host rebooting while Secrets Manager does not
    answer serves with them rather than not at all, and the start fails so orthweb.service tries
    the refresh again (Restart=on-failure) while the project runs."""
    with moto_server() as server:
        host = fake_host(tmp_path, server)
        create_secrets(host)
        host.run("orthweb-refresh", "--up")  # the last boot that could read the secrets
        files = {p.name: p.read_text() for p in host.secrets.iterdir()}
    host.env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", AWS_MAX_ATTEMPTS="1")  # nothing there
    calls_before = len(host.docker_calls())
    boot = host.run_unchecked("orthweb-refresh", "--up")
    assert boot.returncode != 0
    compose = f"compose --project-name orthweb --file {tmp_path / 'etc' / 'docker-compose.yml'}"
    assert f"{compose} up --detach --pull missing --remove-orphans" in host.docker_calls()[calls_before:]
    assert "starting from the files of the last run: orthweb-secrets" in boot.stderr
    assert "failed: orthweb-secrets" in boot.stderr
    assert {p.name: p.read_text() for p in host.secrets.iterdir()} == files
