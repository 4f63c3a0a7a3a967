"""Typed, validated deployment settings.

Every setting has a secure default (:mod:`orthweb.defaults`). A deployment overrides them in
``cdktf.json`` (``context.orthweb``) and, winning over that, in ``ORTHWEB_<NAME>`` environment
variables. The fields are typed (pydantic, strict: JSON ``"2"`` is not the number 2), each with
its description (the README table) and its check. Bad input raises :class:`SettingsError` with
one message naming the setting, where it came from, the value and what is allowed; ``main.py``
prints it and exits before anything is synthesized.
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from orthweb import capacity, defaults

ENV_PREFIX = "ORTHWEB_"
CONTEXT_KEY = "orthweb"

# Docker's default bridge network on the host: a VPC overlapping it makes the host unable
# to reach part of its own VPC (the database, the endpoints) from inside containers.
DOCKER_BRIDGE_CIDR = ipaddress.IPv4Network("172.17.0.0/16")

# Instance families the stack knows, by CPU architecture (the AMI is chosen from it).
ARM64_FAMILIES = frozenset(
    {"t4g", "m6g", "m6gd", "m7g", "m7gd", "m8g", "c6g", "c6gd", "c6gn", "c7g", "c7gd", "c8g"}
    | {"r6g", "r6gd", "r7g", "r7gd", "r8g"}
)
X86_64_FAMILIES = frozenset(
    {"t3", "t3a", "m5", "m5a", "m6i", "m6a", "m7i", "m7i-flex", "m7a", "c5", "c5a", "c6i"}
    | {"c6a", "c7i", "c7a", "r5", "r5a", "r6i", "r6a", "r7i", "r7a"}
)

# RDS for PostgreSQL majors this stack is tested with (parameter group family "postgresNN").
POSTGRES_MAJORS = ("14", "15", "16", "17")

# Retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS: tuple[int, ...] = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731)
LOG_RETENTION_DAYS += (1096, 1827, 2192, 2557, 2922, 3288, 3653)

INTERFACE_ENDPOINTS = ("ssm", "ssmmessages", "ec2messages", "kms", "logs", "monitoring")
# What a DICOM peer may be granted besides C-ECHO (always allowed to a listed peer).
DICOM_PERMISSIONS = ("store", "find", "get", "move")
# Web roles, from most to least powerful (the Lua filter in userdata/app/orthanc-roles.lua).
WEB_ROLES = ("admin", "uploader", "viewer")
# The health checks' own Orthanc login (role "monitor": GET /changes alone), made on each host; no
# web user may take its name (docs/host.md, "Health checks").
MONITOR_IDENTITY = "orthweb-monitor"
# Who checks the web login: nginx (Basic, passwords in the admin secret) or a Cognito user pool at
# an Application Load Balancer (MFA required, a trusted certificate: orthweb.front_door).
LOGINS = ("basic", "cognito")
# The longest login session Orthweb allows, in hours (a clinical shift).
MAX_SESSION_HOURS = 12
# Words Cognito refuses in a hosted-domain prefix (derived from name_prefix in login=cognito).
COGNITO_DOMAIN_RESERVED = ("aws", "amazon", "cognito")
# Address ranges plain HTTP may be opened to (https=false): RFC 1918 and carrier-grade NAT
# (RFC 6598, used by many VPNs). Not ipaddress's is_private: it calls 0.0.0.0/0 private.
PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
VIEWERS = ("stone", "ohif")
# Where Orthanc keeps the images (the index is always in RDS PostgreSQL).
STORAGE_CHOICES = ("postgresql", "s3")
MAX_HOSTS = 10
STATE_BACKENDS = ("local", "s3")

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
_INSTANCE_RE = re.compile(r"^(?P<family>[a-z][a-z0-9-]*)\.(?P<size>[a-z0-9]+)$")
_DB_CLASS_RE = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
_ENGINE_RE = re.compile(r"^(?P<major>[0-9]{2})(\.[0-9]{1,2})?$")
_KEY_NAME_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
_AET_RE = re.compile(r"^[A-Z0-9_]{1,16}$")
# A peer's AE title: what modalities use (DICOM allows any printable text but backslash), kept to
# characters that are safe in JSON, nginx and log lines. Orthanc compares AETs case-insensitively.
_PEER_AET_RE = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")
# A certificate subject as nginx's $ssl_client_s_dn prints it (RFC 2253, most specific first):
# TYPE=VALUE attributes joined by ',' (or '+' within one RDN). Values are printable ASCII that
# OpenSSL prints unescaped, so no quote, backslash, brace, ';', '$', '|', ',' or '+' inside a value,
# nor a space at either end: what can be written here is exactly what nginx prints, and it cannot
# break the nginx config it is rendered into.
_DN_VALUE = r"[A-Za-z0-9._@()/:'=-]([A-Za-z0-9 ._@()/:'=-]*[A-Za-z0-9._@()/:'=-])?"
_DN_ATTRIBUTE = rf"[A-Za-z][A-Za-z0-9]*={_DN_VALUE}"
_SUBJECT_RE = re.compile(rf"^{_DN_ATTRIBUTE}([,+]{_DN_ATTRIBUTE})*$")
MAX_SUBJECT_LENGTH = 512
# A peer granted a read (or C-MOVE) from a network wider than this must prove who it is with a
# certificate subject: behind a wide network (a NAT, a whole site) anyone who knows its AET could
# otherwise read the archive.
WIDEST_READ_NETWORK = 16
DICOM_READS = ("find", "get", "move")
# A web user name: safe in a Basic login (no ':'), a file name, nginx and Lua.
_USER_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
_IMAGE_RE = re.compile(r"^[a-z0-9./_-]+:[A-Za-z0-9._-]+(@sha256:[0-9a-f]{64})?$")
_TAG_KEY_RE = re.compile(r"^[\w .:/=+@-]{1,128}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ORIGIN_RE = re.compile(r"^https://(?P<host>[^/:]+)(:(?P<port>[0-9]{1,5}))?$")
# Route 53 documents a hosted zone id only as at most 32 characters; AWS's begin with Z, the emulator's need not.
_ZONE_ID_RE = re.compile(r"^[A-Z0-9]{1,32}$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_SNAPSHOT_RE = re.compile(
    r"^(arn:aws[a-z-]*:rds:[a-z]{2}(-gov)?-[a-z]+-[0-9]:[0-9]{12}:snapshot:)?(rds:)?[A-Za-z]([A-Za-z0-9]|-(?!-)){0,254}$"
)
_DAY = "(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
# `[DAYS ]HH:MM`: days as systemd writes them (Sun, Mon..Fri, Sat,Sun), the time in UTC.
# An Amazon Linux 2023 release version, as `rpm -q system-release` and the release notes name it.
_AL2023_RELEASE_RE = re.compile(r"^(latest|2023\.[0-9]+\.[0-9]{8})$")
_PATCH_RE = re.compile(rf"^(?P<days>{_DAY}((\.\.|,){_DAY})* )?(?P<time>([01][0-9]|2[0-3]):[0-5][0-9])$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


# Where each value being validated came from (cdktf.json or a variable), for the error message.
_SOURCES: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("sources", default=None)


class SettingsError(ValueError):
    """A setting a user gave is not valid; the message says which, and what is allowed."""


class _Refusal(ValueError):
    """Raised inside validation: its text is what the user reads (``allowed`` text, or a whole
    message for a refusal that involves several settings)."""


def _check(problem: Callable[[Any], str | None]) -> AfterValidator:
    """A field validator: ``problem(value)`` returns what is allowed when ``value`` is not, else None.
    ``None`` (an unset optional setting) is never checked."""

    def validate(value: Any) -> Any:
        text = problem(value) if value is not None else None
        if text:
            raise _Refusal(text)
        return value

    return AfterValidator(validate)


def _range(lo: int, hi: int) -> AfterValidator:
    return _check(lambda v: None if lo <= v <= hi else f"an integer from {lo} to {hi}")


def _pattern(rx: re.Pattern[str], allowed: str) -> AfterValidator:
    return _check(lambda v: None if rx.match(v) else allowed)


def _private(cidr: str) -> bool:
    net = _ipv4_cidr(cidr)
    return net is not None and any(net.subnet_of(r) for r in PRIVATE_RANGES)


def _ipv4_cidr(value: str) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


def _cidr_list(v: list[str]) -> str | None:
    for item in v:
        if _ipv4_cidr(item) is None:
            return f"IPv4 CIDR blocks such as 203.0.113.0/24 with no host bits set ({item!r} is not)"
    return None


def _vpc_cidr(v: str) -> str | None:
    net = _ipv4_cidr(v)
    allowed = "an IPv4 CIDR block from /16 to /24 that does not overlap Docker's bridge 172.17.0.0/16"
    if net is None or not 16 <= net.prefixlen <= 24 or net.overlaps(DOCKER_BRIDGE_CIDR):
        return allowed
    return None


def _instance_type(v: str) -> str | None:
    m = _INSTANCE_RE.match(v)
    if m and m["family"] in ARM64_FAMILIES | X86_64_FAMILIES:
        return None
    families = ", ".join(sorted(ARM64_FAMILIES | X86_64_FAMILIES))
    return f"an EC2 instance type FAMILY.SIZE of a known family ({families})"


def _engine_version(v: str) -> str | None:
    m = _ENGINE_RE.match(v)
    if m and m["major"] in POSTGRES_MAJORS:
        return None
    return f"a PostgreSQL major version ({', '.join(POSTGRES_MAJORS)}), optionally with a minor (17.4)"


def _retention(v: int) -> str | None:
    return None if v in LOG_RETENTION_DAYS else f"one of CloudWatch's periods {LOG_RETENTION_DAYS}"


def _endpoints(v: list[str]) -> str | None:
    bad = [e for e in v if e not in INTERFACE_ENDPOINTS]
    return f"a list drawn from {', '.join(INTERFACE_ENDPOINTS)}" if bad or len(set(v)) != len(v) else None


def _viewers(v: list[str]) -> str | None:
    bad = [e for e in v if e not in VIEWERS]
    return f"a list drawn from {', '.join(VIEWERS)}, each at most once" if bad or len(set(v)) != len(v) else None


def _cors_origin(origin: str) -> bool:
    """Whether ``origin`` is exactly what a browser sends in ``Origin`` for an https page."""
    m = _ORIGIN_RE.match(origin)
    if not m or not _HOSTNAME_RE.match(m["host"]):
        return False
    return m["port"] is None or (m["port"] != "443" and 1 <= int(m["port"]) <= 65535 and m["port"][0] != "0")


def _cors_origins(v: list[str]) -> str | None:
    if all(_cors_origin(o) for o in v) and len(set(v)) == len(v):
        return None
    return (
        "distinct https origins as a browser sends them, such as https://viewer.example.org or "
        "https://viewer.example.org:8443 (lowercase host, no default port, no path, no trailing slash, no '*')"
    )


# Every resource carries the tags Project and Deployment with these, and an S3 object (the hosts'
# bundle) takes at most 10 tags.
MAX_TAGS = 10


def _tags(v: dict[str, str]) -> str | None:
    for k, val in v.items():
        if not _TAG_KEY_RE.match(k) or k.lower().startswith("aws:") or len(str(val)) > 256:
            return "a map of tag keys (1-128 chars, not starting with 'aws:') to values of at most 256 chars"
    if len({"Project", "Deployment", *v}) > MAX_TAGS:
        return (
            f"at most {MAX_TAGS} tags with Project and Deployment, which Orthweb sets on every resource "
            "(S3 takes at most 10 tags on an object, such as the hosts' bundle)"
        )
    return None


_PEERS_ALLOWED = (
    'a JSON list of peers {"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store", "find"]} '
    f"(permissions from {', '.join(DICOM_PERMISSIONS)}; a peer with move also gives host, port and tls_name; "
    "with dicom_client_ca, certificate_subject binds a peer to its certificate)"
)


class DicomPeer(BaseModel):
    """One DICOM peer: the AE title it calls from, its network, what it may do."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    aet: str
    cidr: str
    permissions: list[str] = Field(default_factory=list)
    # Where Orthanc sends what this peer C-MOVEs (its own DICOM TLS SCP), and the DNS name its
    # certificate carries (nginx verifies it); all three are required with "move", and only then.
    host: str | None = None
    port: int | None = None
    tls_name: str | None = None
    # With dicom_client_ca: the subject DN the peer's certificate carries, exactly as nginx's
    # $ssl_client_s_dn prints it; the peer's AET is then accepted only over that certificate.
    certificate_subject: str | None = None

    @property
    def network(self) -> ipaddress.IPv4Network:
        net = _ipv4_cidr(self.cidr)
        assert net is not None  # validated
        return net


