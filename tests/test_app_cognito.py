"""login = "cognito" on the containers: the rendered compose file and nginx.conf of a Cognito
deployment, nginx verifying what the load balancer forwards (a local stand-in signs it and serves the
keys where AWS's endpoints would be: orthweb_dev.oidc), each person reaching Orthanc as the identity
of their role, under the same roles filter; forgeries refused before Orthanc; the host's health
checks answered through nginx's loopback port; /logout ending both sessions."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from orthweb.bootstrap import ROLE_IDENTITIES
from orthweb.settings import MONITOR_IDENTITY, Settings
from orthweb_dev import oidc
from orthweb_dev.containers import COGNITO_DOMAIN, ContainerHost, containers_for_test
from orthweb_dev.dicom import make_instance
from orthweb_dev.harness import USERS_FILE
from orthweb_dev.proc import wait_until

pytestmark = pytest.mark.app

ADMIN, UPLOADER, VIEWER = "ann@hospital.example", "uma@hospital.example", "vic@hospital.example"
SETTINGS = Settings(
    region=oidc.REGION,
    login="cognito",
    domain_name="pacs.hospital.example",
    hosted_zone_id="Z0123456789ABCDEFGHIJ",
    web_users={ADMIN: "admin", UPLOADER: "uploader", VIEWER: "viewer"},
)


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    with containers_for_test(SETTINGS) as host:
        yield host


def entry(app: ContainerHost, before: int) -> dict[str, object]:
    """The first access-log entry after the ``before`` first ones (nginx writes it after answering)."""
    wait_until("nginx's log line", lambda: len(app.access_entries()) > before, timeout=10)
    return app.access_entries()[before]


def test_orthanc_knows_only_the_role_and_monitoring_identities_and_no_person_has_a_password(
    app: ContainerHost,
) -> None:
    users = json.loads((app.secrets / USERS_FILE).read_text())
    assert list(users) == [MONITOR_IDENTITY, *ROLE_IDENTITIES]
    assert all(len(password) >= 32 for password in users.values())
    # The people sign in at Cognito: the host made no password for them, and stored none.
    stored = app.aws("secretsmanager", "list-secret-version-ids", "--secret-id", app.admin_secret_arn)["Versions"]
    assert stored == []
    assert not (app.etc / "nginx-auth" / "logins.map").exists()


@pytest.mark.parametrize(
    ("person", "method", "path", "expected"),
    [
        (VIEWER, "GET", "/system", 200),
        (VIEWER, "GET", "/studies", 200),
        (VIEWER, "POST", "/instances", 403),  # the roles filter, for the role identity nginx sent
        (UPLOADER, "POST", "/instances", 200),
        (UPLOADER, "DELETE", "/patients/0", 403),
        (ADMIN, "GET", "/changes?last", 200),
    ],
)
def test_each_person_gets_the_rights_of_their_group_and_is_named_in_the_log(
    app: ContainerHost, person: str, method: str, path: str, expected: int
) -> None:
    body = make_instance(f"cognito-{person[:3]}").data if method == "POST" else None
    before = len(app.access_entries())
    status, answer = app.rest(method, path, body, user=person)
    assert status == expected, answer[:200]
    logged = entry(app, before)
    assert (logged["user"], logged["login"], logged["status"]) == (person, "ok", expected)


def test_a_stolen_or_made_up_login_is_refused_before_orthanc(app: ContainerHost) -> None:
    assert app.oidc is not None
    viewer = app.login_headers(VIEWER)
    other = oidc.AlbSigner(arn=oidc.OTHER_ALB_ARN)  # another balancer's key, unknown to this one
    attempts = {
        "no headers": {},
        "the access token alone": {k: v for k, v in viewer.items() if k != "x-amzn-oidc-data"},
        "another balancer's claims": {
            **viewer,
            "x-amzn-oidc-data": other.oidc_data(viewer["x-amzn-oidc-identity"], VIEWER),
        },
        "expired claims": {
            **viewer,
            "x-amzn-oidc-data": app.oidc.alb.oidc_data(viewer["x-amzn-oidc-identity"], VIEWER, exp=oidc.now() - 60),
        },
        # A role identity's name with a guessed password, and a person's name with none.
        "a Basic login": {"Authorization": "Basic b3J0aHdlYi1yb2xlLWFkbWluOmd1ZXNz"},
    }
    for name, headers in attempts.items():
        before = len(app.access_entries())
        status, _ = app.rest("GET", "/system", auth=False, headers=headers)
        assert status == 401, name
        logged = entry(app, before)
        assert logged["status"] == 401, (name, logged)
        assert logged["login"] not in ("", "ok"), (name, logged)  # why nginx refused it
    # Orthanc never saw them: its own refusals would be 401s too, but from the role identity only.
    assert "guess" not in app.orthanc_log.read_text()


def test_a_persons_own_authorization_header_never_reaches_orthanc(app: ContainerHost) -> None:
    """A viewer who adds the admin identity's name to a Basic login stays a viewer."""
    status, _ = app.rest("POST", "/instances", make_instance("cognito-smuggle").data, user=VIEWER, password="x")
    assert status == 403


