"""One customer-managed KMS key that encrypts everything the deployment stores."""

from __future__ import annotations

from typing import Any

from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey

from constructs import Construct
from orthweb.names import log_group_patterns
from orthweb.policy import grant, policy_document

# Services that encrypt this deployment's data with the key on a caller's behalf.
_SERVICES_USING_KEY = ("rds", "secretsmanager", "ec2", "s3")


class Encryption(Construct):
    """A customer-managed KMS key, rotated yearly, with an alias.

    The key policy lets the account administer the key through IAM, CloudWatch Logs encrypt this
    deployment's log groups, and RDS, Secrets Manager, EBS and S3 (the host-files bucket, and with
    ``storage = "s3"`` the image bucket) use it on behalf of principals of this account only; with
    alarms, CloudWatch publish to the alarm topic it encrypts. No other principal can use it.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        region: str,
        deletion_window_days: int = 30,
    ) -> None:
        super().__init__(scope, id_)
        identity = DataAwsCallerIdentity(self, "Account")
        partition = DataAwsPartition(self, "Partition")
        self.account_id: str = identity.account_id
        self.partition: str = partition.partition
        account_root = f"arn:{partition.partition}:iam::{identity.account_id}:root"
        # This deployment's log groups only: another deployment's (even in this account) may not use the key.
        log_groups = [
            f"arn:{partition.partition}:logs:{region}:{identity.account_id}:log-group:{pattern}"
            for pattern in log_group_patterns(name_prefix)
        ]

        # A key policy is a resource policy: "Resource": "*" means this key. Access is narrowed by
        # principal and by the kms:ViaService / kms:CallerAccount conditions.
        self._statements: list[dict[str, Any]] = [
            {
                "Sid": "AccountAdministersKeyThroughIam",
                "Principal": {"AWS": account_root},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsEncryptsThisDeploymentsLogGroups",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            },
            {
                "Sid": "AwsServicesUseKeyForThisAccount",
                "Principal": {"AWS": account_root},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:CreateGrant",
                    "kms:DescribeKey",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": [f"{svc}.{region}.amazonaws.com" for svc in _SERVICES_USING_KEY],
                        "kms:CallerAccount": identity.account_id,
                    }
                },
            },
        ]
        self.key = KmsKey(
            self,
            "Key",
            description=f"{name_prefix}: encrypts the Orthanc database, secrets, volumes and logs",
            enable_key_rotation=True,
            rotation_period_in_days=365,
            deletion_window_in_days=deletion_window_days,
            policy=policy_document(*self._statements),
        )
        KmsAlias(self, "Alias", name=f"alias/{name_prefix}", target_key_id=self.key.key_id)
        self.key_arn: str = self.key.arn
        self.key_id: str = self.key.key_id

    def allow_alarm_notifications(self, alarms_arn_pattern: str) -> None:
        """Let the CloudWatch alarms matching ``alarms_arn_pattern`` (this account's) publish to SNS
        topics that this key encrypts.

        An alarm publishes as the service principal cloudwatch.amazonaws.com, which needs the data
        key of the encrypted topic: kms:GenerateDataKey* and kms:Decrypt, as the Amazon SNS
        Developer Guide documents for AWS services publishing to encrypted topics. A service
        principal acts for every account, so the grant holds only when CloudWatch acts for an alarm
        of this account (aws:SourceAccount) named like this deployment's (aws:SourceArn), the same
        alarms the topic policy accepts: no other account's alarm can make CloudWatch use the key
        (the confused deputy). The Amazon SNS Developer Guide, "Enable compatibility between event
        sources from AWS services and encrypted topics"
        (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services),
        shows these source conditions in the key policy; AWS's Modern Data Architecture
        Accelerator grants CloudWatch alarms the key the same way and notes the conditions are
        supported for them (unlike EventBridge, whose KMS requests carry no source keys)
        (https://aws.github.io/modern-data-architecture-accelerator/typedocs/functions/_aws-mdaa_cloudwatch-constructs.grantCloudWatchAlarmsTopicAccess.html).
        """
        self._statements.append(
            {
                "Sid": "CloudWatchAlarmsPublishToEncryptedTopics",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": self.account_id},
                    "ArnLike": {"aws:SourceArn": alarms_arn_pattern},
                },
            }
        )
        self.key.policy = policy_document(*self._statements)

    def grant_secrets_use(self, role: IamRole, *, region: str) -> IamRolePolicy:
        """Let ``role`` decrypt and encrypt with the key, but only through Secrets Manager; returns the policy.

        No from-the-instance condition here (policy.FROM_THE_INSTANCE_ONLY): KMS is called by
        Secrets Manager on the role's behalf (a forward access session), where AWS redacts the
        network keys, so the condition would refuse every secret read. A thief holding the
        credentials still gets nothing: the key is usable only through Secrets Manager, whose
        own grants carry the condition.
        """
        return grant(
            self,
            "SecretsUse",
            role=role,
            name="use-key-through-secrets-manager",
            statement={
                "Sid": "UseKeyForSecretsOnly",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": self.key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            },
        )
