"""The user data and application files for images in S3 and for several hosts: valid for cloud-init,
compose, shellcheck and systemd; the balancer's health check logs in as the monitoring identity; only
Orthanc gets the S3 session; the default rendering keeps none of it (docs/scaling.md)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orthweb import capacity
from orthweb.bootstrap import (
    USER_DATA_BUDGET,
    USER_DATA_LIMIT,
    USERDATA_DIR,
    HostFacts,
    compressed_size,
    render_app,
    render_user_data,
)
from orthweb.settings import MONITOR_IDENTITY, Settings
from orthweb_dev.testing import (
    cloud_config_problems,
    compose_on_host,
    compose_problems,
    host_files,
    require,
    shellcheck_problems,
)

MANY = {"db_multi_az": True, "endpoints_in_all_azs": True}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
VARIANTS = {
    "one host, images in s3": Settings(storage="s3"),
    "three hosts, images in s3": Settings(storage="s3", hosts=3, **MANY),
    "two hosts, images in postgresql": Settings(hosts=2, **MANY),
    # The largest user data: every other option on as well.
    "everything on, three hosts, images in s3": Settings(
        storage="s3",
        hosts=3,
        **MANY,
        domain_name="pacs.example.org",
        hosted_zone_id="Z0123456789ABCDEFGHIJ",
        orthanc_aet="PACS_01",
        dicom_client_ca=CA_PEM,
        vpc_cidr="10.20.0.0/20",
        dicom_peers=[
            {"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store", "find"]},
            {
                "aet": "WS01",
                "cidr": "192.0.2.0/24",
                "permissions": ["find", "move"],
                "host": "192.0.2.5",
                "port": 11112,
                "tls_name": "ws01.example.org",
            },
        ],
        web_users={"admin": "admin", "ann": "viewer", "bob": "uploader"},
        viewers=["stone", "ohif"],
        web_cors_origins=["https://viewer.example.org"],
    ),
}
FACTS = HostFacts(
    region="eu-west-1",
    db_address="orthweb-db.c9akciq32.eu-west-1.rds.amazonaws.com",
    db_port="5432",
    db_name="orthanc",
    db_secret_arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1-AbCdEf",
    admin_secret_arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:orthweb/orthanc-admin-1-AbCdEf",
    images_bucket="orthweb-images-20260101000000000000000001",
    images_role_arn="arn:aws:iam::123456789012:role/orthweb-image-store",
    tls_secret_arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:orthweb/tls-1-AbCdEf",
    balancer_dns="orthweb-nlb-0123456789abcdef.elb.eu-west-1.amazonaws.com",
    site_name="orthweb-nlb-0123456789abcdef.elb.eu-west-1.amazonaws.com",
    bundle_bucket="orthweb-host-files-20260101000000000000000002",
    bundle_version="Wq3l3yE8dQ0pKXg2QFzY8Zr0Vb9m7c5A",
)
# What the image-store session adds to the Orthanc container's (non-secret) environment.
S3_ENVIRONMENT = {
    "AWS_SHARED_CREDENTIALS_FILE": "/etc/orthweb/aws/credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> Settings:
    return VARIANTS[request.param]


def files(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every file the host holds once booted (user data and bundle) by path: ``content`` and ``permissions``."""
    return {
        path: {"content": f.text, "permissions": f"{f.mode:04o}"} for path, f in host_files(settings, FACTS).items()
    }


def compose(settings: Settings) -> dict[str, Any]:
    parsed: dict[str, Any] = compose_on_host(render_app(settings)["docker-compose.yml"])
    return parsed


def test_user_data_passes_cloud_init_schema_and_fits_ec2_gzipped(tmp_path: Path, variant: Settings) -> None:
    user_data = render_user_data(variant, FACTS)
    assert cloud_config_problems(user_data, tmp_path) == ""
    # The host's files travel in the bundle: the largest user data is a fraction of EC2's limit
    # (docs/scaling.md, "User data"; before the bundle it was 15.7 KB of 16 KiB here).
    assert compressed_size(user_data) <= USER_DATA_BUDGET < USER_DATA_LIMIT


def test_the_steps_reach_the_host_as_written_comments_and_all() -> None:
    written = files(VARIANTS["three hosts, images in s3"])
    for step in ("orthweb-host-config", "orthweb-images", "orthweb-shared-cert", "orthweb-health"):
        lines = written[f"/usr/local/sbin/{step}"]["content"].splitlines()
        assert lines[0] == "#!/bin/bash"
        source = (USERDATA_DIR / "bin" / f"{step}.sh").read_text()
        comments = [line for line in source.splitlines() if line.lstrip().startswith("#") and "{{" not in line]
        assert len(comments) > 3
        assert all(line in lines for line in comments), step


