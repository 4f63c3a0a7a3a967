"""The Orthweb application on this machine: real PostgreSQL, Orthanc and nginx serving the
configuration the host's user data writes.

:func:`app_host` (a context manager) and the ``app`` fixture start, on 127.0.0.1, on free ports,
in a temporary directory:

- a local AWS emulator (moto) holding the DB master secret and an *empty* admin secret, and the
  host's own secret and certificate steps (``userdata/bin/orthweb-secrets``, ``orthweb-cert``)
  run for real against it, so the admin password is generated exactly as on the host and the
  secrets reach Orthanc as the same 0400 files;
- PostgreSQL 15 with TLS only (``hostssl``), its server certificate signed by a test CA that
  stands in for the RDS CA bundle;
- Debian's Orthanc with the Debian PostgreSQL plugins, configured with the ``orthanc.json``
  rendered by :func:`orthweb.bootstrap.render_app` plus a fragment built from the secret files;
- nginx with the rendered ``nginx.conf``.

Only host-specific values differ from what the EC2 host gets; every difference is in
:data:`HOST_DIFFERENCES` (and docs/app-harness.md). Readiness is polled, never slept for; a
component that does not come up raises :class:`AppHostError` with its log tail. Everything is
stopped, and the directory removed, when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import yaml

from orthweb.app import read_context
from orthweb.bootstrap import (
    MOVE_RELAY_BASE_PORT,
    ORTHANC_DICOM_PORT,
    ORTHANC_HTTP_PORT,
    USERDATA_DIR,
    HostFacts,
    bundle_files,
    dicom_sources,
    render_app,
    render_file,
    template_values,
)
from orthweb.settings import Settings
from orthweb_dev import PROJECT_DIR
from orthweb_dev.emulator_server import MotoServer, moto_server
from orthweb_dev.proc import ProcessError, free_port, port_open, run, stop_process, wait_until
from orthweb_dev.testing import NGINX_STREAM_MODULE

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ORTHANC_PLUGIN_DIR = Path("/usr/lib/orthanc")  # dpkg -L orthanc-postgresql
ORTHANC_PLUGINS = (
    "libOrthancPostgreSQLIndex.so.4.0",  # orthanc-postgresql
    "libOrthancPostgreSQLStorage.so.4.0",
    "libOrthancDicomWeb.so.1.7",  # orthanc-dicomweb
    "libOrthancWebViewer.so.2.8",  # orthanc-webviewer
)
# Where the web UI lives: Orthanc Explorer 2 in the image, the legacy Orthanc Explorer here.
HOST_UI = "/ui/app/"
HARNESS_UI = "/app/explorer.html"
DB_NAME = "orthanc"
DB_USER = "orthweb"
DB_URI_FILE = "ORTHANC__POSTGRESQL__CONNECTION_URI"
USERS_FILE = "ORTHANC__REGISTERED_USERS"
# The capabilities compose gives the nginx container (the rest are dropped), and the user its
# workers run as; the harness runs nginx the same way when it runs as root.
NGINX_CAPABILITIES = ("setuid", "setgid")
NGINX_USER = "nginx"
# The RDS CA path inside the Orthanc container, as written into the URI by orthweb-secrets.
HOST_RDS_CA = "/etc/orthweb/rds-ca.pem"

# Every way the harness's configuration differs from the host's, and why. Values in <angle
# brackets> are filled per run. Nothing else is changed: test_app_config checks that.
HOST_DIFFERENCES: dict[str, tuple[str, str, str]] = {
    # key: (file and setting, on the EC2 host, in the harness)
    "orthanc_http_port": ("orthanc.json HttpPort", "8042 (container network)", "<free port>"),
    "orthanc_dicom_port": ("orthanc.json DicomPort", "4242 (container network)", "<free port>"),
    "orthanc_plugins": (
        "orthanc.json Plugins",
        "set by the orthancteam image: PostgreSQL 7.2, DICOMweb 1.20, Orthanc Explorer 2 1.8.4, "
        "Stone Web Viewer 2.6 and/or OHIF 1.6 (setting viewers), on Orthanc 1.12.7",
        "Debian's, on Orthanc 1.10.1: PostgreSQL 4.0, DICOMweb 1.7 (same DicomWeb section) and, standing "
        "in for Stone/OHIF (not packaged by Debian), the Orthanc Web Viewer 2.8; OE2 is not packaged either",
    ),
    "web_ui": (
        f"nginx.conf location = / (return 302 {HOST_UI})",
        f"Orthanc Explorer 2 at {HOST_UI}",
        f"the legacy Orthanc Explorer at {HARNESS_UI} (OE2 is not in Debian)",
    ),
    "orthanc_storage_dir": (
        "orthanc.json StorageDirectory/IndexDirectory",
        "image default (unused: index and storage are in PostgreSQL)",
        "<tmp>/orthanc-storage",
    ),
    "orthanc_lua": (
        "orthanc.json LuaScripts",
        "/etc/orthweb/orthanc-roles.lua (bind-mounted)",
        "<tmp>/etc/orthanc-roles.lua (the same rendered file)",
    ),
    "orthanc_temporary_dir": ("orthanc.json TemporaryDirectory", "/var/lib/orthanc/tmp (volume)", "<tmp>/orthanc-tmp"),
    "move_relays": (
        "orthanc.json DicomModalities Port of peers with move; nginx.conf listen 127.1.x.y:112xx",
        f"{MOVE_RELAY_BASE_PORT}+n in the shared namespace",
        "the same 127.1.x.y, on a free port",
    ),
    "db_endpoint": ("DB URI host:port (from orthweb.env)", "RDS endpoint:5432", "127.0.0.1:<free port>"),
    "db_ca": ("DB URI sslrootcert", HOST_RDS_CA + " (RDS CA bundle)", "<tmp>/etc/tls/rds-ca.pem (test CA)"),
    "db_master": (
        "the login orthweb-db-role sets Orthanc's role up with (the master secret)",
        "RDS's master user: CREATEROLE, CREATEDB, member of rds_superuser (PostgreSQL 17)",
        "a role with CREATEROLE and CREATEDB, no superuser (PostgreSQL 15)",
    ),
    "nginx_stream_module": ("nginx.conf load_module", "built into the nginx image", str(NGINX_STREAM_MODULE)),
    "nginx_web_listen": ("nginx.conf listen 443", "443 on all addresses", "127.0.0.1:<free port>"),
    "nginx_dicom_listen": ("nginx.conf listen 11112", "11112 on all addresses", "127.0.0.1:<free port>"),
    "nginx_health_listen": ("nginx.conf listen 127.0.0.1:8080", "8080 inside the container", "127.0.0.1:<free port>"),
    "nginx_plain_dicom_listen": (
        "nginx.conf listen 11113 (plain DICOM)",
        "11113, published as 4242",
        "127.0.0.1:<free port>",
    ),
    "nginx_upstreams": (
        "nginx.conf 127.0.0.1:8042, 127.0.0.1:4242",
        "Orthanc's ports on the shared loopback",
        "127.0.0.1:<Orthanc's free ports>",
    ),
    "nginx_tls_files": ("nginx.conf /etc/nginx/tls/", "bind-mounted /etc/orthweb/tls", "<tmp>/etc/tls/"),
    "nginx_auth_files": (
        "nginx.conf /etc/nginx/auth/",
        "bind-mounted /etc/orthweb/nginx-auth",
        "<tmp>/etc/nginx-auth/",
    ),
    "nginx_files": (
        "nginx.conf access_log (both), pid, temp paths",
        "/dev/stdout (CloudWatch Logs through Docker's awslogs), /run/nginx.pid, /var/cache/nginx/*_temp (tmpfs)",
        "<tmp>/nginx/",
    ),
    "nginx_user": (
        "nginx.conf user nginx",
        "the image's nginx user (101), capabilities SETUID, SETGID",
        "a system user nginx, same capabilities (setpriv) when run as root; as another user, that user",
    ),
    "web_port": ("orthweb.env ORTHWEB_WEB_PORT (the health probe's port)", "443 (or 80)", "<nginx's free port>"),
    "host_names": (
        "certificate names (orthweb-cert)",
        "public/private DNS names and IPs from IMDSv2",
        "localhost, 127.0.0.1",
    ),
}


@dataclass(frozen=True)
class UpstreamTls:
    """nginx's side of a TLS hop to its DICOM upstream: the client certificate it presents, the CA
    it verifies the upstream with, and the name the upstream's certificate must carry."""

    cert: Path
    key: Path
    ca: Path
    name: str

    def directives(self) -> str:
        return (
            f" proxy_ssl on; proxy_ssl_certificate {self.cert}; proxy_ssl_certificate_key {self.key};"
            f" proxy_ssl_trusted_certificate {self.ca}; proxy_ssl_verify on; proxy_ssl_name {self.name};"
            " proxy_ssl_session_reuse on;"
        )


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
class AppHost:
    """A running application. Ports are on 127.0.0.1; ``passwords`` are the generated ones."""

    root: Path
    settings: Settings
    moto: MotoServer
    ports: dict[str, int] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    db_secret_arn: str = ""
    admin_secret_arn: str = ""
    orthanc_proc: subprocess.Popen[bytes] | None = None
    nginx_proc: subprocess.Popen[bytes] | None = None
    orthanc_starts: int = 0
    rendered: dict[str, str] = field(default_factory=dict)
    # Benchmarks only: settings laid over the rendered orthanc.json at the next Orthanc start.
    orthanc_overrides: dict[str, Any] = field(default_factory=dict)
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
    def nginx_access_log(self) -> Path:
        return self.root / "nginx" / "access.log"

    @property
    def nginx_dicom_log(self) -> Path:
        return self.root / "nginx" / "dicom.log"

    @property
    def orthanc_log(self) -> Path:
        return self.root / "orthanc.log"

    def access_entries(self) -> list[dict[str, Any]]:
        """nginx's access log, one dict per HTTP request (log_format orthweb), as far as written."""
        return _json_lines(self.nginx_access_log)

    def dicom_entries(self) -> list[dict[str, Any]]:
        """nginx's stream log, one dict per DICOM connection (log_format dicom), as far as written."""
        return _json_lines(self.nginx_dicom_log)

    @property
    def nginx_error_log(self) -> Path:
        return self.root / "nginx" / "error.log"

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
        # No Docker here: the shim records the compose calls; the harness acts on them.
        (sbin / "docker").write_text(f'#!/bin/sh\necho "$*" >> {self.root / "docker.log"}\n')
        (sbin / "docker").chmod(0o755)

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

    # --- Orthanc -------------------------------------------------------------------------------
    def orthanc_config(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(rendered orthanc.json with the host differences, the secrets fragment) for Orthanc."""
        config = json.loads(self.rendered["orthanc.json"])
        config.update(
            HttpPort=self.ports["orthanc_http"],
            DicomPort=self.ports["orthanc_dicom"],
            Plugins=[str(ORTHANC_PLUGIN_DIR / p) for p in ORTHANC_PLUGINS],
            StorageDirectory=str(self.root / "orthanc-storage"),
            IndexDirectory=str(self.root / "orthanc-storage"),
            LuaScripts=[str(self.etc / "orthanc-roles.lua")],
            TemporaryDirectory=str(self.root / "orthanc-tmp"),
        )
        for modality in config["DicomModalities"].values():
            if modality["Port"] >= MOVE_RELAY_BASE_PORT:
                modality["Port"] = self.ports[f"move_relay_{modality['Port'] - MOVE_RELAY_BASE_PORT}"]
        uri = (self.secrets / DB_URI_FILE).read_text()
        uri = uri.replace(f"sslrootcert={HOST_RDS_CA}", f"sslrootcert={quote(str(self.tls / 'rds-ca.pem'))}")
        # Orthanc refuses a section defined in two files, so the fragment carries the whole
        # PostgreSQL section with the URI merged in: what the orthancteam image's configurator does.
        postgres = {**config.pop("PostgreSQL"), "ConnectionUri": uri}
        users = json.loads((self.secrets / USERS_FILE).read_text())
        return config, {"PostgreSQL": postgres, "RegisteredUsers": users}

    def _capabilities(self, keep: tuple[str, ...]) -> list[str]:
        """A prefix that runs a program (as root) with only the capabilities ``keep``, and no
        privilege gain, like the container's cap_drop/cap_add and no-new-privileges; none when not root."""
        if os.geteuid() != 0:
            return []
        caps = ",".join(["-all", *(f"+{c}" for c in keep)])
        return ["setpriv", f"--bounding-set={caps}", "--inh-caps=-all", "--no-new-privs", "--"]

    def start_orthanc(self) -> None:
        """Start Orthanc on the secret files as they are now (a fresh process, as a new container)."""
        config, secrets = self.orthanc_config()
        config.update(self.orthanc_overrides)
        conf_dir = self.root / "orthanc-config"
        shutil.rmtree(conf_dir, ignore_errors=True)
        conf_dir.mkdir(mode=0o700)
        (conf_dir / "orthweb.json").write_text(json.dumps(config, indent=2))
        fragment = conf_dir / "secrets.json"
        fragment.touch(mode=0o600)
        fragment.write_text(json.dumps(secrets, indent=2))
        self.passwords = dict(secrets["RegisteredUsers"])
        (self.root / "orthanc-tmp").mkdir(exist_ok=True)
        self.orthanc_starts += 1
        self.orthanc_proc = self._spawn_orthanc(conf_dir, self.orthanc_log, f"Orthanc start {self.orthanc_starts}")
        wait_until("Orthanc", self._orthanc_ready, log=self.orthanc_log, proc=self.orthanc_proc)

    def _spawn_orthanc(self, conf_dir: Path, log_path: Path, banner: str) -> subprocess.Popen[bytes]:
        """Start Orthanc on the configuration in ``conf_dir``, appending its output to ``log_path``
        after a ``banner`` line; with no capability at all, as the container (cap_drop: ALL)."""
        with log_path.open("ab") as log:
            log.write(f"--- orthweb harness: {banner}\n".encode())
            return subprocess.Popen(
                [*self._capabilities(()), "Orthanc", str(conf_dir)],
                cwd=self.root,
                env={**os.environ, **self.orthanc_environment()},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def orthanc_environment(self) -> dict[str, str]:
        """The Orthanc service's (non-secret) environment from the rendered compose file, as on the host."""
        compose = yaml.safe_load(self.rendered["docker-compose.yml"])
        return {k: str(v) for k, v in (compose["services"]["orthanc"].get("environment") or {}).items()}

    def _orthanc_ready(self) -> bool:
        return port_open(self.ports["orthanc_dicom"]) and self._rest_ok(
            f"http://127.0.0.1:{self.ports['orthanc_http']}"
        )

    def stop_orthanc(self) -> None:
        stop_process(self.orthanc_proc, timeout=30)
        self.orthanc_proc = None

    def restart_orthanc(self) -> None:
        self.stop_orthanc()
        self.start_orthanc()

    # --- nginx ---------------------------------------------------------------------------------
    def nginx_conf(self, dicom_upstream: int | None = None, upstream_tls: UpstreamTls | None = None) -> str:
        """The rendered nginx.conf with the host differences applied. ``dicom_upstream`` points
        the DICOM TLS listener at another local port (the benchmark's other receivers);
        ``upstream_tls`` makes it speak verified TLS to that upstream (the benchmark's
        internal-hop variant)."""
        p, nginx = self.ports, self.root / "nginx"
        text = self.rendered["nginx.conf"]
        web = "443" if self.settings.https else "80"
        subs = [
            (rf"^(\s*)listen {web}( ssl)?;", rf"\1listen 127.0.0.1:{p['nginx_web']}\2;"),
            (r"^(\s*)listen 11112 ssl;", rf"\1listen 127.0.0.1:{p['nginx_dicom']} ssl;"),
            (r"^(\s*)listen 127\.0\.0\.1:8080;", rf"\1listen 127.0.0.1:{p['nginx_health']};"),
            (
                rf"proxy_pass http://127\.0\.0\.1:{ORTHANC_HTTP_PORT};",
                f"proxy_pass http://127.0.0.1:{p['orthanc_http']};",
            ),
            (
                rf"proxy_pass 127\.0\.0\.1:{ORTHANC_DICOM_PORT};",
                f"proxy_pass 127.0.0.1:{dicom_upstream or p['orthanc_dicom']};",
            ),
            (r"/etc/nginx/tls/", f"{self.tls}/"),
            (r"/etc/nginx/auth/", f"{self.etc / 'nginx-auth'}/"),
            (r"access_log /dev/stdout orthweb;", f"access_log {self.nginx_access_log} orthweb;"),
            (r"access_log /dev/stdout dicom;", f"access_log {self.nginx_dicom_log} dicom;"),
            (r"^pid /run/nginx\.pid;", f"pid {nginx}/nginx.pid;"),
            (r"/var/cache/nginx/(\w+)_temp;", rf"{nginx}/\1;"),
            (rf"return 302 {HOST_UI};", f"return 302 {HARNESS_UI};"),
        ]
        if self.settings.plain_dicom_in_vpc:
            subs.append((r"^(\s*)listen 11113;", rf"\1listen 127.0.0.1:{p['nginx_plain_dicom']};"))
        sources = dicom_sources(self.settings)
        movers = [peer for peer in self.settings.dicom_peers if "move" in peer.permissions]
        for n, peer in enumerate(movers):
            source = sources[peer.cidr]
            subs.append(
                (rf"listen {re.escape(source)}:{MOVE_RELAY_BASE_PORT + n};", f"listen {source}:{p[f'move_relay_{n}']};")
            )
        if os.geteuid() != 0:  # only root can switch the workers to another user
            subs.append((r"^user nginx;\n", ""))
        for pattern, repl in subs:
            text, n = re.subn(pattern, repl, text, flags=re.M)
            if n == 0:
                raise AppHostError(f"nginx.conf: no line matches {pattern!r}; update HOST_DIFFERENCES")
        if upstream_tls is not None:
            upstream = f"proxy_pass 127.0.0.1:{dicom_upstream or p['orthanc_dicom']};"
            text = text.replace(upstream, upstream + upstream_tls.directives(), 1)
        return f"load_module {NGINX_STREAM_MODULE};\n{text}"

    def _move_peers(self) -> int:
        return sum("move" in p.permissions for p in self.settings.dicom_peers)

    def restart_nginx(self, dicom_upstream: int | None = None, upstream_tls: UpstreamTls | None = None) -> None:
        """Stop nginx and start it again, its DICOM TLS listener proxying to ``dicom_upstream``."""
        stop_process(self.nginx_proc)
        self._start_nginx(dicom_upstream, upstream_tls)

    def _nginx_user(self) -> None:
        """The nginx system user the workers run as (as the image's), created if missing; it
        owns nginx's temporary directories, as the tmpfs owned by uid 101 in the container."""
        nginx = self.root / "nginx"
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(NGINX_USER)
        except KeyError:
            run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", NGINX_USER])
        for kind in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
            (nginx / kind).mkdir(mode=0o700, exist_ok=True)
            shutil.chown(nginx / kind, NGINX_USER, NGINX_USER)

    def _start_nginx(self, dicom_upstream: int | None = None, upstream_tls: UpstreamTls | None = None) -> None:
        nginx = self.root / "nginx"
        nginx.mkdir(exist_ok=True)
        self._nginx_user()
        conf = nginx / "nginx.conf"
        conf.write_text(self.nginx_conf(dicom_upstream, upstream_tls))
        log = self.nginx_error_log
        with log.open("ab") as out:
            run(["nginx", "-t", "-q", "-p", str(nginx), "-e", str(log), "-c", str(conf)])
            self.nginx_proc = subprocess.Popen(
                [*self._capabilities(NGINX_CAPABILITIES), "nginx", "-p", str(nginx), "-e", str(log),
                 "-c", str(conf), "-g", "daemon off;"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_until(
            "nginx",
            lambda: port_open(self.ports["nginx_dicom"]) and self._rest_ok(self.web_url),
            log=log,
            proc=self.nginx_proc,
        )

    def reload_nginx(self) -> None:
        """SIGHUP, as ``docker compose kill --signal HUP nginx`` does: new configuration, files and
        certificate, without dropping the listeners."""
        assert self.nginx_proc is not None
        self.nginx_proc.send_signal(signal.SIGHUP)

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
            user = user or self.admin_user
            secret = self.passwords[user] if password is None else password
            token = b64encode(f"{user}:{secret}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, context=self.tls_context(), timeout=timeout) as resp:  # noqa: S310
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def rest_json(self, path: str) -> Any:
        status, body = self.rest("GET", path)
        assert status == 200, f"GET {path}: {status} {body[:200]!r}"
        return json.loads(body)

    def _rest_ok(self, base: str) -> bool:
        token = b64encode(f"{self.admin_user}:{self.admin_password}".encode()).decode()
        req = urllib.request.Request(base + "/system", headers={"Authorization": f"Basic {token}"})  # noqa: S310
        ctx = self.tls_context() if base.startswith("https") else None
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # --- lifecycle -----------------------------------------------------------------------------
    def port_names(self) -> list[str]:
        """The loopback ports this harness picks (besides PostgreSQL's)."""
        names = ["orthanc_http", "orthanc_dicom", "nginx_web", "nginx_dicom", "nginx_health"]
        names += [f"move_relay_{n}" for n in range(self._move_peers())]
        return names + (["nginx_plain_dicom"] if self.settings.plain_dicom_in_vpc else [])

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

    def launch(self) -> None:
        """Bring the application up on the prepared files, as the host's boot does."""
        # The host's boot step, for real, as orthweb.service runs it: secrets (generating the
        # passwords), CA bundle, certificate, then `docker compose up`, which the shim records and
        # the harness carries out below.
        self.host_step("orthweb-refresh", "--up")
        self.start_orthanc()
        self._start_nginx()

    def stop(self) -> None:
        stop_process(self.nginx_proc)
        self.stop_orthanc()
        self._stop_postgres()


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


def missing_prerequisites() -> list[str]:
    """The programs and files the harness needs that this machine lacks (Debian packages)."""
    tools = [t for t in ("Orthanc", "nginx", "openssl", "jq", "psql", "storescu") if not shutil.which(t)]
    files = (PG_BIN / "initdb", NGINX_STREAM_MODULE, *(ORTHANC_PLUGIN_DIR / p for p in ORTHANC_PLUGINS))
    return tools + [str(f) for f in files if not f.exists()]


def deployment_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings a deployment from this checkout would use: cdktf.json context, then ``ORTHWEB_*``."""
    return Settings.load(read_context(PROJECT_DIR / "cdktf.json"), os.environ if environ is None else environ)


@contextlib.contextmanager
def app_host(
    settings: Settings | None = None,
    base_dir: str | None = None,
    keep: bool = False,
    deployment: Deployment | None = None,
) -> Iterator[AppHost]:
    """Start the whole application for ``settings`` (default: :func:`deployment_settings`); stop it
    and remove its directory (unless ``keep``) after. With ``deployment`` it runs on that
    deployment's secrets in its emulator, else in its own."""
    missing = missing_prerequisites()
    if missing:
        raise AppHostError(f"missing {', '.join(missing)}: install the Debian packages (make debian)")
    root = Path(tempfile.mkdtemp(prefix="orthweb-app-", dir=base_dir))
    try:
        with contextlib.ExitStack() as stack:
            moto = (
                MotoServer(endpoint=deployment.endpoint, region=deployment.region)
                if deployment
                else stack.enter_context(moto_server())
            )
            host = AppHost(root=root, settings=settings or deployment_settings(), moto=moto, deployment=deployment)
            try:
                host.start()
                yield host
            finally:
                host.stop()
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
