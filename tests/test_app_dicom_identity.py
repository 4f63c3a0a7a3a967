"""DICOM identity tied to certificates, through the real nginx and Orthanc in their containers:
a peer that names its certificate subject is served only to a verified certificate of exactly
that subject, from inside its own network (orthweb.bootstrap.dicom_sources). Three peers share one
network (HERE/32): CT01 and MR01, each bound to its certificate, and LAB, bound to none; WS is
alone in another (PEER_4/32). A pynetdicom client calls over DICOM TLS from those addresses
(this machine's CLIENT_ADDRESSES on the project network) with certificates of the peers' CA.
The rendered map alone, and the stream configuration run by a local nginx, are
tests/test_dicom_identity.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orthweb.settings import Settings
from orthweb_dev.containers import CLIENT_ADDRESSES, ContainerHost, containers_for_test
from orthweb_dev.dicom import dicom_ae, log_mark, refused_at_association, study_find
from orthweb_dev.pki import Issued, issue, make_ca
from orthweb_dev.proc import wait_until

pytestmark = pytest.mark.app

HERE, _, _, PEER_4 = CLIENT_ADDRESSES
NGINX_DICOM = 11112
ORG = "Example Hospital"
SUBJECTS = {"CT01": f"CN=ct01.example.org,O={ORG}", "MR01": f"CN=mr01.example.org,O={ORG}"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    """The peers' CA and a client certificate each for CT01, MR01 and a device the settings do not name."""
    directory: Path = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "peers")
    return {
        "ca": ca,
        "CT01": issue(ca, "ct01", cn="ct01.example.org", usage="clientAuth", organization=ORG),
        "MR01": issue(ca, "mr01", cn="mr01.example.org", usage="clientAuth", organization=ORG),
        "unnamed": issue(ca, "lab", cn="lab.example.org", usage="clientAuth", organization=ORG),
    }


@pytest.fixture(scope="module")
def app(certs: dict[str, Issued]) -> Iterator[ContainerHost]:
    settings = Settings(
        dicom_client_ca=certs["ca"].pem,
        dicom_peers=[
            {"aet": "CT01", "cidr": f"{HERE}/32", "permissions": ["find"], "certificate_subject": SUBJECTS["CT01"]},
            {"aet": "MR01", "cidr": f"{HERE}/32", "permissions": ["find"], "certificate_subject": SUBJECTS["MR01"]},
            {"aet": "LAB", "cidr": f"{HERE}/32", "permissions": ["find"]},
            {"aet": "WS", "cidr": f"{PEER_4}/32", "permissions": ["find"]},
        ],
    )  # fmt: skip
    with containers_for_test(settings, client_addresses=CLIENT_ADDRESSES) as host:
        yield host


def call(app: ContainerHost, aet: str, cert: Issued, source: str = HERE) -> Any:
    """An association through nginx's DICOM TLS listener as ``aet`` from ``source``, presenting ``cert``."""
    ctx = app.tls_context()
    ctx.load_cert_chain(cert.cert, cert.key)
    ae = dicom_ae(find=True, aet=aet)
    return ae.associate(
        app.nginx_address(), NGINX_DICOM, ae_title="ORTHANC", tls_args=(ctx, "localhost"), bind_address=(source, 0)
    )


def served(app: ContainerHost, aet: str, cert: Issued, source: str = HERE) -> dict[str, Any]:
    """Associate, C-FIND successfully and release: nginx's log line for the connection."""
    mark = len(app.dicom_entries())
    assoc = call(app, aet, cert, source)
    assert assoc.is_established, (aet, cert.cert.name, source)
    statuses, _ = study_find(assoc)
    assoc.release()
    assert statuses[-1] == 0, (aet, statuses)
    wait_until("nginx's DICOM log line", lambda: len(app.dicom_entries()) > mark, timeout=10)
    return app.dicom_entries()[mark]


def refused(app: ContainerHost, aet: str, cert: Issued, source: str = HERE) -> None:
    """Orthanc itself rejects ``aet`` on this connection (nginx let it through, from the wrong address)."""
    mark = log_mark(app)
    refused_at_association(app, call(app, aet, cert, source), mark, aet=aet)


def hosts(app: ContainerHost) -> dict[str, str]:
    return {aet: m["Host"] for aet, m in json.loads(app.rendered["orthanc.json"])["DicomModalities"].items()}


def test_each_certificate_gets_in_as_its_own_peer(app: ContainerHost, certs: dict[str, Issued]) -> None:
    for aet in ("CT01", "MR01"):
        entry = served(app, aet, certs[aet])
        # The log says whose certificate it was and which source nginx chose: the peer's own.
        assert (entry["client_cert"], entry["client_dn"]) == ("SUCCESS", SUBJECTS[aet])
        assert (entry["network"], entry["source"]) == (f"{HERE}/32", hosts(app)[aet])


def test_a_certificate_cannot_speak_as_another_peer_of_its_network(
    app: ContainerHost, certs: dict[str, Issued]
) -> None:
    """CT01's certificate, from CT01's own network, calling as MR01 (or as LAB, whose network it
    shares): refused by Orthanc, since nginx connects from CT01's address. And the other way round."""
    refused(app, "MR01", certs["CT01"])
    refused(app, "LAB", certs["CT01"])
    refused(app, "CT01", certs["MR01"])


def test_a_certificate_that_names_no_peer_speaks_only_as_its_networks_other_peers(
    app: ContainerHost, certs: dict[str, Issued]
) -> None:
    entry = served(app, "LAB", certs["unnamed"])
    assert entry["source"] == hosts(app)["LAB"] not in (hosts(app)["CT01"], hosts(app)["MR01"])
    refused(app, "CT01", certs["unnamed"])
    refused(app, "MR01", certs["unnamed"])


def test_a_certificate_never_selects_its_peer_outside_the_peers_network(
    app: ContainerHost, certs: dict[str, Issued]
) -> None:
    """CT01's certificate from WS's network: not CT01 there, only what that network may be."""
    refused(app, "CT01", certs["CT01"], source=PEER_4)
    entry = served(app, "WS", certs["CT01"], source=PEER_4)
    assert (entry["network"], entry["source"]) == (f"{PEER_4}/32", hosts(app)["WS"])
