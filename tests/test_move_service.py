"""Orthweb's C-MOVE service (userdata/app/orthanc-move.py, rendered), run against a stand-in of
Orthanc's Python plugin API that records what the service asks of Orthanc: a peer may move only to
itself, the resources are those the request names at its level, and every move, done or refused,
leaves one audit line with identifiers only. tests/test_app_access.py runs it in Orthanc."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from orthweb.bootstrap import bundle_files, move_peers, render_app
from orthweb.settings import Settings

STUDY_UID = "1.2.840.113619.2.55.3.1234"
STUDY_ID = "d34f5ab5-b474483a-6c1f4431-ff5a593e-02c82dbe"
SERIES_ID = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"
PEERS = [
    {"aet": "Mover", "cidr": "10.1.0.0/24", "permissions": ["find", "move"], "host": "10.1.0.5", "port": 104,
     "tls_name": "mover.example.org"},
    {"aet": "MOVER2", "cidr": "10.2.0.0/24", "permissions": ["move"], "host": "10.2.0.5", "port": 104,
     "tls_name": "mover2.example.org"},
    {"aet": "CT01", "cidr": "10.3.0.0/24", "permissions": ["store", "find"]},
]  # fmt: skip
# Settings check only the form of the CA bundle here (move requires one).
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


class FakeOrthanc(types.ModuleType):
    """What the service uses of the ``orthanc`` module, recording each call."""

    def __init__(self, lookups: dict[str, list[dict[str, str]]]) -> None:
        super().__init__("orthanc")
        self.lookups = lookups
        self.posts: list[tuple[str, str]] = []
        self.log: list[str] = []
        self.callback: Callable[..., None] | None = None

    def LogWarning(self, line: str) -> None:
        self.log.append(line)

    def RestApiPost(self, uri: str, body: str) -> str:
        self.posts.append((uri, body))
        return json.dumps(self.lookups.get(body, [])) if uri == "/tools/lookup" else "{}"

    def RegisterMoveCallback(self, callback: Callable[..., None]) -> None:
        self.callback = callback


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> FakeOrthanc:
    settings = Settings(dicom_peers=PEERS, dicom_client_ca=CA_PEM)
    (text,) = [f.text for f in bundle_files(settings) if f.path == "/etc/orthweb/orthanc-move.py"]
    fake = FakeOrthanc({STUDY_UID: [{"Type": "Study", "ID": STUDY_ID}], "1.2.3": [{"Type": "Series", "ID": SERIES_ID}]})
    monkeypatch.setitem(sys.modules, "orthanc", fake)
    exec(compile(text, "orthanc-move.py", "exec"), {"__name__": "__main__"})  # noqa: S102 - the rendered service
    assert fake.callback is not None
    return fake


def audit_lines(fake: FakeOrthanc) -> list[dict[str, Any]]:
    assert all(line.startswith("orthweb-audit {") for line in fake.log)
    return [json.loads(line.removeprefix("orthweb-audit ")) for line in fake.log]


def move(fake: FakeOrthanc, originator: str, target: str, **keys: str) -> None:
    assert fake.callback is not None
    request = {"Level": "STUDY", "PatientID": "", "AccessionNumber": "", "StudyInstanceUID": "",
               "SeriesInstanceUID": "", "SOPInstanceUID": "", "OriginatorAET": originator, "SourceAET": "ORTHANC",
               "TargetAET": target, "OriginatorID": 7}  # fmt: skip
    fake.callback(**{**request, **keys})


def test_a_peer_moves_a_study_to_itself_and_the_move_is_audited(service: FakeOrthanc) -> None:
    move(service, "MOVER", "mover", StudyInstanceUID=STUDY_UID)  # AETs compare case-insensitively
    store = [(uri, json.loads(body)) for uri, body in service.posts if uri != "/tools/lookup"]
    # Sent through the peer's own modality entry (nginx's relay to its host), as a C-MOVE's sub-operations.
    assert store == [
        (
            "/modalities/Mover/store",
            {"Resources": [STUDY_ID], "Synchronous": True, "MoveOriginatorAet": "MOVER", "MoveOriginatorID": 7},
        )
    ]
    (line,) = audit_lines(service)
    assert line == {
        "op": "C-MOVE", "aet": "MOVER", "network": "10.1.0.0/24", "destination": "mover", "level": "STUDY",
        "study": STUDY_UID, "series": "", "sop": "", "resources": [STUDY_ID],
    }  # fmt: skip


@pytest.mark.parametrize(("originator", "target"), [("MOVER", "MOVER2"), ("MOVER", "CT01"), ("CT01", "CT01")])
def test_a_move_anywhere_but_to_the_caller_itself_is_refused(
    service: FakeOrthanc, originator: str, target: str
) -> None:
    with pytest.raises(ValueError, match="may move only to itself"):
        move(service, originator, target, StudyInstanceUID=STUDY_UID)
    assert service.posts == []  # nothing looked up, nothing sent
    (line,) = audit_lines(service)
    assert (line["aet"], line["destination"], line["refused"]) == (originator, target, "a peer may move only to itself")


def test_the_resources_are_those_named_at_the_requests_level(service: FakeOrthanc) -> None:
    # A study-level move naming a series UID finds no study: nothing is sent, the audit says so.
    move(service, "MOVER", "MOVER", StudyInstanceUID="1.2.3")
    assert [uri for uri, _ in service.posts] == ["/tools/lookup"]
    # Without a level, the most specific key decides (series here); a key may list several UIDs.
    move(service, "MOVER", "MOVER", Level="", StudyInstanceUID=STUDY_UID, SeriesInstanceUID="1.2.3\\9.9.9")
    sent = [json.loads(body)["Resources"] for uri, body in service.posts if uri.endswith("/store")]
    assert sent == [[SERIES_ID]]
    assert [line.get("resources") for line in audit_lines(service)] == [[], [SERIES_ID]]


def test_the_move_is_audited_before_anything_is_sent_and_a_failed_send_again(
    service: FakeOrthanc, monkeypatch: pytest.MonkeyPatch
) -> None:
    def send_fails(uri: str, body: str) -> str:
        if uri.endswith("/store"):
            assert len(service.log) == 1  # the line is written before the send
            raise RuntimeError("the peer went away")
        return json.dumps(service.lookups.get(body, []))

    monkeypatch.setattr(service, "RestApiPost", send_fails)
    with pytest.raises(RuntimeError):
        move(service, "MOVER", "MOVER", StudyInstanceUID=STUDY_UID)
    first, second = audit_lines(service)
    assert first["resources"] == second["resources"] == [STUDY_ID]
    assert "failed" not in first
    assert second["failed"] is True


def test_only_uid_characters_reach_the_audit_line(service: FakeOrthanc) -> None:
    move(service, "MOVER", "MOVER", Level="Smith", StudyInstanceUID="SMITH^JOHN")
    with pytest.raises(ValueError, match="only to itself"):
        move(service, "MOVER", "CT01", StudyInstanceUID="SMITH^JOHN")
    assert "smith" not in " ".join(service.log).lower()
    lines = audit_lines(service)
    assert [(line["level"], line["study"]) for line in lines] == [
        ("(not a level)", "(not a UID)"),
        ("STUDY", "(not a UID)"),
    ]


def test_the_service_is_rendered_only_when_a_peer_may_move() -> None:
    with_move = Settings(dicom_peers=PEERS, dicom_client_ca=CA_PEM)
    assert move_peers(with_move) == {
        "MOVER": {"modality": "Mover", "network": "10.1.0.0/24"},
        "MOVER2": {"modality": "MOVER2", "network": "10.2.0.0/24"},
    }
    compose = render_app(with_move)["docker-compose.yml"]
    assert "ORTHANC__PYTHON_SCRIPT: /etc/orthweb/orthanc-move.py" in compose
    assert "./orthanc-move.py:/etc/orthweb/orthanc-move.py:ro" in compose
    without = Settings(dicom_peers=PEERS[2:])
    assert "/etc/orthweb/orthanc-move.py" not in {f.path for f in bundle_files(without)}
    assert "PYTHON_SCRIPT" not in render_app(without)["docker-compose.yml"]
