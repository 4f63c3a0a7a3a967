"""The rendered user data and application files: valid for cloud-init, compose, nginx and
shellcheck, within EC2's size limit, and holding no secret."""

from __future__ import annotations

import configparser
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from orthweb.bootstrap import (
    BUNDLE_KEY,
    PEER_SOURCE_NETWORK,
    USER_DATA_BUDGET,
    USER_DATA_LIMIT,
    USERDATA_DIR,
    HostFacts,
    bundle_archive,
    bundle_files,
    compressed_size,
    dicom_modalities,
    render_app,
    render_user_data,
    strip_comments,
)
from orthweb.settings import MONITOR_IDENTITY, Settings, SettingsError, systemd_calendar
from orthweb_dev.testing import (
    NGINX_JS_MODULE,
    NGINX_STREAM_MODULE,
    cloud_config_problems,
    compose_on_host,
    compose_problems,
    host_files,
    nginx_check_config,
    require,
    shellcheck_problems,
    user_data_files,
)

# The only environment a container gets (default settings): DCMTK socket tuning, the image's
# host-id switch (a read-only root filesystem) and its plugin switches, never a secret.
NON_SECRET_ENVIRONMENT = {
    "TCP_NODELAY": "1",
    "GENERATE_HOST_ID_IF_MISSING": "false",
    "DICOM_WEB_PLUGIN_ENABLED": "true",
    "ORTHANC_EXPLORER_2_ENABLED": "true",
    "STONE_WEB_VIEWER_PLUGIN_ENABLED": "true",
    "OHIF_PLUGIN_ENABLED": "false",
}

FACTS = HostFacts(
    region="us-east-1",
    db_address="orthweb-db.c9akciq32.us-east-1.rds.amazonaws.com",
    db_port="5432",
    db_name="orthanc",
    db_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-0f5f4c7e-2c1b-4a8e-9d1e-5b0b7c1d2e3f-AbCdEf",
    admin_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:orthweb/orthanc-admin-20250101000000000000000001-AbCdEf",
    bundle_bucket="orthweb-host-files-20250101000000000000000002",
    bundle_version="3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
)
# What the stack passes: Terraform references, filled in at apply time.
TF_FACTS = HostFacts(
    region="us-east-1",
    db_address="${aws_db_instance.Database_Instance_1A2B3C4D.address}",
    db_port="5432",
    db_name="orthanc",
    db_secret_arn="${aws_db_instance.Database_Instance_1A2B3C4D.master_user_secret[0].secret_arn}",
    admin_secret_arn="${aws_secretsmanager_secret.AdminSecret_Secret_5E6F7A8B.arn}",
    bundle_bucket="${aws_s3_bucket.HostFiles_Bucket_9C0D1E2F.bucket}",
    bundle_version="${aws_s3_object.HostFiles_Bundle_3A4B5C6D.version_id}",
)
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
PEERS = [
    {"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store"]},
    {
        "aet": "WS-2",
        "cidr": "198.51.100.0/28",
        "permissions": ["find", "get", "move"],
        "host": "198.51.100.5",
        "port": 11112,
        "tls_name": "ws-2.example.org",
    },
    {"aet": "ARCHIVE", "cidr": "203.0.113.0/24", "permissions": []},
    # Bound to their certificates: MR01 in CT01's network, US-3 in a network listed inside it.
    {"aet": "MR01", "cidr": "203.0.113.0/24", "permissions": ["find"], "certificate_subject": "CN=mr01,O=Example"},
    {"aet": "US-3", "cidr": "203.0.113.64/26", "permissions": ["store"], "certificate_subject": "CN=us-3,O=Example"},
]
VARIANTS = {
    "defaults": Settings(),
    "everything-on": Settings(
        site_name="pacs.example.org",
        orthanc_aet="PACS_01",
        plain_dicom_in_vpc=True,
        dicom_client_ca=CA_PEM,
        dicom_peers=PEERS,
        dicom_cidrs=["203.0.113.0/24"],  # deprecated; with several peers, only a peer's own network
        web_users={"admin": "admin", "ann": "viewer", "upton": "uploader"},
        vpc_cidr="10.20.0.0/20",
        alarm_email="pacs-ops@example.org",
        patch_schedule="Mon..Fri 02:30",
        patch_reboot=False,
        patch_release="2023.9.20251117",
    ),
    "plain-http": Settings(https=False, web_cidrs=["10.0.0.0/8"], patch_schedule="off"),
    "cognito": Settings(
        login="cognito",
        domain_name="pacs.example.org",
        hosted_zone_id="Z0123456789ABCDEFGHIJ",
        web_users={"ann@example.org": "admin", "vic@example.org": "viewer"},
        alarm_email="pacs-ops@example.org",
    ),
}
SEVERAL_HOSTS = Settings(storage="s3", hosts=3, db_multi_az=True, endpoints_in_all_azs=True)
SCRIPTS = [*sorted((USERDATA_DIR / "bin").glob("*.sh")), USERDATA_DIR / "lib" / "common.sh"]


