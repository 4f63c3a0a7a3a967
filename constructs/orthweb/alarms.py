"""Alarms a PACS operator expects, sent by e-mail through a KMS-encrypted SNS topic."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_policy import SnsTopicPolicy
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription

from constructs import Construct
from orthweb.encryption import Encryption
from orthweb.policy import grant
from orthweb.thresholds import HEALTH_NAMESPACE, AlarmSpec, alarm_specs, unhealthy_targets_spec


class Alarms(Construct):
    """An SNS topic encrypted with the deployment key, an e-mail subscription, and the alarms.

    Each alarm notifies when it fires and when it clears. The topic accepts messages only from
    this account's CloudWatch alarms of this deployment, over TLS.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        region: str,
        encryption: Encryption,
        email: str,
        instance_id: str | None,
        db_identifier: str,
        db_instance_class: str,
        db_storage_gb: int,
    ) -> None:
        super().__init__(scope, id_)
        self.name_prefix = name_prefix
        alarms_of_this_deployment = (
            f"arn:{encryption.partition}:cloudwatch:{region}:{encryption.account_id}:alarm:{name_prefix}-*"
        )
        encryption.allow_alarm_notifications(alarms_of_this_deployment)
        self.topic = SnsTopic(
            self,
            "Topic",
            name=f"{name_prefix}-alarms",
            display_name=f"{name_prefix} alarms",
            kms_master_key_id=encryption.key_arn,
        )
        SnsTopicPolicy(
            self,
            "TopicPolicy",
            arn=self.topic.arn,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ThisDeploymentsAlarmsPublish",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudwatch.amazonaws.com"},
                            "Action": "sns:Publish",
                            "Resource": self.topic.arn,
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": encryption.account_id},
                                "ArnLike": {"aws:SourceArn": alarms_of_this_deployment},
                            },
                        },
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "sns:Publish",
                            "Resource": self.topic.arn,
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        },
                    ],
                }
            ),
        )
        # Stays "pending confirmation" until the recipient follows the link AWS e-mails.
        SnsTopicSubscription(self, "Email", topic_arn=self.topic.arn, protocol="email", endpoint=email)

        self.specs = alarm_specs(
            name_prefix=name_prefix,
            instance_id=instance_id,
            db_identifier=db_identifier,
            db_instance_class=db_instance_class,
            db_storage_gb=db_storage_gb,
        )
        for spec in self.specs:
            self._alarm(spec)

    def add_unhealthy_targets_alarm(
        self, *, load_balancer: str, target_group: str, name: str = ""
    ) -> CloudwatchMetricAlarm:
        """Alarm when a target behind a Network Load Balancer is unhealthy (deployments with several
        hosts). ``load_balancer`` and ``target_group`` are the ``arn_suffix`` of the aws_lb and the
        aws_lb_target_group, the dimensions CloudWatch uses; ``name`` tells target groups apart."""
        spec = unhealthy_targets_spec(load_balancer=load_balancer, target_group=target_group, name=name)
        self.specs.append(spec)
        return self._alarm(spec)

    def _alarm(self, spec: AlarmSpec) -> CloudwatchMetricAlarm:
        return CloudwatchMetricAlarm(
            self,
            spec.id,
            alarm_name=f"{self.name_prefix}-{spec.name}",
            alarm_description=f"{self.name_prefix}: {spec.watches}; fires when {spec.fires_when}",
            namespace=spec.namespace,
            metric_name=spec.metric_name,
            dimensions=spec.dimensions,
            statistic=spec.statistic,
            comparison_operator=spec.comparison_operator,
            threshold=spec.threshold,
            period=spec.period,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.evaluation_periods,
            treat_missing_data=spec.treat_missing_data,
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
        )

    def grant_publish_health(self, role: IamRole, *, condition: Mapping[str, Any] | None = None) -> IamRolePolicy:
        """Let ``role`` publish metrics to the health namespace only (PutMetricData has no resource
        type: the namespace condition is what narrows it); returns the policy."""
        return grant(
            self,
            "PublishHealth",
            role=role,
            name="publish-health-metric",
            statement={
                "Sid": "PublishHealthMetric",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": HEALTH_NAMESPACE}},
            },
            condition=condition,
        )
