"""login = "cognito": what nginx verifies before anything reaches Orthanc (docs/host.md, "Cognito
login: what nginx verifies"). Debian's nginx runs the cognito fragments and orthweb-oidc.js as a
plain process on loopback, in front of an upstream that records what it gets; a stand-in for
AWS signs ALB-style and Cognito-style tokens with its own keys and serves them on loopback in
place of AWS's key endpoints (orthweb_dev.oidc). A few seconds: in the fast tier."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orthweb_dev.oidc import (
    ALB_ARN,
    CLIENT_ID,
    OTHER_ALB_ARN,
    SESSION_COOKIE,
    AlbSigner,
    KeyEndpoints,
    PoolSigner,
    Upstream,
    VerifyingNginx,
    jws,
    role_authorization,
    serving,
    unsigned,
)
from orthweb_dev.proc import free_port
from orthweb_dev.testing import INSTALL_HINT, NGINX_JS_MODULE, not_run, require

OTHER_POOL_ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_SomeOther"
LOGOUT_URL = "https://orthweb-test.auth.eu-west-1.amazoncognito.com/logout"


@dataclass
class Site:
    nginx: VerifyingNginx
    keys: KeyEndpoints
    upstream: Upstream
    alb: AlbSigner
    pool: PoolSigner

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage]:
        """One request on a new connection (so both workers take some); status and headers."""
        conn = http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, response.msg
        finally:
            conn.close()

    def login(self, groups: list[str] | None, *, sub: str | None = None, email: str | None = "") -> dict[str, str]:
        """The three headers the ALB forwards for a person in ``groups`` (a made-up e-mail unless given)."""
        sub = sub or str(uuid.uuid4())
        mail = f"{sub[:8]}@hospital.example" if email == "" else email
        return {
            "x-amzn-oidc-data": self.alb.oidc_data(sub, mail),
            "x-amzn-oidc-accesstoken": self.pool.access_token(sub, groups),
            "x-amzn-oidc-identity": sub,
        }

    def entry(self, path: str) -> dict[str, Any]:
        """The access log's entry for ``path`` (polled: nginx writes it after answering)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [e for e in self.nginx.access_entries() if e["path"] == path]
            if found:
                assert len(found) == 1
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no access log entry for {path}; error log:\n{self.nginx.error_tail()}")

    def received(self, path: str) -> list[dict[str, list[str]]]:
        """The headers of each request the upstream got for ``path``."""
        return [r.headers for r in self.upstream.received if r.path == path]


def _prerequisites() -> None:
    require("nginx", "nginx-light")
    if not NGINX_JS_MODULE.is_file():
        not_run(f"nginx's njs module {NGINX_JS_MODULE} is missing: install libnginx-mod-http-js ({INSTALL_HINT})")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    _prerequisites()
    alb, pool = AlbSigner(), PoolSigner()
    ports = (free_port(), free_port(), free_port())
    with serving(tmp_path_factory.mktemp("oidc"), ports, alb, pool) as (nginx, keys, upstream):
        yield Site(nginx, keys, upstream, alb, pool)


def probe() -> str:
    return f"/studies/{uuid.uuid4()}"


# --- each role gets through as its role identity ------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "role"),
    [
        (["admin"], "admin"),
        (["uploader"], "uploader"),
        (["viewer"], "viewer"),
        (["viewer", "admin"], "admin"),  # the strongest group wins
        (["viewer", "uploader", "radiology"], "uploader"),
    ],
)
def test_a_verified_person_reaches_orthanc_as_the_role_identity_and_is_named_in_the_log(
    site: Site, groups: list[str], role: str
) -> None:
    path = probe()
    headers = site.login(groups, email="dr.house@hospital.example")
    # Whatever the client sends as Authorization is replaced, never passed on.
    headers["Authorization"] = role_authorization("admin") if role != "admin" else "Basic bm9ib2R5Om5vdGhpbmc="
    headers["Cookie"] = f"{SESSION_COOKIE}-0=the-session"  # a bearer credential: never passed on
    status, _ = site.get(path, headers)
    assert status == 200
    (got,) = site.received(path)
    assert got["authorization"] == [role_authorization(role)]
    assert "cookie" not in got
    assert got["x-orthweb-person"] == ["dr.house@hospital.example"]
    assert not {"x-amzn-oidc-data", "x-amzn-oidc-accesstoken", "x-amzn-oidc-identity"} & set(got)
    entry = site.entry(path)
    assert (entry["user"], entry["role"], entry["oidc"], entry["status"]) == (
        "dr.house@hospital.example",
        role,
        "ok",
        200,
    )


