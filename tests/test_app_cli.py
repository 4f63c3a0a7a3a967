"""`make app-up` / `make app-down` (orthweb_dev.harness_cli): the application in its containers,
rendered from the same settings a deployment uses (here ORTHWEB_* variables), publishing what
someone outside needs to drive it: each user's generated password (0600), the ports, the peers and
the certificate; `down` stops the containers and removes what was published."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import stat
import subprocess
import sys
from base64 import b64encode
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orthweb_dev import PROJECT_DIR
from orthweb_dev.containers import ENGINE_CLIENTS, missing_prerequisites
from orthweb_dev.dicom import dicom_ae
from orthweb_dev.testing import INSTALL_HINT, not_run

pytestmark = pytest.mark.app

USERS = {"admin": "admin", "ann": "viewer"}
PEERS = [{"aet": "CT01", "cidr": ENGINE_CLIENTS, "permissions": ["store", "find"]}]


def cli(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthweb_dev.harness_cli", action],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_app_up_follows_the_settings_and_publishes_users_ports_and_certificate(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        not_run("the container harness starts dockerd: it needs root")
    missing = missing_prerequisites()
    if missing:
        not_run(f"the application harness needs {', '.join(missing)} ({INSTALL_HINT})")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHWEB_")}
    env.update(
        APP_HARNESS_DIR=str(tmp_path),
        ORTHWEB_WEB_USERS=json.dumps(USERS),
        ORTHWEB_DICOM_PEERS=json.dumps(PEERS),
    )
    up = cli("up", env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((tmp_path / "state.json").read_text())
        assert {name: user["role"] for name, user in state["users"].items()} == USERS
        assert state["dicom_peers"] == PEERS
        ctx = ssl.create_default_context(cafile=state["server_cert"])
        url = urlsplit(state["web_url"])
        for name, user in state["users"].items():
            path = Path(user["password_file"])
            assert path.parent == tmp_path / "users"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            token = b64encode(f"{name}:{path.read_text().strip()}".encode()).decode()
            conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=30)
            conn.request("GET", "/system", headers={"Authorization": f"Basic {token}"})
            assert conn.getresponse().status == 200, name
            conn.close()
        assoc = dicom_ae(aet="CT01").associate(
            "127.0.0.1", state["ports"]["nginx_dicom"], ae_title="ORTHANC", tls_args=(ctx, "localhost")
        )
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        down = cli("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (tmp_path / "state.json").exists()
    assert not (tmp_path / "users").exists()


def test_app_up_refuses_bad_settings_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHWEB_")}
    env.update(APP_HARNESS_DIR=str(tmp_path), ORTHWEB_WEB_USERS='{"ann": "viewer"}')
    up = cli("up", env)
    assert up.returncode != 0
    assert "setting 'web_users' (from ORTHWEB_WEB_USERS)" in up.stdout + up.stderr
    assert not (tmp_path / "state.json").exists()
