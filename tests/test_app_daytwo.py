"""Day two on the real application (the containers the rendered compose file runs): the host's
health probe, through nginx, reports what the alarm watches; and a PostgreSQL dump restored into a
fresh database gives Orthanc, re-created on it by compose, every study back, byte for byte."""

from __future__ import annotations

import io
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from orthweb.bootstrap import DB_APP_ROLE
from orthweb.settings import MONITOR_IDENTITY
from orthweb_dev.containers import ContainerHost
from orthweb_dev.dicom import Sample, dicom_ae, make_instance, store
from orthweb_dev.harness import DB_NAME, PG_BIN, dicom_tls
from orthweb_dev.proc import run, wait_until
from orthweb_dev.roles_table import MONITOR_REFUSED

pytestmark = pytest.mark.app

CR = "1.2.840.10008.5.1.4.1.1.1"


@pytest.fixture(scope="module")
def stored(app: ContainerHost) -> list[Sample]:
    """Three studies C-STOREd over DICOM TLS through nginx."""
    samples = [
        make_instance("daytwo-ct", modality="CT", transfer_syntax=ExplicitVRLittleEndian),
        make_instance("daytwo-cr", modality="CR", sop_class=CR, transfer_syntax=RLELossless, rows=512, columns=512),
        make_instance("daytwo-us", modality="US", bits=8, rows=240, columns=320, frames=20),
    ]
    assoc = dicom_ae(samples).associate(
        "127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app)
    )
    assert assoc.is_established
    try:
        assert [store(assoc, s) for s in samples] == [0, 0, 0]
    finally:
        assoc.release()
    return samples


# --- health probe --------------------------------------------------------------------------------