def _peers(v: list[DicomPeer]) -> str | None:
    seen: set[str] = set()
    subjects: set[str] = set()
    for p in v:
        problem = None
        if not _PEER_AET_RE.match(p.aet):
            problem = f"AET {p.aet!r} is not 1-16 of A-Z, a-z, 0-9, '_', '.', '-'"
        elif p.aet.upper() in seen:
            problem = f"AET {p.aet!r} is listed twice (Orthanc compares AETs case-insensitively)"
        elif _ipv4_cidr(p.cidr) is None:
            problem = f"peer {p.aet!r} has cidr {p.cidr!r}, not an IPv4 CIDR block with no host bits set"
        elif bad := [x for x in p.permissions if x not in DICOM_PERMISSIONS]:
            problem = f"peer {p.aet!r} has unknown permission {bad[0]!r}"
        elif len(set(p.permissions)) != len(p.permissions):
            problem = f"peer {p.aet!r} lists a permission twice"
        elif ("move" in p.permissions) != (p.host is not None and p.port is not None and p.tls_name is not None):
            problem = (
                f"peer {p.aet!r}: host, port and tls_name (where C-MOVE sends, and the name in its "
                "certificate) are given exactly when move is granted"
            )
        elif p.tls_name is not None and not _HOSTNAME_RE.match(p.tls_name):
            problem = f"peer {p.aet!r} has tls_name {p.tls_name!r}, not a lowercase DNS name"
        elif p.host is not None and not _host_in(p.host, p.network):
            problem = f"peer {p.aet!r} has host {p.host!r}, not an IPv4 address inside its cidr {p.cidr}"
        elif p.port is not None and not 1 <= p.port <= 65535:
            problem = f"peer {p.aet!r} has port {p.port}, not from 1 to 65535"
        problem = problem or _subject_problem(p, subjects)
        if problem:
            return f"{_PEERS_ALLOWED}; {problem}"
        seen.add(p.aet.upper())
        if p.certificate_subject is not None:
            subjects.add(p.certificate_subject)
    return None


