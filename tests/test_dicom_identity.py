"""DICOM identity (orthweb.bootstrap.dicom_sources): the address nginx connects to Orthanc from,
which is the only Host of the AETs a caller may use, chosen from the caller's network and, for a
peer that names a certificate subject, from the verified certificate. First the rendered map read
as nginx reads it, then the rendered stream configuration run by a real nginx with real
certificates (Orthanc's side, DicomCheckModalityHost, is tests/test_app_dicom_identity.py)."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orthweb.bootstrap import dicom_modalities, render_app
from orthweb.settings import Settings
from orthweb_dev import pki
from orthweb_dev.proc import free_port, wait_until
from orthweb_dev.testing import NGINX_STREAM_MODULE, require

CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
MR01_DN = "CN=mr01.example.org,O=Example Hospital (Main)"
SETTINGS = Settings(
    dicom_client_ca=CA,
    dicom_peers=[
        {"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store"]},
        {"aet": "MR01", "cidr": "203.0.113.0/24", "permissions": ["find"], "certificate_subject": MR01_DN},
        {"aet": "US-3", "cidr": "203.0.113.64/26", "permissions": ["store"]},
        {"aet": "WS-2", "cidr": "198.51.100.0/28", "permissions": ["store"]},
    ],
)


def _unquote(key: str) -> str:
    """An nginx quoted string as nginx reads it (the escapes a rendered key may hold)."""
    return re.sub(r"\\([\"'\\])", r"\1", key[1:-1]) if key.startswith('"') else key


def choose(nginx: str, verify: str, dn: str, network: str) -> str:
    """The source ``map $dicom_peer_source`` picks, evaluated as nginx does: its regexes in order,
    else the default (the network's address, from the network map)."""
    block = nginx[nginx.index('map "$ssl_client_verify|$ssl_client_s_dn|$dicom_network"') :].split("\n  }", maxsplit=1)[
        0
    ]
    entries = re.findall(r'^\s*("[^"]*"|\S+) (\S+);$', block, flags=re.M)
    key = f"{verify}|{dn}|{network}"
    for raw, source in entries:
        pattern = _unquote(raw)
        if pattern.startswith("~") and re.search(pattern[1:], key):
            return str(source)
    networks_block = nginx[nginx.index("map $dicom_network $dicom_network_source {") :].split("}", maxsplit=1)[0]
    sources = dict(re.findall(r"^\s*(\S+) (\S+);$", networks_block, flags=re.M))
    assert dict(entries)["default"] == "$dicom_network_source"
    return str(sources.get(network, sources["default"]))


def test_a_certificate_selects_its_peer_only_when_verified_exact_and_from_inside_its_network() -> None:
    nginx = render_app(SETTINGS)["nginx.conf"]
    hosts = {aet: m["Host"] for aet, m in dicom_modalities(SETTINGS).items()}
    # MR01's certificate from its network, or from a network listed inside it: MR01's own address.
    assert choose(nginx, "SUCCESS", MR01_DN, "203.0.113.0/24") == hosts["MR01"]
    assert choose(nginx, "SUCCESS", MR01_DN, "203.0.113.64/26") == hosts["MR01"]
    # From a network outside MR01's: that network's address (WS-2's), never MR01's.
    assert choose(nginx, "SUCCESS", MR01_DN, "198.51.100.0/28") == hosts["WS-2"]
    assert choose(nginx, "SUCCESS", MR01_DN, "none") not in hosts.values()
    # Not verified, or not exactly MR01's subject: the network's address, where MR01 is not accepted.
    for verify, dn in [
        ("FAILED:certificate has expired", MR01_DN),
        ("NONE", ""),
        ("SUCCESS", MR01_DN.upper()),
        ("SUCCESS", MR01_DN + ",C=US"),
        ("SUCCESS", "OU=x," + MR01_DN),
        ("SUCCESS", "CN=mr01.example.org,O=Example Hospital Main"),
        ("SUCCESS", MR01_DN + "|203.0.113.0/24"),
    ]:
        assert choose(nginx, verify, dn, "203.0.113.0/24") == hosts["CT01"], (verify, dn)
    assert hosts["MR01"] not in {hosts["CT01"], hosts["US-3"], hosts["WS-2"]}


def test_without_certificate_subjects_the_stream_map_selects_networks_only() -> None:
    plain = Settings(dicom_peers=[{"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["find"]}])
    nginx = render_app(plain)["nginx.conf"]
    assert "~^SUCCESS" not in nginx
    assert "# No peer names a certificate subject." in nginx
    assert choose(nginx, "SUCCESS", "CN=anyone", "203.0.113.0/24") == dicom_modalities(plain)["CT01"]["Host"]


# --- a real nginx --------------------------------------------------------------------------------

# The callers' networks: this machine's loopback, as two peer networks.
NEAR, FAR = "127.0.0.0/16", "127.3.0.0/16"
NEAR_CALLER, FAR_CALLER = "127.0.0.1", "127.3.0.1"
ORG = "O=Example Hospital"


class Backend:
    """Stands in for Orthanc's DICOM port: records the address each connection comes from."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sources: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            self.sources.append(addr[0])
            conn.close()


def _stream_only(nginx_conf: str, workdir: Path, port: int, backend: int) -> str:
    """The rendered ``stream`` block, runnable here: on ``port``, to ``backend``, logging to files."""
    stream = nginx_conf[nginx_conf.index("\nstream {") :]
    stream = stream.replace("listen 11112 ssl;", f"listen 127.0.0.1:{port} ssl;")
    stream = stream.replace("proxy_pass 127.0.0.1:4242;", f"proxy_pass 127.0.0.1:{backend};")
    stream = stream.replace("/etc/nginx/tls/", f"{workdir}/tls/")
    stream = stream.replace("access_log /dev/stdout dicom;", f"access_log {workdir}/access.log dicom;")
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return (
        f"load_module {NGINX_STREAM_MODULE};\n{user}pid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log info;\nevents {{}}\n{stream}"
    )


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pki.Issued]:
    directory = tmp_path_factory.mktemp("pki")
    peers, rogue = pki.make_ca(directory, "peers"), pki.make_ca(directory, "rogue")
    org = "Example Hospital"
    return {
        "ca": peers,
        "server": pki.issue(peers, "server", cn="pacs.example.org", usage="serverAuth"),
        "ct01": pki.issue(peers, "ct01", cn="ct01.example.org", usage="clientAuth", organization=org),
        "mr01": pki.issue(peers, "mr01", cn="mr01.example.org", usage="clientAuth", organization=org),
        "nobody": pki.issue(peers, "nobody", cn="nobody.example.org", usage="clientAuth", organization=org),
        "rogue-ct01": pki.issue(rogue, "rogue-ct01", cn="ct01.example.org", usage="clientAuth", organization=org),
    }


@pytest.fixture(scope="module")
def running_nginx(
    tmp_path_factory: pytest.TempPathFactory, pki_dir: dict[str, pki.Issued]
) -> Iterator[tuple[int, Backend, dict[str, str], Path]]:
    nginx = require("nginx", "nginx-light")
    if not NGINX_STREAM_MODULE.exists():
        pytest.fail(f"{NGINX_STREAM_MODULE} is missing: install the Debian package libnginx-mod-stream")
    settings = Settings(
        dicom_client_ca=pki_dir["ca"].pem,
        dicom_peers=[
            {"aet": "CT01", "cidr": NEAR, "permissions": ["find"], "certificate_subject": f"CN=ct01.example.org,{ORG}"},
            {"aet": "MR01", "cidr": NEAR, "permissions": ["find"], "certificate_subject": f"CN=mr01.example.org,{ORG}"},
            {"aet": "LAB", "cidr": NEAR, "permissions": ["store"]},
            {"aet": "WS", "cidr": FAR, "permissions": ["store"]},
        ],
    )
    workdir = tmp_path_factory.mktemp("nginx")
    (workdir / "tls").mkdir()
    (workdir / "tls" / "server.crt").write_text(pki_dir["server"].cert.read_text())
    (workdir / "tls" / "server.key").write_text(pki_dir["server"].key.read_text())
    (workdir / "tls" / "dicom-client-ca.pem").write_text(pki_dir["ca"].pem)
    backend, port = Backend(), free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(_stream_only(render_app(settings)["nginx.conf"], workdir, port, backend.port))
    proc = subprocess.Popen(
        [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until("nginx listening", lambda: _listening(port), proc=proc, log=workdir / "error.log", timeout=10)
        hosts = {aet: str(m["Host"]) for aet, m in dicom_modalities(settings).items()}
        yield port, backend, hosts, workdir
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        backend.sock.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _call(port: int, backend: Backend, source: str, cert: pki.Issued) -> str | None:
    """Connect over TLS from ``source`` with ``cert``: the address nginx then connected to the
    backend from, or None when it did not connect (the handshake refused)."""
    before = len(backend.sources)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(cert.cert, cert.key)
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                tls.recv(1)  # TLS 1.3: the server's verdict on the certificate arrives after the handshake
        except (ssl.SSLError, ConnectionError):
            pass
    deadline = time.monotonic() + 3
    while len(backend.sources) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    return backend.sources[before] if len(backend.sources) > before else None


def test_real_nginx_binds_each_certificate_to_its_peer_within_its_network(
    running_nginx: tuple[int, Backend, dict[str, str], Path], pki_dir: dict[str, pki.Issued]
) -> None:
    port, backend, hosts, workdir = running_nginx
    # CT01's and MR01's certificates, from their shared network: each its own peer's address.
    assert _call(port, backend, NEAR_CALLER, pki_dir["ct01"]) == hosts["CT01"]
    assert _call(port, backend, NEAR_CALLER, pki_dir["mr01"]) == hosts["MR01"]
    assert hosts["CT01"] != hosts["MR01"]
    # A certificate of the CA that names no peer: the network's address (LAB's, no subject).
    assert _call(port, backend, NEAR_CALLER, pki_dir["nobody"]) == hosts["LAB"]
    # CT01's certificate from another listed network: that network's address, never CT01's.
    assert _call(port, backend, FAR_CALLER, pki_dir["ct01"]) == hosts["WS"]
    # CT01's subject from another CA: refused in the handshake, nothing reaches Orthanc.
    assert _call(port, backend, NEAR_CALLER, pki_dir["rogue-ct01"]) is None

    # The stream log names the network and the source chosen, with the verified subject.
    def verified() -> list[tuple[str, str, str]]:
        return [(x["client_dn"], x["network"], x["source"]) for x in _log(workdir) if x["client_cert"] == "SUCCESS"]

    wait_until("the four verified sessions logged", lambda: len(verified()) >= 4, timeout=5)
    lines = verified()
    assert ("CN=ct01.example.org,O=Example Hospital", NEAR, hosts["CT01"]) in lines
    assert ("CN=ct01.example.org,O=Example Hospital", FAR, hosts["WS"]) in lines
    assert ("CN=nobody.example.org,O=Example Hospital", NEAR, hosts["LAB"]) in lines


def _log(workdir: Path) -> list[dict[str, str]]:
    path = workdir / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