def test_the_monitoring_identity_is_refused_everything_but_its_probe(app: ContainerHost) -> None:
    """nginx's health port logs in as the monitoring identity; at Orthanc (its loopback port, where
    only nginx reaches it) that login gets GET /changes and nothing else, not even a viewer's reads."""
    basic = base64.b64encode(f"{MONITOR_IDENTITY}:{app.passwords[MONITOR_IDENTITY]}".encode()).decode()
    login = {"Authorization": f"Basic {basic}"}  # the identity is no person: a Basic login, as nginx sends
    refused = [
        ("GET", "/patients"),
        ("GET", "/studies"),
        ("GET", "/instances"),
        ("GET", "/system"),
        ("POST", "/tools/find"),
    ]
    find = json.dumps({"Level": "Study", "Query": {}}).encode()

    def direct(method: str, path: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:8042{path}", data=find if method == "POST" else None, method=method, headers=login
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
                return int(answer.status)
        except urllib.error.HTTPError as err:
            return err.code

    answers = app.in_network_namespace(lambda: {ask: direct(*ask) for ask in [("GET", "/changes?last"), *refused]})
    assert answers.pop(("GET", "/changes?last")) == 200
    assert answers == dict.fromkeys(refused, 403)
    # From outside, the identity's login is no login at all: nginx takes only the balancer's.
    status, _ = app.rest("GET", "/changes?last", auth=False, headers=login)
    assert status == 401


def test_the_hosts_health_checks_pass_through_nginx_to_orthanc_and_fail_without_it(app: ContainerHost) -> None:
    url = f"http://127.0.0.1:{app.ports['cognito_probe']}/orthanc-health"
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert (answer.status, answer.read()) == (200, b"ok\n")
    before = len(app.health_values())
    app.host_step("orthweb-probe")  # what orthweb-probe.timer runs every minute (with alarms)
    app.stop_orthanc()
    try:
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(url, timeout=10)
        assert failed.value.code >= 500
        app.host_step("orthweb-probe")
    finally:
        app.start_orthanc()
    assert app.health_values()[before:] == [1.0, 0.0]


def test_logout_ends_the_balancers_session_and_cognitos(app: ContainerHost) -> None:
    request = urllib.request.Request(app.web_url + "/logout", headers={"Cookie": "AWSELBAuthSessionCookie-0=abc"})  # noqa: S310
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=app.tls_context()))
    with pytest.raises(urllib.error.HTTPError) as redirected:
        opener.open(request, timeout=10)
    answer = redirected.value
    assert answer.code == 302
    target = urlsplit(answer.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == ("https", COGNITO_DOMAIN, "/logout")
    assert parse_qs(target.query) == {"client_id": [oidc.CLIENT_ID], "logout_uri": ["https://pacs.hospital.example/"]}
    expired = [c for c in answer.headers.get_all("Set-Cookie") or [] if c.startswith("AWSELBAuthSessionCookie-0=")]
    assert len(expired) == 1
    assert "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in expired[0]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
