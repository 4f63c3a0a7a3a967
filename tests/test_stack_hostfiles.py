"""The host-files bucket and its one object, the bundle, read from the synthesized stack: private,
encrypted, versioned; read by the hosts' role alone, through the VPC only; and named in the user
data by version and SHA-256, so a host runs exactly the bundle its settings made."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from orthweb.bootstrap import BUNDLE_KEY, bundle_archive, bundle_files
from orthweb.hostfiles import NONCURRENT_DAYS
from orthweb.policy import FROM_THE_INSTANCE_ONLY
from orthweb.settings import Settings
from orthweb_dev.synth import SCALED_SETTINGS, name_of, named, only, policy, ref, resources

Synth = dict[str, Any]


def host_files_bucket(synth: Synth) -> str:
    return name_of(synth, "aws_s3_bucket", lambda b: b["bucket_prefix"].endswith("-host-files-"))


def bundle(synth: Synth) -> dict[str, Any]:
    return only(synth, "aws_s3_object")


def of_bucket(synth: Synth, type_: str, bucket: str) -> dict[str, Any]:
    (found,) = [r for r in resources(synth, type_).values() if r["bucket"] == ref("aws_s3_bucket", bucket, "id")]
    return found


def user_data(synth: Synth) -> str:
    (local,) = [v for k, v in synth["locals"].items() if k.startswith("Host_UserData")]
    return str(local)


def test_the_bucket_is_private_encrypted_versioned_and_goes_with_the_deployment(synth: Synth) -> None:
    name = host_files_bucket(synth)
    bucket = resources(synth, "aws_s3_bucket")[name]
    # Nothing in it is data (each synth makes the bundle again): destroyed with the deployment.
    assert bucket["force_destroy"] is True
    assert "lifecycle" not in bucket or not bucket["lifecycle"].get("prevent_destroy")
    block = of_bucket(synth, "aws_s3_bucket_public_access_block", name)
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                           "restrict_public_buckets"))  # fmt: skip
    owner = of_bucket(synth, "aws_s3_bucket_ownership_controls", name)
    assert owner["rule"]["object_ownership"] == "BucketOwnerEnforced"
    (rule,) = of_bucket(synth, "aws_s3_bucket_server_side_encryption_configuration", name)["rule"]
    key = ref("aws_kms_key", name_of(synth, "aws_kms_key"), "arn")
    assert rule["apply_server_side_encryption_by_default"] == {"sse_algorithm": "aws:kms", "kms_master_key_id": key}
    assert rule["bucket_key_enabled"] is True
    versioning = of_bucket(synth, "aws_s3_bucket_versioning", name)
    assert versioning["versioning_configuration"]["status"] == "Enabled"
    rules = {r["id"]: r for r in of_bucket(synth, "aws_s3_bucket_lifecycle_configuration", name)["rule"]}
    assert rules["expire-replaced-bundles"]["noncurrent_version_expiration"] == [{"noncurrent_days": NONCURRENT_DAYS}]
    assert rules["abort-incomplete-uploads"]["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 1}]


def test_the_bundle_is_the_settings_archive_encrypted_with_the_deployment_key(synth: Synth) -> None:
    obj = bundle(synth)
    assert obj["bucket"] == ref("aws_s3_bucket", host_files_bucket(synth), "id")
    assert obj["key"] == BUNDLE_KEY
    assert obj["server_side_encryption"] == "aws:kms"
    assert obj["kms_key_id"] == ref("aws_kms_key", name_of(synth, "aws_kms_key"), "arn")
    assert base64.b64decode(obj["content_base64"]) == bundle_archive(bundle_files(Settings()))
    # Uploaded once versioning is on, so it has the version id the hosts are told.
    versioning = name_of(synth, "aws_s3_bucket_versioning")
    assert f"aws_s3_bucket_versioning.{versioning}" in obj["depends_on"]


def test_every_plan_checks_that_s3_still_holds_the_bundle_and_gave_it_a_version(synth: Synth) -> None:
    """Other bytes written under the key outside Terraform would be named (by version) in the next
    hosts' user data and refused at boot: the plan stops first, saying what to do."""
    obj = bundle(synth)
    assert obj["checksum_algorithm"] == "SHA256"  # S3 checks the upload, and reports the checksum back
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(obj["content_base64"])).digest()).decode()
    checks = {c["condition"]: c["error_message"] for c in obj["lifecycle"]["postcondition"]}
    assert "terraform apply -replace=aws_s3_object." in checks[f'${{self.checksum_sha256 == "{digest}"}}']
    assert "version id" in checks['${self.version_id != ""}']


def test_the_user_data_names_the_bundle_by_version_and_sha256(synth: Synth) -> None:
    text = user_data(synth)
    archive = base64.b64decode(bundle(synth)["content_base64"])
    env = dict(re.findall(r"^\s*(ORTHWEB_BUNDLE_\w+)=(.*)$", text, re.MULTILINE))
    assert env == {
        "ORTHWEB_BUNDLE_BUCKET": ref("aws_s3_bucket", host_files_bucket(synth), "bucket"),
        "ORTHWEB_BUNDLE_KEY": BUNDLE_KEY,
        "ORTHWEB_BUNDLE_VERSION": ref("aws_s3_object", name_of(synth, "aws_s3_object"), "version_id"),
        "ORTHWEB_BUNDLE_SHA256": hashlib.sha256(archive).hexdigest(),
    }


