"""Who may reach the images, and as whom, proven through the real nginx and Orthanc in their
containers (the rendered compose file on Docker): DICOM peers by AET, network and permission;
client certificates; web users by role; password guessing throttled (wrong logins only, by user
and by address); the hop to Orthanc on loopback only; each of nginx's two capabilities needed, and
no more.

One application runs for the module with web users of each role, DICOM peers of different
permissions (three on HERE/32, one on PEER_4/32) and ``dicom_client_ca`` set to a test CA. Tests
that need their own client address connect to nginx's address on the project network from this
machine's CLIENT_ADDRESSES, taken on that network's bridge for the module (HERE is the default
source there; OTHER and GUESSER stand for "another address", PEER_4 for another peer's network).
Orthanc's own ports are reached from inside its network namespace, on its loopback."""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import ssl
import subprocess
import time
from base64 import b64encode
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from orthweb.bootstrap import ORTHANC_DICOM_PORT, ORTHANC_HTTP_PORT
from orthweb.settings import Settings
from orthweb_dev.audit import AUDIT_MARK, kept_by_query
from orthweb_dev.containers import CLIENT_ADDRESSES, NGINX_CAPABILITIES, ContainerHost, containers_for_test
from orthweb_dev.dicom import (
    Sample,
    dicom_ae,
    log_mark,
    make_instance,
    refused_at_association,
    store,
    study_find,
)
from orthweb_dev.pki import Issued, issue, make_ca
from orthweb_dev.proc import free_port, wait_until

pytestmark = pytest.mark.app

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
USERS = {"admin": "admin", "ann": "viewer", "upton": "uploader"}
HERE, OTHER, GUESSER, PEER_4 = CLIENT_ADDRESSES
# Addresses one user's password is guessed from, a few tries each (a botnet, as the throttle sees it).
SPRAY = [f"198.18.1.{i}" for i in range(1, 31)]
NGINX_DICOM = 11112  # nginx's container ports, on its address in the project network
NGINX_HTTPS = 443


class Pki:
    """The peers' CA with a client certificate per peer, and another CA with one of its own."""

    def __init__(self, directory: Path) -> None:
        self.ca = make_ca(directory, "peers")
        self.client = issue(self.ca, "ct01", cn="CT01", usage="clientAuth")
        # The C-MOVE destination's own DICOM TLS server (nginx verifies it against the same CA).
        self.destination = issue(self.ca, "mover-scp", cn="mover.test", usage="serverAuth", san="DNS:mover.test")
        self.other_ca = make_ca(directory / "other", "other")
        self.stranger = issue(self.other_ca, "stranger", cn="CT01", usage="clientAuth")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def move_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def app(pki: Pki, move_port: int) -> Iterator[ContainerHost]:
    settings = Settings(
        web_users=USERS,
        dicom_client_ca=pki.ca.pem,
        dicom_peers=[
            {"aet": "CT01", "cidr": f"{HERE}/32", "permissions": ["store", "find"]},
            {"aet": "STORE1", "cidr": f"{HERE}/32", "permissions": ["store"]},
            {"aet": "MOVER", "cidr": f"{HERE}/32", "permissions": ["find", "move"],
             "host": HERE, "port": move_port, "tls_name": "mover.test"},
            # Another peer granted move (here at the same SCP): MOVER may not send it anything.
            {"aet": "MOVER2", "cidr": f"{HERE}/32", "permissions": ["move"],
             "host": HERE, "port": move_port, "tls_name": "mover.test"},
            {"aet": "MR01", "cidr": f"{PEER_4}/32", "permissions": ["store", "find"]},
        ],
    )  # fmt: skip
    with containers_for_test(settings, client_addresses=[*CLIENT_ADDRESSES, *SPRAY]) as host:
        yield host