def test_without_an_email_the_person_is_the_user_name(site: Site) -> None:
    path = probe()
    status, _ = site.get(path, site.login(["viewer"], sub="jdoe", email=None))
    assert status == 200
    assert site.received(path)[0]["x-orthweb-person"] == ["jdoe"]
    assert site.entry(path)["user"] == "jdoe"


# --- every forgery is refused, and nothing reaches Orthanc ------------------------------------


def _other_key_same_kid_data(s: Site) -> dict[str, str]:
    h = s.login(["viewer"])
    h["x-amzn-oidc-data"] = AlbSigner(kid=s.alb.kid).oidc_data(h["x-amzn-oidc-identity"], "a@b.example")
    return h


def _changed_after_signing(header: str, **claims: Any) -> Callable[[Site], dict[str, str]]:
    """A genuine token whose claims segment is swapped for another (the signature no longer covers it)."""

    def build(s: Site) -> dict[str, str]:
        h = s.login(["viewer"])
        sub = h["x-amzn-oidc-identity"]
        if header == "x-amzn-oidc-data":
            other = s.alb.oidc_data(sub, claims["email"], sign=AlbSigner().sign)
        else:
            other = jws({"kid": s.pool.kid, "alg": "RS256"}, s.pool.claims(sub, claims["groups"]), PoolSigner().sign)
        genuine = h[header].split(".")
        genuine[1] = other.split(".")[1]
        h[header] = ".".join(genuine)
        return h

    return build


def _with(header: str, make: Callable[[Site, str], str]) -> Callable[[Site], dict[str, str]]:
    def build(s: Site) -> dict[str, str]:
        h = s.login(["admin"])
        h[header] = make(s, h["x-amzn-oidc-identity"])
        return h

    return build


def _without(header: str) -> Callable[[Site], dict[str, str]]:
    def build(s: Site) -> dict[str, str]:
        h = s.login(["admin"])
        del h[header]
        return h

    return build


DATA = "x-amzn-oidc-data"
ACCESS = "x-amzn-oidc-accesstoken"
HS256_SIGNED = "HS256 keyed with the public key"  # the classic algorithm-confusion forgery

