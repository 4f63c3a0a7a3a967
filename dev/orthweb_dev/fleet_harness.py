"""Several hosts on one database behind a balancer (``hosts`` >= 2, docs/scaling.md), each host the
application in its containers, as the EC2 hosts run it.

:func:`fleet_host` starts ``size`` hosts of :class:`orthweb_dev.containers.ContainerHost` on the one
engine, each its own Compose project (``orthweb-<i>``) brought up by its own rendered
``orthweb-refresh --up``: its own ``orthweb-host-config`` (its ``DatabaseServerIdentifier``), the
shared certificate through ``orthweb-shared-cert`` (one secret in the emulator), the first host's
PostgreSQL and secrets. In front of them, standing in for the Network Load Balancer, Debian's nginx
runs as a TCP balancer on this machine (``stream``, no TLS of its own): it passes each connection to
a host's published web or DICOM port and logs which host took it. Every difference from the EC2
hosts is in :data:`FLEET_DIFFERENCES`.

What this proves and what it does not: several Orthancs share one index and storage over verified
TLS, an instance acknowledged by one host is served by all, a host that dies (its containers killed)
loses nothing acknowledged and new associations reach the survivors, the PostgreSQL plugin
reconnects after a database restart, and each host's ``orthweb-health`` tells a serving host from a
broken one. The balancer itself is AWS's: this one takes a host out when its connection is refused,
while the NLB stops sending new connections to a host once its health check fails twice, 10 seconds
apart, so on AWS a dead host costs the associations that reach it in those seconds (the senders
retry them). Images live in PostgreSQL here: the S3 plugin is not in Debian.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orthweb.settings import Settings
from orthweb_dev.containers import ENGINE_CLIENTS, PROJECT, SERVICES, ContainerHost, absent, container_host
from orthweb_dev.dicom import TEST_AET
from orthweb_dev.harness import PG_BIN, AppHostError
from orthweb_dev.proc import free_port, port_open, run, stop_process, wait_until
from orthweb_dev.testing import NGINX_STREAM_MODULE

# Several hosts with images in PostgreSQL: what the harness can run (no S3 plugin in Debian), and
# the DICOM peer the tests and the benchmark call as (orthweb_dev.dicom's AE title), allowed to
# store and find from the engine's networks (where this machine's connections reach each host from).
FLEET_SETTINGS = Settings(
    hosts=2,
    db_multi_az=True,
    endpoints_in_all_azs=True,
    dicom_peers=[{"aet": TEST_AET, "cidr": ENGINE_CLIENTS, "permissions": ["store", "find"]}],
)

FLEET_DIFFERENCES: dict[str, tuple[str, str, str]] = {
    "balancer": (
        "in front of the hosts",
        "Network Load Balancer: TCP to each host's 443 and 11112; a host leaves after 2 failed health checks "
        "10 s apart",
        "Debian's nginx (stream) on this machine: TCP to each host's published ports; a host leaves when its "
        "connection is refused, for 10 s",
    ),
    "hosts": (
        "one host each",
        "one EC2 instance each, Compose project orthweb",
        "one Compose project each on the one engine, orthweb-<i> (the harness's docker wrapper renames the project)",
    ),
    "server_identifier": (
        "host.json DatabaseServerIdentifier",
        "the instance id (IMDSv2)",
        "harness-host-<i> (ORTHWEB_INSTANCE_ID)",
    ),
    "site_name": (
        "the name on the shared certificate (orthweb-shared-cert)",
        "the site's name or the balancer's DNS name",
        "localhost: ORTHWEB_BALANCER_DNS (the balancer is on loopback)",
    ),
    "health_check": (
        "who calls orthweb-health",
        "the balancer, on each host's health port (orthweb-health.socket)",
        "the tests: the host's own orthweb-health, the balancer's request on its standard input",
    ),
    "balancer_log": (
        "which host took each connection",
        "not logged",
        "<tmp>/balancer/connections.log (the upstream address is the host's published port)",
    ),
    "client_address": (
        "the client address a host's nginx sees",
        "the client's own (the NLB preserves it)",
        "the host's project network's gateway (Docker's userland proxy, from the balancer)",
    ),
    "storage": ("where images live", "S3 (storage = s3) or PostgreSQL", "PostgreSQL (the S3 plugin is not in Debian)"),
}

# What the balancer needs besides the container harness's packages: Debian's nginx and its stream module.
BALANCER_NEEDS = ("nginx", str(NGINX_STREAM_MODULE))

BALANCER_CONF = """load_module {module};
worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
stream {{
  log_format balancer '$remote_addr|$upstream_addr|$status|$session_time';
  access_log {dir}/connections.log balancer;
  upstream web {{
{web}  }}
  upstream dicom {{
{dicom}  }}
  server {{ listen 127.0.0.1:{web_port}; proxy_pass web; proxy_connect_timeout 2s; }}
  server {{ listen 127.0.0.1:{dicom_port}; proxy_pass dicom; proxy_connect_timeout 2s; }}
}}
"""


@dataclass
class FleetHost:
    """``hosts`` behind the balancer (see the module docstring); ``ports`` are the balancer's."""

    root: Path
    settings: Settings
    hosts: list[ContainerHost] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    balancer: subprocess.Popen[bytes] | None = None
    # 503s member_rest retried: requests that met a database connection the server had dropped.
    unavailable_answers: int = 0

    # --- what the fleet shares -------------------------------------------------------------------
    @property
    def first(self) -> ContainerHost:
        return self.hosts[0]

    @property
    def server_cert(self) -> Path:
        """The shared certificate: every host presents it."""
        return self.first.server_cert

    def tls_context(self) -> ssl.SSLContext:
        return self.first.tls_context()

    @property
    def rendered(self) -> dict[str, str]:
        return self.first.rendered

    @property
    def pg(self) -> Path:
        return self.first.pg

    def psql(self, sql: str) -> str:
        return self.first.psql(sql)

    # --- hosts -----------------------------------------------------------------------------------
    def alive(self, host: ContainerHost) -> bool:
        return host.running()

    def kill_host(self, host: ContainerHost) -> None:
        """SIGKILL to both containers: a host that dies, with no time to finish anything. Docker
        leaves a killed container stopped (restart: unless-stopped), so its ports are closed."""
        run(["docker", "kill", "--signal", "KILL", *(host.container(s) for s in SERVICES)])
        wait_until(f"{host.project} stopped", lambda: not any(host.service_running(s) for s in SERVICES), timeout=30)

    def start_host(self, host: ContainerHost) -> None:
        """The host's boot again: ``orthweb-refresh --up`` on its files, then ready."""
        host.host_step("orthweb-refresh", "--up")
        host.wait_ready()

    def host_rest(self, host: ContainerHost, path: str, *, retry_unavailable: int = 0) -> Any:
        """GET ``path`` from one host (its own nginx and Orthanc, not the balancer); the parsed JSON.

        ``retry_unavailable``: send again on 503, as a client does. After the database dropped its
        connections, each of Orthanc's pooled index connections fails one request with 503 (the
        plugin's DatabaseUnavailable) and reconnects for the next.
        """
        for attempt in range(retry_unavailable + 1):
            status, body = host.rest("GET", path, timeout=60)
            if status == 200:
                return json.loads(body)
            if status != 503 or attempt == retry_unavailable:
                raise AppHostError(f"GET {path} from {host.project}: {status} {body[:200]!r}")
            self.unavailable_answers += 1
        raise AssertionError("unreachable")

    def restart_postgres(self) -> None:
        """Stop the database, dropping every connection, and start it again: what Orthanc sees when
        RDS fails over to its standby or restarts."""
        first = self.first
        ctl = [*first._pg_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.pg / "data"), "-w", "-t", "60"]
        run([*ctl, "-m", "fast", "restart", "-l", str(self.pg / "postgres.log")])
        wait_until("PostgreSQL", first._pg_ready, log=self.pg / "postgres.log")

    # --- the balancer ----------------------------------------------------------------------------
    @property
    def upstream_log(self) -> Path:
        return self.root / "balancer" / "connections.log"

    def start_balancer(self) -> None:
        directory = self.root / "balancer"
        directory.mkdir()
        self.ports = {"nginx_web": free_port(), "nginx_dicom": free_port()}

        def servers(port: str) -> str:
            return "".join(f"    server 127.0.0.1:{h.ports[port]} max_fails=1 fail_timeout=10s;\n" for h in self.hosts)

        conf = directory / "nginx.conf"
        conf.write_text(
            BALANCER_CONF.format(
                module=NGINX_STREAM_MODULE,
                dir=directory,
                web=servers("nginx_web"),
                dicom=servers("nginx_dicom"),
                web_port=self.ports["nginx_web"],
                dicom_port=self.ports["nginx_dicom"],
            )
        )
        log = directory / "error.log"
        cmd = ["nginx", "-p", str(directory), "-e", str(log), "-c", str(conf)]
        run([*cmd, "-t", "-q"])
        self.balancer = subprocess.Popen(
            [*cmd, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(
            "the balancer",
            lambda: port_open(self.ports["nginx_web"]) and port_open(self.ports["nginx_dicom"]),
            log=log,
            proc=self.balancer,
        )

    def upstream_counts(self) -> dict[int, int]:
        """DICOM connections each host took, from the balancer's log (its index -> count)."""
        by_port = {h.ports["nginx_dicom"]: i for i, h in enumerate(self.hosts)}
        counts = dict.fromkeys(by_port.values(), 0)
        lines = self.upstream_log.read_text().splitlines() if self.upstream_log.exists() else []
        for line in lines:
            port = self.served_port(line)
            if port in by_port:
                counts[by_port[port]] += 1
        return counts

    @staticmethod
    def served_port(line: str) -> int | None:
        """The host port that served one connection of the balancer's log. nginx lists every
        address it tried ("a, b" when ``a`` refused): the last one served."""
        last = line.split("|")[1].rsplit(",", maxsplit=1)[-1].strip()
        return int(last.rsplit(":", 1)[1]) if ":" in last else None

    def stop(self) -> None:
        stop_process(self.balancer)
        self.balancer = None


@contextlib.contextmanager
def fleet_host(size: int = 2, settings: Settings | None = None, base_dir: str | None = None) -> Iterator[FleetHost]:
    """``size`` hosts in containers behind the balancer; everything stopped and removed after."""
    settings = settings or FLEET_SETTINGS
    if not settings.multi_host:
        raise AppHostError("the fleet harness runs a deployment of several hosts: set hosts >= 2")
    missing = absent(BALANCER_NEEDS)
    if missing:
        raise AppHostError(f"missing {', '.join(missing)}: install the Debian packages (make debian)")
    root = Path(tempfile.mkdtemp(prefix="orthweb-fleet-", dir=base_dir))
    root.chmod(0o755)  # the hosts' directories are inside: PostgreSQL's user reaches the first one's
    fleet = FleetHost(root=root, settings=settings)
    try:
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(
                container_host(settings, base_dir=str(root), project=f"{PROJECT}-0", instance_id="harness-host-0")
            )
            fleet.hosts.append(first)
            for index in range(1, size):
                fleet.hosts.append(
                    stack.enter_context(
                        container_host(
                            settings,
                            base_dir=str(root),
                            project=f"{PROJECT}-{index}",
                            instance_id=f"harness-host-{index}",
                            primary=first,
                        )
                    )
                )
            stack.callback(fleet.stop)
            fleet.start_balancer()
            yield fleet
    finally:
        shutil.rmtree(root, ignore_errors=True)
