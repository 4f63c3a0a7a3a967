"""The host steps images in S3 and several hosts add, run for real with the AWS CLI against a local
AWS emulator: the per-host Orthanc settings, the image-store session only Orthanc reads, the one
certificate every host serves (made once, adopted by the others, renewed once however many hosts
race), and the refresh step that runs them."""

from __future__ import annotations

import configparser
import datetime as dt
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.credentials import SharedCredentialProvider
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orthweb.bootstrap import USERDATA_DIR, render_file, settings_values
from orthweb.settings import Settings
from orthweb_dev.emulator_server import MotoServer, moto_server, start
from orthweb_dev.fakehost import FakeHost
from orthweb_dev.proc import free_port, stop_process, wait_until
from orthweb_dev.testing import require

pytestmark = pytest.mark.emulator

SITE = "pacs.example.org"
BALANCER = "orthweb-nlb-0123456789abcdef.elb.us-east-1.amazonaws.com"
FLEET = Settings(storage="s3", hosts=3, db_multi_az=True, endpoints_in_all_azs=True)


@pytest.fixture(scope="module")
def emulator() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@dataclass
class Deployment:
    """What the stack creates for the hosts: the TLS secret (empty), the image-store role."""

    emulator: MotoServer
    tls_arn: str
    role_arn: str
    base: Path
    count: int = 0

    def host(self, instance_id: str | None = None, **extra: str) -> FakeHost:
        """A new host of the deployment, with its own /etc/orthweb and instance id."""
        self.count += 1
        root = self.base / f"host{self.count}"
        (root / "etc").mkdir(parents=True)
        sbin = root / "sbin"
        sbin.mkdir()
        values = settings_values(FLEET)
        for script in (USERDATA_DIR / "bin").glob("orthweb-*.sh"):
            # Rendered, as cloud-init writes them: the refresh step runs the new steps.
            (sbin / script.stem).write_text(render_file(f"bin/{script.name}", values))
            (sbin / script.stem).chmod(0o755)
        (sbin / "orthweb-rds-ca").write_text("#!/bin/sh\nexit 0\n")  # needs the internet; tested elsewhere
        (sbin / "orthweb-secrets").write_text("#!/bin/sh\nexit 0\n")  # test_bootstrap_secrets covers it
        (sbin / "orthweb-db-role").write_text("#!/bin/sh\nexit 0\n")  # test_app_db_role covers it
        (sbin / "orthweb-archives").write_text("#!/bin/sh\nexit 0\n")  # test_app_archives covers it
        docker = root / "docker"
        docker.write_text(f'#!/bin/sh\necho "$*" >> {root / "docker.log"}\n')
        docker.chmod(0o755)
        (root / "orthweb.env").write_text(
            f"ORTHWEB_REGION=us-east-1\nORTHWEB_SITE_NAME={SITE}\nORTHWEB_BALANCER_DNS={BALANCER}\n"
            f"ORTHWEB_TLS_SECRET_ARN={self.tls_arn}\nORTHWEB_IMAGES_BUCKET=orthweb-images-test\n"
            f"ORTHWEB_IMAGES_ROLE_ARN={self.role_arn}\n"
        )
        env = self.emulator.env()
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
            ORTHWEB_ENV_FILE=str(root / "orthweb.env"),
            ORTHWEB_LIB=str(USERDATA_DIR / "lib"),
            ORTHWEB_ETC=str(root / "etc"),
            ORTHWEB_SBIN=str(sbin),
            ORTHWEB_DOCKER=str(docker),
            ORTHWEB_IMDS_URL="http://127.0.0.1:9",
            ORTHWEB_INSTANCE_ID=instance_id or f"i-0{self.count:016x}",
            ORTHWEB_PUBLIC_HOSTNAME="ec2-203-0-113-10.compute-1.amazonaws.com",
            ORTHWEB_LOCAL_HOSTNAME="ip-10-64-1-10.ec2.internal",
            ORTHWEB_PUBLIC_IPV4="203.0.113.10",
            ORTHWEB_LOCAL_IPV4="10.64.1.10",
            **extra,
        )
        return FakeHost(root=root, env=env)

    def secret(self) -> dict[str, str] | None:
        client = boto3.client("secretsmanager", **self._client())
        try:
            value = client.get_secret_value(SecretId=self.tls_arn)["SecretString"]
        except client.exceptions.ResourceNotFoundException:
            return None
        return dict(json.loads(value))

    def put(self, value: dict[str, str]) -> None:
        boto3.client("secretsmanager", **self._client()).put_secret_value(
            SecretId=self.tls_arn, SecretString=json.dumps(value)
        )

    def _client(self) -> dict[str, str]:
        return {
            "endpoint_url": self.emulator.endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }


@pytest.fixture
def deployment(tmp_path: Path, emulator: MotoServer) -> Deployment:
    require("jq", "jq")
    require("openssl", "openssl")
    emulator.reset()
    kw = {
        "endpoint_url": emulator.endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    tls = boto3.client("secretsmanager", **kw).create_secret(Name="orthweb/tls-test")["ARN"]  # empty, as the stack
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = boto3.client("iam", **kw).create_role(
        RoleName="orthweb-image-store", AssumeRolePolicyDocument=json.dumps(trust)
    )
    return Deployment(emulator=emulator, tls_arn=tls, role_arn=role["Role"]["Arn"], base=tmp_path)


def certificate(host: FakeHost) -> x509.Certificate:
    return x509.load_pem_x509_certificate((host.etc / "tls" / "server.crt").read_bytes())


# --- per-host Orthanc settings ---------------------------------------------------------------------


def test_each_host_gets_its_own_database_server_identifier_and_the_bucket(deployment: Deployment) -> None:
    first, second = deployment.host("i-0aaaaaaaaaaaaaaa1"), deployment.host("i-0bbbbbbbbbbbbbbb2")
    for host in (first, second):
        assert host.run("orthweb-host-config") == ["orthanc-host.json"]
        assert host.run("orthweb-host-config") == []  # unchanged: nothing to restart
    configs = [json.loads((h.etc / "orthanc-host.json").read_text()) for h in (first, second)]
    assert [c["DatabaseServerIdentifier"] for c in configs] == ["i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"]
    assert all(c["AwsS3Storage"] == {"BucketName": "orthweb-images-test", "Region": "us-east-1"} for c in configs)
    assert stat.S_IMODE((first.etc / "orthanc-host.json").stat().st_mode) == 0o444  # not a secret


def test_images_in_postgresql_write_only_the_identifier(deployment: Deployment) -> None:
    host = deployment.host("i-0ccccccccccccccc3")
    env_file = Path(host.env["ORTHWEB_ENV_FILE"])
    kept = [line for line in env_file.read_text().splitlines() if "IMAGES" not in line]
    env_file.write_text("\n".join(kept) + "\n")
    host.run("orthweb-host-config")
    assert json.loads((host.etc / "orthanc-host.json").read_text()) == {
        "DatabaseServerIdentifier": "i-0ccccccccccccccc3"
    }


# --- the image-store session -----------------------------------------------------------------------


def test_the_session_lands_in_a_root_only_credentials_file_an_aws_sdk_reads(deployment: Deployment) -> None:
    host = deployment.host()
    assert host.run("orthweb-images") == ["aws-credentials"]
    aws_dir = host.etc / "aws"
    assert stat.S_IMODE(aws_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((aws_dir / "credentials").stat().st_mode) == 0o400
    assert sorted(p.name for p in aws_dir.iterdir()) == ["credentials", "expiration"]  # no temp file left
    ini = configparser.ConfigParser()
    ini.read(aws_dir / "credentials")
    assert ini.sections() == ["default"]
    assert set(ini["default"]) == {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"}
    # An AWS SDK pointed at the file (as the S3 plugin is, by AWS_SHARED_CREDENTIALS_FILE) reads the session.
    creds = SharedCredentialProvider(creds_filename=str(aws_dir / "credentials")).load()
    assert creds is not None
    assert (creds.access_key, creds.token) == (ini["default"]["aws_access_key_id"], ini["default"]["aws_session_token"])
    expires = dt.datetime.fromisoformat((aws_dir / "expiration").read_text().strip())
    assert dt.timedelta(minutes=55) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1, minutes=1)


def test_the_session_is_renewed_only_when_it_nears_expiry(deployment: Deployment) -> None:
    host = deployment.host()
    host.run("orthweb-images")
    before = (host.etc / "aws" / "credentials").read_text()
    assert host.run("orthweb-images") == []  # an hour left: kept
    assert (host.etc / "aws" / "credentials").read_text() == before
    # Renew when less than 61 minutes remain: a fresh one-hour session is already "near expiry".
    assert host.run("orthweb-images", env={"ORTHWEB_IMAGES_RENEW_BELOW": "3660"}) == ["aws-credentials"]
    assert (host.etc / "aws" / "credentials").read_text() != before


def test_a_session_that_cannot_be_had_stops_the_step_and_keeps_the_old_one(deployment: Deployment) -> None:
    host = deployment.host()
    host.run("orthweb-images")
    before = (host.etc / "aws" / "credentials").read_text()
    unreachable = {
        "ORTHWEB_IMAGES_RENEW_BELOW": "3660",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "ORTHWEB_RETRY_ATTEMPTS": "2",
        "ORTHWEB_RETRY_DELAY": "1",
    }
    assert host.run("orthweb-images", check=False, env=unreachable) == ["exit 1"]
    assert "assume the image-store role: failed (attempt 1 of 2" in host.last_stderr  # retried first
    assert "cannot assume the image-store role" in host.last_stderr
    assert (host.etc / "aws" / "credentials").read_text() == before
    assert sorted(p.name for p in (host.etc / "aws").iterdir()) == ["credentials", "expiration"]


# --- one certificate for every host ----------------------------------------------------------------


def test_the_first_host_makes_the_certificate_and_the_others_adopt_it(deployment: Deployment) -> None:
    first, second = deployment.host(), deployment.host()
    assert first.run("orthweb-shared-cert") == ["server.crt"]
    shared = deployment.secret()
    assert shared is not None
    assert set(shared) == {"certificate", "key"}
    cert = certificate(first)
    assert cert.public_bytes(serialization.Encoding.PEM).decode() == shared["certificate"]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [SITE, BALANCER]  # no host's own name or address
    assert stat.S_IMODE((first.etc / "tls" / "server.key").stat().st_mode) == 0o400

    assert second.run("orthweb-shared-cert") == ["server.crt"]
    assert (second.etc / "tls" / "server.crt").read_bytes() == (first.etc / "tls" / "server.crt").read_bytes()
    assert (second.etc / "tls" / "server.key").read_bytes() == (first.etc / "tls" / "server.key").read_bytes()
    assert first.run("orthweb-shared-cert") == []  # nothing changed
    # orthweb-cert finds the shared certificate valid for the site and keeps it.
    assert second.run("orthweb-cert") == []


def test_the_shared_certificate_waits_for_secrets_manager_and_gives_up_clearly(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Secrets Manager not answering at first: the step retries with back-off and goes on once an
    emulator starts on the port; never answering: it stops with the step's own message."""
    port = free_port()
    host = deployment.host()
    env_file = host.root / "orthweb.env"
    secret_name = "orthweb/tls-late"  # the emulator starts empty: name the secret, its ARN is not known yet
    env_file.write_text(env_file.read_text().replace(deployment.tls_arn, secret_name))
    host.env.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_MAX_ATTEMPTS="1",
        ORTHWEB_RETRY_ATTEMPTS="60",
        ORTHWEB_RETRY_DELAY="1",
        ORTHWEB_RETRY_MAX_DELAY="2",
    )
    log = tmp_path / "shared-cert.log"
    moto = None
    with log.open("w") as err:
        step = subprocess.Popen(
            [str(host.root / "sbin" / "orthweb-shared-cert")], env=host.env, stdout=subprocess.PIPE, stderr=err
        )
    try:
        wait_until("a first failed attempt", lambda: "failed (attempt 1 of 60" in log.read_text(), proc=step)
        moto, late = start(port=port)
        boto3.client(
            "secretsmanager",
            endpoint_url=late.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_secret(Name=secret_name)
        out, _ = step.communicate(timeout=120)
        assert step.returncode == 0, log.read_text()
    finally:
        stop_process(step)
        stop_process(moto)
    assert out.decode().split() == ["server.crt"]
    assert "read the shared certificate secret: succeeded at attempt" in log.read_text()
    assert (host.etc / "tls" / "server.crt").exists()

    host.env.update(ORTHWEB_RETRY_ATTEMPTS="2")  # nothing on the port any more
    assert host.run("orthweb-shared-cert", check=False) == ["exit 1"]
    assert "orthweb: error: read the shared certificate secret: failed 2 times" in host.last_stderr
    assert "cannot read the shared certificate secret orthweb/tls-late" in host.last_stderr


def _rival_aws(host: FakeHost, candidate: dict[str, str]) -> None:
    """Put an `aws` first on the host's PATH that lets a rival host win the race: on the host's
    put-secret-value it first puts ``candidate`` with the host's own client request token."""
    shim = host.root / "rival" / "aws"
    shim.parent.mkdir()
    real = Path(sys.executable).parent / "aws"
    candidate_file = host.root / "rival" / "candidate.json"
    candidate_file.write_text(json.dumps(candidate))
    shim.write_text(
        "#!/bin/bash\n"
        'if [ "$2" = put-secret-value ]; then\n'
        '  args=("$@")\n'
        '  for i in "${!args[@]}"; do [ "${args[$i]}" = --client-request-token ] && token=${args[$((i + 1))]}; done\n'
        f'  "{real}" secretsmanager put-secret-value --secret-id "$4" --client-request-token "$token" '
        f'--secret-string "file://{candidate_file}" >/dev/null\n'
        "fi\n"
        f'exec "{real}" "$@"\n'
    )
    shim.chmod(0o755)
    host.env["PATH"] = f"{shim.parent}{os.pathsep}{host.env['PATH']}"


def _candidate(tmp: Path, name: str, days: int = 825) -> dict[str, str]:
    """A certificate another host would make (openssl, same names)."""
    key, crt = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days), "-subj", f"/CN={SITE}",
         "-addext", f"subjectAltName=DNS:{SITE},DNS:{BALANCER}", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip
    return {"certificate": crt.read_text(), "key": key.read_text()}


def test_when_two_hosts_make_the_first_certificate_at_once_one_wins_and_both_serve_it(
    deployment: Deployment, tmp_path: Path
) -> None:
    loser = deployment.host()
    rival = _candidate(tmp_path, "rival")
    _rival_aws(loser, rival)  # the rival's put lands between this host's read and its own put
    assert loser.run("orthweb-shared-cert") == ["server.crt"]
    assert "another host renewed the shared certificate first" in loser.last_stderr
    assert deployment.secret() == rival
    assert (loser.etc / "tls" / "server.crt").read_text() == rival["certificate"]
    versions = loser.aws("secretsmanager", "list-secret-version-ids", "--secret-id", deployment.tls_arn)["Versions"]
    assert len(versions) == 1  # the loser's candidate was refused, not stored


def test_many_hosts_booting_together_all_serve_one_certificate(deployment: Deployment) -> None:
    hosts = [deployment.host() for _ in range(4)]
    procs = [
        subprocess.Popen(
            [str(h.root / "sbin" / "orthweb-shared-cert")], env=h.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for h in hosts
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    served = {(h.etc / "tls" / "server.crt").read_bytes() for h in hosts}
    assert len(served) == 1
    shared = deployment.secret()
    assert shared is not None
    assert served == {shared["certificate"].encode()}


def test_an_expiring_certificate_is_renewed_once_however_many_hosts_renew(
    deployment: Deployment, tmp_path: Path
) -> None:
    old = _candidate(tmp_path, "old", days=20)  # inside the 45-day renewal window
    deployment.put(old)
    first = deployment.host()
    rival = _candidate(tmp_path, "renewed")
    _rival_aws(first, rival)
    assert first.run("orthweb-shared-cert") == ["server.crt"]
    assert deployment.secret() == rival
    second = deployment.host()
    assert second.run("orthweb-shared-cert") == ["server.crt"]
    assert (second.etc / "tls" / "server.crt").read_text() == rival["certificate"]
    # A host that renews on its own makes a new one, named for the site, valid for 825 days.
    deployment.put(_candidate(tmp_path, "old2", days=20))
    third = deployment.host()
    assert third.run("orthweb-shared-cert") == ["server.crt"]
    cert = certificate(third)
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)
    assert cert.public_bytes(serialization.Encoding.PEM).decode() == (deployment.secret() or {})["certificate"]


def test_a_certificate_whose_key_does_not_match_is_refused(deployment: Deployment, tmp_path: Path) -> None:
    one, other = _candidate(tmp_path, "one"), _candidate(tmp_path, "other")
    deployment.put({"certificate": one["certificate"], "key": other["key"]})
    host = deployment.host()
    assert host.run("orthweb-shared-cert", check=False) == ["exit 1"]
    assert "do not match" in host.last_stderr
    assert not (host.etc / "tls" / "server.crt").exists()


# --- the refresh step runs them --------------------------------------------------------------------


def actions(calls: list[str]) -> list[str]:
    """The Docker calls that change something (not the ps/inspect look-ups)."""
    return [c for c in calls if " up " in c or " kill " in c]


def test_refresh_runs_the_new_steps_at_boot_and_reloads_nginx_only_for_a_new_certificate(
    deployment: Deployment, tmp_path: Path
) -> None:
    host = deployment.host()
    host.run("orthweb-refresh", "--up")
    assert (host.etc / "orthanc-host.json").exists()
    assert (host.etc / "aws" / "credentials").exists()
    assert (host.etc / "tls" / "server.crt").exists()
    compose = f"compose --project-name orthweb --file {host.etc / 'docker-compose.yml'}"
    assert host.docker_calls() == [f"{compose} ps --quiet", f"{compose} up --detach --pull missing --remove-orphans"]
    started = len(host.docker_calls())

    host.run("orthweb-refresh")  # the timer, nothing changed: nothing restarted
    assert actions(host.docker_calls()[started:]) == []
    host.run("orthweb-refresh", env={"ORTHWEB_IMAGES_RENEW_BELOW": "3660"})  # a renewed session: nothing either
    assert actions(host.docker_calls()[started:]) == []

    deployment.put(_candidate(tmp_path, "renewed-elsewhere"))  # another host renewed the certificate
    host.run("orthweb-refresh")
    assert actions(host.docker_calls()[started:]) == [f"{compose} kill --signal HUP nginx"]


def test_a_failing_secrets_step_stops_neither_the_session_nor_the_certificate_and_fails_the_run(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A Secrets Manager hiccup must not let Orthanc's image-store session expire nor hold back a
    renewed certificate: the other steps run and are applied, and the run fails so the timer shows it."""
    host = deployment.host()
    host.run("orthweb-refresh", "--up")
    started = len(host.docker_calls())
    credentials = host.etc / "aws" / "credentials"
    session = credentials.read_text()
    (host.root / "sbin" / "orthweb-secrets").write_text(
        "#!/bin/sh\necho 'Could not connect to the endpoint URL' >&2\nexit 255\n"
    )
    deployment.put(_candidate(tmp_path, "renewed-while-secrets-fail"))

    assert host.run("orthweb-refresh", check=False, env={"ORTHWEB_IMAGES_RENEW_BELOW": "3660"}) == ["exit 1"]
    assert credentials.read_text() != session  # the image store's session was renewed
    compose = f"compose --project-name orthweb --file {host.etc / 'docker-compose.yml'}"
    assert actions(host.docker_calls()[started:]) == [f"{compose} kill --signal HUP nginx"]  # the new certificate
    assert "orthweb: error: orthweb-secrets failed (exit status 255)" in host.last_stderr
    assert "failed: orthweb-secrets" in host.last_stderr