# (what the client sends, why it is refused): each answered 401.
FORGERIES: list[tuple[str, Callable[[Site], dict[str, str]], str]] = [
    ("no ALB headers at all", lambda s: {}, "data-missing"),
    (
        "only a Basic login of the admin identity",
        lambda s: {"Authorization": role_authorization("admin")},
        "data-missing",
    ),
    ("no x-amzn-oidc-data", _without(DATA), "data-missing"),
    ("no x-amzn-oidc-accesstoken", _without(ACCESS), "access-missing"),
    ("no x-amzn-oidc-identity", _without("x-amzn-oidc-identity"), "identity-mismatch"),
    (
        "data unsigned (alg none, no signature)",
        _with(DATA, lambda s, sub: unsigned({"sub": sub}, **s.alb.header(alg=None))),
        "data-malformed",
    ),
    (
        "data alg none with a signature",
        _with(DATA, lambda s, sub: unsigned({"sub": sub}, **s.alb.header(alg=None)) + "c2ln"),
        "data-alg",
    ),
    (
        f"data {HS256_SIGNED}",
        _with(DATA, lambda s, sub: jws(s.alb.header(alg="HS256"), {"sub": sub}, _hmac(s.alb.public_pem()), pad=True)),
        "data-alg",
    ),
    ("data signed by another key under the ALB's kid", _other_key_same_kid_data, "data-signature"),
    (
        "data claims changed after signing",
        _changed_after_signing(DATA, email="admin@hospital.example"),
        "data-signature",
    ),
    (
        "data expired",
        _with(DATA, lambda s, sub: s.alb.oidc_data(sub, "a@b.example", exp=int(time.time()) - 1)),
        "data-expired",
    ),
    (
        "data signed for another ALB",
        _with(DATA, lambda s, sub: s.alb.oidc_data(sub, "a@b.example", signer=OTHER_ALB_ARN)),
        "data-signer",
    ),
    (
        "data from another pool",
        _with(DATA, lambda s, sub: s.alb.oidc_data(sub, "a@b.example", iss=OTHER_POOL_ISSUER)),
        "data-issuer",
    ),
    (
        "data for another client",
        _with(DATA, lambda s, sub: s.alb.oidc_data(sub, "a@b.example", client="otherclient")),
        "data-client",
    ),
    (
        "data under a key id AWS never issued",
        _with(DATA, lambda s, sub: AlbSigner().oidc_data(sub, "a@b.example")),
        "unknown-key",
    ),
    ("data not a JWT", _with(DATA, lambda s, sub: "not.a.jwt!"), "data-malformed"),
    (
        "access unsigned (alg none, no signature)",
        _with(ACCESS, lambda s, sub: unsigned(s.pool.claims(sub, ["admin"]))),
        "access-malformed",
    ),
    (
        "access alg none with a signature",
        _with(ACCESS, lambda s, sub: unsigned(s.pool.claims(sub, ["admin"])) + "c2ln"),
        "access-alg",
    ),
    (
        f"access {HS256_SIGNED}",
        _with(
            ACCESS,
            lambda s, sub: jws(
                {"alg": "HS256", "kid": s.pool.kid}, s.pool.claims(sub, ["admin"]), _hmac(str(s.pool.jwk()))
            ),
        ),
        "access-alg",
    ),
    (
        "access signed by another key under the pool's kid",
        _with(ACCESS, lambda s, sub: PoolSigner(kid=s.pool.kid).access_token(sub, ["admin"])),
        "access-signature",
    ),
    ("access groups raised after signing", _changed_after_signing(ACCESS, groups=["admin"]), "access-signature"),
    (
        "access expired",
        _with(ACCESS, lambda s, sub: s.pool.access_token(sub, ["admin"], exp=int(time.time()) - 1)),
        "access-expired",
    ),
    (
        "access from another pool",
        _with(ACCESS, lambda s, sub: PoolSigner(issuer=OTHER_POOL_ISSUER).access_token(sub, ["admin"])),
        "access-issuer",
    ),
    (
        "access for another client",
        _with(ACCESS, lambda s, sub: s.pool.access_token(sub, ["admin"], client_id="other")),
        "access-client",
    ),
    (
        "an ID token in place of the access token",
        _with(ACCESS, lambda s, sub: s.pool.access_token(sub, ["admin"], token_use="id")),
        "access-token-use",
    ),
    (
        "access under a key id the pool never had",
        _with(ACCESS, lambda s, sub: PoolSigner().access_token(sub, ["admin"])),
        "unknown-key",
    ),
    (
        "identity header names someone else",
        _with("x-amzn-oidc-identity", lambda s, sub: "someone-else"),
        "identity-mismatch",
    ),
    (
        "another person's access token",
        _with(ACCESS, lambda s, sub: s.pool.access_token("someone-else", ["admin"])),
        "access-sub-mismatch",
    ),
]


def _hmac(secret: str) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret.encode(), data, hashlib.sha256).digest()


@pytest.mark.parametrize(("forgery", "reason"), [pytest.param(f[1], f[2], id=f[0]) for f in FORGERIES])
def test_a_forgery_is_refused_401_and_never_reaches_orthanc(
    site: Site, forgery: Callable[[Site], dict[str, str]], reason: str
) -> None:
    path = probe()
    status, _ = site.get(path, forgery(site))
    assert status == 401
    assert site.received(path) == []
    entry = site.entry(path)
    assert (entry["oidc"], entry["user"], entry["role"]) == (reason, "", "")


