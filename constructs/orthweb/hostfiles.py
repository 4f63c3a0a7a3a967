"""The host-files bucket: the bundle of every script, unit and application file the hosts run."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cdktf import Postcondition, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_object import S3Object

from constructs import Construct
from orthweb.bootstrap import BUNDLE_KEY, sha256_hex
from orthweb.buckets import abort_incomplete_uploads, baseline_denials, bucket_policy, deny, private_bucket
from orthweb.encryption import Encryption
from orthweb.network import Network
from orthweb.policy import FROM_THE_INSTANCE_ONLY, policy_document

# What a host does with the bundle: read the version its user data names. The bucket policy refuses
# the hosts' role every other S3 action on the bucket and its objects, whatever else it is granted later.
READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
# Versions a newer upload replaced stay this long: a launch template version (or a host) that still
# names one can be brought back for a while, then they go.
NONCURRENT_DAYS = 90


class HostFiles(Construct):
    """A private, versioned S3 bucket holding one object: the hosts' bundle (``archive``, the bytes
    :func:`orthweb.bootstrap.bundle_archive` made at synth).

    - Encrypted at rest with the deployment key (SSE-KMS, bucket key on), for the object too;
      public access blocked in all four ways; ACLs disabled (bucket owner enforced); versioned.
      Replaced versions expire after 90 days; incomplete uploads are aborted after a day.
    - The bucket policy refuses plain HTTP and every principal of another account; refuses the
      hosts' role reading the bundle anywhere but through this VPC's S3 gateway endpoint; refuses
      that role writing, deleting or restoring anything. :meth:`grant_read` is the only read grant
      the deployment makes. The account's administrators keep the bucket's administration through
      IAM, teardown included: Terraform, which they run, writes the object and reads it back at
      every plan. The archive holds no secret (the tests check it); what keeps a host from
      running other files is its user data, which names the object's version and SHA-256, and
      the fetch step, which checks them before unpacking anything.
    - Nothing in it is data: the bundle is made again by every synth, so the bucket is always
      destroyed with the deployment (emptied first), whatever ``deletion_protection`` says.
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
        archive: bytes,
    ) -> None:
        super().__init__(scope, id_)
        self._encryption = encryption
        self._region = region
        parts = private_bucket(
            self,
            bucket_prefix=f"{name_prefix}-host-files-",
            key_arn=encryption.key_arn,
            force_destroy=True,
            tags={"Name": f"{name_prefix}-host-files"},
        )
        self.bucket = parts.bucket
        self.bucket_name: str = self.bucket.bucket
        self.bucket_arn: str = self.bucket.arn
        self.object_key = BUNDLE_KEY
        self.object_arn = f"{self.bucket.arn}/{BUNDLE_KEY}"
        self.sha256 = sha256_hex(archive)
        public_access, bucket_encryption, versioning = parts.public_access, parts.encryption, parts.versioning
        every_object = [S3BucketLifecycleConfigurationRuleFilter(prefix="")]
        S3BucketLifecycleConfiguration(
            self,
            "Lifecycle",
            bucket=self.bucket.id,
            rule=[
                abort_incomplete_uploads(every_object),
                S3BucketLifecycleConfigurationRule(
                    id="expire-replaced-bundles",
                    status="Enabled",
                    filter=every_object,
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(noncurrent_days=NONCURRENT_DAYS)
                    ],
                ),
            ],
            depends_on=[versioning],
        )
        self._s3_endpoint_id = network.s3_endpoint_id
        self._statements: list[dict[str, Any]] = [
            *baseline_denials(self.bucket_arn, encryption.account_id),
        ]
        self.policy = S3BucketPolicy(
            self,
            "Policy",
            bucket=self.bucket.id,
            policy=bucket_policy(self._statements),
            # S3 refuses a policy while the public access block is being written.
            depends_on=[public_access],
        )
        checksum = base64.b64encode(hashlib.sha256(archive).digest()).decode()
        self.object = S3Object(
            self,
            "Bundle",
            bucket=self.bucket.id,
            key=BUNDLE_KEY,
            content_base64=base64.b64encode(archive).decode(),
            content_type="application/x-tar",
            server_side_encryption="aws:kms",
            kms_key_id=encryption.key_arn,
            bucket_key_enabled=True,
            checksum_algorithm="SHA256",
            # A version id exists only once versioning is on; the host is told this one.
            depends_on=[versioning, bucket_encryption],
            lifecycle=TerraformResourceLifecycle(
                postcondition=[
                    Postcondition(
                        condition=f'${{self.checksum_sha256 == "{checksum}"}}',
                        error_message=(
                            f"The current version of s3://<host-files bucket>/{BUNDLE_KEY} is not the bundle this "
                            "synth made (someone wrote it outside Terraform); hosts told its version would refuse "
                            "it at boot. Upload the bundle again: terraform apply "
                            "-replace=aws_s3_object.<the HostFiles_Bundle address in terraform state list>."
                        ),
                    ),
                    Postcondition(
                        condition='${self.version_id != ""}',
                        error_message=(
                            "S3 gave the hosts' bundle no version id (versioning was not in force yet); "
                            "run terraform apply again to upload it as a version."
                        ),
                    ),
                ]
            ),
        )
        self.version_id: str = self.object.version_id

    def grant_read(self, role: IamRole) -> IamRolePolicy:
        """Let ``role`` (the hosts') read the bundle, its versions included, with credentials EC2
        delivered to an instance of this VPC, and decrypt it through S3; the bucket policy then
        refuses that role reading outside the VPC's S3 endpoint and any other action on the bucket."""
        objects = f"{self.bucket_arn}/*"
        host_only: dict[str, Any] = {"ArnEquals": {"aws:PrincipalArn": role.arn}}
        self._statements += [
            deny(
                "DenyHostReadsOutsideTheVpc",
                "s3:GetObject*",
                objects,
                {**host_only, "StringNotEquals": {"aws:SourceVpce": self._s3_endpoint_id}},
            ),
            {
                "Sid": "DenyHostEverythingButReading",
                "Effect": "Deny",
                "Principal": "*",
                "NotAction": list(READ_ACTIONS),
                "Resource": [self.bucket_arn, objects],
                "Condition": host_only,
            },
        ]
        self.policy.policy = bucket_policy(self._statements)
        statements: list[dict[str, Any]] = [
            {
                "Sid": "ReadTheBundle",
                "Action": list(READ_ACTIONS),
                "Resource": self.object_arn,
                "Condition": dict(FROM_THE_INSTANCE_ONLY),
            },
            {
                # No from-the-instance condition: KMS is called by S3 for the role, and AWS redacts
                # the network keys there (policy.FROM_THE_INSTANCE_ONLY); the key is usable only
                # through S3, for this bucket.
                "Sid": "DecryptTheBundleThroughS3",
                "Action": "kms:Decrypt",
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
        return IamRolePolicy(self, "Read", role=role.id, name="read-host-files", policy=policy_document(*statements))
