"""The site's front door with ``login = "cognito"``: an Application Load Balancer with a trusted
certificate that lets a request through only after a Cognito login with MFA (docs/host.md,
"The front door")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cdktf_cdktf_provider_aws.acm_certificate import AcmCertificate, AcmCertificateOptions
from cdktf_cdktf_provider_aws.acm_certificate_validation import AcmCertificateValidation
from cdktf_cdktf_provider_aws.cognito_user import CognitoUser
from cdktf_cdktf_provider_aws.cognito_user_group import CognitoUserGroup
from cdktf_cdktf_provider_aws.cognito_user_in_group import CognitoUserInGroup
from cdktf_cdktf_provider_aws.cognito_user_pool import (
    CognitoUserPool,
    CognitoUserPoolAccountRecoverySetting,
    CognitoUserPoolAccountRecoverySettingRecoveryMechanism,
    CognitoUserPoolAdminCreateUserConfig,
    CognitoUserPoolPasswordPolicy,
    CognitoUserPoolSoftwareTokenMfaConfiguration,
    CognitoUserPoolUsernameConfiguration,
)
from cdktf_cdktf_provider_aws.cognito_user_pool_client import (
    CognitoUserPoolClient,
    CognitoUserPoolClientTokenValidityUnits,
)
from cdktf_cdktf_provider_aws.cognito_user_pool_domain import CognitoUserPoolDomain
from cdktf_cdktf_provider_aws.lb import Lb
from cdktf_cdktf_provider_aws.lb_listener import (
    LbListener,
    LbListenerDefaultAction,
    LbListenerDefaultActionAuthenticateCognito,
    LbListenerDefaultActionRedirect,
)
from cdktf_cdktf_provider_aws.lb_target_group import LbTargetGroup, LbTargetGroupHealthCheck
from cdktf_cdktf_provider_aws.lb_target_group_attachment import LbTargetGroupAttachment
from cdktf_cdktf_provider_aws.route53_record import Route53Record, Route53RecordAlias
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule

from constructs import Construct
from orthweb import defaults
from orthweb.connections import Connections
from orthweb.host import HTTP_PORT, HTTPS_PORT, HasConnections
from orthweb.network import Network
from orthweb.settings import WEB_ROLES

# TLS 1.3, and TLS 1.2 with forward-secret AEAD suites only (ECDHE with AES-GCM; no CBC, no SHA-1):
# stricter than ELBSecurityPolicy-TLS13-1-2-2021-06 (which keeps four CBC suites for TLS 1.2), and
# still open to the TLS 1.2-only clients hospitals keep (older workstations, embedded viewers).
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
# Where Cognito sends the browser back after its login page: the ALB's own endpoint (AWS docs,
# "Authenticate users using an Application Load Balancer": the callback is /oauth2/idpresponse).
CALLBACK_PATH = "/oauth2/idpresponse"
# Where Cognito's /logout sends the browser after ending its session: the site itself, where the
# balancer, finding no session, shows the login page again (nginx's /logout asks for this one).
SIGNED_OUT_PATH = "/"
# The least a password must be (Cognito allows 6-99); all four character classes are required too.
MIN_PASSWORD_LENGTH = 12
# An invited person sets a password within this many days, or an admin re-invites them.
INVITATION_DAYS = 7
# Cognito's feature plan: Lite covers the hosted login page, TOTP MFA and the ALB integration at
# the lowest price per monthly active user; Plus (threat protection) is a cost decision left to
# the operator (docs/cost.md).
USER_POOL_TIER = "LITE"
# Highest precedence first: a person in several groups gets the first one's role in Cognito's
# preferred-role claim (nginx takes the most powerful group of the access token's list itself).
GROUP_PRECEDENCE = {role: n for n, role in enumerate(WEB_ROLES, start=1)}
# How long the balancer keeps a draining host's open requests (as the NLB does: orthweb.fleet).
DRAIN_SECONDS = 300
# A request the one host's nginx answers without a verified identity: the root's redirect, or a
# refusal (one host has no health endpoint; with several, the check asks it like the NLB does).
ONE_HOST_HEALTH_MATCHER = "200,302,401"


def cognito_domain_prefix(name_prefix: str, account_id: str) -> str:
    """The hosted login domain's prefix: unique per AWS Region across every account, so the
    account id follows the deployment's name (``orthweb-123456789012``)."""
    return f"{name_prefix}-{account_id}"


