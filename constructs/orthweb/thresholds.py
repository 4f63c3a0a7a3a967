"""Every alarm as data: what it watches and when it fires (pure Python, so docs and tests read it).

:class:`orthweb.alarms.Alarms` turns these into CloudWatch alarms; ``python -m
orthweb_dev.alarms_table`` prints them for docs/operations.md, and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from orthweb import capacity

# The host's health probe (userdata/bin/orthweb-probe.sh, run by orthweb-probe.timer) publishes this
# metric every minute: 1 when Orthanc answered through nginx (over HTTPS unless https is off), 0 when
# it did not.
HEALTH_NAMESPACE = "Orthweb"
HEALTH_METRIC = "ApplicationHealthy"

HEALTH_FAILED_MINUTES = 3  # consecutive minutes without a passing probe; no data counts as failing
STATUS_CHECK_FAILED_MINUTES = 2
DB_FREE_STORAGE_FRACTION = 0.10  # of the allocated storage
DB_CPU_PERCENT = 80
DB_CPU_PERIODS = 3  # of 5 minutes
# Of capacity.max_connections, AWS's formula on 75 % of the class memory (RDS measures at 88-96 %):
# the alarm fires at roughly 70-80 % of the real limit.
DB_CONNECTIONS_FRACTION = 0.90
UNHEALTHY_TARGET_MINUTES = 2


@dataclass(frozen=True)
class AlarmSpec:
    """One CloudWatch alarm. ``name`` follows the deployment prefix; it fires after
    ``evaluation_periods`` breaching periods in a row and clears after one good one."""

    id: str
    name: str
    watches: str
    fires_when: str
    namespace: str
    metric_name: str
    dimensions: dict[str, str]
    statistic: str
    comparison_operator: str
    threshold: float
    period: int
    evaluation_periods: int
    # What no data means: "missing" keeps the state; "breaching" counts it as failing.
    treat_missing_data: str = "missing"


def alarm_specs(
    *, name_prefix: str, instance_id: str | None, db_identifier: str, db_instance_class: str, db_storage_gb: int
) -> list[AlarmSpec]:
    """The alarms of one deployment (the arguments may be Terraform references). With no
    ``instance_id`` (several hosts in an Auto Scaling group) there is no host status alarm: the
    load balancer's health checks and :func:`unhealthy_targets_spec` watch the hosts."""
    db = {"DBInstanceIdentifier": db_identifier}
    limit = capacity.max_connections(db_instance_class)
    if limit is None:
        raise ValueError(f"the memory of {db_instance_class} is not known (orthweb.capacity)")
    connections = int(limit * DB_CONNECTIONS_FRACTION)
    host = (
        []
        if instance_id is None
        else [
            AlarmSpec(
                "HostStatusCheck",
                "host-status-check",
                "EC2 instance and system status checks (AWS/EC2 StatusCheckFailed)",
                f"a check fails for {STATUS_CHECK_FAILED_MINUTES} consecutive minutes",
                "AWS/EC2",
                "StatusCheckFailed",
                {"InstanceId": instance_id},
                "Maximum",
                "GreaterThanOrEqualToThreshold",
                1,
                60,
                STATUS_CHECK_FAILED_MINUTES,
                # A stopped or replaced host reports nothing; the application health alarm covers that.
                "missing",
            )
        ]
    )
    return [
        *host,
        AlarmSpec(
            "ApplicationHealth",
            "application-health",
            f"the host's probe of Orthanc through nginx over HTTPS ({HEALTH_NAMESPACE}/{HEALTH_METRIC})",
            f"the probe fails or reports nothing for {HEALTH_FAILED_MINUTES} consecutive minutes",
            HEALTH_NAMESPACE,
            HEALTH_METRIC,
            {"Deployment": name_prefix},
            "Minimum",
            "LessThanThreshold",
            1,
            60,
            HEALTH_FAILED_MINUTES,
            # No data means the host, the probe or its path to CloudWatch is down: that is failing.
            "breaching",
        ),
        AlarmSpec(
            "DbFreeStorage",
            "db-free-storage",
            "the database's free storage (AWS/RDS FreeStorageSpace)",
            f"below {DB_FREE_STORAGE_FRACTION:.0%} of the allocated {db_storage_gb} GiB for 10 minutes (storage "
            "autoscaling grows the volume meanwhile, up to db_max_storage_gb)",
            "AWS/RDS",
            "FreeStorageSpace",
            db,
            "Minimum",
            "LessThanThreshold",
            int(db_storage_gb * 1024**3 * DB_FREE_STORAGE_FRACTION),
            300,
            2,
        ),
        AlarmSpec(
            "DbCpu",
            "db-cpu",
            "the database's CPU (AWS/RDS CPUUtilization)",
            f"the average is above {DB_CPU_PERCENT} % for {DB_CPU_PERIODS * 5} minutes",
            "AWS/RDS",
            "CPUUtilization",
            db,
            "Average",
            "GreaterThanThreshold",
            DB_CPU_PERCENT,
            300,
            DB_CPU_PERIODS,
        ),
        AlarmSpec(
            "DbConnections",
            "db-connections",
            "the database's open connections (AWS/RDS DatabaseConnections)",
            f"above {connections} for 10 minutes: {DB_CONNECTIONS_FRACTION:.0%} of {limit}, AWS's max_connections "
            f"formula on 75% of the {capacity.class_memory_gib(db_instance_class)} GiB of {db_instance_class}",
            "AWS/RDS",
            "DatabaseConnections",
            db,
            "Maximum",
            "GreaterThanThreshold",
            connections,
            300,
            2,
        ),
    ]


def unhealthy_targets_spec(*, load_balancer: str, target_group: str, name: str = "") -> AlarmSpec:
    """The alarm for hosts behind a Network Load Balancer (dimensions: the ARN suffixes), one per
    target group (``name``: web, dicom)."""
    suffix = f"-{name}" if name else ""
    return AlarmSpec(
        f"UnhealthyTargets{name.title()}",
        f"unhealthy-targets{suffix}",
        f"hosts behind the load balancer{f' ({name})' if name else ''} (AWS/NetworkELB UnHealthyHostCount)",
        f"any target is unhealthy for {UNHEALTHY_TARGET_MINUTES} consecutive minutes",
        "AWS/NetworkELB",
        "UnHealthyHostCount",
        {"LoadBalancer": load_balancer, "TargetGroup": target_group},
        "Maximum",
        "GreaterThanOrEqualToThreshold",
        1,
        60,
        UNHEALTHY_TARGET_MINUTES,
    )
