"""The host's patch step, run for real with dnf and systemctl replaced by recorders: security
updates from the latest Amazon Linux release, a transient repository failure retried, only the
services that need it restarted (Docker with the project stopped), and a reboot only when the
kernel or core libraries changed and patch_reboot allows it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from orthweb.bootstrap import USERDATA_DIR

SCRIPT = USERDATA_DIR / "bin" / "orthweb-patch.sh"
UPGRADE = "dnf upgrade -y --security --releasever=latest"


@dataclass
class PatchHost:
    root: Path
    env: dict[str, str]

    def needs_restarting(self, *services: str, reboot: bool = False) -> None:
        (self.root / "services").write_text("".join(f"{s}\n" for s in services))
        (self.root / "reboothint").write_text("1" if reboot else "0")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, check=False)

    def systemctl_fails(self, *command_lines: str) -> None:
        (self.root / "systemctl-failures").write_text("".join(f"{c}\n" for c in command_lines))

    def several_hosts(self) -> None:
        env_file = Path(self.env["ORTHWEB_ENV_FILE"])
        env_file.write_text(env_file.read_text() + "ORTHWEB_MULTI_HOST=true\n")

    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def host(tmp_path: Path) -> PatchHost:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    # dnf: upgrade fails while upgrade-failures counts down (a mirror not answering);
    # needs-restarting answers from the files the test wrote.
    (bin_dir / "dnf").write_text(
        f"""#!/bin/bash
echo "dnf $*" >> {log}
case "$*" in
  check-release-update) echo "A newer release of Amazon Linux is available: 2023.9.20261120" ;;
  upgrade*)
    n=$(cat {tmp_path}/upgrade-failures 2>/dev/null || echo 0)
    if [ "$n" -gt 0 ]; then echo $((n - 1)) > {tmp_path}/upgrade-failures; echo "Curl error (28)" >&2; exit 1; fi ;;
  "needs-restarting --services") cat {tmp_path}/services ;;
  "needs-restarting --reboothint") exit "$(cat {tmp_path}/reboothint)" ;;
esac
"""
    )
    # systemctl fails (status 1) for the command lines listed in systemctl-failures.
    (bin_dir / "systemctl").write_text(
        f"""#!/bin/bash
echo "systemctl $*" >> {log}
if grep -qxF -- "$*" {tmp_path}/systemctl-failures 2>/dev/null; then echo "Job for $* failed." >&2; exit 1; fi
"""
    )
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "docker $*" >> {log}\n')
    for tool in ("dnf", "systemctl", "docker"):
        (bin_dir / tool).chmod(0o755)
    env_file = tmp_path / "orthweb.env"
    env_file.write_text("ORTHWEB_REGION=us-east-1\nORTHWEB_PATCH_REBOOT=true\n")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ORTHWEB_ENV_FILE": str(env_file),
        "ORTHWEB_LIB": str(USERDATA_DIR / "lib"),
        "ORTHWEB_STATE_DIR": str(tmp_path / "state"),
        "ORTHWEB_RETRY_DELAY": "1",
        "ORTHWEB_RETRY_MAX_DELAY": "1",
    }
    return PatchHost(tmp_path, env)


def test_security_updates_come_from_the_latest_release_and_restart_only_what_needs_it(host: PatchHost) -> None:
    host.needs_restarting("chronyd.service", "sshd.service", "dbus-broker.service", "systemd-logind.service")
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert host.calls() == [
        "dnf check-release-update",
        f"dnf {UPGRADE.removeprefix('dnf ')}",
        "dnf needs-restarting --services",
        "systemctl try-restart chronyd.service",
        "systemctl try-restart sshd.service",
        "dnf needs-restarting --reboothint",
    ]
    assert "orthweb: A newer release of Amazon Linux is available" in proc.stderr
    assert "no reboot needed" in proc.stderr


def test_a_pinned_release_is_the_one_patched_to(host: PatchHost) -> None:
    """patch_release names a release the operator has tested: its advisories, not latest's."""
    env_file = Path(host.env["ORTHWEB_ENV_FILE"])
    env_file.write_text(env_file.read_text() + "ORTHWEB_PATCH_RELEASE=2023.9.20251117\n")
    host.needs_restarting()
    assert host.run().returncode == 0
    upgrades = [c for c in host.calls() if c.startswith("dnf upgrade")]
    assert upgrades == ["dnf upgrade -y --security --releasever=2023.9.20251117"]


def test_a_release_given_by_hand_wins_once_and_a_malformed_one_changes_nothing(host: PatchHost) -> None:
    host.needs_restarting()
    by_hand = host.run("2023.10.20260301")
    assert by_hand.returncode == 0, by_hand.stderr
    assert "dnf upgrade -y --security --releasever=2023.10.20260301" in host.calls()
    calls_before = host.calls()
    for malformed in ("2023; reboot", "2023.9x.20251117", "2023.9.2025111"):
        bad = host.run(malformed)
        assert bad.returncode != 0
        assert "not an Amazon Linux 2023 release" in bad.stderr
    assert host.calls() == calls_before


