"""`make demo`'s last step, without a deployment: what it prints, and the one line it prints
instead where this machine cannot run the application (the lifecycle tier runs the real thing,
tests/test_lifecycle.py::test_1c...)."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from orthweb_dev import PROJECT_DIR, demo, harness_cli

OUTPUTS = {
    "db_master_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-x-AbCdEf",
    "admin_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:orthweb/orthanc-admin-AbCdEf",
}


def test_without_the_debian_packages_the_demo_says_so_in_one_line_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(demo, "missing_prerequisites", lambda: ["Orthanc", "nginx"])
    where = harness_cli.StateDir(tmp_path / "app")
    assert demo.start_local_app("http://127.0.0.1:9", OUTPUTS, {}, where) is None
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("Skipped the local application: this machine lacks Orthanc, nginx")
    assert "make debian" in line
    assert not where.path.exists()


def test_the_printed_lines_name_the_url_the_users_and_a_ready_storescu_command() -> None:
    app_dir = PROJECT_DIR / ".orthweb" / "demo" / "app"
    app = demo.LocalApp(
        web_url="https://localhost:40443",
        users=(("admin", "admin", app_dir / "users" / "admin"),),
        aet="ORTHANC",
        dicom_port=41112,
        server_cert=app_dir / "server.crt",
        send_me=app_dir / "sample" / "send-me.dcm",
        sample_study="1.2.3",
        peer="DEMO",
    )
    text = "\n".join(app.lines())
    assert "Web UI     https://localhost:40443/ " in text
    assert "admin (admin): password in .orthweb/demo/app/users/admin" in text
    assert "DICOMweb   https://localhost:40443/dicom-web/ " in text
    # Paths are relative to the project directory, where make runs, and the command parses as typed.
    assert app.storescu == [
        "storescu", "--anonymous-tls", "--add-cert-file", ".orthweb/demo/app/server.crt", "-aet", "DEMO",
        "-aec", "ORTHANC", "localhost", "41112", ".orthweb/demo/app/sample/send-me.dcm",
    ]  # fmt: skip
    assert shlex.join(app.storescu) in text
    assert all(len(line) < 200 for line in app.lines())
    assert "OHIF" not in text  # not among the viewers
    with_ohif = dataclasses.replace(app, ohif=True)
    assert "OHIF       https://localhost:40443/ohif/viewer?StudyInstanceUIDs=1.2.3 " in "\n".join(with_ohif.lines())


def test_without_a_peer_for_this_machine_the_demo_prints_no_storescu_command() -> None:
    assert demo.local_store_peer([{"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store"]}]) is None
    assert demo.local_store_peer([{"aet": "Q", "cidr": "127.0.0.0/8", "permissions": ["find"]}]) is None
    peers: list[dict[str, object]] = [{"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store"]}]
    peers.append(demo.DEMO_PEER)
    assert demo.local_store_peer(peers) == "DEMO"


def test_the_demo_names_its_peer_and_viewers_only_when_none_are_configured() -> None:
    assert json.loads(demo.with_demo_peer({})["ORTHWEB_DICOM_PEERS"]) == [demo.DEMO_PEER]
    assert json.loads(demo.with_demo_peer({})["ORTHWEB_VIEWERS"]) == ["stone", "ohif"]
    mine = {
        "ORTHWEB_DICOM_PEERS": '[{"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store"]}]',
        "ORTHWEB_VIEWERS": '["stone"]',
    }
    assert demo.with_demo_peer(mine) == mine
