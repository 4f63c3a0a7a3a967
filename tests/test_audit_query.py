"""The audit query of docs/operations.md: what its filters keep, and that the docs show it as the
tool prints it (the application test applies it to the harness's real log lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orthweb_dev import audit

DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def test_the_query_also_finds_dicomweb_reads_by_study_uid_and_only_that_study() -> None:
    uid = "1.2.840.113619.2.55.3.1234"
    ids = [audit.orthanc_id("PAT01", uid)]

    def kept(path: str, method: str = "GET", status: int = 200) -> bool:
        return audit.kept_by_query({"path": path, "method": method, "status": status}, ids, uid)

    assert kept(f"/dicom-web/studies/{uid}/series")
    assert kept(f"/dicom-web/studies/{uid}")
    assert not kept(f"/dicom-web/studies/{uid}5/series")  # another UID that starts the same
    assert not kept(f"/dicom-web/studies/{uid}", status=401)
    assert not kept(f"/studies/{ids[0]}", method="PUT")
    assert kept(f"/studies/{ids[0].upper()}")  # case does not matter


def test_operations_doc_shows_the_query_the_tool_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main(["--patient-id", "PAT01", "--study-uid", "1.2.840.113619.2.55.3.1234"]) == 0
    query = capsys.readouterr().out.strip()
    assert query in DOCS.read_text(), "docs/operations.md: paste the output of `python -m orthweb_dev.audit ...`"
