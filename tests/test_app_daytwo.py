"""Day two on the real application (the harness): the host's health probe, through nginx, reports
what the alarm watches; and a PostgreSQL dump restored into a fresh database gives a new Orthanc
every study back, byte for byte."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import boto3
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from orthweb.bootstrap import DB_APP_ROLE
from orthweb.thresholds import HEALTH_METRIC, HEALTH_NAMESPACE
from orthweb_dev.dicom import Sample, dicom_ae, make_instance, store
from orthweb_dev.harness import ORTHANC_PLUGIN_DIR, ORTHANC_PLUGINS, PG_BIN, AppHost, dicom_tls
from orthweb_dev.proc import free_port, run, stop_process, wait_until

pytestmark = pytest.mark.app

CR = "1.2.840.10008.5.1.4.1.1.1"


@pytest.fixture(scope="module")
def stored(app: AppHost) -> list[Sample]:
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


def _health_values(app: AppHost) -> list[float]:
    """Every value the probe published, oldest first (the emulator keeps them all)."""
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=app.moto.endpoint,
        region_name=app.moto.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    now = dt.datetime.now(dt.UTC)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "health",
                "MetricStat": {
                    "Metric": {
                        "Namespace": HEALTH_NAMESPACE,
                        "MetricName": HEALTH_METRIC,
                        "Dimensions": [{"Name": "Deployment", "Value": app.settings.name_prefix}],
                    },
                    "Period": 1,
                    "Stat": "Minimum",
                },
            }
        ],
        StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(minutes=1),
        ScanBy="TimestampAscending",
    )
    return [float(v) for v in answer["MetricDataResults"][0]["Values"]]


def test_health_probe_reports_orthanc_answering_through_nginx_and_its_absence(app: AppHost) -> None:
    def access_log() -> list[dict[str, Any]]:
        return [json.loads(line) for line in app.nginx_access_log.read_text().splitlines()]

    before, mark = len(_health_values(app)), len(access_log())
    app.host_step("orthweb-probe")  # what orthweb-probe.timer runs every minute
    assert _health_values(app)[before:] == [1.0]
    # It went through nginx over HTTPS, logged in as the first admin, and Orthanc answered.
    wait_until("the probe's access log line", lambda: len(access_log()) > mark, timeout=10)
    (probe,) = access_log()[mark:]
    assert (probe["user"], probe["login"], probe["method"], probe["path"], probe["status"]) == (
        app.admin_user,
        "ok",
        "GET",
        "/changes",
        200,
    )

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
        assert _health_values(app)[before:] == [1.0, 0.0]
    finally:
        app.start_orthanc()


# --- restore from a dump -------------------------------------------------------------------------


@pytest.fixture
def orthanc_on_restored_db(app: AppHost, stored: list[Sample], tmp_path: Path) -> Iterator[str]:
    """pg_dump of the harness database, pg_restore into a fresh database, and a new Orthanc (its own
    ports, the same configuration) on it; yields its REST base URL."""
    dump = tmp_path / "orthanc.dump"
    socket_dir, port = str(app.pg / "run"), str(app.ports["postgres"])
    pg = ["-h", socket_dir, "-p", port, "-U", "postgres"]
    run([str(PG_BIN / "pg_dump"), *pg, "--format=custom", f"--file={dump}", "orthanc"])
    app.psql(f"CREATE DATABASE orthanc_restored OWNER {DB_APP_ROLE}", db="postgres")
    try:
        # As Orthanc's own role, so the restored tables and large objects (the DICOM files) are its own.
        run([str(PG_BIN / "pg_restore"), *pg, "--no-owner", f"--role={DB_APP_ROLE}", "--exit-on-error",
             "--dbname=orthanc_restored", str(dump)])  # fmt: skip
        config, secrets = app.orthanc_config()
        http, dicom = free_port(), free_port()
        uri = urlsplit(secrets["PostgreSQL"]["ConnectionUri"])
        secrets["PostgreSQL"]["ConnectionUri"] = urlunsplit(uri._replace(path="/" + quote("orthanc_restored")))
        storage = tmp_path / "storage"
        config.update(HttpPort=http, DicomPort=dicom, StorageDirectory=str(storage), IndexDirectory=str(storage))
        config["Plugins"] = [str(ORTHANC_PLUGIN_DIR / p) for p in ORTHANC_PLUGINS]
        conf = tmp_path / "orthanc-config"
        conf.mkdir(mode=0o700)
        (conf / "orthweb.json").write_text(json.dumps(config))
        (conf / "secrets.json").write_text(json.dumps(secrets))
        log = tmp_path / "orthanc.log"
        with log.open("wb") as out:
            orthanc = subprocess.Popen(["Orthanc", str(conf)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{http}"
        try:
            wait_until(
                "Orthanc on the restored database", lambda: _status(app, base + "/system") == 200, log=log, proc=orthanc
            )
            yield base
        finally:
            stop_process(orthanc, timeout=30)
    finally:
        app.psql("DROP DATABASE IF EXISTS orthanc_restored WITH (FORCE)", db="postgres")


def _get(app: AppHost, url: str) -> bytes:
    token = b64encode(f"{app.admin_user}:{app.admin_password}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
        body: bytes = resp.read()
        return body


def _status(app: AppHost, url: str) -> int:
    try:
        _get(app, url)
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return 0
    return 200


def _files(get: Any) -> dict[str, bytes]:
    """SOPInstanceUID -> the stored DICOM file, for every instance."""
    files = {}
    for instance in json.loads(get("/instances")):
        tags = json.loads(get(f"/instances/{instance}"))["MainDicomTags"]
        files[tags["SOPInstanceUID"]] = get(f"/instances/{instance}/file")
    return files


def test_a_dump_restored_into_a_fresh_database_serves_every_study_byte_for_byte(
    app: AppHost, stored: list[Sample], orthanc_on_restored_db: str
) -> None:
    def original(path: str) -> bytes:
        status, body = app.rest("GET", path)
        assert status == 200, path
        return bytes(body)

    before = _files(original)
    assert {s.sop_instance for s in stored} <= set(before)
    restored = _files(lambda path: _get(app, orthanc_on_restored_db + path))
    assert sorted(restored) == sorted(before)
    for sop_instance, data in before.items():
        assert restored[sop_instance] == data, f"{sop_instance} differs after the restore"
    # And the images are the ones the modality sent.
    for sample in stored:
        assert (
            dcmread(io.BytesIO(restored[sample.sop_instance])).PixelData == dcmread(io.BytesIO(sample.data)).PixelData
        )
