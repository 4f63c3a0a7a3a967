"""Run the local application (:mod:`orthweb_dev.containers`) in the background, for people.

``up`` runs the rendered compose file on Docker as the host does (PostgreSQL with TLS standing in
for RDS; nginx's ports published on 127.0.0.1) as the tests do, rendered from the
settings a deployment from this checkout would use (``cdktf.json`` context, then ``ORTHWEB_*``
variables: ``ORTHWEB_WEB_USERS``, ``ORTHWEB_DICOM_PEERS``, ...), and writes in its state directory
(default ``.orthweb/app/``): ``state.json`` (pid, users and roles, ports, URLs, peers,
certificate, directory), ``users/NAME`` (each user's generated password, 0600), ``server.crt``
(the certificate nginx presents, to verify it) and ``harness.log``. ``down`` stops it and removes
those files. ``make demo`` runs one in ``.orthweb/demo/app/`` on the secrets of the deployment it
made in the emulator (``deployment.json``). Usage::

    .venv/bin/python -m orthweb_dev.harness_cli up      # make app-up
    .venv/bin/python -m orthweb_dev.harness_cli down    # make app-down
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from orthweb_dev.containers import container_host
from orthweb_dev.harness import Deployment, deployment_settings

# Where the state lives; APP_HARNESS_DIR moves it (the tests do, so as not to meet a running one).
STATE_DIR = Path(os.environ.get("APP_HARNESS_DIR") or PROJECT_DIR / ".orthweb" / "app")
START_TIMEOUT_S = 300.0  # the first start builds the stand-in images (about 75 s)
STOP_TIMEOUT_S = 120.0  # compose down (Orthanc has 30 s to stop), PostgreSQL, then dockerd


@dataclasses.dataclass(frozen=True)
class StateDir:
    """Where one background harness keeps what it publishes."""

    path: Path

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def users(self) -> Path:
        """One file per web user, holding its generated password (0600)."""
        return self.path / "users"

    @property
    def server_cert(self) -> Path:
        return self.path / "server.crt"

    @property
    def deployment(self) -> Path:
        return self.path / "deployment.json"

    @property
    def log(self) -> Path:
        return self.path / "harness.log"

    def clear(self) -> None:
        """Remove what a harness published (and the deployment it was given)."""
        for path in (self.state, self.server_cert, self.deployment):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.users, ignore_errors=True)


def serve(where: StateDir) -> int:
    """Foreground: start the harness, publish its state, run until SIGTERM/SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        settings = deployment_settings()
    except SettingsError as exc:
        print(f"orthweb: {exc}", flush=True)
        return 2
    deployment = Deployment(**json.loads(where.deployment.read_text())) if where.deployment.exists() else None
    with container_host(settings, deployment=deployment) as app:
        where.users.mkdir(mode=0o700, exist_ok=True)
        for name, password in app.passwords.items():
            path = where.users / name
            path.touch(mode=0o600)
            path.write_text(password + "\n")
        shutil.copyfile(app.server_cert, where.server_cert)
        state = {
            "pid": os.getpid(),
            "root": str(app.root),
            "ports": app.ports,
            "web_url": app.web_url,
            "users": {
                name: {"role": role, "password_file": str(where.users / name)}
                for name, role in settings.web_users.items()
            },
            "dicom": f"127.0.0.1:{app.ports['nginx_dicom']} (TLS, AET {settings.orthanc_aet})",
            "dicom_port": app.ports["nginx_dicom"],
            "aet": settings.orthanc_aet,
            "dicom_peers": [p.model_dump(exclude_none=True) for p in settings.dicom_peers],
            "dicom_client_ca": settings.dicom_client_ca is not None,
            "ohif": "ohif" in settings.viewers,
            "server_cert": str(where.server_cert),
            "db_secret_arn": app.db_secret_arn,
            "admin_secret_arn": app.admin_secret_arn,
        }
        where.state.write_text(json.dumps(state, indent=2) + "\n")
        print(f"orthweb app harness up: {json.dumps(state)}", flush=True)
        # Until SIGTERM or SIGINT; Docker restarts a container that exits (restart: unless-stopped),
        # as on the host, so there is nothing to watch meanwhile.
        stop.wait()
    print("orthweb app harness stopped", flush=True)
    return 0


def running_pid(where: StateDir) -> int | None:
    if not where.state.exists():
        return None
    pid = int(json.loads(where.state.read_text())["pid"])
    with contextlib.suppress(ChildProcessError):  # started by this process (a test): reap it if it ended
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def start(
    where: StateDir, deployment: Deployment | None = None, env: dict[str, str] | None = None
) -> dict[str, object]:
    """Start a background harness (on ``deployment``'s secrets if given; its settings from ``env``,
    default this process's environment) and wait until it has published its state; that state.
    Raises RuntimeError with the log's tail if it does not come up."""
    if running_pid(where):
        raise RuntimeError(f"a harness is already running; see {where.state} (stop it first)")
    where.path.mkdir(parents=True, exist_ok=True)
    where.clear()
    if deployment is not None:
        where.deployment.write_text(json.dumps(dataclasses.asdict(deployment), indent=2) + "\n")
    with where.log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orthweb_dev.harness_cli", "serve", "--state-dir", str(where.path)],
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not where.state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
            tail = "\n".join(where.log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"the harness did not come up; {where.log} ends with:\n{tail}")
        time.sleep(0.2)
    state: dict[str, object] = json.loads(where.state.read_text())
    return state


def stop(where: StateDir) -> bool:
    """Stop the background harness, if any, and remove what it published; False if it would not stop."""
    pid = running_pid(where)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while running_pid(where) == pid and time.monotonic() < deadline:
            time.sleep(0.2)
        if running_pid(where) == pid:
            return False
    where.clear()
    return True


def up(where: StateDir) -> int:
    if running_pid(where):
        print(f"already up; see {where.state}")
        return 0
    try:
        state = start(where)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    users = state["users"]
    peers = state["dicom_peers"]
    assert isinstance(users, dict)
    assert isinstance(peers, list)
    print(f"Orthweb is up.\n  web:    {state['web_url']}")
    for name, user in users.items():
        print(f"          user {name} ({user['role']}), password in {user['password_file']}")
    print(f"  DICOM:  {state['dicom']}; certificate {state['server_cert']}")
    print(f"  peers:  {', '.join(p['aet'] for p in peers) or 'none (set ORTHWEB_DICOM_PEERS)'}")
    print(f"  state:  {where.state}\n  stop:   make app-down")
    return 0


def down(where: StateDir) -> int:
    running = running_pid(where) is not None
    if not stop(where):
        print(f"the harness did not stop within {STOP_TIMEOUT_S:.0f}s; see {where.log}", file=sys.stderr)
        return 1
    print("stopped" if running else "not running")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Local Orthweb application harness")
    parser.add_argument("action", choices=["up", "down", "serve"])
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help=f"default {STATE_DIR}")
    args = parser.parse_args()
    where = StateDir(args.state_dir.resolve())
    return {"up": up, "down": down, "serve": serve}[args.action](where)


if __name__ == "__main__":
    sys.exit(main())
