"""Small readers over the synthesized Terraform JSON, so tests say what they mean."""

from __future__ import annotations

import json
from typing import Any

Synth = dict[str, Any]


def resources(synth: Synth, type_: str) -> dict[str, dict[str, Any]]:
    """All resources of one Terraform type, by logical name."""
    return dict(synth.get("resource", {}).get(type_, {}))


def only(synth: Synth, type_: str) -> dict[str, Any]:
    """The single resource of ``type_``; fails if there is not exactly one."""
    found = resources(synth, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.values()))


def data(synth: Synth, type_: str) -> dict[str, dict[str, Any]]:
    return dict(synth.get("data", {}).get(type_, {}))


def by_tag_name(synth: Synth, type_: str, name_suffix: str) -> dict[str, Any]:
    """The resource of ``type_`` whose Name tag ends with ``name_suffix``."""
    matches = [r for r in resources(synth, type_).values() if r.get("tags", {}).get("Name", "").endswith(name_suffix)]
    assert len(matches) == 1, f"expected one {type_} named *{name_suffix}, found {len(matches)}"
    return matches[0]


def policy(text: str) -> dict[str, Any]:
    """Parse an inline IAM policy document (Terraform references stay as strings)."""
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def ref(resource_type: str, name: str, attribute: str) -> str:
    """The interpolation string Terraform uses to reference another resource's attribute."""
    return f"${{{resource_type}.{name}.{attribute}}}"


def name_of(synth: Synth, type_: str, predicate: Any = None) -> str:
    """Logical name of the single resource of ``type_`` (matching ``predicate`` if given)."""
    names = [n for n, r in resources(synth, type_).items() if predicate is None or predicate(r)]
    assert len(names) == 1, f"expected one {type_}, found {names}"
    return names[0]
