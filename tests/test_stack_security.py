"""The synthesized stack, read as a security specification (default settings)."""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from typing import Any

import yaml

from orthweb.bootstrap import render_app
from orthweb.settings import Settings
from orthweb_dev.synth import data, only, policy, resources

Synth = dict[str, Any]


# --- Network -------------------------------------------------------------------------------------


def test_vpc_default_cidr_does_not_overlap_docker_bridge(synth: Synth) -> None:
    vpc = only(synth, "aws_vpc")
    net = ipaddress.ip_network(vpc["cidr_block"])
    assert not net.overlaps(ipaddress.ip_network("172.17.0.0/16"))
    assert vpc["enable_dns_support"] is True
    assert vpc["enable_dns_hostnames"] is True


def test_public_and_private_subnets_span_two_zones(synth: Synth) -> None:
    subnets = resources(synth, "aws_subnet").values()
    public = [s for s in subnets if s["tags"]["Tier"] == "public"]
    private = [s for s in subnets if s["tags"]["Tier"] == "private"]
    assert len(public) == 2
    assert len(private) == 2
    assert len({s["availability_zone"] for s in public}) == 2
    assert all(s["map_public_ip_on_launch"] is False for s in subnets)


def test_only_public_subnets_route_to_the_internet(synth: Synth) -> None:
    route = only(synth, "aws_route")
    assert route["destination_cidr_block"] == "0.0.0.0/0"
    assert "aws_internet_gateway" in route["gateway_id"]
    public_rt = next(n for n, r in resources(synth, "aws_route_table").items() if r["tags"]["Name"].endswith("public"))
    assert public_rt in route["route_table_id"]
    for assoc in resources(synth, "aws_route_table_association").values():
        subnet = assoc["subnet_id"]
        assert (public_rt in assoc["route_table_id"]) == ("Public" in subnet)


def test_default_security_group_allows_nothing(synth: Synth) -> None:
    default = only(synth, "aws_default_security_group")
    assert "ingress" not in default
    assert "egress" not in default


def test_s3_gateway_endpoint_serves_both_route_tables(synth: Synth) -> None:
    s3 = next(e for e in resources(synth, "aws_vpc_endpoint").values() if e["service_name"].endswith(".s3"))
    assert s3["vpc_endpoint_type"] == "Gateway"
    assert len(s3["route_table_ids"]) == 2


def test_secrets_manager_endpoint_is_private_with_dns_and_https_from_vpc_only(synth: Synth) -> None:
    sm = next(e for e in resources(synth, "aws_vpc_endpoint").values() if e["service_name"].endswith("secretsmanager"))
    assert sm["vpc_endpoint_type"] == "Interface"
    assert sm["private_dns_enabled"] is True
    # One host in the first zone: the endpoint sits in that zone's private subnet.
    assert len(sm["subnet_ids"]) == 1
    assert "Private0" in sm["subnet_ids"][0]
    vpc_cidr = only(synth, "aws_vpc")["cidr_block"]
    rules = [
        r
        for r in resources(synth, "aws_vpc_security_group_ingress_rule").values()
        if "Endpoint" in r["security_group_id"]
    ]
    assert [(r["from_port"], r["to_port"], r["cidr_ipv4"]) for r in rules] == [(443, 443, vpc_cidr)]


def test_no_extra_interface_endpoints_by_default(synth: Synth) -> None:
    interface = [e for e in resources(synth, "aws_vpc_endpoint").values() if e["vpc_endpoint_type"] == "Interface"]
    assert len(interface) == 1


def test_flow_logs_go_to_an_encrypted_log_group_kept_a_year(synth: Synth) -> None:
    flow = only(synth, "aws_flow_log")
    assert flow["traffic_type"] == "ALL"
    assert flow["log_destination_type"] == "cloud-watch-logs"
    group = next(g for g in resources(synth, "aws_cloudwatch_log_group").values() if "flow" in g["name"])
    assert group["retention_in_days"] == 365
    assert "aws_kms_key" in group["kms_key_id"]


