"""The Content-Security-Policy, through the real nginx in its containers: every answer of the web
front carries it, nginx's own error answers too, each UI's location its own; and under it the UIs
this harness runs still work with no violation at all. Headless Chromium (Debian's) logs in with
the viewer role, records every violation (a listener Chromium runs in each page before the page's
own scripts, and the console's CSP messages), and opens Orthanc Explorer, the study, the Orthanc
Web Viewer (which draws the sample's ramp) and OHIF (which draws it too). Orthanc Explorer 2 and
Stone are not in the stand-in image: their policies follow from their sources (docs/host.md)."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from orthweb.settings import Settings
from orthweb_dev import browser
from orthweb_dev.containers import ContainerHost, containers_for_test
from orthweb_dev.dicom import Sample, viewable_instance
from orthweb_dev.testing import INSTALL_HINT, not_run

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    """Every viewer the stand-in has (the Stone switch loads the Orthanc Web Viewer; OHIF), and a
    clinician's login (the viewer role)."""
    missing = browser.missing()
    if missing:
        not_run(f"the CSP tests need {', '.join(missing)} ({INSTALL_HINT})")
    settings = Settings(web_users={"admin": "admin", "vera": "viewer"}, viewers=["stone", "ohif"])
    with containers_for_test(settings) as host:
        yield host


@pytest.fixture(scope="module")
def sample(app: ContainerHost) -> Sample:
    sample = viewable_instance("csp", patient="CSP^TEST")
    status, body = app.rest("POST", "/instances", sample.data)
    assert status == 200, body
    return sample


