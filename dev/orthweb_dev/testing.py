"""pytest helpers shared by the test modules (the fixtures themselves live in tests/conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orthweb.bootstrap import USERDATA_DIR, HostFacts, HostFile, bundle_files, render_user_data
from orthweb.settings import Settings

INSTALL_HINT = "make debian installs requirements/debian.txt"


def in_ci() -> bool:
    """True under CI (``CI=true``), where a missing prerequisite is an error, never a skip."""
    return os.environ.get("CI", "").lower() == "true"


def not_run(reason: str) -> None:
    """Report a test as not run because a prerequisite is missing: a skip on a laptop, a failure in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI must run every tier)")
    pytest.skip(f"not run: {reason}")


def require(tool: str, package: str) -> str:
    """The path of ``tool``; when it is missing, the test is reported as not run (failed in CI),
    naming the Debian package that provides it. Never reported as passed."""
    found = shutil.which(tool)
    if not found:
        not_run(f"{tool} is missing: install the Debian package {package} ({INSTALL_HINT})")
    assert found is not None
    return found


# Words of a script that name no program (shell keywords and builtins shadow any file of that name).
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def record_command_lines(scripts: list[Path], env: dict[str, str], workdir: Path) -> list[str]:
    """Put a recorder in front of every program ``scripts`` may run by name (found on ``env``'s
    PATH, which is changed to put the recorders first): each appends its whole command line, as
    /proc/PID/cmdline shows it to every user of the host, to ``workdir``/argv.log, then runs the
    real program. Returns the names of the programs wrapped; :func:`command_lines` reads the log."""
    recorder = workdir / "argv-bin"
    recorder.mkdir()
    log = workdir / "argv.log"
    texts = "".join(script.read_text() for script in scripts)
    for word in sorted(set(_WORD_RE.findall(texts))):
        real = shutil.which(word, path=env["PATH"])
        if real is None or word in ("bash", "sh", "env"):
            continue
        wrapper = recorder / word
        wrapper.write_text(f'#!/bin/bash\nprintf "%s\\0" "{word} $*" >> {log}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    env["PATH"] = f"{recorder}{os.pathsep}{env['PATH']}"
    return sorted(p.name for p in recorder.iterdir())


def command_lines(workdir: Path) -> list[str]:
    """The command lines the recorders of :func:`record_command_lines` saw, in order."""
    log = workdir / "argv.log"
    return [line for line in log.read_text().split("\0") if line] if log.exists() else []


def db_app_password(master_password: str) -> str:
    """Orthanc's database password as the host derives it (common.sh ``db_app_password``): HMAC-SHA256
    of a fixed label keyed with the RDS master password, base64url without padding."""
    digest = hmac.new(master_password.encode(), b"orthweb: the Orthanc database login", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cloud_config_problems(user_data: str, workdir: Path) -> str:
    """What ``cloud-init schema`` finds wrong with rendered user data (empty when it is a valid
    cloud-config); reported as not run when cloud-init is missing."""
    cloud_init = require("cloud-init", "cloud-init")
    path = workdir / "user-data"
    path.write_text(user_data)
    run = subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True, check=False
    )
    return "" if run.returncode == 0 and "Valid cloud-config" in run.stdout else run.stdout + run.stderr


def compose_problems(compose_file: str, workdir: Path) -> str:
    """What ``docker-compose config`` finds wrong with a rendered compose file (empty when valid),
    asked of compose v2 at the host's pinned version (:func:`orthweb_dev.engine.compose_binary`)."""
    from orthweb_dev.engine import compose_binary

    path = workdir / "docker-compose.yml"
    path.write_text(compose_file)
    run = subprocess.run(
        [str(compose_binary()), "--project-name", "orthweb", "--file", str(path), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    return "" if run.returncode == 0 else run.stdout + run.stderr


def shellcheck_problems(written: dict[str, str], workdir: Path) -> str:
    """What shellcheck finds in the host scripts of rendered user data (``written``: each written
    file's path and text), laid out as the host has them (each script beside common.sh and
    orthweb.env, as its ``source`` directives expect); empty when clean."""
    shellcheck = require("shellcheck", "shellcheck")
    (workdir / "bin").mkdir()
    (workdir / "lib").mkdir()
    (workdir / "orthweb.env").write_text(written["/etc/orthweb/orthweb.env"])
    paths = [workdir / "lib" / "common.sh"]
    paths[0].write_text(written["/usr/local/lib/orthweb/common.sh"])
    for path, text in written.items():
        if path.startswith("/usr/local/sbin/"):
            paths.append(workdir / "bin" / (Path(path).name + ".sh"))
            paths[-1].write_text(text)
    run = subprocess.run(
        [shellcheck, "-x", "-P", "SCRIPTDIR", "-s", "bash", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if run.returncode == 0 else run.stdout + run.stderr


def user_data_files(user_data: str) -> dict[str, HostFile]:
    """The files a rendered cloud-config writes (its ``write_files``), by path."""
    doc = yaml.safe_load(user_data)
    files = {}
    for entry in doc["write_files"]:
        assert "encoding" not in entry, entry["path"]
        files[entry["path"]] = HostFile(path=entry["path"], mode=int(entry["permissions"], 8), text=entry["content"])
    return files


def host_files(settings: Settings, facts: HostFacts) -> dict[str, HostFile]:
    """Every file a host holds once it has booted: those its user data writes, then the bundle's
    it unpacks (the two never share a path), by path."""
    written = user_data_files(render_user_data(settings, facts))
    bundled = {f.path: f for f in bundle_files(settings)}
    assert not set(written) & set(bundled), set(written) & set(bundled)
    return written | bundled


NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")  # libnginx-mod-stream
NGINX_JS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")  # libnginx-mod-http-js (njs)

# Where the host keeps docker-compose.yml: its relative paths are relative to this directory.
HOST_COMPOSE_DIR = "/etc/orthweb"


def compose_on_host(text: str) -> dict[str, Any]:
    """A rendered compose file as it acts on the host: bind-mount sources and secret files that
    are relative to the file's directory made absolute (``./tls`` is ``/etc/orthweb/tls``)."""
    compose: dict[str, Any] = yaml.safe_load(text)

    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(HOST_COMPOSE_DIR, path)) if path.startswith("./") else path

    for service in compose["services"].values():
        if "volumes" in service:
            service["volumes"] = [absolute(volume) for volume in service["volumes"]]
    for secret in (compose.get("secrets") or {}).values():
        secret["file"] = absolute(secret["file"])
    return compose


def nginx_check_config(conf: str, workdir: Path) -> str:
    """A rendered nginx.conf made checkable with ``nginx -t`` on this machine: the container's
        paths (certificates, login map, pid, temporary paths) moved under ``workdir``, whose ``tls``
        and ``auth`` directories the caller fills, and a worker user Debian has (``-t`` only checks
        that it exists). The official image has the stream module built in; Debian's nginx loads it. The
    audit's orthweb-audit.js is copied into ``workdir`` (nginx reads it next to its configuration); with
    login = "cognito" the caller puts orthweb-oidc.js in ``workdir`` and ``secrets/roles.map``."""
    (workdir / "cache").mkdir(exist_ok=True)
    shutil.copy(USERDATA_DIR / "app" / "orthweb-audit.js", workdir / "orthweb-audit.js")
    conf = conf.replace("/etc/nginx/tls/", f"{workdir / 'tls'}/").replace("/etc/nginx/auth/", f"{workdir / 'auth'}/")
    conf = conf.replace("pid /run/nginx.pid;", f"pid {workdir}/nginx.pid;")
    conf = conf.replace("/var/cache/nginx/", f"{workdir / 'cache'}/").replace("user nginx;", "user nobody nogroup;")
    # The image's njs module is in its modules directory; Debian's is here.
    conf = conf.replace("load_module modules/ngx_http_js_module.so;", f"load_module {NGINX_JS_MODULE};")
    return f"load_module {NGINX_STREAM_MODULE};\n{conf}"
