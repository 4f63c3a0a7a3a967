"""What every application host on this machine shares, in its containers or several of them
(:mod:`orthweb_dev.containers`, :mod:`orthweb_dev.fleet_harness`): the host's files in a directory
of its own, the host's own steps (``userdata/bin``, rendered as the bundle renders them) run for real
against a local AWS emulator holding the deployment's secrets, PostgreSQL 15 with TLS only standing
in for RDS (its certificate signed by a test CA that stands in for the RDS CA bundle), and the clients
the tests use: REST through nginx as a web user, TLS verified against the host's own certificate.

Readiness is polled, never slept for; a component that does not come up raises
:class:`AppHostError` with its log tail.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import os
import pwd
import re
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orthweb.app import read_context
from orthweb.bootstrap import (
    USERDATA_DIR,
    HostFacts,
    bundle_files,
    render_app,
    render_file,
    template_values,
)
from orthweb.settings import Settings
from orthweb.thresholds import HEALTH_METRIC, HEALTH_NAMESPACE
from orthweb_dev import PROJECT_DIR
from orthweb_dev.emulator_server import MotoServer
from orthweb_dev.proc import ProcessError, free_port, run, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB_NAME = "orthanc"
DB_USER = "orthweb"
DB_URI_FILE = "ORTHANC__POSTGRESQL__CONNECTION_URI"
USERS_FILE = "ORTHANC__REGISTERED_USERS"
# The RDS CA path inside the Orthanc container, as written into the URI by orthweb-secrets.
HOST_RDS_CA = "/etc/orthweb/rds-ca.pem"


class AppHostError(ProcessError):
    """A component did not start or stop: the message carries its log tail."""


@dataclass(frozen=True)
class Deployment:
    """A deployment's two secrets, in an emulator already running (``make demo``): the harness then
    runs the host's steps against them instead of making its own, and its PostgreSQL role takes
    the login RDS put in the master secret."""

    endpoint: str
    region: str
    db_secret_arn: str
    admin_secret_arn: str


@dataclass
class AppHost(abc.ABC):
    """A running application host. Ports are on 127.0.0.1; ``passwords`` are the generated ones.
    How its application runs (containers) is the subclass's: :meth:`launch` and :meth:`stop`, and
    where its logs are read."""

    root: Path
    settings: Settings
    moto: MotoServer
    ports: dict[str, int] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    db_secret_arn: str = ""
    admin_secret_arn: str = ""
    rendered: dict[str, str] = field(default_factory=dict)
    deployment: Deployment | None = None
    db_user: str = DB_USER
    # Where PostgreSQL listens besides loopback, and the address the host's URI names.
    db_host: str = "127.0.0.1"

    # --- paths ---------------------------------------------------------------------------------
    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def tls(self) -> Path:
        return self.etc / "tls"

    @property
    def secrets(self) -> Path:
        return self.etc / "secrets"

    @property
    def pg(self) -> Path:
        return self.root / "pg"

    @property
    def server_cert(self) -> Path:
        """The certificate the host's certificate step made (nginx presents it)."""
        return self.tls / "server.crt"

    @property
    def admin_user(self) -> str:
        """The first user with the admin role (the harness's own requests use it)."""
        return next(name for name, role in self.settings.web_users.items() if role == "admin")

    @property
    def admin_password(self) -> str:
        return self.passwords.get(self.admin_user, "")

    @property
    @abc.abstractmethod
    def nginx_access_log(self) -> Path:
        """nginx's HTTP access lines (log_format orthweb) as a file."""

    @property
    @abc.abstractmethod
    def nginx_dicom_log(self) -> Path:
        """nginx's DICOM connection lines (log_format dicom) as a file."""

    @property
    @abc.abstractmethod
    def orthanc_log(self) -> Path:
        """Orthanc's output as a file."""

    def access_entries(self) -> list[dict[str, Any]]:
        """nginx's access log, one dict per HTTP request (log_format orthweb), as far as written."""
        return _json_lines(self.nginx_access_log)

    def dicom_entries(self) -> list[dict[str, Any]]:
        """nginx's stream log, one dict per DICOM connection (log_format dicom), as far as written."""
        return _json_lines(self.nginx_dicom_log)

    @property
    @abc.abstractmethod
    def nginx_error_log(self) -> Path:
        """nginx's error log as a file."""

    # --- host scripts --------------------------------------------------------------------------
    def script_env(self) -> dict[str, str]:
        env = self.moto.env()
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",  # the venv's aws
            ORTHWEB_ENV_FILE=str(self.etc / "orthweb.env"),
            ORTHWEB_LIB=str(USERDATA_DIR / "lib"),
            ORTHWEB_ETC=str(self.etc),
            ORTHWEB_STATE_DIR=str(self.root / "state"),
            ORTHWEB_SBIN=str(self.root / "sbin"),
            ORTHWEB_DOCKER=str(self.root / "sbin" / "docker"),
            ORTHWEB_IMDS_URL="http://127.0.0.1:9",  # nothing there: the host facts are given here
            ORTHWEB_PUBLIC_HOSTNAME="localhost",
            ORTHWEB_LOCAL_HOSTNAME="localhost",
            ORTHWEB_PUBLIC_IPV4="127.0.0.1",
            ORTHWEB_LOCAL_IPV4="127.0.0.1",
        )
        return env

    def host_step(self, script: str, *args: str) -> list[str]:
        """Run a host script (``orthweb-secrets``, ``orthweb-cert``, ``orthweb-refresh``); its output lines."""
        proc = run([str(self.root / "sbin" / script), *args], env=self.script_env())
        return [line for line in proc.stdout.splitlines() if line]

    def aws(self, *args: str) -> Any:
        proc = run(["aws", "--output", "json", *args], env=self.script_env())
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def health_values(self) -> list[float]:
        """Every value the host's health probe published (orthweb-probe), oldest first (the
        emulator keeps them all)."""
        now = dt.datetime.now(dt.UTC)
        metric = {
            "Namespace": HEALTH_NAMESPACE,
            "MetricName": HEALTH_METRIC,
            "Dimensions": [{"Name": "Deployment", "Value": self.settings.name_prefix}],
        }
        query = [{"Id": "health", "MetricStat": {"Metric": metric, "Period": 1, "Stat": "Minimum"}}]
        answer = self.aws(
            "cloudwatch", "get-metric-data", "--metric-data-queries", json.dumps(query),
            "--start-time", (now - dt.timedelta(hours=1)).isoformat(),
            "--end-time", (now + dt.timedelta(minutes=1)).isoformat(), "--scan-by", "TimestampAscending",
        )  # fmt: skip
        return [float(v) for v in answer["MetricDataResults"][0]["Values"]]

    def put_db_secret(self, password: str) -> None:
        value = json.dumps({"username": self.db_user, "password": password})
        self.aws("secretsmanager", "put-secret-value", "--secret-id", self.db_secret_arn, "--secret-string", value)

    def docker_calls(self) -> list[str]:
        """What the host's refresh step asked Docker to do (a shim records it)."""
        log = self.root / "docker.log"
        return log.read_text().splitlines() if log.exists() else []

    def _install_host_scripts(self) -> None:
        sbin = self.root / "sbin"
        sbin.mkdir()
        # The host's steps as the bundle renders them for these settings (its includes expanded);
        # a step these settings leave out of the bundle is there too, as its template, for the
        # tests that run it directly.
        for script in (USERDATA_DIR / "bin").glob("orthweb-*.sh"):
            (sbin / script.stem).symlink_to(script)
        for host_file in bundle_files(self.settings):
            if host_file.path.startswith("/usr/local/sbin/"):
                step = sbin / Path(host_file.path).name
                step.unlink(missing_ok=True)
                step.write_text(host_file.text)
                step.chmod(0o700)
        # The RDS CA download needs the internet: the test CA is put where it would land.
        (sbin / "orthweb-rds-ca").unlink()
        (sbin / "orthweb-rds-ca").write_text("#!/bin/sh\nexit 0\n")
        (sbin / "orthweb-rds-ca").chmod(0o755)

    # --- PostgreSQL ----------------------------------------------------------------------------
    def _pg_user(self) -> list[str]:
        """Prefix that runs a PostgreSQL server command as a non-root user (it refuses root)."""
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"])
        return ["runuser", "-u", "postgres", "--"]

    def _make_test_ca(self) -> None:
        """A test CA (standing in for the RDS CA) and a PostgreSQL server certificate it signed."""
        ca_dir = self.root / "ca"
        ca_dir.mkdir()
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "2", "-nodes",
             "-subj", "/CN=Orthweb test RDS CA", "-keyout", str(ca_dir / "ca.key"), "-out", str(ca_dir / "ca.crt"),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])  # fmt: skip
        ext = ca_dir / "server.ext"
        names = ",".join(f"IP:{ip}" for ip in sorted({"127.0.0.1", self.db_host}))
        ext.write_text(f"subjectAltName=DNS:localhost,{names}\nextendedKeyUsage=serverAuth\n")
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", str(self.pg / "server.key"), "-out", str(ca_dir / "server.csr")])  # fmt: skip
        run(["openssl", "x509", "-req", "-in", str(ca_dir / "server.csr"), "-CA", str(ca_dir / "ca.crt"),
             "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-days", "2", "-sha256",
             "-extfile", str(ext), "-out", str(self.pg / "server.crt")])  # fmt: skip
        self.tls.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca_dir / "ca.crt", self.tls / "rds-ca.pem")
        (self.tls / "rds-ca.pem").chmod(0o444)

    def _start_postgres(self) -> None:
        self.pg.mkdir()
        (self.pg / "run").mkdir()
        self._make_test_ca()
        prefix = self._pg_user()
        if prefix:
            shutil.chown(self.root, "root", "root")
            self.root.chmod(0o755)
            run(["chown", "-R", "postgres:", str(self.pg)])
        (self.pg / "server.key").chmod(0o600)
        run([*prefix, str(PG_BIN / "initdb"), "-D", str(self.pg / "data"), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-sync"])  # fmt: skip
        port = self.ports["postgres"] = free_port()
        listen = ",".join(sorted({"127.0.0.1", self.db_host}))
        with (self.pg / "data" / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{listen}'\nport = {port}\nunix_socket_directories = '{self.pg / 'run'}'\n"
                # The socket trusts the postgres login: only its owner (and root) may connect to it.
                "unix_socket_permissions = 0700\n"
                f"ssl = on\nssl_cert_file = '{self.pg / 'server.crt'}'\nssl_key_file = '{self.pg / 'server.key'}'\n"
                "ssl_min_protocol_version = 'TLSv1.2'\npassword_encryption = 'scram-sha-256'\n"
            )
        # Like RDS with rds.force_ssl: TCP only over TLS, with SCRAM; the local socket is for the harness.
        # Containers reach it from the engine's bridge networks (samenet: this machine's subnets).
        remote = "hostssl all all samenet scram-sha-256\n" if self.db_host != "127.0.0.1" else ""
        (self.pg / "data" / "pg_hba.conf").write_text(
            "local all postgres trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n" + remote
        )
        log = self.pg / "postgres.log"
        run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(self.pg / "data"), "-l", str(log), "-w", "-t", "60", "start"])
        wait_until("PostgreSQL", self._pg_ready, log=log)

    def _pg_ready(self) -> bool:
        cmd = [str(PG_BIN / "pg_isready"), "-q", "-h", str(self.pg / "run"), "-p", str(self.ports["postgres"])]
        return subprocess.run(cmd, check=False).returncode == 0

    def psql(self, sql: str, db: str = DB_NAME) -> str:
        """Run SQL as the superuser over the local socket; the unaligned, tuples-only output."""
        cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.pg / "run"),
               "-p", str(self.ports["postgres"]), "-U", "postgres", "-d", db, "-c", sql]  # fmt: skip
        return run(cmd).stdout.strip()

    def set_db_password(self, password: str) -> None:
        """ALTER ROLE, as RDS does when it rotates the master password."""
        literal = password.replace("'", "''")
        self.psql(f"ALTER ROLE {self.db_user} PASSWORD '{literal}'", db="postgres")

    def _stop_postgres(self) -> None:
        if (self.pg / "data" / "postmaster.pid").exists():
            subprocess.run(
                [*self._pg_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.pg / "data"), "-m", "fast", "-w", "stop"],
                capture_output=True,
                check=False,
            )

    # --- clients -------------------------------------------------------------------------------
    @property
    def web_url(self) -> str:
        scheme = "https" if self.settings.https else "http"
        return f"{scheme}://localhost:{self.ports['nginx_web']}"

    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts only the certificate the host's certificate step made."""
        return ssl.create_default_context(cafile=str(self.server_cert))

    def rest(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        auth: bool = True,
        timeout: float = 120,
        user: str | None = None,
        password: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """A request through nginx as ``user`` (default: the admin), with that user's generated
        password unless ``password`` is given; returns (status, body bytes). HTTP errors are
        returned, not raised."""
        req = urllib.request.Request(self.web_url + path, data=body, method=method)  # noqa: S310 - loopback
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        if auth:
            for name, value in self.login_headers(user or self.admin_user, password).items():
                req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, context=self.tls_context(), timeout=timeout) as resp:  # noqa: S310
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def rest_json(self, path: str) -> Any:
        status, body = self.rest("GET", path)
        assert status == 200, f"GET {path}: {status} {body[:200]!r}"
        return json.loads(body)

    def login_headers(self, user: str, password: str | None = None) -> dict[str, str]:
        """The headers a request as ``user`` carries: a Basic login, with the user's generated
        password unless ``password`` is given."""
        secret = self.passwords.get(user, "") if password is None else password
        return {"Authorization": "Basic " + b64encode(f"{user}:{secret}".encode()).decode()}

    def _rest_ok(self, base: str) -> bool:
        req = urllib.request.Request(base + "/system", headers=self.login_headers(self.admin_user))  # noqa: S310
        ctx = self.tls_context() if base.startswith("https") else None
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # --- lifecycle -----------------------------------------------------------------------------
    @abc.abstractmethod
    def port_names(self) -> list[str]:
        """The loopback ports this host picks (besides PostgreSQL's)."""

    def start(self) -> None:
        for name in self.port_names():
            self.ports[name] = free_port()
        self.rendered = render_app(self.settings)
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "orthanc-roles.lua").write_text(self.rendered["orthanc-roles.lua"])
        if self.settings.dicom_client_ca:  # what the bundle carries (userdata/tls/dicom-client-ca.pem)
            self.tls.mkdir(parents=True, exist_ok=True)
            (self.tls / "dicom-client-ca.pem").write_text(self.settings.dicom_client_ca)
        self._install_host_scripts()
        self.prepare_database()
        # The host's own orthweb.env, rendered from the template with the harness's facts; only the
        # web port differs (the health probe's), a listed host difference.
        env_text = render_file("orthweb.env", template_values(self.settings, self.host_facts()))
        web_port = "443" if self.settings.https else "80"
        env_text = env_text.replace(f"ORTHWEB_WEB_PORT={web_port}\n", f"ORTHWEB_WEB_PORT={self.ports['nginx_web']}\n")
        (self.etc / "orthweb.env").write_text(env_text)
        self.launch()

    def prepare_database(self) -> None:
        """PostgreSQL standing in for RDS, the deployment's two secrets, and the master login."""
        self._start_postgres()
        if self.deployment is None:
            # The stack's two secrets: RDS's master secret, and the admin secret created empty.
            db_password = b64encode(os.urandom(18)).decode() + "@:/?%"  # characters the URI must escape
            secret = json.dumps({"username": self.db_user, "password": db_password})
            self.db_secret_arn = self.aws(
                "secretsmanager", "create-secret", "--name", "rds!db-harness", "--secret-string", secret
            )["ARN"]
            self.admin_secret_arn = self.aws("secretsmanager", "create-secret", "--name", "orthweb/orthanc-admin")[
                "ARN"
            ]
        else:
            # The deployment's own secrets; the database takes the login RDS put in the master secret.
            self.db_secret_arn = self.deployment.db_secret_arn
            self.admin_secret_arn = self.deployment.admin_secret_arn
            master = json.loads(
                self.aws("secretsmanager", "get-secret-value", "--secret-id", self.db_secret_arn)["SecretString"]
            )
            self.db_user, db_password = master["username"], master["password"]
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.db_user):
            raise AppHostError(f"the database user name {self.db_user!r} is not a plain PostgreSQL identifier")
        literal = db_password.replace("'", "''")
        # Like RDS's master user: it may create roles and databases, and is no superuser.
        self.psql(f"CREATE ROLE {self.db_user} LOGIN CREATEROLE CREATEDB PASSWORD '{literal}'", db="postgres")
        self.psql(f"CREATE DATABASE {DB_NAME} OWNER {self.db_user}", db="postgres")

    def host_facts(self) -> HostFacts:
        """The deployment facts the stack would put in this host's user data."""
        return HostFacts(
            region=self.moto.region,
            db_address=self.db_host,
            db_port=str(self.ports["postgres"]),
            db_name=DB_NAME,
            db_secret_arn=self.db_secret_arn,
            admin_secret_arn=self.admin_secret_arn,
        )

    @abc.abstractmethod
    def launch(self) -> None:
        """Bring the application up on the prepared files, as the host's boot does."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the application and everything the host started."""


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` that nginx has finished writing (a last line without its newline
    is still being written)."""
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


class TlsServer(Protocol):
    """What presents the host's certificate: one host, or the balancer in front of several."""

    def tls_context(self) -> ssl.SSLContext: ...


def dicom_tls(host: TlsServer) -> tuple[ssl.SSLContext, str]:
    """pynetdicom's tls_args: verify nginx against the host's certificate, by name."""
    return host.tls_context(), "localhost"


def deployment_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings a deployment from this checkout would use: cdktf.json context, then ``ORTHWEB_*``."""
    return Settings.load(read_context(PROJECT_DIR / "cdktf.json"), os.environ if environ is None else environ)