@pytest.mark.parametrize("groups", [[], ["radiology"], None], ids=["no group", "another group", "no groups claim"])
def test_a_verified_person_in_no_orthweb_group_is_refused_403(site: Site, groups: list[str] | None) -> None:
    path = probe()
    status, _ = site.get(path, site.login(groups))
    assert status == 403
    assert site.received(path) == []
    assert site.entry(path)["oidc"] == "no-orthweb-group"


@pytest.mark.parametrize("name", ["X-Orthweb-Person", "X-Orthweb-Role", "x-orthweb-anything"])
def test_a_client_sent_orthweb_header_never_reaches_orthanc(site: Site, name: str) -> None:
    path = probe()
    headers = site.login(["viewer"])
    headers[name] = "admin@hospital.example"
    status, _ = site.get(path, headers)
    assert status == 403
    assert site.received(path) == []


# --- keys: fetched once per kid, whatever the number of requests and workers ------------------


def test_each_key_is_fetched_once_per_kid(tmp_path: Path) -> None:
    _prerequisites()
    alb, pool, second = AlbSigner(), PoolSigner(), AlbSigner()
    ports = (free_port(), free_port(), free_port())
    with serving(tmp_path / "oidc", ports, alb, pool) as (nginx, keys, upstream):
        keys.add_alb_key(second)
        fresh = Site(nginx, keys, upstream, alb, pool)
        for n in range(12):
            fresh.alb = second if n % 2 else alb  # the region's two keys, by turns
            status, _ = fresh.get(probe(), fresh.login(["viewer"]))
            assert status == 200
        assert len(upstream.received) == 12
        assert dict(keys.fetches) == {
            f"/alb/{alb.kid}": 1,
            f"/alb/{second.kid}": 1,
            "/eu-west-1_OrthwebT1/.well-known/jwks.json": 1,
        }


# --- /logout -----------------------------------------------------------------------------------


def test_logout_expires_the_alb_session_and_signs_out_of_cognito(site: Site) -> None:
    cookie = f"{SESSION_COOKIE}-0=abc; {SESSION_COOKIE}-5=def; theme=dark"
    status, headers = site.get("/logout", {"Cookie": cookie})
    assert status == 302
    assert headers["Location"] == (
        f"{LOGOUT_URL}?client_id={CLIENT_ID}&logout_uri=https%3A%2F%2Forthweb.example.org%2F"
    )
    assert headers["Cache-Control"] == "no-store"
    cleared = {c.split("=", 1)[0]: c for c in headers.get_all("Set-Cookie") or []}
    # Every shard the ALB may have written (and the one this browser had past them); nothing else.
    assert sorted(cleared) == sorted(f"{SESSION_COOKIE}-{n}" for n in (0, 1, 2, 3, 5))
    for value in cleared.values():
        attributes = {a.strip().split("=")[0]: a.strip() for a in value.split(";")[1:]}
        assert value.split(";")[0].endswith("=")
        assert attributes["Max-Age"] == "Max-Age=-1"
        assert attributes["Expires"] == "Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        assert {"Path", "Secure", "HttpOnly"} <= set(attributes)
        assert attributes["Path"] == "Path=/"
    assert site.received("/logout") == []


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site"])
def test_a_link_on_another_site_cannot_sign_anyone_out(site: Site, fetch_site: str) -> None:
    status, headers = site.get("/logout", {"Cookie": f"{SESSION_COOKIE}-0=abc", "Sec-Fetch-Site": fetch_site})
    assert status == 403
    assert headers.get_all("Set-Cookie") is None


def test_the_signer_checked_is_this_load_balancer() -> None:
    # The stand-in signs as the deployment's ALB unless told otherwise (a wrong default would let
    # the wrong-signer case pass for the wrong reason).
    assert AlbSigner().header()["signer"] == ALB_ARN != OTHER_ALB_ARN
    assert re.fullmatch(r"arn:aws:elasticloadbalancing:[a-z0-9-]+:\d{12}:loadbalancer/app/[^/]+/[0-9a-f]+", ALB_ARN)
