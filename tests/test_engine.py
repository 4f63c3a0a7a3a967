"""The container engine the application tests will run on: Debian's Docker engine and compose v2 at
the host's pinned version run a project with the hardening the rendered compose file asks for
(read-only root, no capabilities, no new privileges, tmpfs, memory and pid limits, a secret as a
file), proven from ``docker inspect`` and the container's own /proc; and every network it makes
is in its one address pool, where the tests list their DICOM peer."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orthweb.bootstrap import COMPOSE_PLUGIN_VERSION, render_app
from orthweb.settings import Settings
from orthweb_dev import images
from orthweb_dev.containers import ENGINE_CLIENTS
from orthweb_dev.engine import ADDRESS_POOL, compose_binary, running_engine
from orthweb_dev.testing import INSTALL_HINT, not_run, require

pytestmark = pytest.mark.app

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "sleep", "grep", "env")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require("dockerd", "docker.io")
    if os.geteuid() != 0 and not shutil.which("docker"):
        not_run(f"the Docker engine needs root or a running daemon ({INSTALL_HINT})")
    with running_engine(tmp_path_factory.mktemp("engine") / "dockerd.log") as version:
        yield version


@pytest.fixture(scope="module")
def image(engine: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-binary image made here from Debian's busybox-static (Docker Hub is out of reach),
    tagged by the binary's hash, so it is imported again only when the binary changes."""
    if not BUSYBOX.is_file():
        not_run(f"{BUSYBOX} is missing: install the Debian package busybox-static ({INSTALL_HINT})")
    tag = f"orthweb-test/busybox:{hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0:
        return tag
    rootfs = tmp_path_factory.mktemp("busybox") / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    subprocess.run(["docker", "import", str(rootfs), tag], check=True, capture_output=True)
    return tag


def test_every_network_the_engine_makes_is_in_the_pool_the_tests_list_as_their_peer(engine: str) -> None:
    name = f"orthweb-pool-{os.getpid()}"
    subprocess.run(["docker", "network", "create", name], check=True, capture_output=True)
    try:
        inspect = ["docker", "network", "inspect", name, "--format", "{{json .IPAM.Config}}"]
        config = json.loads(subprocess.run(inspect, check=True, capture_output=True, text=True).stdout)
    finally:
        subprocess.run(["docker", "network", "rm", name], check=True, capture_output=True)
    pool = ipaddress.IPv4Network(ADDRESS_POOL)
    assert [ipaddress.IPv4Network(c["Subnet"]).subnet_of(pool) for c in config] == [True]
    assert ipaddress.ip_address(config[0]["Gateway"]) in ipaddress.ip_network(ENGINE_CLIENTS)
    assert pool.prefixlen == 16  # a peer granted find may be that wide without a certificate


