"""The front door (``login = "cognito"``), read from the synthesized JSON as a specification: a login
with MFA that nobody can sign up to, a trusted certificate with a TLS 1.3 policy, HTTP only as a
redirect, hosts reached from the balancer only, one invited user per person in their role's group,
and Basic mode left as it was (docs/host.md, "The front door")."""

from __future__ import annotations

from typing import Any

import pytest

from orthweb.front_door import MIN_PASSWORD_LENGTH, TLS_POLICY
from orthweb.settings import Settings, SettingsError
from orthweb_dev.synth import COGNITO_SETTINGS, only, ref, resources

Synth = dict[str, Any]
FRONT_DOOR_TYPES = (
    "aws_cognito_user_pool",
    "aws_cognito_user_pool_client",
    "aws_cognito_user_pool_domain",
    "aws_cognito_user",
    "aws_cognito_user_group",
    "aws_cognito_user_in_group",
    "aws_acm_certificate",
    "aws_acm_certificate_validation",
    "aws_lb",
    "aws_lb_listener",
    "aws_lb_target_group",
    "aws_lb_target_group_attachment",
    "aws_route53_record",
)
WEB_USERS: dict[str, str] = COGNITO_SETTINGS["web_users"]


def _name(synth: Synth, type_: str) -> str:
    (name,) = resources(synth, type_)
    return name


def _listener(synth: Synth, port: int) -> dict[str, Any]:
    (found,) = [x for x in resources(synth, "aws_lb_listener").values() if x["port"] == port]
    return found


def _sg_ref(synth: Synth, name_tag: str) -> str:
    (name,) = [n for n, g in resources(synth, "aws_security_group").items() if g["tags"]["Name"] == name_tag]
    return ref("aws_security_group", name, "id")


def _ingress(synth: Synth, name_tag: str) -> list[dict[str, Any]]:
    group = _sg_ref(synth, name_tag)
    return [
        r for r in resources(synth, "aws_vpc_security_group_ingress_rule").values() if r["security_group_id"] == group
    ]


# --- the login ------------------------------------------------------------------------------------


def test_the_user_pool_requires_totp_mfa_and_offers_no_sms(cognito: Synth) -> None:
    pool = only(cognito, "aws_cognito_user_pool")
    assert pool["mfa_configuration"] == "ON"
    assert pool["software_token_mfa_configuration"] == {"enabled": True}
    assert "sms_configuration" not in pool
    assert "email_mfa_configuration" not in pool


def test_passwords_are_long_and_use_every_character_class(cognito: Synth) -> None:
    policy = only(cognito, "aws_cognito_user_pool")["password_policy"]
    assert policy["minimum_length"] >= 12
    assert policy["minimum_length"] == MIN_PASSWORD_LENGTH
    assert all(policy[f"require_{c}"] for c in ("lowercase", "uppercase", "numbers", "symbols"))


def test_nobody_signs_up_and_recovery_is_by_verified_email_only(cognito: Synth) -> None:
    pool = only(cognito, "aws_cognito_user_pool")
    assert pool["admin_create_user_config"]["allow_admin_create_user_only"] is True
    assert pool["account_recovery_setting"]["recovery_mechanism"] == [{"name": "verified_email", "priority": 1}]


def test_deletion_protection_follows_the_setting(cognito: Synth) -> None:
    assert only(cognito, "aws_cognito_user_pool")["deletion_protection"] == "ACTIVE"
    assert only(cognito, "aws_lb")["enable_deletion_protection"] is True


