"""The host's certificate and RDS CA steps, run for real with openssl and curl on loopback:
SANs, EKU, key size, SHA-256 and at most 825 days; kept on a second run, replaced when it nears
expiry or no longer names the site; host facts read through IMDSv2."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orthweb.bootstrap import USERDATA_DIR
from orthweb_dev.proc import stop_process, wait_until
from orthweb_dev.testing import require

BIN = USERDATA_DIR / "bin"
PUBLIC_DNS = "ec2-203-0-113-10.compute-1.amazonaws.com"
PRIVATE_DNS = "ip-10-64-1-10.ec2.internal"
FACTS = {
    "ORTHWEB_PUBLIC_HOSTNAME": PUBLIC_DNS,
    "ORTHWEB_LOCAL_HOSTNAME": PRIVATE_DNS,
    "ORTHWEB_PUBLIC_IPV4": "203.0.113.10",
    "ORTHWEB_LOCAL_IPV4": "10.64.1.10",
}


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env_file = tmp_path / "orthweb.env"
    env_file.write_text("ORTHWEB_REGION=us-east-1\nORTHWEB_SITE_NAME=\n")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ORTHWEB_ENV_FILE": str(env_file),
        "ORTHWEB_LIB": str(USERDATA_DIR / "lib"),
        "ORTHWEB_ETC": str(tmp_path / "etc"),
        "ORTHWEB_IMDS_URL": "http://127.0.0.1:9",  # nothing listens: facts come from the environment
        **extra,
    }


def run(script: str, env: dict[str, str]) -> list[str]:
    proc = subprocess.run([str(BIN / script)], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.split()


def load(tmp_path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((tmp_path / "etc" / "tls" / "server.crt").read_bytes())


@pytest.fixture(autouse=True)
def _tools() -> None:
    require("openssl", "openssl")
    require("curl", "curl")


def test_certificate_names_the_host_for_server_auth_only(tmp_path: Path) -> None:
    assert run("orthweb-cert.sh", base_env(tmp_path, **FACTS)) == ["server.crt"]
    cert = load(tmp_path)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == PUBLIC_DNS  # the whole name, host label included
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [PUBLIC_DNS, PRIVATE_DNS]
    assert san.get_values_for_type(x509.IPAddress) == [ip_address("203.0.113.10"), ip_address("10.64.1.10")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    key = cert.public_key()
    assert (isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048) or (
        isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    )
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=825)
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=30)
    tls = tmp_path / "etc" / "tls"
    assert oct((tls / "server.key").stat().st_mode & 0o777) == "0o400"
    assert sorted(p.name for p in tls.iterdir()) == ["server.crt", "server.key"]


def test_second_run_keeps_the_certificate(tmp_path: Path) -> None:
    env = base_env(tmp_path, **FACTS)
    run("orthweb-cert.sh", env)
    before = (tmp_path / "etc" / "tls" / "server.crt").read_bytes()
    key_before = (tmp_path / "etc" / "tls" / "server.key").read_bytes()
    assert run("orthweb-cert.sh", env) == []
    assert (tmp_path / "etc" / "tls" / "server.crt").read_bytes() == before
    assert (tmp_path / "etc" / "tls" / "server.key").read_bytes() == key_before


def test_a_certificate_expiring_within_30_days_is_replaced(tmp_path: Path) -> None:
    tls = tmp_path / "etc" / "tls"
    tls.mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "20", "-subj", f"/CN={PUBLIC_DNS}",
         "-addext", f"subjectAltName=DNS:{PUBLIC_DNS}", "-keyout", str(tls / "server.key"),
         "-out", str(tls / "server.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    assert run("orthweb-cert.sh", base_env(tmp_path, **FACTS)) == ["server.crt"]
    assert load(tmp_path).not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)


def test_site_name_is_the_subject_and_a_new_site_name_means_a_new_certificate(tmp_path: Path) -> None:
    run("orthweb-cert.sh", base_env(tmp_path, **FACTS))
    env = base_env(tmp_path, **FACTS)
    Path(env["ORTHWEB_ENV_FILE"]).write_text("ORTHWEB_REGION=us-east-1\nORTHWEB_SITE_NAME=pacs.example.org\n")
    assert run("orthweb-cert.sh", env) == ["server.crt"]
    cert = load(tmp_path)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pacs.example.org"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["pacs.example.org", PUBLIC_DNS, PRIVATE_DNS]


# --- IMDSv2 --------------------------------------------------------------------------------------

TOKEN = "test-token"
METADATA = {
    "public-hostname": PUBLIC_DNS,
    "local-hostname": PRIVATE_DNS,
    "public-ipv4": "203.0.113.10",
    "local-ipv4": "10.64.1.10",
}


class _Imds(http.server.BaseHTTPRequestHandler):
    """IMDSv2 as EC2 serves it: a PUT for a token, then GETs that must carry it."""

    def do_PUT(self) -> None:
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self._reply(200 if ok else 400, TOKEN if ok else "")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self._reply(401, "")
            return
        value = METADATA.get(self.path.removeprefix("/latest/meta-data/"))
        self._reply(200 if value else 404, value or "")

    def _reply(self, code: int, body: str) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_host_facts_come_from_imdsv2(tmp_path: Path, imds: str) -> None:
    env = base_env(tmp_path)
    env["ORTHWEB_IMDS_URL"] = imds
    run("orthweb-cert.sh", env)
    names = load(tmp_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [PUBLIC_DNS, PRIVATE_DNS]
    assert ip_address("10.64.1.10") in names.get_values_for_type(x509.IPAddress)


# --- RDS CA bundle -------------------------------------------------------------------------------


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A loopback HTTPS server for files in a temp dir; yields (base URL, docroot, its CA file)."""
    docroot = tmp_path / "www"
    docroot.mkdir()
    crt, key = tmp_path / "srv.crt", tmp_path / "srv.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(docroot), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", docroot, crt
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_rds_ca_bundle_is_downloaded_kept_and_survives_a_failed_download(
    tmp_path: Path, https_server: tuple[str, Path, Path]
) -> None:
    url, docroot, server_ca = https_server
    (docroot / "bundle.pem").write_bytes(server_ca.read_bytes())  # any valid PEM certificate will do
    env = base_env(tmp_path, ORTHWEB_RDS_CA_URL=f"{url}/bundle.pem", CURL_CA_BUNDLE=str(server_ca))
    assert run("orthweb-rds-ca.sh", env) == ["rds-ca.pem"]
    dest = tmp_path / "etc" / "tls" / "rds-ca.pem"
    assert dest.read_bytes() == server_ca.read_bytes()
    assert run("orthweb-rds-ca.sh", env) == []  # unchanged

    (docroot / "bundle.pem").write_text("<html>not a certificate</html>")
    assert run("orthweb-rds-ca.sh", env) == []  # a bad download keeps the present bundle
    assert dest.read_bytes() == server_ca.read_bytes()