def _subject_problem(p: DicomPeer, taken: set[str]) -> str | None:
    """What is wrong with ``p``'s certificate subject (``taken``: the subjects of the peers before it)."""
    dn = p.certificate_subject
    if dn is None:
        return None
    if len(dn) > MAX_SUBJECT_LENGTH or not _SUBJECT_RE.match(dn):
        return (
            f"peer {p.aet!r} has certificate_subject {dn!r}, not a subject DN as nginx prints it (RFC 2253, such as "
            "CN=ct01.example.org,O=Example Hospital: TYPE=VALUE joined by ',', values of letters, digits, spaces "
            "inside and ._@()/:'=-, no quotes, backslashes, braces or ';')"
        )
    if dn in taken:
        return f"peer {p.aet!r} has certificate_subject {dn!r}, already another peer's"
    return None


def _host_in(host: str, net: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.IPv4Address(host) in net
    except ValueError:
        return False


def _web_users(v: dict[str, str], login: str) -> str | None:
    if login == "cognito":
        allowed = (
            f"with login 'cognito', a JSON object of each person's e-mail address (lower case) to a role "
            f"({', '.join(WEB_ROLES)}), at least one admin, such as "
            '{"ann@example.org": "admin", "bob@example.org": "viewer"}: Cognito sends each an invitation'
        )
    else:
        allowed = (
            f"a JSON object of user name to role ({', '.join(WEB_ROLES)}), names 1-32 of a-z, 0-9, '_', '.', '-' "
            'starting with a letter, at least one admin, such as {"admin": "admin", "ann": "viewer"}'
        )
    for name, role in v.items():
        if login == "cognito" and (not _EMAIL_RE.match(name) or name != name.lower()):
            return f"{allowed}; {name!r} is not a lower-case e-mail address"
        if login != "cognito" and not _USER_RE.match(name):
            return f"{allowed}; {name!r} is not a valid user name"
        if name == MONITOR_IDENTITY:
            return f"{allowed}; {name!r} is the health checks' own login (no web user): choose another name"
        if role not in WEB_ROLES:
            return f"{allowed}; user {name!r} has unknown role {role!r}"
    if "admin" not in v.values():
        return f"{allowed}; no user has the admin role"
    return None


def _web_users_for_login(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    """``web_users`` checked against ``login`` (declared before it): user names with Basic, e-mail
    addresses with Cognito. An invalid ``login`` has its own message; the users are then read as Basic."""
    text = _web_users(value, info.data.get("login", "basic"))
    if text:
        raise _Refusal(text)
    return value


def _ssh_cidr(v: str) -> str | None:
    net = _ipv4_cidr(v)
    if net is None or net.prefixlen < 8:
        return "an IPv4 CIDR block of /8 or narrower (SSH is never opened to the whole internet)"
    return None


def _pem_bundle(v: str) -> str | None:
    return None if "-----BEGIN CERTIFICATE-----" in v else "a PEM bundle of CA certificates"


def _patch_schedule(v: str) -> str | None:
    if v == "off" or _PATCH_RE.match(v):
        return None
    return "`[DAYS ]HH:MM` in UTC, such as 'Sun 03:00', 'Mon..Fri 02:30' or '04:00' (daily), or 'off'"


def systemd_calendar(schedule: str) -> str:
    """The systemd OnCalendar= expression of a ``patch_schedule`` (not 'off')."""
    m = _PATCH_RE.match(schedule)
    if not m:
        raise ValueError(f"not a patch schedule: {schedule!r}")
    days = f"{m['days'].strip()} " if m["days"] else ""
    return f"{days}*-*-* {m['time']}:00 UTC"


_IMAGE = _pattern(_IMAGE_RE, "IMAGE:TAG, optionally @sha256:DIGEST")


class Settings(BaseModel):
    """One deployment's settings. Each field's description is its row in the README table."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name_prefix: Annotated[
        str, _pattern(_PREFIX_RE, "2-20 characters: lowercase letters, digits and '-', starting with a letter")
    ] = Field(
        defaults.NAME_PREFIX,
        description="Prefix of every resource name and the `Deployment` tag, so several deployments fit in one account",
    )
    region: Annotated[str, _pattern(_REGION_RE, "an AWS region name such as eu-west-1")] = Field(
        defaults.REGION, description="AWS region to deploy to"
    )
    vpc_cidr: Annotated[str, _check(_vpc_cidr)] = Field(
        defaults.VPC_CIDR, description="VPC address range; must not overlap Docker's bridge 172.17.0.0/16"
    )
    az_count: Annotated[int, _range(2, 4)] = Field(
        defaults.AZ_COUNT, description="Availability zones to spread public and private subnets over"
    )
    web_cidrs: Annotated[list[str], _check(_cidr_list)] = Field(
        default_factory=lambda: list(defaults.WEB_CIDRS),
        description="CIDRs allowed to reach HTTPS (443); every route needs a login",
    )
    login: Annotated[str, _pattern(re.compile(r"^(basic|cognito)$"), "basic or cognito")] = Field(
        defaults.LOGIN,
        description="Who checks the web login: `basic` (nginx, passwords in the admin secret, the host's "
        "self-signed certificate: trials, the demo, sites reached over a VPN) or `cognito` (for production: "
        "an Application Load Balancer with a trusted certificate and a Cognito login with MFA required; needs "
        "`domain_name` and `hosted_zone_id`)",
    )
    session_hours: Annotated[int, _range(1, MAX_SESSION_HOURS)] = Field(
        defaults.SESSION_HOURS,
        description=f"With `login` `cognito`: hours a login lasts before the person signs in again "
        f"(1-{MAX_SESSION_HOURS})",
    )
    web_users: Annotated[dict[str, str], AfterValidator(_web_users_for_login)] = Field(
        default_factory=lambda: dict(defaults.WEB_USERS),
        description="Web users and their roles (admin, uploader, viewer). With `login` `basic`: user names, each "
        "password generated on the host and kept in the admin secret; with `cognito`: each person's e-mail "
        "address, invited by Cognito (no password passes through Terraform)",
    )
    dicom_peers: Annotated[list[DicomPeer], _check(_peers)] = Field(
        default_factory=list,
        description="DICOM peers: AET, network and permissions (store, find, get, move) of each; "
        "11112 opens to their networks only, and Orthanc serves only these AETs. With `dicom_client_ca`, a "
        "peer's `certificate_subject` (the subject DN as nginx prints it, `CN=ct01.example.org,O=Example Hospital`) "
        "binds its AET to that certificate; a peer granted find, get or move from a network wider than /16 must "
        "name one",
    )
    dicom_cidrs: Annotated[list[str], _check(_cidr_list)] = Field(
        default_factory=lambda: list(defaults.DICOM_CIDRS),
        description="Deprecated (use `dicom_peers`): extra CIDRs from which the only peer of `dicom_peers` "
        "may also call DICOM TLS (11112); with several peers, only networks that are already a peer's",
    )
    instance_type: Annotated[str, _check(_instance_type)] = Field(
        defaults.INSTANCE_TYPE, description="EC2 instance type of the Orthanc host (Graviton by default)"
    )
    root_volume_gb: Annotated[int, _range(8, 1024)] = Field(
        defaults.ROOT_VOLUME_GB, description="Size of the host's encrypted gp3 root volume, in GiB"
    )
    archive_volume_gb: Annotated[int, _range(1, 1024)] = Field(
        defaults.ARCHIVE_VOLUME_GB,
        description="Size of the host's encrypted gp3 volume where Orthanc builds archives and media "
        "(its only use); an archive larger than what is free fails, the service stays up",
    )
    db_instance_class: Annotated[str, _pattern(_DB_CLASS_RE, "an RDS class such as db.t4g.micro")] = Field(
        defaults.DB_INSTANCE_CLASS, description="RDS instance class"
    )
    db_storage_gb: Annotated[int, _range(20, 65536)] = Field(
        defaults.DB_STORAGE_GB, description="RDS gp3 storage, in GiB"
    )
    db_max_storage_gb: Annotated[
        int | None, _check(lambda v: None if v is None or 20 <= v <= 65536 else "an integer from 20 to 65536")
    ] = Field(
        None,
        description=(
            "Ceiling RDS storage autoscaling may grow the database to, in GiB; unset: "
            f"{defaults.DB_STORAGE_AUTOSCALING_FACTOR} x db_storage_gb; equal to db_storage_gb: no autoscaling"
        ),
    )
    db_engine_version: Annotated[str, _check(_engine_version)] = Field(
        defaults.DB_ENGINE_VERSION,
        description="RDS PostgreSQL version (a major pins the major; minors upgrade automatically)",
    )
    db_multi_az: bool = Field(defaults.DB_MULTI_AZ, description="Run RDS with a standby in a second AZ")
    db_backup_days: Annotated[int, _range(7, 35)] = Field(
        defaults.DB_BACKUP_DAYS, description="Days of automated RDS backups"
    )
    db_snapshot_identifier: Annotated[
        str | None,
        _pattern(_SNAPSHOT_RE, "an RDS DB snapshot identifier or ARN, such as rds:orthweb-db-2026-11-27-03-10"),
    ] = Field(
        None,
        description="Create the database from this RDS snapshot (copied under this deployment's key first); "
        "read only when the database is created: restore into a new name_prefix (docs/operations.md)",
    )
    deletion_protection: bool = Field(
        defaults.DELETION_PROTECTION,
        description="Protect the database from deletion and take a final snapshot on destroy; "
        "set false only for throwaway proofs of concept",
    )
    log_retention_days: Annotated[int, _check(_retention)] = Field(
        defaults.LOG_RETENTION_DAYS,
        description="Retention of every log group (containers, database, flow logs), in days",
    )
    alarm_email: Annotated[str | None, _pattern(_EMAIL_RE, "an e-mail address such as pacs-ops@example.org")] = Field(
        None,
        description="E-mail address that receives the alarms (host, application health, database); unset: no alarms",
    )
    patch_schedule: Annotated[str, _check(_patch_schedule)] = Field(
        defaults.PATCH_SCHEDULE,
        description="When the host applies Amazon Linux security updates: `[DAYS ]HH:MM` in UTC "
        "('Sun 03:00', 'Mon..Fri 02:30', '04:00' daily) or 'off'",
    )
    patch_reboot: bool = Field(
        defaults.PATCH_REBOOT,
        description="One host: reboot after patching when the kernel or core libraries changed (a few minutes of "
        "downtime in the patch window); false leaves the reboot to you. Several hosts never reboot in place: "
        "you roll the group (docs/operations.md)",
    )
    patch_release: Annotated[
        str, _pattern(_AL2023_RELEASE_RE, "'latest' or an Amazon Linux 2023 release such as '2023.9.20251117'")
    ] = Field(
        defaults.PATCH_RELEASE,
        description="Amazon Linux release whose security updates the host applies: 'latest', or a release you "
        "have tested such as '2023.9.20251117' (AWS advises a tested release over latest; docs/operations.md)",
    )
    interface_endpoints: Annotated[list[str], _check(_endpoints)] = Field(
        default_factory=lambda: list(defaults.INTERFACE_ENDPOINTS),
        description=f"Extra private interface endpoints beside Secrets Manager, from {', '.join(INTERFACE_ENDPOINTS)}",
    )
    endpoints_in_all_azs: bool = Field(
        defaults.ENDPOINTS_IN_ALL_AZS,
        description="Place interface endpoints in every AZ's private subnet; by default only in the host's AZ "
        "(one host, one zone: a second endpoint ENI would serve no client and doubles the hourly cost)",
    )
    ssh_key_name: Annotated[str | None, _pattern(_KEY_NAME_RE, "the name of an existing EC2 key pair")] = Field(
        None, description="EC2 key pair for SSH; SSH stays closed unless this and `ssh_cidr` are both set"
    )
    ssh_cidr: Annotated[str | None, _check(_ssh_cidr)] = Field(
        None, description="CIDR allowed to reach SSH (22) when `ssh_key_name` is set"
    )
    orthanc_aet: Annotated[str, _pattern(_AET_RE, "1-16 of A-Z, 0-9 and _")] = Field(
        defaults.ORTHANC_AET, description="Orthanc's DICOM application entity title"
    )
    site_name: Annotated[str | None, _pattern(_HOSTNAME_RE, "a lowercase DNS host name")] = Field(
        None, description="Host name for the certificate and URLs; defaults to the instance's public DNS name"
    )
    orthanc_image: Annotated[str, _IMAGE] = Field(
        defaults.ORTHANC_IMAGE, description="Orthanc container image, pinned by tag (not by digest: docs/host.md)"
    )
    nginx_image: Annotated[str, _IMAGE] = Field(
        defaults.NGINX_IMAGE, description="nginx container image, pinned by tag (not by digest: docs/host.md)"
    )
    https: bool = Field(
        defaults.HTTPS,
        description="Serve the web UI over HTTPS; false serves plain HTTP on 80 (never for real data), "
        "allowed only when every `web_cidrs` range is private (RFC 1918, 100.64.0.0/10)",
    )
    plain_dicom_in_vpc: bool = Field(
        defaults.PLAIN_DICOM_IN_VPC, description="Also accept plain DICOM on 4242 from inside the VPC"
    )
    dicom_client_ca: Annotated[str | None, _check(_pem_bundle)] = Field(
        None, description="PEM CA bundle; when set, DICOM TLS peers must present a certificate it signed"
    )
    viewers: Annotated[list[str], _check(_viewers)] = Field(
        default_factory=lambda: list(defaults.VIEWERS),
        description="Diagnostic viewers served beside Orthanc Explorer 2, from stone (Stone Web Viewer), "
        "ohif (OHIF); empty serves none",
    )
    web_cors_origins: Annotated[list[str], _check(_cors_origins)] = Field(
        default_factory=lambda: list(defaults.WEB_CORS_ORIGINS),
        description="https origins of separately hosted viewers that may call DICOMweb (`/dicom-web/`) "
        "from a browser, with the users' logins; empty keeps CORS off",
    )
    storage: Annotated[str, _pattern(re.compile(r"^(postgresql|s3)$"), "postgresql or s3")] = Field(
        defaults.STORAGE,
        description="Where Orthanc keeps images: `postgresql` (in RDS, beside the index) or `s3` (a bucket "
        "encrypted with the deployment key; the index stays in RDS)",
    )
    hosts: Annotated[int, _range(1, MAX_HOSTS)] = Field(
        defaults.HOSTS,
        description="Orthanc hosts: 1 is one EC2 instance (`aws_instance.orthweb`); 2-10 run in an Auto Scaling "
        "group across the zones behind a Network Load Balancer (docs/scaling.md)",
    )
    domain_name: Annotated[str | None, _pattern(_HOSTNAME_RE, "a lowercase DNS host name")] = Field(
        None,
        description="The site's DNS name (a Route 53 alias in `hosted_zone_id`) and the name in its certificate: "
        "required with `login` `cognito` (the Application Load Balancer, its ACM certificate); otherwise only "
        "with `hosts` >= 2 (the Network Load Balancer)",
    )
    hosted_zone_id: Annotated[str | None, _pattern(_ZONE_ID_RE, "a Route 53 hosted zone id such as Z0123ABC")] = Field(
        None, description="Route 53 hosted zone that holds `domain_name`"
    )
    state_backend: Annotated[str, _pattern(re.compile(r"^(local|s3)$"), "local or s3")] = Field(
        defaults.STATE_BACKEND, description="Terraform state backend: `local` or `s3`"
    )
    state_path: str = Field(
        defaults.STATE_PATH, description="Local state file (relative to the project) when `state_backend` is `local`"
    )
    state_bucket: Annotated[str | None, _pattern(_BUCKET_RE, "an S3 bucket name")] = Field(
        None, description="S3 bucket for the state when `state_backend` is `s3`"
    )
    state_key: str = Field(defaults.STATE_KEY, description="Object key of the state in `state_bucket`")
    tags: Annotated[dict[str, str], _check(_tags)] = Field(
        default_factory=dict, description="Extra tags on every resource (with Project and Deployment, at most 10)"
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_explain(exc, values, _SOURCES.get() or {})) from None

    @model_validator(mode="after")
    def _combinations(self) -> Settings:
        """Refusals that involve more than one setting."""
        if (self.ssh_key_name is None) != (self.ssh_cidr is None):
            raise _Refusal(
                "setting 'ssh_cidr' and 'ssh_key_name' must be set together (SSH opens only with both); "
                f"got ssh_key_name={self.ssh_key_name!r}, ssh_cidr={self.ssh_cidr!r}"
            )
        if self.state_backend == "s3" and not self.state_bucket:
            raise _Refusal("setting 'state_bucket' is required when state_backend is 's3'")
        if not self.https and (public := [c for c in self.web_cidrs if not _private(c)]):
            raise _Refusal(
                f"setting 'https' is false while 'web_cidrs' holds the public range {public[0]!r}; plain HTTP "
                "is for a private network only: set https true, or web_cidrs to ranges inside "
                + ", ".join(map(str, PRIVATE_RANGES))
            )
        if any("move" in p.permissions for p in self.dicom_peers) and self.dicom_client_ca is None:
            raise _Refusal(
                "setting 'dicom_peers' grants move, and C-MOVE sends images back to the peer over DICOM TLS, "
                "verified against 'dicom_client_ca': set dicom_client_ca to the CA that signs your peers' certificates"
            )
        if self.dicom_cidrs and not self.dicom_peers:
            raise _Refusal(
                f"setting 'dicom_cidrs' ({self.dicom_cidrs!r}) opens the network but no AET may associate: "
                "name each peer in 'dicom_peers' with its AET, cidr and permissions (dicom_cidrs is deprecated)"
            )
        self._check_dicom_identity()
        peer_networks = {p.cidr for p in self.dicom_peers}
        extra = [c for c in self.dicom_cidrs if c not in peer_networks]
        if extra and len(self.dicom_peers) > 1:
            raise _Refusal(
                f"setting 'dicom_cidrs' holds {extra[0]!r}, no peer's network, and with {len(self.dicom_peers)} "
                "peers it cannot say whose it is: each AET is accepted only from its own peer's cidr, so give "
                "that network to the peer that calls from it in 'dicom_peers' (dicom_cidrs is deprecated)"
            )
        ceiling = self.db_max_storage_gb
        if ceiling is not None and ceiling != self.db_storage_gb and ceiling * 10 < self.db_storage_gb * 11:
            raise _Refusal(
                f"setting 'db_max_storage_gb' is {ceiling} and 'db_storage_gb' is {self.db_storage_gb}: RDS grows "
                "storage only to a ceiling at least 10% above it; set db_max_storage_gb to at least "
                f"{-(-self.db_storage_gb * 11 // 10)}, or to {self.db_storage_gb} for no autoscaling"
            )
        self._check_scaling()
        if self.alarm_email and capacity.class_memory_gib(self.db_instance_class) is None:
            raise _Refusal(
                f"setting 'db_instance_class' is {self.db_instance_class!r}, whose memory the connection alarm "
                "(set by 'alarm_email') does not know: use a db.t*, db.m* or db.r* class, or unset alarm_email"
            )
        return self

    def _check_login(self) -> None:
        """Refusals for ``login = "cognito"`` (docs/host.md, "The front door")."""
        if self.login != "cognito":
            return
        if self.domain_name is None or self.hosted_zone_id is None:
            raise _Refusal(
                "setting 'login' is 'cognito', which needs 'domain_name' and 'hosted_zone_id': the site's DNS name "
                "(its ACM certificate, the login's callback) and the Route 53 hosted zone that holds it; "
                f"got domain_name={self.domain_name!r}, hosted_zone_id={self.hosted_zone_id!r}: set both "
                "(or login 'basic')"
            )
        # The default users ({"admin": "admin"}) are not validated by the field: name people here too.
        if problem := _web_users(self.web_users, "cognito"):
            raise _Refusal(_message("web_users", self.web_users, problem, (_SOURCES.get() or {}).get("web_users")))
        if not self.https:
            raise _Refusal(
                "setting 'https' is false with login 'cognito': the load balancer serves the login over HTTPS "
                "only; set https true (or login 'basic')"
            )
        if reserved := [w for w in COGNITO_DOMAIN_RESERVED if w in self.name_prefix]:
            raise _Refusal(
                f"setting 'name_prefix' ({self.name_prefix!r}) contains {reserved[0]!r}, which Cognito refuses in "
                "the login domain's prefix (derived from name_prefix with login 'cognito'): choose another name_prefix"
            )

    def _check_scaling(self) -> None:
        """Refusals for ``hosts`` >= 2 and the load balancer's DNS name (docs/scaling.md says why)."""
        self._check_login()
        if (self.domain_name is None) != (self.hosted_zone_id is None):
            raise _Refusal(
                "setting 'domain_name' and 'hosted_zone_id' must be set together (the alias record lives in that "
                f"zone); got domain_name={self.domain_name!r}, hosted_zone_id={self.hosted_zone_id!r}"
            )
        if self.site_name and self.domain_name and self.site_name != self.domain_name:
            raise _Refusal(
                f"setting 'site_name' ({self.site_name!r}) and 'domain_name' ({self.domain_name!r}) both name the "
                "site and differ: set only domain_name"
            )
        if self.hosts == 1:
            if self.domain_name and self.login != "cognito":
                raise _Refusal(
                    "setting 'domain_name' needs hosts >= 2 or login 'cognito': the alias points at a load balancer, "
                    "and one host with Basic logins has none (use site_name and your own DNS record for one host)"
                )
            return
        many = f"setting 'hosts' is {self.hosts}"
        if not self.db_multi_az:
            raise _Refusal(
                f"{many} but 'db_multi_az' is false: several hosts across zones survive a zone failure only if "
                "the database does too; set db_multi_az true (or hosts 1)"
            )
        if not self.endpoints_in_all_azs:
            raise _Refusal(
                f"{many} but 'endpoints_in_all_azs' is false: hosts in every zone reach Secrets Manager through "
                "the endpoints, which must not all sit in one zone; set endpoints_in_all_azs true"
            )
        if self.plain_dicom_in_vpc:
            raise _Refusal(
                f"{many} with 'plain_dicom_in_vpc' true: the load balancer is internet-facing and serves DICOM "
                "TLS only; set plain_dicom_in_vpc false (or hosts 1)"
            )
        limit = capacity.max_connections(self.db_instance_class)
        if limit is None:
            families = ", ".join(sorted(capacity.KNOWN_FAMILIES))
            raise _Refusal(
                f"{many}, and the database connections they need are checked against the class's memory, which "
                f"is known for db.FAMILY.SIZE of {families}; 'db_instance_class' {self.db_instance_class!r} is not "
                "one of them"
            )
        needed = capacity.connections_needed(self.hosts, self.storage == "postgresql")
        if needed > limit:
            raise _Refusal(
                f"{many}: {self.hosts} + 1 (during a rolling replacement) x "
                f"{capacity.connections_per_host(self.storage == 'postgresql')} connections + "
                f"{capacity.RESERVED_CONNECTIONS} reserved need {needed}, and 'db_instance_class' "
                f"{self.db_instance_class!r} allows about {limit}: choose a larger class or fewer hosts"
            )

    @property
    def cognito(self) -> bool:
        """The Cognito login at an Application Load Balancer (``login = "cognito"``)."""
        return self.login == "cognito"

    @property
    def multi_host(self) -> bool:
        """Several hosts behind the load balancer (an Auto Scaling group instead of one instance)."""
        return self.hosts > 1

    @property
    def architecture(self) -> str:
        """CPU architecture of the instance type: ``arm64`` or ``x86_64``."""
        return "arm64" if self.instance_type.split(".")[0] in ARM64_FAMILIES else "x86_64"

    @property
    def db_storage_ceiling_gb(self) -> int | None:
        """What storage autoscaling may grow the database to (``db_max_storage_gb``), None when off."""
        ceiling = self.db_max_storage_gb
        if ceiling is None:
            ceiling = min(self.db_storage_gb * defaults.DB_STORAGE_AUTOSCALING_FACTOR, 65536)
        return ceiling if ceiling > self.db_storage_gb else None

    def _check_dicom_identity(self) -> None:
        """Certificate subjects need the CA that verifies them; a peer that reads from a wide network
        must name its certificate."""
        named = [p for p in self.dicom_peers if p.certificate_subject is not None]
        if named and self.dicom_client_ca is None:
            raise _Refusal(
                f"setting 'dicom_peers' gives peer {named[0].aet!r} a certificate_subject, which nginx can check "
                "only on a certificate it verified: set dicom_client_ca to the CA that signs your peers' certificates"
            )
        for peer in self.dicom_peers:
            reads = [x for x in peer.permissions if x in DICOM_READS]
            # The deprecated dicom_cidrs are the only peer's networks too.
            networks = [peer.cidr, *(self.dicom_cidrs if len(self.dicom_peers) == 1 else [])]
            wide = [n for n in networks if ipaddress.IPv4Network(n).prefixlen < WIDEST_READ_NETWORK]
            if reads and wide and peer.certificate_subject is None:
                raise _Refusal(
                    f"setting 'dicom_peers' grants peer {peer.aet!r} {reads[0]} from {wide[0]}, wider than "
                    f"/{WIDEST_READ_NETWORK}, where anyone who knows its AET could read the archive: narrow its "
                    f"network to /{WIDEST_READ_NETWORK} or less, or name its certificate_subject (with dicom_client_ca)"
                )

    @property
    def db_engine_major(self) -> str:
        return self.db_engine_version.split(".")[0]

    @property
    def dicom_ingress_cidrs(self) -> list[str]:
        """Where DICOM TLS may come from: ``dicom_cidrs`` (deprecated) first, then each peer's cidr."""
        out = list(self.dicom_cidrs)
        for peer in self.dicom_peers:
            if peer.cidr not in out:
                out.append(peer.cidr)
        return out

    @property
    def ssh_enabled(self) -> bool:
        return self.ssh_key_name is not None and self.ssh_cidr is not None

    @classmethod
    def load(cls, context: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from cdktf.json context values, then ``ORTHWEB_*`` environment variables."""
        known = cls.model_fields
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, raw in (context or {}).items():
            if key not in known:
                raise SettingsError(_unknown(key, f"cdktf.json context.{CONTEXT_KEY}", known))
            values[key], sources[key] = raw, f"cdktf.json context.{CONTEXT_KEY}.{key}"
        for var, raw in (environ or {}).items():
            if not var.startswith(ENV_PREFIX):
                continue
            key = var[len(ENV_PREFIX) :].lower()
            if key not in known:
                raise SettingsError(_unknown(var, "the environment", known, env=True))
            values[key], sources[key] = _from_env(key, known[key].annotation, raw, var), var
        token = _SOURCES.set(sources)
        try:
            return cls(**values)
        finally:
            _SOURCES.reset(token)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(name, default, meaning) for every setting, in declaration order: the README table."""
        return [
            (name, json.dumps(f.get_default(call_default_factory=True)), f.description or "")
            for name, f in cls.model_fields.items()
        ]


# --- messages ------------------------------------------------------------------------------------


def _message(name: str, value: Any, allowed: str, source: str | None = None) -> str:
    where = f" (from {source})" if source else ""
    shown = repr(value)
    if len(shown) > 120:  # a PEM bundle or a long list: enough to recognise it, on one line
        shown = shown[:100] + "…"
    return f"setting '{name}'{where} has value {shown}; allowed: {allowed}"


def _unknown(key: str, where: str, known: Mapping[str, Any], env: bool = False) -> str:
    names = sorted(ENV_PREFIX + k.upper() for k in known) if env else sorted(known)
    return f"unknown setting {key!r} in {where}; known settings: {', '.join(names)}"


def _explain(exc: ValidationError, values: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """The one-line message for the first problem pydantic found."""
    err = exc.errors()[0]
    cause = err.get("ctx", {}).get("error")
    loc = err["loc"]
    if not loc:  # a refusal that involves several settings carries its whole message
        return str(cause)
    name = str(loc[0])
    if err["type"] == "extra_forbidden" and len(loc) == 1:
        return _unknown(name, "the settings", Settings.model_fields)
    field = Settings.model_fields[name]
    allowed = str(cause) if isinstance(cause, _Refusal) else _kind(field.annotation)
    if len(loc) > 1 and not isinstance(cause, _Refusal):  # inside a list or object: say where
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        allowed += f"; at {name}{where}: {err['msg'].lower()}"
    return _message(name, values.get(name, err["input"]), allowed, sources.get(name))


# --- types: what each accepts, and how an environment variable's text becomes one -----------------


def _base(annotation: Any) -> tuple[Any, bool]:
    """(the type without ``| None``, whether None is allowed)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _kind(annotation: Any) -> str:
    """What a value of this type looks like, for a message."""
    base, _ = _base(annotation)
    origin = typing.get_origin(base) or base
    if base is bool:
        return "true or false"
    if base is int:
        return "a whole number"
    if origin is list and typing.get_args(base) == (DicomPeer,):
        return _PEERS_ALLOWED
    if origin is list:
        return "a list of strings (in the environment: comma-separated or a JSON list)"
    if origin is dict:
        return 'a JSON object of strings, such as {"Owner": "radiology"}'
    return "a string"


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _from_env(name: str, annotation: Any, raw: str, var: str) -> Any:
    """The typed value an ``ORTHWEB_*`` variable's text stands for (then validated like any other)."""
    base, optional = _base(annotation)
    origin = typing.get_origin(base) or base
    if optional and raw == "":
        return None
    value: Any = raw
    try:
        if base is bool:
            if raw.lower() not in _TRUE | _FALSE:
                raise ValueError
            value = raw.lower() in _TRUE
        elif base is int:
            if not re.fullmatch(r"[0-9]+", raw.strip()):
                raise ValueError
            value = int(raw)
        elif origin is list:
            items = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
            value = [i.strip() if isinstance(i, str) else i for i in items if i != ""]
        elif origin is dict:
            value = json.loads(raw)
    except ValueError:  # json.JSONDecodeError is a ValueError
        raise SettingsError(_message(name, raw, _kind(annotation), var)) from None
    return value
