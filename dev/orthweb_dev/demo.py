"""`make demo` / `make demo-down`: the whole stack deployed by the real cdktf CLI into a local AWS emulator,
then the application itself running locally on that deployment's secrets.

Everything the demo owns lives under `.orthweb/demo/` (emulator pid, port and log, the Terraform state,
the synthesized output, and in `app/` the local application's state): an emulator run never reads or
writes the state of a real deployment, and its synthesized JSON never lands in `cdktf.out/`, where a
real `terraform plan` would pick it up.

After the deploy, the host's own bootstrap steps run against the deployment's outputs (the secrets
step against its RDS master secret and its empty admin secret in the emulator, then the certificate
step) and the application harness (:mod:`orthweb_dev.harness`: PostgreSQL with TLS, Orthanc, nginx on
127.0.0.1) serves the rendered configuration, its database role holding the master secret's login. A
sample study is stored over DICOMweb, and the demo prints what to open and how to send images.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orthweb_dev import PROJECT_DIR, harness_cli
from orthweb_dev.containers import ENGINE_CLIENTS, missing_prerequisites
from orthweb_dev.dicom import viewable_instance
from orthweb_dev.emulator_server import MotoServerError, answers, start
from orthweb_dev.harness import Deployment
from orthweb_dev.proc import pid_alive, stop_group
from orthweb_dev.terraform import MirrorMissing, provider_mirror, write_cli_config

DEMO_DIR = PROJECT_DIR / ".orthweb" / "demo"
PID_FILE = DEMO_DIR / "emulator.pid"
PORT_FILE = DEMO_DIR / "emulator.port"
LOG_FILE = DEMO_DIR / "emulator.log"
STATE_FILE = DEMO_DIR / "terraform.tfstate"
OUT_DIR = DEMO_DIR / "cdktf.out"
STACK_DIR = OUT_DIR / "stacks" / "orthweb"
TF_RC = DEMO_DIR / "terraformrc"
REGION = "us-east-1"
# The local application: the harness's state and, in its sample/, the file the demo offers to send.
APP = harness_cli.StateDir(DEMO_DIR / "app")
SAMPLE_PATIENT = "ORTHWEB^DEMO"
# DICOM is closed until peers are named; unless you name yours, the demo names this machine as the
# application's containers see it (ENGINE_CLIENTS: Docker's userland proxy forwards loopback clients
# from the project network's gateway), so the storescu command it prints is served.
DEMO_PEER: dict[str, object] = {"aet": "DEMO", "cidr": ENGINE_CLIENTS, "permissions": ["store", "find"]}
# Unless you choose the viewers, the demo serves both, so it can link the sample study in OHIF.
DEMO_VIEWERS = ["stone", "ohif"]


class DemoError(RuntimeError):
    """Something the user can fix; the message says what."""


def phase(message: str) -> None:
    print(f"\n\033[1m==> {message}\033[0m", flush=True)


def running_emulator() -> int | None:
    """Port of this project's emulator if it is up; cleans up after a crashed run."""
    if not PID_FILE.exists():
        return None
    pid = int(PID_FILE.read_text().strip() or 0)
    port = int(PORT_FILE.read_text().strip() or 0) if PORT_FILE.exists() else 0
    if pid and pid_alive(pid) and port and answers(f"http://127.0.0.1:{port}"):
        return port
    print(
        "A previous demo's emulator is gone (crashed or the machine restarted); its resources went with it.\n"
        "Removing its pid file and the demo state, and starting afresh.",
        flush=True,
    )
    if pid and pid_alive(pid):
        stop_group(pid)
    for path in (PID_FILE, PORT_FILE, STATE_FILE, STATE_FILE.with_suffix(".tfstate.backup")):
        path.unlink(missing_ok=True)
    return None


def start_emulator() -> int:
    port = running_emulator()
    if port:
        print(f"Reusing the emulator already running on 127.0.0.1:{port}", flush=True)
        return port
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    with LOG_FILE.open("ab") as log:
        try:
            proc, server = start(log=log, detach=True)
        except MotoServerError as exc:
            tail = "\n".join(LOG_FILE.read_text(errors="replace").splitlines()[-20:])
            raise DemoError(f"the AWS emulator did not start ({exc}); its log ends with:\n{tail}") from None
    PID_FILE.write_text(f"{proc.pid}\n")
    PORT_FILE.write_text(f"{server.port}\n")
    print(f"Emulator up on 127.0.0.1:{server.port} (pid {proc.pid}, log {LOG_FILE.relative_to(PROJECT_DIR)})")
    return server.port


