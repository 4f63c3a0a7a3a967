"""The default of every deployment setting, in one place.

:class:`orthweb.settings.Settings` and the constructs' keyword defaults both read these, so a
construct placed alone behaves like the stack with default settings. Each default is the safe
choice; the README's settings table says what each one means. Nothing here imports the AWS
bindings, so settings can be checked before they load.
"""

from __future__ import annotations

NAME_PREFIX = "orthweb"
REGION = "us-east-1"
VPC_CIDR = "10.64.0.0/16"
AZ_COUNT = 2
# HTTPS from anywhere: clinicians' browsers are everywhere, and every route needs a login.
WEB_CIDRS: tuple[str, ...] = ("0.0.0.0/0",)
# Basic logins checked by nginx (the demo, trials, sites reached over a VPN); "cognito" puts a
# load balancer with a managed login (MFA required) and a trusted certificate in front.
LOGIN = "basic"
# How long a Cognito login lasts before the user signs in again (at most 12 hours).
SESSION_HOURS = 8
# One web user: the administrator (more users and roles in the `web_users` setting).
WEB_USERS: dict[str, str] = {"admin": "admin"}
# DICOM closed until the operator names the peers.
DICOM_CIDRS: tuple[str, ...] = ()
INSTANCE_TYPE = "t4g.small"
ROOT_VOLUME_GB = 20
# The host's second encrypted volume, where Orthanc builds ZIP archives and DICOMDIR media
# (TemporaryDirectory): a full one fails the archive being built, never the root volume.
ARCHIVE_VOLUME_GB = 10
DB_INSTANCE_CLASS = "db.t4g.micro"
DB_STORAGE_GB = 20
# RDS storage autoscaling's ceiling, as a multiple of DB_STORAGE_GB's setting: room to grow while the
# free-storage alarm gets someone's attention (a ceiling costs nothing until storage is used).
DB_STORAGE_AUTOSCALING_FACTOR = 4
DB_ENGINE_VERSION = "17"
DB_MULTI_AZ = False
DB_BACKUP_DAYS = 7
DELETION_PROTECTION = True
LOG_RETENTION_DAYS = 365
# Security updates weekly, Sunday 03:00 UTC, rebooting only when the kernel or core libraries changed.
PATCH_SCHEDULE = "Sun 03:00"
PATCH_REBOOT = True
PATCH_RELEASE = "latest"
INTERFACE_ENDPOINTS: tuple[str, ...] = ()
ENDPOINTS_IN_ALL_AZS = False
ORTHANC_AET = "ORTHANC"
ORTHANC_IMAGE = "orthancteam/orthanc:25.6.0"
NGINX_IMAGE = "nginx:1.28.0-alpine"
HTTPS = True
PLAIN_DICOM_IN_VPC = False
# The diagnostic viewers the orthancteam image serves beside Orthanc Explorer 2 (docs/host.md).
VIEWERS: tuple[str, ...] = ("stone",)
# Origins of separately hosted viewers allowed to call DICOMweb from a browser: none (CORS off).
WEB_CORS_ORIGINS: tuple[str, ...] = ()
# Images beside the index in RDS: the simplest deployment; `s3` is the one that grows.
STORAGE = "postgresql"
# One EC2 host, `aws_instance.orthweb`; 2-10 run behind a Network Load Balancer.
HOSTS = 1
STATE_BACKEND = "local"
STATE_PATH = "terraform.orthweb.tfstate"
STATE_KEY = "orthweb/terraform.tfstate"
