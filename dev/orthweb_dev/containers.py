"""The application as the host runs it: the rendered ``docker-compose.yml``, unmodified, on a real
Docker engine, brought up by the host's own ``orthweb-refresh --up``.

:func:`container_host` prepares what :class:`orthweb_dev.harness.AppHost` prepares (the emulator
with the deployment's secrets, PostgreSQL over TLS standing in for RDS, the host's secret,
certificate and database-role steps run for real), writes the host's files into its ``etc``
directory as the bundle lays them out in ``/etc/orthweb``, and then runs ``orthweb-refresh --up``
with ``ORTHWEB_DOCKER`` pointing at a wrapper of the real ``docker``: it adds one generated
override file after the host's compose file, and compose at the host's pinned version.

The override file (:meth:`ContainerHost.override`) changes only:

- the two images: stand-ins built here from Debian packages (:mod:`orthweb_dev.images`);
- the published ports: loopback ports picked per run instead of 443, 11112 (and 4242);
- the ``awslogs`` endpoint: the emulator's CloudWatch Logs.

The Compose project and containers have the host's names (``orthweb``, ``orthweb-nginx-1``,
``orthweb-orthanc-1``), so one runs per engine. PostgreSQL listens on loopback and on the engine's
default bridge gateway, which the containers reach. Every other difference is in docs/app-harness.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from orthweb.bootstrap import COGNITO_PROBE_PORT, HostFacts, bundle_files
from orthweb.settings import Settings
from orthweb_dev import oidc
from orthweb_dev.emulator_server import MotoServer, moto_server
from orthweb_dev.engine import ADDRESS_POOL, compose_binary, running_engine
from orthweb_dev.harness import (
    PG_BIN,
    USERS_FILE,
    AppHost,
    AppHostError,
    Deployment,
    deployment_settings,
)
from orthweb_dev.images import build_all
from orthweb_dev.oidc import AlbSigner, KeyEndpoints, PoolSigner
from orthweb_dev.proc import free_port, run, wait_until
from orthweb_dev.testing import INSTALL_HINT, not_run

T = TypeVar("T")

# Every way the container harness differs from the EC2 host: (what, on the host, in the harness).
# The table in docs/app-harness.md, "The application in containers"; the images' own differences are
# orthweb_dev.images.IMAGE_DIFFERENCES.
CONTAINER_DIFFERENCES: dict[str, tuple[str, str, str]] = {
    "images": (
        "compose image (override file)",
        "orthancteam/orthanc:25.6.0, nginx:1.28.0-alpine, pulled from Docker Hub",
        "the stand-ins built here (orthweb-standin/orthanc, orthweb-standin/nginx)",
    ),
    "ports": (
        "compose ports (override file)",
        "443 (or 80), 11112 and 4242 on all addresses",
        "127.0.0.1:<free port> for each",
    ),
    "awslogs": (
        "compose logging awslogs-endpoint (override file)",
        "CloudWatch Logs of the region, with the instance role",
        "the emulator's, with the daemon's throwaway key",
    ),
    "clients": (
        "the client address nginx and its peer rules see",
        "the client's own (published ports are DNAT'ed)",
        "the project network's gateway: the tests' loopback connections pass Docker's userland proxy "
        "(the first of CLIENT_ADDRESSES when a test takes them)",
    ),
    "client_addresses": (
        "clients that need their own address (per-peer DICOM rules, throttling by address)",
        "connect from their own addresses to the host's published ports",
        "connect from CLIENT_ADDRESSES, added to the project network's bridge for the run, to nginx's "
        "address on that network (its container ports, 443 and 11112)",
    ),
    "db_endpoint": (
        "DB URI host:port (orthweb.env)",
        "RDS endpoint:5432",
        "PostgreSQL 15 on this machine: the engine's bridge gateway address, <free port>",
    ),
    "db_ca": ("orthweb-rds-ca (the RDS CA bundle)", "downloaded from AWS", "a test CA, placed where it lands"),
    "db_master": (
        "the master login orthweb-db-role uses",
        "RDS's master user (rds_superuser, PostgreSQL 17)",
        "a role with CREATEROLE and CREATEDB, no superuser (PostgreSQL 15)",
    ),
    "host_dir": ("where the host's files are", "/etc/orthweb", "<tmp>/etc (ORTHWEB_ETC)"),
    "secrets_tmpfs": (
        "where the secret files are",
        "/etc/orthweb/secrets, a tmpfs (etc-orthweb-secrets.mount)",
        "<tmp>/etc/secrets, on this machine's disk (no systemd here)",
    ),
    "web_port": ("orthweb.env ORTHWEB_WEB_PORT (the health probe's port)", "443 (or 80)", "<nginx's published port>"),
    "host_names": ("certificate names (orthweb-cert)", "DNS names and IPs from IMDSv2", "localhost, 127.0.0.1"),
    "oidc_keys": (
        "login = cognito: orthweb.env ORTHWEB_ALB_KEYS_URL, ORTHWEB_JWKS_URL (the keys nginx verifies with)",
        "unset: AWS's endpoints of the region, over HTTPS",
        "the stand-in's (orthweb_dev.oidc), over HTTP on the engine's bridge gateway, its own keys",
    ),
    "oidc_facts": (
        "login = cognito: the balancer, user pool, app client and hosted domain (orthweb.env)",
        "the deployment's (Terraform)",
        "the stand-in's: orthweb_dev.oidc's ALB_ARN, POOL_ID, CLIENT_ID; the emulator in their region",
    ),
    "oidc_headers": (
        "login = cognito: who signs x-amzn-oidc-data and the access token",
        "the load balancer, after Cognito's login page and MFA",
        "the tests, with the stand-in's keys (ContainerHost.login_headers)",
    ),
    "archive_volume": (
        "the archive volume orthweb-archives formats and mounts on <etc>/archives (ORTHWEB_ARCHIVE_DEVICE)",
        "an encrypted gp3 EBS volume of archive_volume_gb GiB (/dev/sdf)",
        "a loop device on a file of ContainerHost.archive_volume_mb MiB (64 unless a test asks for less)",
    ),
    "probe_port": (
        "login = cognito: orthweb.env ORTHWEB_COGNITO_PROBE_PORT, compose 127.0.0.1:8081 (override file)",
        "8081 on the host's loopback",
        "127.0.0.1:<free port>",
    ),
}

PROJECT = "orthweb"  # the host's Compose project (orthweb-refresh --project-name)
# Where this machine's clients come from as nginx sees them: Docker's userland proxy forwards the
# tests' loopback connections from the project network's gateway, which the engine takes from its
# one address pool (orthweb_dev.engine.ADDRESS_POOL, a /16). A DICOM peer the tests call as must be
# listed there; a /16, so it may be granted find without a certificate subject.
ENGINE_CLIENTS = ADDRESS_POOL
# Addresses this machine takes on the project network's bridge when a test needs clients of its own
# addresses (container_host's client_addresses): a connection to nginx's address on that network,
# bound to one of them, reaches nginx from it, as a client's own address reaches the host's nginx.
# From RFC 2544's benchmarking range, outside Docker's pools; gone with the network.
CLIENT_ADDRESSES = ("198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4")
SERVICES = ("nginx", "orthanc")
# The capabilities the compose file gives the nginx container (the rest are dropped).
NGINX_CAPABILITIES = ("setuid", "setgid")
CLONE_NEWNET = 0x40000000  # sched.h
SIOCGIFADDR = 0x8915  # linux/sockios.h
# login = "cognito": the stand-in pool's hosted domain, and how long its key endpoints serve (they
# stop by themselves after, should a run be killed).
COGNITO_DOMAIN = f"orthweb-test.auth.{oidc.REGION}.amazoncognito.com"
KEY_ENDPOINTS_LIFETIME_S = 3600
READY_TIMEOUT_S = 180
# The archive volume's size here (the host's is archive_volume_gb GiB of EBS): room for the
# archives the tests make; a test of the cap asks for a smaller one.
ARCHIVE_VOLUME_MB = 64

# The real docker, with compose at the host's version (DOCKER_CONFIG's cli-plugins) and the
# override file after the host's compose file (every ``--file X`` gains ``--file <override>``).
DOCKER_WRAPPER = """#!/bin/bash
# The harness's ORTHWEB_DOCKER: the real docker; compose is the host's version, and the harness's
# override file (images, loopback ports, the emulator's CloudWatch Logs) follows the host's file.
# The host's project name becomes this host's ({project}: several hosts share the one engine).
# Each call is recorded (AppHost.docker_calls).
echo "$*" >>{calls}
export DOCKER_CONFIG={config}
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --file) args+=("$1" "$2" --file {override}); shift 2 ;;
    --project-name) args+=("$1" {project}); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec docker "${{args[@]}}"
