"""The complete audit on the real application: each read path the roles allow, each search, store
and delete, web and DICOM, leaves a line in CloudWatch Logs (the emulator's, through Docker's
awslogs driver) that names the user or the peer and what was touched, never the patient's name;
and the Logs Insights query of docs/operations.md, applied to both log groups' lines, finds
exactly the actions on the study asked about, even once the study is gone from Orthanc."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from orthweb.settings import Settings
from orthweb_dev import audit
from orthweb_dev.containers import ENGINE_CLIENTS, ContainerHost, containers_for_test
from orthweb_dev.dicom import STUDY_ROOT_FIND, TEST_AET, Sample, dicom_ae, make_instance, store
from orthweb_dev.harness import dicom_tls
from orthweb_dev.proc import wait_until

pytestmark = pytest.mark.app

USERS = {"admin": "admin", "ann": "viewer", "ulla": "uploader"}
# The audited study's patient: the name must reach no log line.
NAME = "AUDIT^SECRET"


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    peer = {"aet": TEST_AET, "cidr": ENGINE_CLIENTS, "permissions": ["store", "find"]}
    with containers_for_test(Settings(web_users=USERS, dicom_peers=[peer])) as host:
        yield host


def _uids(sample: Sample) -> tuple[str, str, str, str]:
    ds = dcmread(io.BytesIO(sample.data))
    return ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def _lines(app: ContainerHost) -> list[str]:
    """Both groups' lines: nginx's (web requests and DICOM connections) and Orthanc's."""
    return app.cloudwatch_lines("nginx") + app.cloudwatch_lines("orthanc")


def _web(line: str) -> dict[str, str] | None:
    entry = json.loads(line) if line.startswith('{"time"') else None
    return entry if isinstance(entry, dict) and "method" in entry else None


def _audit(line: str) -> dict[str, str] | None:
    if audit.AUDIT_MARK not in line:
        return None
    found: dict[str, str] = json.loads(line.split(audit.AUDIT_MARK, 1)[1])
    return found


def _c_find(app: ContainerHost, **keys: str) -> int:
    """A study-level C-FIND with these keys; how many studies answered."""
    assoc = dicom_ae(find=True).associate(
        "127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app)
    )
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    for key, value in keys.items():
        setattr(query, key, value)
    answers = [
        i for status, i in assoc.send_c_find(query, STUDY_ROOT_FIND) if status and status.Status in (0xFF00, 0xFF01)
    ]
    assoc.release()
    return len(answers)