def _container_log_groups(synth: Synth) -> dict[str, dict[str, Any]]:
    return {n: g for n, g in resources(synth, "aws_cloudwatch_log_group").items() if n.startswith("AppLogs_")}


def test_container_logs_go_to_encrypted_log_groups_kept_a_year(synth: Synth) -> None:
    groups = _container_log_groups(synth)
    assert sorted(g["name"] for g in groups.values()) == ["/orthweb/nginx", "/orthweb/orthanc"]
    for group in groups.values():
        assert group["retention_in_days"] == 365
        assert "aws_kms_key" in group["kms_key_id"]


def test_host_may_only_create_streams_in_and_write_to_its_container_log_groups(synth: Synth) -> None:
    (write,) = [
        policy(p["policy"])["Statement"]
        for p in resources(synth, "aws_iam_role_policy").values()
        if p["name"] == "write-container-logs" and "Host_Role" in p["role"]
    ]
    (statement,) = write
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    group_arns = sorted(f"${{aws_cloudwatch_log_group.{n}.arn}}" for n in _container_log_groups(synth))
    assert sorted(statement["Resource"]) == sorted(group_arns + [f"{arn}:log-stream:*" for arn in group_arns])
    # No logs endpoint by default: the daemon calls the public one, where the network keys are absent.
    assert "Condition" not in statement


def test_compose_sends_each_container_to_its_log_group_through_the_daemon(synth: Synth) -> None:
    compose = yaml.safe_load(render_app(Settings())["docker-compose.yml"])
    names = {g["name"] for g in _container_log_groups(synth).values()}
    for service_name, service in compose["services"].items():
        logging = service["logging"]
        assert logging["driver"] == "awslogs"
        options = logging["options"]
        assert options["awslogs-group"] == f"/orthweb/{service_name}"
        assert options["awslogs-group"] in names
        assert options["awslogs-region"] == "us-east-1"
        assert options.get("awslogs-create-group", "false") == "false"  # the stack made it, encrypted
        # A stalled CloudWatch never stalls Orthanc or nginx: lines past the buffer are dropped.
        assert options["mode"] == "non-blocking"
        assert options["max-buffer-size"] == "16m"
        # No container gets AWS credentials for it: the daemon sends the logs.
        assert not any(k.startswith("AWS_") for k in (service.get("environment") or {}))


# --- Encryption ----------------------------------------------------------------------------------


def test_kms_key_rotates_yearly_and_has_an_alias(synth: Synth) -> None:
    key = only(synth, "aws_kms_key")
    assert key["enable_key_rotation"] is True
    assert key["rotation_period_in_days"] == 365
    assert only(synth, "aws_kms_alias")["name"] == "alias/orthweb"