def test_rds_ca_step_fails_when_there_is_no_bundle_at_all(tmp_path: Path) -> None:
    env = base_env(tmp_path, ORTHWEB_RDS_CA_URL="https://127.0.0.1:9/bundle.pem")
    env.update(ORTHWEB_RETRY_ATTEMPTS="2", ORTHWEB_RETRY_DELAY="1")
    proc = subprocess.run([str(BIN / "orthweb-rds-ca.sh")], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "download the RDS CA bundle from https://127.0.0.1:9/bundle.pem: failed 2 times" in proc.stderr
    assert "giving up" in proc.stderr
    assert not (tmp_path / "etc" / "tls" / "rds-ca.pem").exists()


def test_first_rds_ca_download_is_retried_until_the_bundle_is_served(
    tmp_path: Path, https_server: tuple[str, Path, Path]
) -> None:
    url, docroot, server_ca = https_server  # serves nothing yet: 404
    env = base_env(tmp_path, ORTHWEB_RDS_CA_URL=f"{url}/bundle.pem", CURL_CA_BUNDLE=str(server_ca))
    env.update(ORTHWEB_RETRY_ATTEMPTS="30", ORTHWEB_RETRY_DELAY="1", ORTHWEB_RETRY_MAX_DELAY="1")
    log = tmp_path / "rds-ca.log"
    with log.open("w") as err:
        step = subprocess.Popen([str(BIN / "orthweb-rds-ca.sh")], env=env, stdout=subprocess.PIPE, stderr=err)
    try:
        wait_until("a first failed download", lambda: "failed (attempt 1 of 30" in log.read_text(), proc=step)
        (docroot / "bundle.pem").write_bytes(server_ca.read_bytes())
        out, _ = step.communicate(timeout=60)
    finally:
        stop_process(step)
    assert step.returncode == 0, log.read_text()
    assert out.split() == [b"rds-ca.pem"]
    assert "succeeded at attempt" in log.read_text()
    assert (tmp_path / "etc" / "tls" / "rds-ca.pem").read_bytes() == server_ca.read_bytes()