def test_every_read_search_store_and_delete_is_found_by_the_query(app: ContainerHost) -> None:
    x = make_instance("audited", patient=NAME)
    y = make_instance("other")
    uploaded = make_instance("uploaded", study=_uids(x)[1], modality="MR", patient=NAME)
    mark = len(_lines(app))

    # DICOM: a peer stores both studies and searches, by UID and by name.
    assoc = dicom_ae([x, y]).associate(
        "127.0.0.1", app.ports["nginx_dicom"], ae_title="ORTHANC", tls_args=dicom_tls(app)
    )
    assert assoc.is_established
    assert [store(assoc, s) for s in (x, y)] == [0, 0]
    assoc.release()
    patient, study_uid, series_uid, sop_uid = _uids(x)
    assert _c_find(app, StudyInstanceUID=study_uid) == 1
    assert _c_find(app, PatientName=NAME) == 1  # a search by name: logged without it

    whole_patient, study, series = audit.study_ids(patient, study_uid, [series_uid])
    instance = audit.orthanc_id(patient, study_uid, series_uid, sop_uid)
    other = audit.orthanc_id(*_uids(y)[:2])
    wado = f"/wado?requestType=WADO&studyUID={study_uid}&seriesUID={series_uid}&objectUID={sop_uid}"
    find = json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).encode()
    by_name = json.dumps({"Level": "Study", "Query": {"PatientName": NAME}}).encode()
    requests = [
        # (user, method, path, body, status, found by the query)
        ("ulla", "POST", "/instances", uploaded.data, 200, True),  # a web upload: Orthanc's store line
        ("ann", "GET", f"/studies/{study}", None, 200, True),
        ("ann", "GET", f"/instances/{instance}/file", None, 200, True),
        # Orthanc 1.10 (the stand-in) has not the GET form of /tools/create-archive?resources=... (the
        # image's 1.12 has): its touched field is tests/test_audit_records.py's.
        ("ann", "GET", f"/studies/{study}/archive", None, 200, True),
        ("ann", "GET", f"/series/{series}/media", None, 200, True),
        ("ann", "GET", f"/patients/{whole_patient}/archive", None, 200, True),  # the study with the rest
        ("ann", "GET", wado + "&contentType=application/dicom", None, 200, True),  # WADO-URI
        ("ann", "GET", f"/dicom-web/studies?StudyInstanceUID={study_uid}", None, 200, True),  # QIDO-RS
        ("ann", "GET", f"/dicom-web/studies/{study_uid}/metadata", None, 200, True),  # WADO-RS
        ("ann", "POST", "/tools/find", find, 200, True),
        ("admin", "POST", "/tools/find/", find, 200, True),  # Orthanc's same route (viewers: 403), body read
        ("ann", "POST", "/tools/lookup", study_uid.encode(), 200, True),
        ("ann", "POST", "/tools/find", by_name, 200, False),  # by name: nothing of the study named
        ("ann", "GET", f"/dicom-web/studies?PatientName={NAME.replace('^', '%5E')}", None, 200, False),
        ("ann", "GET", f"/studies/{other}", None, 200, False),  # another study
        ("admin", "POST", "/tools/create-archive", json.dumps({"Resources": [study]}).encode(), 200, True),
        ("ann", "DELETE", f"/studies/{study}", None, 403, False),  # refused: not a delete
        ("admin", "DELETE", f"/studies/{study}", None, 200, True),
    ]
    for user, method, path, body, status, _ in requests:
        assert app.rest(method, path, body, user=user)[0] == status, (user, method, path)

    # awslogs sends in batches (every 5 s by default). Orthanc's audit lines: two C-STOREs, two
    # C-FINDs and the upload's store.
    def counts() -> tuple[int, int]:
        lines = _lines(app)[mark:]
        return sum(1 for line in lines if _web(line)), sum(1 for line in lines if _audit(line))

    def arrived() -> bool:
        web, orthanc = counts()
        return web >= len(requests) and orthanc >= 5

    wait_until("the lines in CloudWatch Logs", arrived, timeout=90, describe=lambda: f"(web, audit) lines: {counts()}")
    lines = _lines(app)[mark:]
    # Only identifiers: the patient's name is in no line of either group.
    assert not [line for line in lines if NAME in line or NAME.replace("^", "%5E") in line]

    # Orthanc forgets a deleted study, change log included: the logs are the record.
    assert app.rest("GET", f"/studies/{study}")[0] == 404

    ids = [*audit.study_ids(patient, study_uid, [series_uid]), instance]
    kept = [line for line in lines if audit.kept_by_query(line, ids, study_uid)]
    web = [(e["user"], e["method"], e["path"]) for e in map(_web, kept) if e]
    assert web == [(u, m, p.split("?")[0]) for u, m, p, _, _, found in requests if found and p != "/instances"]
    orthanc = [(e["op"], e.get("aet") or e.get("user"), e.get("level", "")) for e in map(_audit, kept) if e]
    assert sorted(orthanc) == sorted(
        [
            ("C-STORE", TEST_AET, ""),  # the peer's store of the study
            ("C-FIND", TEST_AET, "STUDY"),  # the search by its UID
            ("store", "ulla", ""),  # the uploader's web upload into it
        ]
    )
    # The DICOM lines name the peer's network (the one it was listed with), not nginx's loopback source.
    assert {e["network"] for e in map(_audit, kept) if e and "network" in e} == {ENGINE_CLIENTS}
    # The search by name was recorded at its level, the name left out.
    finds = [e for e in map(_audit, lines) if e and e["op"] == "C-FIND"]
    assert [(e["level"], e["study"]) for e in finds] == [("STUDY", study_uid), ("STUDY", "")]


def _post_in_part(app: ContainerHost, path: str, headers: dict[str, str], declared: int, sent: int) -> socket.socket:
    """A POST to nginx declaring ``declared`` body bytes and sending the first ``sent``."""
    raw = socket.create_connection(("127.0.0.1", app.ports["nginx_web"]), timeout=10)
    tls = app.tls_context().wrap_socket(raw, server_hostname="localhost")
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    tls.sendall(f"{head}Content-Length: {declared}\r\n\r\n".encode() + b" " * sent)
    return tls


def _answer(conn: socket.socket, wait: float) -> bytes:
    """What the server answered within ``wait`` seconds (nothing: b"")."""
    conn.settimeout(wait)
    try:
        return conn.recv(65536)
    except TimeoutError:
        return b""


def test_only_a_right_login_has_a_command_body_read_into_memory(app: ContainerHost) -> None:
    """A command route's body is held in nginx's memory for the audit; without the right login it
    is not: the request goes on to Orthanc without it, and the 401 comes before the body does."""
    refused = {"none": {}, "wrong": app.login_headers("ann", "not-her-password")}
    for why, headers in refused.items():
        with _post_in_part(app, "/tools/find", headers, declared=60_000, sent=10) as conn:
            answer = _answer(conn, wait=10)
        assert answer.startswith(b"HTTP/1.1 401"), (why, answer[:200])
        assert b"www-authenticate: basic" in answer.lower(), why  # Orthanc's challenge, as elsewhere
    # The right login: nginx waits for the whole body before Orthanc sees the request.
    with _post_in_part(app, "/tools/find", app.login_headers("ann"), declared=100, sent=10) as conn:
        assert _answer(conn, wait=2) == b""
        conn.sendall(b" " * 90)
        assert _answer(conn, wait=10).startswith(b"HTTP/1.1 400")  # blank JSON: Orthanc's answer
