"""Connections: one call writes both halves of a security-group pair, each naming the other group."""

from __future__ import annotations

from orthweb.database import DB_PORT, Database
from orthweb.encryption import Encryption
from orthweb.host import Host
from orthweb.network import Network
from orthweb_dev.synth import construct_stack, only, resources, synth_stack


def test_connect_to_opens_the_database_port_from_the_host_group_only() -> None:
    stack = construct_stack()
    key = Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    network = Network(stack, "Network", name_prefix="t", region="eu-west-1", encryption=key)
    database = Database(stack, "Database", name_prefix="t", network=network, encryption=key)
    host = Host(stack, "Host", name_prefix="t", network=network, encryption=key, user_data="#cloud-config\n")
    egress, ingress = host.connect_to(database)
    synth = synth_stack(stack)

    (db_group,) = only(synth, "aws_db_instance")["vpc_security_group_ids"]
    (host_group,) = resources(synth, "aws_instance")["orthweb"]["vpc_security_group_ids"]
    rules_in = [
        r
        for r in resources(synth, "aws_vpc_security_group_ingress_rule").values()
        if r["security_group_id"] == db_group
    ]
    rules_out = [
        r
        for r in resources(synth, "aws_vpc_security_group_egress_rule").values()
        if r.get("referenced_security_group_id") == db_group
    ]
    assert [(r["from_port"], r["to_port"], r["referenced_security_group_id"]) for r in rules_in] == [
        (DB_PORT, DB_PORT, host_group)
    ]
    assert [(r["from_port"], r["security_group_id"]) for r in rules_out] == [(DB_PORT, host_group)]
    assert rules_in[0]["description"] == "PostgreSQL from the Orthanc host"
    assert rules_out[0]["description"] == "PostgreSQL to the Orthanc database"
    # The rules live with the construct that owns each group, and are returned to the caller.
    assert egress.node.scope is host
    assert ingress.node.scope is database