def policy(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as directive -> sources."""
    directives = (d.split() for d in header.split(";") if d.strip())
    return {d[0]: d[1:] for d in directives}


# (method, path, login, extra headers, the status nginx or Orthanc answers, the UI whose policy applies)
ANSWERS = [
    ("GET", "/", True, {}, 302, "site"),  # nginx's own redirect
    ("GET", "/system", True, {}, 200, "site"),
    ("GET", "/system", False, {}, 401, "site"),  # no login: Orthanc's challenge
    ("GET", "/no-such-route", True, {}, 404, "site"),
    ("GET", "/system?_method=DELETE", True, {}, 403, "site"),  # nginx refuses a method override
    ("POST", "/tools/find", True, {"Origin": "https://elsewhere.example.com", "Sec-Fetch-Site": "cross-site"}, 403,
     "site"),  # nginx refuses a cross-site write
    ("GET", "/dicom-web/studies", True, {}, 200, "site"),
    ("GET", "/app/explorer.html", True, {}, 200, "explorer"),
    ("GET", "/app/explorer.html", False, {}, 401, "explorer"),
    ("GET", "/app/no-such-page.html", True, {}, 404, "explorer"),
    ("GET", "/web-viewer/app/viewer.html", True, {}, 200, "webviewer"),
    ("GET", "/ohif/viewer", True, {}, 200, "ohif"),
    ("GET", "/ohif/app-config.js", True, {}, 200, "ohif"),
    ("GET", "/ui/app/", True, {}, 404, "oe2"),  # not in the stand-in: Orthanc's 404, OE2's policy
    ("GET", "/stone-webviewer/index.html", True, {}, 404, "stone"),  # likewise
]  # fmt: skip


def test_every_answer_carries_the_policy_of_its_location(app: ContainerHost) -> None:
    session = requests.Session()
    session.trust_env = False
    seen: dict[str, set[str]] = {}
    for method, path, login, headers, status, ui in ANSWERS:
        auth = (app.admin_user, app.admin_password) if login else None
        answer = session.request(
            method, app.web_url + path, auth=auth, headers=headers, verify=str(app.server_cert), allow_redirects=False
        )
        assert answer.status_code == status, (method, path, answer.status_code)
        header = answer.headers.get("Content-Security-Policy", "")
        assert header, (method, path, dict(answer.headers))
        got = policy(header)
        assert got["default-src"] == ["'self'"], path
        # No plugin content, but OHIF's PDF viewport (an <object>).
        assert got["object-src"] == (["'self'", "blob:"] if ui == "ohif" else ["'none'"]), path
        assert got["base-uri"] == ["'self'"], path
        assert got["form-action"] == ["'self'"], path
        assert got["frame-ancestors"] == ["'none'"], path
        assert "'unsafe-inline'" not in got["script-src"], path
        assert ("'unsafe-eval'" in got["script-src"]) == (ui in ("stone", "ohif")), path
        assert ("'wasm-unsafe-eval'" in got["script-src"]) == (ui in ("stone", "ohif")), path
        seen.setdefault(ui, set()).add(header)
    # One policy per location, whatever the status; each UI's its own, the rest of the site the strictest.
    assert all(len(headers) == 1 for headers in seen.values()), seen
    assert set(seen) == {"site", "explorer", "webviewer", "ohif", "oe2", "stone"}
    assert len({h for headers in seen.values() for h in headers}) == 6
    (site,) = seen["site"]
    assert policy(site)["script-src"] == ["'self'"]
    assert policy(site)["style-src"] == ["'self'"]


def test_the_explorer_and_the_web_viewer_work_with_no_violation(app: ContainerHost, sample: Sample) -> None:
    with browser.chromium(app.server_cert) as driver:
        browser.log_in(driver, app.web_url, "vera", app.passwords["vera"], at=browser.LEGACY_UI)
        browser.watch_csp(driver)
        explorer = driver.current_window_handle
        browser.open_viewer(driver, app.web_url, "Orthweb harness csp")
        assert driver.current_url.startswith(app.web_url + "/web-viewer/app/viewer.html?series=")
        # The viewer's tab was opened by the explorer's page: watched from its first script on.
        browser.watch_csp(driver)
        driver.refresh()
        located = ec.visibility_of_element_located((By.CSS_SELECTOR, "#dicomImage canvas"))
        canvas = WebDriverWait(driver, browser.TIMEOUT_S).until(located)
        bands = browser.wait_for_ramp(driver, canvas)
        viewer_violations = browser.csp_violations(driver)
        driver.switch_to.window(explorer)
        explorer_violations = browser.csp_violations(driver)
    # The viewer drew the sample under the policy: black on the left, white on the right.
    assert bands[0] < 64
    assert bands[-1] > 192
    assert explorer_violations == []
    assert viewer_violations == []


def jpeg_baseline(name: str) -> Sample:
    """The browser sample as a JPEG baseline image (as most stored images are compressed): OHIF
    decodes it with its WebAssembly codec, in a worker."""
    from PIL import Image
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    sample = viewable_instance(name, patient="CSP^JPEG")
    ds = dcmread(io.BytesIO(sample.data))
    jpeg = io.BytesIO()
    Image.frombytes("L", (ds.Columns, ds.Rows), ds.PixelData).save(jpeg, "JPEG", quality=95)
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    data = io.BytesIO()
    ds.save_as(data, enforce_file_format=True)
    return dataclasses.replace(sample, data=data.getvalue(), transfer_syntax=JPEGBaseline8Bit)


@pytest.mark.parametrize("compressed", [False, True], ids=["uncompressed", "jpeg"])
def test_ohif_works_with_no_violation(app: ContainerHost, sample: Sample, compressed: bool) -> None:
    if compressed:
        sample = jpeg_baseline("csp-jpeg")
        status, body = app.rest("POST", "/instances", sample.data)
        assert status == 200, body
    with browser.chromium(app.server_cert) as driver:
        browser.log_in(driver, app.web_url, "vera", app.passwords["vera"])
        browser.watch_csp(driver)
        canvas = browser.open_ohif(driver, app.web_url, sample.study)
        bands = browser.wait_for_ramp(driver, canvas)
        violations = browser.csp_violations(driver)
    # OHIF drew the sample under the policy: black on the left, white on the right.
    assert bands[0] < 64
    assert bands[-1] > 192
    assert violations == []
