"""The rendered Content-Security-Policy (userdata/app/nginx-csp.conf): nginx adds it to every answer
of the web server, its own errors too; the policy each location gets is computed here from the
rendered maps, as nginx computes it: strict everywhere, and each UI's location loosened only by
what that UI's own files need (docs/host.md, "Content-Security-Policy"). tests/test_app_csp.py
proves it through the real nginx, with the UIs the stand-in runs working under it."""

from __future__ import annotations

import re

import pytest

from orthweb.bootstrap import render_app
from orthweb.settings import Settings
from orthweb_dev import PROJECT_DIR

SETTINGS = {
    "basic": Settings(viewers=["stone", "ohif"]),
    "cognito": Settings(
        login="cognito",
        domain_name="pacs.example.org",
        hosted_zone_id="Z0123456789ABCDEFGHIJ",
        web_users={"ann@example.org": "admin"},
    ),
    "plain-http": Settings(https=False, web_cidrs=["10.0.0.0/8"], patch_schedule="off"),
}
STRICT = {
    "default-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "worker-src": ["'self'"],
    "media-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def nginx_maps(conf: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """The http level's maps: variable -> (source, [(key, value), ...]) in the file's order."""
    maps: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for m in re.finditer(r"^\s*map (\S+|\"[^\"]*\") \$(\w+) \{\n(?P<body>.*?)^\s*\}", conf, re.M | re.S):
        entries = []
        for raw in m["body"].splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or line.startswith("include "):
                continue
            e = re.fullmatch(r'("(?:[^"\\]|\\.)*"|\S+)\s+("(?:[^"\\]|\\.)*"|\S+);', line)
            assert e, f"map ${m[2]}: unexpected line {line!r}"
            entries.append((e[1].strip('"'), e[2].strip('"')))
        maps[m[2]] = (m[1].strip('"'), entries)
    return maps


def value(maps: dict[str, tuple[str, list[tuple[str, str]]]], name: str, request: dict[str, str]) -> str:
    """``$name`` for a request, as nginx's map module computes it: the source's variables filled
    in, an exact key first, then the first matching regular expression, else the default; the
    value's own variables filled in the same way."""
    if name not in maps:
        return request[name]

    def fill(text: str) -> str:
        return re.sub(r"\$(\w+)", lambda v: value(maps, v[1], request), text)

    source, entries = maps[name]
    subject = fill(source)
    exact = {k: v for k, v in entries if not k.startswith("~") and k != "default"}
    if subject in exact:
        return fill(exact[subject])
    for key, val in entries:
        if key.startswith("~") and re.search(key[1:].lstrip("*"), subject):
            return fill(val)
    return fill(dict(entries).get("default", ""))


Policy = dict[str, list[str]]


def policy_for(uri: str, content_type: str = "application/json", settings: Settings = SETTINGS["basic"]) -> Policy:
    conf = render_app(settings)["nginx.conf"]
    header = value(nginx_maps(conf), "orthweb_csp", {"uri": uri, "sent_http_content_type": content_type})
    directives = [d.split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


def web_server(conf: str) -> str:
    """The web server block (the one listening on 443 or 80), up to its closing brace."""
    start = conf.index("server {", conf.index("http {"))
    depth = 0
    for end in range(conf.index("{", start), len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[end], 0)
        if depth == 0:
            return conf[start : end + 1]
    raise AssertionError("unbalanced server block")


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_answer_of_the_web_server_carries_the_policy(name: str) -> None:
    server = web_server(render_app(SETTINGS[name])["nginx.conf"])
    assert re.search(r"listen (443 ssl|80);", server)
    # At server level, with "always": nginx's own answers (401, 403, 404, 429, 5xx, redirects) too.
    assert "\n    add_header Content-Security-Policy $orthweb_csp always;" in server
    # A location with an add_header of its own would drop the server's, the policy with them.
    locations = list(re.finditer(r"\n    location [^{]*\{(?P<body>[^{}]*(\{[^{}]*\}[^{}]*)*)\}", server))
    assert any("proxy_pass http://127.0.0.1:8042;" in loc["body"] for loc in locations)
    for location in locations:
        assert "add_header" not in location["body"], location[0]


@pytest.mark.parametrize(
    "uri",
    ["/system", "/studies", "/dicom-web/studies", "/instances/x/file", "/", "/app", "/tools/find", "/unknown"],
)
def test_the_rest_of_the_site_gets_the_strict_policy(uri: str) -> None:
    assert policy_for(uri) == {**STRICT, "script-src": ["'self'"]}


# What each UI's location adds to the strict policy, and why (userdata/app/nginx-csp.conf).
INLINE_STYLES = ["'self'", "'unsafe-inline'"]
LOOSENED = {
    "/app/explorer.html": {
        "script-src": ["'self'", "'unsafe-hashes'", "'sha256-Sii8hGRfSHoJ5vCqzknXRD7Kn5fF/c8F8MpnZ8aUqFc='"],
        "style-src": INLINE_STYLES,
    },
    "/web-viewer/app/viewer.html": {
        "script-src": ["'self'", "'unsafe-hashes'", "'sha256-GZIcz60Uwd6wT3vaYke/atSr53TehbYAPepOa3d03Vw='",
                       "'sha256-2rvfFrggTCtyF5WOiTri1gDS8Boibj4Njn0e+VCBmDI='"],
        "style-src": INLINE_STYLES,
    },
    "/ui/app/": {
        "script-src": ["'self'", "'sha256-xKgckNVwc6AO1gT+zZxL6sK2F/xJIjTtabhTx/OXLs8='"],
        "style-src": INLINE_STYLES,
        "img-src": ["'self'", "data:"],
    },
    "/stone-webviewer/index.html": {
        "script-src": ["'self'", "'unsafe-eval'", "'wasm-unsafe-eval'"],
        "style-src": INLINE_STYLES,
        "img-src": ["'self'", "data:"],
        "media-src": ["'self'", "blob:"],
    },
    "/ohif/viewer": {
        "script-src": ["'self'", "'unsafe-eval'", "'wasm-unsafe-eval'",
                       "'sha256-7FPsgzUwkC2FPvHx6kB+1Kp+1RVYqBiExt00s6hrUpo='",
                       "'sha256-T+/82zKIzJFczKc/S0kz3DWWueUG9QJhEMyuUFo4mRg='",
                       "'sha256-LQky2ODs0ahwxsKy+0A2z7qbOLm0hq87tl7cwOtkuBA='",
                       "'sha256-aLRLxFFDQRqAPY2rHVpQz7mmL61i8ZAqM96J8oH/kH4='"],
        "style-src": INLINE_STYLES,
        "img-src": ["'self'", "data:"],
        "object-src": ["'self'", "blob:"],
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize("uri", sorted(LOOSENED))
def test_each_ui_is_loosened_only_by_what_its_files_need(name: str, uri: str) -> None:
    assert policy_for(uri, settings=SETTINGS[name]) == {**STRICT, "script-src": ["'self'"], **LOOSENED[uri]}
    # The same for every answer under the UI's location, its errors included.
    assert policy_for(uri + "x", "text/html", SETTINGS[name]) == policy_for(uri, settings=SETTINGS[name])


@pytest.mark.parametrize("uri", sorted(LOOSENED))
def test_no_script_runs_inline_but_by_its_hash_nor_from_a_string_but_in_stone_and_ohif(uri: str) -> None:
    scripts = policy_for(uri)["script-src"]
    assert "'unsafe-inline'" not in scripts
    assert ("'unsafe-eval'" in scripts) == uri.startswith(("/stone-webviewer/", "/ohif/"))
    # 'unsafe-hashes' allows only the inline handlers whose hashes follow it, never any other.
    assert all(s.startswith("'sha256-") or s in ("'self'", "'unsafe-eval'", "'wasm-unsafe-eval'", "'unsafe-hashes'")
               for s in scripts)  # fmt: skip


def test_a_location_only_starts_with_the_uis_prefix() -> None:
    # /application or /apps are not the explorer's /app/; /ohifx not OHIF's /ohif/.
    for uri in ("/application", "/apps/x", "/ohifx/viewer", "/x/app/explorer.html", "/uix/app/"):
        assert policy_for(uri) == {**STRICT, "script-src": ["'self'"]}, uri


def test_a_pdf_answer_may_be_shown_by_the_browsers_viewer_and_nothing_else_is_loosened() -> None:
    pdf = policy_for("/instances/x/pdf", "application/pdf")
    assert pdf == {**STRICT, "script-src": ["'self'"], "object-src": ["'self'"]}
    assert policy_for("/instances/x/file", "application/dicom")["object-src"] == ["'none'"]


def docs_rows() -> dict[str, str]:
    """docs/host.md's Content-Security-Policy table: location -> its "Adds to the strict policy" cell."""
    text = (PROJECT_DIR / "docs" / "host.md").read_text()
    section = text[text.index("### Content-Security-Policy") :]
    section = section[: section.index("\n### ", 1)]
    rows = re.findall(r"^\| `(/[^`]*)` \| [^|]* \| ([^|]*) \|", section, re.M)
    return dict(rows)


def test_the_docs_table_names_each_locations_loosening() -> None:
    rows = docs_rows()
    assert sorted(rows) == sorted("/" + uri.split("/")[1] + "/" for uri in LOOSENED)
    for uri, loosened in LOOSENED.items():
        cell = rows["/" + uri.split("/")[1] + "/"]
        named = set(re.findall(r"`([a-z-]+-src)`", cell))
        assert named == set(loosened), (uri, cell)
        for directive, sources in loosened.items():
            added = [s for s in sources if s not in STRICT.get(directive, ["'self'"]) and not s.startswith("'sha256-")]
            for source in added:
                assert f"`{source}`" in cell, (uri, directive, source)
        hashes = [s for s in loosened["script-src"] if s.startswith("'sha256-")]
        assert ("hash" in cell) == bool(hashes), (uri, cell)
