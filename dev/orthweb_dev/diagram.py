"""Architecture diagram generated from the synthesized stack (Graphviz DOT on stdout).

`make diagram` pipes it through `dot -Tsvg` into docs/architecture.svg, and the scaled topology
(``--scaled``: three hosts behind the load balancer, images in S3) into docs/architecture-scaled.svg.
Nodes are the stack's resources (plumbing such as route-table associations and policy attachments is folded away);
edges are the references Terraform itself resolves between them.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orthweb_dev import PROJECT_DIR

DEFAULT_STACK = PROJECT_DIR / "cdktf.out" / "stacks" / "orthweb" / "cdk.tf.json"

CLUSTERS = {
    "Public subnets (internet-facing)": ["aws_lb", "aws_instance", "aws_autoscaling_group", "aws_internet_gateway"],
    "Private subnets (no route out)": ["aws_db_instance", "aws_vpc_endpoint"],
    "Encryption and secrets": ["aws_kms_key", "aws_secretsmanager_secret"],
    "Access control": ["aws_security_group", "aws_iam_role"],
    "Logs": ["aws_cloudwatch_log_group", "aws_flow_log"],
    "S3 (reached through the VPC endpoint)": ["aws_s3_bucket"],
}
LABELS = {
    "aws_instance": "EC2 host\\nnginx (443, 11112) → Orthanc",
    "aws_db_instance": "RDS PostgreSQL\\nencrypted, TLS only",
    "aws_kms_key": "KMS key\\nrotated yearly",
    "aws_lb": "Network Load Balancer\\nTCP 443, 11112 (TLS end to end)",
    "aws_internet_gateway": "Internet gateway",
    "aws_flow_log": "VPC flow log",
}
_REF = re.compile(r"\$\{(aws_[a-z0-9_]+)\.([A-Za-z0-9_-]+)\.")


def _label(type_: str, name: str, body: dict[str, Any]) -> str:
    owner = name.split("_", maxsplit=1)[0]
    derived: dict[str, Callable[[], str]] = {
        "aws_secretsmanager_secret": lambda: (
            "Shared TLS certificate" if "/tls-" in body.get("name_prefix", "") else "Orthanc admin secret"
        ),
        "aws_autoscaling_group": lambda: (
            f"Auto Scaling group\\n{body['desired_capacity']} hosts: nginx (443, 11112) → Orthanc"
        ),
        "aws_s3_bucket": lambda: (
            "S3 host files\\nthe hosts' bundle: SSE-KMS, versioned"
            if "-host-files-" in body["bucket_prefix"]
            else "S3 image bucket\\nSSE-KMS, versioned, Intelligent-Tiering"
        ),
        "aws_vpc_endpoint": lambda: f"{body['vpc_endpoint_type']} endpoint\\n{body['service_name'].rsplit('.', 1)[1]}",
        "aws_cloudwatch_log_group": lambda: f"Log group\\n{body['name']}",
        "aws_security_group": lambda: f"Security group\\n{owner}",
        "aws_iam_role": lambda: f"IAM role\\n{owner}",
    }
    if type_ in LABELS:
        return LABELS[type_]
    return derived[type_]() if type_ in derived else f"{type_}\\n{name}"


def dot(synth: dict[str, Any]) -> str:
    wanted = {t for types in CLUSTERS.values() for t in types}
    nodes = {
        f"{t}.{n}": (t, n, body) for t, group in synth["resource"].items() if t in wanted for n, body in group.items()
    }
    lines = [
        "digraph orthweb {",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, label="Orthweb (generated from cdk.tf.json)"];',
        '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", fontname="Helvetica", fontsize=10];',
        '  edge [color="#7a869a", arrowsize=0.6];',
        '  users [label="Browsers (HTTPS 443)\\nModalities (DICOM TLS 11112)", shape=oval, fillcolor="#fff4e5"];',
        '  subgraph cluster_vpc { label="VPC"; style=rounded; color="#4a6fa5";',
    ]
    for i, (title, types) in enumerate(CLUSTERS.items()):
        inside = title.startswith(("Public", "Private"))
        members = [k for k, (t, _, _) in nodes.items() if t in types]
        block = [f'    subgraph cluster_{i} {{ label="{title}"; style=dashed;']
        block += [f'      "{k}" [label="{_label(*nodes[k])}"];' for k in members]
        block.append("    }")
        if inside:
            lines += block
    lines.append("  }")
    for i, (title, types) in enumerate(CLUSTERS.items()):
        if title.startswith(("Public", "Private")):
            continue
        members = [k for k, (t, _, _) in nodes.items() if t in types]
        if not members:
            continue
        lines.append(f'  subgraph cluster_{i} {{ label="{title}"; style=dashed;')
        lines += [f'    "{k}" [label="{_label(*nodes[k])}"];' for k in members]
        lines.append("  }")
    edges = set()
    templates = synth["resource"].get("aws_launch_template", {})
    for key, (type_, _, body) in nodes.items():
        text = json.dumps(body)
        if type_ == "aws_autoscaling_group":  # the hosts are what its launch template describes
            text += "".join(json.dumps(b) for n, b in templates.items() if f"aws_launch_template.{n}." in text)
        for t, n in _REF.findall(text):
            target = f"{t}.{n}"
            if target in nodes and target != key:
                edges.add((key, target))
    lines += [f'  "{a}" -> "{b}";' for a, b in sorted(edges)]
    hosts = next(k for k in nodes if k.startswith(("aws_instance.", "aws_autoscaling_group.")))
    entry = next((k for k in nodes if k.startswith("aws_lb.")), hosts)
    small = 'fontname="Helvetica", fontsize=9'
    if entry != hosts:
        lines.append(
            f'  "{entry}" -> "{hosts}" [color="#d9822b", penwidth=1.5, label="TCP, to healthy hosts", {small}];'
        )
    lines += [
        f'  "{hosts}" -> "{b}" [style=dashed, label="{what}", {small}];'
        for b, (t, _, body) in nodes.items()
        if t == "aws_s3_bucket"
        for what in ["files, first boot" if "-host-files-" in body["bucket_prefix"] else "images"]
    ]
    lines.append(f'  users -> "{entry}" [color="#d9822b", penwidth=1.5];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[1:] == ["--scaled"]:  # three hosts behind the balancer, images in S3 (docs/scaling.md)
        from orthweb_dev.synth import SCALED_SETTINGS, synthesize

        with tempfile.TemporaryDirectory(prefix="orthweb-diagram-") as tmp:
            sys.stdout.write(dot(synthesize(SCALED_SETTINGS, Path(tmp))[0]))
        return 0
    stack = Path(argv[1]) if len(argv) > 1 else DEFAULT_STACK
    if not stack.is_file():
        print(f"diagram: {stack} not found; run `make synth` first", file=sys.stderr)
        return 2
    sys.stdout.write(dot(json.loads(stack.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