def _health(app: ContainerHost) -> str:
    """One balancer health check as orthweb-health answers it (its socket here its standard input),
    on this host's files."""
    proc = subprocess.run(
        [str(app.root / "sbin" / "orthweb-health")],
        input=b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8099\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n",
        # The certificate's name, as fleet.env gives several hosts (the only ones that run it).
        env={**app.script_env(), "ORTHWEB_BALANCER_DNS": "localhost"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_health_probe_reports_orthanc_answering_through_nginx_and_its_absence(app: ContainerHost) -> None:
    before, mark = len(app.health_values()), len(app.access_entries())
    app.host_step("orthweb-probe")  # what orthweb-probe.timer runs every minute
    assert app.health_values()[before:] == [1.0]
    assert _health(app).startswith("HTTP/1.1 200 OK\r\n")  # what the balancer asks with several hosts
    # Both went through nginx over HTTPS, logged in as the monitoring identity (never an admin),
    # and Orthanc answered.
    wait_until("the checks' access log lines", lambda: len(app.access_entries()) >= mark + 2, timeout=10)
    checks = app.access_entries()[mark:]
    assert [(c["user"], c["login"], c["method"], c["path"], c["status"]) for c in checks] == [
        (MONITOR_IDENTITY, "ok", "GET", "/changes", 200)
    ] * 2

    app.stop_orthanc()  # Orthanc down: nginx answers 502
    try:
        proc = subprocess.run(
            [str(app.root / "sbin" / "orthweb-probe")],
            env=app.script_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr  # a failed check is a result, not an error
        assert "health check failed: GET https://localhost:" in proc.stderr
        assert app.health_values()[before:] == [1.0, 0.0]
        assert _health(app).startswith("HTTP/1.1 503 Service Unavailable\r\n")
    finally:
        app.start_orthanc()


def test_the_monitoring_identity_is_refused_everything_but_its_probe(app: ContainerHost, stored: list[Sample]) -> None:
    assert stored
    login = app.login_headers(MONITOR_IDENTITY)  # its password, from Orthanc's users file on this host
    find = json.dumps({"Level": "Study", "Query": {}}).encode()
    through_nginx = {
        (method, path): app.rest(method, path, find if method == "POST" else None, user=MONITOR_IDENTITY)[0]
        for method, path in [
            ("GET", "/changes?last"),
            *MONITOR_REFUSED,
            ("GET", "/changes"),  # every change: more than the probe needs
            ("GET", "/changes?since=0&limit=100"),
            ("GET", "/changes?last&limit=100"),
            ("HEAD", "/changes?last"),
        ]
    }
    assert through_nginx.pop(("GET", "/changes?last")) == 200
    assert through_nginx == dict.fromkeys(through_nginx, 403)

    # Orthanc itself (its loopback port, behind nginx): the roles filter alone refuses the same.
    def direct(method: str, path: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:8042{path}", data=find if method == "POST" else None, method=method, headers=login
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                return int(answer.status)
        except urllib.error.HTTPError as err:
            return err.code

    at_orthanc = app.in_network_namespace(
        lambda: {ask: direct(*ask) for ask in [("GET", "/changes?last"), *MONITOR_REFUSED]}
    )
    assert at_orthanc.pop(("GET", "/changes?last")) == 200
    assert at_orthanc == dict.fromkeys(at_orthanc, 403)


# --- restore from a dump -------------------------------------------------------------------------


def _files(get: Any) -> dict[str, bytes]:
    """SOPInstanceUID -> the stored DICOM file, for every instance."""
    files = {}
    for instance in json.loads(get("/instances")):
        tags = json.loads(get(f"/instances/{instance}"))["MainDicomTags"]
        files[tags["SOPInstanceUID"]] = get(f"/instances/{instance}/file")
    return files


def _rest_files(app: ContainerHost) -> dict[str, bytes]:
    def get(path: str) -> bytes:
        status, body = app.rest("GET", path)
        assert status == 200, path
        return bytes(body)

    return _files(get)


@pytest.fixture
def restored(app: ContainerHost, stored: list[Sample], tmp_path: Path) -> Iterator[dict[str, dict[str, bytes]]]:
    """Every stored file read through nginx, then the database dumped (pg_dump), restored into a
    fresh database under the same name (pg_restore, as Orthanc's own role), and Orthanc re-created
    on it by compose, as a restored deployment's host starts it; every file read again. The
    original database is put back after."""
    before = _rest_files(app)
    dump = tmp_path / "orthanc.dump"
    pg = ["-h", str(app.pg / "run"), "-p", str(app.ports["postgres"]), "-U", "postgres"]
    run([str(PG_BIN / "pg_dump"), *pg, "--format=custom", f"--file={dump}", DB_NAME])
    app.stop_orthanc()
    app.psql(f"ALTER DATABASE {DB_NAME} RENAME TO {DB_NAME}_original", db="postgres")
    try:
        app.psql(f"CREATE DATABASE {DB_NAME} OWNER {DB_APP_ROLE}", db="postgres")
        # As Orthanc's own role, so the restored tables and large objects (the DICOM files) are its own.
        run([str(PG_BIN / "pg_restore"), *pg, "--no-owner", f"--role={DB_APP_ROLE}", "--exit-on-error",
             f"--dbname={DB_NAME}", str(dump)])  # fmt: skip
        app.restart_orthanc()
        yield {"before": before, "after": _rest_files(app)}
    finally:
        app.stop_orthanc()
        app.psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)", db="postgres")
        app.psql(f"ALTER DATABASE {DB_NAME}_original RENAME TO {DB_NAME}", db="postgres")
        app.start_orthanc()


def test_a_dump_restored_into_a_fresh_database_serves_every_study_byte_for_byte(
    app: ContainerHost, stored: list[Sample], restored: dict[str, dict[str, bytes]]
) -> None:
    before, after = restored["before"], restored["after"]
    assert {s.sop_instance for s in stored} <= set(before)
    assert sorted(after) == sorted(before)
    for sop_instance, data in before.items():
        assert after[sop_instance] == data, f"{sop_instance} differs after the restore"
    # And the images are the ones the modality sent.
    for sample in stored:
        assert dcmread(io.BytesIO(after[sample.sop_instance])).PixelData == dcmread(io.BytesIO(sample.data)).PixelData


def test_a_search_meeting_orthanc_down_leaves_its_query_string_out_of_nginxs_error_log(app: ContainerHost) -> None:
    """Orthanc unreachable: nginx answers 502 and would log the request line (and the upstream URL),
    query string and patient name included, as an error."""
    app.stop_orthanc()
    try:
        status, _ = app.rest("GET", "/dicom-web/studies?PatientName=SECRET%5EUNREACHABLE")
        assert status == 502
    finally:
        app.start_orthanc()
    assert "SECRET" not in app.nginx_error_log.read_text()
    assert "SECRET" not in app.nginx_access_log.read_text()