def test_an_updated_docker_is_restarted_with_the_project_stopped(host: PatchHost) -> None:
    host.needs_restarting("docker.service", "containerd.service", "orthweb.service")
    assert host.run().returncode == 0
    calls = host.calls()
    restart = calls.index("systemctl restart containerd.service docker.service")
    assert calls[restart - 1] == "systemctl stop orthweb.service"
    assert calls[restart + 1] == "systemctl start orthweb.service"
    assert not any("try-restart" in c for c in calls)


def test_the_project_comes_back_up_even_when_restarting_docker_fails(host: PatchHost) -> None:
    """The project was stopped cleanly, so systemd would never start it again by itself: the patch
    step starts it whatever the restart did, then fails so the unit shows it."""
    host.needs_restarting("docker.service")
    host.systemctl_fails("restart containerd.service docker.service")
    proc = host.run()
    assert proc.returncode != 0
    calls = host.calls()
    restart = calls.index("systemctl restart containerd.service docker.service")
    assert calls[restart - 1] == "systemctl stop orthweb.service"
    assert "systemctl start orthweb.service" in calls[restart + 1 :]
    assert "restarting Docker failed" in proc.stderr


def test_with_several_hosts_docker_is_never_restarted_in_place_and_the_group_is_rolled_instead(
    host: PatchHost,
) -> None:
    """A Docker restart fails the load balancer's health checks and the group replaces the host;
    hosts patch together: the update waits for the rolling replacement the runbook describes."""
    host.several_hosts()
    host.needs_restarting("docker.service", "containerd.service", "chronyd.service")
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    calls = host.calls()
    assert "systemctl try-restart chronyd.service" in calls  # ordinary services still restart
    assert not any(
        "docker" in c or "containerd" in c or "orthweb.service" in c for c in calls if c.startswith("systemctl")
    )
    assert "Docker was updated: not restarted in place" in proc.stderr
    assert "instance refresh" in proc.stderr
    assert (host.root / "state" / "reboot-required").exists()


def test_with_several_hosts_a_new_kernel_never_reboots_in_place(host: PatchHost) -> None:
    """patch_reboot concerns a single host: with several, a reboot in the shared window is an outage."""
    host.several_hosts()
    host.needs_restarting(reboot=True)
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert "systemctl reboot" not in host.calls()
    assert "not rebooting in place" in proc.stderr
    assert "instance refresh" in proc.stderr
    assert (host.root / "state" / "reboot-required").exists()


def test_the_reboot_marker_says_what_waits_and_goes_once_nothing_does(host: PatchHost) -> None:
    host.several_hosts()
    marker = host.root / "state" / "reboot-required"
    host.needs_restarting("docker.service", reboot=True)
    assert host.run().returncode == 0
    assert marker.read_text().splitlines() == ["Docker was updated", "the kernel or core libraries were updated"]
    host.needs_restarting("chronyd.service")  # the group was rolled: this host runs the new AMI
    assert host.run().returncode == 0
    assert not marker.exists()


def test_a_new_kernel_reboots_the_host_in_the_window(host: PatchHost) -> None:
    host.needs_restarting(reboot=True)
    proc = host.run()
    assert proc.returncode == 0
    assert host.calls()[-1] == "systemctl reboot"
    assert "rebooting now (patch_reboot is true)" in proc.stderr


def test_with_patch_reboot_false_the_reboot_is_left_to_the_operator(host: PatchHost) -> None:
    host.needs_restarting(reboot=True)
    Path(host.env["ORTHWEB_ENV_FILE"]).write_text("ORTHWEB_REGION=us-east-1\nORTHWEB_PATCH_REBOOT=false\n")
    proc = host.run()
    assert proc.returncode == 0
    assert "systemctl reboot" not in host.calls()
    assert "reboot needed (patch_reboot is false" in proc.stderr
    assert (host.root / "state" / "reboot-required").exists()


def test_a_repository_that_does_not_answer_at_first_is_retried(host: PatchHost) -> None:
    host.needs_restarting()
    (host.root / "upgrade-failures").write_text("2")
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert host.calls().count(UPGRADE) == 3
    assert "failed (attempt 2 of 8" in proc.stderr
    assert "succeeded at attempt 3" in proc.stderr


def test_the_patch_step_never_touches_the_container_images(host: PatchHost) -> None:
    # Images change only when the settings change (a new image tag re-renders the compose file).
    host.needs_restarting("docker.service")
    assert host.run().returncode == 0
    assert not any(c.startswith("docker ") for c in host.calls())