def stop_emulator() -> None:
    if PID_FILE.exists():
        pid = int(PID_FILE.read_text().strip() or 0)
        if pid:
            stop_group(pid)
        print(f"Emulator stopped (pid {pid})", flush=True)
    for path in (PID_FILE, PORT_FILE):
        path.unlink(missing_ok=True)


def refuse_real_state() -> None:
    """The demo never touches a real deployment's state backend."""
    context = json.loads((PROJECT_DIR / "cdktf.json").read_text()).get("context", {}).get("orthweb", {})
    backend = os.environ.get("ORTHWEB_STATE_BACKEND", context.get("state_backend", "local"))
    if backend != "local":
        raise DemoError(
            f"state_backend is {backend!r}: the demo refuses to run with a real deployment's state backend "
            "configured. Unset ORTHWEB_STATE_BACKEND / remove state_backend from cdktf.json for the demo."
        )


def with_demo_peer(env: dict[str, str]) -> dict[str, str]:
    """``env`` with ORTHWEB_DICOM_PEERS naming :data:`DEMO_PEER` and ORTHWEB_VIEWERS
    :data:`DEMO_VIEWERS`, each unless configured already (in ``env`` or in cdktf.json)."""
    context = json.loads((PROJECT_DIR / "cdktf.json").read_text()).get("context", {}).get("orthweb", {})
    if "ORTHWEB_DICOM_PEERS" not in env and "dicom_peers" not in context:
        env = {**env, "ORTHWEB_DICOM_PEERS": json.dumps([DEMO_PEER])}
    if "ORTHWEB_VIEWERS" not in env and "viewers" not in context:
        env = {**env, "ORTHWEB_VIEWERS": json.dumps(DEMO_VIEWERS)}
    return env


def terraform_rc() -> Path:
    try:
        return write_cli_config(TF_RC, provider_mirror())
    except MirrorMissing as exc:
        raise DemoError(str(exc)) from None