def test_each_topology_writes_exactly_its_steps() -> None:
    def steps(settings: Settings) -> set[str]:
        return {Path(p).name for p in files(settings) if p.startswith("/usr/local/sbin/")}

    names = ("archives", "bootstrap", "cert", "db-role", "fetch", "patch", "rds-ca", "refresh", "secrets")
    base = {f"orthweb-{n}" for n in names}
    assert steps(Settings()) == base
    assert steps(VARIANTS["one host, images in s3"]) == base | {"orthweb-host-config", "orthweb-images"}
    assert steps(VARIANTS["two hosts, images in postgresql"]) == base | {
        "orthweb-host-config",
        "orthweb-shared-cert",
        "orthweb-health",
    }
    fleet = files(VARIANTS["three hosts, images in s3"])
    assert {"/etc/systemd/system/orthweb-health.socket", "/etc/systemd/system/orthweb-health@.service"} <= set(fleet)
    assert all(fleet[p]["permissions"] == "0700" for p in fleet if p.startswith("/usr/local/sbin/"))


def test_refresh_runs_the_new_steps_after_the_secrets_and_before_the_certificate_step() -> None:
    refresh = files(VARIANTS["three hosts, images in s3"])["/usr/local/sbin/orthweb-refresh"]["content"]
    order = [line.split()[1] for line in refresh.splitlines() if line.startswith("step orthweb-")]
    assert order == [
        "orthweb-secrets",
        "orthweb-rds-ca",
        "orthweb-db-role",
        "orthweb-host-config",
        "orthweb-images",
        "orthweb-shared-cert",
        "orthweb-cert",
    ]
    assert "# {{" not in refresh


def test_rendered_scripts_are_shellcheck_clean(tmp_path: Path) -> None:
    written = {path: entry["content"] for path, entry in files(VARIANTS["three hosts, images in s3"]).items()}
    assert shellcheck_problems(written, tmp_path) == ""


