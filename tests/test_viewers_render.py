"""The rendered configuration of the web UI, DICOMweb, the viewers and CORS: the image's plugin
switches follow the `viewers` setting, DICOMweb builds its links from the proxy's headers, nginx
answers "/" itself, and CORS opens DICOMweb to the listed origins only (docs/host.md)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orthweb.bootstrap import render_app
from orthweb.settings import Settings
from orthweb_dev.testing import NGINX_STREAM_MODULE, compose_on_host, nginx_check_config, require

ORIGINS = ["https://viewer.example.org", "https://pacs-viewer.example.net:8443"]


def orthanc_environment(settings: Settings) -> dict[str, str]:
    compose = compose_on_host(render_app(settings)["docker-compose.yml"])
    env: dict[str, str] = compose["services"]["orthanc"]["environment"]
    return env


def orthanc_json(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(render_app(settings)["orthanc.json"])
    return config


def nginx_conf(settings: Settings) -> str:
    return render_app(settings)["nginx.conf"]


def block(conf: str, header: str) -> str:
    """The body of the first ``header { ... }`` block (no nested braces inside)."""
    m = re.search(re.escape(header) + r"\s*\{(?P<body>[^{}]*)\}", conf)
    assert m, f"no block {header!r}"
    return m["body"]


# --- plugins -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("viewers", "stone", "ohif"),
    [(None, "true", "false"), (["ohif"], "false", "true"), (["stone", "ohif"], "true", "true"), ([], "false", "false")],
)
def test_the_image_plugin_switches_follow_the_viewers_setting(viewers: list[str] | None, stone: str, ohif: str) -> None:
    settings = Settings() if viewers is None else Settings(viewers=viewers)
    env = orthanc_environment(settings)
    # Each switch is set either way: the image turns a plugin off only for the exact string "false".
    assert env["STONE_WEB_VIEWER_PLUGIN_ENABLED"] == stone
    assert env["OHIF_PLUGIN_ENABLED"] == ohif
    assert env["DICOM_WEB_PLUGIN_ENABLED"] == "true"
    assert env["ORTHANC_EXPLORER_2_ENABLED"] == "true"
    assert all(isinstance(v, str) for v in env.values())


def test_dicomweb_links_come_from_the_proxy_headers_under_the_public_root() -> None:
    dicomweb = orthanc_json(Settings())["DicomWeb"]
    assert dicomweb["Enable"] is True
    assert dicomweb["Root"] == dicomweb["PublicRoot"] == "/dicom-web/"
    # A non-empty Host would freeze every link to it and ignore the proxy's headers.
    assert dicomweb["Host"] == ""
    assert dicomweb["EnableWado"] is True


def test_orthanc_explorer_2_never_registers_its_own_root_redirect() -> None:
    config = orthanc_json(Settings())
    # OE2 1.8.4's "/" handler logs every request header, the Basic login included: nginx answers "/".
    assert config["OrthancExplorer2"]["IsDefaultOrthancUI"] is False
    assert config["OrthancExplorer2"]["Enable"] is True
    assert config["OHIF"]["DataSource"] == "dicom-web"
    assert "Plugins" not in config  # the image's own plugin folders must stay in effect


def test_nginx_answers_the_root_with_the_explorer_2_app() -> None:
    root = block(nginx_conf(Settings()), "location = /")
    assert "return 302 /ui/app/;" in root
    assert "absolute_redirect off;" in root
    assert "proxy_pass" not in root


def test_nginx_tells_orthanc_the_public_host_and_scheme() -> None:
    proxy = block(nginx_conf(Settings()), "location /")
    assert "proxy_set_header X-Forwarded-Host $http_host;" in proxy
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in proxy
    # Debian's DICOMweb 1.7 reads only Forwarded; it does not unquote, so host=name:port is sent bare.
    assert 'proxy_set_header Forwarded "host=$http_host;proto=$scheme";' in proxy


# --- CORS ----------------------------------------------------------------------------------------


def cors_map(conf: str) -> dict[str, str]:
    body = block(conf, 'map "$orthweb_vary $http_origin" $orthweb_cors_origin')
    return dict(re.findall(r'^\s*"?([^"\n]+?)"?\s+"([^"]*)";', body, flags=re.M))


def test_cors_is_off_by_default() -> None:
    conf = nginx_conf(Settings())
    assert cors_map(conf) == {}  # no entry: every request maps to "", and no CORS header is sent
    assert "*" not in "".join(re.findall(r"add_header Access-Control-Allow-Origin [^;]*;", conf))


def test_cors_echoes_only_listed_origins_and_only_under_dicomweb() -> None:
    conf = nginx_conf(Settings(web_cors_origins=ORIGINS))
    assert cors_map(conf) == {f"Origin {o}": o for o in ORIGINS}
    assert block(conf, "map $uri $orthweb_vary").split() == ['"~^/dicom-web/"', '"Origin";']
    server = conf[conf.index("  server {") :]
    assert "add_header Access-Control-Allow-Origin $orthweb_cors_origin always;" in server
    assert "add_header Access-Control-Allow-Credentials $orthweb_cors_credentials always;" in server
    assert "add_header Vary $orthweb_vary always;" in server
    # The preflight is answered by nginx: a listed origin's OPTIONS never reaches Orthanc.
    assert "if ($orthweb_cors_preflight) {\n      return 204;\n    }" in server
    preflight = block(conf, 'map "$request_method $orthweb_cors_origin" $orthweb_cors_preflight')
    # The preflight's value is the methods it allows: search, retrieve, STOW-RS; never PUT or DELETE.
    assert preflight.split() == ['"~^OPTIONS', 'https://"', '"GET,', "POST,", 'OPTIONS";']
    assert "add_header Access-Control-Allow-Methods $orthweb_cors_preflight always;" in server


def test_nginx_accepts_the_configuration_with_cors_and_every_viewer(tmp_path: Path) -> None:
    nginx = require("nginx", "nginx-light")
    if not NGINX_STREAM_MODULE.exists():
        pytest.fail(f"{NGINX_STREAM_MODULE} is missing: install the Debian package libnginx-mod-stream")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        [require("openssl", "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=test.invalid", "-keyout", str(tls / "server.key"), "-out", str(tls / "server.crt")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    shutil.copy(tls / "server.crt", tls / "dicom-client-ca.pem")
    auth = tmp_path / "auth"
    auth.mkdir()
    (auth / "logins.map").write_text('"admin" "AAAAAAAAAAAAAAAAAAAAAA";\n')
    settings = Settings(web_cors_origins=ORIGINS, viewers=["stone", "ohif"])
    (tmp_path / "nginx.conf").write_text(nginx_check_config(nginx_conf(settings), tmp_path))
    run = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