def demo_env(port: int) -> dict[str, str]:
    """The environment every demo command runs in: emulator endpoint, throwaway keys, demo-only state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo-not-a-secret",  # noqa: S106 - throwaway key the emulator accepts
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
        TF_CLI_CONFIG_FILE=str(terraform_rc()),
        CHECKPOINT_DISABLE="1",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        ORTHWEB_REGION=REGION,
        ORTHWEB_STATE_BACKEND="local",
        ORTHWEB_STATE_PATH=str(STATE_FILE.relative_to(PROJECT_DIR)),
        # A throwaway deployment: no deletion protection, no final snapshot, so demo-down leaves nothing.
        ORTHWEB_DELETION_PROTECTION="false",
    )
    return with_demo_peer(env)


def cdktf(args: list[str], env: dict[str, str]) -> None:
    # --skip-provider-lock: `terraform providers lock` asks the registry for checksums, which an
    # offline machine with a filesystem mirror cannot reach; init still records the mirror's hashes.
    cmd = [
        "npx",
        "--no-install",
        "cdktf",
        *args,
        "--output",
        str(OUT_DIR.relative_to(PROJECT_DIR)),
        "--skip-provider-lock",
    ]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=PROJECT_DIR, env=env, check=False)
    if proc.returncode != 0:
        raise DemoError(f"cdktf {args[0]} failed (exit {proc.returncode}); see its output above")


def outputs(env: dict[str, str]) -> dict[str, str]:
    proc = subprocess.run(
        ["terraform", "output", "-json"], cwd=STACK_DIR, env=env, capture_output=True, text=True, check=True
    )
    return {k: v["value"] for k, v in json.loads(proc.stdout).items()}


def shown(path: Path) -> str:
    """A path as the user types it from the project directory (where make runs)."""
    return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else str(path)


@dataclass(frozen=True)
class LocalApp:
    """The application running locally on the deployment's secrets: what the demo prints."""

    web_url: str
    users: tuple[tuple[str, str, Path], ...]  # (name, role, file holding the password)
    aet: str
    dicom_port: int
    server_cert: Path
    send_me: Path
    sample_study: str
    peer: str | None  # a DICOM peer this machine may store as, if the settings name one
    ohif: bool = False  # OHIF is among the viewers

    @property
    def dicomweb_url(self) -> str:
        return f"{self.web_url}/dicom-web/"

    @property
    def storescu(self) -> list[str] | None:
        """A DCMTK command that stores ``send_me`` over DICOM TLS as ``peer``, verifying the server's
        certificate; None when no peer may store from this machine."""
        if self.peer is None:
            return None
        tls = ["--anonymous-tls", "--add-cert-file", shown(self.server_cert)]
        target = ["-aet", self.peer, "-aec", self.aet, "localhost", str(self.dicom_port)]
        return ["storescu", *tls, *target, shown(self.send_me)]

    def lines(self) -> list[str]:
        users = [f"{name} ({role}): password in {shown(path)}" for name, role, path in self.users]
        dicom = f"  DICOM TLS  {self.aet}@localhost:{self.dicom_port}"
        if self.storescu is None:
            dicom_lines = [f"{dicom}; no DICOM peer may store from this machine (setting dicom_peers)"]
        else:
            dicom_lines = [
                f"{dicom}; send a new study as peer {self.peer} with:",
                f"{'':13}{shlex.join(self.storescu)}",
            ]
        return [
            f"  Web UI     {self.web_url}/   (log in as a user below)",
            *(f"  {'Users' if i == 0 else '':10} {u}" for i, u in enumerate(users)),
            *dicom_lines,
            f"  DICOMweb   {self.dicomweb_url}   (QIDO-RS, WADO-RS, STOW-RS; same logins and roles; certificate "
            f"{shown(self.server_cert)})",
            *([f"  OHIF       {self.ohif_url}   (the sample study)"] if self.ohif_url else []),
        ]

    @property
    def ohif_url(self) -> str | None:
        """OHIF's viewer on the sample study, when OHIF is served."""
        return f"{self.web_url}/ohif/viewer?StudyInstanceUIDs={self.sample_study}" if self.ohif else None


def local_store_peer(peers: Sequence[Mapping[str, object]]) -> str | None:
    """The AET of the first DICOM peer that may store from this machine (as the containers see it:
    anywhere in ENGINE_CLIENTS), if any."""
    clients = ipaddress.ip_network(ENGINE_CLIENTS)
    for peer in peers:
        cidr = ipaddress.ip_network(str(peer["cidr"]))
        permissions = peer.get("permissions")
        if clients.subnet_of(cidr) and isinstance(permissions, list) and "store" in permissions:  # type: ignore[arg-type]
            return str(peer["aet"])
    return None


def upload_sample(state: dict[str, object], user: str, password: str) -> str:
    """Store the sample study through nginx with a DICOMweb client (STOW-RS) as ``user``; its
    StudyInstanceUID."""
    import requests
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmread

    sample = viewable_instance("demo", patient=SAMPLE_PATIENT)
    session = requests.Session()
    session.trust_env = False  # the certificate below, not a CA bundle named in the environment
    session.auth = (user, password)
    session.verify = str(state["server_cert"])
    client = DICOMwebClient(f"{state['web_url']}/dicom-web", session=session)
    client.store_instances([dcmread(io.BytesIO(sample.data))])
    return sample.study