def test_health_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require("systemd-analyze", "systemd")
    written = files(VARIANTS["three hosts, images in s3"])
    socket = tmp_path / "orthweb-health.socket"
    socket.write_text(written["/etc/systemd/system/orthweb-health.socket"]["content"])
    # The template, as the instance the socket starts for one connection.
    (tmp_path / "orthweb-health@.service").write_text(written["/etc/systemd/system/orthweb-health@.service"]["content"])
    shutil.copy(tmp_path / "orthweb-health@.service", tmp_path / "orthweb-health@0.service")
    run = subprocess.run(
        [analyze, "verify", "--man=no", str(socket), str(tmp_path / "orthweb-health@0.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    # cloud-init installs the script on the host; here it is not at its host path.
    missing = "Command /usr/local/sbin/orthweb-health is not executable"
    problems = [line for line in (run.stdout + run.stderr).splitlines() if line and missing not in line]
    assert problems == []
    service = (tmp_path / "orthweb-health@.service").read_text()
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n"):
        assert hardening in service, hardening


@contextmanager
def orthanc_roles(roles: dict[str, str], passwords: dict[str, str]) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """A stand-in for nginx and Orthanc on loopback: ``GET /changes?last`` answers 200 to a right
    login whose role may ask it (the monitor and admins: orthanc-roles.lua), 403 to any other user's,
    401 to a wrong login. Yields its port and each request's (login, user agent)."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            login = base64.b64decode(auth.removeprefix("Basic ")).decode() if auth.startswith("Basic ") else ""
            seen.append((login, self.headers.get("User-Agent", "")))
            user, _, password = login.partition(":")
            if self.path != "/changes?last" or passwords.get(user) != password:
                status = 401
            else:
                status = 200 if roles[user] in ("admin", "monitor") else 403
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_health_check(script: Path, etc: Path, port: int) -> subprocess.CompletedProcess[bytes]:
    """One balancer health check: the request on stdin, the answer on stdout."""
    return subprocess.run(
        [str(script)],
        input=b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8099\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n",
        env={
            "PATH": "/usr/bin:/bin",
            "ORTHWEB_ENV_FILE": str(etc / "none.env"),
            "ORTHWEB_LIB": str(USERDATA_DIR / "lib"),
            "ORTHWEB_ETC": str(etc),
            "ORTHWEB_REGION": "eu-west-1",
            "ORTHWEB_SITE_NAME": "localhost",
            "ORTHWEB_WEB_PORT": str(port),
            "ORTHWEB_HTTPS": "false",
        },
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_the_health_check_logs_in_as_the_monitoring_identity_never_an_admin(tmp_path: Path) -> None:
    roles = {"boss": "admin", "ann": "viewer", MONITOR_IDENTITY: "monitor"}
    settings = Settings(hosts=2, **MANY, web_users={"boss": "admin", "ann": "viewer"})
    script = tmp_path / "orthweb-health"
    script.write_text(files(settings)["/usr/local/sbin/orthweb-health"]["content"])
    script.chmod(0o700)
    # An admin first in the users file, the monitoring identity last: the check must pick it by name.
    # Its password is one a config file could break on: a quote, a backslash, a space, a comment sign.
    passwords = {"boss": "admin-pass", "ann": "viewer-pass", MONITOR_IDENTITY: 'a"b\\c d#e\\'}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "ORTHANC__REGISTERED_USERS").write_text(json.dumps(passwords))
    with orthanc_roles(roles, passwords) as (port, seen):
        run = run_health_check(script, tmp_path, port)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode().startswith("HTTP/1.1 200 OK\r\n"), (run.stdout, seen)
    assert seen == [(f"{MONITOR_IDENTITY}:{passwords[MONITOR_IDENTITY]}", "orthweb-health")]

    # Without the monitoring identity in Orthanc's users, the check fails: it never falls back to another.
    del passwords[MONITOR_IDENTITY]
    (secrets / "ORTHANC__REGISTERED_USERS").write_text(json.dumps(passwords))
    with orthanc_roles(roles, passwords) as (port, seen):
        run = run_health_check(script, tmp_path, port)
    assert run.stdout.decode().startswith("HTTP/1.1 503 Service Unavailable\r\n"), (run.stdout, seen)
    assert seen == []


def test_compose_validates(tmp_path: Path, variant: Settings) -> None:
    assert compose_problems(render_app(variant)["docker-compose.yml"], tmp_path) == ""


def test_only_orthanc_gets_the_s3_session_and_never_instance_metadata() -> None:
    app = compose(VARIANTS["three hosts, images in s3"])
    orthanc, nginx = app["services"]["orthanc"], app["services"]["nginx"]
    one_host = compose(Settings())["services"]["orthanc"]["environment"]
    assert orthanc["environment"] == {**one_host, **S3_ENVIRONMENT}
    assert "/etc/orthweb/aws:/etc/orthweb/aws:ro" in orthanc["volumes"]
    assert "/etc/orthweb/orthanc-host.json:/etc/orthanc/host.json:ro" in orthanc["volumes"]
    assert not any("/etc/orthweb/aws" in v or "orthanc-host" in v for v in nginx["volumes"])
    assert nginx.get("environment", {}) == {}
    in_postgresql = compose(VARIANTS["two hosts, images in postgresql"])["services"]["orthanc"]
    assert not any("/etc/orthweb/aws" in v for v in in_postgresql["volumes"])
    assert "/etc/orthweb/orthanc-host.json:/etc/orthanc/host.json:ro" in in_postgresql["volumes"]
    assert not any(k.startswith("AWS_") for k in in_postgresql.get("environment", {}))


def test_orthanc_keeps_the_index_in_postgresql_and_images_in_s3_with_no_static_keys() -> None:
    config = json.loads(render_app(VARIANTS["three hosts, images in s3"])["orthanc.json"])
    pg = config["PostgreSQL"]
    assert (pg["EnableIndex"], pg["EnableStorage"], pg["Lock"]) == (True, False, False)
    assert pg["IndexConnectionsCount"] == capacity.INDEX_CONNECTIONS
    assert config["SaveJobs"] is False  # jobs are per host, never shared through the database
    s3 = config["AwsS3Storage"]
    assert not {"AccessKey", "SecretKey", "Endpoint", "RootPath"} & s3.keys()  # default chain, AWS's endpoint
    assert "ConnectTimeout" in s3  # the key plugin 2.5.0 reads; the Book's "ConnectionTimeout" is ignored
    assert "ConnectionTimeout" not in s3
    assert s3["StorageClass"] == "INTELLIGENT_TIERING"
    assert s3["StorageStructure"] == "flat"
    assert s3["HybridMode"] == "Disabled"
    # The bucket and region arrive at boot (host.json), never as literals here.
    assert "BucketName" not in s3
    assert "Region" not in s3
    in_postgresql = json.loads(render_app(VARIANTS["two hosts, images in postgresql"])["orthanc.json"])
    assert in_postgresql["PostgreSQL"]["EnableStorage"] is True
    assert "AwsS3Storage" not in in_postgresql


def test_the_default_rendering_carries_nothing_of_this() -> None:
    default = "\n".join(f.text for f in host_files(Settings(), FACTS).values())
    for marker in ("orthweb-images", "orthweb-host-config", "orthweb-shared-cert", "orthweb-health", "{{ include"):
        assert marker not in default, marker
    app = render_app(Settings())
    assert "AwsS3Storage" not in app["orthanc.json"]
    assert "AWS_" not in app["docker-compose.yml"]


def test_the_raw_scripts_stay_valid_shell_with_their_include_comments() -> None:
    refresh = (USERDATA_DIR / "bin" / "orthweb-refresh.sh").read_text()
    assert "# {{ include refresh/images.sh if images_in_bucket }}" in refresh
    env = (USERDATA_DIR / "orthweb.env").read_text()
    assert "# {{ include env/fleet.env if multi_host }}" in env
