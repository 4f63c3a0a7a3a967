"""The lowest role cannot fill the host: archives and media are built on the archive volume, a
volume of its own, and a viewer cannot ask for them as jobs. Proven on the containers (the
rendered compose file on Docker, the host's own orthweb-archives formatting and mounting the
volume), with an archive volume of ARCHIVE_VOLUME_MB: one study fits on it, the other does not.

- a viewer's POST forms of the archive and media routes (which may ask for a job) are refused
  and leave no job; the viewer's GET download, streamed, never touches the volume, so even the
  study larger than the volume downloads whole;
- an admin's archive job larger than the volume fails with a write error and leaves the volume
  empty, while the web, DICOM and the next archive job all still work."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from orthweb.settings import Settings
from orthweb_dev.containers import ENGINE_CLIENTS, ContainerHost, containers_for_test
from orthweb_dev.dicom import TEST_AET, Sample, dicom_ae, make_instance, store
from orthweb_dev.harness import dicom_tls
from orthweb_dev.proc import run, wait_until

pytestmark = pytest.mark.app

ARCHIVE_VOLUME_MB = 8
USERS = {"admin": "admin", "ann": "viewer"}
# 512 x 512 x 16 bits of random pixels: 0.5 MB each, in a ZIP as in the file (Orthanc deflates
# archives, and make_instance's repeated rows would shrink to almost nothing), so BIG's archive
# (24 instances, ~12 MB) cannot fit on the volume and SMALL's (1 MB) can.
BIG, SMALL = 24, 2


def incompressible(sample: Sample) -> Sample:
    """``sample`` with random pixels."""
    ds = dcmread(io.BytesIO(sample.data))
    ds.PixelData = os.urandom(len(ds.PixelData))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return dataclasses.replace(sample, data=buf.getvalue())


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    """The application with a viewer, the one DICOM peer the tests store as (ENGINE_CLIENTS), and
    a small archive volume."""
    peer = {"aet": TEST_AET, "cidr": ENGINE_CLIENTS, "permissions": ["store"]}
    settings = Settings(web_users=USERS, dicom_peers=[peer])
    with containers_for_test(settings, archive_volume_mb=ARCHIVE_VOLUME_MB) as host:
        assert ipaddress.ip_address(host.client_address()) in ipaddress.ip_network(ENGINE_CLIENTS)
        yield host


def c_store(app: ContainerHost, samples: list[Sample]) -> list[int]:
    assoc = dicom_ae(samples).associate(
        "127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app)
    )
    assert assoc.is_established, "no DICOM TLS association through nginx"
    try:
        return [store(assoc, s) for s in samples]
    finally:
        assoc.release()


def study_id(app: ContainerHost, uid: str) -> str:
    status, body = app.rest("POST", "/tools/lookup", uid.encode())
    assert status == 200, body
    (found,) = [r for r in json.loads(body) if r["Type"] == "Study"]
    return str(found["ID"])


@pytest.fixture(scope="module")
def studies(app: ContainerHost) -> dict[str, str]:
    """Orthanc's IDs of the two studies: "big" (larger than the archive volume) and "small"."""
    ids = {}
    for name, count in (("big", BIG), ("small", SMALL)):
        first = make_instance(f"{name}-0")
        samples = [first] + [make_instance(f"{name}-{i}", study=first.study, seed=i) for i in range(1, count)]
        samples = [incompressible(s) for s in samples]
        assert c_store(app, samples) == [0] * count
        ids[name] = study_id(app, first.study)
    return ids


def archive_volume(app: ContainerHost) -> list[str]:
    """What is on the archive volume (Orthanc's TemporaryDirectory), lost+found aside."""
    return sorted(p.name for p in app.archives.iterdir() if p.name != "lost+found")


def jobs(app: ContainerHost) -> set[str]:
    return set(app.rest_json("/jobs"))


def finished_job(app: ContainerHost, job: str) -> dict[str, Any]:
    info: dict[str, Any] = {}

    def done() -> bool:
        info.update(app.rest_json(f"/jobs/{job}"))
        return info["State"] in ("Success", "Failure")

    wait_until(f"job {job}", done, timeout=120, interval=0.5)
    return info


def test_orthanc_builds_archives_on_the_mounted_volume_only(app: ContainerHost) -> None:
    config, _ = app.orthanc_config()
    assert config["TemporaryDirectory"] == "/var/lib/orthanc/tmp"
    assert config["SynchronousZipStream"] is True
    assert archive_volume(app) == []
    # The host's orthweb-archives formatted and mounted it: the loop device standing in for the
    # EBS volume, of its own size (not the machine's disk), where the compose file binds it.
    mounts = Path("/proc/mounts").read_text().splitlines()
    (mount,) = [line.split() for line in mounts if line.split()[1] == str(app.archives)]
    assert mount[0] == app.archive_device
    assert mount[2] == "ext4"
    assert {"nodev", "nosuid", "noexec"} <= set(mount[3].split(","))
    fs = os.statvfs(app.archives)
    assert fs.f_blocks * fs.f_frsize <= ARCHIVE_VOLUME_MB * 2**20
    binds = {m["Destination"]: m for m in app.inspect("orthanc")["Mounts"]}
    assert binds["/var/lib/orthanc/tmp"]["Source"] == str(app.archives)
    assert binds["/var/lib/orthanc/tmp"]["RW"] is True