def tls(app: ContainerHost, client: Issued | None) -> tuple[ssl.SSLContext, str]:
    """pynetdicom tls_args: verify nginx by name, present ``client``'s certificate if given."""
    ctx = app.tls_context()
    if client is not None:
        ctx.load_cert_chain(client.cert, client.key)
    return ctx, "localhost"


def associate(
    app: ContainerHost,
    aet: str,
    *,
    pki: Pki,
    samples: list[Sample] = (),  # type: ignore[assignment]
    find: bool = False,
    called: str = "ORTHANC",
    client: Issued | str | None = "default",
    source: str = HERE,
) -> Any:
    """An association through nginx's DICOM TLS listener, calling as ``aet`` from ``source``."""
    ae = dicom_ae(samples, find=find, aet=aet)
    cert = pki.client if client == "default" else client
    assert not isinstance(cert, str)
    return ae.associate(
        app.nginx_address(), NGINX_DICOM, ae_title=called, tls_args=tls(app, cert), bind_address=(source, 0)
    )


@pytest.fixture(scope="module")
def stored(app: ContainerHost, pki: Pki) -> Sample:
    """One instance C-STOREd by the listed peer CT01 (asserted in the first test)."""
    sample = make_instance("access-ct01", rows=64, columns=64)
    assoc = associate(app, "CT01", pki=pki, samples=[sample])
    assert assoc.is_established
    status = store(assoc, sample)
    assoc.release()
    assert status == 0
    return sample


# --- DICOM peers ---------------------------------------------------------------------------------


def test_a_listed_peer_stores_and_finds(app: ContainerHost, pki: Pki, stored: Sample) -> None:
    assoc = associate(app, "CT01", pki=pki, find=True)
    assert assoc.is_established
    statuses, found = study_find(assoc)
    assoc.release()
    assert statuses[-1] == 0
    assert stored.study in found


@pytest.mark.parametrize("find", [False, True], ids=["store", "find"])
def test_an_unlisted_aet_is_refused_at_association(app: ContainerHost, pki: Pki, find: bool) -> None:
    sample = make_instance("unlisted", rows=16, columns=16)
    mark = log_mark(app)
    assoc = associate(app, "INTRUDER", pki=pki, samples=[] if find else [sample], find=find)
    refused_at_association(app, assoc, mark, aet="INTRUDER")  # calling AE title not recognised


def test_a_peer_with_only_store_stores_but_cannot_find(app: ContainerHost, pki: Pki) -> None:
    sample = make_instance("store-only", rows=16, columns=16)
    assoc = associate(app, "STORE1", pki=pki, samples=[sample], find=True)
    assert assoc.is_established
    assert store(assoc, sample) == 0
    statuses, found = study_find(assoc)
    # Orthanc refuses the command by aborting the association: no status, nothing found.
    assert found == set()
    assert statuses == [-1], statuses
    assert 'Rejected Find request from remote DICOM modality with AET "STORE1"' in app.orthanc_log.read_text()


def test_a_wrong_called_aet_is_refused(app: ContainerHost, pki: Pki) -> None:
    mark = log_mark(app)
    assoc = associate(app, "CT01", pki=pki, called="NOT-ORTHANC")
    refused_at_association(app, assoc, mark, called="NOT-ORTHANC")