def written_files(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every file the host holds once booted (user data and bundle) by path: ``text`` and ``permissions``."""
    return {path: {"text": f.text, "permissions": f"{f.mode:04o}"} for path, f in host_files(settings, FACTS).items()}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, Settings]:
    return request.param, VARIANTS[request.param]


# --- user data ---------------------------------------------------------------------------------


def test_user_data_passes_cloud_init_schema(tmp_path: Path, variant: tuple[str, Settings]) -> None:
    assert cloud_config_problems(render_user_data(variant[1], FACTS), tmp_path) == ""


def test_user_data_is_a_small_bootstrap_within_its_budget(variant: tuple[str, Settings]) -> None:
    user_data = render_user_data(variant[1], FACTS)
    # The host's files travel in the bundle: the user data is the facts and the fetch step, far
    # under EC2's 16 KiB limit and Orthweb's own 4 KB budget (docs/scaling.md, "User data").
    assert compressed_size(user_data) <= USER_DATA_BUDGET < USER_DATA_LIMIT
    assert sorted(user_data_files(user_data)) == [
        "/etc/orthweb/orthweb.env",
        "/etc/systemd/system/orthweb-bootstrap.service",
        "/usr/local/sbin/orthweb-fetch",
    ]


def test_the_bundle_has_the_same_bytes_for_the_same_settings_anywhere(tmp_path: Path) -> None:
    """A re-synth, on this machine or a colleague's, uploads nothing new and replaces no host: the
    archive depends on the settings alone (not the time, time zone, umask, directory or the
    files' own modes and times in the checkout)."""
    here = bundle_archive(bundle_files(Settings()))
    assert here == bundle_archive(bundle_files(Settings()))
    code = (
        "import sys; from orthweb.bootstrap import bundle_archive, bundle_files; from orthweb.settings import Settings;"
        " sys.stdout.buffer.write(bundle_archive(bundle_files(Settings())))"
    )
    there = subprocess.run(
        ["bash", "-c", f'umask 077; exec "{sys.executable}" -c "{code}"'],
        cwd=tmp_path,
        env={**os.environ, "TZ": "Pacific/Kiritimati", "SOURCE_DATE_EPOCH": "1"},
        capture_output=True,
        check=True,
    ).stdout
    assert there == here
    assert bundle_archive(bundle_files(Settings(orthanc_aet="OTHER"))) != here


def test_the_bundle_is_a_plain_tar_of_root_owned_files_in_order_without_times(variant: tuple[str, Settings]) -> None:
    files = bundle_files(variant[1])
    archive = bundle_archive(files)
    assert archive[257:263] == b"ustar\x00"  # POSIX ustar, uncompressed
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
        contents = {m.name: tar.extractfile(m).read().decode() for m in members}  # type: ignore[union-attr]
    assert [m.name for m in members] == sorted(f.path.lstrip("/") for f in files)
    assert all(not m.name.startswith("/") and ".." not in m.name.split("/") for m in members)
    assert all(m.isreg() for m in members)  # no link, device or directory entry
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "root", "root", 0)}
    assert {m.name: m.mode for m in members} == {f.path.lstrip("/"): f.mode for f in files}
    assert contents == {f.path.lstrip("/"): f.text for f in files}


def test_the_user_data_names_the_bundle_by_version_and_sha256() -> None:
    env = user_data_files(render_user_data(Settings(), FACTS))["/etc/orthweb/orthweb.env"].text.splitlines()
    digest = hashlib.sha256(bundle_archive(bundle_files(Settings()))).hexdigest()
    assert f"ORTHWEB_BUNDLE_SHA256={digest}" in env
    assert f"ORTHWEB_BUNDLE_BUCKET={FACTS.bundle_bucket}" in env
    assert f"ORTHWEB_BUNDLE_KEY={BUNDLE_KEY}" in env
    assert f"ORTHWEB_BUNDLE_VERSION={FACTS.bundle_version}" in env
    other = user_data_files(render_user_data(Settings(orthanc_aet="OTHER"), FACTS))["/etc/orthweb/orthweb.env"]
    assert f"ORTHWEB_BUNDLE_SHA256={digest}" not in other.text.splitlines()


def test_every_template_is_rendered_and_the_bundle_holds_no_deployment_fact(variant: tuple[str, Settings]) -> None:
    files = host_files(variant[1], FACTS)
    for path, file in files.items():
        assert not re.search(r"\{\{ [a-z_]", file.text), path
    archive = bundle_archive(bundle_files(variant[1])).decode()
    # The facts (Terraform references in the stack) live in orthweb.env, in the user data only.
    for fact in (FACTS.db_address, FACTS.db_secret_arn, FACTS.admin_secret_arn, FACTS.bundle_bucket):
        assert fact not in archive


def test_bundle_files_are_the_rendered_templates_comments_and_all() -> None:
    """An operator reading a script on the host reads what the repository says: nothing is stripped."""
    files = written_files(VARIANTS["everything-on"])
    for path in (
        "/usr/local/sbin/orthweb-refresh",
        "/usr/local/sbin/orthweb-cert",
        "/usr/local/sbin/orthweb-bootstrap",
    ):
        source = (USERDATA_DIR / "bin" / (Path(path).name + ".sh")).read_text()
        shipped = files[path]["text"].splitlines()
        comments = [line for line in source.splitlines() if line.lstrip().startswith("#") and "{{" not in line]
        assert comments
        assert all(line in shipped for line in comments), path
    assert "# Never stop trying: a start that failed (Secrets Manager, the RDS CA download or Docker Hub not" in (
        files["/etc/systemd/system/orthweb.service"]["text"].splitlines()
    )


def test_user_data_files_reach_the_host_without_their_full_line_comments_and_nothing_else_changes() -> None:
    files = user_data_files(render_user_data(VARIANTS["everything-on"], FACTS))
    source = (USERDATA_DIR / "bin" / "orthweb-fetch.sh").read_text()
    shipped = files["/usr/local/sbin/orthweb-fetch"].text
    assert shipped.startswith("#!/bin/bash\n")
    assert "# shellcheck source=../orthweb.env" in shipped  # directives stay
    kept = [
        line
        for line in source.splitlines()
        if not line.strip().startswith("#") or line.strip().startswith(("#!", "# shellcheck"))
    ]
    assert shipped.rstrip("\n").splitlines() == kept
    # A here-document is data, comments and all: its lines are never touched.
    heredoc = "cat <<CONF\n# kept: inside the document\nCONF\n# dropped\necho <<<'# a here-string, not a document'"
    assert (
        strip_comments(heredoc, ".sh")
        == "cat <<CONF\n# kept: inside the document\nCONF\necho <<<'# a here-string, not a document'"
    )
    assert (
        strip_comments("-- a comment\nlocal x = 1 -- kept: not a full line\n", ".lua")
        == "local x = 1 -- kept: not a full line\n"
    )
    assert strip_comments('{"a": 1}\n', ".json") == '{"a": 1}\n'
    unit = files["/etc/systemd/system/orthweb-bootstrap.service"].text
    assert not any(line.startswith("#") for line in unit.splitlines())


def test_terraform_rendering_escapes_shell_and_leaves_only_the_facts() -> None:
    text = render_user_data(Settings(), TF_FACTS, for_terraform=True)
    env = user_data_files(text)["/etc/orthweb/orthweb.env"].text
    assert "ORTHWEB_ADMIN_SECRET_ARN=${aws_secretsmanager_secret.AdminSecret_Secret_5E6F7A8B.arn}" in env
    assert "$${ORTHWEB_ENV_FILE:-/etc/orthweb/orthweb.env}" in text
    refs = re.findall(r"(?<!\$)\$\{([^}]*)\}", text)
    tf_refs = (
        TF_FACTS.db_address,
        TF_FACTS.db_secret_arn,
        TF_FACTS.admin_secret_arn,
        TF_FACTS.bundle_bucket,
        TF_FACTS.bundle_version,
    )
    assert sorted(set(refs)) == sorted({ref[2:-1] for ref in tf_refs})
    # Once Terraform has filled the references and unescaped `$${`, it is the plain rendering.
    filled = text.replace("$${", "${").replace("%%{", "%{")
    values = (FACTS.db_address, FACTS.db_secret_arn, FACTS.admin_secret_arn, FACTS.bundle_bucket, FACTS.bundle_version)
    for tf_ref, value in zip(tf_refs, values, strict=True):
        filled = filled.replace(tf_ref, value)
    assert filled == render_user_data(Settings(), FACTS)


