"""The audit query of docs/operations.md: what its filter keeps of each log group's lines, and that
the docs show it as the tool prints it (tests/test_app_audit.py applies it to the real lines the
containers' nginx and Orthanc write)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orthweb_dev import audit

DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
UID = "1.2.840.113619.2.55.3.1234"
STUDY = audit.orthanc_id("PAT01", UID)
PATIENT = audit.orthanc_id("PAT01")


def _kept(line: str) -> bool:
    return audit.kept_by_query(line, audit.study_ids("PAT01", UID), UID)


def _web(path: str, method: str = "GET", status: int = 200, touched: str = "") -> str:
    """An access log line as nginx writes it (userdata/app/nginx.conf, log_format orthweb)."""
    entry = {"time": "t", "client": "10.0.0.5", "user": "ann", "method": method, "path": path, "status": status}
    return json.dumps({**entry, "touched": touched})


def test_web_reads_are_found_by_the_path_or_by_what_the_query_string_or_body_named() -> None:
    assert _kept(_web(f"/dicom-web/studies/{UID}/series"))
    assert _kept(_web(f"/dicom-web/studies/{UID}"))
    assert _kept(_web(f"/studies/{STUDY.upper()}"))  # case does not matter
    assert _kept(_web("/wado", touched=f"{UID} 1.2.3.4 1.2.3.4.5"))  # WADO-URI's studyUID
    assert _kept(_web("/tools/create-archive", touched=STUDY))  # GET ?resources=, or the POST body
    assert _kept(_web("/tools/find", "POST", touched=f"1.2.3 {UID}"))
    assert _kept(_web("/modalities/PACS2/store", "POST", touched=STUDY))  # sent elsewhere
    assert _kept(_web(f"/patients/{PATIENT}/archive"))  # the whole patient, the study with it
    # More resources than the line keeps, or a request touched() could not read: maybe the study.
    assert _kept(_web("/tools/create-archive", "POST", touched="0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d +31"))
    assert _kept(_web("/tools/find", "POST", touched="+?"))
    assert not _kept(_web("/tools/find", "POST", touched="1.2.3 +31", status=403))


def test_other_studies_refusals_and_writes_are_left_out() -> None:
    assert not _kept(_web(f"/dicom-web/studies/{UID}5/series"))  # another UID that starts the same
    assert not _kept(_web(f"/dicom-web/studies/1{UID}"))  # ... or ends the same
    assert not _kept(_web("/wado", touched=f"{UID}.7"))  # a series of a UID below the study's
    assert not _kept(_web(f"/dicom-web/studies/{UID}", status=401))
    assert not _kept(_web(f"/studies/{STUDY}", method="PUT"))
    assert not _kept(_web("/tools/find", "POST"))  # a search that named nothing of the study


def test_orthanc_audit_lines_are_found_by_the_study_they_name() -> None:
    prefix = "W1205 00:10:00.123456 LuaContext.cpp:95] Lua says: orthweb-audit "
    find = {"op": "C-FIND", "aet": "CT01", "network": "10.0.0.0/24", "level": "STUDY", "study": UID}
    assert _kept(prefix + json.dumps(find))
    stored = {"op": "C-STORE", "via": "DicomProtocol", "instance": "x", "study": UID, "aet": "CT01"}
    assert _kept(prefix + json.dumps(stored))
    assert not _kept(prefix + json.dumps({**find, "study": UID + "9"}))
    # A C-MOVE at the patient level names the patient's Orthanc ID: it carries the study too.
    move = {"op": "C-MOVE", "aet": "WS01", "destination": "WS01", "level": "PATIENT", "resources": [PATIENT]}
    assert _kept(prefix + json.dumps(move))
    assert not _kept(prefix + json.dumps({**move, "resources": [audit.orthanc_id("PAT02")]}))
    assert not _kept(f"W1205 00:10:00.123456 something.cpp:1] {UID}")  # not an audit line
    # nginx's DICOM connection lines name no study.
    assert not _kept(json.dumps({"time": "t", "client": "10.0.0.5", "port": 11112, "status": 200}))


def test_the_tool_refuses_what_is_not_an_id_or_a_uid(capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main(["--patient-id", "PAT01", "--study-uid", UID, "--instance-id", "../etc"]) == 2
    assert "not Orthanc IDs or a DICOM UID" in capsys.readouterr().err


def test_operations_doc_shows_the_query_the_tool_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main(["--patient-id", "PAT01", "--study-uid", UID]) == 0
    query = capsys.readouterr().out.strip()
    assert query in DOCS.read_text(), "docs/operations.md: paste the output of `python -m orthweb_dev.audit ...`"