def test_c_move_sends_to_the_peer_over_verified_tls(
    app: ContainerHost, pki: Pki, stored: Sample, move_port: int
) -> None:
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0

    scp = AE(ae_title="MOVER")
    scp.supported_contexts = AllStoragePresentationContexts
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.destination.cert, pki.destination.key)
    server = scp.start_server(
        (HERE, move_port), block=False, ssl_context=server_ctx, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert server is not None
    try:
        ae = dicom_ae(aet="MOVER")
        ae.add_requested_context(STUDY_ROOT_MOVE)
        assoc = ae.associate(app.nginx_address(), NGINX_DICOM, ae_title="ORTHANC", tls_args=tls(app, pki.client))
        assert assoc.is_established
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = stored.study
        # Only to itself: to another peer granted move, refused (a failure status), nothing sent.
        elsewhere = [int(s.Status) for s, _ in assoc.send_c_move(query, "MOVER2", STUDY_ROOT_MOVE) if s]
        assert received == []
        statuses = [int(s.Status) for s, _ in assoc.send_c_move(query, "MOVER", STUDY_ROOT_MOVE) if s]
        assoc.release()
    finally:
        server.shutdown()
    # Not a success: Orthanc reports the refused move as its one sub-operation failed (0xB000).
    assert elsewhere, "no C-MOVE response"
    assert elsewhere[-1] != 0, [hex(s) for s in elsewhere]
    assert statuses[-1] == 0, [hex(s) for s in statuses]
    assert received == [stored.sop_instance]
    # Both moves are in Orthanc's audit lines (orthanc-move.py), with the study and the destination.
    lines = [line for line in app.orthanc_log.read_text().splitlines() if AUDIT_MARK in line and '"C-MOVE"' in line]
    moves = [json.loads(line.split(AUDIT_MARK, 1)[1]) for line in lines[-2:]]
    assert [(m["aet"], m["destination"], m["study"], m.get("refused")) for m in moves] == [
        ("MOVER", "MOVER2", stored.study, "a peer may move only to itself"),
        ("MOVER", "MOVER", stored.study, None),
    ]
    # ... and the audit query finds both by the study's UID (the operations guide's "who read X").
    assert all(kept_by_query(line, [], stored.study) for line in lines[-2:])
    # nginx made the outgoing connection (Orthanc reached it on its loopback relay).
    mover = json.loads(app.rendered["orthanc.json"])["DicomModalities"]["MOVER"]
    assert f"listen {mover['Host']}:{mover['Port']};" in app.rendered["nginx.conf"]


# --- client certificates (dcmtk through the real nginx) -----------------------------------------


def echoscu(app: ContainerHost, client: Issued | None) -> subprocess.CompletedProcess[str]:
    tls_args = ["--enable-tls", str(client.key), str(client.cert)] if client else ["--anonymous-tls"]
    return subprocess.run(
        ["echoscu", "-v", *tls_args, "--add-cert-file", str(app.server_cert), "-aet", "CT01", "-aec", "ORTHANC",
         app.nginx_address(), str(NGINX_DICOM)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def next_dicom_entry(app: ContainerHost, mark: int) -> dict[str, Any]:
    """The first DICOM connection logged after ``mark`` lines (nginx logs a connection when it ends)."""
    wait_until("nginx's DICOM log line", lambda: len(app.dicom_entries()) > mark, timeout=10)
    return app.dicom_entries()[mark]


def test_a_peer_with_a_certificate_from_the_configured_ca_is_served(app: ContainerHost, pki: Pki) -> None:
    mark = len(app.dicom_entries())
    run = echoscu(app, pki.client)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Received Echo Response (Success)" in run.stdout + run.stderr
    assert next_dicom_entry(app, mark)["client_cert"] == "SUCCESS"


@pytest.mark.parametrize("who", ["no certificate", "another CA"])
def test_a_peer_without_a_valid_certificate_is_refused_at_the_tls_handshake(
    app: ContainerHost, pki: Pki, who: str
) -> None:
    client = None if who == "no certificate" else pki.stranger
    mark = len(app.dicom_entries())
    run = echoscu(app, client)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Association Request Failed" in out or "TLS" in out, out
    assert "Received Echo Response" not in out
    # nginx refused before any DICOM byte reached Orthanc.
    entry = next_dicom_entry(app, mark)
    assert entry["client_cert"] in ("NONE", "FAILED") or entry["client_cert"].startswith("FAILED")
    assert entry["status"] != 200 or entry["bytes_out"] == 0


# --- the hop to Orthanc: loopback only -----------------------------------------------------------


def test_orthanc_http_refuses_any_address_but_loopback_even_with_the_right_login(app: ContainerHost) -> None:
    """From inside the namespace nginx and Orthanc share: Orthanc's HTTP port serves 127.0.0.1 (nginx)
    and refuses another loopback address, even with an admin's login."""
    token = b64encode(f"admin:{app.passwords['admin']}".encode()).decode()

    def status_from(source: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", ORTHANC_HTTP_PORT, source_address=(source, 0), timeout=10)
        try:
            conn.request("GET", "/system", headers={"Authorization": f"Basic {token}"})
            return conn.getresponse().status
        finally:
            conn.close()

    statuses = {source: app.in_network_namespace(partial(status_from, source)) for source in ("127.0.0.1", "127.0.0.2")}
    assert statuses == {"127.0.0.1": 200, "127.0.0.2": 401}


def test_an_aet_is_accepted_only_from_its_own_peers_network(app: ContainerHost, pki: Pki) -> None:
    """MR01 is listed in PEER_4/32, CT01 in HERE/32: through the same nginx listener, with the same
    valid client certificate, neither may call with the other's AET."""
    own = associate(app, "MR01", pki=pki, find=True, source=PEER_4)
    assert own.is_established
    statuses, _ = study_find(own)
    own.release()
    assert statuses[-1] == 0
    for aet, source in (("CT01", PEER_4), ("MR01", HERE)):
        mark = log_mark(app)
        borrowed = associate(app, aet, pki=pki, find=True, source=source)
        refused_at_association(app, borrowed, mark, aet=aet)


def test_orthanc_dicom_accepts_a_listed_aet_only_from_its_networks_address(app: ContainerHost) -> None:
    """Orthanc itself (DicomCheckModalityHost) accepts CT01 only from the loopback address nginx
    uses for CT01's network; from 127.0.0.1 or any other address, not even with the right AET.
    Called from inside the namespace nginx and Orthanc share."""
    host = json.loads(app.rendered["orthanc.json"])["DicomModalities"]["CT01"]["Host"]
    assert host not in ("127.0.0.1", "127.0.0.2")
    ae = dicom_ae(aet="CT01")

    def associate_from(source: str) -> Any:
        return ae.associate("127.0.0.1", ORTHANC_DICOM_PORT, ae_title="ORTHANC", bind_address=(source, 0))

    from_its_address = app.in_network_namespace(partial(associate_from, host))
    assert from_its_address.is_established  # the refusals below are the address, not the AET
    from_its_address.release()
    for source in ("127.0.0.1", "127.0.0.2"):
        mark = log_mark(app)
        from_elsewhere = app.in_network_namespace(partial(associate_from, source))
        refused_at_association(app, from_elsewhere, mark, aet="CT01")


def test_nginx_admits_dicom_only_from_the_peers_networks(app: ContainerHost, pki: Pki) -> None:
    ae = dicom_ae(aet="CT01")
    mark = len(app.dicom_entries())
    assoc = ae.associate(
        app.nginx_address(), NGINX_DICOM, ae_title="ORTHANC", tls_args=tls(app, pki.client),
        bind_address=(OTHER, 0),
    )  # fmt: skip
    assert not assoc.is_established
    entry = next_dicom_entry(app, mark)
    assert (entry["client"], entry["status"]) == (OTHER, 403)


def test_every_connection_orthanc_holds_is_on_loopback_but_the_database(app: ContainerHost, stored: Sample) -> None:
    """Orthanc's TCP sockets, read in its network namespace: each is on loopback (nginx, from
    127.0.0.1 or its peers' 127.1.x.y), except its connections to the database (RDS on the host;
    the harness's PostgreSQL here, over TLS)."""
    orthanc = app.pid("orthanc")
    out = run_in_namespace(app, ["ss", "-Htnp"]).stdout
    mine = [line.split() for line in out.splitlines() if f"pid={orthanc}," in line]
    assert mine, "Orthanc holds no TCP connection"
    database = f"{app.db_host}:{app.ports['postgres']}"

    def loopback(address: str) -> bool:
        return ipaddress.ip_address(address.rsplit(":", 1)[0]) in ipaddress.ip_network("127.0.0.0/8")

    elsewhere = [cols for cols in mine if not (loopback(cols[3]) and loopback(cols[4]))]
    assert elsewhere, "no connection to the database"
    assert all(cols[4] == database for cols in elsewhere), elsewhere


def run_in_namespace(app: ContainerHost, command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` (a program of this machine) in nginx's and Orthanc's network namespace."""
    return subprocess.run(
        ["nsenter", f"--net=/proc/{app.pid('nginx')}/ns/net", "--", *command],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip


# --- web users and roles -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resources(app: ContainerHost, stored: Sample) -> dict[str, str]:
    """IDs the route table uses: the stored instance, its study, and a throwaway instance."""
    (found,) = json.loads(app.rest("POST", "/tools/lookup", stored.sop_instance.encode())[1])
    instance = found["ID"]
    study = app.rest_json(f"/instances/{instance}/study")["ID"]
    return {"instance": instance, "study": study}


def throwaway(app: ContainerHost) -> str:
    status, body = app.rest("POST", "/instances", make_instance("throwaway", rows=8, columns=8).data)
    assert status == 200
    return str(json.loads(body)["ID"])


FIND = json.dumps({"Level": "Study", "Query": {}}).encode()
A = "admin"
U = "uploader"
V = "viewer"
# (method, path, body, roles allowed). Refused = 403 from the role filter.
ROUTES: list[tuple[str, str, bytes | str | None, set[str]]] = [
    ("GET", "/system", None, {A, U, V}),
    ("GET", "/app/explorer.html", None, {A, U, V}),
    ("GET", "/studies", None, {A, U, V}),
    ("GET", "/studies/{study}", None, {A, U, V}),
    ("GET", "/instances/{instance}/file", None, {A, U, V}),
    ("GET", "/instances/{instance}/simplified-tags", None, {A, U, V}),
    ("POST", "/tools/find", FIND, {A, U, V}),
    ("GET", "/studies/{study}/archive", None, {A, U, V}),
    ("GET", "/tools/create-archive?resources={study}", None, {A, U, V}),
    # The POST form may ask for a job ("Asynchronous": true), which the filter cannot see: admin's.
    ("POST", "/studies/{study}/archive", b"{}", {A}),
    ("GET", "/tools/labels", None, {A, U, V}),
    ("POST", "/instances", "upload", {A, U}),
    ("POST", "/dicom-web/studies", b"", {A, U}),
    ("POST", "/studies/{study}/anonymize", b"{}", {A}),
    ("PUT", "/instances/{instance}/metadata/1024", b"x", {A}),
    ("DELETE", "/instances/{throwaway}", None, {A}),
    # A DELETE in disguise: nginx refuses method overrides to everyone (403), before Orthanc.
    ("GET", "/patients/{study}?_method=DELETE", None, set()),
    ("GET", "/modalities", None, {A}),
    ("PUT", "/modalities/TEMP", json.dumps({"AET": "TEMP", "Host": "127.0.0.1", "Port": 9}).encode(), {A}),
    ("DELETE", "/modalities/TEMP", None, {A}),
    ("POST", "/modalities/CT01/echo", b"{}", {A}),
    ("GET", "/peers", None, {A}),
    ("GET", "/jobs", None, {A}),
    ("GET", "/changes", None, {A}),
    ("DELETE", "/changes", None, {A}),
    ("GET", "/tools/log-level", None, {A}),
    ("PUT", "/tools/log-level", b"default", {A}),
    ("GET", "/dicom-web/servers", None, {A}),
]


@pytest.mark.parametrize("user", list(USERS))
@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_each_role_gets_exactly_its_routes(
    app: ContainerHost, resources: dict[str, str], user: str, route: tuple[str, str, bytes | str | None, set[str]]
) -> None:
    method, path, body, allowed = route
    ids = {**resources, "throwaway": throwaway(app) if "{throwaway}" in path else ""}
    data = make_instance("upload", rows=8, columns=8).data if body == "upload" else body
    assert not isinstance(data, str)
    status, answer = app.rest(method, path.format(**ids), data, user=user)
    if USERS[user] in allowed:
        # Allowed by the filter: whatever Orthanc answers, not the filter's 403 (nor a login refusal).
        assert status not in (401, 403, 429), (user, method, path, status, answer[:200])
    else:
        assert status == 403, (user, method, path, status, answer[:200])


def test_a_wrong_password_never_reaches_the_role_filter(app: ContainerHost) -> None:
    assert app.rest("GET", "/system", user="ann", password="wrong")[0] == 401
    assert app.rest("GET", "/system", auth=False)[0] == 401


def test_nginx_logs_the_user_of_every_request(app: ContainerHost, resources: dict[str, str]) -> None:
    def entries() -> list[dict[str, Any]]:
        return app.access_entries()

    mark = len(entries())
    for user in USERS:
        assert app.rest("GET", "/system", user=user)[0] == 200
    # nginx writes the line once the response is sent: the client can be faster.
    wait_until("the access log lines", lambda: len(entries()) >= mark + len(USERS), timeout=10)
    last = entries()[mark : mark + len(USERS)]
    assert [(e["user"], e["method"], e["path"], e["status"]) for e in last] == [
        (user, "GET", "/system", 200) for user in USERS
    ]
    assert all(e["login"] == "ok" for e in last)
    assert all(e["client"] == app.client_address() for e in last)
    # Answered by nginx itself (the redirect at /), still logged with the login it checked.
    mark = len(entries())
    app.rest("GET", "/")  # urllib follows the redirect (to OE2's /ui/app/, not in the stand-in)
    wait_until("the access log line of /", lambda: any(e["path"] == "/" for e in entries()[mark:]), timeout=10)
    (root,) = [e for e in entries()[mark:] if e["path"] == "/"]
    assert (root["status"], root["login"]) == (302, "ok")


class HTTPSFrom(http.client.HTTPSConnection):
    """HTTPS to nginx's address on the project network from ``source``, verifying its certificate
    for the name ``localhost`` (a name it carries here)."""

    def __init__(self, app: ContainerHost, source: str) -> None:
        super().__init__("localhost", NGINX_HTTPS, context=app.tls_context(), timeout=30)
        self.address, self.source = app.nginx_address(), source
        self.tls = app.tls_context()

    def connect(self) -> None:
        raw = socket.create_connection((self.address, NGINX_HTTPS), timeout=30, source_address=(self.source, 0))
        self.sock = self.tls.wrap_socket(raw, server_hostname="localhost")


def https_from(
    app: ContainerHost, source: str, user: str | None, password: str = "", path: str = "/system"
) -> tuple[int, str | None]:
    """GET ``path`` through nginx from ``source`` (one of the module's client addresses) with that
    login, or none if ``user`` is None; the status and the WWW-Authenticate challenge, if any."""
    conn = HTTPSFrom(app, source)
    headers = {} if user is None else {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.getheader("WWW-Authenticate")
    finally:
        conn.close()


def entries_from(app: ContainerHost, sources: set[str]) -> list[dict[str, Any]]:
    """nginx's access log lines of requests from ``sources``."""
    return [e for e in app.access_entries() if e["client"] in sources]


def test_a_burst_of_wrong_passwords_is_throttled_while_right_logins_and_no_login_are_not(app: ContainerHost) -> None:
    statuses = []
    right_during_burst = []
    for i in range(60):
        statuses.append(https_from(app, GUESSER, "ann", f"guess-{i}")[0])
        if i % 10 == 9:  # the real user, from the same address, in the middle of the burst
            right_during_burst.append(https_from(app, GUESSER, "ann", app.passwords["ann"])[0])
    assert set(statuses) == {401, 429}
    assert statuses.index(429) <= 25  # the burst allowance, then refused
    assert statuses[-10:] == [429] * 10  # and it stays refused while the guessing goes on
    assert right_during_burst == [200] * 6
    # From the same address, right after: another user's right login gets in, and a request
    # without credentials gets Orthanc's challenge (so a browser asks for the login), not 429.
    assert https_from(app, GUESSER, "admin", app.passwords["admin"])[0] == 200
    status, challenge = https_from(app, GUESSER, None)
    assert status == 401
    assert challenge is not None
    assert challenge.startswith("Basic")

    # Refused guesses never reached Orthanc: nginx answered them (429 is not Orthanc's).
    sent = len(statuses) + len(right_during_burst) + 2
    wait_until("the access log lines", lambda: len(entries_from(app, {GUESSER})) >= sent, timeout=10)
    logged = entries_from(app, {GUESSER})
    throttled = [e for e in logged if e["status"] == 429]
    assert len(throttled) == statuses.count(429)
    assert all(e["user"] == "ann" and e["login"] == "wrong" for e in throttled)
    assert [e["login"] for e in logged if e["status"] == 200] == ["ok"] * 7
    assert [(e["login"], e["status"]) for e in logged if e["user"] == ""] == [("none", 401)]


def test_one_users_password_guessed_from_many_addresses_is_throttled(app: ContainerHost) -> None:
    """Three wrong passwords for upton from each of 30 addresses (none near its own limit): the
    user's own count stops them, while upton's right login still gets in from any of them."""
    statuses = [https_from(app, source, "upton", f"guess-{i}")[0] for source in SPRAY for i in range(3)]
    assert set(statuses) == {401, 429}
    assert statuses.index(429) <= 25  # the user's burst allowance, across addresses
    assert statuses[-10:] == [429] * 10
    assert [https_from(app, source, "upton", app.passwords["upton"])[0] for source in SPRAY[-3:]] == [200] * 3
    wait_until("the access log lines", lambda: len(entries_from(app, set(SPRAY))) >= len(statuses) + 3, timeout=10)
    throttled = [e for e in entries_from(app, set(SPRAY)) if e["status"] == 429]
    assert len({e["client"] for e in throttled}) > 20  # refused from addresses that guessed only 3 times


def test_a_throttled_search_leaves_its_query_string_out_of_nginxs_error_log(app: ContainerHost) -> None:
    """QIDO searches carry patient names in the query string; nginx logs a throttled request's
    request line in its error log unless request-time warnings are off there."""
    search = "/dicom-web/studies?PatientName=SECRET%5ETHROTTLED"
    statuses = [https_from(app, OTHER, "nobody", f"guess-{i}", path=search)[0] for i in range(30)]
    assert 429 in statuses
    wait_until("the access log lines", lambda: len(entries_from(app, {OTHER})) >= len(statuses), timeout=10)
    assert [e["path"] for e in entries_from(app, {OTHER}) if e["status"] == 429] == ["/dicom-web/studies"] * (
        statuses.count(429)
    )
    assert "SECRET" not in app.nginx_error_log.read_text()
    assert "SECRET" not in app.nginx_access_log.read_text()


# --- reloads and capabilities --------------------------------------------------------------------


def test_a_renewed_certificate_reloads_nginx_without_a_restart(app: ContainerHost, pki: Pki) -> None:
    pid = app.pid("nginx")
    app.server_cert.unlink()  # orthweb-cert makes a new one, as when the old one expires
    calls_before = len(app.docker_calls())
    app.host_step("orthweb-refresh")
    calls = [c for c in app.docker_calls()[calls_before:] if " up " in c or " kill " in c]
    compose = f"compose --project-name orthweb --file {app.etc}/docker-compose.yml"
    assert calls == [f"{compose} kill --signal HUP nginx"]
    app.reload_nginx()  # what that asks Docker to do
    new = ssl.PEM_cert_to_DER_cert(app.server_cert.read_text())

    def presented() -> bytes | None:
        any_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # only looking: old or new certificate
        any_cert.check_hostname = False
        any_cert.verify_mode = ssl.CERT_NONE
        any_cert.load_cert_chain(pki.client.cert, pki.client.key)
        with (
            socket.create_connection((app.nginx_address(), NGINX_DICOM), timeout=10) as raw,
            any_cert.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            return conn.getpeercert(binary_form=True)

    deadline = time.monotonic() + 30
    while presented() != new:
        assert time.monotonic() < deadline, "nginx still presents the old certificate"
        time.sleep(0.2)
    # Reloaded, not restarted.
    state = app.inspect("nginx")["State"]
    assert (state["Pid"], state["Running"]) == (pid, True)


LOW_PORTS_CLOSED = "net.ipv4.ip_unprivileged_port_start=1024"  # the kernel's default outside Docker


@pytest.mark.parametrize(
    ("taken", "refusal"),
    [
        ("setgid", "setgid("),
        ("setuid", "setuid("),
        (LOW_PORTS_CLOSED, "bind() to 0.0.0.0:443 failed (13: Permission denied)"),
    ],
)
def test_nginx_needs_each_of_its_two_capabilities_and_no_more(
    app: ContainerHost, tmp_path: Path, taken: str, refusal: str
) -> None:
    """The compose file's nginx service as the file has it (image, capabilities, sysctls,
    read-only root, tmpfs mounts, no-new-privileges), on a minimal configuration (the nginx user,
    port 443, the rendered file's temporary paths) and no network: less SETUID or SETGID, its
    workers cannot drop to the nginx user; with the low ports closed again, it cannot bind 443,
    so the file's sysctl, not NET_BIND_SERVICE, is what lets it. (CHOWN and DAC_OVERRIDE are not
    needed: its temporary directories are owned by nginx as the tmpfs mounts are.)"""
    service = app.compose_service("nginx")
    assert sorted(c.lower() for c in service["cap_add"]) == sorted(NGINX_CAPABILITIES)
    kept = [c for c in NGINX_CAPABILITIES if c != taken]
    sysctls = {key: str(value) for key, value in service["sysctls"].items()}
    if taken == LOW_PORTS_CLOSED:
        key, value = LOW_PORTS_CLOSED.split("=")
        sysctls[key] = value
    temp_paths = " ".join(re.findall(r"\b\w+_temp_path [^;]+;", app.rendered["nginx.conf"]))
    assert temp_paths.count("_temp_path") == len(service["tmpfs"]) - 2  # all but /run and /tmp
    (tmp_path / "nginx.conf").write_text(
        "user nginx;\nerror_log stderr;\nevents {}\n"
        f"http {{ access_log off; {temp_paths} server {{ listen 443; return 204; }} }}\n"
    )
    name = "orthweb-capability-check"
    subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    run = subprocess.run(
        ["docker", "run", "--detach", "--name", name, "--network", "none", "--cap-drop", "ALL",
         *(arg for c in kept for arg in ("--cap-add", c.upper())),
         *(arg for k, v in sysctls.items() for arg in ("--sysctl", f"{k}={v}")),
         "--read-only", *(arg for mount in service["tmpfs"] for arg in ("--tmpfs", mount)),
         *(arg for opt in service["security_opt"] for arg in ("--security-opt", opt)),
         "--volume", f"{tmp_path / 'nginx.conf'}:/etc/nginx/nginx.conf:ro", app.images["nginx"]],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    def logs() -> str:
        done = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False)
        return done.stdout + done.stderr

    try:
        wait_until(f"nginx refusing without {taken}", lambda: refusal in logs(), timeout=30)
        said = logs()
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    assert "Operation not permitted" in said or taken == LOW_PORTS_CLOSED, said
