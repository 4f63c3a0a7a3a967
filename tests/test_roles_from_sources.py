"""The rendered roles filter against the calls the image's UIs make (orthweb_dev.roles_table),
run in a real Lua 5.3 interpreter as Orthanc runs it.

How Orthanc calls it (Orthanc's OrthancServer/Sources/main.cpp, MyIncomingHttpRequestFilter, the
same in 1.10.1 and in the 1.12 sources read; the Orthanc Book, "Filtering incoming REST requests"):
``IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)`` with method one of GET, PUT,
POST, DELETE (HEAD and WebDAV's reads arrive as GET), uri the decoded path without the query string,
the headers as a table, and no body; the answer must be a boolean (anything else is an error that
refuses the request). The harness below does exactly that, and checks the answer is a boolean."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from orthweb.bootstrap import render_app
from orthweb.defaults import ORTHANC_IMAGE
from orthweb.settings import MONITOR_IDENTITY, Settings
from orthweb_dev.images import IMAGE_DIFFERENCES
from orthweb_dev.roles_table import CALLS, MONITOR_REFUSED, REVIEWED, ROLES, Call
from orthweb_dev.testing import require

ROOT = Path(__file__).resolve().parent.parent
# One user of each role, named after it; and a logged-in name that is no configured user.
USERS = {role: role for role in ROLES}

# Reads "METHOD<TAB>URI<TAB>USER" lines, calls the filter as Orthanc does, prints the answer's type and value.
HARNESS = """
dofile(arg[1])
for line in io.lines(arg[2]) do
  local method, uri, user = line:match("^(%u+)\\t([^\\t]*)\\t(.*)$")
  local headers = { ["authorization"] = "Basic eA==", ["host"] = "orthweb.example.org" }
  local answer = IncomingHttpRequestFilter(method, uri, "172.18.0.3", user, headers)
  print(type(answer) .. " " .. tostring(answer))
end
"""


def run_filter(tmp_path: Path, requests: list[tuple[str, str, str]], settings: Settings | None = None) -> list[str]:
    """The filter's answers ("boolean true" / "boolean false") for (method, uri, user) requests."""
    lua = require("lua5.3", "lua5.3")
    rendered = render_app(settings or Settings(web_users=USERS))["orthanc-roles.lua"]
    (tmp_path / "orthanc-roles.lua").write_text(rendered)
    (tmp_path / "harness.lua").write_text(HARNESS)
    (tmp_path / "requests.tsv").write_text("".join(f"{m}\t{u}\t{user}\n" for m, u, user in requests))
    out = subprocess.run(
        [lua, str(tmp_path / "harness.lua"), str(tmp_path / "orthanc-roles.lua"), str(tmp_path / "requests.tsv")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert len(out) == len(requests)
    return out


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[Call, str], str]:
    """Every row of the table, asked once per role, in one interpreter run."""
    asks = [(call, role) for call in CALLS for role in ROLES]
    out = run_filter(tmp_path_factory.mktemp("roles"), [(c.method, c.path, role) for c, role in asks])
    return dict(zip(asks, out, strict=True))


@pytest.mark.parametrize("call", CALLS, ids=[f"{c.ui} {c.method} {c.path}" for c in CALLS])
def test_each_ui_call_is_allowed_exactly_to_its_roles(answers: dict[tuple[Call, str], str], call: Call) -> None:
    got = {role: answers[(call, role)] for role in ROLES}
    expected = {role: f"boolean {str(role in call.allowed).lower()}" for role in ROLES}
    assert got == expected, f"{call.ui}, {call.screen}: {call.method} {call.route} ({call.source})"


def test_unknown_users_and_unlisted_routes_are_refused(tmp_path: Path) -> None:
    """Default deny: a name that is no configured user, and routes no row lists, get false."""
    requests = [
        ("GET", "/system", "mallory"),
        ("GET", "/system", ""),
        ("GET", "/no-such-route", "viewer"),
        ("POST", "/tools/execute-script", "uploader"),
        ("POST", "/tools/shutdown", "viewer"),
        ("PUT", "/studies/x/metadata/1024", "uploader"),
    ]
    assert run_filter(tmp_path, requests) == ["boolean false"] * len(requests)


# What the monitoring identity is refused: the neighbours of its one route (GET /changes) and
# every row of the table, the viewers' reads included.
REFUSED_TO_MONITOR = [
    *MONITOR_REFUSED,
    *((c.method, c.path) for c in CALLS if (c.method, c.path) != ("GET", "/changes")),
]


COGNITO = Settings(
    login="cognito",
    domain_name="pacs.example.org",
    hosted_zone_id="Z0123456789ABCDEFGHIJ",
    web_users={"ann@example.org": "admin"},
)


@pytest.mark.parametrize("settings", [Settings(web_users=USERS), COGNITO], ids=["basic", "cognito"])
def test_the_monitoring_identity_may_ask_its_probe_route_and_nothing_else(tmp_path: Path, settings: Settings) -> None:
    asks = [("GET", "/changes"), *REFUSED_TO_MONITOR]
    out = run_filter(tmp_path, [(method, uri, MONITOR_IDENTITY) for method, uri in asks], settings)
    assert out[0] == "boolean true"
    refused = dict(zip(REFUSED_TO_MONITOR, out[1:], strict=True))
    assert refused == dict.fromkeys(REFUSED_TO_MONITOR, "boolean false")


def test_every_role_has_rows_it_is_allowed_and_rows_it_is_refused() -> None:
    for role in ROLES:
        assert any(role in c.allowed for c in CALLS)
        assert role == "admin" or any(role in c.refused for c in CALLS)
    # Writes and deletes never reach non-admins, whatever the row: uploads are POSTs.
    assert all(c.allowed == {"admin"} for c in CALLS if c.method in ("PUT", "DELETE"))


# --- the guard: the table was read from the pinned versions -------------------------------------


def test_the_table_was_reviewed_for_the_pinned_image() -> None:
    """Changing the image (or a plugin version the docs name) fails here until the table is re-read
    from the new versions' sources and orthweb_dev.roles_table.REVIEWED is updated (docs/host.md,
    "Web users and roles")."""
    assert REVIEWED.image == ORTHANC_IMAGE, "orthanc_image changed: re-review orthweb_dev.roles_table"
    host_md = re.sub(r"\s+", " ", (ROOT / "docs/host.md").read_text())
    assert REVIEWED.line().replace("`", "") in host_md.replace("`", ""), (
        "docs/host.md names other image or plugin versions than orthweb_dev.roles_table.REVIEWED"
    )
    plugins = IMAGE_DIFFERENCES["orthanc_plugins"][1]
    for name, version in [
        ("DICOMweb", REVIEWED.dicomweb),
        ("Orthanc Explorer 2", REVIEWED.explorer2),
        ("Stone Web Viewer", REVIEWED.stone),
        ("OHIF", REVIEWED.ohif_plugin),
    ]:
        assert f"{name} {version}" in plugins, f"the stand-in table names another {name} than {version}"
    assert f"{REVIEWED.image}: Debian with Orthanc {REVIEWED.orthanc}" in IMAGE_DIFFERENCES["orthanc_base"][1]