def test_compose_is_the_hosts_pinned_version() -> None:
    run = subprocess.run([str(compose_binary()), "version", "--short"], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == COMPOSE_PLUGIN_VERSION


def test_a_hardened_project_runs_with_what_the_rendered_compose_file_asks_for(image: str, tmp_path: Path) -> None:
    rendered = yaml.safe_load(render_app(Settings())["docker-compose.yml"])["services"]["orthanc"]
    secret = tmp_path / "token"
    secret.write_text("not-in-the-environment")
    secret.chmod(0o400)
    project = {
        "services": {
            "app": {
                "image": image,
                "command": ["sleep", "300"],
                "network_mode": "none",
                # The rendered Orthanc service's own hardening keys, as they are.
                **{
                    k: rendered[k]
                    for k in ("read_only", "cap_drop", "security_opt", "tmpfs", "mem_limit", "pids_limit")
                },
                "secrets": ["token"],
            }
        },
        "secrets": {"token": {"file": str(secret)}},
    }
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(project))
    compose = [str(compose_binary()), "--project-name", f"orthweb-engine-{os.getpid()}", "--file", "compose.yml"]
    subprocess.run([*compose, "up", "--detach", "--wait"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    try:
        (container,) = subprocess.run(
            [*compose, "ps", "--quiet"], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout.split()
        (inspected,) = json.loads(
            subprocess.run(["docker", "inspect", container], check=True, capture_output=True, text=True).stdout
        )
        host = inspected["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["PidsLimit"] == rendered["pids_limit"]
        assert host["Memory"] > 0
        status = subprocess.run(
            ["docker", "exec", container, "cat", "/proc/1/status"], check=True, capture_output=True, text=True
        ).stdout
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["CapEff"].strip() == "0000000000000000"
        assert fields["NoNewPrivs"].strip() == "1"
        read = subprocess.run(
            ["docker", "exec", container, "cat", "/run/secrets/token"], capture_output=True, text=True, check=True
        )
        assert read.stdout == "not-in-the-environment"
        env = subprocess.run(["docker", "exec", container, "env"], capture_output=True, text=True, check=True).stdout
        assert "not-in-the-environment" not in env
        # The root filesystem refuses writes; the tmpfs takes them.
        assert subprocess.run(
            ["docker", "exec", container, "sh", "-c", "echo x > /x"], capture_output=True, check=False
        ).returncode
        assert not subprocess.run(["docker", "exec", container, "sh", "-c", "echo x > /tmp/x"], check=False).returncode
    finally:
        subprocess.run([*compose, "down", "--timeout", "1"], cwd=tmp_path, capture_output=True, check=False)


# --- stand-in builds: the cache never holds a broken image ----------------------------------------


@pytest.fixture
def standin_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A copy of the nginx stand-in's build files with one more input (its own digest, so its tag is
    not in the cache), and an ``mmdebstrap`` that writes a small tar, then exits with
    $FAKE_STRAP_STATUS: what the build does with the tar, not Debian's packages, is under test."""
    images_dir = tmp_path / "images"
    shutil.copytree(images.IMAGES_DIR / "nginx", images_dir / "nginx")
    (images_dir / "nginx" / "rootfs").mkdir(exist_ok=True)
    (images_dir / "nginx" / "rootfs" / f"test-{tmp_path.name}").write_text("a distinct input\n")
    monkeypatch.setattr(images, "IMAGES_DIR", images_dir)
    fake = tmp_path / "bin"
    fake.mkdir()
    (tmp_path / "root" / "etc").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "os-release").write_text("ID=partial\n")
    # After its tar, it watches for 2 s whether the tag appears while it has not finished yet.
    (fake / "mmdebstrap").write_text(
        f"#!/bin/sh\ntar -C {tmp_path / 'root'} -c etc\nexec >&-\nseen=untagged\nfor _ in $(seq 20); do\n"
        '  if docker image inspect "$FAKE_TAG" >/dev/null 2>&1; then seen=tagged; break; fi\n  sleep 0.1\ndone\n'
        'echo "$seen" >"$FAKE_SEEN"\nexit "$FAKE_STRAP_STATUS"\n'
    )
    (fake / "mmdebstrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    tag = images.StandIn("nginx").tag
    monkeypatch.setenv("FAKE_TAG", tag)
    monkeypatch.setenv("FAKE_SEEN", str(tmp_path / "seen"))
    return tag


def all_images() -> set[str]:
    listed = subprocess.run(["docker", "image", "ls", "--all", "--quiet"], capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


def test_a_stand_in_whose_build_failed_midway_is_never_tagged(
    engine: str, standin_copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mmdebstrap failing after some of its tar reached docker import (which then imports it): the
    tag, the cache's "built", is never given, not even while mmdebstrap still runs (a build stopped
    then would leave it), and the partial image is removed."""
    monkeypatch.setenv("FAKE_STRAP_STATUS", "1")
    before = all_images()
    with pytest.raises(images.ImageError, match="mmdebstrap failed building the nginx stand-in"):
        images.build("nginx")
    assert not images.image_exists(standin_copy)
    assert (Path(os.environ["FAKE_SEEN"]).read_text().strip()) == "untagged"
    assert all_images() <= before


def test_a_stand_in_is_tagged_once_its_build_succeeded(
    engine: str, standin_copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STRAP_STATUS", "0")
    try:
        tag, seconds = images.build("nginx")
        assert tag == standin_copy
        assert seconds is not None
        assert images.image_exists(tag)
        assert images.build("nginx") == (tag, None)  # cached from now on
    finally:
        subprocess.run(["docker", "image", "rm", "--force", standin_copy], capture_output=True, check=False)
