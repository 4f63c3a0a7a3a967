"""Several Orthanc servers on the one harness PostgreSQL, behind an nginx upstream that stands in
for the Network Load Balancer (``hosts`` >= 2, docs/scaling.md).

:func:`fleet_host` starts what :func:`orthweb_dev.harness.app_host` starts, with the rendered
configuration of a multi-host deployment, but ``size`` Orthanc processes instead of one: each is one
host's Orthanc, with its own ports, storage directory, log and ``host.json`` written by the host's
own ``orthweb-host-config`` step (so each has its own ``DatabaseServerIdentifier``). The rendered
nginx proxies to an ``upstream`` of all of them, for HTTPS and DICOM TLS, and logs which one took
each DICOM connection. Every difference from the EC2 hosts is in :data:`FLEET_DIFFERENCES`.

What this proves and what it does not: several Orthancs share one index and storage over verified
TLS, an instance acknowledged by one is visible from all, a killed Orthanc loses nothing acknowledged
and new associations reach the survivors, and the PostgreSQL plugin reconnects after a database
restart. The balancer itself is AWS's: the upstream fails over when a connection is refused, while the
NLB stops sending new connections to a host once its health check (``orthweb-health``) fails twice,
10 seconds apart, so on AWS a dead Orthanc costs the associations that reach its host in those
seconds (the senders retry them). Images live in PostgreSQL here: the S3 plugin is not in Debian.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orthweb.settings import Settings
from orthweb_dev.dicom import TEST_AET
from orthweb_dev.emulator_server import moto_server
from orthweb_dev.harness import PG_BIN, AppHost, AppHostError, UpstreamTls, missing_prerequisites
from orthweb_dev.proc import free_port, port_open, run, stop_process, wait_until

HTTP_POOL = "orthanc_http_pool"
DICOM_POOL = "orthanc_dicom_pool"
# Several hosts with images in PostgreSQL: what the harness can run (no S3 plugin in Debian), and
# the DICOM peer the tests and the benchmark call from (orthweb_dev.dicom's AE title), allowed to
# store and find from loopback.
FLEET_SETTINGS = Settings(
    hosts=2,
    db_multi_az=True,
    endpoints_in_all_azs=True,
    dicom_peers=[{"aet": TEST_AET, "cidr": "127.0.0.0/8", "permissions": ["store", "find"]}],
)

FLEET_DIFFERENCES: dict[str, tuple[str, str, str]] = {
    "balancer": (
        "in front of the hosts",
        "Network Load Balancer: TCP to each host's nginx; a host leaves after 2 failed health checks 10 s apart",
        "nginx upstream of the Orthancs inside the one nginx; a server leaves when its connection is refused",
    ),
    "hosts": ("one Orthanc per host", "one EC2 instance each (nginx + Orthanc)", "N Orthanc processes, one nginx"),
    "server_identifier": (
        "host.json DatabaseServerIdentifier",
        "the instance id (IMDSv2)",
        "harness-orthanc-<i> (ORTHWEB_INSTANCE_ID)",
    ),
    "health_check_target": (
        "orthweb.env ORTHWEB_WEB_PORT, ORTHWEB_SITE_NAME (orthweb-health's target)",
        "443, the site's name",
        "nginx's port, localhost",
    ),
    "dicom_log": (
        "nginx stream access log",
        "none",
        "<tmp>/nginx/dicom-upstream.log: which Orthanc took each connection",
    ),
    "storage": ("where images live", "S3 (storage = s3) or PostgreSQL", "PostgreSQL (the S3 plugin is not in Debian)"),
}


@dataclass
class Member:
    """One host's Orthanc: its ports and process."""

    index: int
    http: int
    dicom: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def server_id(self) -> str:
        return f"harness-orthanc-{self.index}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class FleetHost(AppHost):
    """The harness with ``size`` Orthancs behind the nginx upstream (see the module docstring)."""

    size: int = 2
    members: list[Member] = field(default_factory=list)
    # 503s member_rest retried: requests that met a database connection the server had dropped.
    unavailable_answers: int = 0

    # --- Orthancs --------------------------------------------------------------------------------
    def member_log(self, member: Member) -> Path:
        return self.root / f"orthanc-{member.index}.log"

    def member_config(self, member: Member) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(orthweb.json, the secrets fragment, host.json) for one member, as on its host."""
        config, secrets = self.orthanc_config()
        config.update(
            HttpPort=member.http,
            DicomPort=member.dicom,
            StorageDirectory=str(self.root / f"orthanc-storage-{member.index}"),
            IndexDirectory=str(self.root / f"orthanc-storage-{member.index}"),
            TemporaryDirectory=str(self.root / f"orthanc-tmp-{member.index}"),
        )
        host_etc = self.root / "hosts" / str(member.index)
        host_etc.mkdir(parents=True, exist_ok=True)
        env = {**self.script_env(), "ORTHWEB_ETC": str(host_etc), "ORTHWEB_INSTANCE_ID": member.server_id}
        subprocess.run(
            [str(self.root / "sbin" / "orthweb-host-config")], env=env, check=True, capture_output=True, text=True
        )
        host_config = json.loads((host_etc / "orthanc-host.json").read_text())
        return config, secrets, host_config

    def start_member(self, member: Member) -> None:
        """Start (or start again) one host's Orthanc on the secret files as they are now."""
        config, secrets, host_config = self.member_config(member)
        conf_dir = self.root / f"orthanc-config-{member.index}"
        shutil.rmtree(conf_dir, ignore_errors=True)
        conf_dir.mkdir(mode=0o700)
        (conf_dir / "orthweb.json").write_text(json.dumps(config, indent=2))
        (conf_dir / "host.json").write_text(json.dumps(host_config, indent=2))
        fragment = conf_dir / "secrets.json"
        fragment.touch(mode=0o600)
        fragment.write_text(json.dumps(secrets, indent=2))
        self.passwords = dict(secrets["RegisteredUsers"])
        Path(config["TemporaryDirectory"]).mkdir(exist_ok=True)
        member.starts += 1
        log = self.member_log(member)
        member.proc = self._spawn_orthanc(conf_dir, log, f"Orthanc {member.index} start {member.starts}")
        wait_until(
            f"Orthanc {member.index}",
            lambda: port_open(member.dicom) and self._rest_ok(f"http://127.0.0.1:{member.http}"),
            log=log,
            proc=member.proc,
        )

    def kill_member(self, member: Member) -> None:
        """SIGKILL: a host that dies, with no time to finish anything."""
        if member.proc is not None and member.proc.poll() is None:
            member.proc.kill()
            member.proc.wait()

    def start_orthanc(self) -> None:
        if not self.members:
            ports = [(self.ports["orthanc_http"], self.ports["orthanc_dicom"])]
            ports += [(free_port(), free_port()) for _ in range(self.size - 1)]
            self.members = [Member(i, http, dicom) for i, (http, dicom) in enumerate(ports)]
        for member in self.members:
            self.start_member(member)
        self.orthanc_proc = self.members[0].proc

    def stop_orthanc(self) -> None:
        for member in self.members:
            stop_process(member.proc, timeout=30)
            member.proc = None
        self.orthanc_proc = None

    def member_rest(self, member: Member, path: str, *, retry_unavailable: int = 0) -> Any:
        """GET ``path`` straight from one member's Orthanc (not through nginx); the parsed JSON.

        ``retry_unavailable``: send again on 503, as a client does. After the database dropped its
        connections, each of Orthanc's pooled index connections fails one request with 503 (the
        plugin's DatabaseUnavailable) and reconnects for the next.
        """
        token = b64encode(f"{self.admin_user}:{self.admin_password}".encode()).decode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{member.http}{path}", headers={"Authorization": f"Basic {token}"}
        )
        for attempt in range(retry_unavailable + 1):
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                if err.code != 503 or attempt == retry_unavailable:
                    raise
                self.unavailable_answers += 1
        raise AssertionError("unreachable")

    # --- the upstream standing in for the balancer -----------------------------------------------
    @property
    def upstream_log(self) -> Path:
        return self.root / "nginx" / "dicom-upstream.log"

    def nginx_conf(self, dicom_upstream: int | None = None, upstream_tls: UpstreamTls | None = None) -> str:
        text = super().nginx_conf(dicom_upstream, upstream_tls)
        if dicom_upstream is not None or upstream_tls is not None or not self.members:
            return text
        pools = {
            HTTP_POOL: [m.http for m in self.members],
            DICOM_POOL: [m.dicom for m in self.members],
        }
        for pool, ports in pools.items():
            text, n = re.subn(rf"127\.0\.0\.1:{ports[0]}\b", pool, text)
            if n == 0:
                raise AppHostError(f"nginx.conf: no 127.0.0.1:{ports[0]} to replace with {pool}")

        def block(pool: str) -> str:
            servers = "".join(f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;\n" for port in pools[pool])
            return f"  upstream {pool} {{\n{servers}  }}\n"

        text = text.replace("http {\n", "http {\n" + block(HTTP_POOL), 1)
        log = (
            "  log_format upstream '$remote_addr|$upstream_addr|$status|$session_time';\n"
            f"  access_log {self.upstream_log} upstream;\n"
        )
        return text.replace("stream {\n", "stream {\n" + block(DICOM_POOL) + log, 1)

    def upstream_counts(self) -> dict[int, int]:
        """DICOM connections each member took, from the upstream's log (its index -> count)."""
        by_port = {m.dicom: m.index for m in self.members}
        counts = dict.fromkeys(by_port.values(), 0)
        lines = self.upstream_log.read_text().splitlines() if self.upstream_log.exists() else []
        for line in lines:
            port = self.served_port(line)
            if port in by_port:
                counts[by_port[port]] += 1
        return counts

    @staticmethod
    def served_port(line: str) -> int | None:
        """The Orthanc port that served one connection of the upstream log. nginx lists every
        address it tried ("a, b" when ``a`` refused): the last one served."""
        last = line.split("|")[1].rsplit(",", maxsplit=1)[-1].strip()
        return int(last.rsplit(":", 1)[1]) if ":" in last else None

    def start(self) -> None:
        super().start()
        # orthweb-health asks nginx for the site's name on the web port; here nginx is on loopback.
        env = self.etc / "orthweb.env"
        text = re.sub(
            r"^ORTHWEB_WEB_PORT=.*$", f"ORTHWEB_WEB_PORT={self.ports['nginx_web']}", env.read_text(), flags=re.M
        )
        env.write_text(re.sub(r"^ORTHWEB_SITE_NAME=.*$", "ORTHWEB_SITE_NAME=localhost", text, flags=re.M))

    def restart_postgres(self) -> None:
        """Stop the database, dropping every connection, and start it again: what Orthanc sees when
        RDS fails over to its standby or restarts."""
        ctl = [*self._pg_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.pg / "data"), "-w", "-t", "60"]
        run([*ctl, "-m", "fast", "restart", "-l", str(self.pg / "postgres.log")])
        wait_until("PostgreSQL", self._pg_ready, log=self.pg / "postgres.log")


@contextlib.contextmanager
def fleet_host(size: int = 2, settings: Settings | None = None, base_dir: str | None = None) -> Iterator[FleetHost]:
    """Start the harness with ``size`` Orthancs behind the upstream; stop everything after."""
    missing = missing_prerequisites()
    if missing:
        raise AppHostError(f"missing {', '.join(missing)}: install the Debian packages (make debian)")
    root = Path(tempfile.mkdtemp(prefix="orthweb-fleet-", dir=base_dir))
    try:
        with moto_server() as moto:
            host = FleetHost(root=root, settings=settings or FLEET_SETTINGS, moto=moto, size=size)
            try:
                host.start()
                yield host
            finally:
                host.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
