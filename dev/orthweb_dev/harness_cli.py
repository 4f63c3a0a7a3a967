"""Run the local application harness (:mod:`orthweb_dev.harness`) in the background, for people.

``up`` starts PostgreSQL (TLS), Orthanc and nginx on 127.0.0.1 as the tests do, and writes under
``.orthweb/app/``: ``state.json`` (pid, ports, URLs, directory), ``admin-password`` (0600) and
``harness.log``. ``down`` stops it and removes those files. Usage::

    .venv/bin/python -m orthweb_dev.harness_cli up      # make app-up
    .venv/bin/python -m orthweb_dev.harness_cli down    # make app-down
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

from orthweb_dev import PROJECT_DIR
from orthweb_dev.harness import app_host

STATE_DIR = PROJECT_DIR / ".orthweb" / "app"
STATE = STATE_DIR / "state.json"
PASSWORD = STATE_DIR / "admin-password"
LOG = STATE_DIR / "harness.log"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def serve() -> int:
    """Foreground: start the harness, publish its state, run until SIGTERM/SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with app_host() as app:
        PASSWORD.touch(mode=0o600)
        PASSWORD.write_text(app.admin_password + "\n")
        state = {
            "pid": os.getpid(),
            "root": str(app.root),
            "ports": app.ports,
            "web_url": app.web_url,
            "dicom": f"127.0.0.1:{app.ports['nginx_dicom']} (TLS, AET ORTHANC)",
            "server_cert": str(app.server_cert),
            "admin_user": "admin",
            "admin_password_file": str(PASSWORD),
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
    for stale in (STATE, PASSWORD):
        stale.unlink(missing_ok=True)
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
    print(f"Orthweb is up.\n  web:    {state['web_url']}  (user admin, password in {PASSWORD})")
    print(f"  DICOM:  {state['dicom']}; certificate {state['server_cert']}")
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
    for path in (STATE, PASSWORD):
        path.unlink(missing_ok=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Local Orthweb application harness")
    parser.add_argument("action", choices=["up", "down", "serve"])
    action = parser.parse_args().action
    return {"up": up, "down": down, "serve": serve}[action]()


if __name__ == "__main__":
    sys.exit(main())
