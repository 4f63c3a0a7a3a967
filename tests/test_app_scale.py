"""Two Orthanc servers on one PostgreSQL behind an nginx upstream that stands in for the Network Load
Balancer, running the rendered configuration of a multi-host deployment (docs/scaling.md): what one
acknowledges every one serves; a killed Orthanc and a restarted database lose nothing acknowledged;
the health endpoint the balancer checks tells a serving host from a broken one. Tests run in file
order on one fleet."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from orthweb import capacity
from orthweb_dev.dicom import Sample, dicom_ae, make_instance, send_with_retries
from orthweb_dev.fleet_harness import FLEET_DIFFERENCES, FleetHost, fleet_host
from orthweb_dev.harness import dicom_tls, missing_prerequisites
from orthweb_dev.proc import wait_until
from orthweb_dev.testing import INSTALL_HINT, not_run

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHost]:
    missing = missing_prerequisites()
    if missing:
        not_run(f"the application harness needs {', '.join(missing)} ({INSTALL_HINT})")
    with fleet_host(2) as host:
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
    """SOP Instance UIDs one member's Orthanc serves (asked directly, not through nginx)."""
    member = fleet.members[index]
    instances = fleet.member_rest(member, "/instances?expand", retry_unavailable=2 * capacity.INDEX_CONNECTIONS)
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in instances}


def test_each_orthanc_runs_the_rendered_config_with_its_own_server_identifier(fleet: FleetHost) -> None:
    rendered = json.loads(fleet.rendered["orthanc.json"])
    assert rendered["PostgreSQL"]["Lock"] is False  # several writers on one index
    assert rendered["SaveJobs"] is False  # jobs stay with the Orthanc that runs them
    identifiers = []
    for member in fleet.members:
        config, _, host_config = fleet.member_config(member)
        changed = {k for k in config if config[k] != rendered.get(k)}
        # The harness's host differences (HOST_DIFFERENCES), each Orthanc with its own ports and directories.
        assert changed <= {"HttpPort", "DicomPort", "Plugins", "LuaScripts"} | {
            "StorageDirectory", "IndexDirectory", "TemporaryDirectory"
        }  # fmt: skip
        identifiers.append(host_config["DatabaseServerIdentifier"])
        assert fleet.member_rest(member, "/system")["DatabaseBackendPlugin"].endswith(
            "libOrthancPostgreSQLIndex.so.4.0"
        )
    assert identifiers == ["harness-orthanc-0", "harness-orthanc-1"]
    assert len(FLEET_DIFFERENCES) >= 4


def test_what_one_orthanc_acknowledges_every_orthanc_serves(fleet: FleetHost) -> None:
    samples = studies(4, 10, "spread")
    report = send_with_retries(samples, connect(fleet), workers=4)
    assert set(report.acknowledged) == {s.sop_instance for s in samples}, report.failures[:5]
    assert report.failures == []
    counts = fleet.upstream_counts()
    assert all(n >= 1 for n in counts.values()), counts  # the upstream spread the associations
    for index in range(len(fleet.members)):
        assert set(report.acknowledged) <= served_by(fleet, index)


def test_a_killed_orthanc_loses_nothing_acknowledged_and_new_associations_reach_the_survivor(
    fleet: FleetHost,
) -> None:
    samples = studies(4, 30, "kill")
    dead = fleet.members[1]
    killed_at: list[int] = []

    def strike(count: int) -> None:
        if count >= 30 and not killed_at:
            killed_at.append(len(fleet.upstream_log.read_text().splitlines()))
            fleet.kill_member(dead)  # SIGKILL in the middle of the ingest

    report = send_with_retries(samples, connect(fleet), workers=4, on_ack=strike)
    assert killed_at, "the ingest ended before the strike"
    assert not dead.alive
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
    new_lines = fleet.upstream_log.read_text().splitlines()[before:]
    assert len(new_lines) == 6
    assert [fleet.served_port(line) for line in new_lines] == [fleet.members[0].dicom] * 6, new_lines

    print(
        f"\nOrthanc killed mid-ingest: {len(samples)} instances acknowledged, {len(report.failures)} attempts failed "
        f"and were sent again, {report.associations} associations"
    )
    fleet.start_member(dead)  # a replacement host on the same database has everything
    assert set(report.acknowledged) <= served_by(fleet, 1)


def _health(fleet: FleetHost) -> str:
    """One health check the way the balancer makes it: a request to orthweb-health on its socket."""
    env = {
        **fleet.script_env(),
        "ORTHWEB_SITE_NAME": "localhost",
        "ORTHWEB_WEB_PORT": str(fleet.ports["nginx_web"]),
        "ORTHWEB_HTTPS": "true",
    }
    proc = subprocess.run(
        [str(fleet.root / "sbin" / "orthweb-health")],
        input=b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8099\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n",
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_the_health_endpoint_passes_through_nginx_to_orthanc_and_fails_when_orthanc_is_down(fleet: FleetHost) -> None:
    logged = len(fleet.access_entries())
    healthy = _health(fleet)
    assert healthy.startswith("HTTP/1.1 200 OK\r\n")
    assert healthy.endswith("\r\n\r\nok\n")
    assert "Content-Length: 3\r\n" in healthy
    # The probe really went through nginx, logged in (nginx writes its log line after the response).
    wait_until("nginx's log line", lambda: len(fleet.access_entries()) > logged, timeout=10)
    probe = fleet.access_entries()[logged]
    assert (probe["method"], probe["path"], probe["status"], probe["login"]) == ("GET", "/changes", 200, "ok")
    for member in fleet.members:
        fleet.kill_member(member)
    broken = _health(fleet)
    assert broken.startswith("HTTP/1.1 503 Service Unavailable\r\n")
    for member in fleet.members:
        fleet.start_member(member)
    # The upstream, like the balancer, takes a server back after its failure window: poll for it.
    wait_until("a healthy answer", lambda: _health(fleet).startswith("HTTP/1.1 200 OK\r\n"), timeout=60, interval=1)


def test_a_database_restart_mid_ingest_loses_nothing_acknowledged(fleet: FleetHost) -> None:
    samples = studies(4, 30, "failover")
    starts = [m.starts for m in fleet.members]
    restarted: list[int] = []

    def strike(count: int) -> None:
        if count >= 30 and not restarted:
            restarted.append(count)
            fleet.restart_postgres()  # every connection dropped, as in an RDS failover

    report = send_with_retries(samples, connect(fleet), workers=4, on_ack=strike, deadline_s=600)
    assert restarted, "the ingest ended before the restart"
    assert set(report.acknowledged) == {s.sop_instance for s in samples}, report.failures[:5]
    for index, member in enumerate(fleet.members):
        assert member.alive  # Orthanc reconnected by itself: no process was restarted
        assert member.starts == starts[index]
        assert set(report.acknowledged) <= served_by(fleet, index)
    rows = int(fleet.psql("SELECT count(*) FROM storagearea WHERE type = 1"))
    assert rows >= len(samples)
    print(
        f"\ndatabase restart mid-ingest: {len(samples)} instances acknowledged, {len(report.failures)} attempts failed "
        f"and were sent again, {report.associations} associations, {fleet.unavailable_answers} REST 503s retried"
    )
