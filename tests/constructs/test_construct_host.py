"""Host alone: IMDSv2 only, an encrypted root volume, only the ports asked for, a role with no data access."""

from __future__ import annotations

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


def test_the_role_starts_with_no_inline_data_access() -> None:
    synth = host_synth()
    (profile,) = resources(synth, "aws_iam_instance_profile").values()
    host_role = profile["role"].removesuffix(".name}")
    assert [p for p in resources(synth, "aws_iam_role_policy").values() if p["role"].startswith(host_role + ".")] == []