def test_only_the_hosts_role_is_granted_the_bundle_and_only_from_its_instances(synth: Synth) -> None:
    bucket = host_files_bucket(synth)
    arn = ref("aws_s3_bucket", bucket, "arn")
    granting = [
        p for p in resources(synth, "aws_iam_role_policy").values() if arn in p["policy"]
    ]  # every inline policy naming the bucket
    assert [p["name"] for p in granting] == ["read-host-files"]
    grant = named(synth, "aws_iam_role_policy", "read-host-files")
    host_role = name_of(synth, "aws_iam_role", lambda r: r["name_prefix"].endswith("-host-"))
    assert grant["role"] == ref("aws_iam_role", host_role, "id")
    read, decrypt = policy(grant["policy"])["Statement"]
    assert read["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert read["Resource"] == f"{arn}/{BUNDLE_KEY}"  # the one object, nothing else in the bucket
    assert read["Condition"] == json.loads(json.dumps(FROM_THE_INSTANCE_ONLY))
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": "s3.us-east-1.amazonaws.com",
        "kms:EncryptionContext:aws:s3:arn": arn,
    }


def test_the_bucket_policy_refuses_plain_http_other_accounts_and_the_host_outside_the_vpc(synth: Synth) -> None:
    bucket = host_files_bucket(synth)
    doc = policy(of_bucket(synth, "aws_s3_bucket_policy", bucket)["policy"])
    statements = {s["Sid"]: s for s in doc["Statement"]}
    assert all(s["Effect"] == "Deny" and s["Principal"] == "*" for s in statements.values())
    assert statements["DenyPlainHttp"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert "aws:PrincipalAccount" in statements["DenyOtherAccounts"]["Condition"]["StringNotEquals"]
    host_role = ref(
        "aws_iam_role", name_of(synth, "aws_iam_role", lambda r: r["name_prefix"].endswith("-host-")), "arn"
    )
    outside = statements["DenyHostReadsOutsideTheVpc"]
    assert outside["Action"] == "s3:GetObject*"
    endpoint = name_of(synth, "aws_vpc_endpoint", lambda e: e["vpc_endpoint_type"] == "Gateway")
    assert outside["Condition"] == {
        "ArnEquals": {"aws:PrincipalArn": host_role},
        "StringNotEquals": {"aws:SourceVpce": ref("aws_vpc_endpoint", endpoint, "id")},
    }
    # Whatever the role is granted later, it may do nothing else here: not write, delete, or touch the policy.
    rest = statements["DenyHostEverythingButReading"]
    assert rest["NotAction"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert rest["Resource"] == [ref("aws_s3_bucket", bucket, "arn"), f"{ref('aws_s3_bucket', bucket, 'arn')}/*"]
    assert rest["Condition"] == {"ArnEquals": {"aws:PrincipalArn": host_role}}


def test_the_key_lets_s3_use_it_for_this_account(synth: Synth) -> None:
    key_policy = policy(only(synth, "aws_kms_key")["policy"])
    (services,) = [s for s in key_policy["Statement"] if s["Sid"] == "AwsServicesUseKeyForThisAccount"]
    assert "s3.us-east-1.amazonaws.com" in services["Condition"]["StringEquals"]["kms:ViaService"]


def test_no_host_boots_before_it_may_read_the_bundle_privately(synth: Synth, scaled: Synth) -> None:
    """The grant, the bucket policy's denials, the gateway endpoint and the egress rule to it all
    exist before the first fetch, so it never takes another path or finds the bucket unguarded."""
    for stack, hosts in ((synth, only(synth, "aws_instance")), (scaled, only(scaled, "aws_autoscaling_group"))):
        grant = name_of(stack, "aws_iam_role_policy", lambda p: p["name"] == "read-host-files")
        policy_name = name_of(
            stack, "aws_s3_bucket_policy", lambda p: p["bucket"].startswith("${aws_s3_bucket.HostFiles")
        )
        endpoint = name_of(stack, "aws_vpc_endpoint", lambda e: e["vpc_endpoint_type"] == "Gateway")
        egress = name_of(stack, "aws_vpc_security_group_egress_rule", lambda r: "prefix_list_id" in r)
        assert {
            f"aws_iam_role_policy.{grant}",
            f"aws_s3_bucket_policy.{policy_name}",
            f"aws_vpc_endpoint.{endpoint}",
            f"aws_vpc_security_group_egress_rule.{egress}",
        } <= set(hosts["depends_on"])


def test_several_hosts_share_one_bundle_named_in_the_launch_template(scaled: Synth) -> None:
    obj = bundle(scaled)
    archive = base64.b64decode(obj["content_base64"])
    assert archive == bundle_archive(bundle_files(Settings(**SCALED_SETTINGS)))
    text = user_data(scaled)
    assert f"ORTHWEB_BUNDLE_SHA256={hashlib.sha256(archive).hexdigest()}" in text
    assert "base64gzip(local.Host_UserData" in only(scaled, "aws_launch_template")["user_data"]