def test_the_host_gets_its_files_with_tight_modes() -> None:
    files = written_files(Settings())
    scripts = [p for p in files if p.startswith("/usr/local/sbin/")]
    steps = ("archives", "bootstrap", "cert", "db-role", "fetch", "patch", "rds-ca", "refresh", "secrets")
    assert sorted(scripts) == [f"/usr/local/sbin/orthweb-{n}" for n in steps]
    assert all(files[p]["permissions"] == "0700" for p in scripts)
    for name in ("docker-compose.yml", "orthanc.json", "nginx.conf", "orthanc-roles.lua"):
        assert f"/etc/orthweb/{name}" in files
    units = ["orthweb-bootstrap.service", "orthweb.service", "orthweb-refresh.service", "orthweb-refresh.timer"]
    units += ["orthweb-patch.service", "orthweb-patch.timer", "etc-orthweb-secrets.mount"]
    assert sorted(p.rsplit("/", 1)[1] for p in files if p.startswith("/etc/systemd/system/")) == sorted(units)
    assert all(files[f"/etc/systemd/system/{unit}"]["permissions"] == "0644" for unit in units)
    assert "/etc/orthweb/tls/dicom-client-ca.pem" not in files
    doc = yaml.safe_load(render_user_data(Settings(), FACTS))
    # cloud-init only starts the bootstrap unit; systemd retries it until it has run once, and
    # its first step is the fetch: nothing of the bundle runs before its SHA-256 was checked.
    assert doc["runcmd"] == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "--no-block", "orthweb-bootstrap.service"],
    ]
    unit = files["/etc/systemd/system/orthweb-bootstrap.service"]["text"].splitlines()
    assert unit.index("ExecStartPre=/usr/local/sbin/orthweb-fetch") < unit.index(
        "ExecStart=/usr/local/sbin/orthweb-bootstrap"
    )
    assert {"Restart=on-failure", "RestartSec=30s", "StartLimitIntervalSec=0"} <= set(unit)


@pytest.mark.parametrize("login", ["basic", "cognito"])
def test_no_health_check_logs_in_as_an_admin(login: str) -> None:
    """Every health check logs in to Orthanc as the monitoring identity (role "monitor", GET
    /changes alone), never as the first web user or the admin role identity."""
    app = render_app(VARIANTS[login if login == "cognito" else "everything-on"])
    for script in ("orthweb-probe.sh", "orthweb-health.sh"):
        text = (USERDATA_DIR / "bin" / script).read_text()
        assert re.search(r"^  login=\$\(monitor_login( 2>/dev/null)?\) \|\| return 1$", text, flags=re.M), script
        assert "to_entries[0]" not in text, script  # not "the first user"
        assert "REGISTERED_USERS" not in text, script
    common = (USERDATA_DIR / "lib" / "common.sh").read_text()
    assert f': "${{ORTHWEB_MONITOR_USER:={MONITOR_IDENTITY}}}"' in common
    # The image's own healthcheck names the identity (the stand-in's takes the first user: the monitor's).
    orthanc = yaml.safe_load(app["docker-compose.yml"])["services"]["orthanc"]
    assert orthanc["healthcheck"]["test"] == ["CMD", "/probes/test-aliveness.py", "--user", MONITOR_IDENTITY]
    lua = app["orthanc-roles.lua"]
    assert f'["{MONITOR_IDENTITY}"] = "monitor",' in lua
    nginx = app["nginx.conf"]
    if login == "cognito":
        probe = _block(nginx, "location = /_orthanc_changes {")
        assert "set $orthweb_role monitor;" in probe
        assert "admin" not in probe
    else:
        assert f'"{MONITOR_IDENTITY} GET /changes?last" 0;' in _block(nginx, 'map "$remote_user $request_method')


def test_the_host_learns_its_web_users_in_the_settings_order() -> None:
    settings = Settings(web_users={"ann": "viewer", "root": "admin", "upton": "uploader"})
    env = written_files(settings)["/etc/orthweb/orthweb.env"]["text"]
    assert 'ORTHWEB_WEB_USERS="ann root upton"' in env.splitlines()


def test_health_probe_is_on_the_host_only_with_alarms_and_the_patch_timer_unless_off() -> None:
    on = written_files(VARIANTS["everything-on"])
    for path in ("/usr/local/sbin/orthweb-probe", "/etc/systemd/system/orthweb-probe.timer"):
        assert path in on
        assert path not in written_files(Settings())
    assert "OnCalendar=Mon..Fri *-*-* 02:30:00 UTC" in on["/etc/systemd/system/orthweb-patch.timer"]["text"]
    assert "ORTHWEB_PATCH_REBOOT=false" in on["/etc/orthweb/orthweb.env"]["text"]
    assert "ORTHWEB_PATCH_RELEASE=2023.9.20251117" in on["/etc/orthweb/orthweb.env"]["text"].splitlines()
    default_env = written_files(Settings())["/etc/orthweb/orthweb.env"]["text"]
    assert "ORTHWEB_PATCH_RELEASE=latest" in default_env.splitlines()
    off = written_files(VARIANTS["plain-http"])
    assert "/etc/systemd/system/orthweb-patch.timer" not in off
    assert "/usr/local/sbin/orthweb-patch" in off  # for a patch run by hand: sudo orthweb-patch