def start_local_app(
    endpoint: str, outs: dict[str, str], env: dict[str, str], where: harness_cli.StateDir = APP
) -> LocalApp | None:
    """Run the host's steps against the deployment's secrets and serve the application locally,
    rendered from the settings ``env`` gives (the deployment's); None (and one line saying why)
    where this machine lacks the Debian packages it needs."""
    missing = missing_prerequisites()
    if missing:
        print(
            f"Skipped the local application: this machine lacks {', '.join(missing)}, Debian packages that make "
            "debian installs only on Debian and as root or with sudo; the deployment above is complete.",
            flush=True,
        )
        return None
    deployment = Deployment(endpoint, REGION, outs["db_master_secret_arn"], outs["admin_secret_arn"])
    harness_cli.stop(where)  # a previous run's application (its data was throwaway; the logins persist)
    try:
        state = harness_cli.start(where, deployment, env=env)
    except RuntimeError as exc:
        raise DemoError(str(exc)) from None
    users, peers = state["users"], state["dicom_peers"]
    assert isinstance(users, dict)
    assert isinstance(peers, list)
    logins = tuple((name, str(user["role"]), Path(user["password_file"])) for name, user in users.items())
    uploader = next(login for login in logins if login[1] in ("admin", "uploader"))  # settings require an admin
    study = upload_sample(state, uploader[0], uploader[2].read_text().strip())
    sample_dir = where.path / "sample"
    sample_dir.mkdir(exist_ok=True)
    send_me = sample_dir / "send-me.dcm"
    send_me.write_bytes(viewable_instance("send-me", patient=SAMPLE_PATIENT).data)
    return LocalApp(
        web_url=str(state["web_url"]),
        users=logins,
        aet=str(state["aet"]),
        dicom_port=int(str(state["dicom_port"])),
        server_cert=where.server_cert,
        send_me=send_me,
        sample_study=study,
        peer=local_store_peer(peers),
        ohif=bool(state.get("ohif")),
    )


def up() -> None:
    started = time.monotonic()
    refuse_real_state()
    phase("Starting the local AWS emulator")
    port = start_emulator()
    env = demo_env(port)
    phase("cdktf deploy into the emulator (synth, init, plan, apply)")
    cdktf(["deploy", "orthweb", "--auto-approve"], env)
    deployed = time.monotonic()
    phase("Outputs")
    outs = outputs(env)
    for name, value in sorted(outs.items()):
        print(f"  {name:22} {value}")
    phase("The application, locally, on this deployment's secrets (the host's own bootstrap steps)")
    app = start_local_app(env["AWS_ENDPOINT_URL"], outs, env)
    finished = time.monotonic()
    rel = STACK_DIR.relative_to(PROJECT_DIR)
    print(
        f"\nmake demo took {finished - started:.0f} s (deploy {deployed - started:.0f} s, "
        f"local application {finished - deployed:.0f} s). Next, try:\n"
        f"  make demo                      # again: converges, no changes\n"
        f"  make demo-plan                 # plain terraform plan in {rel}\n"
        f"  make demo-replace-host         # terraform destroy/apply -target aws_instance.orthweb\n"
        f"  make demo-down                 # stop the application, destroy everything, stop the emulator\n",
        flush=True,
    )
    if app is not None:
        print(
            f"Orthweb is running on this machine (sample study {SAMPLE_PATIENT} stored over DICOMweb):",
            *app.lines(),
            sep="\n",
            flush=True,
        )


def terraform_in_stack(args: list[str]) -> None:
    port = running_emulator()
    if not port:
        raise DemoError("no demo is running: run make demo first")
    env = demo_env(port)
    print("$ terraform " + " ".join(args), flush=True)
    proc = subprocess.run(["terraform", *args], cwd=STACK_DIR, env=env, check=False)
    if proc.returncode not in (0, 2) or (proc.returncode == 2 and "-detailed-exitcode" not in args):
        raise DemoError(f"terraform {args[0]} failed (exit {proc.returncode})")


def down() -> None:
    phase("Stopping the local application")
    if not harness_cli.stop(APP):
        raise DemoError(f"the local application did not stop; see {APP.log}")
    shutil.rmtree(APP.path / "sample", ignore_errors=True)
    port = running_emulator()
    if port and STATE_FILE.exists():
        phase("cdktf destroy in the emulator")
        cdktf(["destroy", "orthweb", "--auto-approve"], demo_env(port))
    phase("Stopping the emulator")
    stop_emulator()
    for path in (STATE_FILE, STATE_FILE.with_suffix(".tfstate.backup")):
        path.unlink(missing_ok=True)
    shutil.rmtree(OUT_DIR, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down", "plan", "replace-host"])
    action = parser.parse_args().action
    try:
        if action == "up":
            up()
        elif action == "down":
            down()
        elif action == "plan":
            terraform_in_stack(["plan", "-input=false"])
        else:
            terraform_in_stack(["destroy", "-target", "aws_instance.orthweb", "-auto-approve", "-input=false"])
            terraform_in_stack(["apply", "-target", "aws_instance.orthweb", "-auto-approve", "-input=false"])
    except DemoError as exc:
        print(f"orthweb demo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
