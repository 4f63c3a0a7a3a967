"""The application as the host runs it: the rendered docker-compose.yml, unmodified, on a real Docker
engine, started by the host's own ``orthweb-refresh --up``, with the stand-in images built here
(orthweb_dev.containers, orthweb_dev.images). Each property the compose file asks for is read from
the running containers: ``docker inspect`` and their processes' /proc entries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orthweb.settings import Settings
from orthweb_dev.containers import PROJECT, ContainerHost, container_name, containers_for_test
from orthweb_dev.dicom import make_instance
from orthweb_dev.images import REPOSITORY
from orthweb_dev.proc import wait_until

pytestmark = pytest.mark.app

# Linux capability bits (capability.h) of the two nginx keeps.
NGINX_CAPS = {"CAP_SETGID": 6, "CAP_SETUID": 7}
SECRETS = ("ORTHANC__POSTGRESQL__CONNECTION_URI", "ORTHANC__REGISTERED_USERS")


@pytest.fixture(scope="module")
def host() -> Iterator[ContainerHost]:
    with containers_for_test(Settings(web_users={"admin": "admin", "vera": "viewer"})) as running:
        yield running


def status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


# --- what runs ----------------------------------------------------------------------------------


def test_the_hosts_project_runs_the_rendered_file_with_only_the_override(host: ContainerHost) -> None:
    """The host's project and container names; the stand-in images; the compose file in etc is the
    rendered one, byte for byte, and the override changes only images, ports and the logs endpoint."""
    assert (host.etc / "docker-compose.yml").read_text() == host.rendered["docker-compose.yml"]
    text = host.override_file.read_text()
    assert text.count(" !override") == 1  # the ports replace the host's list rather than extend it
    assert "    ports: !override\n" in text
    override = yaml.safe_load(text.replace(" !override", ""))
    assert set(override["services"]["nginx"]) == {"image", "ports", "logging"}
    assert set(override["services"]["orthanc"]) == {"image", "logging"}
    for service in ("nginx", "orthanc"):
        assert override["services"][service]["logging"] == {"options": {"awslogs-endpoint": host.moto.endpoint}}
        info = host.inspect(service)
        assert info["Name"] == f"/{PROJECT}-{service}-1"
        assert info["Config"]["Labels"]["com.docker.compose.project"] == PROJECT
        assert info["Config"]["Image"].startswith(f"{REPOSITORY}/{service}:")
    calls = host.docker_calls()
    assert any(" up --detach --pull missing --remove-orphans" in call for call in calls), calls


def test_roots_are_read_only_and_limits_hold(host: ContainerHost) -> None:
    for service, memory, pids in (("nginx", 256 << 20, 64), ("orthanc", 1536 << 20, 512)):
        config = host.inspect(service)["HostConfig"]
        assert config["ReadonlyRootfs"] is True, service
        assert config["Memory"] == memory, service
        assert config["PidsLimit"] == pids, service
        assert config["SecurityOpt"] == ["no-new-privileges:true"], service
        assert config["CapDrop"] == ["ALL"], service
        refused = subprocess.run(
            ["docker", "exec", container_name(service), "sh", "-c", "echo x > /etc/orthweb-probe"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode != 0, service
        assert "Read-only file system" in refused.stderr, service


def test_orthanc_has_no_capability_and_nginx_only_its_three(host: ContainerHost) -> None:
    orthanc = status(host.pid("orthanc"))
    assert orthanc["Uid"].split()[0] == "0"  # the image's root, with nothing a root usually has
    for key in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert int(orthanc[key], 16) == 0, key
    assert orthanc["NoNewPrivs"] == "1"
    master = status(host.pid("nginx"))
    expected = sum(1 << bit for bit in NGINX_CAPS.values())
    assert int(master["CapEff"], 16) == int(master["CapBnd"], 16) == expected
    assert master["NoNewPrivs"] == "1"
    workers = [status(pid) for pid in children(host.pid("nginx"))]
    assert workers
    for worker in workers:
        assert worker["Uid"].split() == ["101"] * 4  # the image's nginx user, all four ids
        assert int(worker["CapEff"], 16) == 0


def test_orthanc_lives_in_nginxs_network_namespace_and_publishes_nothing(host: ContainerHost) -> None:
    nginx, orthanc = host.inspect("nginx"), host.inspect("orthanc")
    assert orthanc["HostConfig"]["NetworkMode"] == f"container:{nginx['Id']}"
    assert not orthanc["HostConfig"]["PortBindings"]
    net = {s: os.readlink(f"/proc/{host.pid(s)}/ns/net") for s in ("nginx", "orthanc")}
    assert net["nginx"] == net["orthanc"]
    published = {port for port, bindings in nginx["NetworkSettings"]["Ports"].items() if bindings}
    assert published == {"443/tcp", "11112/tcp"}
    for bindings in nginx["NetworkSettings"]["Ports"].values():
        assert all(b["HostIp"] == "127.0.0.1" for b in bindings or [])


def test_secrets_are_root_only_files_and_never_in_an_environment(host: ContainerHost) -> None:
    listing = subprocess.run(
        [
            "docker",
            "exec",
            container_name("orthanc"),
            "stat",
            "-c",
            "%n %a %u",
            *(f"/run/secrets/{s}" for s in SECRETS),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert [line.split() for line in listing if line] == [[f"/run/secrets/{s}", "400", "0"] for s in SECRETS]
    values = [(host.secrets / name).read_text().strip() for name in SECRETS]
    values += list(json.loads(values[1]).values())  # each password on its own
    for service in ("nginx", "orthanc"):
        config_env = "\n".join(host.inspect(service)["Config"]["Env"] or [])
        process_env = Path(f"/proc/{host.pid(service)}/environ").read_bytes().decode(errors="replace")
        for value in values:
            assert value not in config_env, service
            assert value not in process_env, service
    # Orthanc itself has them: it answers the admin with the generated password.
    assert host.rest("GET", "/system")[0] == 200


def test_health_checks_turn_healthy(host: ContainerHost) -> None:
    """Both health checks pass (the first runs 30 s after the start: their interval)."""

    def health() -> dict[str, str]:
        return {s: host.inspect(s)["State"]["Health"]["Status"] for s in ("nginx", "orthanc")}

    wait_until("both containers healthy", lambda: set(health().values()) == {"healthy"}, timeout=120, interval=2)


# --- what happens to it -------------------------------------------------------------------------


def test_an_orthanc_killed_from_the_host_is_restarted_and_loses_nothing_acknowledged(host: ContainerHost) -> None:
    samples = [make_instance(f"kill-{n}", rows=64, columns=64, seed=n) for n in range(3)]
    acknowledged = []
    for sample in samples:
        code, body = host.rest("POST", "/instances", sample.data, headers={"Content-Type": "application/dicom"})
        assert code == 200, body
        acknowledged.append(json.loads(body)["ID"])
    restarts = host.inspect("orthanc")["RestartCount"]
    os.kill(host.pid("orthanc"), signal.SIGKILL)
    wait_until(
        "Docker restarting Orthanc",
        lambda: host.inspect("orthanc")["RestartCount"] > restarts,
        timeout=60,
        interval=0.5,
    )
    host.wait_ready()
    stored = set(host.rest_json("/instances"))
    assert set(acknowledged) <= stored


def test_both_containers_lines_reach_cloudwatch_logs(host: ContainerHost) -> None:
    """Through the awslogs driver, into the emulator's log groups, one stream per container."""
    assert host.rest("GET", "/system")[0] == 200

    def messages(group: str) -> list[str]:
        out = host.aws("logs", "filter-log-events", "--log-group-name", group)
        return [event["message"] for event in out["events"]]

    def logged(group: str, text: str) -> bool:
        return any(text in message for message in messages(group))

    wait_until(
        "nginx's request line in /orthweb/nginx", lambda: logged("/orthweb/nginx", '"path":"/system"'), timeout=30
    )
    wait_until(
        "Orthanc's lines in /orthweb/orthanc", lambda: logged("/orthweb/orthanc", "Orthanc has started"), timeout=30
    )
    streams = host.aws("logs", "describe-log-streams", "--log-group-name", "/orthweb/orthanc")["logStreams"]
    assert any(s["logStreamName"].startswith(f"{container_name('orthanc')}/") for s in streams)
    access = [json.loads(m) for m in messages("/orthweb/nginx") if m.startswith('{"time"') and '"method"' in m]
    assert any(line["user"] == "admin" and line["status"] == 200 for line in access)