def _timer(files: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The [Timer] section of the patch timer, key by key."""
    section, out = "", {}
    for line in files["/etc/systemd/system/orthweb-patch.timer"]["text"].splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Timer]" and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def _seconds(span: str) -> int:
    """A systemd time span such as 10min or 1h, in seconds."""
    match = re.fullmatch(r"(\d+)(min|h)", span)
    assert match, span
    return int(match[1]) * {"min": 60, "h": 3600}[match[2]]


def test_several_hosts_patch_each_at_its_own_fixed_offset_in_an_hour() -> None:
    """Hosts behind one load balancer must not patch together: each takes a fixed offset drawn from
    its machine ID (FixedRandomDelay) across an hour, the same every week; the patch step learns it
    is one of several, so it never restarts Docker nor reboots in place."""
    files = written_files(SEVERAL_HOSTS)
    timer = _timer(files)
    assert timer["FixedRandomDelay"] == "true"
    assert _seconds(timer["RandomizedDelaySec"]) >= 3600
    assert "ORTHWEB_MULTI_HOST=true" in files["/etc/orthweb/orthweb.env"]["text"].splitlines()


def test_one_host_patches_early_in_its_window() -> None:
    files = written_files(Settings())
    timer = _timer(files)
    assert timer.get("FixedRandomDelay", "false") == "false"
    assert _seconds(timer["RandomizedDelaySec"]) <= 600
    assert "ORTHWEB_MULTI_HOST=false" in files["/etc/orthweb/orthweb.env"]["text"].splitlines()


def test_dicom_client_ca_reaches_the_host_only_when_set() -> None:
    files = written_files(VARIANTS["everything-on"])
    assert files["/etc/orthweb/tls/dicom-client-ca.pem"]["text"] == CA_PEM


SECRET_PATTERNS = [
    re.compile(r"BEGIN [A-Z ]*PRIVATE KEY"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"postgres(ql)?://[^\s\"'\\]*:[^\s\"'@\\]+@"),  # a URI carrying a literal password
    re.compile(r'"(Password|RegisteredUsers|ConnectionUri)"\s*:', re.IGNORECASE),
    re.compile(r"secret_string|random_password|master_password", re.IGNORECASE),
]


@pytest.mark.parametrize("for_terraform", [False, True])
def test_user_data_holds_no_secret(variant: tuple[str, Settings], for_terraform: bool) -> None:
    facts = TF_FACTS if for_terraform else FACTS
    user_data = render_user_data(variant[1], facts, for_terraform=for_terraform)
    for text in [user_data, *(f.text for f in user_data_files(user_data).values())]:
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{pattern.pattern} found in rendered user data"


def test_the_bundle_holds_no_secret(variant: tuple[str, Settings]) -> None:
    files = bundle_files(variant[1])
    archive = bundle_archive(files).decode()  # ustar headers and the files' UTF-8 text
    for text in [archive, *(f.text for f in files)]:
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{pattern.pattern} found in the bundle"
    (compose,) = [compose_on_host(f.text) for f in files if f.path == "/etc/orthweb/docker-compose.yml"]
    # The only environment is the allow-listed, non-secret one above; secrets travel as files.
    assert all("env_file" not in svc for svc in compose["services"].values())
    orthanc = dict(NON_SECRET_ENVIRONMENT)
    if any("move" in peer.permissions for peer in variant[1].dicom_peers):  # Orthweb's C-MOVE service: a path
        orthanc["ORTHANC__PYTHON_SCRIPT"] = "/etc/orthweb/orthanc-move.py"
    assert {name: svc.get("environment", {}) for name, svc in compose["services"].items()} == {
        "orthanc": orthanc,
        "nginx": {},
    }


# --- scripts -----------------------------------------------------------------------------------


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = require("shellcheck", "shellcheck")
    run = subprocess.run(
        [shellcheck, "-x", "-P", "SCRIPTDIR", *map(str, SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_rendered_scripts_are_shellcheck_clean(tmp_path: Path) -> None:
    files = {path: entry["text"] for path, entry in written_files(VARIANTS["everything-on"]).items()}
    assert all(text.startswith("#!/bin/bash\n") for path, text in files.items() if path.startswith("/usr/local/sbin/"))
    assert shellcheck_problems(files, tmp_path) == ""


# --- systemd -----------------------------------------------------------------------------------

SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _host_root(root: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    """Lay the user data's files out under ``root`` as cloud-init would, beside the distribution's
    own units and stand-ins for Docker's; the Orthweb unit names."""
    for path, entry in files.items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(entry["text"])
        dest.chmod(int(entry["permissions"], 8))
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    # Docker comes from dnf on the host: a unit and binaries by the same names stand in for it.
    (root / "usr/lib/systemd/system/docker.service").write_text(
        "[Unit]\nDescription=Docker stand-in\n[Service]\nExecStart=/usr/bin/dockerd\n"
    )
    for binary in ("docker", "dockerd"):
        (root / "usr/bin" / binary).parent.mkdir(parents=True, exist_ok=True)
        (root / "usr/bin" / binary).write_text("#!/bin/sh\n")
        (root / "usr/bin" / binary).chmod(0o755)
    return sorted(Path(p).name for p in files if p.startswith("/etc/systemd/system/"))


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path, variant: tuple[str, Settings]) -> None:
    analyze = require("systemd-analyze", "systemd")
    if not (SYSTEM_UNITS / "multi-user.target").exists():
        pytest.fail(f"{SYSTEM_UNITS} has no systemd units: install the Debian package systemd")
    units = _host_root(tmp_path, written_files(variant[1]))
    run = subprocess.run([analyze, "verify", f"--root={tmp_path}", *units], capture_output=True, text=True, check=False)
    # A bad setting, a missing executable or an unknown key each print a line here.
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == ""


