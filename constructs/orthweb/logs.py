"""The application's CloudWatch Logs groups: the containers' output leaves the host as it is written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy

from constructs import Construct
from orthweb import defaults
from orthweb.encryption import Encryption
from orthweb.policy import grant

# One group per container (the compose services of userdata/app/docker-compose.yml).
CONTAINERS = ("orthanc", "nginx")


def log_group_name(name_prefix: str, container: str) -> str:
    """The log group a container writes to; the compose file names the same groups."""
    return f"/{name_prefix}/{container}"


class AppLogs(Construct):
    """A KMS-encrypted log group per container, kept ``retention_days``.

    Docker's ``awslogs`` driver on the host sends each container's output here (one stream per
    container). The driver runs in the Docker daemon, on the host, with the instance role: no
    container needs AWS credentials for it. The groups outlive the host, so logs and the audit
    trail survive a host replacement.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        encryption: Encryption,
        retention_days: int = defaults.LOG_RETENTION_DAYS,
    ) -> None:
        super().__init__(scope, id_)
        self.groups: dict[str, CloudwatchLogGroup] = {
            container: CloudwatchLogGroup(
                self,
                container.capitalize(),
                name=log_group_name(name_prefix, container),
                retention_in_days=retention_days,
                kms_key_id=encryption.key_arn,
            )
            for container in CONTAINERS
        }

    def grant_write(self, role: IamRole, *, condition: Mapping[str, Any] | None = None) -> IamRolePolicy:
        """Let ``role`` create streams in these groups and write to them, nothing else (what Docker's
        awslogs driver needs); returns the policy."""
        return grant(
            self,
            "Write",
            role=role,
            name="write-container-logs",
            statement={
                "Sid": "WriteContainerLogs",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [arn for group in self.groups.values() for arn in (group.arn, f"{group.arn}:log-stream:*")],
            },
            condition=condition,
        )
