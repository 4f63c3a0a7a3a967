"""Typed, validated deployment settings.

Every setting has a secure default in code. A deployment overrides them in ``cdktf.json``
(``context.orthweb``) and, winning over that, in ``ORTHWEB_<NAME>`` environment variables.
Bad input raises :class:`SettingsError` with one message naming the setting, where it came
from, the value and what is allowed; ``main.py`` prints it and exits before anything is
synthesized.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

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

INTERFACE_ENDPOINTS = ("ssm", "ssmmessages", "ec2messages", "kms", "logs")
STATE_BACKENDS = ("local", "s3")

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
_INSTANCE_RE = re.compile(r"^(?P<family>[a-z][a-z0-9-]*)\.(?P<size>[a-z0-9]+)$")
_DB_CLASS_RE = re.compile(r"^db\.[a-z][a-z0-9-]*\.[a-z0-9]+$")
_ENGINE_RE = re.compile(r"^(?P<major>[0-9]{2})(\.[0-9]{1,2})?$")
_KEY_NAME_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
_AET_RE = re.compile(r"^[A-Z0-9_]{1,16}$")
_IMAGE_RE = re.compile(r"^[a-z0-9./_-]+:[A-Za-z0-9._-]+(@sha256:[0-9a-f]{64})?$")
_TAG_KEY_RE = re.compile(r"^[\w .:/=+@-]{1,128}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class SettingsError(ValueError):
    """A setting a user gave is not valid; the message says which, and what is allowed."""


def _meta(help_: str, check: Callable[[Any], str | None] | None = None) -> dict[str, Any]:
    return {"help": help_, "check": check}


def _range(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: int) -> str | None:
        return None if lo <= v <= hi else f"an integer from {lo} to {hi}"

    return check


def _pattern(rx: re.Pattern[str], allowed: str) -> Callable[[Any], str | None]:
    def check(v: str) -> str | None:
        return None if rx.match(v) else allowed

    return check


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


def _tags(v: dict[str, str]) -> str | None:
    for k, val in v.items():
        if not _TAG_KEY_RE.match(k) or k.lower().startswith("aws:") or len(str(val)) > 256:
            return "a map of tag keys (1-128 chars, not starting with 'aws:') to values of at most 256 chars"
    return None


def _ssh_cidr(v: str) -> str | None:
    net = _ipv4_cidr(v)
    if net is None or net.prefixlen < 8:
        return "an IPv4 CIDR block of /8 or narrower (SSH is never opened to the whole internet)"
    return None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """One deployment's settings. Field metadata holds the help text shown in the README table."""

    name_prefix: str = field(
        default="orthweb",
        metadata=_meta(
            "Prefix of every resource name and the `Deployment` tag, so several deployments fit in one account",
            _pattern(_PREFIX_RE, "2-20 characters: lowercase letters, digits and '-', starting with a letter"),
        ),
    )
    region: str = field(
        default="us-east-1",
        metadata=_meta("AWS region to deploy to", _pattern(_REGION_RE, "an AWS region name such as eu-west-1")),
    )
    vpc_cidr: str = field(
        default="10.64.0.0/16",
        metadata=_meta("VPC address range; must not overlap Docker's bridge 172.17.0.0/16", _vpc_cidr),
    )
    az_count: int = field(
        default=2,
        metadata=_meta("Availability zones to spread public and private subnets over", _range(2, 4)),
    )
    web_cidrs: list[str] = field(
        default_factory=lambda: ["0.0.0.0/0"],
        metadata=_meta("CIDRs allowed to reach HTTPS (443); the web UI always needs the admin login", _cidr_list),
    )
    dicom_cidrs: list[str] = field(
        default_factory=list,
        metadata=_meta(
            "CIDRs allowed to reach DICOM TLS (11112); empty keeps DICOM closed until you name your peers",
            _cidr_list,
        ),
    )
    instance_type: str = field(
        default="t4g.small",
        metadata=_meta("EC2 instance type of the Orthanc host (Graviton by default)", _instance_type),
    )
    root_volume_gb: int = field(
        default=20,
        metadata=_meta("Size of the host's encrypted gp3 root volume, in GiB", _range(8, 1024)),
    )
    db_instance_class: str = field(
        default="db.t4g.micro",
        metadata=_meta("RDS instance class", _pattern(_DB_CLASS_RE, "an RDS class such as db.t4g.micro")),
    )
    db_storage_gb: int = field(
        default=20,
        metadata=_meta("RDS gp3 storage, in GiB", _range(20, 65536)),
    )
    db_engine_version: str = field(
        default="17",
        metadata=_meta(
            "RDS PostgreSQL version (a major pins the major; minors upgrade automatically)", _engine_version
        ),
    )
    db_multi_az: bool = field(default=False, metadata=_meta("Run RDS with a standby in a second AZ"))
    db_backup_days: int = field(
        default=7,
        metadata=_meta("Days of automated RDS backups", _range(7, 35)),
    )
    deletion_protection: bool = field(
        default=True,
        metadata=_meta(
            "Protect the database from deletion and take a final snapshot on destroy; "
            "set false only for throwaway proofs of concept"
        ),
    )
    log_retention_days: int = field(
        default=365,
        metadata=_meta("Retention of the flow-log and database log groups, in days", _retention),
    )
    interface_endpoints: list[str] = field(
        default_factory=list,
        metadata=_meta(
            f"Extra private interface endpoints beside Secrets Manager, from {', '.join(INTERFACE_ENDPOINTS)}",
            _endpoints,
        ),
    )
    endpoints_in_all_azs: bool = field(
        default=False,
        metadata=_meta(
            "Place interface endpoints in every AZ's private subnet; by default only in the host's AZ "
            "(one host, one zone: a second endpoint ENI would serve no client and doubles the hourly cost)"
        ),
    )
    ssh_key_name: str | None = field(
        default=None,
        metadata=_meta(
            "EC2 key pair for SSH; SSH stays closed unless this and `ssh_cidr` are both set",
            _pattern(_KEY_NAME_RE, "the name of an existing EC2 key pair"),
        ),
    )
    ssh_cidr: str | None = field(
        default=None,
        metadata=_meta("CIDR allowed to reach SSH (22) when `ssh_key_name` is set", _ssh_cidr),
    )
    orthanc_aet: str = field(
        default="ORTHANC",
        metadata=_meta("Orthanc's DICOM application entity title", _pattern(_AET_RE, "1-16 of A-Z, 0-9 and _")),
    )
    site_name: str | None = field(
        default=None,
        metadata=_meta(
            "Host name for the certificate and URLs; defaults to the instance's public DNS name",
            _pattern(_HOSTNAME_RE, "a lowercase DNS host name"),
        ),
    )
    orthanc_image: str = field(
        default="orthancteam/orthanc:25.6.0",
        metadata=_meta("Orthanc container image, pinned", _pattern(_IMAGE_RE, "IMAGE:TAG, optionally @sha256:DIGEST")),
    )
    nginx_image: str = field(
        default="nginx:1.28.0-alpine",
        metadata=_meta("nginx container image, pinned", _pattern(_IMAGE_RE, "IMAGE:TAG, optionally @sha256:DIGEST")),
    )
    https: bool = field(
        default=True,
        metadata=_meta("Serve the web UI over HTTPS; false serves plain HTTP on 80 (never for real data)"),
    )
    plain_dicom_in_vpc: bool = field(
        default=False,
        metadata=_meta("Also accept plain DICOM on 4242 from inside the VPC"),
    )
    dicom_client_ca: str | None = field(
        default=None,
        metadata=_meta("PEM CA bundle; when set, DICOM TLS peers must present a certificate it signed"),
    )
    state_backend: str = field(
        default="local",
        metadata=_meta(
            "Terraform state backend: `local` or `s3`",
            _pattern(re.compile(r"^(local|s3)$"), "local or s3"),
        ),
    )
    state_path: str = field(
        default="terraform.orthweb.tfstate",
        metadata=_meta("Local state file (relative to the project) when `state_backend` is `local`"),
    )
    state_bucket: str | None = field(
        default=None,
        metadata=_meta(
            "S3 bucket for the state when `state_backend` is `s3`",
            _pattern(_BUCKET_RE, "an S3 bucket name"),
        ),
    )
    state_key: str = field(
        default="orthweb/terraform.tfstate",
        metadata=_meta("Object key of the state in `state_bucket`"),
    )
    tags: dict[str, str] = field(default_factory=dict, metadata=_meta("Extra tags on every resource", _tags))

    def __post_init__(self) -> None:
        for f in fields(self):
            _validate(f, getattr(self, f.name))
        if (self.ssh_key_name is None) != (self.ssh_cidr is None):
            raise SettingsError(
                "setting 'ssh_cidr' and 'ssh_key_name' must be set together (SSH opens only with both); "
                f"got ssh_key_name={self.ssh_key_name!r}, ssh_cidr={self.ssh_cidr!r}"
            )
        if self.state_backend == "s3" and not self.state_bucket:
            raise SettingsError("setting 'state_bucket' is required when state_backend is 's3'")
        if self.dicom_client_ca is not None and "-----BEGIN CERTIFICATE-----" not in self.dicom_client_ca:
            raise SettingsError(_message("dicom_client_ca", "<text>", "a PEM bundle of CA certificates"))

    @property
    def architecture(self) -> str:
        """CPU architecture of the instance type: ``arm64`` or ``x86_64``."""
        return "arm64" if self.instance_type.split(".")[0] in ARM64_FAMILIES else "x86_64"

    @property
    def db_engine_major(self) -> str:
        return self.db_engine_version.split(".")[0]

    @property
    def ssh_enabled(self) -> bool:
        return self.ssh_key_name is not None and self.ssh_cidr is not None

    @classmethod
    def load(cls, context: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from cdktf.json context values, then ``ORTHWEB_*`` environment variables."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in (context or {}).items():
            if key not in known:
                raise SettingsError(_unknown(key, f"cdktf.json context.{CONTEXT_KEY}", known))
            source = f"cdktf.json context.{CONTEXT_KEY}.{key}"
            values[key] = _validate(known[key], _coerce(known[key], raw, source, from_env=False), source)
        for var, raw in (environ or {}).items():
            if not var.startswith(ENV_PREFIX):
                continue
            key = var[len(ENV_PREFIX) :].lower()
            if key not in known:
                raise SettingsError(_unknown(var, "the environment", known, env=True))
            values[key] = _validate(known[key], _coerce(known[key], raw, var, from_env=True), var)
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(name, default, meaning) for every setting, in declaration order: the README table."""
        rows = []
        for f in fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            rows.append((f.name, json.dumps(default), f.metadata["help"]))
        return rows


def _validate(f: dataclasses.Field[Any], value: Any, source: str | None = None) -> Any:
    """Return ``value`` if the field's check accepts it; raise naming the setting and source if not."""
    check = f.metadata.get("check")
    problem = check(value) if check and value is not None else None
    if problem:
        raise SettingsError(_message(f.name, value, problem, source))
    return value


def _message(name: str, value: Any, allowed: str, source: str | None = None) -> str:
    where = f" (from {source})" if source else ""
    return f"setting '{name}'{where} has value {value!r}; allowed: {allowed}"


def _unknown(key: str, where: str, known: Mapping[str, Any], env: bool = False) -> str:
    names = sorted(ENV_PREFIX + k.upper() for k in known) if env else sorted(known)
    return f"unknown setting {key!r} in {where}; known settings: {', '.join(names)}"


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_bool(raw: Any, from_env: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if from_env and isinstance(raw, str) and raw.lower() in _TRUE | _FALSE:
        return raw.lower() in _TRUE
    raise ValueError("true or false")


def _parse_int(raw: Any, from_env: bool) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if from_env and isinstance(raw, str) and re.fullmatch(r"[0-9]+", raw.strip()):
        return int(raw)
    raise ValueError("a whole number")


def _parse_list(raw: Any, from_env: bool) -> list[str]:
    allowed = "a list of strings (in the environment: comma-separated or a JSON list)"
    items = raw
    if from_env and isinstance(raw, str):
        try:
            items = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
        except json.JSONDecodeError:
            raise ValueError(allowed) from None
        items = [i.strip() if isinstance(i, str) else i for i in items if i != ""]
    if isinstance(items, list) and all(isinstance(i, str) for i in items):
        return items
    raise ValueError(allowed)


def _parse_map(raw: Any, from_env: bool) -> dict[str, str]:
    allowed = 'a JSON object of strings, such as {"Owner": "radiology"}'
    parsed = raw
    if from_env and isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(allowed) from None
    if isinstance(parsed, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()):
        return parsed
    raise ValueError(allowed)


def _parse_str(raw: Any, from_env: bool) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError("a string")


_PARSERS: dict[str, Callable[[Any, bool], Any]] = {
    "bool": _parse_bool,
    "int": _parse_int,
    "list[str]": _parse_list,
    "dict[str,str]": _parse_map,
    "str": _parse_str,
}


def _coerce(f: dataclasses.Field[Any], raw: Any, source: str, *, from_env: bool) -> Any:
    """Turn a context (JSON) or environment (string) value into the field's type, or explain why not."""
    kind = str(f.type).replace(" ", "")
    optional = kind.endswith("|None")
    if optional and (raw is None or (from_env and raw == "")):
        return None
    try:
        return _PARSERS[kind.removesuffix("|None")](raw, from_env)
    except ValueError as exc:
        raise SettingsError(_message(f.name, raw, str(exc), source)) from None
