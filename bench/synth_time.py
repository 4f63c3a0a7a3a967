"""Synth wall time beside the jsii floor (a bare import of the same AWS binding modules).

Each figure is the median of N fresh processes. Target: synth <= 1.25x the floor.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("BENCH_RUNS", "3"))

MODULES = [
    "cdktf",
    "constructs",
    *(
        f"cdktf_cdktf_provider_aws.{m}"
        for m in [
            "cloudwatch_log_group",
            "db_instance",
            "db_parameter_group",
            "db_subnet_group",
            "default_security_group",
            "flow_log",
            "iam_instance_profile",
            "iam_role",
            "iam_role_policy",
            "iam_role_policy_attachment",
            "instance",
            "internet_gateway",
            "kms_alias",
            "kms_key",
            "route",
            "route_table",
            "route_table_association",
            "secretsmanager_secret",
            "security_group",
            "subnet",
            "vpc",
            "vpc_endpoint",
            "vpc_security_group_egress_rule",
            "vpc_security_group_ingress_rule",
            "provider",
            "data_aws_availability_zones",
            "data_aws_caller_identity",
            "data_aws_partition",
            "data_aws_ssm_parameter",
        ]
    ),
]


def timed(argv: list[str], cwd: Path) -> float:
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    floor_code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in MODULES)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("main.py", "cdktf.json"):
            (work / name).write_text((PROJECT_DIR / name).read_text())
        floor = [timed([sys.executable, "-c", floor_code], work) for _ in range(RUNS)]
        synth = [timed([sys.executable, "main.py"], work) for _ in range(RUNS)]
    f, s = statistics.median(floor), statistics.median(synth)
    print(f"runs per figure:          {RUNS} (median)")
    print(f"jsii floor (bare import): {f:6.2f} s")
    print(f"full synth (main.py):     {s:6.2f} s")
    print(f"ratio synth / floor:      {s / f:6.2f}x  (target <= 1.25x)")


if __name__ == "__main__":
    main()
