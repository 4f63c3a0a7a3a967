"""orthweb-oidc, the host step of login = "cognito": from orthweb.env's facts it writes nginx's
oidc.json, the role identities' passwords (once), Orthanc's logins and nginx's roles.map; it
refuses a fact that is missing or malformed with a message naming it, and does nothing in Basic
mode. Run as a plain script in a temporary /etc/orthweb (no AWS call)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from orthweb.bootstrap import USERDATA_DIR
from orthweb.settings import MONITOR_IDENTITY
from orthweb_dev.oidc import ALB_ARN, CLIENT_ID, ISSUER, POOL_ID, oidc_config
from orthweb_dev.testing import require

SCRIPT = USERDATA_DIR / "bin" / "orthweb-oidc.sh"
FACTS = {
    "ORTHWEB_LOGIN": "cognito",
    "ORTHWEB_REGION": "eu-west-1",
    "ORTHWEB_ALB_ARN": ALB_ARN,
    "ORTHWEB_USER_POOL_ID": POOL_ID,
    "ORTHWEB_USER_POOL_CLIENT_ID": CLIENT_ID,
    "ORTHWEB_COGNITO_DOMAIN": "orthweb-test.auth.eu-west-1.amazoncognito.com",
    "ORTHWEB_SITE_URL": "https://orthweb.example.org",
}


def run(tmp_path: Path, **facts: str) -> subprocess.CompletedProcess[str]:
    require("jq", "jq")
    require("openssl", "openssl")
    env = {
        "PATH": os.environ["PATH"],
        "ORTHWEB_LIB": str(USERDATA_DIR / "lib"),
        "ORTHWEB_ENV_FILE": str(tmp_path / "none.env"),
        "ORTHWEB_ETC": str(tmp_path / "etc"),
        **{k: v for k, v in {**FACTS, **facts}.items() if v},
    }
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False)


def test_writes_what_nginx_and_orthanc_read_once(tmp_path: Path) -> None:
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["oidc.json", "orthweb-roles.json", "ORTHANC__REGISTERED_USERS", "roles.map"]
    etc = tmp_path / "etc"
    oidc = json.loads((etc / "nginx-oidc" / "oidc.json").read_text())
    assert oidc == {
        "alb_arn": ALB_ARN,
        "issuer": ISSUER,
        "client_id": CLIENT_ID,
        "alb_keys_url": "https://public-keys.auth.elb.eu-west-1.amazonaws.com",
        "jwks_url": f"{ISSUER}/.well-known/jwks.json",
        "logout_url": "https://orthweb-test.auth.eu-west-1.amazoncognito.com/logout",
        "logout_uri": "https://orthweb.example.org/",
        "session_cookie": "AWSELBAuthSessionCookie",
    }
    # The same fields the test stand-in gives nginx (so test_app_oidc proves this file's contract).
    assert set(oidc) == set(oidc_config(alb_keys_url="", jwks_url="", logout_url="", logout_uri=""))
    users = json.loads((etc / "secrets" / "ORTHANC__REGISTERED_USERS").read_text())
    # The monitoring identity first (a healthcheck that takes the first user takes it), then the roles'.
    assert list(users) == [MONITOR_IDENTITY, "orthweb-role-admin", "orthweb-role-uploader", "orthweb-role-viewer"]
    assert len(set(users.values())) == 4
    assert all(len(p) >= 32 for p in users.values())
    assert (etc / "secrets" / "orthweb-monitor").read_text() == users[MONITOR_IDENTITY]
    roles = (etc / "secrets" / "nginx" / "roles.map").read_text().splitlines()
    # Each role's line is the exact Basic header of its identity's login; nginx's health port
    # logs in with the "monitor" line, the monitoring identity's, never the admin's.
    identities = {role: f"orthweb-role-{role}" for role in ("admin", "uploader", "viewer")}
    identities["monitor"] = MONITOR_IDENTITY
    for (role, identity), line in zip(identities.items(), roles, strict=True):
        login = f"{identity}:{users[identity]}"
        assert line == f'{role} "Basic {base64.b64encode(login.encode()).decode()}";'

    modes = {p.relative_to(etc).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in etc.rglob("*") if p.is_file()}
    assert modes == {
        "nginx-oidc/oidc.json": 0o644,
        "secrets/orthweb-roles.json": 0o400,
        "secrets/orthweb-monitor": 0o400,
        "secrets/ORTHANC__REGISTERED_USERS": 0o400,
        "secrets/nginx/roles.map": 0o400,
    }
    # A second run changes nothing, passwords included.
    again = run(tmp_path)
    assert (again.returncode, again.stdout) == (0, "")
    assert json.loads((etc / "secrets" / "ORTHANC__REGISTERED_USERS").read_text()) == users


def test_basic_mode_writes_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, ORTHWEB_LOGIN="basic")
    assert (result.returncode, result.stdout) == (0, "")
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        ({"ORTHWEB_ALB_ARN": ""}, "ORTHWEB_ALB_ARN is not set"),
        (
            {"ORTHWEB_ALB_ARN": ALB_ARN.replace("eu-west-1", "us-east-1")},
            "ORTHWEB_ALB_ARN is not the load balancer's ARN in eu-west-1",
        ),
        ({"ORTHWEB_USER_POOL_ID": "us-east-1_abc"}, "ORTHWEB_USER_POOL_ID is not a user pool id in eu-west-1"),
        ({"ORTHWEB_USER_POOL_CLIENT_ID": ""}, "ORTHWEB_USER_POOL_CLIENT_ID is not set"),
        ({"ORTHWEB_COGNITO_DOMAIN": "evil.example/x?"}, "ORTHWEB_COGNITO_DOMAIN is not the user pool's domain"),
        ({"ORTHWEB_SITE_URL": ""}, "ORTHWEB_LOGOUT_URI is not an https sign-out URL"),
        ({"ORTHWEB_ALB_KEYS_URL": "http://127.0.0.1:1/alb?x=1"}, "ORTHWEB_ALB_KEYS_URL is not a key endpoint URL"),
    ],
)
def test_a_missing_or_malformed_fact_is_refused_by_name(tmp_path: Path, facts: dict[str, str], message: str) -> None:
    result = run(tmp_path, **facts)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "etc" / "secrets").exists()
