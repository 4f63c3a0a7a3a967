"""Settings: defaults, overrides from cdktf.json context and ORTHWEB_* variables, and clear refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orthweb.settings import Settings, SettingsError

PROJECT_DIR = Path(__file__).resolve().parents[1]


def test_defaults_are_the_secure_ones() -> None:
    s = Settings()
    assert s.deletion_protection is True
    assert s.db_backup_days >= 7
    assert s.https is True
    assert s.plain_dicom_in_vpc is False
    assert s.dicom_cidrs == []
    assert s.dicom_peers == []
    assert s.web_users == {"admin": "admin"}
    assert s.ssh_enabled is False
    assert s.architecture == "arm64"
    assert s.db_engine_major == "17"
    assert s.viewers == ["stone"]
    assert s.web_cors_origins == []  # CORS off: no other site's page may call DICOMweb


def test_environment_wins_over_context() -> None:
    s = Settings.load({"az_count": 3, "instance_type": "t3.small"}, {"ORTHWEB_AZ_COUNT": "4", "PATH": "/bin"})
    assert s.az_count == 4
    assert s.instance_type == "t3.small"
    assert s.architecture == "x86_64"


@pytest.mark.parametrize(
    ("var", "raw", "expected"),
    [
        ("ORTHWEB_WEB_CIDRS", "198.51.100.0/24, 203.0.113.0/24", ["198.51.100.0/24", "203.0.113.0/24"]),
        ("ORTHWEB_WEB_CIDRS", '["198.51.100.0/24"]', ["198.51.100.0/24"]),
        ("ORTHWEB_DB_MULTI_AZ", "yes", True),
        ("ORTHWEB_DELETION_PROTECTION", "false", False),
        ("ORTHWEB_TAGS", '{"Owner": "radiology"}', {"Owner": "radiology"}),
        ("ORTHWEB_SITE_NAME", "", None),
        ("ORTHWEB_LOG_RETENTION_DAYS", "731", 731),
        ("ORTHWEB_WEB_USERS", '{"admin": "admin", "ann": "viewer"}', {"admin": "admin", "ann": "viewer"}),
        ("ORTHWEB_VIEWERS", "stone,ohif", ["stone", "ohif"]),
        ("ORTHWEB_VIEWERS", "[]", []),
        ("ORTHWEB_WEB_CORS_ORIGINS", "https://viewer.example.org", ["https://viewer.example.org"]),
    ],
)
def test_environment_values_are_parsed_to_their_types(var: str, raw: str, expected: Any) -> None:
    s = Settings.load({}, {var: raw})
    assert getattr(s, var.removeprefix("ORTHWEB_").lower()) == expected


def test_dicom_peers_from_the_environment_open_their_networks() -> None:
    s = Settings.load(
        {"dicom_cidrs": ["192.0.2.0/24"]},
        {"ORTHWEB_DICOM_PEERS": '[{"aet":"CT01","cidr":"127.0.0.0/16","permissions":["store","find"]},'
         '{"aet":"ws.2","cidr":"192.0.2.0/24"}]'},
    )  # fmt: skip
    assert [(p.aet, p.cidr, p.permissions) for p in s.dicom_peers] == [
        ("CT01", "127.0.0.0/16", ["store", "find"]),
        ("ws.2", "192.0.2.0/24", []),
    ]
    # dicom_cidrs (deprecated) first, so existing rules keep their addresses; no duplicates.
    assert s.dicom_ingress_cidrs == ["192.0.2.0/24", "127.0.0.0/16"]


def test_plain_http_is_allowed_on_private_networks_only() -> None:
    assert Settings(https=False, web_cidrs=["10.1.0.0/16", "192.168.0.0/24", "100.64.0.0/10"]).https is False


PEER = {"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store"]}
MOVER = {"aet": "WS1", "cidr": "203.0.113.0/24", "permissions": ["move"], "host": "203.0.113.9", "port": 104,
         "tls_name": "ws1.example.org"}  # fmt: skip
CA = "-----BEGIN CERTIFICATE-----"
# Subjects nginx never prints as they are written, or that would break the nginx config.
BAD_SUBJECTS = [
    "",
    'CN=ct"01',
    "CN=ct01;",
    "CN={ct01}",
    "CN=ct01\nO=x",
    "CN=ct01\\,O=x",
    "CN=$ssl",
    "CN=a|b",
    "CN= ct01",
    "CN=ct01 ",
    "CN=",
    "ct01",
    "CN=ct01,",
    "CN=ct01,,O=x",
    "CN=ct01<",
    "CN=ct\u00e9",
    "CN=" + "a" * 600,
]
# (the peer's network and permissions, other settings, words): a read from wider than /16, refused
# unless the peer names its certificate.
WIDE_READERS: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = [
    (
        {"cidr": "10.0.0.0/8", "permissions": ["find"]},
        {},
        ["'CT01'", "find from 10.0.0.0/8", "/16", "certificate_subject"],
    ),
    ({"cidr": "10.0.0.0/15", "permissions": ["store", "get"]}, {}, ["get from 10.0.0.0/15", "certificate_subject"]),
    (
        {
            "cidr": "10.0.0.0/8",
            "permissions": ["move"],
            "host": "10.0.0.9",
            "port": 104,
            "tls_name": "ct01.example.org",
        },
        {},
        ["move from 10.0.0.0/8", "certificate_subject"],
    ),
    ({"cidr": "0.0.0.0/0", "permissions": ["find"]}, {}, ["find from 0.0.0.0/0"]),
    # The deprecated dicom_cidrs are the only peer's networks too.
    ({"cidr": "10.0.0.0/24", "permissions": ["find"]}, {"dicom_cidrs": ["172.16.0.0/12"]}, ["find from 172.16.0.0/12"]),
]
# The settings several hosts need besides `hosts` (each refusal below names the missing one).
_MANY: dict[str, Any] = {"hosts": 3, "db_multi_az": True, "endpoints_in_all_azs": True}

BAD_INPUTS = [
    # (context, environment, words the message must contain)
    ({"vpc_cidr": "10.0.0.0/33"}, {}, ["vpc_cidr", "10.0.0.0/33", "/16 to /24"]),
    ({"db_storage_gb": 100, "db_max_storage_gb": 105}, {}, ["db_max_storage_gb", "105", "at least 110", "100"]),
    ({"db_max_storage_gb": 10}, {}, ["db_max_storage_gb", "10", "20 to 65536"]),
    ({"vpc_cidr": "172.17.0.0/16"}, {}, ["vpc_cidr", "172.17.0.0/16", "Docker"]),
    ({"vpc_cidr": "172.16.0.0/12"}, {}, ["vpc_cidr", "overlap"]),
    ({"vpc_cidr": "10.1.2.3/16"}, {}, ["vpc_cidr", "10.1.2.3/16"]),
    ({"web_cidrs": ["0.0.0.0/0", "10.0.0.1/8"]}, {}, ["web_cidrs", "10.0.0.1/8", "host bits"]),
    ({"dicom_cidrs": ["not-a-cidr"]}, {}, ["dicom_cidrs", "not-a-cidr"]),
    ({"az_count": 7}, {}, ["az_count", "7", "from 2 to 4"]),
    ({}, {"ORTHWEB_AZ_COUNT": "1"}, ["az_count", "ORTHWEB_AZ_COUNT", "from 2 to 4"]),
    ({}, {"ORTHWEB_AZ_COUNT": "two"}, ["az_count", "'two'", "whole number"]),
    ({"az_count": "2"}, {}, ["az_count", "whole number"]),
    ({"instance_type": "q9.large"}, {}, ["instance_type", "q9.large", "known family", "t4g"]),
    ({"instance_type": "t4g"}, {}, ["instance_type", "FAMILY.SIZE"]),
    ({"db_storage_gb": 10}, {}, ["db_storage_gb", "10", "from 20 to 65536"]),
    ({"archive_volume_gb": 0}, {}, ["archive_volume_gb", "0", "from 1 to 1024"]),
    ({}, {"ORTHWEB_ARCHIVE_VOLUME_GB": "2048"}, ["archive_volume_gb", "ORTHWEB_ARCHIVE_VOLUME_GB", "from 1 to 1024"]),
    ({"db_storage_gb": 70000}, {}, ["db_storage_gb", "70000"]),
    ({"db_engine_version": "9.6"}, {}, ["db_engine_version", "9.6", "14, 15, 16, 17"]),
    ({"db_backup_days": 3}, {}, ["db_backup_days", "from 7 to 35"]),
    ({"name_prefix": "Orthweb_Prod"}, {}, ["name_prefix", "Orthweb_Prod", "lowercase"]),
    ({"name_prefix": "x"}, {}, ["name_prefix", "2-20 characters"]),
    ({"log_retention_days": 42}, {}, ["log_retention_days", "42", "365"]),
    ({"region": "mars-north-1x"}, {}, ["region", "mars-north-1x"]),
    ({"interface_endpoints": ["s3"]}, {}, ["interface_endpoints", "ssm"]),
    ({"ssh_key_name": "ops"}, {}, ["ssh_cidr", "ssh_key_name", "together"]),
    ({"alarm_email": "ops at example.org"}, {}, ["alarm_email", "ops at example.org", "e-mail address"]),
    (
        {"alarm_email": "ops@example.org", "db_instance_class": "db.x2g.large"},
        {},
        ["db_instance_class", "db.x2g.large", "alarm_email", "db.t*, db.m* or db.r*"],
    ),
    ({"patch_schedule": "Sunday 3am"}, {}, ["patch_schedule", "Sunday 3am", "Sun 03:00", "off"]),
    ({"patch_release": "2023"}, {}, ["patch_release", "'2023'", "latest", "2023.9.20251117"]),
    ({}, {"ORTHWEB_PATCH_SCHEDULE": "25:00"}, ["patch_schedule", "ORTHWEB_PATCH_SCHEDULE", "HH:MM"]),
    ({"db_snapshot_identifier": "snap--1"}, {}, ["db_snapshot_identifier", "snap--1", "snapshot identifier or ARN"]),
    ({"ssh_key_name": "ops", "ssh_cidr": "0.0.0.0/0"}, {}, ["ssh_cidr", "0.0.0.0/0", "never opened"]),
    ({"deletion_protection": "no"}, {}, ["deletion_protection", "true or false"]),
    ({}, {"ORTHWEB_DB_MULTI_AZ": "maybe"}, ["db_multi_az", "maybe", "true or false"]),
    ({"tags": {"aws:owner": "x"}}, {}, ["tags", "aws:"]),
    ({"tags": {f"Tag{n}": "x" for n in range(9)}}, {}, ["tags", "at most 10 tags with Project and Deployment"]),
    ({}, {"ORTHWEB_TAGS": "Owner=me"}, ["tags", "JSON object"]),
    ({"state_backend": "s3"}, {}, ["state_bucket", "s3"]),
    ({"orthanc_aet": "orthanc"}, {}, ["orthanc_aet", "A-Z"]),
    ({"viewers": ["osimis"]}, {}, ["viewers", "osimis", "stone, ohif"]),
    ({}, {"ORTHWEB_VIEWERS": "stone,stone"}, ["viewers", "ORTHWEB_VIEWERS", "at most once"]),
    ({"web_cors_origins": ["*"]}, {}, ["web_cors_origins", "'*'", "https origins"]),
    ({"web_cors_origins": ["http://viewer.example.org"]}, {}, ["web_cors_origins", "http://viewer.example.org"]),
    ({"web_cors_origins": ["https://viewer.example.org/"]}, {}, ["web_cors_origins", "no trailing slash"]),
    ({"web_cors_origins": ["https://viewer.example.org:443"]}, {}, ["web_cors_origins", "no default port"]),
    ({"web_cors_origins": ["https://Viewer.example.org"]}, {}, ["web_cors_origins", "lowercase"]),
    ({"web_cors_origins": ['https://v.example.org" "x']}, {}, ["web_cors_origins", "https origins"]),
    ({"storage": "efs"}, {}, ["storage", "efs", "postgresql or s3"]),
    ({"hosts": 11}, {}, ["hosts", "11", "from 1 to 10"]),
    ({"hosts": 0}, {}, ["hosts", "from 1 to 10"]),
    ({"hosts": 3}, {}, ["hosts", "db_multi_az", "zone failure"]),
    ({"hosts": 2, "db_multi_az": True}, {}, ["hosts", "endpoints_in_all_azs"]),
    ({**_MANY, "plain_dicom_in_vpc": True}, {}, ["plain_dicom_in_vpc", "load balancer"]),
    ({**_MANY, "db_instance_class": "db.x2g.large"}, {}, ["db_instance_class", "db.x2g.large", "t4g"]),
    ({"domain_name": "pacs.example.org"}, {}, ["domain_name", "hosted_zone_id", "together"]),
    ({"domain_name": "pacs.example.org", "hosted_zone_id": "Z0123ABC"}, {}, ["domain_name", "hosts >= 2"]),
    (
        {**_MANY, "domain_name": "pacs.example.org", "hosted_zone_id": "Z1", "site_name": "other.example.org"},
        {},
        ["site_name", "domain_name", "differ"],
    ),
    ({"hosted_zone_id": "zone-1"}, {}, ["hosted_zone_id", "Z0123ABC"]),
    ({"instance_typo": "t4g.small"}, {}, ["unknown setting", "instance_typo", "instance_type"]),
    ({"https": False}, {}, ["https", "web_cidrs", "0.0.0.0/0", "private network"]),
    ({"https": False, "web_cidrs": ["10.0.0.0/8", "198.51.100.0/24"]}, {}, ["https", "198.51.100.0/24"]),
    ({"https": False, "web_cidrs": ["0.0.0.0/1"]}, {}, ["https", "0.0.0.0/1"]),
    ({"dicom_cidrs": ["203.0.113.0/24"]}, {}, ["dicom_cidrs", "dicom_peers", "deprecated"]),
    (
        {"dicom_peers": [{**PEER, "permissions": ["store", "delete"]}]},
        {},
        ["dicom_peers", "unknown permission 'delete'"],
    ),
    ({"dicom_peers": [{**PEER, "aet": "CT 01"}]}, {}, ["dicom_peers", "'CT 01'", "1-16"]),
    ({"dicom_peers": [{**PEER, "aet": "A" * 17}]}, {}, ["dicom_peers", "1-16"]),
    ({"dicom_peers": [{**PEER, "cidr": "203.0.113.1/24"}]}, {}, ["dicom_peers", "203.0.113.1/24", "host bits"]),
    ({"dicom_peers": [{**PEER, "cidr": "2001:db8::/32"}]}, {}, ["dicom_peers", "IPv4"]),
    ({"dicom_peers": [PEER, {**PEER, "aet": "ct01"}]}, {}, ["dicom_peers", "'ct01'", "twice"]),
    ({"dicom_peers": [{**PEER, "permissions": ["find", "find"]}]}, {}, ["dicom_peers", "twice"]),
    ({"dicom_peers": [{**PEER, "permisions": ["find"]}]}, {}, ["dicom_peers", "permisions", "extra"]),
    ({"dicom_peers": [{"cidr": "203.0.113.0/24"}]}, {}, ["dicom_peers", "aet", "required"]),
    (
        {"dicom_peers": [{**MOVER, "host": None}], "dicom_client_ca": "-----BEGIN CERTIFICATE-----"},
        {},
        ["dicom_peers", "host, port and tls_name", "move"],
    ),
    (
        {"dicom_peers": [{**MOVER, "tls_name": "WS 1"}], "dicom_client_ca": "-----BEGIN CERTIFICATE-----"},
        {},
        ["dicom_peers", "'WS 1'", "DNS name"],
    ),
    (
        {"dicom_peers": [{**MOVER, "host": "192.0.2.1"}], "dicom_client_ca": "-----BEGIN CERTIFICATE-----"},
        {},
        ["dicom_peers", "192.0.2.1", "inside its cidr"],
    ),
    (
        {"dicom_peers": [{**MOVER, "port": 70000}], "dicom_client_ca": "-----BEGIN CERTIFICATE-----"},
        {},
        ["dicom_peers", "70000"],
    ),
    ({"dicom_peers": [MOVER]}, {}, ["dicom_peers", "move", "dicom_client_ca"]),
    ({}, {"ORTHWEB_DICOM_PEERS": "CT01"}, ["dicom_peers", "ORTHWEB_DICOM_PEERS", "JSON list of peers"]),
    ({}, {"ORTHWEB_DICOM_PEERS": "[{]"}, ["dicom_peers", "JSON list of peers"]),
    *(
        ({"dicom_peers": [{**PEER, "certificate_subject": dn}], "dicom_client_ca": CA}, {}, ["dicom_peers", "RFC 2253"])
        for dn in BAD_SUBJECTS
    ),
    (
        {"dicom_peers": [{**PEER, "certificate_subject": "CN=ct01.example.org"}]},
        {},
        ["dicom_peers", "'CT01'", "certificate_subject", "set dicom_client_ca"],
    ),
    (
        {
            "dicom_peers": [{**PEER, "certificate_subject": "CN=a"}, {**MOVER, "certificate_subject": "CN=a"}],
            "dicom_client_ca": CA,
        },
        {},
        ["dicom_peers", "'WS1'", "'CN=a'", "already another peer's"],
    ),
    *(
        ({"dicom_peers": [{**PEER, **wide}], "dicom_client_ca": CA, **more}, {}, ["dicom_peers", *words])
        for wide, more, words in WIDE_READERS
    ),
    ({"web_users": {"ann": "viewer"}}, {}, ["web_users", "no user has the admin role"]),
    ({"web_users": {"admin": "admin", "ann": "root"}}, {}, ["web_users", "unknown role 'root'", "viewer"]),
    ({"web_users": {"admin": "admin", "Ann:x": "viewer"}}, {}, ["web_users", "'Ann:x'", "user name"]),
    # The health checks' own login is no web user's (docs/host.md, "Health checks").
    (
        {"web_users": {"admin": "admin", "orthweb-monitor": "viewer"}},
        {},
        ["web_users", "'orthweb-monitor'", "another name"],
    ),
    ({}, {"ORTHWEB_WEB_USERS": "admin=admin"}, ["web_users", "ORTHWEB_WEB_USERS", "JSON object"]),
    ({}, {"ORTHWEB_INSTANCE_TYPO": "t4g.small"}, ["unknown setting", "ORTHWEB_INSTANCE_TYPO", "ORTHWEB_INSTANCE_TYPE"]),
]


@pytest.mark.parametrize(("context", "environ", "words"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_refused_with_a_message_naming_setting_value_and_allowed(
    context: dict[str, Any], environ: dict[str, str], words: list[str]
) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.load(context, environ)
    message = str(err.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "\n" not in message


def test_every_setting_is_described_for_the_readme() -> None:
    rows = Settings.describe()
    assert len(rows) == len({r[0] for r in rows})
    assert all(help_ for _, _, help_ in rows)
    readme = (PROJECT_DIR / "README.md").read_text()
    for name, default, _ in rows:
        assert f"| `{name}` | `{default}` |" in readme, f"README settings table lacks {name}"


def test_a_peer_may_name_its_certificate_subject_with_the_client_ca() -> None:
    subject = "CN=ct01.example.org,O=Example Hospital (Main)+OU=Rad's,emailAddress=pacs@example.org"
    s = Settings(dicom_client_ca=CA, dicom_peers=[{**PEER, "certificate_subject": subject}])
    assert s.dicom_peers[0].certificate_subject == subject
    assert Settings(dicom_peers=[PEER]).dicom_peers[0].certificate_subject is None


def test_a_wide_network_may_read_only_with_a_certificate_and_store_without() -> None:
    wide = {**PEER, "cidr": "10.0.0.0/8", "permissions": ["find", "get"]}
    assert Settings(dicom_client_ca=CA, dicom_peers=[{**wide, "certificate_subject": "CN=ct01"}]).dicom_peers
    # Storing (and echo) from a wide network reads nothing; a /16 may read without a certificate.
    assert Settings(dicom_peers=[{**PEER, "cidr": "10.0.0.0/8", "permissions": ["store"]}]).dicom_peers
    assert Settings(dicom_peers=[{**wide, "cidr": "10.0.0.0/16"}]).dicom_peers
    # With several peers, dicom_cidrs may hold only their networks, so it widens none.
    narrow = {**wide, "cidr": "10.0.0.0/16"}
    two = [narrow, {**PEER, "aet": "ST", "cidr": "10.0.0.0/8"}]
    assert Settings(dicom_peers=two, dicom_cidrs=["10.0.0.0/8"]).dicom_peers


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of the app's entry files, so running main.py never touches the real cdktf.out."""
    for name in ("main.py", "cdktf.json"):
        shutil.copy(PROJECT_DIR / name, tmp_path / name)
    return tmp_path


