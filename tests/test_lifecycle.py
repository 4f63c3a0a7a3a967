"""The original runbook's Terraform semantics, proven against the local AWS emulator.

The synthesized JSON is driven by plain `terraform` in its stack directory, in order: apply, a clean
second plan, targeted destroy and apply of `aws_instance.orthweb`, a settings change that touches only
the instance, a state that never held the DB password, the restore runbook (a snapshot of the
database, a second deployment created from it, with alarms), and full destroy leaving nothing
behind. Tests in this module run in file order and share one deployment.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom import dcmread

from orthweb.bootstrap import USER_DATA_BUDGET, HostFacts, bundle_files, render_user_data
from orthweb.settings import Settings
from orthweb_dev import demo, harness_cli
from orthweb_dev.containers import missing_prerequisites
from orthweb_dev.emulator_server import REGION, MotoServer
from orthweb_dev.fakehost import first_boot_host, unpacked
from orthweb_dev.synth import synthesize
from orthweb_dev.testing import INSTALL_HINT, not_run

pytestmark = pytest.mark.lifecycle

PROJECT_DIR = Path(__file__).resolve().parents[1]
INSTANCE = "aws_instance.orthweb"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stack directory holding the throwaway synthesis (deletion protection off, so destroy is clean)."""
    out = tmp_path_factory.mktemp("lifecycle")
    synth, stack_dir = synthesize({"deletion_protection": False}, out)
    assert synth["terraform"]["backend"]["local"]["path"].startswith(str(out))
    return stack_dir


@pytest.fixture(scope="module")
def tf(workdir: Path, timed_terraform: Any) -> Any:
    return timed_terraform(workdir)


def state(workdir: Path) -> dict[str, Any]:
    path = Path(json.loads((workdir / "cdk.tf.json").read_text())["terraform"]["backend"]["local"]["path"])
    parsed: dict[str, Any] = json.loads(path.read_text())
    return parsed


def ids(workdir: Path) -> dict[str, str]:
    """Resource address -> id for everything in the state."""
    found = {}
    for r in state(workdir)["resources"]:
        if r["mode"] == "managed":
            for inst in r["instances"]:
                found[f"{r['type']}.{r['name']}"] = inst["attributes"].get("id", "")
    return found


def plan_changes(tf: Any, workdir: Path) -> dict[str, list[str]]:
    """Address -> actions of every resource change a full plan proposes."""
    tf("plan", "-input=false", "-out=plan.bin")
    plan = json.loads(tf("show", "-json", "plan.bin").stdout)
    return {
        c["address"]: c["change"]["actions"]
        for c in plan.get("resource_changes", [])
        if c["change"]["actions"] != ["no-op"]
    }


def test_1_apply_creates_everything_with_well_formed_outputs(tf: Any, workdir: Path) -> None:
    tf("apply", "-auto-approve", "-input=false")
    outputs = {k: v["value"] for k, v in json.loads(tf("output", "-json").stdout).items()}
    assert outputs["instance_id"].startswith("i-")
    assert outputs["host_public_dns"]
    assert outputs["web_url"] == f"https://{outputs['host_public_dns']}/"
    assert outputs["dicom_endpoint"] == f"ORTHANC@{outputs['host_public_dns']}:11112"
    assert outputs["db_endpoint"].endswith(":5432")
    assert outputs["db_master_secret_arn"].startswith(f"arn:aws:secretsmanager:{REGION}:")
    assert outputs["admin_secret_arn"].startswith(f"arn:aws:secretsmanager:{REGION}:")
    assert (
        outputs["ssm_session_command"] == f"aws ssm start-session --region {REGION} --target {outputs['instance_id']}"
    )
    assert INSTANCE in ids(workdir)


