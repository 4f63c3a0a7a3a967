"""Synthesizing the stack for tests and tools, and small readers over the synthesized Terraform
JSON, so tests say what they mean."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Synth = dict[str, Any]

# One variant that turns (nearly) every switch away from its default.
VARIANT_SETTINGS: dict[str, Any] = {
    "name_prefix": "pacs-test",
    "region": "eu-west-1",
    "vpc_cidr": "10.20.0.0/20",
    "az_count": 3,
    "web_cidrs": ["192.168.10.0/24"],
    "web_users": {"admin": "admin", "ann": "viewer"},
    "dicom_cidrs": ["203.0.113.0/24"],
    "dicom_peers": [
        {"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store"]},
        {
            "aet": "WS01",
            "cidr": "192.0.2.0/28",
            "permissions": ["find", "move"],
            "host": "192.0.2.5",
            "port": 11112,
            "tls_name": "ws01.example.org",
        },
    ],
    "dicom_client_ca": "-----BEGIN CERTIFICATE-----\nMIIBvariant\n-----END CERTIFICATE-----\n",
    "instance_type": "m7i.large",
    "db_instance_class": "db.m7g.large",
    "db_storage_gb": 100,
    "db_engine_version": "16.4",
    "db_multi_az": True,
    "db_backup_days": 14,
    "deletion_protection": False,
    "log_retention_days": 731,
    "alarm_email": "pacs-ops@example.org",
    "patch_schedule": "Mon..Fri 02:30",
    "patch_reboot": False,
    "db_snapshot_identifier": "rds:orthweb-db-2026-11-27-03-10",
    "interface_endpoints": ["ssm", "ssmmessages", "ec2messages", "logs", "monitoring"],
    "endpoints_in_all_azs": True,
    "ssh_key_name": "ops-key",
    "ssh_cidr": "192.0.2.0/24",
    "https": False,
    "plain_dicom_in_vpc": True,
    "state_backend": "s3",
    "state_bucket": "pacs-test-state",
    "tags": {"Owner": "radiology", "CostCenter": "4711"},
}


# Several hosts with images in S3: the topology that grows (docs/scaling.md). The lifecycle test
# deploys it too (with deletion protection off).
SCALED_SETTINGS: dict[str, Any] = {
    "storage": "s3",
    "hosts": 3,
    "az_count": 3,
    "db_multi_az": True,
    "endpoints_in_all_azs": True,
    "dicom_peers": [{"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store", "find"]}],
    "domain_name": "pacs.example.org",
    "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
}


# One host behind the front door: the Cognito login at an Application Load Balancer (docs/host.md,
# "The front door"). The lifecycle test deploys it too (with deletion protection off).
COGNITO_SETTINGS: dict[str, Any] = {
    "login": "cognito",
    "domain_name": "pacs.example.org",
    "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
    "web_users": {"ann@example.org": "admin", "bob@example.org": "uploader", "cat@example.org": "viewer"},
    "dicom_peers": [{"aet": "CT01", "cidr": "203.0.113.0/24", "permissions": ["store", "find"]}],
}


def construct_stack(region: str = "eu-west-1") -> Any:
    """An empty stack in a ``Testing.app()`` with the AWS provider: where a construct test places
    one construct and its smallest collaborators (the way a user extending Orthweb would)."""
    from cdktf import TerraformStack, Testing
    from cdktf_cdktf_provider_aws.provider import AwsProvider

    stack = TerraformStack(Testing.app(), "test")
    AwsProvider(stack, "aws", region=region)
    return stack


def synth_stack(stack: Any) -> Synth:
    """``Testing.synth(stack)``, parsed."""
    from cdktf import Testing

    parsed: Synth = json.loads(Testing.synth(stack))
    return parsed


def synthesize(settings_values: Mapping[str, Any], outdir: Path) -> tuple[Synth, Path]:
    """Synthesize the whole stack with ``settings_values`` into ``outdir``; (parsed JSON, stack dir)."""
    from cdktf import App

    from orthweb.settings import Settings
    from orthweb.stack import STACK_NAME, OrthwebStack

    app = App(outdir=str(outdir))
    OrthwebStack(app, STACK_NAME, settings=Settings(**settings_values), project_dir=outdir)
    app.synth()
    return load_stack(outdir, STACK_NAME), outdir / "stacks" / STACK_NAME


def load_stack(outdir: Path, stack_name: str) -> Synth:
    """The parsed cdk.tf.json of ``stack_name`` synthesized into ``outdir``."""
    parsed: Synth = json.loads((outdir / "stacks" / stack_name / "cdk.tf.json").read_text())
    return parsed


def resources(synth: Synth, type_: str) -> dict[str, dict[str, Any]]:
    """All resources of one Terraform type, by logical name."""
    return dict(synth.get("resource", {}).get(type_, {}))


def only(synth: Synth, type_: str) -> dict[str, Any]:
    """The single resource of ``type_``; fails if there is not exactly one."""
    found = resources(synth, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.values()))


def named(synth: Synth, type_: str, name: str) -> dict[str, Any]:
    """The single resource of ``type_`` whose ``name`` argument is ``name`` (an inline policy, a role…)."""
    found = [r for r in resources(synth, type_).values() if r.get("name") == name]
    assert len(found) == 1, f"expected one {type_} named {name!r}, found {len(found)}"
    return found[0]


def data(synth: Synth, type_: str) -> dict[str, dict[str, Any]]:
    return dict(synth.get("data", {}).get(type_, {}))


def by_tag_name(synth: Synth, type_: str, name_suffix: str) -> dict[str, Any]:
    """The resource of ``type_`` whose Name tag ends with ``name_suffix``."""
    matches = [r for r in resources(synth, type_).values() if r.get("tags", {}).get("Name", "").endswith(name_suffix)]
    assert len(matches) == 1, f"expected one {type_} named *{name_suffix}, found {len(matches)}"
    return matches[0]


def policy(text: str) -> dict[str, Any]:
    """Parse an inline IAM policy document (Terraform references stay as strings)."""
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def ref(resource_type: str, name: str, attribute: str) -> str:
    """The interpolation string Terraform uses to reference another resource's attribute."""
    return f"${{{resource_type}.{name}.{attribute}}}"


def name_of(synth: Synth, type_: str, predicate: Any = None) -> str:
    """Logical name of the single resource of ``type_`` (matching ``predicate`` if given)."""
    names = [n for n, r in resources(synth, type_).items() if predicate is None or predicate(r)]
    assert len(names) == 1, f"expected one {type_}, found {names}"
    return names[0]