"""


def bridge_gateway() -> str:
    """The address of this machine on the engine's default bridge (reachable from every container).
    A bridge whose subnet came from the engine's address pool (orthweb_dev.engine.ADDRESS_POOL)
    records no gateway: the bridge interface's own address is it."""
    fmt = '{{(index .IPAM.Config 0).Gateway}} {{index .Options "com.docker.network.bridge.name"}}'
    *gateway, interface = run(["docker", "network", "inspect", "bridge", "--format", fmt]).stdout.split()
    return gateway[0] if gateway else interface_address(interface)


def interface_address(name: str) -> str:
    """The IPv4 address of this machine's network interface ``name`` (SIOCGIFADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
    return socket.inet_ntoa(packed[20:24])


def container_name(service: str, project: str = PROJECT) -> str:
    return f"{project}-{service}-1"


@dataclass
class ContainerHost(AppHost):
    """The application in containers (see the module docstring)."""

    images: dict[str, str] = field(default_factory=dict)
    # Taken on the project network's bridge once it is up; the first is the source of this machine's
    # connections to nginx's address there (see CLIENT_ADDRESSES).
    client_addresses: Sequence[str] = ()
    # Several hosts on one engine (orthweb_dev.fleet_harness): each its own Compose project, its
    # instance id (IMDSv2's, for orthweb-host-config), and the first host's database and secrets.
    project: str = PROJECT
    instance_id: str = ""
    primary: ContainerHost | None = None
    tls_secret_arn: str = ""
    # login = "cognito": the stand-in for AWS's key endpoints and the signers behind them (the ALB's
    # and the user pool's), whose headers a request as a web user carries (login_headers).
    oidc: KeyEndpoints | None = None
    # The archive volume (CONTAINER_DIFFERENCES "archive_volume"): a loop device on a file of this
    # size, which the host's own orthweb-archives formats and mounts, as it does the EBS volume.
    archive_volume_mb: int = ARCHIVE_VOLUME_MB
    archive_device: str = ""

    @property
    def network(self) -> str:
        """The project's network (compose names it after the project)."""
        return f"{self.project}_orthweb"

    def container(self, service: str) -> str:
        return container_name(service, self.project)

    # --- several hosts: one database ---------------------------------------------------------
    @property
    def pg(self) -> Path:
        return self.primary.pg if self.primary else super().pg

    def prepare_database(self) -> None:
        """The first host's database, secrets and RDS CA; anything else as AppHost does."""
        if self.primary is None:
            super().prepare_database()
            if self.settings.multi_host:  # the stack's shared-certificate secret, created empty
                self.tls_secret_arn = self.aws("secretsmanager", "create-secret", "--name", "orthweb/tls")["ARN"]
            return
        first = self.primary
        self.ports["postgres"] = first.ports["postgres"]
        self.db_secret_arn, self.admin_secret_arn, self.db_user = (
            first.db_secret_arn, first.admin_secret_arn, first.db_user
        )  # fmt: skip
        self.tls_secret_arn = first.tls_secret_arn
        self.tls.mkdir(parents=True, exist_ok=True)
        shutil.copy(first.tls / "rds-ca.pem", self.tls / "rds-ca.pem")

    def _stop_postgres(self) -> None:
        if self.primary is None:
            super()._stop_postgres()

    def host_facts(self) -> HostFacts:
        facts = super().host_facts()
        if self.settings.cognito:  # the stand-in's balancer, pool and app client
            facts = dataclasses.replace(
                facts,
                alb_arn=oidc.ALB_ARN,
                user_pool_id=oidc.POOL_ID,
                user_pool_client_id=oidc.CLIENT_ID,
                cognito_domain=COGNITO_DOMAIN,
            )
        if not self.settings.multi_host:
            return facts
        # The balancer stands in on loopback: every host's shared certificate names localhost.
        return dataclasses.replace(facts, tls_secret_arn=self.tls_secret_arn, balancer_dns="localhost")

    def login_headers(self, user: str, password: str | None = None) -> dict[str, str]:
        """With login = "cognito", what the ALB forwards for the person ``user`` (an e-mail of
        web_users) after Cognito's login: the signed claims and the access token, the person in
        the group of their role. A ``password`` is then sent as a Basic login besides (nginx must
        ignore it)."""
        if self.oidc is None:
            return super().login_headers(user, password)
        sub = str(uuid.uuid5(uuid.NAMESPACE_URL, user))
        role = self.settings.web_users.get(user)
        headers = {
            "x-amzn-oidc-data": self.oidc.alb.oidc_data(sub, user),
            "x-amzn-oidc-accesstoken": self.oidc.pool.access_token(sub, [role] if role else []),
            "x-amzn-oidc-identity": sub,
        }
        if password is not None:
            headers.update(super().login_headers(user, password))
        return headers

    def script_env(self) -> dict[str, str]:
        env = super().script_env()
        if self.instance_id:
            env["ORTHWEB_INSTANCE_ID"] = self.instance_id
        if self.archive_device:
            env["ORTHWEB_ARCHIVE_DEVICE"] = self.archive_device
        return env

    # --- files ---------------------------------------------------------------------------------
    @property
    def override_file(self) -> Path:
        return self.root / "harness" / "compose.override.yml"

    def override(self) -> str:
        """The override file: every line says what it changes and why."""
        web = "443" if self.settings.https else "80"
        p = self.ports
        ports = [f'      - "127.0.0.1:{p["nginx_web"]}:{web}"', f'      - "127.0.0.1:{p["nginx_dicom"]}:11112"']
        if self.settings.plain_dicom_in_vpc:
            ports.append(f'      - "127.0.0.1:{p["nginx_plain_dicom"]}:11113"')
        if self.settings.cognito:
            ports.append(f'      - "127.0.0.1:{p["cognito_probe"]}:{COGNITO_PROBE_PORT}"')
        lines = [
            "# The application harness's only changes to the host's docker-compose.yml (docs/app-harness.md).",
            "services:",
            "  nginx:",
            "    # The stand-in built here from Debian packages: Docker Hub is out of reach.",
            f"    image: {self.images['nginx']}",
            "    # Loopback ports picked for this run, in place of the host's.",
            "    ports: !override",
            *ports,
            "    logging:",
            "      options:",
            "        # CloudWatch Logs is the emulator's.",
            f"        awslogs-endpoint: {self.moto.endpoint}",
            "  orthanc:",
            "    # The stand-in built here from Debian packages: Docker Hub is out of reach.",
            f"    image: {self.images['orthanc']}",
            "    logging:",
            "      options:",
            "        # CloudWatch Logs is the emulator's.",
            f"        awslogs-endpoint: {self.moto.endpoint}",
        ]
        return "\n".join(lines) + "\n"

    @property
    def archives(self) -> Path:
        """Where the archive volume is mounted (``/etc/orthweb/archives`` on the host): Orthanc's
        TemporaryDirectory."""
        return self.etc / "archives"

    def _attach_archive_volume(self) -> None:
        """A blank loop device of ``archive_volume_mb`` MiB, the stand-in for the EBS volume."""
        image = self.root / "archive-volume.img"
        with image.open("wb") as f:
            f.truncate(self.archive_volume_mb * 2**20)
        self.archive_device = run(["losetup", "--find", "--show", str(image)]).stdout.strip()

    def _detach_archive_volume(self) -> None:
        if subprocess.run(["mountpoint", "-q", str(self.archives)], check=False).returncode == 0:
            run(["umount", str(self.archives)])
        if self.archive_device:
            run(["losetup", "--detach", self.archive_device])
            self.archive_device = ""

    def _install_host_scripts(self) -> None:
        super()._install_host_scripts()
        config = self.root / "harness" / "docker-config"
        (config / "cli-plugins").mkdir(parents=True)
        (config / "cli-plugins" / "docker-compose").symlink_to(compose_binary())
        wrapper = self.root / "sbin" / "docker"
        wrapper.write_text(
            DOCKER_WRAPPER.format(
                config=config, override=self.override_file, calls=self.root / "docker.log", project=self.project
            )
        )
        wrapper.chmod(0o755)

    # --- lifecycle -----------------------------------------------------------------------------
    def port_names(self) -> list[str]:
        names = ["nginx_web", "nginx_dicom"] + (["nginx_plain_dicom"] if self.settings.plain_dicom_in_vpc else [])
        return names + (["cognito_probe"] if self.settings.cognito else [])

    def launch(self) -> None:
        """The host's files in etc (as in /etc/orthweb), the log groups, then ``orthweb-refresh --up``."""
        # The bundle's files for /etc/orthweb, as the host's fetch step unpacks them.
        for host_file in bundle_files(self.settings):
            if host_file.path.startswith("/etc/orthweb/"):
                path = self.etc / host_file.path.removeprefix("/etc/orthweb/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(host_file.text)
        if self.oidc is not None:
            # The key endpoints are the stand-in's, where the nginx container reaches it, and the
            # health port is published on a loopback port of this run (CONTAINER_DIFFERENCES).
            with (self.etc / "orthweb.env").open("a") as env:
                env.write(
                    f"ORTHWEB_ALB_KEYS_URL={self.oidc.alb_keys_url}\nORTHWEB_JWKS_URL={self.oidc.jwks_url}\n"
                    f"ORTHWEB_COGNITO_PROBE_PORT={self.ports['cognito_probe']}\n"
                )
        self.override_file.write_text(self.override())
        # The stack makes the two log groups; made here when the emulator has none by that name (the
        # harness's own emulator, or a deployment made with another name prefix).
        for service in SERVICES:
            group = self.log_group(service)
            found = self.aws("logs", "describe-log-groups", "--log-group-name-prefix", group)["logGroups"]
            if group not in {g["logGroupName"] for g in found}:
                self.aws("logs", "create-log-group", "--log-group-name", group)
        if not self.archive_device:
            self._attach_archive_volume()
        self.host_step("orthweb-refresh", "--up")
        self.passwords = json.loads((self.secrets / USERS_FILE).read_text())
        self.wait_ready()
        if self.client_addresses:
            self._take_client_addresses()

    def _take_client_addresses(self) -> None:
        """``client_addresses`` on the project network's bridge, and the first of them the source
        address of this machine's connections to nginx's address there."""
        network = json.loads(run(["docker", "network", "inspect", self.network]).stdout)[0]
        bridge = network["Options"].get("com.docker.network.bridge.name") or f"br-{network['Id'][:12]}"
        for address in self.client_addresses:
            run(["ip", "address", "add", f"{address}/32", "dev", bridge])
        nginx = self.nginx_address()
        run(["ip", "route", "replace", f"{nginx}/32", "dev", bridge, "src", self.client_addresses[0]])

    def nginx_address(self) -> str:
        """nginx's address on the project network: its container ports (443 or 80, 11112) are there."""
        return str(self.inspect("nginx")["NetworkSettings"]["Networks"][self.network]["IPAddress"])

    def in_network_namespace(self, action: Callable[[], T]) -> T:
        """``action()`` run in nginx's network namespace (Orthanc's too: it joins nginx's), in a
        thread of its own; threads it starts stay there. Its loopback is the one nginx reaches
        Orthanc on."""
        results: list[T] = []
        errors: list[BaseException] = []
        path = f"/proc/{self.pid('nginx')}/ns/net"

        def enter_and_run() -> None:
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns {path}")
                finally:
                    os.close(fd)
                results.append(action())
            except BaseException as err:  # handed to the caller
                errors.append(err)

        thread = threading.Thread(target=enter_and_run, name="in-nginx-netns")
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return results[0]

    def compose_service(self, service: str) -> dict[str, Any]:
        """The service as the rendered compose file has it."""
        compose: dict[str, dict[str, dict[str, Any]]] = yaml.safe_load(self.rendered["docker-compose.yml"])
        return compose["services"][service]

    def log_group(self, service: str) -> str:
        """The CloudWatch Logs group the rendered compose file sends the service's lines to."""
        return str(self.compose_service(service)["logging"]["options"]["awslogs-group"])

    def client_address(self) -> str:
        """The address nginx sees this machine's connections come from, Docker's userland proxy's
        included: the project network's gateway, or the first of ``client_addresses`` if taken."""
        if self.client_addresses:
            return self.client_addresses[0]
        networks = self.inspect("nginx")["NetworkSettings"]["Networks"]
        return str(networks[self.network]["Gateway"])

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``docker compose`` on the host's project, as orthweb-refresh calls it."""
        cmd = [str(self.root / "sbin" / "docker"), "compose", "--project-name", self.project]
        return run([*cmd, "--file", str(self.etc / "docker-compose.yml"), *args], env=self.script_env())

    def wait_ready(self) -> None:
        """Until nginx answers an admin's REST call with Orthanc's answer."""
        wait_until(
            "nginx and Orthanc",
            lambda: self.running() and self._rest_ok(self.web_url),
            timeout=READY_TIMEOUT_S,
            describe=self.describe,
        )

    def running(self) -> bool:
        """Both containers exist and run (a missing one is not running yet)."""
        return all(self.service_running(service) for service in SERVICES)

    def service_running(self, service: str) -> bool:
        """The service's container exists and runs."""
        try:
            return bool(self.inspect(service)["State"]["Running"])
        except AppHostError:
            return False

    def describe(self) -> str:
        """The containers' states and log tails, for a failure message."""
        parts = []
        for service in SERVICES:
            try:
                state = self.inspect(service)["State"]
            except AppHostError as err:
                parts.append(f"{service}: {err}")
                continue
            out, errs = self.logs(service)
            parts.append(f"{service}: {json.dumps(state)}\n{(out + errs)[-3000:]}")
        return "\n".join(parts)

    def inspect(self, service: str) -> dict[str, Any]:
        proc = subprocess.run(
            ["docker", "inspect", self.container(service)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise AppHostError(f"no container {self.container(service)}: {proc.stderr.strip()}")
        result: dict[str, Any] = json.loads(proc.stdout)[0]
        return result

    def logs(self, service: str) -> tuple[str, str]:
        """(stdout, stderr) of the service's container, from Docker's local copy."""
        proc = subprocess.run(["docker", "logs", self.container(service)], capture_output=True, text=True, check=False)
        return proc.stdout, proc.stderr

    def _snapshot(self, name: str, service: str, keep: Callable[[str], bool] | None = None) -> Path:
        """A file holding the service's log lines now (stdout and stderr; those ``keep`` accepts)."""
        out, errs = self.logs(service)
        lines = (out + errs).splitlines(keepends=True)
        path = self.root / "logs" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(line for line in lines if keep is None or keep(line)))
        return path

    # The containers log to Docker (awslogs, with a local copy). These are snapshots of those logs,
    # written again at each access, where the tests read log files.
    @property
    def orthanc_log(self) -> Path:
        return self._snapshot("orthanc.log", "orthanc")

    @property
    def nginx_access_log(self) -> Path:
        return self._snapshot("access.log", "nginx", lambda line: line.startswith('{"time"') and '"method"' in line)

    @property
    def nginx_dicom_log(self) -> Path:
        return self._snapshot("dicom.log", "nginx", lambda line: line.startswith('{"time"') and '"method"' not in line)

    @property
    def nginx_error_log(self) -> Path:
        return self._snapshot("error.log", "nginx", lambda line: not line.startswith('{"time"'))

    def cloudwatch_lines(self, service: str) -> list[str]:
        """The service's lines as they reached CloudWatch Logs (the emulator's) through the awslogs
        driver: every stream of its group, each from its head, in order."""
        group = self.log_group(service)
        streams = self.aws("logs", "describe-log-streams", "--log-group-name", group)["logStreams"]
        lines: list[str] = []
        for stream in sorted(s["logStreamName"] for s in streams):
            events = self.aws(
                "logs", "get-log-events", "--log-group-name", group, "--log-stream-name", stream, "--start-from-head"
            )["events"]
            lines += [event["message"] for event in events]
        return lines

    def orthanc_config(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the configuration Orthanc runs on, without its secrets; the secret settings): what the
        image's configurator merged into /tmp/orthanc.json, read from the running container."""
        proc = run(["docker", "exec", self.container("orthanc"), "cat", "/tmp/orthanc.json"])
        config: dict[str, Any] = json.loads(proc.stdout)
        secrets = {"RegisteredUsers": config.pop("RegisteredUsers")}
        postgres = config.get("PostgreSQL", {})
        if "ConnectionUri" in postgres:
            secrets["PostgreSQL"] = {"ConnectionUri": postgres.pop("ConnectionUri")}
        return config, secrets

    def pid(self, service: str) -> int:
        """The host PID of the service's container's first process."""
        return int(self.inspect(service)["State"]["Pid"])

    # --- what the tests do to it ---------------------------------------------------------------
    def start_orthanc(self) -> None:
        self.compose("up", "--detach", "--no-deps", "orthanc")
        self.wait_ready()

    def stop_orthanc(self) -> None:
        self.compose("stop", "--timeout", "30", "orthanc")

    def restart_orthanc(self) -> None:
        """Re-create Orthanc on the files as they are now, as orthweb-refresh does."""
        self.compose("up", "--detach", "--no-deps", "--force-recreate", "orthanc")
        self.passwords = json.loads((self.secrets / USERS_FILE).read_text())
        self.wait_ready()

    def reload_nginx(self) -> None:
        self.compose("kill", "--signal", "HUP", "nginx")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if (self.root / "sbin" / "docker").exists() and (self.etc / "docker-compose.yml").exists():
                self.compose("down", "--volumes", "--timeout", "30")
        with contextlib.suppress(Exception):
            self._detach_archive_volume()
        self._stop_postgres()


def missing_prerequisites() -> list[str]:
    """The programs and files the container harness needs that this machine lacks (Debian packages)."""
    tools = ("dockerd", "docker", "mmdebstrap", "openssl", "jq", "psql", "storescu", "losetup", "mkfs.ext4")
    return [t for t in tools if not shutil.which(t)] + [str(f) for f in (PG_BIN / "initdb",) if not f.exists()]


def other_project_running(project: str = PROJECT) -> bool:
    proc = subprocess.run(
        ["docker", "ps", "--quiet", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(proc.stdout.strip())


@contextlib.contextmanager
def container_host(
    settings: Settings | None = None,
    base_dir: str | None = None,
    keep: bool = False,
    deployment: Deployment | None = None,
    client_addresses: Sequence[str] = (),
    *,
    project: str = PROJECT,
    instance_id: str = "",
    primary: ContainerHost | None = None,
    archive_volume_mb: int = ARCHIVE_VOLUME_MB,
) -> Iterator[ContainerHost]:
    """The application in containers for ``settings`` (default: :func:`deployment_settings`), on an
    engine started if none runs; everything stopped and removed after (the directory unless ``keep``).
    ``project``, ``instance_id`` and ``primary`` make it one of several hosts: the Compose project it
    runs as, its instance id, and the host whose database, secrets and emulator it shares.
    ``archive_volume_mb``: the size of its archive volume."""
    missing = missing_prerequisites()
    if missing:
        raise AppHostError(f"missing {', '.join(missing)}: install the Debian packages (make debian)")
    root = Path(tempfile.mkdtemp(prefix="orthweb-app-", dir=base_dir))
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(running_engine(root / "dockerd.log"))
            if other_project_running(project):
                raise AppHostError(
                    f"containers of a Compose project named {project} already run on this engine: "
                    f"stop them first (make app-down, make demo-down, or docker compose -p {project} down)"
                )
            images = build_all(root / "images.log")
            settings = settings or deployment_settings()
            moto: MotoServer
            if primary is not None:
                moto = primary.moto
            elif deployment is not None:
                moto = MotoServer(endpoint=deployment.endpoint, region=deployment.region)
            else:
                moto = stack.enter_context(moto_server(settings.region))
            gateway = bridge_gateway()
            keys = None
            if settings.cognito:
                signers = AlbSigner(), PoolSigner()
                keys = KeyEndpoints(free_port(), *signers, lifetime=KEY_ENDPOINTS_LIFETIME_S, host=gateway)
                stack.enter_context(keys)
            host = ContainerHost(
                root=root,
                settings=settings,
                moto=moto,
                deployment=deployment,
                images=images,
                db_host=gateway,
                client_addresses=client_addresses,
                project=project,
                oidc=keys,
                instance_id=instance_id,
                primary=primary,
                archive_volume_mb=archive_volume_mb,
            )
            try:
                host.start()
                yield host
            finally:
                host.stop()
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def absent(needs: Sequence[str]) -> list[str]:
    """Those of ``needs`` (programs on PATH, or file paths) this machine lacks."""
    return [need for need in needs if not (Path(need).exists() or shutil.which(need))]


def require_containers(extra: Sequence[str] = ()) -> None:
    """Not run (a skip; a failure in CI) where this machine cannot run the container harness: not
    root, or a Debian package missing (``extra``: more of them, for a test module's own needs)."""
    if os.geteuid() != 0:
        not_run("the container harness starts dockerd and reads other processes' /proc: it needs root")
    missing = missing_prerequisites() + absent(extra)
    if missing:
        not_run(f"the container harness needs {', '.join(missing)} ({INSTALL_HINT})")


@contextlib.contextmanager
def containers_for_test(
    settings: Settings, client_addresses: Sequence[str] = (), *, archive_volume_mb: int = ARCHIVE_VOLUME_MB
) -> Iterator[ContainerHost]:
    """:func:`container_host` for a test module, where this machine can run it (:func:`require_containers`)."""
    require_containers()
    with container_host(settings, client_addresses=client_addresses, archive_volume_mb=archive_volume_mb) as host:
        yield host
