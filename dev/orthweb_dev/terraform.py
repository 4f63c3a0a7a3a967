"""Terraform offline: the provider filesystem mirror and the CLI configuration that uses it.

There is no route to the Terraform registry on the machines this project is built on, so
``hashicorp/aws`` 5.100.0 comes from a filesystem mirror named by ``TF_PROVIDER_MIRROR``.
"""

from __future__ import annotations

import os
from pathlib import Path

MIRROR_ENV = "TF_PROVIDER_MIRROR"
DEFAULT_MIRROR = "/opt/tf-plugins"
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws/5.100.0"


class MirrorMissing(RuntimeError):
    """The provider mirror is not where ``TF_PROVIDER_MIRROR`` says; the message says how to fix it."""


def provider_mirror(environ: dict[str, str] | None = None) -> Path:
    """The filesystem mirror holding hashicorp/aws 5.100.0."""
    value = (os.environ if environ is None else environ).get(MIRROR_ENV) or DEFAULT_MIRROR
    path = Path(value)
    if not (path / AWS_PROVIDER).is_dir():
        raise MirrorMissing(
            f"{MIRROR_ENV}={value} holds no {AWS_PROVIDER}: point {MIRROR_ENV} at a Terraform filesystem "
            "mirror with that provider (`terraform providers mirror` on a connected machine makes one)"
        )
    return path


def cli_config(mirror: Path) -> str:
    """A Terraform CLI configuration that installs hashicorp providers from ``mirror`` only."""
    return (
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["registry.terraform.io/hashicorp/*"]\n  }}\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n'
        "}\n"
    )


def write_cli_config(path: Path, mirror: Path | None = None) -> Path:
    """Write :func:`cli_config` to ``path`` (for ``TF_CLI_CONFIG_FILE``) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cli_config(mirror or provider_mirror()))
    return path