@pytest.mark.parametrize(
    "path",
    [
        "/tools/create-archive",
        "/tools/create-media",
        "/tools/create-media-extended",
        "/studies/{study}/archive",
        "/studies/{study}/media",
    ],
)
def test_a_viewer_cannot_ask_for_an_archive_job(app: ContainerHost, studies: dict[str, str], path: str) -> None:
    before = jobs(app)
    body = json.dumps({"Resources": [studies["big"]], "Asynchronous": True}).encode()
    status, _ = app.rest("POST", path.format(study=studies["big"]), body, user="ann")
    assert status == 403
    assert jobs(app) == before
    assert archive_volume(app) == []


def test_a_viewers_download_is_streamed_past_the_volume(app: ContainerHost, studies: dict[str, str]) -> None:
    status, body = app.rest("GET", f"/studies/{studies['big']}/archive", user="ann")
    assert status == 200
    assert len(body) > ARCHIVE_VOLUME_MB * 2**20  # larger than the volume: it never went through it
    assert len([n for n in zipfile.ZipFile(io.BytesIO(body)).namelist() if n.endswith(".dcm")]) == BIG
    assert archive_volume(app) == []


def test_an_archive_job_larger_than_the_volume_fails_alone_and_the_service_stays_up(
    app: ContainerHost, studies: dict[str, str]
) -> None:
    body = json.dumps({"Asynchronous": True}).encode()
    status, answer = app.rest("POST", f"/studies/{studies['big']}/archive", body)
    assert status == 200, answer
    failed = finished_job(app, json.loads(answer)["ID"])
    assert failed["State"] == "Failure", failed
    assert "write" in str(failed["ErrorDescription"]).lower(), failed  # Orthanc's CannotWriteFile
    # The half-built archive is gone: the volume is empty again.
    assert archive_volume(app) == []
    # The service is up: the web, DICOM (echo and store) ...
    assert app.rest_json("/system")["DicomAet"] == "ORTHANC"
    assoc = dicom_ae().associate("127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app))
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()
    assert c_store(app, [make_instance("after-the-failure")]) == [0]
    # ... and the next archive job that fits is built and downloaded.
    status, answer = app.rest("POST", f"/studies/{studies['small']}/archive", body)
    assert status == 200, answer
    job = json.loads(answer)["ID"]
    assert finished_job(app, job)["State"] == "Success"
    status, zipped = app.rest("GET", f"/jobs/{job}/archive")
    assert status == 200
    assert len([n for n in zipfile.ZipFile(io.BytesIO(zipped)).namelist() if n.endswith(".dcm")]) == SMALL


def test_an_orthanc_docker_started_before_the_mount_is_recreated_on_the_volume(app: ContainerHost) -> None:
    """After an unclean shutdown Docker restarts the containers at boot, before orthweb.service
    mounts the volume: Orthanc then holds the bare directory of the root volume. The boot's
    ``orthweb-refresh --up`` mounts the volume, empties that directory, and re-creates Orthanc on
    the volume. (Last: it restarts the application.)"""
    app.compose("stop", "--timeout", "30")
    run(["umount", str(app.archives)])
    (app.archives / "written-before-the-mount").write_text("x")
    app.compose("start")  # as the engine restarts them at boot
    app.wait_ready()
    assert "written-before-the-mount" in in_orthanc(app)  # on the root volume's directory
    app.host_step("orthweb-refresh", "--up")
    app.wait_ready()
    assert subprocess.run(["mountpoint", "-q", str(app.archives)], check=False).returncode == 0
    (app.archives / "on-the-volume").write_text("x")
    assert in_orthanc(app) == ["on-the-volume"]  # Orthanc's TemporaryDirectory is the volume now
    (app.archives / "on-the-volume").unlink()
    run(["umount", str(app.archives)])
    assert list(app.archives.iterdir()) == []  # what was written on the root volume is gone
    run(["mount", app.archive_device, str(app.archives)])
    assert app.rest_json("/system")["DicomAet"] == "ORTHANC"


def in_orthanc(app: ContainerHost) -> list[str]:
    """The entries of Orthanc's TemporaryDirectory as its container sees them (lost+found aside)."""
    out = run(["docker", "exec", app.container("orthanc"), "ls", "-A", "/var/lib/orthanc/tmp"]).stdout
    return [name for name in out.split() if name != "lost+found"]
