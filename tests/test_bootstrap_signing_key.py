"""Docker's signing key: the host bootstrap downloads the file Docker publishes and keeps only the key
with the published fingerprint (``verified_key`` in userdata/lib/common.sh), so another key in that
file, in whatever position, is never imported by rpm. Real keys, made here with gpg."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orthweb.bootstrap import USERDATA_DIR
from orthweb_dev.testing import require

COMMON = USERDATA_DIR / "lib" / "common.sh"


def make_key(home: Path, name: str) -> str:
    """A fresh signing key in the keyring ``home``; its fingerprint."""
    gpg = ["gpg", "--batch", "--homedir", str(home), "--passphrase", "", "--pinentry-mode", "loopback"]
    subprocess.run([*gpg, "--quick-gen-key", f"{name} <{name}@example.org>", "ed25519", "sign", "1d"],
                   check=True, capture_output=True)  # fmt: skip
    listed = subprocess.run([*gpg, "--with-colons", "--list-keys", f"{name}@example.org"],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    return next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A keyring with Docker's stand-in key and an intruder's: (the keyring, name -> fingerprint).
    The gpg-agent that making keys starts is stopped after."""
    require("gpg", "gpg")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    try:
        yield home, {name: make_key(home, name) for name in ("docker", "intruder")}
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


def published(keys: tuple[Path, dict[str, str]], names: list[str], path: Path) -> Path:
    """The file a download would give: the named keys, armored, one after the other."""
    home, _ = keys
    blocks = [
        subprocess.run(
            ["gpg", "--batch", "--homedir", str(home), "--armor", "--export", keys[1][name]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for name in names
    ]
    path.write_text("".join(blocks))
    return path


def verified_key(file: Path, fingerprint: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'. "{COMMON}"; verified_key "$1" "$2" "$3"', "verified_key", str(file), fingerprint, str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def primaries(path: Path) -> list[str]:
    """The fingerprints of the primary keys in a key file."""
    shown = subprocess.run(["gpg", "--batch", "--show-keys", "--with-colons", str(path)],
                           check=True, capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    return [shown[i + 1].split(":")[9] for i, line in enumerate(shown) if line.startswith("pub:")]


@pytest.mark.parametrize("order", [["docker", "intruder"], ["intruder", "docker"], ["docker"]])
def test_only_the_key_with_the_published_fingerprint_is_kept(
    keys: tuple[Path, dict[str, str]], tmp_path: Path, order: list[str]
) -> None:
    download = published(keys, order, tmp_path / "gpg")
    assert primaries(download) == [keys[1][name] for name in order]
    out = tmp_path / "docker-ce.gpg"
    run = verified_key(download, keys[1]["docker"], out)
    assert run.returncode == 0, run.stderr
    assert primaries(out) == [keys[1]["docker"]]
    assert oct(out.stat().st_mode & 0o777) == "0o644"


def test_a_file_without_that_key_is_refused_and_nothing_is_written(
    keys: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    download = published(keys, ["intruder"], tmp_path / "gpg")
    out = tmp_path / "docker-ce.gpg"
    run = verified_key(download, keys[1]["docker"], out)
    assert run.returncode != 0
    assert "no key with fingerprint" in run.stderr
    assert not out.exists()
    garbage = tmp_path / "garbage"
    garbage.write_text("<html>not a key</html>")
    assert verified_key(garbage, keys[1]["docker"], out).returncode != 0
    assert not out.exists()


def test_the_bootstrap_installs_what_verified_key_kept() -> None:
    script = (USERDATA_DIR / "bin" / "orthweb-bootstrap.sh").read_text()
    assert 'verified_key "$tmp" "$DOCKER_KEY_FPR" "$DOCKER_KEY" || die' in script
    assert 'rpm --import "$DOCKER_KEY"' in script
    assert script.index("verified_key") < script.index("rpm --import")
