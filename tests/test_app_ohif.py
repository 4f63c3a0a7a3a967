"""OHIF, really: OHIF's published build (npm @ohif/app 3.11.1, OHIF 3 as the image's OHIF plugin
ships) served at /ohif/ by the Orthanc stand-in in its container, behind the same nginx, logins and
roles, configured as the OHIF plugin configures it (DICOMweb at the site's /dicom-web/). Headless
Chromium logs in with the viewer role, opens the sample study in OHIF's viewer, and the ramp is
read back from the pixels OHIF drew; the screenshot is docs/ohif.png."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from orthweb.settings import Settings
from orthweb_dev import PROJECT_DIR, browser
from orthweb_dev.containers import ContainerHost, containers_for_test
from orthweb_dev.dicom import viewable_instance
from orthweb_dev.testing import INSTALL_HINT, not_run

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def ohif() -> Iterator[ContainerHost]:
    """The application with OHIF as its viewer, and a clinician's login (the viewer role)."""
    missing = browser.missing()
    if missing:
        not_run(f"the OHIF test needs {', '.join(missing)} ({INSTALL_HINT})")
    with containers_for_test(Settings(web_users={"admin": "admin", "vera": "viewer"}, viewers=["ohif"])) as host:
        yield host


def test_the_compose_file_switches_ohif_on_and_orthanc_serves_it(ohif: ContainerHost) -> None:
    config, _ = ohif.orthanc_config()
    assert config["OHIF"] == {"DataSource": "dicom-web"}
    assert config["PythonScript"] == "/usr/share/orthanc/ohif-standin.py"  # the stand-in's OHIF
    status, body = ohif.rest("GET", "/ohif/app-config.js", user="vera")
    assert status == 200
    assert b"qidoRoot: window.location.origin + '/dicom-web'" in body
    assert ohif.rest("GET", "/ohif/", auth=False)[0] == 401  # behind the logins, as the rest
    status, body = ohif.rest("GET", "/ohif/viewer?StudyInstanceUIDs=1.2.3", user="vera")
    assert status == 200
    assert b'src="/ohif/app.bundle.' in body  # the app's route is its page, based at /ohif/


def test_ohif_opens_the_sample_study_and_draws_it(ohif: ContainerHost, tmp_path: Path) -> None:
    sample = viewable_instance("ohif", patient="OHIF^TEST")
    status, body = ohif.rest("POST", "/instances", sample.data)
    assert status == 200, body
    assert json.loads(body)["ParentStudy"]
    with browser.chromium(ohif.server_cert) as driver:
        browser.log_in(driver, ohif.web_url, "vera", ohif.passwords["vera"])  # the viewer role suffices
        canvas = browser.open_ohif(driver, ohif.web_url, sample.study)
        bands = browser.wait_for_ramp(driver, canvas)
        driver.save_screenshot(str(tmp_path / "ohif.png"))
    # Black on the left, white on the right, rising in between (wait_for_ramp checked each band).
    assert bands[0] < 64
    assert bands[-1] > 192
    if os.environ.get("ORTHWEB_UPDATE_SCREENSHOTS") == "1":  # refresh the README's picture
        shutil.copyfile(tmp_path / "ohif.png", PROJECT_DIR / "docs" / "ohif.png")
