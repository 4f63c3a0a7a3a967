"""Throwaway certificate authorities and certificates (openssl) for tests and benchmarks: DICOM
peers' client certificates, a peer's own TLS server, the internal-hop TLS variant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orthweb_dev.proc import run


@dataclass(frozen=True)
class Issued:
    """A key and certificate (PEM files), and the CA that signed it."""

    key: Path
    cert: Path
    ca: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()


def make_ca(directory: Path, name: str) -> Issued:
    """A self-signed CA, RSA 2048, valid 2 days: ``directory/NAME-ca.{key,crt}``."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}-ca.key", directory / f"{name}-ca.crt"
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "2", "-nodes",
         "-subj", f"/CN=Orthweb test {name} CA", "-keyout", str(key), "-out", str(cert),
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])  # fmt: skip
    return Issued(key=key, cert=cert, ca=cert)


def issue(
    ca: Issued, name: str, *, cn: str, usage: str, san: str | None = None, organization: str | None = None
) -> Issued:
    """A certificate signed by ``ca`` beside it: ``NAME.{key,crt}``; ``usage`` is the extended
    key usage (``clientAuth``, ``serverAuth``), ``san`` the subjectAltName (``IP:127.0.0.1``).
    Its subject is ``CN=cn``, or with ``organization`` ``CN=cn,O=organization`` as nginx prints it
    (``$ssl_client_s_dn``, RFC 2253)."""
    directory = ca.cert.parent
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else "")
    )
    subject = (f"/O={organization}" if organization else "") + f"/CN={cn}"
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
         "-keyout", str(key), "-out", str(csr)])  # fmt: skip
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert)])  # fmt: skip
    key.chmod(0o600)
    return Issued(key=key, cert=cert, ca=ca.cert)
