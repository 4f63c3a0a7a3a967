"""Network alone: public and private tiers, a private Secrets Manager endpoint, logged traffic."""

from __future__ import annotations

from orthweb.encryption import Encryption
from orthweb.network import Network
from orthweb_dev.synth import Synth, construct_stack, only, resources, synth_stack


def network_synth(**props: object) -> Synth:
    stack = construct_stack()
    key = Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    Network(stack, "Network", name_prefix="t", region="eu-west-1", encryption=key, **props)  # type: ignore[arg-type]
    return synth_stack(stack)


def test_private_subnets_have_no_route_out() -> None:
    synth = network_synth(az_count=3)
    subnets = resources(synth, "aws_subnet").values()
    assert sorted(s["tags"]["Tier"] for s in subnets) == ["private"] * 3 + ["public"] * 3
    assert all(s["map_public_ip_on_launch"] is False for s in subnets)
    (route,) = resources(synth, "aws_route").values()
    assert route["destination_cidr_block"] == "0.0.0.0/0"
    assert "aws_internet_gateway" in route["gateway_id"]
    assert "PublicRoutes" in route["route_table_id"]


def test_secrets_manager_is_reached_privately_over_https_from_the_vpc_only() -> None:
    synth = network_synth(vpc_cidr="10.9.0.0/16")
    (endpoint,) = (e for e in resources(synth, "aws_vpc_endpoint").values() if e["vpc_endpoint_type"] == "Interface")
    assert endpoint["service_name"] == "com.amazonaws.eu-west-1.secretsmanager"
    assert endpoint["private_dns_enabled"] is True
    (rule,) = resources(synth, "aws_vpc_security_group_ingress_rule").values()
    assert (rule["from_port"], rule["to_port"], rule["cidr_ipv4"]) == (443, 443, "10.9.0.0/16")


def test_endpoints_sit_in_one_zone_unless_every_zone_is_asked_for() -> None:
    one = network_synth(interface_endpoints=["ssm"])
    every = network_synth(interface_endpoints=["ssm"], endpoints_in_all_azs=True)
    for synth, zones in ((one, 1), (every, 2)):
        interface = [e for e in resources(synth, "aws_vpc_endpoint").values() if e["vpc_endpoint_type"] == "Interface"]
        assert sorted(e["service_name"].rsplit(".", 1)[1] for e in interface) == ["secretsmanager", "ssm"]
        assert all(len(e["subnet_ids"]) == zones for e in interface)


def test_all_traffic_is_logged_to_an_encrypted_group_and_the_default_group_allows_nothing() -> None:
    synth = network_synth(log_retention_days=731)
    assert only(synth, "aws_flow_log")["traffic_type"] == "ALL"
    group = only(synth, "aws_cloudwatch_log_group")
    assert group["retention_in_days"] == 731
    assert "aws_kms_key" in group["kms_key_id"]
    default = only(synth, "aws_default_security_group")
    assert "ingress" not in default
    assert "egress" not in default
