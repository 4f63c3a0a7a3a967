"""A stand-in for what AWS does around ``login = "cognito"``, and nginx's verifier in front of a
recording upstream (docs/host.md, "Cognito login: what nginx verifies").

* :class:`AlbSigner`: an EC P-256 key that signs ``x-amzn-oidc-data`` as an Application Load
  Balancer does (ES256; header ``kid``, ``signer``, ``iss``, ``client``, ``exp``; base64url
  segments padded with ``=``).
* :class:`PoolSigner`: an RSA key that signs Cognito-style access tokens (RS256; ``iss``,
  ``client_id``, ``token_use``, ``exp``, ``cognito:groups``) and publishes them as a JWKS.
* :class:`KeyEndpoints`: both public-key endpoints on a loopback HTTP server (the ALB's PEM by
  kid, the pool's JWKS), counting every fetch; it stops by itself after ``lifetime`` seconds.
* :func:`jws` and :func:`unsigned`: any token at all, for the forgeries.
* :class:`Upstream`: a loopback HTTP server that records the headers of each request.
* :class:`VerifyingNginx`: Debian's nginx running the cognito fragments and orthweb-oidc.js.

Everything listens on 127.0.0.1 at ports the caller chooses."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from orthweb.bootstrap import USERDATA_DIR, render_text, settings_values
from orthweb.settings import Settings
from orthweb_dev.proc import ProcessError, log_tail, port_open, stop_process, wait_until
from orthweb_dev.testing import NGINX_JS_MODULE

REGION = "eu-west-1"
ACCOUNT = "123456789012"
POOL_ID = f"{REGION}_OrthwebT1"
CLIENT_ID = "1example23456789abcdefghij"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL_ID}"
ALB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/orthweb/50dc6c495c0c9188"
OTHER_ALB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/another/0123456789abcdef"
SESSION_COOKIE = "AWSELBAuthSessionCookie"
# A Cognito deployment's settings, for the fragments' values (its VPC: where the balancer is).
COGNITO_TEST_SETTINGS: dict[str, Any] = {
    "region": REGION,
    "login": "cognito",
    "domain_name": "orthweb.example.org",
    "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
    "web_users": {"ann@hospital.example": "admin"},
}

Signer = Callable[[bytes], bytes]


def b64url(data: bytes, *, pad: bool = False) -> str:
    """base64url; with ``pad``, '=' padding kept as ALB writes it."""
    text = base64.urlsafe_b64encode(data).decode()
    return text if pad else text.rstrip("=")


def _json_segment(value: Mapping[str, Any], pad: bool) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode(), pad=pad)


def jws(header: Mapping[str, Any], claims: Mapping[str, Any], sign: Signer, *, pad: bool = False) -> str:
    """A compact JWS: ``sign`` gets the bytes of the first two segments as written."""
    signed = f"{_json_segment(header, pad)}.{_json_segment(claims, pad)}"
    return f"{signed}.{b64url(sign(signed.encode()), pad=pad)}"


def unsigned(claims: Mapping[str, Any], **header: Any) -> str:
    """An ``alg: none`` token with an empty signature (RFC 7519's unsecured JWT)."""
    return f"{_json_segment({'alg': 'none', **header}, False)}.{_json_segment(claims, False)}."


def now() -> int:
    return int(time.time())


@dataclass
class AlbSigner:
    """The ALB's regional key: signs ``x-amzn-oidc-data`` as load balancer ``arn``."""

    arn: str = ALB_ARN
    kid: str = field(default_factory=lambda: str(uuid.uuid4()))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, data: bytes) -> bytes:
        """ES256 as JWS writes it: r and s, 32 bytes each (not DER)."""
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def header(self, **changes: Any) -> dict[str, Any]:
        """The header ALB writes (valid for five minutes); ``changes`` replace fields (None drops one)."""
        header = {
            "typ": "JWT",
            "kid": self.kid,
            "alg": "ES256",
            "iss": ISSUER,
            "client": CLIENT_ID,
            "signer": self.arn,
            "exp": now() + 300,
        }
        header.update(changes)
        return {k: v for k, v in header.items() if v is not None}

    def oidc_data(self, sub: str, email: str | None, *, sign: Signer | None = None, **header: Any) -> str:
        """``x-amzn-oidc-data`` for the person ``sub``: the user-info claims, padded segments."""
        claims: dict[str, Any] = {"sub": sub, "email_verified": "true", "username": sub, "exp": now() + 300}
        if email is not None:
            claims["email"] = email
        claims["iss"] = ISSUER
        return jws(self.header(**header), claims, sign or self.sign, pad=True)