class FrontDoor(Construct):
    """The site's HTTPS entrance with a managed login, for one host or several.

    - An internet-facing Application Load Balancer in the public subnets admits 443 (and 80,
      only to redirect to 443) from ``web_cidrs``. It serves an ACM certificate for
      ``domain_name``, validated by a DNS record in ``hosted_zone_id``, with :data:`TLS_POLICY`;
      it drops header fields that are not valid HTTP, and a Route 53 alias gives it the name.
    - Its 443 listener lets a request through only after a login at the Cognito user pool
      (``authenticate``: an unauthenticated browser is sent to the login page), then forwards it
      over HTTPS to the hosts' 443, with the ALB's signed ``x-amzn-oidc-*`` headers that nginx
      verifies. The session lasts ``session_hours``; the app client's tokens last no longer.
    - The user pool requires MFA (TOTP apps only: no SMS), passwords of at least
      :data:`MIN_PASSWORD_LENGTH` characters with all four classes, recovery by verified e-mail
      only, and no self sign-up: every user is one of ``web_users`` (e-mail to role), created by
      Terraform without a password (Cognito e-mails the invitation) and a member of the group of
      their role (admin, uploader, viewer). Deletion protection follows ``deletion_protection``.
    - The hosts' 443 is reached from the balancer's security group only (:meth:`allow_to`).
      DICOM keeps its own path (the host's 11112, or the Network Load Balancer).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        region: str,
        account_id: str,
        network: Network,
        domain_name: str,
        hosted_zone_id: str,
        web_users: Mapping[str, str],
        web_cidrs: Sequence[str] = defaults.WEB_CIDRS,
        session_hours: int = defaults.SESSION_HOURS,
        deletion_protection: bool = defaults.DELETION_PROTECTION,
        health_port: int | None = None,
        health_path: str = "/",
    ) -> None:
        super().__init__(scope, id_)
        self.site_url = f"https://{domain_name}"

        # --- the login: a user pool, its hosted domain, the balancer's app client, groups, users ---
        self.user_pool = CognitoUserPool(
            self,
            "UserPool",
            name=f"{name_prefix}-users",
            user_pool_tier=USER_POOL_TIER,
            deletion_protection="ACTIVE" if deletion_protection else "INACTIVE",
            mfa_configuration="ON",
            software_token_mfa_configuration=CognitoUserPoolSoftwareTokenMfaConfiguration(enabled=True),
            password_policy=CognitoUserPoolPasswordPolicy(
                minimum_length=MIN_PASSWORD_LENGTH,
                require_lowercase=True,
                require_uppercase=True,
                require_numbers=True,
                require_symbols=True,
                temporary_password_validity_days=INVITATION_DAYS,
            ),
            account_recovery_setting=CognitoUserPoolAccountRecoverySetting(
                recovery_mechanism=[
                    CognitoUserPoolAccountRecoverySettingRecoveryMechanism(name="verified_email", priority=1)
                ]
            ),
            admin_create_user_config=CognitoUserPoolAdminCreateUserConfig(allow_admin_create_user_only=True),
            auto_verified_attributes=["email"],
            # Ann@Example.org and ann@example.org are one person.
            username_configuration=CognitoUserPoolUsernameConfiguration(case_sensitive=False),
        )
        self.user_pool_id: str = self.user_pool.id
        self.user_pool_arn: str = self.user_pool.arn
        self.domain = CognitoUserPoolDomain(
            self,
            "Domain",
            domain=cognito_domain_prefix(name_prefix, account_id),
            user_pool_id=self.user_pool.id,
        )
        # The hosted login's full name, where nginx's /logout sends the browser (Cognito's /logout).
        self.cognito_domain: str = f"{self.domain.domain}.auth.{region}.amazoncognito.com"
        self.client = CognitoUserPoolClient(
            self,
            "Client",
            name=f"{name_prefix}-alb",
            user_pool_id=self.user_pool.id,
            generate_secret=True,
            allowed_oauth_flows_user_pool_client=True,
            allowed_oauth_flows=["code"],
            allowed_oauth_scopes=["openid", "email"],
            supported_identity_providers=["COGNITO"],
            callback_urls=[f"{self.site_url}{CALLBACK_PATH}"],
            logout_urls=[f"{self.site_url}{SIGNED_OUT_PATH}"],
            # The hosted login page signs people in; no API sign-in with a password.
            explicit_auth_flows=["ALLOW_REFRESH_TOKEN_AUTH"],
            prevent_user_existence_errors="ENABLED",
            enable_token_revocation=True,
            # No token outlives the balancer's session.
            id_token_validity=session_hours,
            access_token_validity=session_hours,
            refresh_token_validity=session_hours,
            token_validity_units=[
                CognitoUserPoolClientTokenValidityUnits(
                    **dict.fromkeys(("id_token", "access_token", "refresh_token"), "hours")
                )
            ],
        )
        self.user_pool_client_id: str = self.client.id
        self.groups = {
            role: CognitoUserGroup(
                self,
                f"Group{role.title()}",
                name=role,
                user_pool_id=self.user_pool.id,
                precedence=GROUP_PRECEDENCE[role],
                description=f"Orthweb {role}s",
            )
            for role in WEB_ROLES
        }
        # One user and one membership per person, each named by the e-mail address (not by its
        # place in the list): reordering web_users replaces nothing, and no one is invited again.
        for email, role in web_users.items():
            user = CognitoUser(
                self,
                f"User_{email}",
                user_pool_id=self.user_pool.id,
                username=email,
                attributes={"email": email, "email_verified": "true"},
                desired_delivery_mediums=["EMAIL"],
            )
            CognitoUserInGroup(
                self,
                f"Member_{email}",
                user_pool_id=self.user_pool.id,
                username=user.username,
                group_name=self.groups[role].name,
            )

        # --- the balancer, its certificate and its name ---
        self.security_group = SecurityGroup(
            self,
            "SecurityGroup",
            name_prefix=f"{name_prefix}-alb-",
            description="Orthanc front door: HTTPS (and HTTP to redirect) from allowed networks only",
            vpc_id=network.vpc_id,
            tags={"Name": f"{name_prefix}-alb"},
            lifecycle={"create_before_destroy": True},
        )
        self.connections = Connections(self, self.security_group.id, "the front door (Application Load Balancer)")
        self.connections.allow_from_networks(
            [
                *((f"Web{i}", HTTPS_PORT, cidr, "Orthanc web UI behind the login") for i, cidr in enumerate(web_cidrs)),
                *((f"Http{i}", HTTP_PORT, cidr, "HTTP, redirected to HTTPS") for i, cidr in enumerate(web_cidrs)),
            ]
        )
        # The balancer redeems the login's code at Cognito's token endpoint itself (AWS: "the load
        # balancer security group must allow outbound connections to the IdP"); it has no fixed range.
        VpcSecurityGroupEgressRule(
            self,
            "HttpsToCognito",
            security_group_id=self.security_group.id,
            description="HTTPS to Cognito's token and user-info endpoints",
            ip_protocol="tcp",
            from_port=HTTPS_PORT,
            to_port=HTTPS_PORT,
            cidr_ipv4="0.0.0.0/0",
        )
        self.balancer = Lb(
            self,
            "Balancer",
            name=f"{name_prefix}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=network.public_subnet_ids,
            security_groups=[self.security_group.id],
            drop_invalid_header_fields=True,
            enable_deletion_protection=deletion_protection,
            tags={"Name": f"{name_prefix}-alb"},
        )
        self.alb_arn: str = self.balancer.arn
        self.dns_name: str = self.balancer.dns_name

        self.certificate = AcmCertificate(
            self,
            "Certificate",
            domain_name=domain_name,
            validation_method="DNS",
            options=AcmCertificateOptions(certificate_transparency_logging_preference="ENABLED"),
            lifecycle={"create_before_destroy": True},
            tags={"Name": f"{name_prefix}-site"},
        )
        record = self.certificate.domain_validation_options.get(0)
        validation_record = Route53Record(
            self,
            "CertificateValidation",
            zone_id=hosted_zone_id,
            name=record.resource_record_name,
            type=record.resource_record_type,
            records=[record.resource_record_value],
            ttl=300,
            allow_overwrite=True,
        )
        validation = AcmCertificateValidation(
            self,
            "Validation",
            certificate_arn=self.certificate.arn,
            validation_record_fqdns=[validation_record.fqdn],
        )

        self.target_group = LbTargetGroup(
            self,
            "Targets",
            name_prefix="site-",
            port=HTTPS_PORT,
            protocol="HTTPS",
            protocol_version="HTTP1",
            target_type="instance",
            vpc_id=network.vpc_id,
            deregistration_delay=str(DRAIN_SECONDS),
            health_check=LbTargetGroupHealthCheck(
                enabled=True,
                protocol="HTTP" if health_port else "HTTPS",
                port=str(health_port) if health_port else "traffic-port",
                path=health_path,
                matcher="200" if health_port else ONE_HOST_HEALTH_MATCHER,
                interval=10,
                timeout=6,
                healthy_threshold=3,
                unhealthy_threshold=2,
            ),
            lifecycle={"create_before_destroy": True},
            tags={"Name": f"{name_prefix}-site"},
        )
        self.target_group_arn: str = self.target_group.arn
        self.health_port = health_port

        LbListener(
            self,
            "HttpsListener",
            load_balancer_arn=self.balancer.arn,
            port=HTTPS_PORT,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=validation.certificate_arn,
            default_action=[
                LbListenerDefaultAction(
                    type="authenticate-cognito",
                    order=1,
                    authenticate_cognito=LbListenerDefaultActionAuthenticateCognito(
                        user_pool_arn=self.user_pool.arn,
                        user_pool_client_id=self.client.id,
                        user_pool_domain=self.domain.domain,
                        scope="openid email",
                        on_unauthenticated_request="authenticate",
                        session_timeout=session_hours * 3600,
                    ),
                ),
                LbListenerDefaultAction(type="forward", order=2, target_group_arn=self.target_group.arn),
            ],
        )
        LbListener(
            self,
            "HttpListener",
            load_balancer_arn=self.balancer.arn,
            port=HTTP_PORT,
            protocol="HTTP",
            default_action=[
                LbListenerDefaultAction(
                    type="redirect",
                    redirect=LbListenerDefaultActionRedirect(protocol="HTTPS", port="443", status_code="HTTP_301"),
                )
            ],
        )
        Route53Record(
            self,
            "Alias",
            zone_id=hosted_zone_id,
            name=domain_name,
            type="A",
            alias=Route53RecordAlias(
                name=self.balancer.dns_name, zone_id=self.balancer.zone_id, evaluate_target_health=True
            ),
        )

    def admit(self, hosts: HasConnections, *, instance_id: str | None = None) -> None:
        """Let the balancer reach the hosts' HTTPS (and their health port, with several hosts): the
        hosts' only way in for the web with ``login = "cognito"``. ``instance_id`` registers the one
        host (``hosts = 1``); an Auto Scaling group registers its own (``target_group_arn``)."""
        self.connections.allow_to(hosts.connections, HTTPS_PORT)
        if self.health_port:
            self.connections.allow_to(hosts.connections, self.health_port)
        if instance_id:
            LbTargetGroupAttachment(
                self, "Target", target_group_arn=self.target_group.arn, target_id=instance_id, port=HTTPS_PORT
            )
