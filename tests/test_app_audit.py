"""The audit trail on the real application: the access log lines nginx writes in its container, as
they reach CloudWatch Logs (the emulator's) through Docker's awslogs driver, carry what the Logs
Insights query of docs/operations.md reads, and its filters find exactly who read and who deleted a
study, even once the study is gone from Orthanc (and from its change log)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import dcmread

from orthweb.settings import Settings
from orthweb_dev import audit
from orthweb_dev.containers import ENGINE_CLIENTS, ContainerHost, containers_for_test
from orthweb_dev.dicom import TEST_AET, Sample, dicom_ae, make_instance, store
from orthweb_dev.harness import dicom_tls
from orthweb_dev.proc import wait_until

pytestmark = pytest.mark.app

USERS = {"admin": "admin", "ann": "viewer"}


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    peer = {"aet": TEST_AET, "cidr": ENGINE_CLIENTS, "permissions": ["store", "find"]}
    with containers_for_test(Settings(web_users=USERS, dicom_peers=[peer])) as host:
        yield host


def _uids(sample: Sample) -> tuple[str, str, str, str]:
    ds = dcmread(io.BytesIO(sample.data))
    return ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def _access_log(app: ContainerHost) -> list[dict[str, Any]]:
    """nginx's request lines in its CloudWatch Logs group (its DICOM lines and errors left out)."""
    lines = app.cloudwatch_lines("nginx")
    return [json.loads(line) for line in lines if line.startswith('{"time"') and '"method"' in line]


def test_the_query_finds_who_read_and_who_deleted_a_study_once_it_is_gone(app: ContainerHost) -> None:
    x, y = make_instance("audited"), make_instance("other")
    assoc = dicom_ae([x, y]).associate(
        "127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app)
    )
    assert assoc.is_established
    assert [store(assoc, s) for s in (x, y)] == [0, 0]
    assoc.release()

    # Orthanc's IDs follow from the DICOM UIDs: what the runbook computes for a deleted study.
    patient, study_uid, series_uid, sop_uid = _uids(x)
    study = audit.orthanc_id(patient, study_uid)
    instance = audit.orthanc_id(patient, study_uid, series_uid, sop_uid)
    lookup = json.loads(app.rest("POST", "/tools/lookup", study_uid.encode())[1])
    assert [r["ID"] for r in lookup] == [study]
    other = json.loads(app.rest("POST", "/tools/lookup", _uids(y)[1].encode())[1])[0]["ID"]

    mark = len(_access_log(app))
    requests = [
        ("ann", "GET", f"/studies/{study}", 200),
        ("ann", "GET", f"/instances/{instance}/file", 200),
        ("ann", "GET", f"/studies/{other}", 200),  # another study: not in the answer
        ("ann", "DELETE", f"/studies/{study}", 403),  # a viewer may not delete: refused, not a delete
        ("admin", "DELETE", f"/studies/{study}", 200),
    ]
    for user, method, path, status in requests:
        assert app.rest(method, path, user=user)[0] == status, (user, method, path)
    # awslogs sends in batches (every 5 s by default).
    wait_until("the lines in CloudWatch Logs", lambda: len(_access_log(app)) >= mark + len(requests), timeout=60)
    entries = _access_log(app)[mark:]
    # Every line carries the fields the query reads (@timestamp is CloudWatch's, from the event).
    assert all({"time", "user", "client", "method", "path", "status"} <= e.keys() for e in entries)

    # Orthanc forgets a deleted study, change log included: nginx's log is the record.
    assert app.rest("GET", f"/studies/{study}")[0] == 404
    changes = json.loads(app.rest("GET", "/changes?limit=1000")[1])["Changes"]
    assert study not in {c["ID"] for c in changes}

    ids = [study, audit.orthanc_id(patient, study_uid, series_uid), instance]
    found = [(e["user"], e["method"], e["path"]) for e in entries if audit.kept_by_query(e, ids, study_uid)]
    assert found == [
        ("ann", "GET", f"/studies/{study}"),
        ("ann", "GET", f"/instances/{instance}/file"),
        ("admin", "DELETE", f"/studies/{study}"),
    ]
