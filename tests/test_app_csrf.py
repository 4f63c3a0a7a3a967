"""Cross-site requests change nothing, proven through the real nginx in its container: a real browser
(Debian's Chromium) holding a login visits pages on another origin that try a method-override
link, an auto-submitted text/plain form and an auto-submitted multipart upload, and nothing changes; the same
browser's same-origin upload and delete, as the UIs make them, still work; and the rule itself,
request by request, for the headers a browser sends and for clients that send none."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orthweb.settings import Settings
from orthweb_dev import browser
from orthweb_dev.containers import ContainerHost, containers_for_test
from orthweb_dev.dicom import make_instance
from orthweb_dev.proc import free_port, wait_until
from orthweb_dev.testing import INSTALL_HINT, not_run

pytestmark = pytest.mark.app

USERS = {"admin": "admin", "upton": "uploader"}
LISTED = "https://viewer.example.org"  # web_cors_origins: may call DICOMweb from a browser
ELSEWHERE = "https://elsewhere.example.com"


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    missing = browser.missing()
    if missing:
        not_run(f"the cross-site tests need {', '.join(missing)} ({INSTALL_HINT})")
    with containers_for_test(Settings(web_users=USERS, web_cors_origins=[LISTED])) as host:
        yield host


@pytest.fixture(scope="module")
def study(app: ContainerHost) -> dict[str, str]:
    """One stored instance: its Orthanc instance, study and patient IDs."""
    status, body = app.rest("POST", "/instances", make_instance("csrf-target", rows=8, columns=8).data)
    assert status == 200
    answer = json.loads(body)
    return {"instance": answer["ID"], "study": answer["ParentStudy"], "patient": answer["ParentPatient"]}


def counts(app: ContainerHost) -> dict[str, int]:
    """How many patients, studies and instances Orthanc holds."""
    return {kind: len(app.rest_json(f"/{kind}")) for kind in ("patients", "studies", "instances")}


# --- in a real browser ---------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Site:
    """Pages on another origin (http://127.0.0.1:<port>, not the site's https://localhost:<port>),
    served from a directory by a thread of this process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        handler = partial(QuietHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page(self, name: str, html: str) -> str:
        (self.directory / name).write_text(html)
        return f"http://127.0.0.1:{self.server.server_port}/{name}"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    site.thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()


def attack_pages(app: ContainerHost, site: Site, ids: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """name -> (the attacker's page, the method and path it makes the browser request); the delete last."""
    web = app.web_url
    upload = base64.b64encode(make_instance("csrf-upload", rows=8, columns=8).data).decode()
    modify = '{"Replace":{"PatientName":"CSRF^MODIFIED"},"Force":true,"x":"'
    return {
        # A form that posts JSON as text/plain (no CORS preflight), submitted on load.
        "form": (
            site.page("form.html", f'<form id="f" method="POST" enctype="text/plain" '
                      f'action="{web}/studies/{ids["study"]}/modify">'
                      f"<input type=\"hidden\" name='{modify}' value='\"}}'></form>"
                      '<script>document.getElementById("f").submit()</script>'),
            "POST", f"/studies/{ids['study']}/modify",
        ),
        # A multipart form posting a DICOM file, submitted on load (its file put in by a script).
        "upload": (
            site.page("upload.html", '<form id="f" method="POST" enctype="multipart/form-data" '
                      f'action="{web}/instances"><input id="file" type="file" name="file"></form><script>'
                      f'const bytes = Uint8Array.from(atob("{upload}"), c => c.charCodeAt(0));'
                      "const files = new DataTransfer();"
                      'files.items.add(new File([bytes], "x.dcm", {type: "application/dicom"}));'
                      'document.getElementById("file").files = files.files;'
                      'document.getElementById("f").submit();'
                      "</script>"),
            "POST", "/instances",
        ),
        # A link in an e-mail: a top-level navigation, the override in its query.
        "link": (
            site.page("link.html", f'<a id="go" href="{web}/patients/{ids["patient"]}?_method=DELETE">go</a>'
                      '<script>document.getElementById("go").click()</script>'),
            "GET", f"/patients/{ids['patient']}",
        ),
    }  # fmt: skip


def test_pages_on_another_origin_change_nothing_while_the_browser_holds_an_admins_login(
    app: ContainerHost, study: dict[str, str], elsewhere: Site
) -> None:
    before = counts(app)
    tags_before = app.rest_json(f"/studies/{study['study']}")["PatientMainDicomTags"]
    pages = attack_pages(app, elsewhere, study)
    answers = {}
    with browser.chromium(app.server_cert) as driver:
        browser.log_in(driver, app.web_url, "admin", app.passwords["admin"])
        for name, (page, method, path) in pages.items():
            mark = len(app.access_entries())
            driver.get(page)

            def reached(method: str = method, path: str = path, mark: int = mark) -> list[dict[str, Any]]:
                return [e for e in app.access_entries()[mark:] if (e["method"], e["path"]) == (method, path)]

            wait_until(f"the {name} attempt in nginx's log", lambda: bool(reached()), timeout=30)
            (entry,) = reached()
            answers[name] = (entry["status"], entry["user"])
    # Each was refused by nginx, though the browser sent the admin's login with it.
    assert answers == dict.fromkeys(pages, (403, "admin"))
    assert counts(app) == before
    assert app.rest_json(f"/studies/{study['study']}")["PatientMainDicomTags"] == tags_before


def test_the_uis_same_origin_upload_and_delete_still_work(app: ContainerHost) -> None:
    """As the UIs do it: scripts of the site's own pages, with the browser's login."""
    data = base64.b64encode(make_instance("csrf-same-origin", rows=8, columns=8).data).decode()
    upload = (
        "const done = arguments[arguments.length - 1];"
        f'const bytes = Uint8Array.from(atob("{data}"), c => c.charCodeAt(0));'
        'fetch("/instances", {method: "POST", body: bytes})'
        ".then(r => r.json().then(j => done([r.status, j.ID || ''])), e => done([0, String(e)]));"
    )
    with browser.chromium(app.server_cert) as driver:
        browser.log_in(driver, app.web_url, "upton", app.passwords["upton"])  # the uploader role
        driver.get(app.web_url + browser.LEGACY_UI)
        status, instance = driver.execute_async_script(upload)
    assert status == 200
    assert app.rest("GET", f"/instances/{instance}")[0] == 200
    delete = (
        "const done = arguments[arguments.length - 1];"
        f'fetch("/instances/{instance}", {{method: "DELETE"}}).then(r => done(r.status), e => done(0));'
    )
    with browser.chromium(app.server_cert) as driver:
        browser.log_in(driver, app.web_url, "admin", app.passwords["admin"])
        driver.get(app.web_url + browser.LEGACY_UI)
        assert driver.execute_async_script(delete) == 200
    assert app.rest("GET", f"/instances/{instance}")[0] == 404


# --- the rule, request by request ----------------------------------------------------------------

OWN = "own"  # the site's own origin, filled in per run
# (Sec-Fetch-Site, Origin, path) of a POST an admin's login makes -> refused by nginx?
RULE: list[tuple[str | None, str | None, str, bool]] = [
    (None, None, "/tools/find", False),  # curl, scripts, dicomweb-client: no header at all
    ("same-origin", OWN, "/tools/find", False),  # the UIs
    ("none", None, "/tools/find", False),  # the user's own navigation (typed, bookmarked)
    ("cross-site", ELSEWHERE, "/tools/find", True),
    ("same-site", "https://other.localhost", "/tools/find", True),
    ("cross-site", "null", "/tools/find", True),  # sandboxed frames, redirected forms
    ("cross-site", None, "/tools/find", True),
    (None, OWN, "/tools/find", False),  # a browser without Sec-Fetch-*
    (None, ELSEWHERE, "/tools/find", True),
    (None, "null", "/tools/find", True),
    ("cross-site", LISTED, "/dicom-web/studies", False),  # a listed origin's DICOMweb (CORS)
    (None, LISTED, "/dicom-web/studies", False),
    ("cross-site", LISTED, "/tools/find", True),  # but nothing else
    ("cross-site", ELSEWHERE, "/dicom-web/studies", True),
]


@pytest.mark.parametrize(("fetch_site", "origin", "path", "refused"), RULE)
def test_an_unsafe_request_is_refused_exactly_when_it_comes_from_another_site(
    app: ContainerHost, fetch_site: str | None, origin: str | None, path: str, refused: bool
) -> None:
    headers = {"Content-Type": "application/json"}
    if fetch_site is not None:
        headers["Sec-Fetch-Site"] = fetch_site
    if origin is not None:
        headers["Origin"] = app.web_url if origin == OWN else origin
    status, body = app.rest("POST", path, b'{"Level": "Study", "Query": {}}', headers=headers)
    assert (status == 403) is refused, (status, body[:200])


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/patients?_method=DELETE", {}),
        ("/patients?_METHOD=delete", {}),
        ("/patients?x=1&%5Fmethod=DELETE", {}),
        # Orthanc decodes "%" and any two characters as one byte: each letter may come encoded.
        ("/patients?_%6Dethod=DELETE", {}),
        ("/patients?_m%65thod=DELETE", {}),
        ("/patients?%5f%6d%65%74%68%6f%64=DELETE", {}),
        ("/patients?%kVmethod=DELETE", {}),
        ("/patients", {"X-HTTP-Method-Override": "DELETE"}),
        ("/patients", {"X-HTTP-Method": "DELETE"}),
        ("/patients", {"X-Method-Override": "DELETE"}),
    ],
)
def test_method_overrides_are_refused_to_everyone(app: ContainerHost, path: str, headers: dict[str, str]) -> None:
    before = counts(app)
    status, _ = app.rest("GET", path, headers=headers)
    assert status == 403
    assert counts(app) == before


def test_reads_and_lookalike_arguments_pass(app: ContainerHost) -> None:
    """GET changes nothing once overrides are gone: reads pass whatever their headers say."""
    headers = {"Sec-Fetch-Site": "cross-site", "Origin": ELSEWHERE}
    assert app.rest("GET", "/patients", headers=headers)[0] == 200
    for lookalike in ("a_method=DELETE", "_methods=DELETE", "methodx=1", "PatientName=_method"):
        assert app.rest("GET", f"/patients?{lookalike}")[0] == 200, lookalike
