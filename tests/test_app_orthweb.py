"""The rendered application served for real: Orthanc with its index and images in PostgreSQL
over verified TLS, behind nginx (HTTPS and DICOM TLS), with the secrets and certificate made by
the host's own steps. Tests run in file order on one application; later ones (replacement,
rotation) check that what the earlier ones stored survives."""

from __future__ import annotations

import io
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator

import pytest
from pydicom import dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from orthweb.bootstrap import DB_APP_ROLE
from orthweb.settings import MONITOR_IDENTITY, Settings
from orthweb_dev.containers import ENGINE_CLIENTS, ContainerHost, containers_for_test
from orthweb_dev.dicom import STUDY_ROOT_FIND, TEST_AET, Sample, dicom_ae, make_instance, store
from orthweb_dev.harness import dicom_tls

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    """The application in its containers, with the one DICOM peer the tests call as, listed where
    this machine's connections reach nginx from (ENGINE_CLIENTS)."""
    peer = {"aet": TEST_AET, "cidr": ENGINE_CLIENTS, "permissions": ["store", "find"]}
    with containers_for_test(Settings(dicom_peers=[peer])) as host:
        assert ipaddress.ip_address(host.client_address()) in ipaddress.ip_network(ENGINE_CLIENTS)
        yield host


MR = "1.2.840.10008.5.1.4.1.1.4"
CR = "1.2.840.10008.5.1.4.1.1.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
SC = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    """Different modalities and transfer syntaxes, one large multi-frame file; one study each."""
    return [
        make_instance("ct-explicit", modality="CT", transfer_syntax=ExplicitVRLittleEndian),
        make_instance("mr-implicit", modality="MR", sop_class=MR, transfer_syntax=ImplicitVRLittleEndian, rows=256),
        make_instance("cr-rle", modality="CR", sop_class=CR, transfer_syntax=RLELossless, rows=1024, columns=1024),
        make_instance("sc-deflated", modality="OT", sop_class=SC, transfer_syntax=DeflatedExplicitVRLittleEndian),
        make_instance(
            "us-multiframe", modality="US", sop_class=US_MULTIFRAME, bits=8, rows=480, columns=640, frames=60
        ),  # ~18 MB
    ]


def storage_rows(app: ContainerHost) -> int:
    """DICOM files (attachment type 1) in the PostgreSQL plugin's storage table."""
    return int(app.psql("SELECT count(*) FROM storagearea WHERE type = 1"))


def study_uids(app: ContainerHost) -> set[str]:
    return {app.rest_json(f"/studies/{s}")["MainDicomTags"]["StudyInstanceUID"] for s in app.rest_json("/studies")}