@dataclass
class PoolSigner:
    """A Cognito user pool's signing key: access tokens for ``client_id`` from ``issuer``."""

    issuer: str = ISSUER
    client_id: str = CLIENT_ID
    # Cognito's key ids are base64 with '+', '/' and '=' in them.
    kid: str = field(default_factory=lambda: base64.b64encode(os.urandom(30)).decode() + "=")
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    def jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {
            "alg": "RS256",
            "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            "kid": self.kid,
            "kty": "RSA",
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "use": "sig",
        }

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def claims(self, sub: str, groups: list[str] | None, **changes: Any) -> dict[str, Any]:
        """An access token's claims as Cognito writes them; ``changes`` replace some (None drops one)."""
        issued = now()
        claims: dict[str, Any] = {
            "sub": sub,
            "iss": self.issuer,
            "client_id": self.client_id,
            "origin_jti": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "token_use": "access",
            "scope": "openid email",
            "auth_time": issued,
            "exp": issued + 300,
            "iat": issued,
            "jti": str(uuid.uuid4()),
            "username": sub,
        }
        if groups is not None:
            claims["cognito:groups"] = groups
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def access_token(
        self, sub: str, groups: list[str] | None, *, header: Mapping[str, Any] | None = None, **changes: Any
    ) -> str:
        return jws(header or {"kid": self.kid, "alg": "RS256"}, self.claims(sub, groups, **changes), self.sign)


class KeyEndpoints:
    """The ALB's key endpoint (``/alb/<kid>``: PEM) and the pool's JWKS
    (``/<pool>/.well-known/jwks.json``) on ``host``:``port`` (loopback unless a container must reach
    it), counting fetches by path. Use it as a context manager; it also stops by itself ``lifetime``
    seconds after it started."""

    def __init__(
        self, port: int, alb: AlbSigner, pool: PoolSigner, *, lifetime: float = 300, host: str = "127.0.0.1"
    ) -> None:
        self.port = port
        self.host = host
        self.alb, self.pool = alb, pool
        self.alb_keys = {alb.kid: alb.public_pem()}
        self.jwks = {"keys": [pool.jwk()]}
        self.fetches: Counter[str] = Counter()
        self.lifetime = lifetime
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoints.fetches[self.path] += 1
                body = endpoints.answer(self.path)
                self.send_response(404 if body is None else 200)
                self.send_header("Content-Type", "application/json" if self.path.endswith(".json") else "text/plain")
                self.send_header("Cache-Control", "no-cache")  # nginx keeps them anyway, for its own time
                payload = (body or "not found").encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    @property
    def alb_keys_url(self) -> str:
        return f"http://{self.host}:{self.port}/alb"

    @property
    def jwks_url(self) -> str:
        return f"http://{self.host}:{self.port}/{POOL_ID}/.well-known/jwks.json"

    def add_alb_key(self, alb: AlbSigner) -> None:
        """Serve ``alb``'s public key too (another of the region's keys, its own kid)."""
        self.alb_keys[alb.kid] = alb.public_pem()

    def answer(self, path: str) -> str | None:
        if path.startswith("/alb/"):
            return self.alb_keys.get(path.removeprefix("/alb/"))
        if path == f"/{POOL_ID}/.well-known/jwks.json":
            return json.dumps(self.jwks)
        return None

    def start(self) -> KeyEndpoints:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> KeyEndpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Received:
    """One request as the upstream got it: method, path and headers (names lower-cased)."""

    method: str
    path: str
    headers: dict[str, list[str]]


