"""One host behind the front door (``login = "cognito"``), driven with plain `terraform` against the
local AWS emulator: apply (the certificate validated by DNS in a Route 53 zone made for the test, the
user pool, its groups and invited users, the load balancer whose HTTPS listener authenticates with
Cognito), a clean second plan, and a destroy that leaves nothing behind. Tests run in file order and
share one deployment."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from orthweb.front_door import TLS_POLICY
from orthweb_dev.emulator_server import REGION
from orthweb_dev.synth import COGNITO_SETTINGS, synthesize

pytestmark = pytest.mark.lifecycle

DOMAIN = str(COGNITO_SETTINGS["domain_name"])
# A throwaway deployment: nothing may refuse the destroy.
SETTINGS = {**COGNITO_SETTINGS, "deletion_protection": False}


@pytest.fixture(scope="module")
def zone_id(aws: Any) -> str:
    """The Route 53 zone the operator owns (not part of the stack): made in the emulator first."""
    zone = aws("route53").create_hosted_zone(Name=DOMAIN, CallerReference=f"orthweb-{time.time()}")
    return str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, zone_id: str) -> Path:
    return synthesize({**SETTINGS, "hosted_zone_id": zone_id}, tmp_path_factory.mktemp("lifecycle-cognito"))[1]


@pytest.fixture(scope="module")
def tf(workdir: Path, timed_terraform: Any) -> Any:
    return timed_terraform(workdir, "{step} (one host, login=cognito)", timeout=1200)


def test_1_apply_puts_the_login_and_the_certificate_in_front_of_the_host(tf: Any, aws: Any) -> None:
    tf("apply", "-auto-approve", "-input=false")
    outputs = {k: v["value"] for k, v in json.loads(tf("output", "-json").stdout).items()}
    assert outputs["web_url"] == f"https://{DOMAIN}/"
    assert outputs["site_url"] == f"https://{DOMAIN}"
    assert outputs["cognito_domain"] == f"orthweb-123456789012.auth.{REGION}.amazoncognito.com"
    assert outputs["dicom_endpoint"] == f"ORTHANC@{outputs['host_public_dns']}:11112"

    (lb,) = aws("elbv2").describe_load_balancers(Names=["orthweb-alb"])["LoadBalancers"]
    assert lb["Type"] == "application"  # moto's DescribeLoadBalancers leaves out Scheme
    listeners = {
        x["Port"]: x for x in aws("elbv2").describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }
    assert listeners[443]["SslPolicy"] == TLS_POLICY
    actions = sorted(listeners[443]["DefaultActions"], key=lambda a: a["Order"])
    assert [a["Type"] for a in actions] == ["authenticate-cognito", "forward"]
    assert listeners[80]["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"

    (cert,) = aws("acm").list_certificates()["CertificateSummaryList"]
    assert (cert["DomainName"], cert["Status"]) == (DOMAIN, "ISSUED")

    idp = aws("cognito-idp")
    (pool,) = idp.list_user_pools(MaxResults=10)["UserPools"]
    assert idp.get_user_pool_mfa_config(UserPoolId=pool["Id"])["MfaConfiguration"] == "ON"
    users = {u["Username"] for u in idp.list_users(UserPoolId=pool["Id"])["Users"]}
    assert users == set(SETTINGS["web_users"])
    for email, role in SETTINGS["web_users"].items():
        groups = idp.admin_list_groups_for_user(UserPoolId=pool["Id"], Username=email)["Groups"]
        assert [g["GroupName"] for g in groups] == [role]


def test_2_second_plan_shows_no_changes(tf: Any) -> None:
    proc = tf("plan", "-detailed-exitcode", "-input=false", check=False)
    assert proc.returncode == 0, proc.stdout[-6000:]


def test_3_destroy_leaves_no_load_balancer_pool_or_certificate(tf: Any, aws: Any) -> None:
    tf("destroy", "-auto-approve", "-input=false")
    assert aws("elbv2").describe_load_balancers()["LoadBalancers"] == []
    assert aws("cognito-idp").list_user_pools(MaxResults=10)["UserPools"] == []
    assert aws("acm").list_certificates()["CertificateSummaryList"] == []