def test_the_app_client_has_a_secret_uses_the_code_flow_and_hides_who_exists(cognito: Synth) -> None:
    client = only(cognito, "aws_cognito_user_pool_client")
    assert client["generate_secret"] is True
    assert client["allowed_oauth_flows"] == ["code"]
    assert client["allowed_oauth_flows_user_pool_client"] is True
    assert client["allowed_oauth_scopes"] == ["openid", "email"]
    assert client["callback_urls"] == ["https://pacs.example.org/oauth2/idpresponse"]
    assert client["logout_urls"] == ["https://pacs.example.org/"]  # the site: its login page again
    assert client["prevent_user_existence_errors"] == "ENABLED"
    assert client["explicit_auth_flows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]


def test_no_token_outlives_the_session(cognito: Synth) -> None:
    hours = Settings(**COGNITO_SETTINGS).session_hours
    client = only(cognito, "aws_cognito_user_pool_client")
    assert client["token_validity_units"] == [{"id_token": "hours", "access_token": "hours", "refresh_token": "hours"}]
    assert client["id_token_validity"] == client["access_token_validity"] == client["refresh_token_validity"] == hours
    action = _listener(cognito, 443)["default_action"][0]
    assert action["authenticate_cognito"]["session_timeout"] == hours * 3600 <= 12 * 3600


def test_three_groups_and_each_person_is_an_invited_user_in_their_roles_group(cognito: Synth) -> None:
    groups = {g["name"]: n for n, g in resources(cognito, "aws_cognito_user_group").items()}
    assert sorted(groups) == ["admin", "uploader", "viewer"]
    users = list(resources(cognito, "aws_cognito_user").values())
    assert sorted(u["username"] for u in users) == sorted(WEB_USERS)
    for user in users:
        assert user["attributes"] == {"email": user["username"], "email_verified": "true"}
        assert user["desired_delivery_mediums"] == ["EMAIL"]
        assert "message_action" not in user  # Cognito sends the invitation
    members = {
        m["username"].split(".")[1]: m["group_name"] for m in resources(cognito, "aws_cognito_user_in_group").values()
    }
    user_names = {n: u["username"] for n, u in resources(cognito, "aws_cognito_user").items()}
    assert {user_names[n]: g for n, g in members.items()} == {
        email: ref("aws_cognito_user_group", groups[role], "name") for email, role in WEB_USERS.items()
    }


def test_no_password_passes_through_terraform(cognito: Synth) -> None:
    for user in resources(cognito, "aws_cognito_user").values():
        assert not {"password", "temporary_password"} & set(user)


def test_users_are_named_by_email_so_reordering_replaces_nobody(cognito: Synth) -> None:
    paths = {u["//"]["metadata"]["path"] for u in resources(cognito, "aws_cognito_user").values()}
    assert paths == {f"orthweb/FrontDoor/User_{email}" for email in WEB_USERS}


# --- the balancer ---------------------------------------------------------------------------------


def test_the_balancer_is_internet_facing_in_the_public_subnets_and_drops_invalid_headers(cognito: Synth) -> None:
    lb = only(cognito, "aws_lb")
    assert (lb["load_balancer_type"], lb["internal"]) == ("application", False)
    assert lb["drop_invalid_header_fields"] is True
    public = {
        ref("aws_subnet", n, "id") for n, s in resources(cognito, "aws_subnet").items() if s["tags"]["Tier"] == "public"
    }
    assert set(lb["subnets"]) == public


def test_https_uses_a_tls13_policy_and_the_dns_validated_certificate(cognito: Synth) -> None:
    listener = _listener(cognito, 443)
    assert listener["protocol"] == "HTTPS"
    assert listener["ssl_policy"] == TLS_POLICY
    assert TLS_POLICY.startswith("ELBSecurityPolicy-TLS13-")
    validation = _name(cognito, "aws_acm_certificate_validation")
    assert listener["certificate_arn"] == ref("aws_acm_certificate_validation", validation, "certificate_arn")
    cert = only(cognito, "aws_acm_certificate")
    assert (cert["domain_name"], cert["validation_method"]) == ("pacs.example.org", "DNS")


def test_the_certificate_is_validated_by_a_record_in_the_zone(cognito: Synth) -> None:
    cert = f"aws_acm_certificate.{_name(cognito, 'aws_acm_certificate')}.domain_validation_options"
    (record_name,) = [n for n, r in resources(cognito, "aws_route53_record").items() if cert in r["name"]]
    record = resources(cognito, "aws_route53_record")[record_name]
    assert record["zone_id"] == COGNITO_SETTINGS["hosted_zone_id"]
    validation = only(cognito, "aws_acm_certificate_validation")
    assert validation["validation_record_fqdns"] == [ref("aws_route53_record", record_name, "fqdn")]


def test_every_request_is_authenticated_with_cognito_before_it_is_forwarded(cognito: Synth) -> None:
    authenticate, forward = sorted(_listener(cognito, 443)["default_action"], key=lambda a: a["order"])
    assert authenticate["type"] == "authenticate-cognito"
    settings = authenticate["authenticate_cognito"]
    assert settings["on_unauthenticated_request"] == "authenticate"
    assert settings["scope"] == "openid email"
    assert settings["user_pool_arn"] == ref("aws_cognito_user_pool", _name(cognito, "aws_cognito_user_pool"), "arn")
    assert forward["type"] == "forward"
    assert forward["target_group_arn"] == ref("aws_lb_target_group", _name(cognito, "aws_lb_target_group"), "arn")


def test_http_only_redirects_to_https(cognito: Synth) -> None:
    listener = _listener(cognito, 80)
    (action,) = listener["default_action"]
    assert action["type"] == "redirect"
    assert action["redirect"] == {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}


def test_the_hosts_are_reached_over_https_with_a_health_check(cognito: Synth) -> None:
    group = only(cognito, "aws_lb_target_group")
    assert (group["port"], group["protocol"]) == (443, "HTTPS")
    assert group["health_check"]["enabled"] is True
    attachment = only(cognito, "aws_lb_target_group_attachment")
    assert attachment["target_id"].startswith("${aws_instance.orthweb.")


def test_the_site_name_is_an_alias_of_the_balancer(cognito: Synth) -> None:
    (alias,) = [r for r in resources(cognito, "aws_route53_record").values() if "alias" in r]
    assert (alias["name"], alias["type"], alias["zone_id"]) == (
        "pacs.example.org",
        "A",
        COGNITO_SETTINGS["hosted_zone_id"],
    )
    assert alias["alias"]["name"] == ref("aws_lb", _name(cognito, "aws_lb"), "dns_name")


# --- who may talk to whom -------------------------------------------------------------------------


def test_the_hosts_443_is_open_to_the_balancer_only_and_dicom_keeps_its_own_path(cognito: Synth) -> None:
    host = _ingress(cognito, "orthweb-host")
    web = [r for r in host if r["from_port"] == 443]
    assert [(r.get("cidr_ipv4"), r["referenced_security_group_id"]) for r in web] == [
        (None, _sg_ref(cognito, "orthweb-alb"))
    ]
    assert [(r["from_port"], r["cidr_ipv4"]) for r in host if r["from_port"] == 11112] == [(11112, "203.0.113.0/24")]


def test_the_balancer_admits_443_and_80_from_the_web_networks(cognito: Synth) -> None:
    rules = sorted((r["from_port"], r["cidr_ipv4"]) for r in _ingress(cognito, "orthweb-alb"))
    assert rules == [(80, "0.0.0.0/0"), (443, "0.0.0.0/0")]


def test_several_hosts_take_the_web_from_the_front_door_and_dicom_from_the_nlb(cognito_scaled: Synth) -> None:
    nlb_listeners = [x for x in resources(cognito_scaled, "aws_lb_listener").values() if x["protocol"] == "TCP"]
    assert [x["port"] for x in nlb_listeners] == [11112]
    group = only(cognito_scaled, "aws_autoscaling_group")
    front = [n for n, g in resources(cognito_scaled, "aws_lb_target_group").items() if g["protocol"] == "HTTPS"]
    assert ref("aws_lb_target_group", front[0], "arn") in group["target_group_arns"]
    assert len(group["target_group_arns"]) == 2
    host = _ingress(cognito_scaled, "orthweb-host")
    alb = _sg_ref(cognito_scaled, "orthweb-alb")
    assert sorted(r["from_port"] for r in host if r["referenced_security_group_id"] == alb) == [443, 8099]
    assert all(r.get("cidr_ipv4") is None for r in host)
    (alias,) = [r for r in resources(cognito_scaled, "aws_route53_record").values() if "alias" in r]
    assert alias["alias"]["name"].startswith("${aws_lb.FrontDoor_")


def test_outputs_give_the_site_and_the_cognito_domain_and_dicom_the_hosts_name(cognito: Synth) -> None:
    outputs = {k: v["value"] for k, v in cognito["output"].items()}
    assert outputs["site_url"] == "https://pacs.example.org"
    assert outputs["cognito_domain"].endswith(".auth.us-east-1.amazoncognito.com")
    assert outputs["dicom_endpoint"] == "ORTHANC@${aws_instance.orthweb.public_dns}:11112"


def test_the_host_role_gets_nothing_new_and_loses_the_admin_secret(synth: Synth, cognito: Synth) -> None:
    def host_grants(s: Synth) -> list[str]:
        return sorted(p["name"] for p in resources(s, "aws_iam_role_policy").values())

    # The people's passwords are Cognito's: the host neither reads nor writes the admin secret.
    assert host_grants(cognito) == [g for g in host_grants(synth) if g != "read-write-orthanc-admin-secret"]
    assert "read-write-orthanc-admin-secret" in host_grants(synth)


# --- Basic mode, and the settings ----------------------------------------------------------------


def test_basic_mode_has_no_front_door(synth: Synth) -> None:
    for type_ in FRONT_DOOR_TYPES:
        assert not resources(synth, type_), type_


def test_basic_mode_user_data_gains_only_the_login_line(synth: Synth, cognito: Synth) -> None:
    basic = only_local(synth)
    assert "ORTHWEB_LOGIN=basic\n" in basic
    assert "ORTHWEB_ALB_ARN" not in basic
    assert "ORTHWEB_COGNITO_DOMAIN" not in basic
    front = only_local(cognito)

    def of(type_: str, attribute: str) -> str:
        return ref(type_, _name(cognito, type_), attribute)

    for line in (
        "ORTHWEB_LOGIN=cognito",
        f"ORTHWEB_ALB_ARN={of('aws_lb', 'arn')}",
        f"ORTHWEB_USER_POOL_ID={of('aws_cognito_user_pool', 'id')}",
        f"ORTHWEB_USER_POOL_CLIENT_ID={of('aws_cognito_user_pool_client', 'id')}",
        f"ORTHWEB_COGNITO_DOMAIN={of('aws_cognito_user_pool_domain', 'domain')}.auth.us-east-1.amazoncognito.com",
        "ORTHWEB_SITE_URL=https://pacs.example.org",
    ):
        assert f"      {line}\n" in front, line


def only_local(synth: Synth) -> str:
    (text,) = [v for k, v in synth["locals"].items() if k.startswith("Host_UserData")]
    return str(text)


_COGNITO = {"login": "cognito", "domain_name": "pacs.example.org", "hosted_zone_id": "Z0123ABC"}
_PEOPLE = {"web_users": {"ann@example.org": "admin"}}


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"login": "cognito", **_PEOPLE}, ["login", "'cognito'", "domain_name", "hosted_zone_id", "set both"]),
        ({**_COGNITO, "hosted_zone_id": None, **_PEOPLE}, ["domain_name", "hosted_zone_id", "set both"]),
        ({"login": "saml"}, ["login", "'saml'", "basic or cognito"]),
        ({**_COGNITO}, ["web_users", "'admin'", "e-mail address", "invitation"]),
        ({**_COGNITO, "web_users": {"ann@example": "admin"}}, ["web_users", "'ann@example'", "e-mail"]),
        ({**_COGNITO, "web_users": {"Ann@Example.org": "admin"}}, ["web_users", "lower-case e-mail"]),
        ({**_COGNITO, "web_users": {"ann@example.org": "viewer"}}, ["web_users", "no user has the admin role"]),
        ({**_COGNITO, **_PEOPLE, "session_hours": 13}, ["session_hours", "13", "from 1 to 12"]),
        ({**_COGNITO, **_PEOPLE, "session_hours": 0}, ["session_hours", "from 1 to 12"]),
        ({**_COGNITO, **_PEOPLE, "https": False, "web_cidrs": ["10.0.0.0/8"]}, ["https", "cognito", "https true"]),
        ({**_COGNITO, **_PEOPLE, "name_prefix": "amazon-pacs"}, ["name_prefix", "'amazon'", "Cognito"]),
        (
            {"web_users": {"admin": "admin", "ann@example.org": "viewer"}},
            ["web_users", "'ann@example.org'", "user name"],
        ),
    ],
    ids=lambda v: "" if isinstance(v, dict) else None,
)
def test_cognito_mistakes_are_refused_with_one_message_naming_the_fix(values: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(SettingsError) as err:
        Settings(**values)
    message = str(err.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "\n" not in message


def test_one_host_with_cognito_takes_a_domain_name() -> None:
    settings = Settings(**_COGNITO, **_PEOPLE)
    assert settings.cognito
    assert settings.hosts == 1
    assert settings.session_hours <= 12
