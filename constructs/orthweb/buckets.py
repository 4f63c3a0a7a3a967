"""What every Orthweb bucket is: private, owner-enforced, encrypted with the deployment key, versioned.

:func:`private_bucket` creates those resources in the owning construct's scope, with the IDs the
image bucket has had from the start (``Bucket``, ``Ownership``, ``PublicAccess``, ``Encryption``,
``Versioning``), so their Terraform addresses never move; each bucket adds its own lifecycle and
policy (:func:`abort_incomplete_uploads` is a rule both lifecycles have). :func:`baseline_denials`,
:func:`deny` and :func:`bucket_policy` spell the bucket-policy grammar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
)
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)

from constructs import Construct


@dataclass(frozen=True)
class PrivateBucket:
    """The resources of one private bucket, for the owner to depend on."""

    bucket: S3Bucket
    public_access: S3BucketPublicAccessBlock
    encryption: S3BucketServerSideEncryptionConfigurationA
    versioning: S3BucketVersioningA


def private_bucket(
    scope: Construct,
    *,
    bucket_prefix: str,
    key_arn: str,
    force_destroy: bool,
    tags: Mapping[str, str],
    lifecycle: TerraformResourceLifecycle | None = None,
) -> PrivateBucket:
    """A bucket in ``scope`` with public access blocked in all four ways, ACLs off (bucket owner
    enforced), SSE-KMS with ``key_arn`` by default (bucket key on: one KMS call per bucket-key
    period, not per object) and versioning on."""
    bucket = S3Bucket(
        scope, "Bucket", bucket_prefix=bucket_prefix, force_destroy=force_destroy, lifecycle=lifecycle, tags=dict(tags)
    )
    S3BucketOwnershipControls(
        scope,
        "Ownership",
        bucket=bucket.id,
        rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
    )
    public_access = S3BucketPublicAccessBlock(
        scope,
        "PublicAccess",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
    )
    encryption = S3BucketServerSideEncryptionConfigurationA(
        scope,
        "Encryption",
        bucket=bucket.id,
        rule=[
            S3BucketServerSideEncryptionConfigurationRuleA(
                apply_server_side_encryption_by_default=(
                    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="aws:kms", kms_master_key_id=key_arn
                    )
                ),
                bucket_key_enabled=True,
            )
        ],
    )
    versioning = S3BucketVersioningA(
        scope,
        "Versioning",
        bucket=bucket.id,
        versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
    )
    return PrivateBucket(bucket=bucket, public_access=public_access, encryption=encryption, versioning=versioning)


def abort_incomplete_uploads(every_object: Any) -> S3BucketLifecycleConfigurationRule:
    """The lifecycle rule that aborts multipart uploads left incomplete for a day."""
    return S3BucketLifecycleConfigurationRule(
        id="abort-incomplete-uploads",
        status="Enabled",
        filter=every_object,
        abort_incomplete_multipart_upload=[
            S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=1)
        ],
    )


def baseline_denials(bucket_arn: str, account_id: str) -> list[dict[str, Any]]:
    """What every bucket policy here starts with: plain HTTP refused, and every other account."""
    everything = [bucket_arn, f"{bucket_arn}/*"]
    return [
        deny("DenyPlainHttp", "s3:*", everything, {"Bool": {"aws:SecureTransport": "false"}}),
        deny("DenyOtherAccounts", "s3:*", everything, {"StringNotEquals": {"aws:PrincipalAccount": account_id}}),
    ]


def deny(sid: str, actions: Any, resource: Any, condition: dict[str, Any]) -> dict[str, Any]:
    """A bucket-policy statement denying ``actions`` on ``resource`` to every principal when ``condition`` holds."""
    return {"Sid": sid, "Effect": "Deny", "Principal": "*", "Action": actions, "Resource": resource,
            "Condition": condition}  # fmt: skip


def bucket_policy(statements: list[dict[str, Any]]) -> str:
    """A bucket policy document of ``statements`` (each with its own Effect and Principal)."""
    return json.dumps({"Version": "2012-10-17", "Statement": statements})
