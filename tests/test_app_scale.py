"""Two hosts on one PostgreSQL behind a balancer that stands in for the Network Load Balancer, each
host the rendered compose file in its containers as the EC2 hosts run it (docs/scaling.md): what one
acknowledges every one serves; a host that dies and a restarted database lose nothing acknowledged;
each host's health endpoint, which the balancer checks, tells a serving host from a broken one.
Tests run in file order on one fleet."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from orthweb import capacity
from orthweb.settings import MONITOR_IDENTITY
from orthweb_dev.containers import ContainerHost, require_containers
from orthweb_dev.dicom import Sample, dicom_ae, make_instance, send_with_retries
from orthweb_dev.fleet_harness import BALANCER_NEEDS, FLEET_DIFFERENCES, FLEET_SETTINGS, FleetHost, fleet_host
from orthweb_dev.harness import dicom_tls
from orthweb_dev.proc import wait_until

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHost]:
    require_containers(BALANCER_NEEDS)
    with fleet_host(2, FLEET_SETTINGS) as host:
        yield host


def studies(count: int, per_study: int, tag: str) -> list[Sample]:
    """``count`` studies of ``per_study`` small CT slices each."""
    out: list[Sample] = []
    for s in range(count):
        first = make_instance(f"{tag}-{s}-0", rows=96, columns=96, seed=0)
        out.append(first)
        out += [
            make_instance(f"{tag}-{s}-{i}", rows=96, columns=96, seed=i, study=first.study) for i in range(1, per_study)
        ]
    return out


def connect(fleet: FleetHost) -> Any:
    return lambda ae: ae.associate(
        "127.0.0.1", fleet.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(fleet)
    )


def served_by(fleet: FleetHost, index: int) -> set[str]:
    """SOP Instance UIDs one host serves (asked from that host, not through the balancer)."""
    host = fleet.hosts[index]
    instances = fleet.host_rest(host, "/instances?expand", retry_unavailable=2 * capacity.INDEX_CONNECTIONS)
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in instances}


def test_each_orthanc_runs_the_rendered_config_with_its_own_server_identifier(fleet: FleetHost) -> None:
    rendered = json.loads(fleet.rendered["orthanc.json"])
    assert rendered["PostgreSQL"]["Lock"] is False  # several writers on one index
    assert rendered["SaveJobs"] is False  # jobs stay with the Orthanc that runs them
    identifiers = []
    for host in fleet.hosts:
        config, _ = host.orthanc_config()  # what the image's configurator merged, read from the container
        host_config = json.loads((host.etc / "orthanc-host.json").read_text())
        assert set(host_config) == {"DatabaseServerIdentifier"}
        # Every rendered setting as rendered (the secrets aside); added: the host's own file, and
        # what the image's configurator adds (the enabled plugins' folder, its storage default).
        assert {k: config[k] for k in rendered} == rendered
        assert set(config) - set(rendered) <= {"DatabaseServerIdentifier", "Plugins", "StorageDirectory"}
        identifiers.append(config["DatabaseServerIdentifier"])
        assert "PostgreSQLIndex" in fleet.host_rest(host, "/system")["DatabaseBackendPlugin"]
    assert identifiers == ["harness-host-0", "harness-host-1"]
    assert len(FLEET_DIFFERENCES) >= 4


def test_every_host_presents_the_one_shared_certificate(fleet: FleetHost) -> None:
    """orthweb-shared-cert on each host installed the one certificate of the secret."""
    certs = {(host.tls / "server.crt").read_text() for host in fleet.hosts}
    assert len(certs) == 1
    secret = json.loads(
        fleet.first.aws("secretsmanager", "get-secret-value", "--secret-id", fleet.first.tls_secret_arn)["SecretString"]
    )
    assert secret["certificate"].strip() == certs.pop().strip()


def test_what_one_orthanc_acknowledges_every_orthanc_serves(fleet: FleetHost) -> None:
    samples = studies(4, 10, "spread")
    report = send_with_retries(samples, connect(fleet), workers=4)
    assert set(report.acknowledged) == {s.sop_instance for s in samples}, report.failures[:5]
    assert report.failures == []
    counts = fleet.upstream_counts()
    assert all(n >= 1 for n in counts.values()), counts  # the balancer spread the associations
    for index in range(len(fleet.hosts)):
        assert set(report.acknowledged) <= served_by(fleet, index)


def test_a_host_that_dies_loses_nothing_acknowledged_and_new_associations_reach_the_survivor(
    fleet: FleetHost,
) -> None:
    samples = studies(4, 30, "kill")
    dead = fleet.hosts[1]
    killed_at: list[int] = []

    def strike(count: int) -> None:
        if count >= 30 and not killed_at:
            killed_at.append(len(fleet.upstream_log.read_text().splitlines()))
            fleet.kill_host(dead)  # SIGKILL to its containers in the middle of the ingest

    report = send_with_retries(samples, connect(fleet), workers=4, on_ack=strike)
    assert killed_at, "the ingest ended before the strike"
    assert not fleet.alive(dead)
    # Every instance was acknowledged in the end (senders retried what failed), and every
    # acknowledged one is in the database, served by the survivor.
    assert set(report.acknowledged) == {s.sop_instance for s in samples}
    assert set(report.acknowledged) <= served_by(fleet, 0)

    before = len(fleet.upstream_log.read_text().splitlines())
    for _ in range(6):
        assoc = dicom_ae().associate(
            "127.0.0.1", fleet.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(fleet)
        )
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    wait_until("the balancer's log lines", lambda: len(fleet.upstream_log.read_text().splitlines()) >= before + 6)
    new_lines = fleet.upstream_log.read_text().splitlines()[before:]
    assert len(new_lines) == 6
    assert [fleet.served_port(line) for line in new_lines] == [fleet.hosts[0].ports["nginx_dicom"]] * 6, new_lines

    print(
        f"\nhost killed mid-ingest: {len(samples)} instances acknowledged, {len(report.failures)} attempts failed "
        f"and were sent again, {report.associations} associations"
    )
    fleet.start_host(dead)  # the host boots again on the same database: it has everything
    assert set(report.acknowledged) <= served_by(fleet, 1)


def _health(host: ContainerHost) -> str:
    """One health check the way the balancer makes it: a request to the host's orthweb-health on
    its socket (here its standard input), on the host's own files."""
    proc = subprocess.run(
        [str(host.root / "sbin" / "orthweb-health")],
        input=b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8099\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n",
        env=host.script_env(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_the_health_endpoint_passes_through_nginx_to_orthanc_and_fails_when_orthanc_is_down(fleet: FleetHost) -> None:
    host = fleet.hosts[0]
    logged = len(host.access_entries())
    healthy = _health(host)
    assert healthy.startswith("HTTP/1.1 200 OK\r\n")
    assert healthy.endswith("\r\n\r\nok\n")
    assert "Content-Length: 3\r\n" in healthy
    # The probe really went through the host's nginx, logged in (nginx writes its line after the response).
    wait_until("nginx's log line", lambda: len(host.access_entries()) > logged, timeout=10)
    probe = host.access_entries()[logged]
    assert (probe["method"], probe["path"], probe["status"], probe["login"]) == ("GET", "/changes", 200, "ok")
    assert probe["user"] == MONITOR_IDENTITY  # never an admin
    host.stop_orthanc()  # nginx still answers: only the check through it to Orthanc tells
    broken = _health(host)
    assert broken.startswith("HTTP/1.1 503 Service Unavailable\r\n")
    host.start_orthanc()
    wait_until("a healthy answer", lambda: _health(host).startswith("HTTP/1.1 200 OK\r\n"), timeout=60, interval=1)


def test_a_database_restart_mid_ingest_loses_nothing_acknowledged(fleet: FleetHost) -> None:
    samples = studies(4, 30, "failover")
    pids = [host.pid("orthanc") for host in fleet.hosts]
    restarted: list[int] = []

    def strike(count: int) -> None:
        if count >= 30 and not restarted:
            restarted.append(count)
            fleet.restart_postgres()  # every connection dropped, as in an RDS failover

    report = send_with_retries(samples, connect(fleet), workers=4, on_ack=strike, deadline_s=600)
    assert restarted, "the ingest ended before the restart"
    assert set(report.acknowledged) == {s.sop_instance for s in samples}, report.failures[:5]
    for index, host in enumerate(fleet.hosts):
        # Orthanc reconnected by itself: the same process, never restarted by Docker.
        assert host.pid("orthanc") == pids[index]
        assert host.inspect("orthanc")["RestartCount"] == 0
        assert set(report.acknowledged) <= served_by(fleet, index)
    rows = int(fleet.psql("SELECT count(*) FROM storagearea WHERE type = 1"))
    assert rows >= len(samples)
    print(
        f"\ndatabase restart mid-ingest: {len(samples)} instances acknowledged, {len(report.failures)} attempts failed "
        f"and were sent again, {report.associations} associations, {fleet.unavailable_answers} REST 503s retried"
    )