class Upstream:
    """Orthanc's place: answers 200 to anything on 127.0.0.1:``port`` and records each request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Received] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                headers: dict[str, list[str]] = {}
                for name, value in self.headers.items():
                    headers.setdefault(name.lower(), []).append(value)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                upstream.received.append(Received(self.command, self.path, headers))
                self.send_response(200)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"upstream\n")

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# The role identities' Basic logins a test deployment uses (the host generates random ones).
ROLE_PASSWORDS = {"admin": "admin-secret-1", "uploader": "uploader-secret-2", "viewer": "viewer-secret-3"}


def role_authorization(role: str) -> str:
    """The Authorization header Orthanc must get for ``role`` (its orthweb-role-* identity)."""
    login = f"orthweb-role-{role}:{ROLE_PASSWORDS[role]}"
    return "Basic " + base64.b64encode(login.encode()).decode()


def oidc_config(*, alb_keys_url: str, jwks_url: str, logout_url: str, logout_uri: str) -> dict[str, str]:
    """oidc.json as orthweb-oidc writes it for the test deployment, with the given endpoints."""
    return {
        "alb_arn": ALB_ARN,
        "issuer": ISSUER,
        "client_id": CLIENT_ID,
        "alb_keys_url": alb_keys_url,
        "jwks_url": jwks_url,
        "logout_url": logout_url,
        "logout_uri": logout_uri,
        "session_cookie": SESSION_COOKIE,
    }


# The test's own frame around the fragments: the access log's fields the real nginx.conf would
# carry in cognito mode (the person as the user), a server on loopback, and the proxied location.
_FRAME = """load_module {module};
{user}
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {dir}/cache/client_temp;
  proxy_temp_path {dir}/cache/proxy_temp;
  fastcgi_temp_path {dir}/cache/fastcgi_temp;
  uwsgi_temp_path {dir}/cache/uwsgi_temp;
  scgi_temp_path {dir}/cache/scgi_temp;
  log_format orthweb escape=json '{{"user":"$orthweb_person","role":"$orthweb_role","oidc":"$orthweb_oidc",'
    '"method":"$request_method","path":"$uri","status":$status}}';
  access_log {dir}/access.log orthweb;
  proxy_buffering off;
  proxy_http_version 1.1;
{http}
  server {{
    listen 127.0.0.1:{port};
{server}
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $host;
      proxy_set_header Connection "";
{proxy}
    }}
  }}
}}
"""


def render_fragment(name: str) -> str:
    """``userdata/app/<name>`` as the host of a Cognito deployment gets it (its values filled,
    render-time includes expanded)."""
    values = settings_values(Settings(**COGNITO_TEST_SETTINGS))
    return render_text((USERDATA_DIR / "app" / name).read_text(encoding="utf-8"), values)


class VerifyingNginx:
    """Debian's nginx with the three cognito fragments, orthweb-oidc.js, ``config`` as oidc.json and
    roles.map for :data:`ROLE_PASSWORDS`, on 127.0.0.1:``port`` in front of ``upstream_port``.
    The fragments are used as the host renders them; only the key cache's directory (a tmpfs in
    the container) moves into ``workdir``."""

    def __init__(self, workdir: Path, *, port: int, upstream_port: int, config: Mapping[str, str]) -> None:
        self.dir = workdir
        self.port = port
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        self._proc: subprocess.Popen[bytes] | None = None
        (workdir / "oidc").mkdir(parents=True)
        (workdir / "cache").mkdir()
        (workdir / "oidc" / "oidc.json").write_text(json.dumps(config))
        roles = "".join(f'{role} "{role_authorization(role)}";\n' for role in ROLE_PASSWORDS)
        (workdir / "secrets").mkdir(exist_ok=True)
        (workdir / "secrets" / "roles.map").write_text(roles)
        shutil.copy(USERDATA_DIR / "app" / "orthweb-oidc.js", workdir / "orthweb-oidc.js")

        def indent(text: str, by: str) -> str:
            return "\n".join(by + line for line in text.replace("/var/cache/nginx/", f"{workdir}/cache/").splitlines())

        (workdir / "nginx.conf").write_text(
            _FRAME.format(
                module=NGINX_JS_MODULE,
                # A root master would run its workers as nobody, who cannot enter the test's 0700
                # directories; the host's workers run as the image's nginx user.
                user="user root;" if os.geteuid() == 0 else "",
                dir=workdir,
                port=port,
                upstream=upstream_port,
                http=indent(render_fragment("nginx-cognito-http.conf"), "  "),
                server=indent(render_fragment("nginx-cognito.conf"), "    "),
                proxy=indent(render_fragment("nginx-cognito-proxy.conf"), "      "),
            )
        )

    def command(self, *args: str) -> list[str]:
        # -p and -c in workdir, started from elsewhere: relative paths resolve as on the host.
        nginx = shutil.which("nginx") or "nginx"
        return [nginx, "-p", f"{self.dir}/", "-c", str(self.dir / "nginx.conf"), "-e", str(self.error_log), *args]

    def check(self) -> str:
        """``nginx -t`` on the configuration; its output."""
        run = subprocess.run(self.command("-t"), capture_output=True, text=True, check=False, cwd="/")
        if run.returncode != 0:
            raise ProcessError(f"nginx -t failed:\n{run.stderr}")
        return run.stderr

    def __enter__(self) -> VerifyingNginx:
        self.check()
        self._proc = subprocess.Popen([*self.command("-g", "daemon off;")], cwd="/")
        wait_until("nginx", lambda: port_open(self.port), log=self.error_log, proc=self._proc, timeout=20)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self._proc)

    def access_entries(self) -> list[dict[str, Any]]:
        """The access log's entries so far (only whole lines)."""
        text = self.access_log.read_text() if self.access_log.exists() else ""
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def error_tail(self) -> str:
        return log_tail(self.error_log)


@contextmanager
def serving(
    workdir: Path, ports: tuple[int, int, int], alb: AlbSigner, pool: PoolSigner
) -> Iterator[tuple[VerifyingNginx, KeyEndpoints, Upstream]]:
    """The key endpoints, the upstream and nginx, on ``ports`` (nginx, upstream, keys); all stopped after."""
    nginx_port, upstream_port, keys_port = ports
    with KeyEndpoints(keys_port, alb, pool) as keys, Upstream(upstream_port) as upstream:
        config = oidc_config(
            alb_keys_url=keys.alb_keys_url,
            jwks_url=keys.jwks_url,
            logout_url="https://orthweb-test.auth.eu-west-1.amazoncognito.com/logout",
            logout_uri="https://orthweb.example.org/",
        )
        with VerifyingNginx(workdir, port=nginx_port, upstream_port=upstream_port, config=config) as nginx:
            yield nginx, keys, upstream