def test_several_hosts_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """FixedRandomDelay= is systemd 247's (AL2023 has 252): a systemd that knew no such key would say so here."""
    analyze = require("systemd-analyze", "systemd")
    units = _host_root(tmp_path, written_files(SEVERAL_HOSTS))
    assert "orthweb-patch.timer" in units
    run = subprocess.run([analyze, "verify", f"--root={tmp_path}", *units], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == ""


@pytest.mark.parametrize("schedule", ["Sun 03:00", "Mon..Fri 02:30", "Sat,Sun 23:59", "04:00"])
def test_patch_schedules_become_calendar_expressions_systemd_accepts(schedule: str) -> None:
    analyze = require("systemd-analyze", "systemd")
    run = subprocess.run([analyze, "calendar", systemd_calendar(schedule)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "Next elapse:" in run.stdout
    hour_minute = schedule.rsplit(" ", 1)[-1]
    assert f"{hour_minute}:00 UTC" in run.stdout  # "Normalized form: ... HH:MM:00 UTC"


def test_systemd_analyze_verify_sees_what_the_host_would_refuse(tmp_path: Path) -> None:
    """The check above is only worth something if it fails where systemd on the host would."""
    analyze = require("systemd-analyze", "systemd")
    files = written_files(Settings())
    service = files["/etc/systemd/system/orthweb.service"]
    service["text"] = service["text"].replace("Restart=on-failure", "Restart=always")  # oneshot: refused
    files["/usr/local/sbin/orthweb-refresh"]["permissions"] = "0600"  # not executable
    units = _host_root(tmp_path, files)
    run = subprocess.run([analyze, "verify", f"--root={tmp_path}", *units], capture_output=True, text=True, check=False)
    assert run.returncode != 0
    assert "Restart= set to either always or on-success, which isn't allowed for Type=oneshot" in run.stderr
    assert "/usr/local/sbin/orthweb-refresh is not executable" in run.stderr


# --- compose -----------------------------------------------------------------------------------


def test_compose_file_validates(tmp_path: Path, variant: tuple[str, Settings]) -> None:
    assert compose_problems(render_app(variant[1])["docker-compose.yml"], tmp_path) == ""


def test_orthanc_shares_nginx_network_namespace_and_publishes_nothing() -> None:
    for name, settings in VARIANTS.items():
        compose = compose_on_host(render_app(settings)["docker-compose.yml"])
        orthanc, nginx = compose["services"]["orthanc"], compose["services"]["nginx"]
        # One namespace owned by nginx: Orthanc is on no network and publishes no port, so its
        # ports are reachable only through nginx's loopback (and refused from anywhere else).
        assert orthanc["network_mode"] == "service:nginx", name
        for key in ("ports", "networks", "expose"):
            assert key not in orthanc, (name, key)
        assert nginx["networks"] == ["orthweb"], name
        assert list(compose["networks"]) == ["orthweb"], name
        assert "depends_on" not in nginx, name  # nginx starts first: it owns the namespace


def test_compose_publishes_only_nginx_ports_and_passes_secrets_as_files() -> None:
    default = compose_on_host(render_app(Settings())["docker-compose.yml"])
    everything = compose_on_host(render_app(VARIANTS["everything-on"])["docker-compose.yml"])
    plain_http = compose_on_host(render_app(VARIANTS["plain-http"])["docker-compose.yml"])
    orthanc, nginx = default["services"]["orthanc"], default["services"]["nginx"]
    assert orthanc["image"] == "orthancteam/orthanc:25.6.0"
    assert nginx["image"] == "nginx:1.28.0-alpine"
    assert nginx["ports"] == ["443:443", "11112:11112"]
    assert everything["services"]["nginx"]["ports"] == ["443:443", "11112:11112", "4242:11113"]
    assert plain_http["services"]["nginx"]["ports"] == ["80:80", "11112:11112"]
    assert sorted(orthanc["secrets"]) == ["ORTHANC__POSTGRESQL__CONNECTION_URI", "ORTHANC__REGISTERED_USERS"]
    for name, secret in default["secrets"].items():
        assert secret == {"file": f"/etc/orthweb/secrets/{name}"}
    for svc in (orthanc, nginx):
        assert svc["restart"] == "unless-stopped"
        assert svc["healthcheck"]["test"][0] == "CMD"
        assert svc.get("environment", {}) == (NON_SECRET_ENVIRONMENT if svc is orthanc else {})
    # nginx gets the TLS and login-hash directories, never the secrets directory.
    assert "/etc/orthweb/tls:/etc/nginx/tls:ro" in nginx["volumes"]
    assert "/etc/orthweb/nginx-auth:/etc/nginx/auth:ro" in nginx["volumes"]
    assert not any("/etc/orthweb/secrets" in v for v in nginx["volumes"])


def _mounts(svc: dict[str, Any]) -> dict[str, set[str]]:
    """tmpfs mount point -> its options."""
    return {m.split(":")[0]: set(m.split(":")[1].split(",")) if ":" in m else set() for m in svc["tmpfs"]}


def test_containers_drop_capabilities_and_run_read_only_with_limits() -> None:
    compose = compose_on_host(render_app(VARIANTS["everything-on"])["docker-compose.yml"])
    orthanc, nginx = compose["services"]["orthanc"], compose["services"]["nginx"]
    for svc in (orthanc, nginx):
        assert svc["cap_drop"] == ["ALL"]
        assert svc["read_only"] is True
        assert svc["security_opt"] == ["no-new-privileges:true"]
        assert "privileged" not in svc
        assert svc["pids_limit"] <= 512
        assert svc["mem_limit"].endswith("m")
        # Every host file or directory is mounted read-only, but the archive volume Orthanc builds
        # archives on (a volume of its own: it fills alone).
        writable = [v for v in svc["volumes"] if v.startswith("/") and not v.endswith(":ro")]
        assert writable == (["/etc/orthweb/archives:/var/lib/orthanc/tmp"] if svc is orthanc else [])
    # nginx: drop its workers to the nginx user; nothing else. It binds 443/80 as the namespace
    # allows (no NET_BIND_SERVICE).
    assert sorted(nginx["cap_add"]) == ["SETGID", "SETUID"]
    assert nginx["sysctls"] == {"net.ipv4.ip_unprivileged_port_start": 0}
    assert "cap_add" not in orthanc
    assert int(orthanc["mem_limit"][:-1]) + int(nginx["mem_limit"][:-1]) <= 2048  # fits a t4g.small
    nginx_tmpfs, orthanc_tmpfs = _mounts(nginx), _mounts(orthanc)
    temp_paths = {f"/var/cache/nginx/{kind}_temp" for kind in ("client", "proxy", "fastcgi", "uwsgi", "scgi")}
    assert set(nginx_tmpfs) == {"/run", "/tmp", *temp_paths}
    for path in temp_paths:  # each temporary path already there, owned by the workers' user
        assert {"uid=101", "gid=101", "mode=0700"} <= nginx_tmpfs[path], path
        assert re.search(rf"^\s*\w+_temp_path {path};$", render_app(Settings())["nginx.conf"], re.M), path
    assert not any("exec" in opts for opts in nginx_tmpfs.values())
    # The image copies plugins to /run/orthanc/plugins and Orthanc loads them: exec there only.
    assert set(orthanc_tmpfs) == {"/tmp", "/run/orthanc/plugins"}
    assert "exec" in orthanc_tmpfs["/run/orthanc/plugins"]
    assert "exec" not in orthanc_tmpfs["/tmp"]
    # Archives and media are built on the archive volume (mounted at ./archives), not in memory
    # and not on the root volume; nothing else of Orthanc's is written to disk.
    assert "/etc/orthweb/archives:/var/lib/orthanc/tmp" in orthanc["volumes"]
    assert "volumes" not in yaml.safe_load(render_app(Settings())["docker-compose.yml"])  # no named volume
    for settings in (Settings(), VARIANTS["everything-on"]):
        config = json.loads(render_app(settings)["orthanc.json"])
        assert config["TemporaryDirectory"] == "/var/lib/orthanc/tmp"
        # Synchronous archives are streamed, never through the archive volume (Orthanc >= 1.9.4's default).
        assert config["SynchronousZipStream"] is True
    assert "user nginx;" in render_app(Settings())["nginx.conf"].splitlines()


# --- orthanc.json ------------------------------------------------------------------------------


def test_orthanc_json_parses_and_holds_the_required_settings() -> None:
    config = json.loads(render_app(VARIANTS["everything-on"])["orthanc.json"])
    assert config["DicomAet"] == "PACS_01"
    assert config["DicomPort"] == 4242
    assert config["StorageCompression"] is False
    assert config["KeepAlive"] is True
    assert config["TcpNoDelay"] is True
    assert 1 <= config["DicomThreadsCount"] <= 16
    assert 1 <= config["HttpThreadsCount"] <= 100
    pg = config["PostgreSQL"]
    assert pg["EnableIndex"] is True
    assert pg["EnableStorage"] is True
    assert 1 <= pg["IndexConnectionsCount"] <= 20
    # The connection (with verify-full TLS) and the users come only from the secret files.
    assert not {"ConnectionUri", "Password", "Username", "Host", "EnableSsl"} & pg.keys()
    assert "RegisteredUsers" not in config
    assert json.loads(render_app(Settings())["orthanc.json"])["DicomAet"] == "ORTHANC"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_orthanc_serves_http_only_to_loopback_with_logins_and_the_role_filter(name: str) -> None:
    config = json.loads(render_app(VARIANTS[name])["orthanc.json"])
    # Orthanc treats exactly 127.0.0.1 as local: nginx in the same namespace, nothing else.
    assert config["RemoteAccessAllowed"] is False
    assert config["AuthenticationEnabled"] is True
    # The roles filter, and the audit of DICOM finds and of every stored instance.
    assert config["LuaScripts"] == ["/etc/orthweb/orthanc-roles.lua", "/etc/orthweb/orthanc-audit.lua"]
    assert config["ExecuteLuaEnabled"] is False
    assert config["HttpDescribeErrors"] is False
    assert config["WebDavEnabled"] is False
    compose = compose_on_host(render_app(VARIANTS[name])["docker-compose.yml"])
    assert (
        "/etc/orthweb/orthanc-roles.lua:/etc/orthweb/orthanc-roles.lua:ro"
        in (compose["services"]["orthanc"]["volumes"])
    )


ALWAYS_ALLOW = [f"DicomAlwaysAllow{k}" for k in ("Echo", "Store", "Find", "FindWorklist", "Get", "Move")]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_orthanc_dicom_accepts_only_listed_peers_each_with_its_permissions(name: str) -> None:
    settings = VARIANTS[name]
    config = json.loads(render_app(settings)["orthanc.json"])
    # Any DicomAlwaysAllow* true would let every calling AET associate.
    assert all(config[key] is False for key in ALWAYS_ALLOW)
    assert config["DicomCheckCalledAet"] is True
    assert config["DicomCheckModalityHost"] is True
    modalities = config["DicomModalities"]
    assert set(modalities) == {p.aet for p in settings.dicom_peers}
    for peer in settings.dicom_peers:
        m = modalities[peer.aet]
        assert m["AET"] == peer.aet
        # nginx connects from the loopback address of the caller's network: the AET's only address.
        assert ipaddress.ip_address(m["Host"]) in PEER_SOURCE_NETWORK
        assert m["AllowEcho"] is True
        for permission in ("store", "find", "get", "move"):
            assert m[f"Allow{permission.capitalize()}"] is (permission in peer.permissions), (peer.aet, permission)
        assert m["AllowFindWorklist"] is False
        assert m["AllowStorageCommitment"] is False


def stream_entries(nginx: str, start: str) -> dict[str, str]:
    """The ``key value;`` entries of the stream block that begins with ``start``, in order."""
    block = nginx[nginx.index(start) :].split("}", maxsplit=1)[0]
    return dict(re.findall(r"^\s*(\S+|\"[^\"]*\") (\S+);$", block, flags=re.M))


def network_sources(nginx: str) -> dict[str, str]:
    """Caller network -> the address nginx connects to Orthanc from for a caller of that network
    who presents no peer's certificate (geo names the network, a map gives its address)."""
    geo = stream_entries(nginx, "geo $dicom_network {")
    sources = stream_entries(nginx, "map $dicom_network $dicom_network_source {")
    return {cidr: sources.get(name, sources["default"]) for cidr, name in geo.items()}


def test_each_aet_is_bound_to_its_peers_network_or_its_certificate() -> None:
    """A peer cannot call with the AET of a peer listed in another network: nginx connects to
    Orthanc from its network's own loopback address, and that address is the AET's only Host. A
    peer with a certificate subject has an address of its own, which no network maps to."""
    settings = VARIANTS["everything-on"]
    rendered = render_app(settings)
    modalities = json.loads(rendered["orthanc.json"])["DicomModalities"]
    networks = network_sources(rendered["nginx.conf"])
    for peer in settings.dicom_peers:
        if peer.certificate_subject is None:
            assert networks[peer.cidr] == modalities[peer.aet]["Host"], peer.aet
        else:
            assert modalities[peer.aet]["Host"] not in networks.values(), peer.aet
    # Different networks, different addresses; one network (CT01 and ARCHIVE), one address.
    assert modalities["CT01"]["Host"] != modalities["WS-2"]["Host"]
    assert modalities["CT01"]["Host"] == modalities["ARCHIVE"]["Host"]
    hosts = [m["Host"] for m in modalities.values()]
    assert len(set(hosts)) == len(hosts) - 1  # only CT01 and ARCHIVE share one
    # A caller of no peer's network reaches Orthanc from an address no modality has.
    assert networks["default"] not in hosts
    # Every DICOM listener (TLS, and plain DICOM from the VPC) connects from the mapped address.
    for listen in ("listen 11112 ssl;", "listen 11113;"):
        server = rendered["nginx.conf"].split(listen)[1].split("}")[0]
        assert "proxy_bind $dicom_peer_source;" in server, listen


def test_deprecated_dicom_cidrs_belong_to_the_only_peer_and_are_refused_with_several() -> None:
    one = Settings(dicom_peers=PEERS[:1], dicom_cidrs=["192.0.2.0/28"])
    networks = network_sources(render_app(one)["nginx.conf"])
    assert networks["192.0.2.0/28"] == networks["203.0.113.0/24"] == dicom_modalities(one)["CT01"]["Host"]
    with pytest.raises(SettingsError, match=r"dicom_cidrs.*192\.0\.2\.0/28.*cannot say whose"):
        Settings.load({"dicom_peers": [PEERS[0], PEERS[2]], "dicom_cidrs": ["192.0.2.0/28"]}, {})
    # A network that already is a peer's adds nothing and is accepted with any number of peers.
    assert Settings(dicom_peers=[PEERS[0], PEERS[2]], dicom_cidrs=["203.0.113.0/24"]).dicom_cidrs


def test_c_move_goes_to_the_peer_through_a_loopback_tls_relay() -> None:
    rendered = render_app(VARIANTS["everything-on"])
    modalities = json.loads(rendered["orthanc.json"])["DicomModalities"]
    relay = modalities["WS-2"]["Port"]
    nginx = rendered["nginx.conf"]
    # The relay listens where Orthanc sends the peer's C-MOVE: its modality's Host and Port.
    block = nginx[nginx.index(f"listen {modalities['WS-2']['Host']}:{relay};") :].split("}")[0]
    assert "proxy_pass 198.51.100.5:11112;" in block
    assert "proxy_ssl on;" in block
    assert "proxy_ssl_verify on;" in block
    assert "proxy_ssl_name ws-2.example.org;" in block
    assert "proxy_ssl_trusted_certificate /etc/nginx/tls/dicom-client-ca.pem;" in block
    # Peers without move have no destination: a port nothing listens on in the namespace.
    assert modalities["CT01"]["Port"] == modalities["ARCHIVE"]["Port"] == 9
    assert nginx.count("proxy_ssl on;") == 1


def test_the_role_filter_holds_exactly_the_configured_users() -> None:
    lua = render_app(VARIANTS["everything-on"])["orthanc-roles.lua"]
    roles = dict(re.findall(r'^\s*\["([^"]+)"\] = "([^"]+)",$', lua, flags=re.M))
    assert roles == {MONITOR_IDENTITY: "monitor", "admin": "admin", "ann": "viewer", "upton": "uploader"}
    assert "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)" in lua
    # Default deny: the function's last word refuses whatever no rule allowed.
    body = lua[lua.index("function IncomingHttpRequestFilter") :]
    assert body.rstrip().endswith("return false -- PUT, DELETE\nend")


# --- nginx -------------------------------------------------------------------------------------


def _test_certificate(tls: Path) -> None:
    tls.mkdir()
    subprocess.run(
        [
            require("openssl", "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=test.invalid", "-keyout", str(tls / "server.key"), "-out", str(tls / "server.crt"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    shutil.copy(tls / "server.crt", tls / "dicom-client-ca.pem")


def test_nginx_accepts_the_rendered_configuration(tmp_path: Path, variant: tuple[str, Settings]) -> None:
    nginx = require("nginx", "nginx-light")
    if not NGINX_STREAM_MODULE.exists():
        pytest.fail(f"{NGINX_STREAM_MODULE} is missing: install the Debian package libnginx-mod-stream")
    tls = tmp_path / "tls"
    _test_certificate(tls)
    auth = tmp_path / "auth"
    auth.mkdir()
    (auth / "logins.map").write_text('"admin" "AAAAAAAAAAAAAAAAAAAAAA";\n')
    if variant[1].cognito:  # what orthweb-oidc writes, and the verifier the bundle carries
        if not NGINX_JS_MODULE.exists():
            pytest.fail(f"{NGINX_JS_MODULE} is missing: install the Debian package libnginx-mod-http-js")
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "roles.map").write_text('admin "Basic AAAA";\n')
        (tmp_path / "orthweb-oidc.js").write_text(written_files(variant[1])["/etc/orthweb/orthweb-oidc.js"]["text"])
    (tmp_path / "nginx.conf").write_text(nginx_check_config(render_app(variant[1])["nginx.conf"], tmp_path))
    run = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test is successful" in run.stderr


def _block(conf: str, start: str) -> str:
    """The text of the block that begins at the first line holding ``start``, up to its closing brace."""
    i = conf.index(start)
    depth, j = 0, conf.index("{", i)
    for j in range(conf.index("{", i), len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[j], 0)
        if depth == 0:
            break
    return conf[i : j + 1]


def test_nginx_serves_tls_12_13_with_hsts_and_streams_dicom_tls() -> None:
    https = render_app(Settings())["nginx.conf"]
    assert "listen 443 ssl;" in https
    assert "listen 80;" not in https
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in https
    assert "client_max_body_size 0;" in https
    assert "proxy_request_buffering off;" in https
    assert "listen 11112 ssl;" in https
    assert "listen 11113;" not in https
    assert "ssl_verify_client" not in https
    everything = render_app(VARIANTS["everything-on"])["nginx.conf"]
    plain_dicom = _block(everything, "listen 11113;")
    assert "allow 10.20.0.0/20;" in plain_dicom
    assert "deny all;" in plain_dicom
    assert "ssl_verify_client on;" in _block(everything, "server {\n    listen 11112 ssl;")
    plain = render_app(VARIANTS["plain-http"])["nginx.conf"]
    assert "listen 80;" in plain
    assert "listen 443" not in plain
    assert "Strict-Transport-Security" not in plain
    assert "listen 11112 ssl;" in plain  # DICOM stays encrypted even when the web UI is not


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_nginx_reaches_orthanc_only_on_loopback(name: str) -> None:
    settings = VARIANTS[name]
    conf = render_app(settings)["nginx.conf"]
    upstreams = re.findall(r"proxy_pass (\S+);", conf)
    to_orthanc = [u for u in upstreams if re.match(r"(http://)?127\.0\.0\.1:(8042|4242)\b", u)]
    assert {re.sub(r"/.*", "", u.removeprefix("http://")) for u in to_orthanc} == {"127.0.0.1:8042", "127.0.0.1:4242"}
    others = [u for u in upstreams if u not in to_orthanc]
    if settings.cognito:
        # The public keys (AWS's endpoints, from oidc.json), over verified TLS, by Docker's resolver.
        assert others.count("$arg_url") == 1
        others.remove("$arg_url")
        # The health port's answer, once Orthanc answered: nginx's own health endpoint, in its container.
        others.remove("http://127.0.0.1:8080/healthz")
        assert "proxy_ssl_verify on;" in conf
        assert re.findall(r"^\s*resolver (\S+)", conf, flags=re.M) == ["127.0.0.11"]
    else:
        assert "resolver" not in conf  # no Docker DNS name: nothing to resolve
    # Anything else is a C-MOVE relay to a peer, over TLS (test above).
    assert len(others) == conf.count("proxy_ssl on;")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_nginx_dicom_listener_admits_only_the_peers_networks(name: str) -> None:
    settings = VARIANTS[name]
    listener = _block(render_app(settings)["nginx.conf"], "server {\n    listen 11112 ssl;")
    rules = re.findall(r"^\s*(allow|deny) (\S+);", listener, flags=re.M)
    assert rules == [*(("allow", c) for c in settings.dicom_ingress_cidrs), ("deny", "all")]


def test_nginx_throttles_only_wrong_logins_by_user_and_by_address() -> None:
    conf = render_app(Settings())["nginx.conf"]
    location = _block(conf, "location / {")
    server = _block(conf, "  server {\n    listen 443 ssl;")
    # The login is checked for every request of the server (its log line says which it was).
    assert "secure_link $orthweb_login_md5;" in server.replace(location, "")
    assert 'secure_link_md5 "$http_authorization";' in server.replace(location, "")
    # Two zones, both in the proxied location: by the user name a wrong login claims, and by address.
    zones = dict(re.findall(r"limit_req_zone \$(\w+) zone=(\w+):\S+ rate=\d+r/m;", conf))
    assert zones == {
        "orthweb_guess_address": "orthweb_guesses_by_address",
        "orthweb_guess_user": "orthweb_guesses_by_user",
    }
    assert sorted(re.findall(r"limit_req zone=(\w+) burst=\d+ nodelay;", location)) == sorted(zones.values())
    # Only a wrong login has a key (an empty key is not counted): a right one and none have none.
    login = _block(conf, 'map "$secure_link:$http_authorization" $orthweb_login {')
    assert re.findall(r'"([^"]+)" "(\w+)";', login) == [("~^1:", "ok"), ("~^:$", "none")]
    assert 'default "wrong";' in login
    # By user, the configured user's login hash: one fixed-size key per configured user, never a
    # name the client makes up (which could flush the zone).
    for key, value in (("orthweb_guess_address", "$binary_remote_addr"), ("orthweb_guess_user", "$orthweb_login_md5")):
        keyed = _block(conf, f"map $orthweb_login ${key} {{")
        assert re.findall(r"^\s*(\S+) (\S+);", keyed, flags=re.M) == [('"wrong"', value), ("default", '""')]
    assert "limit_req_status 429;" in conf
    assert "include /etc/nginx/auth/logins.map;" in conf


def test_nginx_refuses_cross_site_requests_and_method_overrides_before_anything_else() -> None:
    conf = render_app(Settings())["nginx.conf"]
    server = _block(conf, "  server {\n    listen 443 ssl;")
    refusals = re.findall(r"if \(\$(\w+)\) \{\s*return (\d+);", server)
    assert refusals == [
        ("orthweb_monitor_refused", "403"),  # the monitoring identity: GET /changes?last alone
        ("orthweb_cors_preflight", "204"),
        ("orthweb_method_override", "403"),
        ("orthweb_cross_site", "403"),
    ]
    override = _block(conf, 'map "$orthweb_method_in_args|')
    for header in ("$http_x_http_method_override", "$http_x_http_method", "$http_x_method_override"):
        assert header in override


def test_nginx_logs_the_user_of_every_request_and_each_dicom_connection() -> None:
    conf = render_app(VARIANTS["everything-on"])["nginx.conf"]
    http_format = conf[conf.index("log_format orthweb") : conf.index("access_log /dev/stdout orthweb;")]
    for variable in ("$remote_user", "$remote_addr", "$status", "$uri", "$request_method"):
        assert variable in http_format
    # Query strings (QIDO searches) can hold patient names: never logged.
    assert "$request_uri" not in http_format
    assert "$args" not in http_format
    stream_format = conf[conf.index("log_format dicom") : conf.index("access_log /dev/stdout dicom;")]
    for variable in ("$remote_addr", "$ssl_protocol", "$ssl_client_verify", "$bytes_received", "$bytes_sent"):
        assert variable in stream_format
    for variable in ("$session_time", "$status"):
        assert variable in stream_format


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_secret_files_live_in_memory_and_every_reader_waits_for_it(variant: str) -> None:
    """orthweb-secrets writes the database URI and every web password under the secrets directory:
    a tmpfs (mode 0700, nothing executable), mounted before orthweb.service and the health check
    read or write it. Never on the root volume."""
    files = written_files(VARIANTS[variant])
    common = (USERDATA_DIR / "lib" / "common.sh").read_text()
    assert ': "${ORTHWEB_SECRETS_DIR:=$ORTHWEB_ETC/secrets}"' in common
    assert ': "${ORTHWEB_ETC:=/etc/orthweb}"' in common
    where = "/etc/orthweb/secrets"
    mount = configparser.ConfigParser(strict=False)
    mount.read_string(files["/etc/systemd/system/etc-orthweb-secrets.mount"]["text"])
    assert (mount["Mount"]["What"], mount["Mount"]["Where"], mount["Mount"]["Type"]) == ("tmpfs", where, "tmpfs")
    assert {"mode=0700", "nosuid", "nodev", "noexec"} <= set(mount["Mount"]["Options"].split(","))
    readers = [p for p in files if p.endswith(("/orthweb.service", "/orthweb-health@.service"))]
    assert "/etc/systemd/system/orthweb.service" in readers
    for unit in readers:
        assert f"RequiresMountsFor={where}" in files[unit]["text"].splitlines(), unit
    # The other units that run the steps need orthweb.service (and so the mount) up first.
    for unit in ("orthweb-refresh.service", "orthweb-probe.service"):
        path = f"/etc/systemd/system/{unit}"
        if path in files:
            assert "Requisite=orthweb.service" in files[path]["text"].splitlines(), unit
