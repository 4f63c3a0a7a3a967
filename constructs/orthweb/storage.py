"""The image bucket (``storage = "s3"``): Orthanc's DICOM files, with the index staying in RDS."""

from __future__ import annotations

from typing import Any

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
    S3BucketLifecycleConfigurationRuleTransition,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy

from constructs import Construct
from orthweb import defaults
from orthweb.buckets import abort_incomplete_uploads, baseline_denials, bucket_policy, deny, private_bucket
from orthweb.encryption import Encryption
from orthweb.network import Network
from orthweb.policy import grant, policy_document

# What Orthanc's S3 plugin does with its files: write, read (and HEAD), delete. Nothing else.
OBJECT_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")
# Object content, refused to every principal but the image-store role (and to it outside the VPC).
CONTENT_ACTIONS = ("s3:GetObject*", "s3:PutObject*", "s3:RestoreObject", "s3:ReplicateObject")
# Deleting an image (its current version, or any version for good). Refused to the image-store role
# outside the VPC, so its credentials, taken from Orthanc, delete nothing from anywhere else; not to
# the account's administrators, who delete through IAM for a teardown.
DELETE_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion")
# Deleted or overwritten images stay recoverable this long as noncurrent versions.
NONCURRENT_DAYS = 30
# Sessions the hosts hand to Orthanc last one hour (the host renews them well before).
SESSION_SECONDS = 3600


