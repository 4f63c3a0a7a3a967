"""Images in S3 and several hosts behind a Network Load Balancer, read from the synthesized JSON as a
specification: what protects the bucket, who may touch the images, how the hosts are launched,
spread, checked and reached (docs/scaling.md)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from orthweb_dev.synth import data, only, policy, ref, resources, synthesize

Synth = dict[str, Any]

SCALE_TYPES = (
    "aws_lb",
    "aws_lb_listener",
    "aws_lb_target_group",
    "aws_autoscaling_group",
    "aws_launch_template",
    "aws_route53_record",
    "aws_secretsmanager_secret_policy",
)


def _name(synth: Synth, type_: str, predicate: Any = None) -> str:
    names = [n for n, r in resources(synth, type_).items() if predicate is None or predicate(r)]
    assert len(names) == 1, f"expected one {type_}, found {names}"
    return names[0]


def _image_buckets(synth: Synth) -> dict[str, dict[str, Any]]:
    return {n: b for n, b in resources(synth, "aws_s3_bucket").items() if "-images-" in b["bucket_prefix"]}


def _bucket_ref(synth: Synth, attribute: str = "id") -> str:
    """The image bucket's (the host-files bucket is test_stack_hostfiles')."""
    return ref("aws_s3_bucket", _name(synth, "aws_s3_bucket", lambda b: "-images-" in b["bucket_prefix"]), attribute)


def _for_bucket(synth: Synth, type_: str) -> dict[str, Any]:
    (found,) = [r for r in resources(synth, type_).values() if r["bucket"] == _bucket_ref(synth)]
    return found


def _role(synth: Synth, name_part: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(n, r) for n, r in resources(synth, "aws_iam_role").items() if name_part in n]
    return found


def _inline(synth: Synth, role_name: str) -> list[dict[str, Any]]:
    role_id = ref("aws_iam_role", role_name, "id")
    return [s for p in resources(synth, "aws_iam_role_policy").values() if p["role"] == role_id
            for s in policy(p["policy"])["Statement"]]  # fmt: skip


def _host_text(synth: Synth) -> str:
    """What the hosts are given: their user data, then the bundle's files (as the tar's text)."""
    (text,) = synth["locals"].values()
    assert isinstance(text, str)
    bundle = base64.b64decode(only(synth, "aws_s3_object")["content_base64"]).decode()
    return text + "\n" + bundle


# --- one host by default: nothing of this exists ----------------------------------------------------


def test_the_default_stack_has_no_bucket_balancer_group_or_template(synth: Synth) -> None:
    for type_ in SCALE_TYPES:
        assert resources(synth, type_) == {}, type_
    assert _image_buckets(synth) == {}  # one bucket only: the host files' (test_stack_hostfiles)
    assert list(resources(synth, "aws_instance")) == ["orthweb"]
    assert not [r for r in resources(synth, "aws_iam_role").values() if "image-store" in r.get("name", "")]


# --- the image bucket --------------------------------------------------------------------------------


@pytest.fixture(params=["one host", "three hosts"])
def with_bucket(request: pytest.FixtureRequest, images_in_s3: Synth, scaled: Synth) -> Synth:
    return images_in_s3 if request.param == "one host" else scaled


def test_bucket_is_encrypted_with_the_deployment_key_and_a_bucket_key(with_bucket: Synth) -> None:
    (rule,) = _for_bucket(with_bucket, "aws_s3_bucket_server_side_encryption_configuration")["rule"]
    default = rule["apply_server_side_encryption_by_default"]
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == ref("aws_kms_key", _name(with_bucket, "aws_kms_key"), "arn")
    assert rule["bucket_key_enabled"] is True


def test_bucket_is_private_owner_enforced_and_versioned(with_bucket: Synth) -> None:
    block = _for_bucket(with_bucket, "aws_s3_bucket_public_access_block")
    for switch in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert block[switch] is True, switch
    ownership = _for_bucket(with_bucket, "aws_s3_bucket_ownership_controls")
    assert ownership["rule"]["object_ownership"] == "BucketOwnerEnforced"
    versioning = _for_bucket(with_bucket, "aws_s3_bucket_versioning")
    assert versioning["versioning_configuration"]["status"] == "Enabled"


def test_lifecycle_tiers_images_aborts_stale_uploads_and_keeps_deleted_ones_a_month(with_bucket: Synth) -> None:
    lifecycle = _for_bucket(with_bucket, "aws_s3_bucket_lifecycle_configuration")
    rules = {r["id"]: r for r in lifecycle["rule"]}
    assert all(r["status"] == "Enabled" and r["filter"] == [{"prefix": ""}] for r in rules.values())
    assert rules["intelligent-tiering"]["transition"] == [{"days": 0, "storage_class": "INTELLIGENT_TIERING"}]
    assert rules["abort-incomplete-uploads"]["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 1}]
    kept = rules["keep-deleted-images-30-days"]
    assert kept["noncurrent_version_expiration"] == [{"noncurrent_days": 30}]
    assert kept["expiration"] == [{"expired_object_delete_marker": True}]
    versioning = _name(with_bucket, "aws_s3_bucket_versioning", lambda v: v["bucket"] == _bucket_ref(with_bucket))
    assert f"aws_s3_bucket_versioning.{versioning}" in lifecycle["depends_on"]


def test_a_protected_bucket_is_never_destroyed_and_an_unprotected_one_is_emptied(
    images_in_s3: Synth, tmp_path: Path
) -> None:
    (protected,) = _image_buckets(images_in_s3).values()
    assert protected["force_destroy"] is False
    assert protected["lifecycle"]["prevent_destroy"] is True
    assert protected["bucket_prefix"] == "orthweb-images-"
    (throwaway,) = _image_buckets(synthesize({"storage": "s3", "deletion_protection": False}, tmp_path)[0]).values()
    assert throwaway["force_destroy"] is True
    assert throwaway.get("lifecycle", {}).get("prevent_destroy") in (None, False)


def _bucket_policy(synth: Synth) -> dict[str, dict[str, Any]]:
    text = _for_bucket(synth, "aws_s3_bucket_policy")["policy"]
    return {s["Sid"]: s for s in policy(text)["Statement"]}


def test_bucket_policy_refuses_plain_http_and_other_accounts_to_everyone(with_bucket: Synth) -> None:
    statements = _bucket_policy(with_bucket)
    everything = [_bucket_ref(with_bucket, "arn"), _bucket_ref(with_bucket, "arn") + "/*"]
    tls = statements["DenyPlainHttp"]
    assert (tls["Effect"], tls["Principal"], tls["Action"], tls["Resource"]) == ("Deny", "*", "s3:*", everything)
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    other = statements["DenyOtherAccounts"]
    assert (other["Effect"], other["Principal"], other["Action"]) == ("Deny", "*", "s3:*")
    assert other["Condition"]["StringNotEquals"]["aws:PrincipalAccount"].startswith("${data.aws_caller_identity.")


def test_only_the_image_store_role_reads_or_writes_images_and_only_through_the_vpc_endpoint(
    with_bucket: Synth,
) -> None:
    statements = _bucket_policy(with_bucket)
    _, role = _role(with_bucket, "Images_AccessRole")
    arn = next(
        s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        for s in statements.values()
        if "ArnNotEquals" in s.get("Condition", {})
    )
    assert arn.endswith(f":role/{role['name']}")  # the fixed name the bucket policy and the hosts use
    content = {"s3:GetObject*", "s3:PutObject*"}
    but_orthanc = statements["DenyImageContentToAllButOrthanc"]
    assert but_orthanc["Effect"] == "Deny"
    assert but_orthanc["Principal"] == "*"
    assert content <= set(but_orthanc["Action"])
    assert but_orthanc["Resource"] == _bucket_ref(with_bucket, "arn") + "/*"
    outside = statements["DenyImageContentOutsideTheVpc"]
    assert content <= set(outside["Action"])
    endpoint = _name(with_bucket, "aws_vpc_endpoint", lambda e: e["service_name"].endswith(".s3"))
    assert outside["Condition"] == {"StringNotEquals": {"aws:SourceVpce": ref("aws_vpc_endpoint", endpoint, "id")}}
    assert not any(s["Effect"] == "Allow" for s in statements.values())


def test_the_image_store_role_cannot_delete_images_from_outside_the_vpc(with_bucket: Synth) -> None:
    """Credentials taken from Orthanc delete nothing anywhere else: every delete the role could
    make (a version or the current object) is refused unless it comes through the VPC's S3
    endpoint. The account's administrators keep deleting for a teardown (no principal but the role
    is named)."""
    statements = _bucket_policy(with_bucket)
    _, role = _role(with_bucket, "Images_AccessRole")
    endpoint = _name(with_bucket, "aws_vpc_endpoint", lambda e: e["service_name"].endswith(".s3"))
    objects = _bucket_ref(with_bucket, "arn") + "/*"

    outside_the_vpc = {"aws:SourceVpce": ref("aws_vpc_endpoint", endpoint, "id")}

    def covers(statement: dict[str, Any], action: str) -> bool:
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        return any(a == action or (a.endswith("*") and action.startswith(a[:-1])) for a in actions)

    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
        refusals = [
            s for s in statements.values()
            if s["Effect"] == "Deny" and s["Principal"] == "*" and s["Resource"] == objects and covers(s, action)
            and s["Condition"].get("StringNotEquals") == outside_the_vpc
        ]  # fmt: skip
        assert refusals, f"{action} by the image-store role is not refused outside the VPC"
        for refusal in refusals:
            assert refusal["Condition"]["ArnEquals"]["aws:PrincipalArn"].endswith(f":role/{role['name']}")


def test_the_image_store_role_does_exactly_the_plugins_object_actions_and_uses_the_key_through_s3(
    with_bucket: Synth,
) -> None:
    role_name, role = _role(with_bucket, "Images_AccessRole")
    assert role["max_session_duration"] == 3600
    statements = {s["Sid"]: s for s in _inline(with_bucket, role_name)}
    assert set(statements) == {"ImageObjects", "UseKeyThroughS3ForThisBucket"}
    objects = statements["ImageObjects"]
    assert sorted(objects["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert objects["Resource"] == _bucket_ref(with_bucket, "arn") + "/*"
    key = statements["UseKeyThroughS3ForThisBucket"]
    assert sorted(key["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    region = with_bucket["provider"]["aws"][0]["region"]
    assert key["Condition"]["StringEquals"] == {
        "kms:ViaService": f"s3.{region}.amazonaws.com",
        "kms:EncryptionContext:aws:s3:arn": _bucket_ref(with_bucket, "arn"),
    }
    attached = [a for a in resources(with_bucket, "aws_iam_role_policy_attachment").values() if role_name in a["role"]]
    assert attached == []


def test_only_the_host_role_may_assume_the_image_store_role_and_only_from_inside_the_vpc(with_bucket: Synth) -> None:
    role_name, role = _role(with_bucket, "Images_AccessRole")
    host_role = _name(with_bucket, "aws_iam_role", lambda r: r.get("name_prefix", "").endswith("-host-"))
    (trust,) = policy(role["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"AWS": ref("aws_iam_role", host_role, "arn")}
    assert trust["Action"] == "sts:AssumeRole"
    vpc = _name(with_bucket, "aws_vpc")
    assert trust["Condition"] == {"StringEquals": {"aws:Ec2InstanceSourceVpc": ref("aws_vpc", vpc, "id")}}
    # The host role itself never touches images: it may only assume that one role (and read its
    # own bundle in the host-files bucket, test_stack_hostfiles).
    host = _inline(with_bucket, host_role)
    images = _bucket_ref(with_bucket, "arn")
    assert not any(images in json.dumps(s["Resource"]) for s in host if s["Action"] != "sts:AssumeRole")
    (assume,) = [s for s in host if s["Action"] == "sts:AssumeRole"]
    assert assume["Resource"] == ref("aws_iam_role", role_name, "arn")


def test_the_key_serves_s3_for_this_account_when_images_are_in_s3(with_bucket: Synth) -> None:
    key = policy(only(with_bucket, "aws_kms_key")["policy"])
    via = next(s for s in key["Statement"] if s["Sid"] == "AwsServicesUseKeyForThisAccount")
    region = with_bucket["provider"]["aws"][0]["region"]
    assert f"s3.{region}.amazonaws.com" in via["Condition"]["StringEquals"]["kms:ViaService"]
    assert "kms:CallerAccount" in via["Condition"]["StringEquals"]


def test_the_hosts_learn_the_bucket_and_the_role_from_user_data(with_bucket: Synth) -> None:
    user_data = _host_text(with_bucket)
    assert f"ORTHWEB_IMAGES_BUCKET={_bucket_ref(with_bucket, 'bucket')}" in user_data
    assert re.search(r"ORTHWEB_IMAGES_ROLE_ARN=arn:\$\{data\.aws_partition\.[^}]+\}:iam::", user_data)
    assert "usr/local/sbin/orthweb-images" in user_data  # a file of the bundle (the tar names it without /)


def test_one_host_is_created_after_the_role_its_first_boot_assumes(images_in_s3: Synth) -> None:
    instance = resources(images_in_s3, "aws_instance")["orthweb"]
    role_name, _ = _role(images_in_s3, "Images_AccessRole")
    assert f"aws_iam_role.{role_name}" in instance["depends_on"]
    assert images_in_s3["output"]["images_bucket"]["value"] == _bucket_ref(images_in_s3, "bucket")


# --- several hosts -----------------------------------------------------------------------------------


def test_hosts_come_from_a_launch_template_with_imdsv2_hop_limit_1_and_an_encrypted_root(scaled: Synth) -> None:
    assert resources(scaled, "aws_instance") == {}
    template = only(scaled, "aws_launch_template")
    meta = template["metadata_options"]
    assert meta["http_tokens"] == "required"
    assert meta["http_put_response_hop_limit"] == 1
    root, archive = template["block_device_mappings"]
    assert (root["device_name"], archive["device_name"]) == ("/dev/xvda", "/dev/sdf")
    for volume in (root, archive):  # each host's archive volume too (orthweb-archives mounts it)
        assert volume["ebs"]["encrypted"] == "true"
        assert volume["ebs"]["volume_type"] == "gp3"
        assert volume["ebs"]["kms_key_id"] == ref("aws_kms_key", _name(scaled, "aws_kms_key"), "arn")
        assert volume["ebs"]["delete_on_termination"] == "true"
    assert archive["ebs"]["volume_size"] == 10
    (nic,) = template["network_interfaces"]
    host_sg = _name(scaled, "aws_security_group", lambda g: g["name_prefix"].endswith("-host-"))
    assert nic["security_groups"] == [ref("aws_security_group", host_sg, "id")]
    (ami,) = data(scaled, "aws_ssm_parameter")
    assert template["image_id"] == f"${{data.aws_ssm_parameter.{ami}.value}}"
    assert template["lifecycle"]["ignore_changes"] == ["image_id"]
    (local,) = scaled["locals"]
    assert template["user_data"] == f"${{base64gzip(local.{local})}}"
    profile = _name(scaled, "aws_iam_instance_profile")
    assert template["iam_instance_profile"] == {"name": ref("aws_iam_instance_profile", profile, "name")}
    kinds = {t["resource_type"]: t["tags"] for t in template["tag_specifications"]}
    assert set(kinds) == {"instance", "volume", "network-interface"}
    assert all(tags["Deployment"] == "orthweb" and tags["Name"] == "orthweb-host" for tags in kinds.values())


def test_the_group_keeps_three_hosts_spread_over_every_zone_and_rolls_launching_first(scaled: Synth) -> None:
    group = only(scaled, "aws_autoscaling_group")
    assert (group["min_size"], group["max_size"], group["desired_capacity"]) == (3, 3, 3)
    public = sorted(
        ref("aws_subnet", n, "id") for n, s in resources(scaled, "aws_subnet").items() if s["tags"]["Tier"] == "public"
    )
    assert len(public) == 3
    assert sorted(group["vpc_zone_identifier"]) == public
    template = _name(scaled, "aws_launch_template")
    assert group["launch_template"] == {
        "id": ref("aws_launch_template", template, "id"),
        "version": ref("aws_launch_template", template, "latest_version"),
    }
    assert group["health_check_type"] == "ELB"
    assert group["health_check_grace_period"] >= 300
    refresh = group["instance_refresh"]
    assert refresh["strategy"] == "Rolling"
    assert refresh["preferences"]["min_healthy_percentage"] == 100
    assert refresh["preferences"]["max_healthy_percentage"] == 134  # one extra host of three
    assert group["instance_maintenance_policy"] == {"min_healthy_percentage": 100, "max_healthy_percentage": 134}
    targets = sorted(ref("aws_lb_target_group", n, "arn") for n in resources(scaled, "aws_lb_target_group"))
    assert sorted(group["target_group_arns"]) == targets


def test_the_balancer_is_an_internet_facing_nlb_over_every_zone_with_its_own_security_group(scaled: Synth) -> None:
    lb = only(scaled, "aws_lb")
    assert lb["load_balancer_type"] == "network"
    assert lb["internal"] is False
    assert lb["enable_cross_zone_load_balancing"] is True
    assert lb["enable_deletion_protection"] is True
    public = [
        ref("aws_subnet", n, "id") for n, s in resources(scaled, "aws_subnet").items() if s["tags"]["Tier"] == "public"
    ]
    assert sorted(lb["subnets"]) == sorted(public)
    nlb_sg = _name(scaled, "aws_security_group", lambda g: g["name_prefix"].endswith("-nlb-"))
    assert lb["security_groups"] == [ref("aws_security_group", nlb_sg, "id")]


def test_listeners_forward_tcp_443_and_11112_so_tls_stays_end_to_end(scaled: Synth) -> None:
    groups = resources(scaled, "aws_lb_target_group")
    lb = _name(scaled, "aws_lb")
    listeners = sorted(resources(scaled, "aws_lb_listener").values(), key=lambda x: x["port"])
    assert [(x["port"], x["protocol"]) for x in listeners] == [(443, "TCP"), (11112, "TCP")]
    for listener in listeners:
        assert listener["load_balancer_arn"] == ref("aws_lb", lb, "arn")
        (action,) = listener["default_action"]
        assert action["type"] == "forward"
        (target,) = [g for n, g in groups.items() if action["target_group_arn"] == ref("aws_lb_target_group", n, "arn")]
        assert (target["port"], target["protocol"], target["target_type"]) == (listener["port"], "TCP", "instance")
        assert target["preserve_client_ip"] == "true"


def test_health_checks_ask_each_hosts_health_endpoint_over_http(scaled: Synth) -> None:
    for group in resources(scaled, "aws_lb_target_group").values():
        check = group["health_check"]
        assert (check["protocol"], check["port"], check["path"], check["matcher"]) == (
            "HTTP",
            "8099",
            "/healthz",
            "200",
        )
        assert check["enabled"] is True
    user_data = _host_text(scaled)
    assert "ListenStream=8099" in user_data
    assert "systemctl enable --now orthweb-health.socket" in user_data


def _ingress(synth: Synth, group_suffix: str) -> list[dict[str, Any]]:
    sg = _name(synth, "aws_security_group", lambda g: g["name_prefix"].endswith(group_suffix))
    sg_ref = ref("aws_security_group", sg, "id")
    return [
        r for r in resources(synth, "aws_vpc_security_group_ingress_rule").values() if r["security_group_id"] == sg_ref
    ]


def test_clients_reach_the_balancer_only_and_the_hosts_accept_only_the_balancer(scaled: Synth) -> None:
    nlb = sorted((r["from_port"], r["cidr_ipv4"]) for r in _ingress(scaled, "-nlb-"))
    assert nlb == [(443, "0.0.0.0/0"), (11112, "203.0.113.0/24")]
    nlb_sg = _name(scaled, "aws_security_group", lambda g: g["name_prefix"].endswith("-nlb-"))
    host = _ingress(scaled, "-host-")
    assert sorted(r["from_port"] for r in host) == [443, 8099, 11112]
    assert all(r["referenced_security_group_id"] == ref("aws_security_group", nlb_sg, "id") for r in host)
    assert not any("cidr_ipv4" in r for r in host)


def test_domain_name_gets_an_alias_record_to_the_balancer(scaled: Synth) -> None:
    record = only(scaled, "aws_route53_record")
    lb = _name(scaled, "aws_lb")
    assert (record["zone_id"], record["name"], record["type"]) == ("Z0123456789ABCDEFGHIJ", "pacs.example.org", "A")
    assert record["alias"] == {
        "name": ref("aws_lb", lb, "dns_name"),
        "zone_id": ref("aws_lb", lb, "zone_id"),
        "evaluate_target_health": True,
    }


def test_the_shared_certificate_secret_is_encrypted_and_only_the_host_role_reads_or_writes_it(scaled: Synth) -> None:
    ((name, secret),) = [
        (n, s) for n, s in resources(scaled, "aws_secretsmanager_secret").items() if "/tls-" in s["name_prefix"]
    ]
    assert secret["kms_key_id"] == ref("aws_kms_key", _name(scaled, "aws_kms_key"), "arn")
    resource_policy = only(scaled, "aws_secretsmanager_secret_policy")
    assert resource_policy["secret_arn"] == ref("aws_secretsmanager_secret", name, "arn")
    assert resource_policy["block_public_policy"] is True
    (deny,) = policy(resource_policy["policy"])["Statement"]
    host_role = _name(scaled, "aws_iam_role", lambda r: r.get("name_prefix", "").endswith("-host-"))
    assert (deny["Effect"], deny["Principal"]) == ("Deny", "*")
    assert sorted(deny["Action"]) == ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": ref("aws_iam_role", host_role, "arn")}}
    readable = [s for s in _inline(scaled, host_role) if s["Resource"] == ref("aws_secretsmanager_secret", name, "arn")]
    assert [sorted(s["Action"]) for s in readable] == [
        ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
    ]


def test_every_host_names_the_one_site_and_finds_the_shared_certificate(scaled: Synth) -> None:
    user_data = _host_text(scaled)
    lb = _name(scaled, "aws_lb")
    assert "ORTHWEB_SITE_NAME=pacs.example.org" in user_data
    assert f"ORTHWEB_BALANCER_DNS={ref('aws_lb', lb, 'dns_name')}" in user_data
    assert "ORTHWEB_TLS_SECRET_ARN=${aws_secretsmanager_secret." in user_data
    for step in ("orthweb-host-config", "orthweb-images", "orthweb-shared-cert"):
        assert re.search(rf"^ *step {step} ", user_data, re.MULTILINE), step


def test_outputs_give_the_stable_endpoint_and_the_group_not_one_instance(scaled: Synth) -> None:
    outputs = scaled["output"]
    lb = _name(scaled, "aws_lb")
    assert outputs["endpoint_dns"]["value"] == ref("aws_lb", lb, "dns_name")
    assert outputs["web_url"]["value"] == "https://pacs.example.org/"
    assert outputs["dicom_endpoint"]["value"] == "ORTHANC@pacs.example.org:11112"
    group = _name(scaled, "aws_autoscaling_group")
    assert outputs["autoscaling_group_name"]["value"] == ref("aws_autoscaling_group", group, "name")
    assert group in outputs["list_hosts_command"]["value"]
    assert "certificate_secret_arn" in outputs
    assert "images_bucket" in outputs
    assert not {"instance_id", "host_public_dns", "ssm_session_command"} & set(outputs)
    assert all(o["description"] for o in outputs.values())


def test_without_a_domain_the_balancer_name_is_the_site(tmp_path: Path) -> None:
    synth, _ = synthesize(
        {"hosts": 2, "db_multi_az": True, "endpoints_in_all_azs": True, "https": False, "web_cidrs": ["10.0.0.0/8"]},
        tmp_path,
    )
    lb = _name(synth, "aws_lb")
    assert resources(synth, "aws_route53_record") == {}
    assert _image_buckets(synth) == {}
    assert synth["output"]["web_url"]["value"] == f"http://{ref('aws_lb', lb, 'dns_name')}/"
    assert f"ORTHWEB_SITE_NAME={ref('aws_lb', lb, 'dns_name')}" in _host_text(synth)
    assert sorted(x["port"] for x in resources(synth, "aws_lb_listener").values()) == [80, 11112]
    # Images stay in PostgreSQL: no bucket, no S3 step, the storage plugin on.
    assert "orthweb-images" not in _host_text(synth)
    assert '"EnableStorage": true' in _host_text(synth)
