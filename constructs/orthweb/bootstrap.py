"""Renders the files in ``userdata/`` into the host's cloud-init user data.

Templates are real files (cloud-config, shell, compose, nginx, Orthanc JSON, systemd units).
Python only fills values and expands three kinds of line, each alone on its line:

- ``{{ name }}`` anywhere in a line is replaced by a value; alone on a line, a multi-line value
  is indented like the line.
- ``{{ include path }}`` is replaced by that file (relative to ``userdata/``), rendered
  recursively and indented like the line. ``{{ include path if flag }}`` and
  ``{{ include path unless flag }}`` include it only when the value ``flag`` is ``true`` (or
  ``false``); otherwise the line disappears.
- ``{{ content path }}`` (in a cloud-config ``write_files`` entry) becomes that entry's
  ``content``: a literal block holding the rendered file.
- In shell scripts an include is written as a comment, ``# {{ include path if flag }}``, so the
  script stays valid shell as it is in the repository (shellcheck reads it); it renders the same.
  So is a multi-line value alone on its line (``# {{ login_env }}`` in orthweb.env).

So scripts stay files that shellcheck and friends can read.

The host gets its files in two parts (docs/host.md, "Host files"):

- **The bundle**: every script, unit and application file (:data:`BUNDLE`), rendered from the
  settings alone into one tar archive with deterministic bytes (:func:`bundle_archive`). The stack
  uploads it to the deployment's host-files bucket (:class:`orthweb.hostfiles.HostFiles`). The
  files keep their comments: an operator reading them on the host reads what the repository says.
- **The user data** (``cloud-config.yaml``): the deployment facts (``orthweb.env``, the only file
  with Terraform references), the bundle's bucket, key, version and SHA-256, and the fetch step that
  verifies and unpacks it. Its files reach the host without their full-line comments
  (:func:`strip_comments`); the host construct hands it to Terraform's ``base64gzip()``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from orthweb import capacity
from orthweb.settings import MONITOR_IDENTITY, Settings, systemd_calendar
from orthweb.thresholds import HEALTH_METRIC, HEALTH_NAMESPACE

USERDATA_DIR = Path(__file__).resolve().parents[2] / "userdata"
CLOUD_CONFIG = "cloud-config.yaml"
# EC2 refuses user data above 16 KiB (before base64), compressed or not.
USER_DATA_LIMIT = 16 * 1024
# What Orthweb holds its own user data to, gzipped: the host's files travel in the bundle.
USER_DATA_BUDGET = 4 * 1024
# The bundle's key in the host-files bucket. One key, versioned: each host's user data names the
# version (and the SHA-256) it runs, so a newer upload never changes a running host's files.
BUNDLE_KEY = "orthweb-host.tar"
# Version of Docker's compose plugin the host installs (from Docker's signed RPM repository).
COMPOSE_PLUGIN_VERSION = "2.36.2"
# The application files the host runs, in userdata/app/, by the name they have on the host.
APP_FILES = (
    "docker-compose.yml",
    "orthanc.json",
    "nginx.conf",
    "orthanc-roles.lua",
    "orthanc-audit.lua",
    "orthweb-audit.js",
)
# Inside nginx's network namespace (which Orthanc shares): Orthanc's ports, on loopback only.
ORTHANC_HTTP_PORT = 8042
ORTHANC_DICOM_PORT = 4242
# C-MOVE relays: nginx listens on 127.0.0.1:(base + n) for the n-th peer granted move, and opens
# DICOM TLS to that peer's host and port. Orthanc's modality entry for the peer points there.
MOVE_RELAY_BASE_PORT = 11200
# The loopback addresses nginx connects to Orthanc from, one per DICOM identity (dicom_sources).
# All of 127.0.0.0/8 is on the loopback interface: nothing to set up.
PEER_SOURCE_NETWORK = ipaddress.IPv4Network("127.1.0.0/16")
# Where nginx connects from when no peer's network holds the caller: no modality is there, so
# Orthanc refuses every AET (nginx's allow list refuses such callers first).
NO_PEER_SOURCE = "127.0.0.1"
# A peer without move has no destination; Orthanc requires a port, and nothing listens on this
# one in the namespace (the discard port), so Orthanc can send nothing to such a peer.
NO_DESTINATION_PORT = 9

# Orthanc's own PostgreSQL role, which the host creates and keeps owning the Orthanc database and
# nothing more (userdata/bin/orthweb-db-role.sh). Not the RDS master user (``orthanc``, which a
# rename would replace the database to change): Orthanc never holds the master login.
DB_APP_ROLE = "orthanc_app"

_VALUE_RE = re.compile(r"\{\{ ([a-z_][a-z0-9_]*) \}\}")
_DIRECTIVE_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?:# )?\{\{ (?P<kind>include|content) (?P<path>[\w./@-]+)"
    r"(?: (?P<cond>if|unless) (?P<flag>[a-z_][a-z0-9_]*))? \}\}[ \t]*$"
)
_BLOCK_VALUE_RE = re.compile(r"^(?P<indent>[ \t]*)(?:# )?\{\{ (?P<name>[a-z_][a-z0-9_]*) \}\}[ \t]*$")


class TemplateError(RuntimeError):
    """A template names a value or file the renderer does not have (a bug, not a user error)."""


@dataclass(frozen=True, kw_only=True)
class HostFacts:
    """Deployment facts the host needs at boot. In the stack these are Terraform references."""

    region: str
    db_address: str
    db_port: str
    db_name: str
    db_secret_arn: str
    admin_secret_arn: str
    # With ``storage = "s3"``: the image bucket and the role that may read and write it.
    images_bucket: str = ""
    images_role_arn: str = ""
    # With ``hosts`` >= 2: the shared certificate's secret, the load balancer's DNS name, and the
    # site name every host's certificate names (domain_name, site_name or the balancer's name).
    tls_secret_arn: str = ""
    balancer_dns: str = ""
    site_name: str = ""
    # The host-files bucket and the version of the bundle (BUNDLE_KEY) this host runs.
    bundle_bucket: str = ""
    bundle_version: str = ""
    # With ``login = "cognito"`` (orthweb.front_door): the balancer whose signed headers nginx
    # trusts, the user pool and app client whose tokens it verifies, and the hosted login's domain.
    alb_arn: str = ""
    user_pool_id: str = ""
    user_pool_client_id: str = ""
    cognito_domain: str = ""


@dataclass(frozen=True)
class DicomSources:
    """Where nginx connects to Orthanc from, by network and by peer (see :func:`dicom_sources`)."""

    # Each network DICOM may come from (a peer's cidr, or a deprecated dicom_cidrs block) -> the
    # address of a caller there who presents no peer's certificate.
    networks: dict[str, str]
    # Each peer's AET -> its only address: its network's, or with certificate_subject its own.
    peers: dict[str, str]
    # Each peer with certificate_subject's AET -> the listed networks inside its cidr, where a
    # caller presenting its certificate is that peer.
    certificate_networks: dict[str, list[str]]


def dicom_sources(settings: Settings) -> DicomSources:
    """DICOM identity: which AETs a caller may use, decided by the address nginx connects to Orthanc from.

    Orthanc sees every DICOM caller at the loopback address nginx binds to (``proxy_bind``) and,
    with ``DicomCheckModalityHost``, accepts an AET only from its modality's ``Host``
    (:func:`dicom_modalities`). So the address nginx picks *is* what the caller may speak as:

    1. **Network.** ``geo $dicom_network`` names the most specific listed network that holds the
       caller (``none`` when no network does: nginx's allow list refuses those first). Each network
       has an address of its own (``$dicom_network_source``), in the peers' order; peers that share
       a network share it, and the deprecated ``dicom_cidrs`` share the only peer's. A peer without
       ``certificate_subject`` has its network's address as Host: any caller of that network that
       knows its AET may use it.
    2. **Certificate.** A peer with ``certificate_subject`` (settings require ``dicom_client_ca``)
       has an address of its own. ``map $dicom_peer_source`` picks it only when nginx verified the
       client certificate (``$ssl_client_verify`` SUCCESS), its subject (``$ssl_client_s_dn``) is
       exactly the peer's (an anchored, case-sensitive regex), and the caller's network is the
       peer's cidr or a listed network inside it, so the caller is inside the peer's cidr (listed
       networks nest or are disjoint, and geo names the most specific). Any other connection
       keeps its network's address, where only peers without a subject are accepted: a
       certificate issued for CT01 cannot speak as MR01, even from the same network, and a
       certificate never selects a peer whose network does not hold the caller.

    The plain DICOM listener (``plain_dicom_in_vpc``) has no certificate, so it reaches only
    peers without a subject. The stream access log names the network and the source chosen.
    """
    networks: dict[str, str] = {}
    for peer in settings.dicom_peers:
        networks.setdefault(peer.cidr, str(PEER_SOURCE_NETWORK[len(networks) + 1]))
    if settings.dicom_peers:
        only_peer = networks[settings.dicom_peers[0].cidr]
        for cidr in settings.dicom_cidrs:
            networks.setdefault(cidr, only_peer)
    taken = len(set(networks.values()))
    peers: dict[str, str] = {}
    certificate_networks: dict[str, list[str]] = {}
    for peer in settings.dicom_peers:
        if peer.certificate_subject is None:
            peers[peer.aet] = networks[peer.cidr]
            continue
        taken += 1
        peers[peer.aet] = str(PEER_SOURCE_NETWORK[taken])
        inside = [c for c in networks if ipaddress.IPv4Network(c).subnet_of(peer.network)]
        certificate_networks[peer.aet] = inside
    return DicomSources(networks=networks, peers=peers, certificate_networks=certificate_networks)


def dicom_modalities(settings: Settings) -> dict[str, dict[str, object]]:
    """Orthanc's ``DicomModalities``: one entry per peer, keyed by AET, with exactly its permissions,
    and as Host the only address its AET is accepted from (:func:`dicom_sources`)."""
    sources = dicom_sources(settings)
    out: dict[str, dict[str, object]] = {}
    relay = MOVE_RELAY_BASE_PORT
    for peer in settings.dicom_peers:
        port = NO_DESTINATION_PORT
        if "move" in peer.permissions:
            port, relay = relay, relay + 1
        out[peer.aet] = {
            "AET": peer.aet,
            "Host": sources.peers[peer.aet],
            "Port": port,
            "AllowEcho": True,
            "AllowStore": "store" in peer.permissions,
            "AllowFind": "find" in peer.permissions,
            "AllowFindWorklist": False,
            "AllowGet": "get" in peer.permissions,
            "AllowMove": "move" in peer.permissions,
            "AllowStorageCommitment": False,
        }
    return out


def _nginx_dicom_allow(settings: Settings) -> str:
    """The DICOM TLS listener's address filter: the peers' networks (and ``dicom_cidrs``), nothing else."""
    return "\n".join([*(f"allow {cidr};" for cidr in settings.dicom_ingress_cidrs), "deny all;"])


def _nginx_dicom_networks(sources: DicomSources) -> str:
    """The ``geo`` entries naming each DICOM network (the network itself is the value)."""
    return "\n".join(f"{cidr} {cidr};" for cidr in sources.networks)


def _nginx_dicom_network_sources(sources: DicomSources) -> str:
    """The ``map`` entries from each DICOM network to its address."""
    return "\n".join(f"{cidr} {source};" for cidr, source in sources.networks.items())


def _regex_literal(text: str) -> str:
    """``text`` matched literally in an nginx (PCRE) regex. The settings keep certificate subjects
    and networks to characters where escaping these is enough, and none ends an nginx string."""
    return re.sub(r"([.()+?*\[\]^$|{}\\])", r"\\\1", text)


def _nginx_dicom_certificates(settings: Settings, sources: DicomSources) -> str:
    """The ``map`` entries giving a verified certificate of a peer's subject, from a network inside
    the peer's cidr, the peer's own address (``"$ssl_client_verify|$ssl_client_s_dn|$dicom_network"``)."""
    lines = []
    for peer in settings.dicom_peers:
        if peer.certificate_subject is None:
            continue
        subject = _regex_literal(peer.certificate_subject)
        for cidr in sources.certificate_networks[peer.aet]:
            lines.append(f'"~^SUCCESS\\|{subject}\\|{_regex_literal(cidr)}$" {sources.peers[peer.aet]};')
    return "\n".join(lines) or "# No peer names a certificate subject."


def _nginx_move_relays(settings: Settings, sources: DicomSources) -> str:
    """One loopback-only stream server per peer granted move (see ``MOVE_RELAY_BASE_PORT``), on
    the Host of its modality entry."""
    blocks = []
    peers = [p for p in settings.dicom_peers if "move" in p.permissions]
    for n, peer in enumerate(peers):
        blocks.append(
            f"# C-MOVE to {peer.aet}: Orthanc connects here; nginx opens DICOM TLS to the peer.\n"
            "server {\n"
            f"  listen {sources.peers[peer.aet]}:{MOVE_RELAY_BASE_PORT + n};\n"
            f"  proxy_pass {peer.host}:{peer.port};\n"
            "  proxy_ssl on;\n"
            "  proxy_ssl_protocols TLSv1.2 TLSv1.3;\n"
            "  proxy_ssl_verify on;\n"
            "  proxy_ssl_trusted_certificate /etc/nginx/tls/dicom-client-ca.pem;\n"
            f"  proxy_ssl_name {peer.tls_name};\n"
            "  proxy_ssl_server_name on;\n"
            "  proxy_timeout 3600s;\n"
            "}"
        )
    return "\n".join(blocks) or "# No peer is granted move: no C-MOVE relay."


# login = "cognito": Orthanc's logins are one identity per role, which nginx logs in as once it
# has verified the person and their role (orthweb-oidc writes their passwords on the host).
ROLE_IDENTITIES = {"orthweb-role-admin": "admin", "orthweb-role-uploader": "uploader", "orthweb-role-viewer": "viewer"}
# login = "cognito": nginx's health port for the host's own checks, published on its loopback only.
COGNITO_PROBE_PORT = 8081


def move_peers(settings: Settings) -> dict[str, dict[str, str]]:
    """orthanc-move.py's peers: each peer granted move, by AET in upper case, with the name of its
    modality entry (its AET) and its network. Each may move only to itself."""
    return {
        p.aet.upper(): {"modality": p.aet, "network": p.cidr} for p in settings.dicom_peers if "move" in p.permissions
    }


def _audit_peer_networks(settings: Settings, sources: DicomSources) -> str:
    """The audit's Lua table (orthanc-audit.lua): each loopback address nginx connects to Orthanc
    from, to the peer network(s) behind it, so a DICOM audit line names the network, not 127.1.x.y.
    A peer with ``certificate_subject`` has an address of its own: behind it, the peer's cidr."""
    networks: dict[str, list[str]] = {}
    for cidr, source in sources.networks.items():
        networks.setdefault(source, []).append(cidr)
    for peer in settings.dicom_peers:
        networks.setdefault(sources.peers[peer.aet], [peer.cidr])
    return "\n".join(f'["{source}"] = "{" ".join(cidrs)}",' for source, cidrs in networks.items())


# Both logins: every health check logs in to Orthanc as the monitoring identity, whose role allows
# GET /changes alone (orthanc-roles.lua); each host makes its password (userdata/lib/common.sh).
MONITOR_ROLE = "monitor"


def _lua_roles(settings: Settings) -> str:
    logins = {MONITOR_IDENTITY: MONITOR_ROLE, **(ROLE_IDENTITIES if settings.cognito else settings.web_users)}
    return "\n".join(f'["{name}"] = "{role}",' for name, role in logins.items())


# How far past the patch window's start a host's patch run may begin (systemd time spans).
PATCH_SPREAD_ONE_HOST = "10min"
PATCH_SPREAD_SEVERAL_HOSTS = "1h"


def login_env(settings: Settings, facts: HostFacts) -> str:
    """orthweb.env's login lines: ``ORTHWEB_LOGIN=basic`` alone with Basic logins (the other
    ``ORTHWEB_*`` login variables are then unset, read as empty), all six with Cognito. One line in
    Basic mode keeps its user data, and so its hosts, as they were."""
    lines = [f"ORTHWEB_LOGIN={settings.login}"]
    if settings.cognito:
        lines += [
            f"ORTHWEB_ALB_ARN={facts.alb_arn}",
            f"ORTHWEB_USER_POOL_ID={facts.user_pool_id}",
            f"ORTHWEB_USER_POOL_CLIENT_ID={facts.user_pool_client_id}",
            f"ORTHWEB_COGNITO_DOMAIN={facts.cognito_domain}",
            f"ORTHWEB_SITE_URL=https://{settings.domain_name}",
        ]
    return "\n".join(lines)


def settings_values(settings: Settings) -> dict[str, str]:
    """The values that come from settings alone: enough for the application files."""
    sources = dicom_sources(settings)
    movers = move_peers(settings)
    return {
        "name_prefix": settings.name_prefix,
        # Who checks the web login (orthweb.front_door with "cognito"), and the flag for includes.
        "login": settings.login,
        "login_cognito": json.dumps(settings.cognito),
        # nginx's access log: the user (the name a Basic login sent, or the verified person) and
        # the login's outcome (Basic: ok, none or wrong; Cognito: ok or the refusal's reason).
        "log_user": "$orthweb_person" if settings.cognito else "$remote_user",
        "log_login": "$orthweb_oidc" if settings.cognito else "$orthweb_login",
        "cognito_probe_port": str(COGNITO_PROBE_PORT),
        "region": settings.region,
        "log_group_prefix": f"/{settings.name_prefix}",
        "vpc_cidr": settings.vpc_cidr,
        "orthanc_aet": settings.orthanc_aet,
        "site_name": settings.site_name or "",
        "orthanc_image": settings.orthanc_image,
        "nginx_image": settings.nginx_image,
        "https": json.dumps(settings.https),
        "web_port": "443" if settings.https else "80",
        "plain_dicom_in_vpc": json.dumps(settings.plain_dicom_in_vpc),
        "dicom_client_ca": json.dumps(settings.dicom_client_ca is not None),
        "dicom_client_ca_pem": (settings.dicom_client_ca or "").strip(),
        "compose_plugin_version": COMPOSE_PLUGIN_VERSION,
        "dicom_modalities": json.dumps(dicom_modalities(settings)),
        "dicom_allow": _nginx_dicom_allow(settings),
        "dicom_networks": _nginx_dicom_networks(sources),
        "dicom_network_sources": _nginx_dicom_network_sources(sources),
        "dicom_certificates": _nginx_dicom_certificates(settings, sources),
        "no_peer_source": NO_PEER_SOURCE,
        "move_relays": _nginx_move_relays(settings, sources),
        "web_user_roles": _lua_roles(settings),
        "audit_peer_networks": _audit_peer_networks(settings, sources),
        # Orthweb's C-MOVE service (orthanc-move.py), when a peer may move.
        "dicom_move": json.dumps(bool(movers)),
        "move_peers": json.dumps(movers),
        "web_user_names": " ".join(settings.web_users),
        "monitor_identity": MONITOR_IDENTITY,
        "stone_enabled": json.dumps("stone" in settings.viewers),
        "ohif_enabled": json.dumps("ohif" in settings.viewers),
        "cors_origins_map": cors_origins_map(settings.web_cors_origins),
        # Where images live, and how many hosts share the database (docs/scaling.md).
        "images_in_bucket": json.dumps(settings.storage == "s3"),
        "postgresql_storage": json.dumps(settings.storage == "postgresql"),
        "multi_host": json.dumps(settings.multi_host),
        "host_config": json.dumps(settings.storage == "s3" or settings.multi_host),
        "index_connections": str(capacity.INDEX_CONNECTIONS),
        "alarms": json.dumps(settings.alarm_email is not None),
        "health_namespace": HEALTH_NAMESPACE,
        "health_metric": HEALTH_METRIC,
        "patching": json.dumps(settings.patch_schedule != "off"),
        "patch_calendar": "" if settings.patch_schedule == "off" else systemd_calendar(settings.patch_schedule),
        "patch_reboot": json.dumps(settings.patch_reboot),
        # One host patches within minutes of the window's start. Hosts behind the load balancer
        # each take a fixed offset in an hour, drawn from the machine ID (systemd's
        # FixedRandomDelay), so they do not patch at the same moment (docs/operations.md, Patching).
        "patch_random_delay": PATCH_SPREAD_SEVERAL_HOSTS if settings.multi_host else PATCH_SPREAD_ONE_HOST,
        "patch_fixed_delay": json.dumps(settings.multi_host),
        "patch_release": settings.patch_release,
    }


def cors_origins_map(origins: list[str]) -> str:
    """The nginx ``map`` entries that let ``origins`` call DICOMweb: a DICOMweb request from a
    listed Origin maps to that origin (echoed back in Access-Control-Allow-Origin), anything else
    to the map's empty default. The settings allow only plain ``https://host[:port]`` origins."""
    return "\n".join(f'"Origin {origin}" "{origin}";' for origin in origins)


def template_values(settings: Settings, facts: HostFacts) -> dict[str, str]:
    """Every ``{{ name }}`` a template may use, as text."""
    return {
        **settings_values(settings),
        "region": facts.region,
        "db_address": facts.db_address,
        "db_port": facts.db_port,
        "db_name": facts.db_name,
        "db_role": DB_APP_ROLE,
        "db_secret_arn": facts.db_secret_arn,
        "admin_secret_arn": facts.admin_secret_arn,
        "images_bucket": facts.images_bucket,
        "images_role_arn": facts.images_role_arn,
        "tls_secret_arn": facts.tls_secret_arn,
        "balancer_dns": facts.balancer_dns,
        "site_name": facts.site_name or settings.site_name or "",
        "bundle_bucket": facts.bundle_bucket,
        "bundle_version": facts.bundle_version,
        "login_env": login_env(settings, facts),
        "alb_arn": facts.alb_arn,
        "user_pool_id": facts.user_pool_id,
        "user_pool_client_id": facts.user_pool_client_id,
        "cognito_domain": facts.cognito_domain,
        "bundle_key": BUNDLE_KEY,
        # The bundle is rendered from the settings alone, so its hash is known here, at synth.
        "bundle_sha256": sha256_hex(bundle_archive(bundle_files(settings))),
    }


def _value(values: Mapping[str, str], name: str) -> str:
    if name not in values:
        raise TemplateError(f"template uses unknown value {{{{ {name} }}}}")
    return values[name]


# How a full-line comment starts, by file type. JSON has none; orthweb.env and the cloud-config
# fragments are included as they are.
_COMMENT_MARKS = {".sh": "#", ".service": "#", ".timer": "#", ".yml": "#", ".conf": "#", ".lua": "--"}
# The start of a shell here-document (`<<WORD`, `<<-'WORD'`), not a here-string (`<<<`).
_HEREDOC_RE = re.compile(r"(?<!<)<<-?\s*(['\"]?)(?P<word>[A-Za-z_][A-Za-z0-9_]*)\1(?!<)")


def strip_comments(text: str, suffix: str) -> str:
    """``text`` without its full-line comments, for a file of type ``suffix``. Kept: a script's
    ``#!`` line, shellcheck directives, and every line of a shell here-document."""
    mark = _COMMENT_MARKS.get(suffix)
    if mark is None:
        return text
    out: list[str] = []
    heredoc: str | None = None
    for number, line in enumerate(text.split("\n")):
        stripped = line.strip()
        if heredoc is not None:
            out.append(line)
            if stripped == heredoc:
                heredoc = None
            continue
        if (
            stripped.startswith(mark)
            and not stripped.startswith("# shellcheck")
            and not (number == 0 and stripped.startswith("#!"))
        ):
            continue
        if suffix == ".sh" and (m := _HEREDOC_RE.search(line)):
            heredoc = m["word"]
        out.append(line)
    return "\n".join(out)


def _indent(body: str, indent: str) -> list[str]:
    return [indent + line if line else "" for line in body.rstrip("\n").split("\n")]


def render_text(text: str, values: Mapping[str, str], *, base: Path = USERDATA_DIR, _depth: int = 0) -> str:
    """Fill values and expand ``include``/``content`` lines in ``text`` (see the module docstring)."""
    if _depth > 4:
        raise TemplateError("includes nest deeper than 4 levels")
    out: list[str] = []
    for line in text.split("\n"):
        m = _DIRECTIVE_RE.match(line)
        if m:
            if m["cond"]:
                flag = _value(values, m["flag"])
                if flag not in ("true", "false"):
                    raise TemplateError(f"value {m['flag']!r} used as a condition is {flag!r}, not true or false")
                if (flag == "true") != (m["cond"] == "if"):
                    continue
            path = base / m["path"]
            if not path.is_file():
                raise TemplateError(f"template includes missing file userdata/{m['path']}")
            body = render_text(path.read_text(encoding="utf-8"), values, base=base, _depth=_depth + 1)
            indent = m["indent"]
            if m["kind"] == "include":
                out += _indent(body, indent)
            else:
                body = strip_comments(body, path.suffix)
                out += [f"{indent}content: |", *_indent(body, indent + "  ")]
            continue
        b = _BLOCK_VALUE_RE.match(line)
        if b:
            out += _indent(_value(values, b["name"]), b["indent"])
            continue
        out.append(_VALUE_RE.sub(lambda v: _value(values, v[1]), line))
    return "\n".join(out)


def render_file(name: str, values: Mapping[str, str]) -> str:
    """Render ``userdata/<name>``."""
    return render_text((USERDATA_DIR / name).read_text(encoding="utf-8"), values)


def render_app(settings: Settings) -> dict[str, str]:
    """The application files the host runs (compose, Orthanc, nginx), by their name on the host."""
    values = settings_values(settings)
    return {name: render_file(f"app/{name}", values) for name in APP_FILES}


@dataclass(frozen=True, kw_only=True)
class HostFile:
    """A file as the host holds it: its path, mode and text."""

    path: str
    mode: int
    text: str


@dataclass(frozen=True)
class BundleEntry:
    """One file of the bundle: its path on the host, its mode, its template in ``userdata/``, and
    the value (``true`` or ``false``) that decides whether the host has it at all."""

    path: str
    mode: int
    template: str
    when: str | None = None


_SCRIPT = 0o700
_READABLE = 0o644
_UNITS = "/etc/systemd/system"
# Every file the host gets from the bundle; the user data carries only orthweb.env and the fetch
# step (cloud-config.yaml).
BUNDLE: tuple[BundleEntry, ...] = (
    BundleEntry("/usr/local/lib/orthweb/common.sh", _READABLE, "lib/common.sh"),
    *(
        BundleEntry(f"/usr/local/sbin/orthweb-{step}", _SCRIPT, f"bin/orthweb-{step}.sh")
        for step in ("bootstrap", "secrets", "db-role", "cert", "rds-ca", "archives", "refresh", "patch")
    ),
    *(BundleEntry(f"/etc/orthweb/{name}", _READABLE, f"app/{name}") for name in APP_FILES),
    *(
        BundleEntry(f"{_UNITS}/{unit}", _READABLE, f"systemd/{unit}")
        for unit in (
            "orthweb.service",
            "orthweb-refresh.service",
            "orthweb-refresh.timer",
            "orthweb-patch.service",
            "etc-orthweb-secrets.mount",
        )
    ),
    BundleEntry(f"{_UNITS}/orthweb-patch.timer", _READABLE, "systemd/orthweb-patch.timer", "patching"),
    BundleEntry("/usr/local/sbin/orthweb-probe", _SCRIPT, "bin/orthweb-probe.sh", "alarms"),
    BundleEntry(f"{_UNITS}/orthweb-probe.service", _READABLE, "systemd/orthweb-probe.service", "alarms"),
    BundleEntry(f"{_UNITS}/orthweb-probe.timer", _READABLE, "systemd/orthweb-probe.timer", "alarms"),
    BundleEntry("/etc/orthweb/tls/dicom-client-ca.pem", _READABLE, "tls/dicom-client-ca.pem", "dicom_client_ca"),
    BundleEntry("/etc/orthweb/orthweb-oidc.js", _READABLE, "app/orthweb-oidc.js", "login_cognito"),
    BundleEntry("/etc/orthweb/orthanc-move.py", _READABLE, "app/orthanc-move.py", "dicom_move"),
    BundleEntry("/usr/local/sbin/orthweb-oidc", _SCRIPT, "bin/orthweb-oidc.sh", "login_cognito"),
    BundleEntry("/usr/local/sbin/orthweb-host-config", _SCRIPT, "bin/orthweb-host-config.sh", "host_config"),
    BundleEntry("/usr/local/sbin/orthweb-images", _SCRIPT, "bin/orthweb-images.sh", "images_in_bucket"),
    BundleEntry("/usr/local/sbin/orthweb-shared-cert", _SCRIPT, "bin/orthweb-shared-cert.sh", "multi_host"),
    BundleEntry("/usr/local/sbin/orthweb-health", _SCRIPT, "bin/orthweb-health.sh", "multi_host"),
    BundleEntry(f"{_UNITS}/orthweb-health.socket", _READABLE, "systemd/orthweb-health.socket", "multi_host"),
    BundleEntry(f"{_UNITS}/orthweb-health@.service", _READABLE, "systemd/orthweb-health@.service", "multi_host"),
)


def bundle_files(settings: Settings) -> list[HostFile]:
    """The bundle's files for ``settings``, by path. Rendered from the settings alone (a template
    that used a deployment fact would fail here): the same settings give the same files."""
    values = settings_values(settings)
    files = []
    for entry in BUNDLE:
        if entry.when is not None and _value(values, entry.when) != "true":
            continue
        text = render_file(entry.template, values).rstrip("\n") + "\n"
        files.append(HostFile(path=entry.path, mode=entry.mode, text=text))
    return sorted(files, key=lambda f: f.path)


def bundle_archive(files: list[HostFile]) -> bytes:
    """``files`` as one uncompressed POSIX (ustar) tar archive whose bytes depend on the files
    only: entries sorted by path, owned by root (0:0), modes as given, mtime 0 (the host's tar
    stamps them with the time it unpacks them). Not gzipped: compressed bytes depend on the local
    zlib build (zlib-ng on some distributions), and other bytes on a colleague's machine would be
    a new object version, so new user data and a replaced host; S3 stores the archive as it is."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for file in sorted(files, key=lambda f: f.path):
            data = file.text.encode()
            info = tarfile.TarInfo(file.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), file.mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def terraform_escape(text: str) -> str:
    """Make literal text safe inside a Terraform string: ``${`` and ``%{`` start templates there."""
    return text.replace("${", "$${").replace("%{", "%%{")


def render_user_data(settings: Settings, facts: HostFacts, *, for_terraform: bool = False) -> str:
    """The host's cloud-config: the deployment facts, where the bundle is and its SHA-256, and the
    step that fetches, verifies and unpacks it (the bundle itself is :func:`bundle_archive`).

    With ``for_terraform`` the facts may be Terraform references: the files are escaped so shell
    ``${VAR}`` stays literal, and only the facts are left for Terraform to fill at apply time.
    """
    values = template_values(settings, facts)
    if not for_terraform:
        return render_file(CLOUD_CONFIG, values)
    fact_names = [f.name for f in fields(HostFacts)]
    # Every value, with each fact (and whatever is made of facts) as a marker Terraform's escaping leaves alone.
    marked = template_values(settings, HostFacts(**{name: f"\x00{name}\x00" for name in fact_names}))
    text = terraform_escape(render_file(CLOUD_CONFIG, marked))
    for name in fact_names:
        text = text.replace(f"\x00{name}\x00", values[name])
    return text


def compressed_size(user_data: str) -> int:
    """About what EC2 receives once Terraform's ``base64gzip()`` packed the user data (before base64)."""
    return len(gzip.compress(user_data.encode(), mtime=0))


def user_data_size(user_data: str) -> int:
    """Size in bytes of the user data as EC2 receives it (before base64)."""
    return len(user_data.encode())
