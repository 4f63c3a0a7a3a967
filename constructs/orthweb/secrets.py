"""The web users' secret (the "admin secret"): created empty here, filled by the host."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret

from constructs import Construct
from orthweb.encryption import Encryption
from orthweb.policy import grant


class AdminSecret(Construct):
    """A Secrets Manager secret for the web users' passwords, encrypted with the deployment key.

    Terraform creates it with no value, so no password ever passes through Terraform or its
    state. The host generates a strong password for each configured web user that has none and
    stores them here as ``{"users": {NAME: PASSWORD}}``; a replaced host reads them back, so the
    logins survive instance replacement.
    """

    def __init__(
        self, scope: Construct, id_: str, *, name_prefix: str, encryption: Encryption, recovery_window_days: int = 7
    ) -> None:
        super().__init__(scope, id_)
        self.secret = SecretsmanagerSecret(
            self,
            "Secret",
            name_prefix=f"{name_prefix}/orthanc-admin-",
            description=f"{name_prefix}: Orthanc web users' passwords (JSON users: name to password), set by the host",
            kms_key_id=encryption.key_arn,
            recovery_window_in_days=recovery_window_days,
        )
        self.secret_arn: str = self.secret.arn

    def grant_read_write(self, role: IamRole) -> IamRolePolicy:
        """Let ``role`` read this secret and set its value (the host fills it at first boot); returns the policy."""
        return grant(
            self,
            "ReadWrite",
            role=role,
            name="read-write-orthanc-admin-secret",
            statement={
                "Sid": "ReadWriteOrthancAdminSecret",
                "Action": [
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:PutSecretValue",
                ],
                "Resource": self.secret_arn,
            },
        )
