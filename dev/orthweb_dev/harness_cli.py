"""Run the local application harness (:mod:`orthweb_dev.harness`) in the background, for people.

``up`` starts PostgreSQL (TLS), Orthanc and nginx on 127.0.0.1 as the tests do, rendered from the
settings a deployment from this checkout would use (``cdktf.json`` context, then ``ORTHWEB_*``
variables: ``ORTHWEB_WEB_USERS``, ``ORTHWEB_DICOM_PEERS``, ...), and writes under
``.orthweb/app/``: ``state.json`` (pid, users and roles, ports, URLs, peers, certificate,
directory), ``users/NAME`` (each user's generated password, 0600) and ``harness.log``. ``down``
stops it and removes those files. Usage::

    .venv/bin/python -m orthweb_dev.harness_cli up      # make app-up
    .venv/bin/python -m orthweb_dev.harness_cli down    # make app-down
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from orthweb.settings import SettingsError
from orthweb_dev import PROJECT_DIR
from orthweb_dev.harness import app_host, deployment_settings

# Where the state lives; APP_HARNESS_DIR moves it (the tests do, so as not to meet a running one).
STATE_DIR = Path(os.environ.get("APP_HARNESS_DIR") or PROJECT_DIR / ".orthweb" / "app")
STATE = STATE_DIR / "state.json"
USERS_DIR = STATE_DIR / "users"
LOG = STATE_DIR / "harness.log"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def serve() -> int:
    """Foreground: start the harness, publish its state, run until SIGTERM/SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        settings = deployment_settings()
    except SettingsError as exc:
        print(f"orthweb: {exc}", flush=True)
        return 2
    with app_host(settings) as app:
        USERS_DIR.mkdir(mode=0o700, exist_ok=True)
        for name, password in app.passwords.items():
            path = USERS_DIR / name
            path.touch(mode=0o600)
            path.write_text(password + "\n")
        state = {
            "pid": os.getpid(),
            "root": str(app.root),
            "ports": app.ports,
            "web_url": app.web_url,
            "users": {
                name: {"role": role, "password_file": str(USERS_DIR / name)}
                for name, role in settings.web_users.items()
            },
            "dicom": f"127.0.0.1:{app.ports['nginx_dicom']} (TLS, AET {settings.orthanc_aet})",
            "dicom_peers": [p.model_dump(exclude_none=True) for p in settings.dicom_peers],
            "dicom_client_ca": settings.dicom_client_ca is not None,
            "server_cert": str(app.server_cert),
        }
        STATE.write_text(json.dumps(state, indent=2) + "\n")
        print(f"orthweb app harness up: {json.dumps(state)}", flush=True)
        while not stop.wait(1.0):
            for name, proc in (("Orthanc", app.orthanc_proc), ("nginx", app.nginx_proc)):
                if proc is not None and proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}: stopping", flush=True)
                    stop.set()
    print("orthweb app harness stopped", flush=True)
    return 0


def running_pid() -> int | None:
    if not STATE.exists():
        return None
    pid = int(json.loads(STATE.read_text())["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def up() -> int:
    if running_pid():
        print(f"already up; see {STATE}")
        return 0
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE.unlink(missing_ok=True)
    shutil.rmtree(USERS_DIR, ignore_errors=True)
    with LOG.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orthweb_dev.harness_cli", "serve"],
            cwd=PROJECT_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not STATE.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
            tail = "\n".join(LOG.read_text(errors="replace").splitlines()[-30:])
            print(f"the harness did not come up; {LOG} ends with:\n{tail}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    state = json.loads(STATE.read_text())
    print(f"Orthweb is up.\n  web:    {state['web_url']}")
    for name, user in state["users"].items():
        print(f"          user {name} ({user['role']}), password in {user['password_file']}")
    print(f"  DICOM:  {state['dicom']}; certificate {state['server_cert']}")
    peers = ", ".join(p["aet"] for p in state["dicom_peers"]) or "none (set ORTHWEB_DICOM_PEERS)"
    print(f"  peers:  {peers}")
    print(f"  state:  {STATE}\n  stop:   make app-down")
    return 0


def down() -> int:
    pid = running_pid()
    if pid is None:
        print("not running")
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while running_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.2)
        if running_pid() == pid:
            print(f"harness (pid {pid}) did not stop within {STOP_TIMEOUT_S:.0f}s; see {LOG}", file=sys.stderr)
            return 1
        print("stopped")
    STATE.unlink(missing_ok=True)
    shutil.rmtree(USERS_DIR, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Local Orthweb application harness")
    parser.add_argument("action", choices=["up", "down", "serve"])
    action = parser.parse_args().action
    return {"up": up, "down": down, "serve": serve}[action]()


if __name__ == "__main__":
    sys.exit(main())
