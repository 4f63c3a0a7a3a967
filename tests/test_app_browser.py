"""A real browser through the real nginx, in the containers the rendered compose file runs: headless
Chromium (Debian's, driven by Selenium through Debian's chromedriver) logs in as a user with the
viewer role, opens the study in the explorer, opens the viewer, and the viewer draws the image: the
sample's ramp is read back from the viewer's pixels. In the stand-in image these are Debian's Orthanc
Explorer and Orthanc Web Viewer 2.8 (loaded by the Stone switch); the image's Explorer 2 and Stone
are not packaged for Debian (docs/app-harness.md)."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from orthweb.settings import Settings
from orthweb_dev import browser
from orthweb_dev.containers import ContainerHost, containers_for_test
from orthweb_dev.dicom import viewable_instance
from orthweb_dev.testing import INSTALL_HINT, not_run

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    """The application with a clinician's login: a user with the viewer role."""
    missing = browser.missing()
    if missing:
        not_run(f"the browser test needs {', '.join(missing)} ({INSTALL_HINT})")
    with containers_for_test(Settings(web_users={"admin": "admin", "vera": "viewer"})) as host:
        yield host


def test_the_browser_logs_in_opens_the_study_and_the_viewer_draws_it(app: ContainerHost, tmp_path: Path) -> None:
    sample = viewable_instance("browser", patient="BROWSER^TEST")
    status, _ = app.rest("POST", "/instances", sample.data)
    assert status == 200
    with browser.chromium(app.server_cert) as driver:
        # The certificate is trusted (pinned), but without a login there is no UI.
        driver.get(app.web_url + browser.LEGACY_UI)
        assert "Orthanc" not in driver.title
        # As a person logs in: at the explorer's page. The viewer role suffices.
        browser.log_in(driver, app.web_url, "vera", app.passwords["vera"], at=browser.LEGACY_UI)
        driver.get(app.web_url + browser.LEGACY_UI)
        assert driver.title == "Orthanc Explorer"
        canvas = browser.open_viewer(driver, app.web_url, "Orthweb harness browser")
        assert driver.current_url.startswith(app.web_url + "/web-viewer/app/viewer.html?series=")
        bands = browser.wait_for_ramp(driver, canvas)
        driver.save_screenshot(str(tmp_path / "viewer.png"))
    # Black on the left, white on the right, rising in between (wait_for_ramp checked each band).
    assert bands[0] < 64
    assert bands[-1] > 192


def test_clinicians_behind_one_address_in_fresh_browsers_are_never_throttled(app: ContainerHost) -> None:
    """Four clinicians behind one address (a hospital's NAT; here all come from the same one), each
    in a fresh browser profile, log in at the explorer and open the viewer, one after the other.
    Chromium sends the login unasked only under /app/, so many of their requests go first without
    it and meet the challenge (401) before being sent again with it: more than a burst of the old
    throttle, which counted every request without a valid login. None is throttled now."""
    sample = viewable_instance("behind-nat", patient="NAT^TEST")
    assert app.rest("POST", "/instances", sample.data)[0] == 200
    mark = len(app.access_entries())
    for _ in range(4):
        with browser.chromium(app.server_cert) as driver:
            browser.log_in(driver, app.web_url, "vera", app.passwords["vera"], at=browser.LEGACY_UI)
            browser.wait_for_ramp(driver, browser.open_viewer(driver, app.web_url, "Orthweb harness behind-nat"))
    session = app.access_entries()[mark:]
    statuses = Counter(e["status"] for e in session)
    assert statuses[429] == 0, statuses
    assert {e["login"] for e in session if e["status"] == 401} == {"none"}, statuses
    assert statuses[401] > 20, statuses  # more than the old throttle's burst, within a minute


def test_the_browser_trusts_only_the_pinned_key(app: ContainerHost, tmp_path: Path) -> None:
    other = tmp_path / "other.crt"
    key = tmp_path / "other.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(other)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert browser.spki_pin(other) != browser.spki_pin(app.server_cert)
    with browser.chromium(other) as driver:
        driver.get(app.web_url + "/app/explorer.html")
        # Chromium's interstitial, not the site: the certificate nginx presents is not the pinned one.
        assert driver.title != "Orthanc Explorer"
        assert "Orthanc" not in driver.page_source