def _run_main(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORTHWEB_")}
    return subprocess.run(
        [sys.executable, "main.py"],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_main_refuses_bad_environment_with_one_line_and_writes_nothing(project_copy: Path) -> None:
    proc = _run_main(project_copy, {"ORTHWEB_AZ_COUNT": "9"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "orthweb: setting 'az_count' (from ORTHWEB_AZ_COUNT) has value 9; allowed: an integer from 2 to 4"
    ]
    assert not (project_copy / "cdktf.out").exists()


def test_main_refuses_unknown_key_in_cdktf_json(project_copy: Path) -> None:
    config = json.loads((project_copy / "cdktf.json").read_text())
    config["context"]["orthweb"] = {"vpc_cidr": "10.9.0.0/16", "colour": "blue"}
    (project_copy / "cdktf.json").write_text(json.dumps(config))
    proc = _run_main(project_copy, {})
    assert proc.returncode == 2
    assert "unknown setting 'colour' in cdktf.json context.orthweb" in proc.stderr
    assert not (project_copy / "cdktf.out").exists()


def test_several_hosts_with_images_anywhere_are_accepted_with_the_database_in_two_zones() -> None:
    s = Settings.load({"hosts": 4, "storage": "s3", "db_multi_az": True, "endpoints_in_all_azs": True}, {})
    assert s.multi_host
    assert Settings(**_MANY).storage == "postgresql"  # images may stay in PostgreSQL (docs/scaling.md)
    assert not Settings().multi_host


@pytest.mark.parametrize("db_class", ["db.t4g.micro", "db.t3.micro", "db.m7g.large", "db.r6g.2xlarge"])
def test_ten_hosts_fit_every_known_class_with_images_in_postgresql(db_class: str) -> None:
    # The smallest class, db.t4g.micro (about 84 connections), takes 11 hosts x 6 + 10 reserved = 76.
    Settings(**{**_MANY, "hosts": 10, "db_instance_class": db_class})