def test_1b_instance_receives_the_rendered_cloud_config_gzipped_by_terraform(workdir: Path, aws: Any) -> None:
    resources = {f"{r['type']}.{r['name']}": r["instances"][0]["attributes"] for r in state(workdir)["resources"]}
    instance_id = resources[INSTANCE]["id"]
    (db,) = [v for k, v in resources.items() if k.startswith("aws_db_instance.")]
    (admin,) = [v for k, v in resources.items() if k.startswith("aws_secretsmanager_secret.")]
    (bundle,) = [v for k, v in resources.items() if k.startswith("aws_s3_object.")]
    raw = base64.b64decode(
        aws("ec2").describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    )
    assert len(raw) <= USER_DATA_BUDGET
    facts = HostFacts(
        region=REGION,
        db_address=db["address"],
        db_port=str(db["port"]),
        db_name=db["db_name"],
        db_secret_arn=db["master_user_secret"][0]["secret_arn"],
        admin_secret_arn=admin["arn"],
        bundle_bucket=bundle["bucket"],
        bundle_version=bundle["version_id"],
    )
    assert gzip.decompress(raw).decode() == render_user_data(Settings(deletion_protection=False), facts)


def test_1d_the_host_boots_from_the_deployed_bundle_and_refuses_a_tampered_one(
    tf: Any, workdir: Path, aws: Any, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """The instance's own user data, run as its first boot against the emulator's S3: the fetch
    step unpacks exactly the settings' files; other bytes under the same key never reach it, a host
    told their version refuses them before unpacking anything, and the next plan stops, naming the fix."""
    resources = {f"{r['type']}.{r['name']}": r["instances"][0]["attributes"] for r in state(workdir)["resources"]}
    (bundle,) = [v for k, v in resources.items() if k.startswith("aws_s3_object.")]
    raw = aws("ec2").describe_instance_attribute(InstanceId=resources[INSTANCE]["id"], Attribute="userData")
    user_data = gzip.decompress(base64.b64decode(raw["UserData"]["Value"])).decode()
    expected = {f.path: f for f in bundle_files(Settings(deletion_protection=False))}

    booted = first_boot_host(tmp_path / "host", user_data, aws_env)
    assert booted.run("orthweb-fetch") == []
    assert unpacked(booted) == expected

    s3 = aws("s3")
    tampered = s3.put_object(Bucket=bundle["bucket"], Key=bundle["key"], Body=b"not the bundle")["VersionId"]
    try:
        again = first_boot_host(tmp_path / "again", user_data, aws_env)
        assert again.run("orthweb-fetch") == []
        assert unpacked(again) == expected
        told = first_boot_host(tmp_path / "told", user_data.replace(bundle["version_id"], tampered), aws_env)
        assert told.run("orthweb-fetch", check=False) == ["exit 1"]
        assert "nothing was unpacked" in told.last_stderr
        assert unpacked(told) == {}
        # Terraform reads the newest version back: the plan stops, rather than plan hosts told it.
        plan = tf("plan", "-input=false", "-no-color", check=False)
        assert plan.returncode != 0
        assert "is not the bundle this synth made" in " ".join(plan.stderr.replace("│", " ").split())
    finally:
        # As Terraform left it, for the clean plan below.
        s3.delete_object(Bucket=bundle["bucket"], Key=bundle["key"], VersionId=tampered)


def test_1c_the_demo_serves_the_application_on_this_deployments_secrets(
    tf: Any, emulator: MotoServer, aws: Any, tmp_path: Path
) -> None:
    """What `make demo` prints after its deploy works as printed: run here on this deployment."""
    missing = missing_prerequisites()
    if missing:
        not_run(f"the demo's local application needs {', '.join(missing)} ({INSTALL_HINT})")
    outputs = {k: v["value"] for k, v in json.loads(tf("output", "-json").stdout).items()}
    where = harness_cli.StateDir(tmp_path / "app")
    app = demo.start_local_app(emulator.endpoint, outputs, demo.with_demo_peer(dict(os.environ)), where)
    assert app is not None
    try:
        text = "\n".join(app.lines())
        web = re.search(r"Web UI\s+(https://localhost:\d+)/", text)
        dicomweb = re.search(r"DICOMweb\s+(https://localhost:\d+/dicom-web/)\s", text)
        (storescu,) = [line.strip() for line in text.splitlines() if line.strip().startswith("storescu ")]
        users = re.findall(r"(\w+) \((\w+)\): password in (\S+)", text)
        assert web
        assert dicomweb
        assert [(name, role) for name, role, _ in users] == [("admin", "admin")]
        # The password file holds the login the host's secrets step generated into this deployment's secret.
        password = Path(users[0][2]).read_text().strip()
        admin = aws("secretsmanager").get_secret_value(SecretId=outputs["admin_secret_arn"])["SecretString"]
        assert json.loads(admin)["users"]["admin"] == password
        s = requests.Session()
        s.trust_env = False
        s.verify = str(app.server_cert)
        assert s.get(web[1] + "/system").status_code == 401
        assert s.get(web[1] + "/system", auth=("admin", password)).status_code == 200
        # The printed storescu command stores its file over DICOM TLS, verifying the certificate.
        subprocess.run(shlex.split(storescu), cwd=PROJECT_DIR, check=True, capture_output=True, timeout=120)
        sent = dcmread(app.send_me).StudyInstanceUID
        found = s.get(dicomweb[1] + "studies", params={"PatientID": "ORTHWEBDEMO"}, auth=("admin", password))
        assert found.status_code == 200
        assert {study["0020000D"]["Value"][0] for study in found.json()} == {app.sample_study, sent}
    finally:
        assert harness_cli.stop(where)


def test_2_second_plan_shows_no_changes(tf: Any) -> None:
    proc = tf("plan", "-detailed-exitcode", "-input=false", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_3_targeted_destroy_removes_only_the_instance(tf: Any, workdir: Path) -> None:
    before = ids(workdir)
    tf("destroy", "-target", INSTANCE, "-auto-approve", "-input=false")
    after = ids(workdir)
    assert set(before) - set(after) == {INSTANCE}
    for kept in ("aws_db_instance", "aws_secretsmanager_secret", "aws_kms_key", "aws_vpc", "aws_s3_object"):
        (address,) = [a for a in before if a.startswith(kept + ".")]
        assert after[address] == before[address], f"{address} changed"


def test_4_targeted_apply_brings_a_new_instance_on_the_same_database(tf: Any, workdir: Path, aws: Any) -> None:
    tf("apply", "-target", INSTANCE, "-auto-approve", "-input=false")
    after = ids(workdir)
    assert after[INSTANCE].startswith("i-")
    # The new host is told the same bundle: the version its predecessor unpacked.
    resources = {f"{r['type']}.{r['name']}": r["instances"][0]["attributes"] for r in state(workdir)["resources"]}
    (bundle,) = [v for k, v in resources.items() if k.startswith("aws_s3_object.")]
    raw = aws("ec2").describe_instance_attribute(InstanceId=after[INSTANCE], Attribute="userData")
    user_data = gzip.decompress(base64.b64decode(raw["UserData"]["Value"])).decode()
    assert f"ORTHWEB_BUNDLE_VERSION={bundle['version_id']}" in [line.strip() for line in user_data.splitlines()]
    proc = tf("plan", "-detailed-exitcode", "-input=false", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_5_instance_type_change_touches_the_instance_only(tf: Any, workdir: Path, tmp_path: Path) -> None:
    changed, _ = synthesize({"deletion_protection": False, "instance_type": "t4g.medium"}, tmp_path)
    config = json.loads((workdir / "cdk.tf.json").read_text())
    changed["terraform"]["backend"] = config["terraform"]["backend"]
    original = (workdir / "cdk.tf.json").read_text()
    (workdir / "cdk.tf.json").write_text(json.dumps(changed))
    try:
        changes = plan_changes(tf, workdir)
    finally:
        (workdir / "cdk.tf.json").write_text(original)
    assert set(changes) == {INSTANCE}, changes
    assert not any(a.startswith("aws_db_instance") for a in changes)


def test_6_state_never_contains_the_database_password(workdir: Path, aws: Any) -> None:
    secret_arn = next(o["value"] for name, o in state(workdir)["outputs"].items() if name == "db_master_secret_arn")
    password = json.loads(aws("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])["password"]
    assert len(password) >= 8
    text = json.dumps(state(workdir))
    assert password not in text
    assert password not in (workdir / "cdk.tf.json").read_text()


def test_6b_host_grants_reach_iam_as_from_the_instance_only_conditions(workdir: Path, aws: Any) -> None:
    # Terraform turned the synthesized `$${aws:SourceVpc}` into the policy variable IAM reads.
    role = next(
        r["instances"][0]["attributes"]["name"]
        for r in state(workdir)["resources"]
        if r["type"] == "aws_iam_role" and r["name"].startswith("Host_Role")
    )
    iam = aws("iam")
    documents = {
        n: iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"]
        for n in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }
    secret_reads = [
        s for d in documents.values() for s in d["Statement"] if "secretsmanager:GetSecretValue" in s["Action"]
    ]
    bundle_reads = [s for d in documents.values() for s in d["Statement"] if "s3:GetObject" in s["Action"]]
    assert len(secret_reads) == 2
    assert len(bundle_reads) == 1
    for statement in secret_reads + bundle_reads:
        assert statement["Condition"] == {
            "StringEquals": {
                "aws:Ec2InstanceSourceVpc": "${aws:SourceVpc}",
                "aws:Ec2InstanceSourcePrivateIPv4": "${aws:VpcSourceIp}",
            }
        }


# --- restore into a second deployment (docs/operations.md, "Restore") -------------------------------

SNAPSHOT = "orthweb-db-before-restore"
RESTORED = "restored"


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory, timed_terraform: Any) -> Any:
    """A second deployment (another name_prefix, its own state) created from SNAPSHOT, with alarms."""
    settings = {"name_prefix": RESTORED, "deletion_protection": False, "db_snapshot_identifier": SNAPSHOT}
    settings["alarm_email"] = "pacs-ops@example.org"
    _, stack_dir = synthesize(settings, tmp_path_factory.mktemp("restored"))
    run = timed_terraform(stack_dir, "restored: {step}")
    run.stack_dir = stack_dir
    return run


def test_8_a_snapshot_of_the_database_is_taken(aws: Any) -> None:
    rds = aws("rds")
    rds.create_db_snapshot(DBInstanceIdentifier="orthweb-db", DBSnapshotIdentifier=SNAPSHOT)
    (snapshot,) = rds.describe_db_snapshots(DBSnapshotIdentifier=SNAPSHOT)["DBSnapshots"]
    assert snapshot["Status"] == "available"
    assert snapshot["DBInstanceIdentifier"] == "orthweb-db"


def test_9_a_second_deployment_is_created_from_the_snapshot_and_converges(
    restored: Any, workdir: Path, aws: Any
) -> None:
    restored("apply", "-auto-approve", "-input=false")
    proc = restored("plan", "-detailed-exitcode", "-input=false", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]

    resources = {
        f"{r['type']}.{r['name']}": r["instances"][0]["attributes"] for r in state(restored.stack_dir)["resources"]
    }
    (copy,) = [v for k, v in resources.items() if k.startswith("aws_db_snapshot_copy.")]
    (db,) = [v for k, v in resources.items() if k.startswith("aws_db_instance.")]
    (key,) = [v for k, v in resources.items() if k.startswith("aws_kms_key.")]
    # The snapshot was copied under the new deployment's key, and the database created from the copy.
    # (RDS names the source of a same-Region copy nowhere: the copy's tag and lineage say it.)
    assert copy["tags_all"]["RestoredFrom"] == SNAPSHOT
    assert copy["kms_key_id"] == key["arn"]
    assert db["snapshot_identifier"] == copy["id"] == f"{RESTORED}-db-restore-source"
    rds = aws("rds")
    (snapshot_copy,) = rds.describe_db_snapshots(DBSnapshotIdentifier=copy["id"])["DBSnapshots"]
    assert snapshot_copy["DBInstanceIdentifier"] == "orthweb-db"  # it descends from the first deployment's database
    assert snapshot_copy["KmsKeyId"] == key["arn"]
    (instance,) = rds.describe_db_instances(DBInstanceIdentifier=f"{RESTORED}-db")["DBInstances"]
    assert instance["KmsKeyId"] == key["arn"]
    assert instance["StorageEncrypted"] is True
    # RDS manages a new master password for it, in a secret of its own.
    assert instance["MasterUserSecret"]["SecretArn"] == db["master_user_secret"][0]["secret_arn"]
    assert instance["MasterUserSecret"]["SecretArn"] != state(workdir)["outputs"]["db_master_secret_arn"]["value"]


def test_10_the_restored_deployment_has_its_alarms_on_an_encrypted_topic(restored: Any, aws: Any) -> None:
    alarms = {
        a["AlarmName"]: a for a in aws("cloudwatch").describe_alarms(AlarmNamePrefix=f"{RESTORED}-")["MetricAlarms"]
    }
    assert sorted(alarms) == sorted(
        f"{RESTORED}-{n}"
        for n in ("application-health", "db-connections", "db-cpu", "db-free-storage", "host-status-check")
    )
    topic_arn = next(iter(alarms.values()))["AlarmActions"][0]
    attributes = aws("sns").get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    assert attributes["KmsMasterKeyId"].startswith("arn:aws:kms:")
    assert all(a["AlarmActions"] == a["OKActions"] == [topic_arn] for a in alarms.values())


def test_11_the_restored_deployment_is_destroyed_alone(restored: Any, workdir: Path, aws: Any) -> None:
    first = ids(workdir)
    restored("destroy", "-auto-approve", "-input=false")
    assert ids(restored.stack_dir) == {}
    assert ids(workdir) == first
    assert aws("cloudwatch").describe_alarms(AlarmNamePrefix=f"{RESTORED}-")["MetricAlarms"] == []
    snapshots = [s["DBSnapshotIdentifier"] for s in aws("rds").describe_db_snapshots()["DBSnapshots"]]
    assert f"{RESTORED}-db-restore-source" not in snapshots  # the copy went with its deployment
    aws("rds").delete_db_snapshot(DBSnapshotIdentifier=SNAPSHOT)


def test_12_destroy_leaves_nothing_behind(tf: Any, workdir: Path, aws: Any) -> None:
    tf("destroy", "-auto-approve", "-input=false")
    assert ids(workdir) == {}

    ec2 = aws("ec2")
    running = [
        i
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    assert running == []
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")] == []
    # Deleted endpoints stay listed for a while with State "deleted", in AWS as in the emulator.
    assert [e for e in ec2.describe_vpc_endpoints()["VpcEndpoints"] if e["State"].lower() != "deleted"] == []
    assert aws("rds").describe_db_instances()["DBInstances"] == []
    secrets = aws("secretsmanager").list_secrets()["SecretList"]
    assert [s for s in secrets if "DeletedDate" not in s] == []
    keys = [k["KeyId"] for k in aws("kms").list_keys()["Keys"]]
    assert keys  # KMS keys are never deleted at once: the stack's key waits out its deletion window
    assert all(aws("kms").describe_key(KeyId=k)["KeyMetadata"]["KeyState"] == "PendingDeletion" for k in keys)
    assert [r for r in aws("iam").list_roles()["Roles"] if r["RoleName"].startswith("orthweb-")] == []
    groups = aws("logs").describe_log_groups()["logGroups"]
    assert [g for g in groups if "orthweb" in g["logGroupName"] or RESTORED in g["logGroupName"]] == []
    assert aws("sns").list_topics()["Topics"] == []
    assert aws("s3").list_buckets()["Buckets"] == []  # the host-files bucket, emptied of every version