@pytest.fixture(scope="module")
def stored(app: ContainerHost, samples: list[Sample]) -> list[Sample]:
    """The samples C-STOREd over DICOM TLS through nginx (asserted in the first test)."""
    before = storage_rows(app)
    ae = dicom_ae(samples)
    assoc = ae.associate("127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app))
    assert assoc.is_established, "no DICOM TLS association through nginx"
    try:
        statuses = {s.name: store(assoc, s) for s in samples}
    finally:
        assoc.release()
    assert statuses == {s.name: 0 for s in samples}
    assert storage_rows(app) == before + len(samples)
    return samples


# --- configuration -------------------------------------------------------------------------------


def test_orthanc_runs_the_rendered_configuration_with_only_the_images_defaults_added(app: ContainerHost) -> None:
    """What Orthanc runs on, read from its container: the rendered orthanc.json untouched, the two
    secret files merged in, and the image's defaults for the two keys the file leaves out."""
    rendered = json.loads(app.rendered["orthanc.json"])
    config, secrets = app.orthanc_config()
    assert {k: v for k, v in config.items() if k in rendered} == rendered
    assert {k: v for k, v in config.items() if k not in rendered} == {
        "Plugins": ["/run/orthanc/plugins", "/usr/share/orthanc/plugins"],
        "StorageDirectory": "/var/lib/orthanc/db",
    }
    assert (app.etc / "orthanc-roles.lua").read_text() == app.rendered["orthanc-roles.lua"]
    assert "sslmode=verify-full" in secrets["PostgreSQL"]["ConnectionUri"]
    # The web users and the monitoring identity every health check logs in as.
    assert set(secrets["RegisteredUsers"]) == {"admin", MONITOR_IDENTITY}
    system = app.rest_json("/system")
    assert system["DicomAet"] == rendered["DicomAet"] == "ORTHANC"
    assert system["DatabaseBackendPlugin"] == "/run/orthanc/plugins/libOrthancPostgreSQLIndex.so"
    assert system["StorageAreaPlugin"] == "/run/orthanc/plugins/libOrthancPostgreSQLStorage.so"


# --- DICOM over TLS through nginx ----------------------------------------------------------------


def test_c_echo_over_tls(app: ContainerHost) -> None:
    assoc = dicom_ae().associate("127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app))
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0


def test_c_store_of_several_modalities_and_syntaxes_lands_in_postgresql(
    app: ContainerHost, stored: list[Sample]
) -> None:
    # `stored` asserted success for each and one new storage row each; check what Orthanc indexed.
    for sample in stored:
        found = app.rest("POST", "/tools/lookup", sample.sop_instance.encode())
        assert found[0] == 200
        (instance,) = json.loads(found[1])
        tags = app.rest_json(f"/instances/{instance['ID']}/simplified-tags")
        assert tags["SOPInstanceUID"] == sample.sop_instance
        status, body = app.rest("GET", f"/instances/{instance['ID']}/file")
        assert status == 200
        got, sent = dcmread(io.BytesIO(body)), dcmread(io.BytesIO(sample.data))
        assert got.PixelData == sent.PixelData, sample.name


def test_c_find_at_study_level_finds_the_studies(app: ContainerHost, stored: list[Sample]) -> None:
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.PatientID = "ORTHWEBTEST"
    assoc = dicom_ae(find=True).associate(
        "127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app)
    )
    assert assoc.is_established
    found = set()
    statuses = []
    for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
        statuses.append(int(status.Status))
        if identifier is not None:
            found.add(identifier.StudyInstanceUID)
    assoc.release()
    assert statuses[-1] == 0, f"C-FIND statuses {[hex(s) for s in statuses]}"
    assert {s.study for s in stored} <= found


def test_the_tls_port_refuses_plain_dicom(app: ContainerHost) -> None:
    assoc = dicom_ae().associate("127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC")
    assert not assoc.is_established


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_the_tls_port_refuses_old_tls(app: ContainerHost, version: ssl.TLSVersion) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer the old protocol at all
    with (
        socket.create_connection(("127.0.0.1", app.ports["nginx_dicom"]), timeout=10) as raw,
        pytest.raises(ssl.SSLError) as refused,
    ):
        ctx.wrap_socket(raw, server_hostname="localhost")
    # nginx's protocol_version alert: the refusal came from the server, not from this client.
    assert "ALERT_PROTOCOL_VERSION" in str(refused.value)


def test_the_certificate_presented_is_the_one_the_bootstrap_step_made(app: ContainerHost) -> None:
    with (
        socket.create_connection(("127.0.0.1", app.ports["nginx_dicom"]), timeout=10) as raw,
        app.tls_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        presented = tls.getpeercert(binary_form=True)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert presented == ssl.PEM_cert_to_DER_cert(app.server_cert.read_text())


# --- HTTPS ---------------------------------------------------------------------------------------


def test_rest_needs_the_generated_admin_password(app: ContainerHost) -> None:
    assert app.rest("GET", "/system", auth=False)[0] == 401
    admin = app.aws("secretsmanager", "get-secret-value", "--secret-id", app.admin_secret_arn)["SecretString"]
    assert json.loads(admin) == {"users": {"admin": app.admin_password}}
    assert len(app.admin_password) >= 32
    assert app.rest("GET", "/system")[0] == 200


def test_https_upload_then_download_returns_the_exact_bytes(app: ContainerHost, stored: list[Sample]) -> None:
    sample = make_instance("rest-roundtrip", modality="CT", rows=128, columns=128)
    status, body = app.rest("POST", "/instances", sample.data)
    assert status == 200, body
    instance = json.loads(body)["ID"]
    assert app.rest("GET", f"/instances/{instance}/file") == (200, sample.data)
    assert {s.study for s in stored} | {sample.study} <= study_uids(app)


def test_the_database_connection_is_tls_as_orthancs_own_role(app: ContainerHost) -> None:
    sessions = "FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name <> 'psql'"
    assert set(app.psql(f"SELECT DISTINCT a.usename {sessions} AND a.backend_type = 'client backend'").split()) == {
        DB_APP_ROLE
    }, "Orthanc must log in as its own role, never as the master user"
    rows = app.psql(f"SELECT s.ssl, s.version {sessions} AND a.usename = '{DB_APP_ROLE}'").splitlines()
    assert rows, "Orthanc holds no connection to PostgreSQL"
    assert all(row.split("|")[0] == "t" and row.split("|")[1] in ("TLSv1.2", "TLSv1.3") for row in rows), rows


# --- bad input -----------------------------------------------------------------------------------


def test_a_corrupt_dicom_file_is_refused_and_orthanc_keeps_serving(app: ContainerHost) -> None:
    good = make_instance("to-corrupt", rows=64, columns=64).data
    corrupt = good[:200] + b"\xff" * 64 + good[264:600]  # valid preamble, garbage elements, truncated
    status, _ = app.rest("POST", "/instances", corrupt)
    assert 400 <= status < 500  # Orthanc 1.10 answers 400 or 404 ("Inexistent tag")
    assert app.rest("GET", "/system")[0] == 200


def test_an_oversized_upload_is_refused_and_orthanc_keeps_serving(app: ContainerHost) -> None:
    # nginx passes any size on purpose (multi-GB studies); 256 MiB that is not DICOM must be
    # rejected by Orthanc without taking it down.
    status, _ = app.rest("POST", "/instances", b"\x00" * (256 * 1024 * 1024), timeout=300)
    assert 400 <= status < 500  # Orthanc 1.10 answers 400 or 404 ("Inexistent tag")
    assert app.rest("GET", "/system")[0] == 200
    echo = dicom_ae().associate("127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app))
    assert echo.is_established
    assert echo.send_c_echo().Status == 0
    echo.release()


# --- replacement and rotation --------------------------------------------------------------------


def test_a_replacement_orthanc_on_the_same_database_still_has_every_study(
    app: ContainerHost, stored: list[Sample]
) -> None:
    studies = study_uids(app)
    rows = storage_rows(app)
    app.restart_orthanc()  # what destroy/apply -target aws_instance.orthweb does to the process
    assert study_uids(app) == studies
    assert storage_rows(app) == rows
    lookup = json.loads(app.rest("POST", "/tools/lookup", stored[0].sop_instance.encode())[1])
    status, body = app.rest("GET", f"/instances/{lookup[0]['ID']}/file")
    assert status == 200
    assert dcmread(io.BytesIO(body)).PixelData == dcmread(io.BytesIO(stored[0].data)).PixelData


def test_db_password_rotation_is_followed_with_nothing_lost(app: ContainerHost, stored: list[Sample]) -> None:
    studies = study_uids(app)
    old_uri = (app.secrets / "ORTHANC__POSTGRESQL__CONNECTION_URI").read_text()
    # What RDS does: the password changes on the database and in the secret.
    app.set_db_password("rotated-P@ss/w:rd?%")
    app.put_db_secret("rotated-P@ss/w:rd?%")
    calls_before = len(app.docker_calls())
    app.host_step("orthweb-refresh")  # the host's timer step, for real
    calls = [c for c in app.docker_calls()[calls_before:] if " up " in c or " kill " in c]  # what changes things
    compose = f"compose --project-name orthweb --file {app.etc}/docker-compose.yml"
    assert calls == [f"{compose} up --detach --no-deps --force-recreate orthanc"]
    assert (app.secrets / "ORTHANC__POSTGRESQL__CONNECTION_URI").read_text() != old_uri
    app.restart_orthanc()  # the recreate compose was asked for
    assert study_uids(app) == studies
    new = make_instance("after-rotation", rows=64, columns=64)
    assoc = dicom_ae([new]).associate(
        "127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app)
    )
    assert assoc.is_established
    assert store(assoc, new) == 0
    assoc.release()
    assert study_uids(app) == studies | {new.study}
