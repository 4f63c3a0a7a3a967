"""Host alone: IMDSv2 only, an encrypted root volume, only the ports asked for, a role with no data access."""

from __future__ import annotations

import json

from orthweb.encryption import Encryption
from orthweb.host import DICOM_TLS_PORT, HTTPS_PORT, Host
from orthweb.network import Network
from orthweb_dev.synth import Synth, construct_stack, resources, synth_stack


def host_synth(**props: object) -> Synth:
    stack = construct_stack()
    key = Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    network = Network(stack, "Network", name_prefix="t", region="eu-west-1", encryption=key)
    Host(stack, "Host", name_prefix="t", network=network, encryption=key, user_data="#cloud-config\n", **props)  # type: ignore[arg-type]
    return synth_stack(stack)


def host_ingress(synth: Synth) -> list[tuple[int, str]]:
    (group,) = resources(synth, "aws_instance")["orthweb"]["vpc_security_group_ids"]
    rules = resources(synth, "aws_vpc_security_group_ingress_rule").values()
    return sorted((r["from_port"], r["cidr_ipv4"]) for r in rules if r["security_group_id"] == group)


def test_the_instance_keeps_its_runbook_address_and_requires_imdsv2() -> None:
    instance = resources(host_synth(), "aws_instance")["orthweb"]
    assert instance["metadata_options"]["http_tokens"] == "required"
    root = instance["root_block_device"]
    assert root["encrypted"] is True
    assert "aws_kms_key" in root["kms_key_id"]
    assert instance["user_data_replace_on_change"] is True


def test_by_default_only_https_is_open_and_dicom_stays_closed() -> None:
    assert host_ingress(host_synth()) == [(HTTPS_PORT, "0.0.0.0/0")]


def test_dicom_opens_only_to_the_networks_given_and_ssh_needs_both_key_and_cidr() -> None:
    synth = host_synth(dicom_cidrs=["203.0.113.0/24"], ssh_key_name="ops", ssh_cidr="192.0.2.0/24")
    assert host_ingress(synth) == [(22, "192.0.2.0/24"), (HTTPS_PORT, "0.0.0.0/0"), (DICOM_TLS_PORT, "203.0.113.0/24")]
    assert host_ingress(host_synth(ssh_key_name="ops")) == [(HTTPS_PORT, "0.0.0.0/0")]


def test_the_role_starts_with_no_data_access_only_session_manager() -> None:
    synth = host_synth()
    (profile,) = resources(synth, "aws_iam_instance_profile").values()
    host_role = profile["role"].removesuffix(".name}")
    inline = [p for p in resources(synth, "aws_iam_role_policy").values() if p["role"].startswith(host_role + ".")]
    assert [p["name"] for p in inline] == ["session-manager"]
    actions = {a for s in json.loads(inline[0]["policy"])["Statement"] for a in s["Action"]}
    assert {a.split(":")[0] for a in actions} == {"ssm", "ssmmessages", "ec2messages"}
    assert actions.isdisjoint({"ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"})
    assert resources(synth, "aws_iam_role_policy_attachment") == {}  # no AWS managed policy


def test_no_container_reaches_the_role_and_egress_names_its_destinations() -> None:
    synth = host_synth()
    assert resources(synth, "aws_instance")["orthweb"]["metadata_options"]["http_put_response_hop_limit"] == 1
    egress = resources(synth, "aws_vpc_security_group_egress_rule").values()
    destinations = sorted(
        r.get("cidr_ipv4") or r.get("prefix_list_id") or r["referenced_security_group_id"] for r in egress
    )
    assert [d.split(".")[0] for d in destinations] == [
        "${aws_security_group",  # the private endpoints' group
        "${aws_vpc_endpoint",  # S3's prefix list, through the gateway endpoint
        "0",  # 0.0.0.0/0: registries and repositories without fixed ranges
    ]
    assert all(r["from_port"] == r["to_port"] == HTTPS_PORT for r in egress)