class ImageBucket(Construct):
    """A private S3 bucket for Orthanc's images, and the role Orthanc's S3 plugin uses for it.

    - Encrypted at rest with the deployment key (SSE-KMS, bucket key on: one KMS call per
      bucket-key period, not per image); public access blocked in all four ways; ACLs disabled
      (bucket owner enforced); versioned, so a deleted or overwritten image stays recoverable for
      30 days.
    - Lifecycle: every object moves to S3 Intelligent-Tiering at once (the plugin also uploads
      there directly): recent studies stay in the frequent tier, priors untouched for 30 days cost
      about half, for 90 days about a sixth, all with millisecond reads, and no retrieval fee, so a
      prior pulled up for comparison is as fast as a new study. Incomplete multipart uploads are
      aborted after a day; expired delete markers are removed.
    - The bucket policy refuses plain HTTP to everyone; refuses every request from outside this
      account; and refuses reading or writing image content to every principal but the image-store
      role, and to that role too unless the request comes through this VPC's S3 endpoint; it refuses
      that role deleting images (a version or the current object) outside the endpoint too, so its
      credentials are useless anywhere else. The account's administrators keep the bucket's
      administration (policy, lifecycle, listing, and deleting for a teardown) through IAM; they
      read images through Orthanc, like everyone else.
    - The image-store role (fixed name ``<prefix>-image-store``, so the host can be told its ARN
      before the role exists) may do exactly the object actions of Orthanc's S3 plugin on this
      bucket and use the key only through S3 for this bucket; :meth:`grant_assume` names the one
      role that may assume it (the hosts').
    - With ``deletion_protection`` Terraform refuses to destroy the bucket at all, and S3 refuses
      to delete a bucket that is not empty; without it, a destroy empties and deletes it.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        region: str,
        network: Network,
        encryption: Encryption,
        deletion_protection: bool = defaults.DELETION_PROTECTION,
    ) -> None:
        super().__init__(scope, id_)
        self._encryption = encryption
        self._region = region
        self._vpc_id = network.vpc_id
        parts = private_bucket(
            self,
            bucket_prefix=f"{name_prefix}-images-",
            key_arn=encryption.key_arn,
            force_destroy=not deletion_protection,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=deletion_protection),
            tags={"Name": f"{name_prefix}-images"},
        )
        self.bucket = parts.bucket
        self.bucket_name: str = self.bucket.bucket
        self.bucket_arn: str = self.bucket.arn
        self.access_role_name = f"{name_prefix}-image-store"
        self.access_role_arn = f"arn:{encryption.partition}:iam::{encryption.account_id}:role/{self.access_role_name}"
        public_access, versioning = parts.public_access, parts.versioning
        every_object = [S3BucketLifecycleConfigurationRuleFilter(prefix="")]
        S3BucketLifecycleConfiguration(
            self,
            "Lifecycle",
            bucket=self.bucket.id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="intelligent-tiering",
                    status="Enabled",
                    filter=every_object,
                    transition=[
                        S3BucketLifecycleConfigurationRuleTransition(days=0, storage_class="INTELLIGENT_TIERING")
                    ],
                ),
                abort_incomplete_uploads(every_object),
                S3BucketLifecycleConfigurationRule(
                    id="keep-deleted-images-30-days",
                    status="Enabled",
                    filter=every_object,
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(noncurrent_days=NONCURRENT_DAYS)
                    ],
                    expiration=[S3BucketLifecycleConfigurationRuleExpiration(expired_object_delete_marker=True)],
                ),
            ],
            depends_on=[versioning],
        )
        self.policy = S3BucketPolicy(
            self,
            "Policy",
            bucket=self.bucket.id,
            policy=self._policy(network.s3_endpoint_id),
            # S3 refuses a policy while the public access block is being written.
            depends_on=[public_access],
        )

    def _policy(self, s3_endpoint_id: str) -> str:
        objects = f"{self.bucket_arn}/*"

        statements = [
            *baseline_denials(self.bucket_arn, self._encryption.account_id),
            deny(
                "DenyImageContentToAllButOrthanc",
                list(CONTENT_ACTIONS),
                objects,
                {"ArnNotEquals": {"aws:PrincipalArn": self.access_role_arn}},
            ),
            deny(
                "DenyImageContentOutsideTheVpc",
                list(CONTENT_ACTIONS),
                objects,
                {"StringNotEquals": {"aws:SourceVpce": s3_endpoint_id}},
            ),
            deny(
                "DenyImageDeletesByOrthancOutsideTheVpc",
                list(DELETE_ACTIONS),
                objects,
                {
                    "ArnEquals": {"aws:PrincipalArn": self.access_role_arn},
                    "StringNotEquals": {"aws:SourceVpce": s3_endpoint_id},
                },
            ),
        ]
        return bucket_policy(statements)

    def grant_assume(self, role: IamRole) -> IamRole:
        """Create the image-store role, assumable only by ``role`` (the hosts'), and only with
        credentials EC2 delivered inside this VPC; returns it."""
        trust = {
            "Principal": {"AWS": role.arn},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:Ec2InstanceSourceVpc": self._vpc_id}},
        }
        self.access_role = IamRole(
            self,
            "AccessRole",
            name=self.access_role_name,
            description="Orthanc's S3 plugin: the image objects of one bucket, through the VPC endpoint only",
            assume_role_policy=policy_document(trust),
            max_session_duration=SESSION_SECONDS,
        )
        self._object_access(self.access_role)
        grant(
            self,
            "AssumeAccessRole",
            role=role,
            name="assume-image-store-role",
            statement={"Sid": "AssumeImageStoreRole", "Action": "sts:AssumeRole", "Resource": self.access_role.arn},
        )
        return self.access_role

    def _object_access(self, role: IamRole) -> IamRolePolicy:
        statements: list[dict[str, Any]] = [
            {"Sid": "ImageObjects", "Action": list(OBJECT_ACTIONS), "Resource": f"{self.bucket_arn}/*"},
            {
                "Sid": "UseKeyThroughS3ForThisBucket",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": self._encryption.key_arn,
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"s3.{self._region}.amazonaws.com",
                        # With a bucket key, S3 asks KMS on behalf of the bucket.
                        "kms:EncryptionContext:aws:s3:arn": self.bucket_arn,
                    }
                },
            },
        ]
        return IamRolePolicy(
            self, "ObjectAccess", role=role.id, name="image-objects", policy=policy_document(*statements)
        )
