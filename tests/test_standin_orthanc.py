"""The Orthanc stand-in image's configurator, entrypoint and healthcheck (dev/images/orthanc/rootfs),
which play the orthancteam/orthanc image's parts: the configuration is the JSON files, then the
environment and secrets, then defaults; plugins are switched on by variables and sections; the
result is private to its owner, and no secret value is ever printed."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orthweb_dev import PROJECT_DIR
from orthweb_dev.testing import require

pytestmark = pytest.mark.fast

ROOTFS = PROJECT_DIR / "dev" / "images" / "orthanc" / "rootfs"
CONFIGURE = ROOTFS / "usr" / "local" / "bin" / "orthanc-configure"
PROBE = ROOTFS / "probes" / "test-aliveness.py"
# Debian 12's plugin libraries, as the orthanc-* packages name them in /usr/lib/orthanc.
LIBRARIES = (
    "libOrthancDicomWeb.so.1.7",
    "libOrthancPostgreSQLIndex.so.4.0",
    "libOrthancPostgreSQLStorage.so.4.0",
    "libOrthancWebViewer.so.2.8",
    "libOrthancPython.so.4.0",
)
DB_URI = "postgresql://orthanc:uri-secret-$x@db.example:5432/orthanc?sslmode=verify-full"
USERS = {"admin": "users-secret-$HOME"}


@dataclass
class Run:
    returncode: int
    output: str  # stdout and stderr
    config: dict[str, Any] | None  # /tmp/orthanc.json, when written
    plugins: list[str]  # what /run/orthanc/plugins holds


def configure(
    root: Path, files: dict[str, str] | None = None, libraries: tuple[str, ...] = LIBRARIES, **env: str
) -> Run:
    """Runs orthanc-configure with ``root`` as the image's root, holding Debian's plugin
    ``libraries`` and ``files`` (by path under root), in an environment of ``env`` alone."""
    (root / "usr/lib/orthanc").mkdir(parents=True, exist_ok=True)
    for name in libraries:
        (root / "usr/lib/orthanc" / name).write_text(f"fake {name}")
    for path, text in (files or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    run = subprocess.run(
        [sys.executable, str(CONFIGURE)],
        env={"PATH": os.environ["PATH"], "ORTHANC_CONFIGURE_ROOT": str(root), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    output = root / "tmp" / "orthanc.json"
    plugins = root / "run" / "orthanc" / "plugins"
    return Run(
        run.returncode,
        run.stdout + run.stderr,
        json.loads(output.read_text()) if output.exists() else None,
        sorted(p.name for p in plugins.iterdir()) if plugins.is_dir() else [],
    )


# --- configuration -----------------------------------------------------------------------------


def test_json_files_are_merged_in_order_with_comments_and_environment_references(tmp_path: Path) -> None:
    files = {
        "etc/orthanc/a.json": """{
            // line comment; "quotes" in a comment are no string
            "Name": "from-a", "DicomAet": "$AET",
            /* block
               comment */
            "DicomWeb": {"Root": "/dicom-web/", "Host": "http://x//y"},
            "LuaScripts": ["a.lua"]
        }""",
        "etc/orthanc/b.json": '{"Name": "from-b", "DicomWeb": {"Enable": true}, "LuaScripts": ["b.lua"]}',
        "run/secrets/c.json": '{"Name": "${NAME}-from-c", "Missing": "[$UNSET]"}',
    }
    run = configure(tmp_path, files, AET="ORTHWEB", NAME="secret-json")
    assert run.returncode == 0, run.output
    assert run.config is not None
    assert run.config["Name"] == "secret-json-from-c"  # /run/secrets/*.json after /etc/orthanc/*.json
    assert run.config["DicomAet"] == "ORTHWEB"
    assert run.config["Missing"] == "[]"  # an unset variable is empty, as envsubst has it
    # Objects are merged key by key; lists and values are replaced; "//" inside a string stays.
    assert run.config["DicomWeb"] == {"Root": "/dicom-web/", "Host": "http://x//y", "Enable": True}
    assert run.config["LuaScripts"] == ["b.lua"]
    assert f"merged {tmp_path}/etc/orthanc/a.json, {tmp_path}/etc/orthanc/b.json, {tmp_path}/run/secrets/c.json" in (
        run.output
    )


def test_orthanc_json_and_named_variables_are_merged_over_the_files(tmp_path: Path) -> None:
    files = {"etc/orthanc/orthweb.json": '{"PostgreSQL": {"EnableIndex": true, "Lock": false}, "HttpPort": 1}'}
    run = configure(
        tmp_path,
        files,
        ORTHANC_JSON='{"PostgreSQL": {"Lock": true}, "DicomAet": "FROM-JSON"}',
        ORTHANC__POSTGRESQL__CONNECTION_URI=DB_URI,
        ORTHANC__DICOM_AET="FROM-VARIABLE",
        ORTHANC__HTTP_PORT="8042",
        ORTHANC__DICOMWEB__SSL="true",
        ORTHANC__OHIF__DATA_SOURCE="dicom-web",
        ORTHANC__ORTHANC_EXPLORER_2__IS_DEFAULT_ORTHANC_UI="false",
        ORTHANC__POSTGRESQL__ENABLE_STORAGE="false",
        ORTHANC__DICOM_MODALITIES='{"pacs": ["PACS", "10.0.0.1", 104]}',
    )
    assert run.returncode == 0, run.output
    assert run.config is not None
    assert run.config["PostgreSQL"] == {
        "EnableIndex": True,
        "Lock": True,
        "ConnectionUri": DB_URI,
        "EnableStorage": False,
    }
    assert run.config["DicomAet"] == "FROM-VARIABLE"  # named variables come after ORTHANC_JSON
    assert run.config["HttpPort"] == 8042
    assert run.config["DicomWeb"] == {"Ssl": True}
    assert run.config["OHIF"] == {"DataSource": "dicom-web"}
    assert run.config["OrthancExplorer2"] == {"IsDefaultOrthancUi": False}
    assert run.config["DicomModalities"] == {"pacs": ["PACS", "10.0.0.1", 104]}
    assert "set PostgreSQL.ConnectionUri from ORTHANC__POSTGRESQL__CONNECTION_URI (environment)" in run.output


def test_values_are_json_when_they_parse_and_strings_otherwise(tmp_path: Path) -> None:
    run = configure(
        tmp_path,
        ORTHANC__A="42",
        ORTHANC__B="true",
        ORTHANC__C="[1, 2]",
        ORTHANC__D="not json",
        ORTHANC__E='"quoted"',
        ORTHANC__F="",
    )
    assert run.config is not None
    assert {key: run.config[key] for key in "ABCDEF"} == {
        "A": 42,
        "B": True,
        "C": [1, 2],
        "D": "not json",
        "E": "quoted",
        "F": "",
    }


def test_a_secret_file_named_as_a_setting_is_that_setting_and_wins_over_the_variable(tmp_path: Path) -> None:
    files = {
        "run/secrets/ORTHANC__REGISTERED_USERS": json.dumps(USERS) + "\n",
        "run/secrets/ORTHANC__POSTGRESQL__CONNECTION_URI": DB_URI + "\n",
    }
    run = configure(tmp_path, files, ORTHANC__REGISTERED_USERS='{"env": "env-secret"}', HOME="/nowhere")
    assert run.returncode == 0, run.output
    assert run.config is not None
    assert run.config["RegisteredUsers"] == USERS  # the file's, whole, its "$HOME" not substituted
    assert run.config["PostgreSQL"] == {"ConnectionUri": DB_URI}  # the trailing newline stripped
    for secret in [DB_URI, *USERS.values(), "env-secret", "uri-secret", "users-secret"]:
        assert secret not in run.output
    assert f"set RegisteredUsers from ORTHANC__REGISTERED_USERS ({tmp_path}/run/secrets/" in run.output


def test_defaults_fill_only_the_settings_left_unset(tmp_path: Path) -> None:
    unset = configure(tmp_path / "unset")
    assert unset.config is not None
    assert unset.config == {
        "StorageDirectory": "/var/lib/orthanc/db",
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": True,
        "Plugins": ["/run/orthanc/plugins", "/usr/share/orthanc/plugins"],
    }
    files = {"etc/orthanc/orthweb.json": '{"RemoteAccessAllowed": false, "Plugins": ["/p"]}'}
    given = configure(tmp_path / "given", files)
    assert given.config is not None
    assert given.config["RemoteAccessAllowed"] is False
    assert given.config["Plugins"] == ["/p"]
    assert given.config["StorageDirectory"] == "/var/lib/orthanc/db"


def test_the_configuration_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "orthanc.json").write_text("stale")
    (tmp_path / "tmp" / "orthanc.json").chmod(0o644)
    run = configure(tmp_path, {"run/secrets/ORTHANC__REGISTERED_USERS": json.dumps(USERS)})
    assert run.returncode == 0, run.output
    assert run.config is not None  # the stale file was replaced
    assert (tmp_path / "tmp" / "orthanc.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("where", ["etc/orthanc/broken.json", "run/secrets/broken.json"])
def test_a_malformed_file_stops_the_start_naming_the_file_and_writing_nothing(tmp_path: Path, where: str) -> None:
    broken = '/* a comment\n   of two lines */ {\n"RegisteredUsers": {"admin": "pw-in-broken"},}'
    run = configure(tmp_path, {"etc/orthanc/a.json": '{"Name": "ok"}', where: broken})
    assert run.returncode != 0
    # Where, in the file as written (comments stripped keep their lines), and never what.
    assert f"orthanc-configure: {tmp_path}/{where} is not valid JSON (" in run.output
    assert "at line 3, column 46)" in run.output
    assert "pw-in-broken" not in run.output
    assert "Traceback" not in run.output
    assert run.config is None
    assert not (tmp_path / "tmp" / "orthanc.json").exists()


def test_a_malformed_orthanc_json_variable_is_named(tmp_path: Path) -> None:
    run = configure(tmp_path, ORTHANC_JSON='{"RegisteredUsers": {"admin": "pw-in-variable"}')
    assert run.returncode != 0
    assert "orthanc-configure: ORTHANC_JSON is not valid JSON" in run.output
    assert "pw-in-variable" not in run.output
    assert run.config is None


# --- plugins -----------------------------------------------------------------------------------


def test_the_ohif_switch_has_the_python_plugin_serve_ohifs_published_build(tmp_path: Path) -> None:
    run = configure(tmp_path, OHIF_PLUGIN_ENABLED="true", STONE_WEB_VIEWER_PLUGIN_ENABLED="false")
    assert run.returncode == 0, run.output
    assert run.plugins == ["libOrthancPython.so"]
    assert run.config is not None
    assert run.config["PythonScript"] == "/usr/share/orthanc/ohif-standin.py"
    assert "orthanc-configure: OHIF is not in this stand-in" in run.output
    assert (ROOTFS / "usr/share/orthanc/ohif-standin.py").is_file()
    # Like the image: a section named Ohif enables it; the OHIF section the plugin reads does not.
    by_section = configure(tmp_path / "ohif", {"etc/orthanc/orthweb.json": '{"OHIF": {"DataSource": "dicom-web"}}'})
    assert by_section.plugins == []
    off = configure(tmp_path / "off", OHIF_PLUGIN_ENABLED="false")
    assert off.config is not None
    assert "PythonScript" not in off.config
    assert off.plugins == []


def test_python_script_enables_the_python_plugin_and_runs_beside_the_ohif_standin(tmp_path: Path) -> None:
    """As in the image, the root setting PythonScript enables the Python plugin (Orthweb's C-MOVE
    service). The plugin runs one script, so with the OHIF stand-in a runner runs both."""
    alone = configure(tmp_path / "alone", ORTHANC__PYTHON_SCRIPT="/etc/orthweb/orthanc-move.py")
    assert alone.returncode == 0, alone.output
    assert alone.plugins == ["libOrthancPython.so"]
    assert alone.config is not None
    assert alone.config["PythonScript"] == "/etc/orthweb/orthanc-move.py"
    both = configure(
        tmp_path / "both", ORTHANC__PYTHON_SCRIPT="/etc/orthweb/orthanc-move.py", OHIF_PLUGIN_ENABLED="true"
    )
    assert both.returncode == 0, both.output
    assert both.config is not None
    assert both.config["PythonScript"] == "/run/orthanc/python-scripts.py"
    runner = (tmp_path / "both/run/orthanc/python-scripts.py").read_text()
    # Both, the configured one first, each run as a script (the application tests run it in Orthanc).
    assert "for script in ['/etc/orthweb/orthanc-move.py', '/usr/share/orthanc/ohif-standin.py']:" in runner
    assert "    runpy.run_path(script, run_name='__main__')" in runner


def test_no_plugin_of_debian_is_copied_unless_switched_on(tmp_path: Path) -> None:
    run = configure(tmp_path)
    assert run.returncode == 0, run.output
    assert run.plugins == []
    for name in ["DicomWeb", "PostgreSQL", "Orthanc Web Viewer", "Stone Web Viewer", "OHIF", "AWS S3 storage"]:
        assert f"orthanc-configure: {name} disabled\n" in run.output
    # On by default in the real image, and not packaged by Debian.
    for name in ["Orthanc Explorer 2", "GDCM"]:
        assert f"orthanc-configure: {name} is not in this stand-in (not packaged by Debian); not loaded" in run.output


def test_sections_switch_plugins_on_and_a_false_variable_wins_over_a_section(tmp_path: Path) -> None:
    files = {"etc/orthanc/orthweb.json": '{"DicomWeb": {"Enable": true}, "PostgreSQL": {"EnableIndex": true}}'}
    on = configure(tmp_path / "on", files)
    assert on.returncode == 0, on.output
    # Named as Orthanc loads plugins from a folder: *.so, Debian's version suffix dropped.
    assert on.plugins == ["libOrthancDicomWeb.so", "libOrthancPostgreSQLIndex.so", "libOrthancPostgreSQLStorage.so"]
    assert (tmp_path / "on/run/orthanc/plugins/libOrthancDicomWeb.so").read_text() == "fake libOrthancDicomWeb.so.1.7"
    assert not (tmp_path / "on/run/orthanc/plugins/libOrthancDicomWeb.so").is_symlink()
    off = configure(tmp_path / "off", files, DICOM_WEB_PLUGIN_ENABLED="FALSE", ORTHANC_EXPLORER_2_ENABLED="false")
    assert off.plugins == ["libOrthancPostgreSQLIndex.so", "libOrthancPostgreSQLStorage.so"]
    assert "orthanc-configure: DicomWeb disabled" in off.output
    assert "orthanc-configure: Orthanc Explorer 2 disabled" in off.output


def test_the_stone_viewer_switch_loads_the_orthanc_web_viewer_in_its_place(tmp_path: Path) -> None:
    # The host's switches (userdata/app/docker-compose.yml).
    run = configure(
        tmp_path,
        DICOM_WEB_PLUGIN_ENABLED="true",
        ORTHANC_EXPLORER_2_ENABLED="true",
        STONE_WEB_VIEWER_PLUGIN_ENABLED="true",
        OHIF_PLUGIN_ENABLED="false",
    )
    assert run.returncode == 0, run.output
    assert run.plugins == ["libOrthancDicomWeb.so", "libOrthancWebViewer.so"]
    assert (
        "orthanc-configure: Stone Web Viewer is not in this stand-in (not packaged by Debian); "
        "the Orthanc Web Viewer is loaded in its place"
    ) in run.output
    assert "orthanc-configure: Orthanc Explorer 2 is not in this stand-in" in run.output
    assert "orthanc-configure: OHIF disabled" in run.output


def test_an_enabled_plugin_whose_library_is_missing_stops_the_start(tmp_path: Path) -> None:
    without_viewer = tuple(name for name in LIBRARIES if "WebViewer" not in name)
    run = configure(tmp_path, libraries=without_viewer, STONE_WEB_VIEWER_PLUGIN_ENABLED="true")
    assert run.returncode != 0
    assert f"Orthanc Web Viewer is enabled but {tmp_path}/usr/lib/orthanc has no libOrthancWebViewer.so*" in run.output
    assert run.config is None


# --- entrypoint --------------------------------------------------------------------------------


def test_entrypoint_is_shellcheck_clean_and_executable() -> None:
    shellcheck = require("shellcheck", "shellcheck")
    entrypoint = ROOTFS / "docker-entrypoint.sh"
    run = subprocess.run([shellcheck, "-x", str(entrypoint)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    for path in [entrypoint, CONFIGURE, PROBE]:
        assert os.access(path, os.X_OK), f"{path} is not executable"
    assert CONFIGURE.read_text().startswith("#!/usr/bin/python3\n")
    assert PROBE.read_text().startswith("#!/usr/bin/python3\n")


# --- healthcheck -------------------------------------------------------------------------------


@pytest.fixture
def fake_orthanc() -> Iterator[tuple[int, list[str | None]]]:
    """An HTTP server on loopback answering 200 to admin:right, else 401; its port and the
    Authorization headers it was sent."""
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            good = "Basic " + base64.b64encode(b"admin:right").decode()
            ok = self.path == "/changes?last" and self.headers.get("Authorization") == good
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def probe(root: Path, config: dict[str, Any] | None) -> subprocess.CompletedProcess[str]:
    if config is not None:
        (root / "tmp").mkdir(exist_ok=True)
        (root / "tmp" / "orthanc.json").write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, str(PROBE)],
        env={"PATH": os.environ["PATH"], "ORTHANC_CONFIGURE_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_healthcheck_passes_on_http_200_as_the_first_registered_user(
    tmp_path: Path, fake_orthanc: tuple[int, list[str | None]]
) -> None:
    port, seen = fake_orthanc
    run = probe(tmp_path, {"HttpPort": port, "RegisteredUsers": {"admin": "right", "other": "x"}})
    assert run.returncode == 0, run.stderr
    assert seen == ["Basic " + base64.b64encode(b"admin:right").decode()]


def test_healthcheck_fails_on_any_other_answer_without_printing_the_password(
    tmp_path: Path, fake_orthanc: tuple[int, list[str | None]]
) -> None:
    port, _ = fake_orthanc
    run = probe(tmp_path, {"HttpPort": port, "RegisteredUsers": {"admin": "wrong-password"}})
    assert run.returncode == 1
    assert "HTTP 401" in run.stderr
    assert "wrong-password" not in run.stdout + run.stderr


def test_healthcheck_fails_without_a_server_or_a_configuration(tmp_path: Path) -> None:
    run = probe(tmp_path / "none", None)
    assert run.returncode == 1
    assert "cannot read" in run.stderr
    (tmp_path / "closed").mkdir()
    with http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as server:
        port = server.server_address[1]  # bound, then closed: nothing listens there
    run = probe(tmp_path / "closed", {"HttpPort": port})
    assert run.returncode == 1
    assert f"no answer on port {port}" in run.stderr