def test_key_policy_lets_account_administer_and_services_use_it_for_this_account_only(synth: Synth) -> None:
    statements = {s["Sid"]: s for s in policy(only(synth, "aws_kms_key")["policy"])["Statement"]}
    assert statements["AccountAdministersKeyThroughIam"]["Principal"]["AWS"].endswith(":root")
    logs = statements["CloudWatchLogsEncryptsThisDeploymentsLogGroups"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    # Only this deployment's log groups: every group the stack makes, and no other deployment's.
    patterns = [
        arn.split(":log-group:", 1)[1] for arn in logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    ]
    made = [group["name"] for group in resources(synth, "aws_cloudwatch_log_group").values()]
    assert made
    assert all(any(fnmatch.fnmatchcase(name, p) for p in patterns) for name in made), (made, patterns)
    others = ["/orthweb-restore/nginx", "/other/orthanc", "/aws/rds/instance/orthweb-restore-db/postgresql", "/x"]
    assert not any(fnmatch.fnmatchcase(name, p) for name in others for p in patterns), patterns
    services = statements["AwsServicesUseKeyForThisAccount"]["Condition"]["StringEquals"]
    assert sorted(services["kms:ViaService"]) == [
        "ec2.us-east-1.amazonaws.com",
        "rds.us-east-1.amazonaws.com",
        "s3.us-east-1.amazonaws.com",  # the host-files bucket
        "secretsmanager.us-east-1.amazonaws.com",
    ]
    assert "kms:CallerAccount" in services
    assert all(s["Principal"] != "*" and s["Principal"].get("AWS") != "*" for s in statements.values())


# --- Database ------------------------------------------------------------------------------------


def test_database_is_private_encrypted_and_tls_only(synth: Synth) -> None:
    db = only(synth, "aws_db_instance")
    # Password logins only (from Secrets Manager): no IAM login path that nothing uses.
    assert db["iam_database_authentication_enabled"] is False
    assert db["engine"] == "postgres"
    assert db["engine_version"] == "17"
    assert db["publicly_accessible"] is False
    assert db["storage_encrypted"] is True
    assert "aws_kms_key" in db["kms_key_id"]
    assert db["storage_type"] == "gp3"
    params = only(synth, "aws_db_parameter_group")
    assert params["family"] == "postgres17"
    assert {"name": "rds.force_ssl", "value": "1"} in params["parameter"]
    assert "aws_db_parameter_group" in db["parameter_group_name"]
    assert all("Private" in s for s in only(synth, "aws_db_subnet_group")["subnet_ids"])


def test_database_password_is_managed_by_rds_and_never_synthesized(synth: Synth) -> None:
    db = only(synth, "aws_db_instance")
    assert db["manage_master_user_password"] is True
    assert "aws_kms_key" in db["master_user_secret_kms_key_id"]
    assert "password" not in db
    assert "password_wo" not in db


def test_database_backups_logs_upgrades_and_protection(synth: Synth) -> None:
    db = only(synth, "aws_db_instance")
    assert db["backup_retention_period"] >= 7
    assert db["copy_tags_to_snapshot"] is True
    assert sorted(db["enabled_cloudwatch_logs_exports"]) == ["postgresql", "upgrade"]
    assert db["auto_minor_version_upgrade"] is True
    assert db["deletion_protection"] is True
    assert db["skip_final_snapshot"] is False
    assert db["final_snapshot_identifier"]
    assert db["multi_az"] is False
    assert db["monitoring_interval"] == 60


def test_database_log_groups_exist_before_the_database_encrypted_and_expiring(synth: Synth) -> None:
    db = only(synth, "aws_db_instance")
    groups = {n: g for n, g in resources(synth, "aws_cloudwatch_log_group").items() if g["name"].startswith("/aws/rds")}
    assert sorted(g["name"] for g in groups.values()) == [
        f"/aws/rds/instance/{db['identifier']}/{kind}" for kind in ("postgresql", "upgrade")
    ]
    assert all(g["retention_in_days"] == 365 and "aws_kms_key" in g["kms_key_id"] for g in groups.values())
    assert {f"aws_cloudwatch_log_group.{n}" for n in groups} <= set(db["depends_on"])


def test_database_accepts_postgres_only_from_the_host(synth: Synth) -> None:
    db_sg = next(n for n in resources(synth, "aws_security_group") if n.startswith("Database"))
    rules = [
        r for r in resources(synth, "aws_vpc_security_group_ingress_rule").values() if db_sg in r["security_group_id"]
    ]
    assert len(rules) == 1
    (rule,) = rules
    assert (rule["from_port"], rule["to_port"]) == (5432, 5432)
    assert "Host_SecurityGroup" in rule["referenced_security_group_id"]
    assert "cidr_ipv4" not in rule


# --- Admin secret --------------------------------------------------------------------------------


def test_admin_secret_is_created_empty_and_encrypted(synth: Synth) -> None:
    secret = only(synth, "aws_secretsmanager_secret")
    assert "aws_kms_key" in secret["kms_key_id"]
    assert secret["name_prefix"].startswith("orthweb/")
    assert resources(synth, "aws_secretsmanager_secret_version") == {}


# --- Host ----------------------------------------------------------------------------------------


def test_instance_has_the_runbook_address(synth: Synth) -> None:
    assert list(resources(synth, "aws_instance")) == ["orthweb"]


def test_instance_requires_imdsv2_and_encrypts_its_root_volume(synth: Synth) -> None:
    instance = resources(synth, "aws_instance")["orthweb"]
    meta = instance["metadata_options"]
    assert meta["http_tokens"] == "required"
    root = instance["root_block_device"]
    assert root["encrypted"] is True
    assert root["volume_type"] == "gp3"
    assert "aws_kms_key" in root["kms_key_id"]
    assert instance["associate_public_ip_address"] is True
    assert "Public0" in instance["subnet_id"]
    assert "key_name" not in instance


def test_archives_are_built_on_their_own_encrypted_volume_not_the_root_volume(synth: Synth) -> None:
    instance = resources(synth, "aws_instance")["orthweb"]
    (archive,) = instance["ebs_block_device"]
    assert archive["device_name"] == "/dev/sdf"  # where orthweb-archives looks for it
    assert archive["encrypted"] is True
    assert archive["kms_key_id"] == instance["root_block_device"]["kms_key_id"]
    assert archive["volume_type"] == "gp3"
    assert archive["volume_size"] == 10  # the archive_volume_gb default
    assert archive["delete_on_termination"] is True
    # The compose file gives Orthanc that volume's mount point as its TemporaryDirectory.
    compose = yaml.safe_load(render_app(Settings())["docker-compose.yml"])
    assert "./archives:/var/lib/orthanc/tmp" in compose["services"]["orthanc"]["volumes"]


def test_no_container_can_obtain_the_instance_role_credentials(synth: Synth) -> None:
    # IMDSv2's token response carries an IP TTL of the hop limit; a container's request crosses
    # Docker's bridge, one hop more than the host's own, so with 1 it never gets a token.
    meta = resources(synth, "aws_instance")["orthweb"]["metadata_options"]
    assert meta["http_endpoint"] == "enabled"
    assert meta["http_tokens"] == "required"
    assert meta["http_put_response_hop_limit"] == 1


def test_instance_runs_latest_al2023_for_its_architecture(synth: Synth) -> None:
    (ami,) = data(synth, "aws_ssm_parameter").values()
    assert ami["name"] == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    instance = resources(synth, "aws_instance")["orthweb"]
    assert instance["instance_type"] == "t4g.small"
    assert instance["lifecycle"]["ignore_changes"] == ["ami"]


def test_host_is_reachable_only_on_https_from_the_internet_by_default(synth: Synth) -> None:
    host_sg = next(n for n in resources(synth, "aws_security_group") if n.startswith("Host"))
    ingress = [
        r for r in resources(synth, "aws_vpc_security_group_ingress_rule").values() if host_sg in r["security_group_id"]
    ]
    assert [(r["from_port"], r["cidr_ipv4"]) for r in ingress] == [(443, "0.0.0.0/0")]
    assert all(r.get("description") for r in ingress)


def _egress_destination(rule: dict[str, Any]) -> str:
    if "cidr_ipv4" in rule:
        return str(rule["cidr_ipv4"])
    target = rule.get("prefix_list_id") or rule["referenced_security_group_id"]
    for marker, name in (
        ("Network_S3Endpoint", "S3 (gateway endpoint prefix list)"),
        ("Network_EndpointSecurityGroup", "private endpoints"),
        ("Database_SecurityGroup", "database"),
    ):
        if marker in target:
            return name
    return str(target)


def test_host_egress_is_https_and_postgres_to_the_database_only(synth: Synth) -> None:
    egress = list(resources(synth, "aws_vpc_security_group_egress_rule").values())
    assert all("Host_SecurityGroup" in r["security_group_id"] for r in egress)
    assert all(r["ip_protocol"] == "tcp" and r["from_port"] == r["to_port"] for r in egress)
    # HTTPS to anywhere stays for what has no fixed address (Docker Hub, the RDS CA bundle).
    assert sorted((r["from_port"], _egress_destination(r)) for r in egress) == [
        (443, "0.0.0.0/0"),
        (443, "S3 (gateway endpoint prefix list)"),
        (443, "private endpoints"),
        (5432, "database"),
    ]
    assert all(r.get("description") for r in egress)


def test_security_group_rules_are_separate_resources_so_changing_them_never_replaces_the_host(synth: Synth) -> None:
    # Inline ingress/egress blocks would make every rule change an update of the group; separate
    # rule resources are added and removed alone, and the instance only names the group.
    for group in resources(synth, "aws_security_group").values():
        assert "ingress" not in group
        assert "egress" not in group
    instance = resources(synth, "aws_instance")["orthweb"]
    (group_ref,) = instance["vpc_security_group_ids"]
    assert group_ref.startswith("${aws_security_group.Host_SecurityGroup")


def _host_policies(synth: Synth) -> dict[str, dict[str, Any]]:
    return {
        p["name"]: policy(p["policy"])
        for p in resources(synth, "aws_iam_role_policy").values()
        if "Host_Role" in p["role"]
    }


def _host_statements(synth: Synth) -> list[dict[str, Any]]:
    return [s for doc in _host_policies(synth).values() for s in doc["Statement"]]


def test_host_role_reads_exactly_its_two_secrets_and_writes_only_the_admin_secret(synth: Synth) -> None:
    statements = _host_statements(synth)
    secret_statements = [s for s in statements if any(a.startswith("secretsmanager:") for a in s["Action"])]
    readable = {s["Resource"] for s in secret_statements if "secretsmanager:GetSecretValue" in s["Action"]}
    writable = {s["Resource"] for s in secret_statements if "secretsmanager:PutSecretValue" in s["Action"]}
    assert len(readable) == 2
    assert sum("master_user_secret[0].secret_arn" in r for r in readable) == 1
    assert sum(r.startswith("${aws_secretsmanager_secret.") for r in readable) == 1
    assert len(writable) == 1
    assert "aws_secretsmanager_secret." in next(iter(writable))
    assert all(s["Resource"] != "*" for s in statements if not s.get("Sid", "").startswith("SessionManager"))


# What IAM reads once Terraform has turned `$${` into `${`: the credentials work only from the
# VPC and the private address EC2 delivered them to, through a VPC endpoint.
FROM_THE_INSTANCE_ONLY_AS_SYNTHESIZED = {
    "StringEquals": {
        "aws:Ec2InstanceSourceVpc": "$${aws:SourceVpc}",
        "aws:Ec2InstanceSourcePrivateIPv4": "$${aws:VpcSourceIp}",
    }
}


def test_stolen_host_credentials_cannot_read_the_secrets_off_the_instance(synth: Synth) -> None:
    secret_statements = [s for s in _host_statements(synth) if s["Action"][0].startswith("secretsmanager:")]
    assert len(secret_statements) == 2
    for statement in secret_statements:
        assert statement["Condition"] == FROM_THE_INSTANCE_ONLY_AS_SYNTHESIZED


def test_host_role_uses_the_key_only_through_secrets_manager(synth: Synth) -> None:
    statements = _host_statements(synth)
    kms = [s for s in statements if any(a.startswith("kms:") for a in s["Action"])]
    assert len(kms) == 1
    assert sorted(kms[0]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    # Secrets Manager calls KMS for the host (a forward access session): AWS leaves the network
    # keys out of that call, so the from-the-instance condition would refuse every secret read.
    assert kms[0]["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    assert "aws_kms_key" in kms[0]["Resource"]


SESSION_MANAGER_ACTIONS = {
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
}


def test_host_has_session_manager_and_no_managed_policy(synth: Synth) -> None:
    attached = [a for a in resources(synth, "aws_iam_role_policy_attachment").values() if "Host_Role" in a["role"]]
    assert attached == []
    session = _host_policies(synth)["session-manager"]["Statement"]
    assert {a for s in session for a in s["Action"]} == SESSION_MANAGER_ACTIONS
    # Nothing that reads parameters, documents or anything else the agent does not need.
    assert not any(
        a.startswith(("ssm:Get", "ssm:Describe", "ssm:List", "s3:", "kms:")) for s in session for a in s["Action"]
    )
    # Without the ssm/ssmmessages/ec2messages endpoints the agent uses the public ones, where the
    # network keys are absent: no from-the-instance condition, or Session Manager would be refused.
    assert all("Condition" not in s for s in session)


def test_host_user_data_is_cloud_config_with_the_deployment_facts_gzipped_by_terraform(synth: Synth) -> None:
    instance = resources(synth, "aws_instance")["orthweb"]
    assert "user_data" not in instance
    (name,) = synth["locals"]
    assert instance["user_data_base64"] == f"${{base64gzip(local.{name})}}"
    user_data = synth["locals"][name]
    assert user_data.startswith("#cloud-config\n")
    for fact in ("aws_db_instance.", "master_user_secret[0].secret_arn", "aws_secretsmanager_secret."):
        assert fact in user_data
    # Only the facts are Terraform references; every other `${` is escaped shell text.
    refs = re.findall(r"(?<!\$)\$\{([^}]*)\}", user_data)
    assert refs
    facts = ("aws_db_instance.", "aws_secretsmanager_secret.", "aws_s3_bucket.", "aws_s3_object.")
    assert all(r.startswith(facts) for r in refs)


# --- Secrets never synthesized -----------------------------------------------------------------------


PASSWORDISH = re.compile(r"(?i)\b(password|passwd|secret_string|master_password)\b\W*[:=]\W*[^\s\"$]{6,}")


def test_no_password_like_value_anywhere_in_the_synthesized_json(synth: Synth) -> None:
    text = json.dumps(synth)
    assert PASSWORDISH.search(text) is None
    assert "secret_string" not in text
    assert resources(synth, "aws_secretsmanager_secret_version") == {}


def test_stack_needs_only_the_aws_provider(synth: Synth) -> None:
    assert set(synth["terraform"]["required_providers"]) == {"aws"}
    assert synth["terraform"]["required_providers"]["aws"]["version"] == "5.100.0"
    assert not any(t.startswith("random_") for t in synth.get("resource", {}))


# --- Outputs and tagging -----------------------------------------------------------------------------


def test_outputs_are_all_present_and_described(synth: Synth) -> None:
    outputs = synth["output"]
    assert set(outputs) == {
        "host_public_dns",
        "web_url",
        "dicom_endpoint",
        "db_endpoint",
        "db_master_secret_arn",
        "admin_secret_arn",
        "instance_id",
        "ssm_session_command",
    }
    assert all(o["description"] for o in outputs.values())
    assert outputs["web_url"]["value"].startswith("https://")
    assert outputs["dicom_endpoint"]["value"].startswith("ORTHANC@")
    assert outputs["dicom_endpoint"]["value"].endswith(":11112")
    assert outputs["ssm_session_command"]["value"].startswith("aws ssm start-session --region us-east-1 --target ")


def test_every_resource_is_tagged_with_project_and_deployment(synth: Synth) -> None:
    (provider,) = synth["provider"]["aws"]
    assert provider["region"] == "us-east-1"
    assert provider["default_tags"][0]["tags"] == {"Project": "orthweb", "Deployment": "orthweb"}


def test_state_is_local_and_outside_cdktf_out_by_default(synth: Synth) -> None:
    path = synth["terraform"]["backend"]["local"]["path"]
    assert path.endswith("/terraform.orthweb.tfstate")
    assert path.startswith("/")
    assert "cdktf.out" not in path
