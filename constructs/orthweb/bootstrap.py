"""Renders the files in ``userdata/`` into the host's cloud-init user data.

Templates are real files (cloud-config, shell, compose, nginx, Orthanc JSON). Python only fills
``{{ name }}`` values and replaces a line holding just ``{{ include path }}`` with that file,
indented like the line, so scripts stay files that shellcheck and friends can read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from orthweb.settings import Settings

USERDATA_DIR = Path(__file__).resolve().parents[2] / "userdata"
CLOUD_CONFIG = "cloud-config.yaml"
# EC2 refuses user data above 16 KiB (before base64).
USER_DATA_LIMIT = 16 * 1024

_VALUE_RE = re.compile(r"\{\{ ([a-z_]+) \}\}")
_INCLUDE_RE = re.compile(r"^(?P<indent>[ \t]*)\{\{ include (?P<path>[\w./-]+) \}\}[ \t]*$", re.MULTILINE)


class TemplateError(RuntimeError):
    """A template names a value or file the renderer does not have (a bug, not a user error)."""


@dataclass(frozen=True, kw_only=True)
class HostFacts:
    """Deployment facts the host needs at boot. In the stack these are Terraform references."""

    region: str
    db_address: str
    db_port: str
    db_name: str
    db_secret_arn: str
    admin_secret_arn: str


def template_values(settings: Settings, facts: HostFacts) -> dict[str, str]:
    """Every ``{{ name }}`` a template may use, as text."""
    return {
        "name_prefix": settings.name_prefix,
        "region": facts.region,
        "db_address": facts.db_address,
        "db_port": facts.db_port,
        "db_name": facts.db_name,
        "db_secret_arn": facts.db_secret_arn,
        "admin_secret_arn": facts.admin_secret_arn,
        "vpc_cidr": settings.vpc_cidr,
        "orthanc_aet": settings.orthanc_aet,
        "site_name": settings.site_name or "",
        "orthanc_image": settings.orthanc_image,
        "nginx_image": settings.nginx_image,
        "https": json.dumps(settings.https),
        "plain_dicom_in_vpc": json.dumps(settings.plain_dicom_in_vpc),
        "dicom_client_ca": "true" if settings.dicom_client_ca else "false",
    }


def render_text(text: str, values: Mapping[str, str], *, base: Path = USERDATA_DIR, _depth: int = 0) -> str:
    """Fill includes (recursively, indented) and values in ``text``."""
    if _depth > 4:
        raise TemplateError("includes nest deeper than 4 levels")

    def include(m: re.Match[str]) -> str:
        path = base / m["path"]
        if not path.is_file():
            raise TemplateError(f"template includes missing file userdata/{m['path']}")
        body = render_text(path.read_text(), values, base=base, _depth=_depth + 1)
        return "\n".join(m["indent"] + line if line else "" for line in body.rstrip("\n").split("\n"))

    text = _INCLUDE_RE.sub(include, text)

    def value(m: re.Match[str]) -> str:
        if m[1] not in values:
            raise TemplateError(f"template uses unknown value {{{{ {m[1]} }}}}")
        return values[m[1]]

    return _VALUE_RE.sub(value, text)


def render_file(name: str, values: Mapping[str, str]) -> str:
    """Render ``userdata/<name>``."""
    return render_text((USERDATA_DIR / name).read_text(), values)


def terraform_escape(text: str) -> str:
    """Make literal text safe inside a Terraform string: ``${`` and ``%{`` start templates there."""
    return text.replace("${", "$${").replace("%{", "%%{")


def render_user_data(settings: Settings, facts: HostFacts, *, for_terraform: bool = False) -> str:
    """The host's cloud-config, with every script and configuration file it writes.

    With ``for_terraform`` the facts may be Terraform references: the files are escaped so shell
    ``${VAR}`` stays literal, and only the facts are left for Terraform to fill at apply time.
    """
    values = template_values(settings, facts)
    if not for_terraform:
        return render_file(CLOUD_CONFIG, values)
    fact_names = [f.name for f in fields(HostFacts)]
    marked = {**values, **{name: f"\x00{name}\x00" for name in fact_names}}
    text = terraform_escape(render_file(CLOUD_CONFIG, marked))
    for name in fact_names:
        text = text.replace(f"\x00{name}\x00", values[name])
    return text


def user_data_size(user_data: str) -> int:
    """Size in bytes of the user data as EC2 receives it (before base64)."""
    return len(user_data.encode())
