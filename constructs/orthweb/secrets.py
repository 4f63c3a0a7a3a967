"""Secrets the hosts fill themselves: the web users' secret (the "admin secret") and, for several
hosts, the shared certificate. Terraform creates them empty, so no value ever passes through it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from cdktf_cdktf_provider_aws.secretsmanager_secret_policy import SecretsmanagerSecretPolicy

from constructs import Construct
from orthweb.encryption import Encryption
from orthweb.policy import grant


def _host_filled_secret(
    scope: Construct, *, name_prefix: str, description: str, encryption: Encryption, recovery_window_days: int
) -> SecretsmanagerSecret:
    """A secret Terraform creates with no value, encrypted with the deployment key (id ``Secret``)."""
    return SecretsmanagerSecret(
        scope,
        "Secret",
        name_prefix=name_prefix,
        description=description,
        kms_key_id=encryption.key_arn,
        recovery_window_in_days=recovery_window_days,
    )


def _grant_value(
    scope: Construct, role: IamRole, *, name: str, sid: str, secret_arn: str, condition: Mapping[str, Any] | None
) -> IamRolePolicy:
    """``role`` may read the secret's value and set a new one (policy id ``ReadWrite``)."""
    return grant(
        scope,
        "ReadWrite",
        role=role,
        name=name,
        statement={
            "Sid": sid,
            "Action": [
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret",
                "secretsmanager:PutSecretValue",
            ],
            "Resource": secret_arn,
        },
        condition=condition,
    )


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
        self.secret = _host_filled_secret(
            self,
            name_prefix=f"{name_prefix}/orthanc-admin-",
            description=f"{name_prefix}: Orthanc web users' passwords (JSON users: name to password), set by the host",
            encryption=encryption,
            recovery_window_days=recovery_window_days,
        )
        self.secret_arn: str = self.secret.arn

    def grant_read_write(self, role: IamRole, *, condition: Mapping[str, Any] | None = None) -> IamRolePolicy:
        """Let ``role`` read this secret and set its value (the host fills it at first boot), under
        ``condition``; returns the policy."""
        return _grant_value(
            self,
            role,
            name="read-write-orthanc-admin-secret",
            sid="ReadWriteOrthancAdminSecret",
            secret_arn=self.secret_arn,
            condition=condition,
        )


class CertificateSecret(Construct):
    """The TLS certificate and key every host serves (``hosts`` >= 2), so peers pin one certificate.

    Created empty, like the admin secret: the first host to boot makes the certificate and stores
    it here (JSON ``certificate``/``key``), and every later host adopts it (``orthweb-shared-cert``).
    Encrypted with the deployment key. Its resource policy refuses reading or writing the value to
    every principal but the role given to :meth:`grant_read_write`, account administrators included:
    the certificate itself is public (any client sees it), the key is for the hosts alone.
    """

    def __init__(
        self, scope: Construct, id_: str, *, name_prefix: str, encryption: Encryption, recovery_window_days: int = 7
    ) -> None:
        super().__init__(scope, id_)
        self.secret = _host_filled_secret(
            self,
            name_prefix=f"{name_prefix}/tls-",
            description=f"{name_prefix}: the TLS certificate and key every Orthanc host serves, set by the first host",
            encryption=encryption,
            recovery_window_days=recovery_window_days,
        )
        self.secret_arn: str = self.secret.arn

    def grant_read_write(self, role: IamRole, *, condition: Mapping[str, Any] | None = None) -> IamRolePolicy:
        """Let ``role`` (and no one else) read the value and offer a new one, under ``condition``;
        returns the role's policy."""
        SecretsmanagerSecretPolicy(
            self,
            "Policy",
            secret_arn=self.secret.arn,
            block_public_policy=True,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "OnlyTheHostsReadOrWriteTheKey",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                            "Resource": "*",
                            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": role.arn}},
                        }
                    ],
                }
            ),
        )
        return _grant_value(
            self,
            role,
            name="read-write-shared-certificate-secret",
            sid="ReadWriteSharedCertificate",
            secret_arn=self.secret_arn,
            condition=condition,
        )
